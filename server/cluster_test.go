package server

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/cluster/routes/memmesh"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// twoNodes starts two engines on one store (as two nodes of a cluster see
// the same replicated store) joined by an in-memory mesh; the second has
// no listeners of its own (the first holds the ports): its clients come
// over net.Pipe.
func twoNodes(t testing.TB) (*fixture, *fixture, *memmesh.Net) {
	return twoNodesOn(t, memmesh.New())
}

func twoNodesOn(t testing.TB, net *memmesh.Net) (*fixture, *fixture, *memmesh.Net) {
	f1 := start(t)
	e2 := New(Config{Store: f1.st, Files: f1.files, Version: "test", Log: logging.Discard()})
	e2.Start()
	t.Cleanup(e2.Stop)
	f2 := &fixture{t: t, st: f1.st, eng: e2, files: f1.files}
	f1.eng.JoinMesh(net.Node(t, "n1"))
	e2.JoinMesh(net.Node(t, "n2"))
	net.Members("n1", "n2")
	return f1, f2, net
}

// subscribeBoth makes alice and bob subscribed to each other.
func subscribeBoth(t *testing.T, st *store.Store) {
	for _, op := range []store.Op{
		store.RosterSubscribe{From: "alice@example.lan", To: "bob@example.lan", Type: "subscribe", Direction: store.SubOutbound, FromLocal: true, ToLocal: true},
		store.RosterSubscribe{From: "bob@example.lan", To: "alice@example.lan", Type: "subscribed", Direction: store.SubOutbound, FromLocal: true, ToLocal: true},
		store.RosterSubscribe{From: "bob@example.lan", To: "alice@example.lan", Type: "subscribe", Direction: store.SubOutbound, FromLocal: true, ToLocal: true},
		store.RosterSubscribe{From: "alice@example.lan", To: "bob@example.lan", Type: "subscribed", Direction: store.SubOutbound, FromLocal: true, ToLocal: true},
	} {
		if _, err := st.ProposeSettled(context.Background(), op); err != nil {
			t.Fatal(err)
		}
	}
}

func isFrom(kind, from string) func(*xml.Element) bool {
	return func(el *xml.Element) bool { return el.Name.Local == kind && el.Get("from") == from }
}

// TestClusterUsersOnTwoNodes: users on different nodes see each other's
// presence (the probe of one answered from what the other node
// published), chat both ways by bare and full JID, and an IQ to a full JID
// on the other node is answered; a second bind of the same full JID on
// the other node closes the first with conflict; max-sessions counts every
// node's sessions.
func TestClusterUsersOnTwoNodes(t *testing.T) {
	f1, f2, net := twoNodes(t)
	subscribeBoth(t, f1.st)

	bob := f2.pipeClient(t, "bob", "bob-password", "desk")
	go io.WriteString(bob.conn, `<presence><priority>3</priority><status>on node 2</status></presence>`)
	bob.expect("own presence", isFrom("presence", "bob@example.lan/desk"))
	net.Settle(t)

	alice := f1.pipeClient(t, "alice", "alice-password", "phone")
	go io.WriteString(alice.conn, `<presence/>`)
	p := alice.expect("bob's presence, from node 2's table", isFrom("presence", "bob@example.lan/desk"))
	if st := p.Child("", "status"); st == nil || st.Text() != "on node 2" {
		t.Fatalf("bob's presence: %s", p)
	}
	bob.expect("alice's presence, forwarded", isFrom("presence", "alice@example.lan/phone"))

	go io.WriteString(alice.conn, `<message to='bob@example.lan' type='chat' id='m1'><body>to the bare JID</body></message>`)
	if m := bob.expect("the message to the bare JID", isFrom("message", "alice@example.lan/phone")); m.Child("", "body").Text() != "to the bare JID" {
		t.Fatal(m)
	}
	go io.WriteString(bob.conn, `<message to='alice@example.lan/phone' type='chat' id='m2'><body>back</body></message>`)
	alice.expect("the answer to the full JID", isFrom("message", "bob@example.lan/desk"))

	// An IQ to a full JID on the other node (the client answers it)...
	go io.WriteString(alice.conn, `<iq to='bob@example.lan/desk' type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>`)
	q := bob.expect("the iq", isFrom("iq", "alice@example.lan/phone"))
	go io.WriteString(bob.conn, `<iq to='alice@example.lan/phone' type='result' id='`+q.Get("id")+`'/>`)
	alice.reply("v1")
	// ... and to a resource bound nowhere: bounced.
	go io.WriteString(alice.conn, `<iq to='bob@example.lan/nowhere' type='get' id='v2'><query xmlns='jabber:iq:version'/></iq>`)
	if c := stanzaError(alice.reply("v2")); c != "service-unavailable" {
		t.Fatalf("iq to no resource: %s", c)
	}

	if n := f1.eng.UserSessions("bob@example.lan"); n != 1 {
		t.Fatalf("node 1 counts %d sessions of bob", n)
	}
	if total := f1.eng.router.Total(); total != 2 {
		t.Fatalf("node 1 counts %d sessions in all", total)
	}

	// Roster pushes: bob's roster changed from his session on node 1
	// reaches his session on node 2, which asked for the roster.
	go io.WriteString(bob.conn, `<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`)
	bob.reply("r1")
	laptop := f1.pipeClient(t, "bob", "bob-password", "laptop")
	go io.WriteString(laptop.conn, `<iq type='set' id='r2'><query xmlns='jabber:iq:roster'><item jid='carol@example.lan' name='Carol'/></query></iq>`)
	laptop.reply("r2")
	push := bob.expect("the roster push from node 1", func(el *xml.Element) bool {
		return el.Name.Local == "iq" && el.Get("type") == "set" && el.Child("jabber:iq:roster", "query") != nil
	})
	if it := push.Child("jabber:iq:roster", "query").Child("jabber:iq:roster", "item"); it == nil || it.Get("jid") != "carol@example.lan" {
		t.Fatalf("push: %s", push)
	}
	laptop.conn.Close()
	waitFor(t, "bob/laptop gone from node 2's table", func() bool {
		_, ok := f2.eng.Routes().Resource("bob@example.lan", "laptop")
		return !ok
	})

	// Node 2 unreachable: bob's contacts here learn he is gone; back: his
	// presence again.
	net.Members("n1")
	p = alice.expect("bob unavailable, node 2 gone", isFrom("presence", "bob@example.lan/desk"))
	if p.Get("type") != "unavailable" {
		t.Fatalf("bob's presence with node 2 gone: %s", p)
	}
	net.Members("n1", "n2")
	p = alice.expect("bob's presence, node 2 back", isFrom("presence", "bob@example.lan/desk"))
	if p.Get("type") != "" || p.Child("", "status") == nil {
		t.Fatalf("bob's presence with node 2 back: %s", p)
	}

	// The same full JID bound on node 1: node 2's session ends with
	// conflict.
	f1.pipeClient(t, "bob", "bob-password", "desk")
	if c := bob.streamError(); c != "conflict" {
		t.Fatalf("the older bob/desk on node 2: %s", c)
	}
	net.Settle(t)
	waitFor(t, "node 2 to see bob/desk on node 1", func() bool {
		n, ok := f2.eng.Routes().Resource("bob@example.lan", "desk")
		return ok && n == "n1" && f2.eng.router.Len() == 0
	})

	// max-sessions 2: node 1 has alice and bob; node 2 refuses a third.
	f1.setConfig(store.XMPPMaxSessions, "2", func(c store.XMPPConfig) bool { return c.MaxSessions == 2 })
	waitFor(t, "node 2 to apply max-sessions", func() bool {
		f2.eng.mu.Lock()
		defer f2.eng.mu.Unlock()
		return f2.eng.xmpp.MaxSessions == 2
	})
	c := f2.pipeAuth(t, "alice", "alice-password")
	go io.WriteString(c.conn, `<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>laptop</resource></bind></iq>`)
	if e := c.streamError(); e != "resource-constraint" {
		t.Fatalf("a third session in a cluster of max 2: %s", e)
	}
	if strings.Contains(f1.eng.Status().LastError, "panic") {
		t.Fatal(f1.eng.Status().LastError)
	}
}

// TestClusterComponentOnOtherNode: a call bridge connected to node 1 is
// reachable from a user on node 2, and its answer comes back; when it
// disconnects, node 2 bounces what is sent to it.
func TestClusterComponentOnOtherNode(t *testing.T) {
	f1, f2, net := twoNodes(t)
	f1.addBridge("cb1")
	comp, got := f1.connectComponent("cb1.example.lan", cbSecret)
	if got != "handshake" {
		t.Fatalf("handshake: %s", got)
	}
	net.Settle(t)
	waitFor(t, "node 2 to see the component", func() bool {
		n, ok := f2.eng.Routes().Component("cb1.example.lan")
		return ok && n == "n1"
	})
	alice := f2.pipeClient(t, "alice", "alice-password", "phone")
	// The server's items on node 2 list it.
	go io.WriteString(alice.conn, `<iq type='get' id='items' to='example.lan'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
	if items := alice.reply("items"); !strings.Contains(items.String(), `jid="cb1.example.lan"`) {
		t.Fatalf("disco#items on node 2: %s", items)
	}
	go io.WriteString(alice.conn, `<message to='room@cb1.example.lan' type='chat'><body>call me</body></message>`)
	m := comp.expect("the message from node 2", isFrom("message", "alice@example.lan/phone"))
	if m.Name.Space != "jabber:component:accept" || m.Child("", "body").Text() != "call me" {
		t.Fatalf("component got %s", m)
	}
	comp.send(`<message from='room@cb1.example.lan' to='alice@example.lan/phone' type='chat'><body>ringing</body></message>`)
	alice.expect("the component's answer", isFrom("message", "room@cb1.example.lan"))

	comp.conn.Close()
	waitFor(t, "node 2 to forget the component", func() bool {
		_, ok := f2.eng.Routes().Component("cb1.example.lan")
		return !ok
	})
	go io.WriteString(alice.conn, `<iq to='cb1.example.lan' type='get' id='i1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if c := stanzaError(alice.reply("i1")); c != "service-unavailable" {
		t.Fatalf("to a component gone: %s", c)
	}
}

// BenchmarkRouteMessageCluster: BenchmarkRouteMessage/pipe with the
// receiver on the other node (two engines in this process over the
// in-memory mesh, so cpu-ns/msg is both nodes' CPU, without the cluster
// link's TLS): what a message between nodes costs against one on a node.
func BenchmarkRouteMessageCluster(b *testing.B) {
	for _, to := range []string{"full", "bare"} {
		b.Run(to, func(b *testing.B) {
			net := memmesh.New()
			net.Blocking = true
			f1, f2, _ := twoNodesOn(b, net)
			f1.eng.c2s.StanzaRate = func() (float64, int) { return 1e12, 1 << 30 }
			receiver := f2.pipeLogin(b, "bob", "bob-password", "desk")
			sender := f1.pipeLogin(b, "alice", "alice-password", "bench")
			net.Settle(b)
			target := "bob@example.lan/desk"
			if to == "bare" {
				target = "bob@example.lan"
			}
			runRoute(b, sender, receiver, target)
		})
	}
}

// TestClusterNodeGoneTellsOtherServers: when a node dies, its users'
// contacts on other servers are told they are unavailable, once, by the
// surviving node with the lowest id (the dead node cannot say so), one
// stanza to each contact subscribed to the user's presence and none to
// the others.
func TestClusterNodeGoneTellsOtherServers(t *testing.T) {
	f1, f2, net := twoNodes(t)
	r1, r2 := &fakeRemote{}, &fakeRemote{}
	for _, x := range []struct {
		f *fixture
		r *fakeRemote
	}{{f1, r1}, {f2, r2}} {
		x.f.eng.mu.Lock()
		x.f.eng.router.Remote = x.r
		x.f.eng.mu.Unlock()
	}
	f1.putItem(alice, store.RosterItem{JID: romeo, Subscription: store.SubBoth})
	f1.putItem(alice, store.RosterItem{JID: "juliet@remote.example", Subscription: store.SubTo})

	a := f2.pipeClient(t, "alice", "alice-password", "desk")
	go io.WriteString(a.conn, `<presence/>`)
	r2.take(t, "alice's presence to romeo, from node 2", is("presence", "available", alice+"/desk", romeo))
	net.Settle(t)
	waitFor(t, "node 1 to see alice available", func() bool {
		for _, rm := range f1.eng.router.RemoteAvailable(alice) {
			if rm.Resource == "desk" {
				return true
			}
		}
		return false
	})
	r1.drain()

	net.Members("n1") // node 2 dies
	r1.take(t, "alice's unavailable presence to romeo, from node 1", is("presence", "unavailable", alice+"/desk", romeo))
	time.Sleep(50 * time.Millisecond)
	if got := describe(r1.drain()); got != "" {
		t.Fatalf("node 1 also routed out: %s", got)
	}
}

// TestClusterOfflineStoredWhileOnline: a message stored offline by one
// node for a user whose session another node bound a moment before (the
// storing node did not know of it yet, and the session's flush at its
// initial presence had found nothing) reaches that session as soon as the
// store commits it, not at the user's next login.
func TestClusterOfflineStoredWhileOnline(t *testing.T) {
	f1, f2, _ := twoNodes(t)
	bob := f2.pipeClient(t, "bob", "bob-password", "desk")
	go io.WriteString(bob.conn, `<presence/>`)
	bob.expect("own presence", isFrom("presence", "bob@example.lan/desk"))
	// As node 1 does when it routes a message to bob without seeing him.
	stanza := `<message xmlns="jabber:client" from="alice@example.lan/phone" to="bob@example.lan" type="chat" id="late"><body>stored by node 1</body></message>`
	if _, err := f1.st.ProposeSettled(context.Background(), store.OfflinePush{User: "bob@example.lan", Stanza: []byte(stanza)}); err != nil {
		t.Fatal(err)
	}
	m := bob.expect("the stored message, at once", isFrom("message", "alice@example.lan/phone"))
	if m.Child("", "body").Text() != "stored by node 1" {
		t.Fatalf("bob got %s", m)
	}
	waitFor(t, "the message deleted from the store once written", func() bool {
		msgs, err := f1.st.OfflineAfter("bob@example.lan", 0, 10)
		return err == nil && len(msgs) == 0
	})
}

// TestClusterKick: an administrator's kick on node 1 closes the session a
// user has on node 2 (policy-violation with the reason), and says so; a
// node that cannot be asked is named as unanswered.
func TestClusterKick(t *testing.T) {
	f1, f2, net := twoNodes(t)
	// user is online on node 2, and node 1 knows it.
	online := func(user string) *client {
		c := f2.pipeClient(t, user, user+"-password", "desk")
		go io.WriteString(c.conn, `<presence/>`)
		c.expect("own presence", isFrom("presence", user+"@example.lan/desk"))
		net.Settle(t)
		waitFor(t, "node 1 to see "+user+" on node 2", func() bool {
			n, ok := f1.eng.Routes().Resource(user+"@example.lan", "desk")
			return ok && n == "n2"
		})
		return c
	}
	alice := online("alice")
	// Read alice's stream meanwhile (net.Pipe has no buffer: node 2's
	// close waits for the reader).
	ended := make(chan string, 1)
	go func() {
		for {
			el, err := alice.rd.Next()
			if err != nil {
				ended <- "no stream error: " + err.Error()
				return
			}
			if el.Name.Local == "error" && el.Name.Space == xml.NSStream {
				ended <- el.Elements()[0].Name.Local
				return
			}
		}
	}()
	k, err := f1.eng.Kick("alice@example.lan", "maintenance")
	if err != nil || k.Here != 0 || k.Nodes["n2"] != 1 || len(k.Unanswered) != 0 {
		t.Fatalf("kick: %+v %v", k, err)
	}
	if c := <-ended; c != "policy-violation" {
		t.Fatalf("alice's session on node 2 ended with %q", c)
	}

	online("bob")
	net.Cut("n1", "n2", true)
	if k, err := f1.eng.Kick("bob@example.lan/desk", ""); err != nil || len(k.Unanswered) != 1 || k.Unanswered[0] != "n2" {
		t.Fatalf("kick over a cut link: %+v %v", k, err)
	}
	if _, err := f1.eng.Kick("nobody@example.lan", ""); !errors.Is(err, ErrNoSession) {
		t.Fatalf("kick of nobody: %v", err)
	}
}
