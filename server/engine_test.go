package server

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server/authlimit"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// These tests run the engine in-process (so the race detector sees it) and
// talk to it over real TCP and TLS with a minimal client; e2e/ drives the
// built binary with real XMPP clients.

type fixture struct {
	t       testing.TB
	st      *store.Store
	eng     *Engine
	port    int
	tlsPort int
	s2sPort int
	files   *pki.Area

	mu    sync.Mutex
	slept []time.Duration // throttle delays asked for
	// The throttle's clock runs ahead of the real one by the delays it
	// asked for (its sleeps return at once), unless frozen.
	ahead  time.Duration
	frozen bool
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func selfSigned(t testing.TB, files *pki.Area, domain string) {
	key, keyPEM, err := pki.GenerateKey(pki.KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	crt, err := pki.SelfSigned(key, pki.Request{CN: domain, DNSNames: []string{domain}, Days: 30}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	files.WriteFile(domain+".key", keyPEM, 0o600, false)
	files.WriteFile(domain+".crt", crt, 0o644, false)
}

func start(t testing.TB) *fixture { t.Helper(); return startWith(t, nil) }

// startWith starts an engine whose Config tweak may change (idle timeout,
// limits) before it is built. The engine's auth throttles never sleep in
// tests; the delays it asked for are kept in fixture.slept, and its clock
// moves ahead by them.
func startWith(t testing.TB, tweak func(*Config)) *fixture {
	t.Helper()
	return startDomain(t, "example.lan", tweak)
}

// startDomain starts an engine hosting domain (self-signed certificate,
// users alice and bob) on 127.0.0.1 with free ports.
func startDomain(t testing.TB, domain string, tweak func(*Config)) *fixture {
	t.Helper()
	st, files := openData(t, t.TempDir())
	selfSigned(t, files, domain)
	f := &fixture{t: t, st: st, files: files, port: freePort(t), tlsPort: freePort(t), s2sPort: freePort(t)}
	if err := st.SetLocal(store.XMPPListen, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if err := st.SetLocal(store.XMPPEnabled, "true"); err != nil { // node-local
		t.Fatal(err)
	}
	ops := []store.Op{
		store.DomainPrimary{Name: domain, Certs: &store.Domain{Name: domain, Key: domain + ".key", Cert: domain + ".crt"}},
		store.ConfigSet{Key: store.XMPPPortC2S, Value: fmt.Sprint(f.port)},
		store.ConfigSet{Key: store.XMPPPortC2STLS, Value: fmt.Sprint(f.tlsPort)},
		store.ConfigSet{Key: store.XMPPPortS2S, Value: fmt.Sprint(f.s2sPort)},
	}
	for _, u := range []string{"alice", "bob"} {
		a, _ := store.NewAccount(u+"@"+domain, u+"-password")
		ops = append(ops, store.AccountCreate{Accounts: []store.Account{a}})
	}
	for _, op := range ops {
		if _, err := st.ProposeSettled(context.Background(), op); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{Store: st, Files: files, Version: "test", Log: logging.Discard()}
	if tweak != nil {
		tweak(&cfg)
	}
	f.eng = New(cfg)
	for _, th := range []*authlimit.Throttle{f.eng.c2s.Throttle, f.eng.comp.Throttle} {
		th.Wait = func(d time.Duration, _ <-chan struct{}) bool {
			f.mu.Lock()
			f.slept = append(f.slept, d)
			if !f.frozen {
				f.ahead += d
			}
			f.mu.Unlock()
			return false
		}
		th.Now = func() time.Time {
			f.mu.Lock()
			defer f.mu.Unlock()
			return time.Now().Add(f.ahead)
		}
	}
	f.eng.Start()
	t.Cleanup(func() {
		f.eng.Stop()
		files.Close()
		st.Close()
	})
	return f
}

// client is a minimal XMPP client for tests.
type client struct {
	t    testing.TB
	conn net.Conn
	rd   *xml.Reader
}

func (f *fixture) dial() *client {
	f.t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", f.port), 5*time.Second)
	if err != nil {
		f.t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	f.t.Cleanup(func() { c.Close() })
	return &client{t: f.t, conn: c}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) open(domain string) *xml.Element {
	c.t.Helper()
	c.send(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='` + domain + `' version='1.0'>`)
	c.rd = xml.NewReader(c.conn, xml.DefaultLimits)
	if _, err := c.rd.Header(); err != nil {
		c.t.Fatalf("stream header: %v", err)
	}
	return c.next() // features
}

func (c *client) next() *xml.Element {
	c.t.Helper()
	el, err := c.rd.Next()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return el
}

// expectStreamError reads until a stream error and returns its condition.
func (c *client) streamError() string {
	c.t.Helper()
	for {
		el, err := c.rd.Next()
		if err != nil {
			c.t.Fatalf("no stream error, got %v", err)
		}
		if el.Name.Local == "error" && el.Name.Space == xml.NSStream {
			return el.Elements()[0].Name.Local
		}
	}
}

func (c *client) starttls(domain string) {
	c.t.Helper()
	c.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	if el := c.next(); el.Name.Local != "proceed" {
		c.t.Fatalf("starttls: %s", el)
	}
	tc := tls.Client(c.conn, &tls.Config{ServerName: domain, InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn = tc
}

func (c *client) login(user, password, resource string) string {
	c.t.Helper()
	return c.loginAt("example.lan", user, password, resource)
}

// loginAt negotiates STARTTLS, authenticates with PLAIN and binds.
func (c *client) loginAt(domain, user, password, resource string) string {
	c.t.Helper()
	c.open(domain)
	c.starttls(domain)
	c.open(domain)
	c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+password)) + `</auth>`)
	if el := c.next(); el.Name.Local != "success" {
		c.t.Fatalf("auth: %s", el)
	}
	c.open(domain)
	c.send(`<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>` + resource + `</resource></bind></iq>`)
	el := c.next()
	return el.Child("", "bind").Child("", "jid").Text()
}

func TestLoginAndMessage(t *testing.T) {
	f := start(t)
	a := f.dial()
	if got := a.login("alice", "alice-password", "phone"); got != "alice@example.lan/phone" {
		t.Fatalf("bound %q", got)
	}
	b := f.dial()
	b.login("bob", "bob-password", "desk")
	b.send(`<presence/>`)
	if p := b.next(); p.Name.Local != "presence" || p.Get("from") != "bob@example.lan/desk" {
		t.Fatalf("own presence: %s", p)
	}
	a.send(`<message to='bob@example.lan' type='chat' from='mallory@evil.lan'><body>hej — ø</body></message>`)
	m := b.next()
	if m.Get("from") != "alice@example.lan/phone" || m.Child("", "body").Text() != "hej — ø" {
		t.Fatalf("message: %s", m)
	}
	total, _ := f.eng.router.Count()
	if total != 2 || f.eng.Status().Sessions != 2 {
		t.Fatalf("sessions %d", total)
	}
}

func TestWrongPasswordMayRetry(t *testing.T) {
	f := start(t)
	c := f.dial()
	c.open("example.lan")
	c.starttls("example.lan")
	feats := c.open("example.lan")
	mechs := feats.Child("", "mechanisms")
	var names []string
	for _, m := range mechs.Elements() {
		names = append(names, m.Text())
	}
	if strings.Join(names, ",") != "SCRAM-SHA-256,SCRAM-SHA-1,PLAIN" {
		t.Fatalf("mechanisms %v", names)
	}
	c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong")) + `</auth>`)
	if el := c.next(); el.Name.Local != "failure" || el.Child("", "not-authorized") == nil {
		t.Fatalf("wrong password: %s", el)
	}
	c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alice-password")) + `</auth>`)
	if el := c.next(); el.Name.Local != "success" {
		t.Fatalf("retry: %s", el)
	}
}

func TestStreamErrors(t *testing.T) {
	f := start(t)
	tests := []struct {
		name string
		send string
		want string
	}{
		{"unknown host", `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='other.lan' version='1.0'>`, "host-unknown"},
		{"stanza before TLS", `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.lan' version='1.0'><message to='a@example.lan'/>`, "not-authorized"},
		{"comment", `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.lan' version='1.0'><!-- x -->`, "restricted-xml"},
		{"bad xml", `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.lan' version='1.0'><a></b>`, "not-well-formed"},
		{"unknown namespace", `<stream:stream xmlns='urn:nope' xmlns:stream='http://etherx.jabber.org/streams' to='example.lan' version='1.0'>`, "invalid-namespace"},
		{"old version", `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.lan'>`, "unsupported-version"},
		{"invalid UTF-8", "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.lan' version='1.0'><a>\xff\xfe</a>", "unsupported-encoding"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := f.dial()
			c.send(tc.send)
			c.rd = xml.NewReader(c.conn, xml.DefaultLimits)
			if _, err := c.rd.Header(); err != nil {
				t.Fatal(err)
			}
			if got := c.streamError(); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}
