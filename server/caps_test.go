package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"

	"github.com/parley-xmpp/parley/server/im"
	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/server/xml"
)

// setStanzaRate sets the clients' stanza rate for sessions started from
// now on (under the engine's lock, which the accept path takes too).
func (f *fixture) setStanzaRate(perSecond float64, burst int) {
	f.eng.mu.Lock()
	f.eng.c2s.StanzaRate = func() (float64, int) { return perSecond, burst }
	f.eng.mu.Unlock()
}

// unlimited lifts the stanza rates of both servers (clients, links) for
// benchmarks that measure throughput.
func (fp *fedPair) unlimited() {
	fp.a.setStanzaRate(1e12, 1<<30)
	fp.b.setStanzaRate(1e12, 1<<30)
}

// TestDirectedPresenceCap: a session may have sent directed presence to
// im.MaxDirected addresses; one more is refused with policy-violation,
// and once one of them gets unavailable presence there is room again.
func TestDirectedPresenceCap(t *testing.T) {
	f := start(t)
	f.setStanzaRate(1e9, 1<<30)
	a := f.dial()
	a.login("alice", "alice-password", "flood")
	var b strings.Builder
	for i := 0; i < im.MaxDirected; i++ {
		fmt.Fprintf(&b, "<presence to='u%d@example.lan'/>", i)
	}
	a.send(b.String())
	a.ping("after") // all handled
	a.send("<presence to='one-more@example.lan' id='p1'/>")
	el := a.expect("the error for one more", func(el *xml.Element) bool { return el.Name.Local == "presence" && el.Get("type") == "error" })
	if got := stanzaError(el); got != "policy-violation" || el.Get("from") != "one-more@example.lan" {
		t.Fatalf("one more directed presence: %s", el)
	}
	// Presence already directed to an address may be sent again.
	a.send("<presence to='u0@example.lan' id='p2'/>")
	a.ping("again")
	// Unavailable presence makes room.
	a.send("<presence to='u1@example.lan' type='unavailable'/><presence to='one-more@example.lan' id='p3'/>")
	a.send(`<iq type='get' id='room' to='example.lan'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if el := a.expect("p3 or the ping", func(el *xml.Element) bool { return el.Get("id") == "p3" || el.Get("id") == "room" }); el.Get("id") != "room" {
		t.Fatalf("after unavailable presence made room: %s", el)
	}
}

// TestDirectedPresenceCapStopsDelivery: beyond the cap nothing goes out: bob, to whom alice sends directed presence after
// the cap, gets nothing.
func TestDirectedPresenceCapStopsDelivery(t *testing.T) {
	f := start(t)
	f.setStanzaRate(1e9, 1<<30)
	bob := f.dial()
	bob.login("bob", "bob-password", "desk")
	bob.send("<presence/>")
	bob.expect("own presence", func(el *xml.Element) bool { return el.Name.Local == "presence" })
	a := f.dial()
	a.login("alice", "alice-password", "flood")
	var b strings.Builder
	for i := 0; i < im.MaxDirected; i++ {
		fmt.Fprintf(&b, "<presence to='u%d@example.lan'/>", i)
	}
	b.WriteString("<presence to='bob@example.lan/desk' id='over'/>")
	a.send(b.String())
	a.expect("the error", func(el *xml.Element) bool { return el.Get("id") == "over" && el.Get("type") == "error" })
	bob.send(`<message to='bob@example.lan/desk' id='mark'><body>mark</body></message>`)
	el := bob.expect("anything", func(el *xml.Element) bool { return true })
	if el.Name.Local != "message" || el.Get("id") != "mark" {
		t.Fatalf("bob got %s before his own mark: directed presence beyond the cap was delivered", el)
	}
}

// TestStanzaRateSlowsClient: a client over its stanza rate is read more
// slowly, nothing is lost: 60 messages at 50/s with a burst of 10 take
// about a second to arrive, and all arrive.
func TestStanzaRateSlowsClient(t *testing.T) {
	f := start(t)
	f.setStanzaRate(50, 10)
	bob := f.dial()
	bob.login("bob", "bob-password", "desk")
	a := f.dial()
	a.login("alice", "alice-password", "flood")
	var b strings.Builder
	for i := 0; i < 60; i++ {
		fmt.Fprintf(&b, "<message to='bob@example.lan/desk' id='m%d'><body>%d</body></message>", i, i)
	}
	start := time.Now()
	a.send(b.String())
	for i := 0; i < 60; i++ {
		want := fmt.Sprintf("m%d", i)
		bob.expect(want, func(el *xml.Element) bool { return el.Name.Local == "message" && el.Get("id") == want })
	}
	// 50 beyond the burst at 50/s: at least a second (the login's
	// stanzas came from the same bucket, so a little less than that).
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("60 messages arrived in %v: the rate of 50/s was not applied", d)
	}
}

// TestComponentStanzaRate: a component is read at ten times the clients'
// rate: at 50/s for clients (500/s, burst 100 for a component), 600
// messages take about a second.
func TestComponentStanzaRate(t *testing.T) {
	f := start(t)
	f.setStanzaRate(50, 10)
	f.addBridge("cb1")
	comp, got := f.connectComponent("cb1.example.lan", cbSecret)
	if got != "handshake" {
		t.Fatalf("handshake: %s", got)
	}
	bob := f.dial()
	bob.login("bob", "bob-password", "desk")
	var b strings.Builder
	for i := 0; i < 600; i++ {
		fmt.Fprintf(&b, "<message from='room@cb1.example.lan' to='bob@example.lan/desk' id='m%d'><body>%d</body></message>", i, i)
	}
	start := time.Now()
	comp.send(b.String())
	bob.expect("the last", func(el *xml.Element) bool { return el.Name.Local == "message" && el.Get("id") == "m599" })
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("600 messages from a component arrived in %v: the rate of 500/s was not applied", d)
	}
}

// TestIncomingServerStreamRate: an incoming server stream is read at ten
// times the clients' rate: at 50/s for a.lan's clients (500/s, burst 100
// for a link), 600 messages from b.lan take about a second.
func TestIncomingServerStreamRate(t *testing.T) {
	fp := federate(t, nil)
	fp.a.setStanzaRate(50, 10)
	fp.b.setStanzaRate(1e9, 1<<30)
	alice := fp.a.userAt("a.lan", "alice")
	bob := fp.b.userAt("b.lan", "bob")
	bob.send(`<message to='alice@a.lan/r' type='chat' id='hello'><body>hello</body></message>`)
	alice.expect("the first message", isMessageFrom("bob@b.lan/r", "hello"))
	var b strings.Builder
	for i := 0; i < 600; i++ {
		fmt.Fprintf(&b, "<message to='alice@a.lan/r' type='chat' id='m%d'><body>%d</body></message>", i, i)
	}
	start := time.Now()
	bob.send(b.String())
	alice.expect("the last", isMessageFrom("bob@b.lan/r", "599"))
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("600 messages over a server link arrived in %v: the rate of 500/s was not applied", d)
	}
}

// TestMaxResourcesPerAccount: the 101st session of one account is closed
// with resource-constraint, saying why; another account still logs in.
func TestMaxResourcesPerAccount(t *testing.T) {
	f := start(t)
	for i := 0; i < router.MaxResources; i++ {
		c := f.dial()
		c.login("alice", "alice-password", fmt.Sprint("r", i))
	}
	c := f.dial()
	c.open("example.lan")
	c.starttls("example.lan")
	c.open("example.lan")
	c.auth(sasl.Plain, "alice", "alice-password", "")
	c.open("example.lan")
	c.send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>one-more</resource></bind></iq>`)
	if got := c.streamError(); got != "resource-constraint" {
		t.Fatalf("the 101st session: %s", got)
	}
	b := f.dial()
	b.login("bob", "bob-password", "desk")
	b.ping("bob")
}
