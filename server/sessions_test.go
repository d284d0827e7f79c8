package server

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"

	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/server/xml"
)

// kickedWith reads until the stream error and returns its condition and
// text.
func (c *client) kickedWith() (condition, text string) {
	c.t.Helper()
	el := c.expect("a stream error", func(el *xml.Element) bool { return el.Name.Local == "error" && el.Name.Space == xml.NSStream })
	for _, k := range el.Elements() {
		if k.Name.Local == "text" {
			text = k.Text()
		} else {
			condition = k.Name.Local
		}
	}
	return condition, text
}

func sessionsOf(f *fixture, filter string) map[string]status.Session {
	out := map[string]status.Session{}
	for _, s := range f.eng.Sessions(filter) {
		out[s.JID] = s
	}
	return out
}

func TestSessionsKickConnections(t *testing.T) {
	f := start(t)
	phone := f.dial()
	phone.login("alice", "alice-password", "phone")
	phone.send(`<presence><priority>5</priority></presence>`)
	phone.expect("own presence", func(el *xml.Element) bool { return el.Name.Local == "presence" })
	laptop := f.dial()
	laptop.preauth("example.lan")
	if el := laptop.auth(sasl.ScramSha256, "alice", "alice-password", ""); el.Name.Local != "success" {
		t.Fatalf("SCRAM: %s", el)
	}
	laptop.open("example.lan")
	laptop.bind("laptop")
	bob := f.dial()
	bob.login("bob", "bob-password", "desk")
	// A connection that has not logged in yet.
	pre := f.dial()
	pre.open("example.lan")

	waitFor(t, "alice's presence in the router", func() bool { return sessionsOf(f, "alice@example.lan/phone")["alice@example.lan/phone"].Available })
	all := sessionsOf(f, "")
	if len(all) != 3 {
		t.Fatalf("sessions: %+v", all)
	}
	p := all["alice@example.lan/phone"]
	if p.Mechanism != "PLAIN" || p.TLS != "TLS 1.3" || p.Remote != phone.conn.LocalAddr().String() || p.Node != "" ||
		p.StanzasIn != 1 || p.StanzasOut < 2 || !p.Available || p.Priority != 5 || time.Since(p.Since) > time.Minute ||
		p.LastRead.Before(p.Since) || time.Since(p.LastRead) > time.Minute {
		t.Errorf("alice's phone: %+v", p)
	}
	if l := all["alice@example.lan/laptop"]; l.Mechanism != "SCRAM-SHA-256" || l.Available || l.StanzasIn != 0 || l.StanzasOut != 1 {
		t.Errorf("alice's laptop: %+v", l)
	}
	for filter, want := range map[string]int{"example.lan": 3, "alice@example.lan": 2, "alice@example.lan/laptop": 1, "bob@example.lan": 1,
		"carol@example.lan": 0, "other.lan": 0, "alice@example.lan/car": 0} {
		if got := len(sessionsOf(f, filter)); got != want {
			t.Errorf("Sessions(%q): %d, want %d", filter, got, want)
		}
	}

	conns := f.eng.Connections()
	kinds := map[status.ConnKind]int{}
	for _, c := range conns {
		kinds[c.Kind]++
		if c.Kind == status.ConnClient && c.Name == "alice@example.lan/phone" {
			if c.Peer != phone.conn.LocalAddr().String() || c.BytesIn < 500 || c.BytesOut < 1000 || time.Since(c.Since) > time.Minute {
				t.Errorf("alice's phone connection: %+v", c)
			}
		}
		if c.Kind == status.ConnPreLogin && (c.Peer != pre.conn.LocalAddr().String() || c.BytesIn == 0 || c.BytesOut == 0) {
			t.Errorf("the connection before login: %+v", c)
		}
	}
	if kinds[status.ConnClient] != 3 || kinds[status.ConnPreLogin] != 1 || len(conns) != 4 {
		t.Errorf("connections: %+v", conns)
	}

	k, err := f.eng.Kick("alice@example.lan", "maintenance until 10:00")
	if k.Here != 2 || err != nil {
		t.Fatalf("Kick(alice): %+v, %v", k, err)
	}
	for _, c := range []*client{phone, laptop} {
		if cond, text := c.kickedWith(); cond != "policy-violation" || text != "maintenance until 10:00" {
			t.Errorf("kicked with %s %q", cond, text)
		}
	}
	waitFor(t, "alice's sessions to end", func() bool { return len(sessionsOf(f, "alice@example.lan")) == 0 })
	if _, err := f.eng.Kick("alice@example.lan/phone", ""); !errors.Is(err, ErrNoSession) {
		t.Errorf("Kick of a JID with no session: %v", err)
	}
	// A full JID closes only that resource; without a reason, the text
	// says who.
	if k, err := f.eng.Kick("bob@example.lan/desk", ""); k.Here != 1 || err != nil {
		t.Fatalf("Kick(bob's desk): %+v, %v", k, err)
	}
	if cond, text := bob.kickedWith(); cond != "policy-violation" || !strings.Contains(text, "administrator") {
		t.Errorf("bob kicked with %s %q", cond, text)
	}
	waitFor(t, "the kicked connections to go", func() bool {
		for _, c := range f.eng.Connections() {
			if c.Kind == status.ConnClient {
				return false
			}
		}
		return true
	})
}

func TestConnectionsComponentAndFederation(t *testing.T) {
	fp := federate(t, nil)
	fp.a.addBridge("cb1")
	if _, got := fp.a.connectComponent("cb1.example.lan", cbSecret); got != "handshake" {
		t.Fatalf("handshake: %s", got)
	}
	// A ping each way: a link from a.lan to b.lan and one back.
	alice := fp.a.userAt("a.lan", "alice")
	bob := fp.b.userAt("b.lan", "bob")
	for _, p := range []struct {
		c  *client
		to string
	}{{alice, "b.lan"}, {bob, "a.lan"}} {
		p.c.send(`<iq type='get' id='ping-` + p.to + `' to='` + p.to + `'><ping xmlns='urn:xmpp:ping'/></iq>`)
		if r := p.c.answer("ping-" + p.to); r.Get("type") != "result" {
			t.Fatalf("ping %s: %s", p.to, r)
		}
	}

	byName := map[string]status.Connection{}
	waitFor(t, "a.lan's connections", func() bool {
		byName = map[string]status.Connection{}
		for _, c := range fp.a.eng.Connections() {
			byName[string(c.Kind)+" "+c.Name] = c
		}
		return byName["server-in b.lan → a.lan"].Kind != ""
	})
	for _, k := range []string{"client alice@a.lan/r", "server-out a.lan → b.lan", "server-in b.lan → a.lan", "component cb1.example.lan"} {
		c, ok := byName[k]
		if !ok || c.BytesIn == 0 || c.BytesOut == 0 || c.Peer == "" || c.Since.IsZero() {
			t.Errorf("%s: %+v (all: %+v)", k, c, byName)
		}
	}
}

// TestSessionsInACluster: a node lists its own sessions in full and the
// other node's resources with that node's id and their presence; its own
// kick closes them on their node (TestClusterKick), node 2's here.
func TestSessionsInACluster(t *testing.T) {
	f1, f2, net := twoNodes(t)
	bob := f2.pipeClient(t, "bob", "bob-password", "desk")
	go io.WriteString(bob.conn, `<presence><priority>3</priority></presence>`)
	bob.expect("own presence", isFrom("presence", "bob@example.lan/desk"))
	f1.pipeClient(t, "alice", "alice-password", "phone")
	net.Settle(t)
	waitFor(t, "bob's presence in node 1's table", func() bool {
		return sessionsOf(f1, "bob@example.lan")["bob@example.lan/desk"].Available
	})
	got := f1.eng.Sessions("example.lan")
	if len(got) != 2 || got[0].JID != "alice@example.lan/phone" || got[0].Node != "" || got[0].Mechanism != "PLAIN" ||
		got[1].JID != "bob@example.lan/desk" || got[1].Node != "n2" || got[1].Priority != 3 || got[1].Remote != "" {
		t.Fatalf("node 1's sessions: %+v", got)
	}
	if k, err := f2.eng.Kick("bob@example.lan", "x"); k.Here != 1 || len(k.Nodes) != 0 || err != nil {
		t.Errorf("node 2's kick: %+v, %v", k, err)
	}
}

// BenchmarkMeter is what counting costs per read and write call on a
// socket (the RouteMessage benchmark runs over pipes, without it).
func BenchmarkMeter(b *testing.B) {
	var m meter
	m.start()
	for i := 0; i < b.N; i++ {
		m.read(1400)
		m.wrote(1400)
	}
}
