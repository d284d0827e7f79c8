package routes

import (
	"testing"

	"github.com/parley-xmpp/parley/server/cluster"
	"github.com/parley-xmpp/parley/server/cluster/clustertest"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/store"
)

// TestRealMesh: the route table and forwarding over the cluster's own
// Mesh (mutual TLS on loopback, two nodes of one raft cluster): a bind
// on one node is seen on the other, a message to it is forwarded there,
// and when the node is gone its entries are dropped.
func TestRealMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two raft nodes")
	}
	p := clustertest.NewPKI(t)

	type node struct {
		c     *cluster.Cluster
		r     *router.Router
		t     *Table
		off   *offline
		addr  string
		store *store.Store
	}
	start := func() *node {
		c, st, addr := clustertest.Node(t, p)
		n := &node{c: c, r: router.New(), off: &offline{}, addr: addr, store: st}
		n.r.Hosted = func(d string) bool { return d == "a.lan" }
		n.r.Offline = n.off
		n.t = New(Config{Mesh: c.Mesh(), Router: n.r, Log: logging.Discard()})
		t.Cleanup(func() { n.t.Close() })
		return n
	}
	a, b := start(), start()
	if err := a.c.Initialize(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.c.Join(a.addr); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two reachable members", func() bool {
		return len(a.c.Mesh().Members()) == 2 && len(b.c.Mesh().Members()) == 2
	})
	bob := &sess{bare: "bob@a.lan", res: "desk", r: b.r}
	b.r.Bind(bob)
	b.r.SetAvailable(bob, true, 1)
	eventually(t, "a sees bob on b", func() bool {
		n, ok := a.t.Resource("bob@a.lan", "desk")
		return ok && n == b.c.ID()
	})
	for _, to := range []string{"bob@a.lan/desk", "bob@a.lan"} {
		if c, _ := a.r.Route(msg("chat", to, to), jid(to)); c != "" {
			t.Fatal(c)
		}
	}
	// Both reach bob, unless the box is so loaded that a missed the
	// hellos of b for ReachableAfter: then b counted as gone for a
	// moment, and a stored what it had not had acknowledged (the delivery
	// rule; never lost).
	eventually(t, "bob gets both messages", func() bool { return bob.count()+a.off.count() == 2 })
	if n := a.off.count(); n > 0 {
		t.Logf("%d of the 2 messages stored on a: b was unreachable for a moment", n)
	}
	eventually(t, "both acknowledged", func() bool { return a.t.Pending(b.c.ID()) == 0 })

	// b goes: its entries go on a, and what was for bob is stored there.
	before := a.off.count()
	b.t.Close()
	b.c.Close()
	eventually(t, "a drops b's entries", func() bool { return a.t.Len() == 0 })
	a.r.Route(msg("chat", "bob@a.lan/desk", "later"), jid("bob@a.lan/desk"))
	if a.off.count() != before+1 {
		t.Fatal("not stored offline on a")
	}
}
