package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/authlimit"
	"github.com/parley-xmpp/parley/server/component"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

const cbSecret = "kvgP1SRzWVabhiPVAb1"

func (f *fixture) addBridge(name string) {
	f.t.Helper()
	if _, err := f.st.ProposeSettled(context.Background(), store.ComponentAdd{Component: store.Component{Name: name, Domain: "example.lan", Secret: cbSecret}}); err != nil {
		f.t.Fatal(err)
	}
}

// connectComponent opens a component stream to jid and answers the
// handshake with secret; it returns the client and the first element after
// the handshake (<handshake/> on success) or the stream error condition.
func (f *fixture) connectComponent(jid, secret string) (*client, string) {
	f.t.Helper()
	c := f.dial()
	c.send(`<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='` + jid + `'>`)
	c.rd = xml.NewReader(c.conn, xml.DefaultLimits)
	h, err := c.rd.Header()
	if err != nil {
		f.t.Fatalf("component header: %v", err)
	}
	c.send(`<handshake>` + component.Handshake(h.Get("id"), secret) + `</handshake>`)
	el := c.next()
	if el.Name.Local == "error" {
		return c, el.Elements()[0].Name.Local
	}
	return c, el.Name.Local
}

func TestComponentRoundTrip(t *testing.T) {
	f := start(t)
	f.addBridge("cb1")
	comp, got := f.connectComponent("cb1.example.lan", cbSecret)
	if got != "handshake" {
		t.Fatalf("handshake: %s", got)
	}
	a := f.dial()
	a.login("alice", "alice-password", "phone")
	a.send(`<presence/>`)
	a.next()
	// Client → component, in the component's namespace.
	a.send(`<message to='room@cb1.example.lan' type='chat'><body>call me</body></message>`)
	m := comp.next()
	if m.Name.Space != "jabber:component:accept" || m.Get("from") != "alice@example.lan/phone" || m.Child("", "body").Text() != "call me" {
		t.Fatalf("component got %s", m)
	}
	// Component → client, from any JID at its domain.
	comp.send(`<message from='room@cb1.example.lan' to='alice@example.lan/phone' type='chat'><body>ringing</body></message>`)
	r := a.next()
	if r.Name.Space != "jabber:client" || r.Get("from") != "room@cb1.example.lan" || r.Child("", "body").Text() != "ringing" {
		t.Fatalf("client got %s", r)
	}
	// The server's items list the connected component.
	a.send(`<iq type='get' id='items' to='example.lan'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
	if items := a.reply("items"); !strings.Contains(items.String(), `jid="cb1.example.lan"`) {
		t.Fatalf("disco#items: %s", items)
	}
	// The component may ping the server.
	comp.send(`<iq type='get' id='p1' from='cb1.example.lan' to='example.lan'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if p := comp.next(); p.Get("type") != "result" || p.Get("id") != "p1" {
		t.Fatalf("ping: %s", p)
	}
	st := f.eng.Status().Components
	if len(st) != 1 || !st[0].Connected || st[0].JID != "cb1.example.lan" {
		t.Fatalf("status: %+v", st)
	}
	// A forged from closes the stream with invalid-from.
	comp.send(`<message from='alice@example.lan' to='alice@example.lan/phone'><body>x</body></message>`)
	if cond := comp.streamError(); cond != "invalid-from" {
		t.Fatalf("forged from: %s", cond)
	}
}

func TestComponentFailures(t *testing.T) {
	f := start(t)
	f.addBridge("cb1")
	if _, got := f.connectComponent("cb1.example.lan", "wrong-secret"); got != "not-authorized" {
		t.Fatalf("wrong secret: %s", got)
	}
	st := f.eng.Status().Components
	if len(st) != 1 || st[0].Connected || st[0].LastFailure != "authentication failure" {
		t.Fatalf("status after a wrong secret: %+v", st)
	}
	c := f.dial()
	c.send(`<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='nope.example.lan'>`)
	c.rd = xml.NewReader(c.conn, xml.DefaultLimits)
	c.rd.Header()
	if cond := c.streamError(); cond != "host-unknown" {
		t.Fatalf("unknown component: %s", cond)
	}
	// A message to a registered but disconnected component bounces.
	a := f.dial()
	a.login("alice", "alice-password", "phone")
	a.send(`<message id='m1' to='cb1.example.lan' type='chat'><body>hello?</body></message>`)
	e := a.next()
	if e.Get("type") != "error" || e.Child("", "error").Child("", "service-unavailable") == nil {
		t.Fatalf("bounce: %s", e)
	}
}

// TestComponentHandshakeThrottled: wrong handshakes from one address spend
// its burst; the next handshake waits for a token (here no time passes, so
// none comes) and is refused with policy-violation unchecked, even with the
// right secret: the attempts of an address are not told apart by what
// they send.
func TestComponentHandshakeThrottled(t *testing.T) {
	f := start(t)
	f.mu.Lock()
	f.frozen = true
	f.mu.Unlock()
	f.addBridge("cb1")
	burst, iv := authlimit.Default.Address.Burst, authlimit.Default.Address.Interval
	for i := 0; i < burst; i++ {
		if _, got := f.connectComponent("cb1.example.lan", "wrong-secret"); got != "not-authorized" {
			t.Fatalf("wrong secret %d: %s", i+1, got)
		}
	}
	if _, got := f.connectComponent("cb1.example.lan", cbSecret); got != "policy-violation" {
		t.Fatalf("handshake %d: %s, want policy-violation", burst+1, got)
	}
	f.mu.Lock()
	slept := append([]time.Duration(nil), f.slept...)
	f.mu.Unlock()
	if len(slept) != 2 || slept[0] <= iv-time.Second || slept[0] > iv || slept[1] != authlimit.Default.RefuseDelay {
		t.Fatalf("delays %v: want a wait of about %v for a token, then %v before the refusal", slept, iv, authlimit.Default.RefuseDelay)
	}
	if st := f.eng.Status().Components; len(st) != 1 || st[0].Connected || st[0].LastFailure != "too many failed handshakes" {
		t.Fatalf("status: %+v", st)
	}
}

func TestComponentNewestWinsAndDelete(t *testing.T) {
	f := start(t)
	f.addBridge("cb1")
	first, got := f.connectComponent("cb1.example.lan", cbSecret)
	if got != "handshake" {
		t.Fatal(got)
	}
	// The same component named in other letter case (domain names are
	// case-insensitive), with a trailing dot: it replaces the first.
	second, got := f.connectComponent("CB1.Example.LAN.", cbSecret)
	if got != "handshake" {
		t.Fatal(got)
	}
	if cond := first.streamError(); cond != "conflict" {
		t.Fatalf("older connection: %s", cond)
	}
	waitFor(t, "one live connection", func() bool { return len(f.eng.comps.Connected()) == 1 })
	if _, err := f.st.ProposeSettled(context.Background(), store.ComponentDel{Name: "cb1"}); err != nil {
		t.Fatal(err)
	}
	if cond := second.streamError(); cond != "not-authorized" {
		t.Fatalf("deleted component: %s", cond)
	}
	waitFor(t, "no live connection", func() bool { return len(f.eng.comps.Connected()) == 0 })
}
