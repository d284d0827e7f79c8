package im

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/address"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// Fakes of what the IM core talks to: client sessions, components and
// other servers. The store is a real one in a temporary directory.

type fakeSession struct {
	bare, res string
	fail      bool // Deliver fails (the connection is gone)
	r         *router.Router
	out       *stream.Conn // to nowhere

	mu     sync.Mutex
	got    []*xml.Element
	values map[any]any
	closed *stream.Error
}

func (f *fakeSession) Bare() string          { return f.bare }
func (f *fakeSession) Resource() string      { return f.res }
func (f *fakeSession) Full() string          { return f.bare + "/" + f.res }
func (f *fakeSession) Domain() string        { return address.Domain(f.bare) }
func (f *fakeSession) Replace()              {}
func (f *fakeSession) Out() *stream.Conn     { return f.out }
func (f *fakeSession) Close(e *stream.Error) { f.mu.Lock(); f.closed = e; f.mu.Unlock() }
func (f *fakeSession) Value(key any) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.values[key]
}
func (f *fakeSession) SetValue(key, v any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.values == nil {
		f.values = map[any]any{}
	}
	f.values[key] = v
}
func (f *fakeSession) Deliver(el *xml.Element) bool {
	if f.fail {
		f.r.Unbind(f) // as c2s.Session does
		return false
	}
	f.mu.Lock()
	f.got = append(f.got, el)
	f.mu.Unlock()
	return true
}

// take returns and forgets what the session got.
func (f *fakeSession) take() []*xml.Element {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.got
	f.got = nil
	return out
}

// fakeComponents is the component registry: cb1.example.lan is registered,
// connected if up.
type fakeComponents struct {
	up  bool
	got []*xml.Element
}

func (c *fakeComponents) Known(domain string) bool { return domain == "cb1.example.lan" }
func (c *fakeComponents) Route(domain string, el *xml.Element) bool {
	if !c.up {
		return false
	}
	c.got = append(c.got, el)
	return true
}
func (c *fakeComponents) Connected() []string {
	if c.up {
		return []string{"cb1.example.lan"}
	}
	return nil
}

type fakeRemote struct{ got []*xml.Element }

func (r *fakeRemote) Route(el *xml.Element) { r.got = append(r.got, el) }

// harness is a Service on example.lan with the accounts alice and bob, a
// component cb1.example.lan and federation (all fakes).
type harness struct {
	t     *testing.T
	s     *Service
	comps *fakeComponents
	fed   *fakeRemote
}

func newHarness(t *testing.T, extra ...ModuleFunc) *harness {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var accounts []store.Account
	for _, u := range []string{"alice@example.lan", "bob@example.lan"} {
		a, err := store.NewAccount(u, "password-"+u)
		if err != nil {
			t.Fatal(err)
		}
		accounts = append(accounts, a)
	}
	if _, err := st.Propose(store.AccountCreate{Accounts: accounts}); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, comps: &fakeComponents{up: true}, fed: &fakeRemote{}}
	hosted := func(d string) bool { return d == "example.lan" }
	r := router.New()
	r.Hosted, r.Components, r.Remote = hosted, h.comps, h.fed
	h.s = &Service{Store: st, Router: r, Hosted: hosted, Version: "test", Started: time.Now(), Log: logging.Discard()}
	h.s.Init(extra...)
	return h
}

// login binds a session (and runs the bound hooks); with prio >= -128 it
// also sends available presence with that priority.
func (h *harness) login(bare, res string, available bool, prio int) *fakeSession {
	srv, cli := net.Pipe()
	go io.Copy(io.Discard, cli)
	h.t.Cleanup(func() { srv.Close(); cli.Close() })
	f := &fakeSession{bare: bare, res: res, r: h.s.Router, out: stream.NewConn(srv, stream.NSClient)}
	h.s.Router.Bind(f)
	h.s.Online(f)
	if available {
		h.s.setPresence(f, true, prio, xml.New(stream.NSClient, "presence"))
	}
	return f
}

// parse reads one stanza.
func parse(t *testing.T, s string) *xml.Element {
	t.Helper()
	el, err := newElementParser().parse([]byte(s))
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return el
}

// errorOf is the condition of a stanza error ("" if none).
func errorOf(el *xml.Element) string {
	if e := el.Child("", "error"); e != nil {
		for _, c := range e.Elements() {
			if c.Name.Space == stream.NSStanzas {
				return c.Name.Local
			}
		}
	}
	return ""
}

// describe lists stanzas briefly, for failures.
func describe(els []*xml.Element) string {
	var b bytes.Buffer
	for _, el := range els {
		b.WriteString(el.String())
		b.WriteString("\n")
	}
	return strings.TrimSpace(b.String())
}
