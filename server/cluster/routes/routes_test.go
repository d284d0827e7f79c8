package routes

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/address"
	"github.com/parley-xmpp/parley/server/cluster"
	"github.com/parley-xmpp/parley/server/cluster/routes/memmesh"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
)

// sess is a session that records what it is given.
type sess struct {
	bare, res string
	mu        sync.Mutex
	got       []*xml.Element
	replaced  bool
	fail      bool // Deliver fails (a connection going away)
	r         *router.Router
}

func (s *sess) Bare() string     { return s.bare }
func (s *sess) Resource() string { return s.res }
func (s *sess) Full() string     { return s.bare + "/" + s.res }
func (s *sess) Domain() string   { return address.Domain(s.bare) }
func (s *sess) Deliver(el *xml.Element) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		go s.r.Unbind(s)
		return false
	}
	s.got = append(s.got, el)
	return true
}
func (s *sess) Replace() {
	s.mu.Lock()
	s.replaced = true
	s.mu.Unlock()
	s.r.Unbind(s)
}
func (s *sess) Close(*stream.Error) {}
func (s *sess) Out() *stream.Conn   { return nil }
func (s *sess) Value(any) any       { return nil }
func (s *sess) SetValue(any, any)   {}

func (s *sess) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

func (s *sess) wasReplaced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replaced
}

// offline records what is stored.
type offline struct {
	mu     sync.Mutex
	stored []string
}

func (o *offline) Exists(bare string) bool { return strings.HasSuffix(bare, "@a.lan") }
func (o *offline) Store(el *xml.Element, to router.JID) {
	o.mu.Lock()
	o.stored = append(o.stored, to.Bare+" "+el.Get("id"))
	o.mu.Unlock()
}
func (o *offline) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.stored)
}

// comps is a component registry with the components connected here.
type comps struct {
	mu  sync.Mutex
	up  map[string]bool
	got int
}

func (c *comps) Known(d string) bool { return strings.HasPrefix(d, "cb") }
func (c *comps) Route(d string, el *xml.Element) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up[d] {
		c.got++
		return true
	}
	return false
}
func (c *comps) Connected() []string { return nil }

type bounce struct {
	mu    sync.Mutex
	conds []string
}

func (b *bounce) add(el *xml.Element, cond, text string) {
	b.mu.Lock()
	b.conds = append(b.conds, el.Name.Local+" "+cond)
	b.mu.Unlock()
}

// testNode is a router and its route table on a fake mesh.
type testNode struct {
	id      string
	r       *router.Router
	t       *Table
	mesh    *memmesh.Node
	offline *offline
	comps   *comps
	bounced *bounce
	log     *bytes.Buffer
}

func newNode(t testing.TB, net *memmesh.Net, id string, maxPerNode int) *testNode {
	return newNodeWith(t, net, id, func(c *Config) { c.MaxPerNode = maxPerNode })
}

func newNodeWith(t testing.TB, net *memmesh.Net, id string, set func(*Config)) *testNode {
	n := &testNode{id: id, r: router.New(), mesh: net.Node(t, id), offline: &offline{}, comps: &comps{up: map[string]bool{}}, bounced: &bounce{}, log: &bytes.Buffer{}}
	n.r.Hosted = func(d string) bool { return d == "a.lan" }
	n.r.Offline = n.offline
	n.r.Components = n.comps
	cfg := Config{Mesh: n.mesh, Router: n.r, Bounce: n.bounced.add, Log: logging.NewWriter(&syncWriter{w: n.log}, logging.LevelLow), ResyncEvery: 20 * time.Millisecond}
	if set != nil {
		set(&cfg)
	}
	n.t = New(cfg)
	t.Cleanup(n.t.Close)
	return n
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func (n *testNode) logged() string {
	return n.log.String()
}

// bind binds and makes available a session of bare/res here.
func (n *testNode) bind(bare, res string, prio int) *sess {
	s := &sess{bare: bare, res: res, r: n.r}
	if err := n.r.BindChecked(s, 0); err != nil {
		panic(err)
	}
	if prio != -1000 {
		n.r.SetPresence(s, true, prio, xml.New(stream.NSClient, "presence").Add(xml.New(stream.NSClient, "priority").AddText("x")))
	}
	return s
}

func cluster3(t *testing.T) (*memmesh.Net, *testNode, *testNode, *testNode) {
	net := memmesh.New()
	a, b, c := newNode(t, net, "a", 0), newNode(t, net, "b", 0), newNode(t, net, "c", 0)
	net.Members("a", "b", "c")
	net.Settle(t)
	return net, a, b, c
}

func jid(s string) router.JID {
	j := router.JID{}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		j.Resource, s = s[i+1:], s[:i]
	}
	j.Bare = s
	if i := strings.IndexByte(s, '@'); i >= 0 {
		j.Local, j.Domain = s[:i], s[i+1:]
	} else {
		j.Domain = s
	}
	return j
}

func msg(typ, to, id string) *xml.Element {
	return xml.New(stream.NSClient, "message", "type", typ, "to", to, "from", "alice@a.lan/x", "id", id).Add(xml.New(stream.NSClient, "body").AddText("hi"))
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !f(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
	}
}

// TestOwnership: each node publishes its own entries (bind, presence,
// unbind, components), a node that appears gets the others' in full, and
// the entries of a node that leaves are dropped at once.
func TestOwnership(t *testing.T) {
	net := memmesh.New()
	a, b := newNode(t, net, "a", 0), newNode(t, net, "b", 0)
	net.Members("a", "b")
	bob := a.bind("bob@a.lan", "desk", 5)
	a.bind("bob@a.lan", "phone", -1000) // bound, never available
	a.t.ComponentUp("cb1.a.lan")
	net.Settle(t)
	if node, ok := b.t.Resource("bob@a.lan", "desk"); !ok || node != "a" {
		t.Fatalf("b sees bob/desk on %q %v", node, ok)
	}
	rem := b.t.AppendRemote(nil, "bob@a.lan")
	if len(rem) != 2 || b.t.Len() != 2 {
		t.Fatalf("b's table: %+v", rem)
	}
	for _, r := range rem {
		if r.Resource == "desk" && (!r.Available || r.Priority != 5 || !bytes.Contains(r.Presence, []byte("<priority>x</priority>"))) {
			t.Fatalf("desk: %+v", r)
		}
		if r.Resource == "phone" && r.Available {
			t.Fatalf("phone: %+v", r)
		}
	}
	if node, ok := b.t.Component("cb1.a.lan"); !ok || node != "a" {
		t.Fatal("b does not see a's component")
	}
	if b.r.Total() != 2 || !b.r.HasAvailable("bob@a.lan") {
		t.Fatal("b's router does not count a's sessions")
	}

	// A third node appears: it gets a's and b's shares in full.
	c := newNode(t, net, "c", 0)
	b.bind("carol@a.lan", "x", 0)
	net.Members("a", "b", "c")
	net.Settle(t)
	if c.t.Len() != 3 || c.t.Resources("bob@a.lan") != 2 || c.t.Resources("carol@a.lan") != 1 {
		t.Fatalf("c after joining: %d entries", c.t.Len())
	}
	if _, ok := c.t.Component("cb1.a.lan"); !ok {
		t.Fatal("c does not see a's component")
	}

	a.r.Unbind(bob)
	a.t.ComponentDown("cb1.a.lan")
	net.Settle(t)
	if _, ok := c.t.Resource("bob@a.lan", "desk"); ok || c.t.Len() != 2 {
		t.Fatal("the unbind did not reach c")
	}
	if _, ok := c.t.Component("cb1.a.lan"); ok {
		t.Fatal("the component's end did not reach c")
	}

	// a becomes unreachable: its entries go at once, everywhere.
	net.Members("b", "c")
	if c.t.Resources("bob@a.lan") != 0 || b.t.Len() != 0 || c.t.Len() != 1 {
		t.Fatalf("a's entries stay: b %d, c %d", b.t.Len(), c.t.Len())
	}
	// and come back with it.
	// (a never saw b and c go: they ask it for its share.)
	net.Members("a", "b", "c")
	eventually(t, "a's entries back on b and c", func() bool {
		return c.t.Resources("bob@a.lan") == 1 && b.t.Len() == 1 && c.t.Len() == 2 && a.t.Len() == 1
	})
}

// TestResync: a change a node could not take (its queue was full, the
// link failed) reaches it with the next full sync.
func TestResync(t *testing.T) {
	net := memmesh.New()
	a, b := newNode(t, net, "a", 0), newNode(t, net, "b", 0)
	net.Members("a", "b")
	net.Settle(t)
	net.Cut("a", "b", true)
	a.bind("bob@a.lan", "desk", 1)
	a.bind("bob@a.lan", "phone", 1)
	if b.t.Len() != 0 {
		t.Fatal("sent over a cut link")
	}
	net.Cut("a", "b", false)
	eventually(t, "the resync", func() bool { return b.t.Len() == 2 })
}

// TestForwardFull: a stanza to a full JID bound on another node goes there
// in one hop and reaches that session.
func TestForwardFull(t *testing.T) {
	net, a, b, _ := cluster3(t)
	bob := b.bind("bob@a.lan", "desk", 0)
	net.Settle(t)
	if c, _ := a.r.Route(msg("chat", "bob@a.lan/desk", "1"), jid("bob@a.lan/desk")); c != "" {
		t.Fatal(c)
	}
	iq := xml.New(stream.NSClient, "iq", "type", "get", "id", "2", "to", "bob@a.lan/desk", "from", "alice@a.lan/x")
	if c, _ := a.r.Route(iq, jid("bob@a.lan/desk")); c != "" {
		t.Fatal(c)
	}
	net.Settle(t)
	if bob.count() != 2 || net.Received("b", cluster.ChanStanza) != 2 || net.Received("c", cluster.ChanStanza) != 0 {
		t.Fatalf("bob got %d", bob.count())
	}
	if got := bob.got[0]; got.Get("id") != "1" || got.Child(stream.NSClient, "body") == nil {
		t.Fatalf("forwarded as %s", got)
	}
}

// TestBareTargets: a message to a bare JID goes to the resources with the
// highest priority over every node (RFC 6121 §8.5.2.1.1), each node once;
// a headline to every non-negative one; presence to every available one.
func TestBareTargets(t *testing.T) {
	net, a, b, c := cluster3(t)
	la := a.bind("bob@a.lan", "a1", 1)
	lb := b.bind("bob@a.lan", "b1", 5)
	lb2 := b.bind("bob@a.lan", "b2", 5)
	lc := c.bind("bob@a.lan", "c1", -1)
	net.Settle(t)

	a.r.Route(msg("chat", "bob@a.lan", "1"), jid("bob@a.lan"))
	net.Settle(t)
	if la.count() != 0 || lb.count() != 1 || lb2.count() != 1 || lc.count() != 0 {
		t.Fatalf("chat: a1 %d b1 %d b2 %d c1 %d", la.count(), lb.count(), lb2.count(), lc.count())
	}
	if net.Received("b", cluster.ChanStanza) != 1 {
		t.Fatal("b got the message more than once")
	}

	// Same priority here and there: both.
	a.r.SetPresence(la, true, 5, nil)
	net.Settle(t)
	a.r.Route(msg("normal", "bob@a.lan", "2"), jid("bob@a.lan"))
	net.Settle(t)
	if la.count() != 1 || lb.count() != 2 || lb2.count() != 2 {
		t.Fatalf("normal: a1 %d b1 %d b2 %d", la.count(), lb.count(), lb2.count())
	}

	// A local resource above the others: only here, nothing sent.
	a.r.SetPresence(la, true, 9, nil)
	net.Settle(t)
	before := net.Received("b", cluster.ChanStanza)
	a.r.Route(msg("chat", "bob@a.lan", "3"), jid("bob@a.lan"))
	net.Settle(t)
	if la.count() != 2 || net.Received("b", cluster.ChanStanza) != before {
		t.Fatal("a higher local resource did not take the message alone")
	}

	// Headline: every non-negative resource; presence: every available.
	a.r.Route(msg("headline", "bob@a.lan", "4"), jid("bob@a.lan"))
	a.r.Route(xml.New(stream.NSClient, "presence", "to", "bob@a.lan", "from", "alice@a.lan/x"), jid("bob@a.lan"))
	net.Settle(t)
	if la.count() != 4 || lb.count() != 4 || lb2.count() != 4 || lc.count() != 1 {
		t.Fatalf("headline+presence: a1 %d b1 %d b2 %d c1 %d", la.count(), lb.count(), lb2.count(), lc.count())
	}
	if a.offline.count()+b.offline.count()+c.offline.count() != 0 {
		t.Fatal("something was stored offline")
	}
}

// TestSendFails: when the node cannot be sent to, the sender decides
// alone: a message goes to a local resource or offline storage, an IQ
// bounces.
func TestSendFails(t *testing.T) {
	net, a, b, _ := cluster3(t)
	b.bind("bob@a.lan", "desk", 1)
	net.Settle(t)
	net.Cut("a", "b", true)
	if c, _ := a.r.Route(msg("chat", "bob@a.lan/desk", "1"), jid("bob@a.lan/desk")); c != "" {
		t.Fatal(c)
	}
	if c, _ := a.r.Route(msg("chat", "bob@a.lan", "2"), jid("bob@a.lan")); c != "" {
		t.Fatal(c)
	}
	if a.offline.count() != 2 {
		t.Fatalf("stored %v", a.offline.stored)
	}
	iq := xml.New(stream.NSClient, "iq", "type", "get", "id", "3", "to", "bob@a.lan/desk", "from", "alice@a.lan/x")
	if c, _ := a.r.Route(iq, jid("bob@a.lan/desk")); c != "service-unavailable" {
		t.Fatalf("iq: %q", c)
	}
	// A local resource takes what the node could not.
	la := a.bind("bob@a.lan", "here", 0)
	a.r.Route(msg("chat", "bob@a.lan/desk", "4"), jid("bob@a.lan/desk"))
	if la.count() != 1 || a.offline.count() != 2 {
		t.Fatal("the local resource did not take it")
	}
}

// TestGoneOnArrival: a session gone by the time its stanza arrives: the
// receiving node applies the delivery rule itself (its own resources, its
// offline storage, a bounce), and never sends it on: no second hop.
func TestGoneOnArrival(t *testing.T) {
	net, a, b, c := cluster3(t)
	gone := b.bind("bob@a.lan", "desk", 1)
	c.bind("bob@a.lan", "other", 0) // on c: a second hop would find it
	net.Settle(t)
	gone.mu.Lock()
	gone.fail = true
	gone.mu.Unlock()
	a.r.Route(msg("chat", "bob@a.lan/desk", "1"), jid("bob@a.lan/desk"))
	iq := xml.New(stream.NSClient, "iq", "type", "get", "id", "2", "to", "bob@a.lan/desk", "from", "alice@a.lan/x")
	// (b may have published the unbind by now: then a bounces it.)
	if c, _ := a.r.Route(iq, jid("bob@a.lan/desk")); c != "" && c != "service-unavailable" {
		t.Fatal(c)
	} else if c == "" {
		eventually(t, "b bounces the iq", func() bool {
			b.bounced.mu.Lock()
			defer b.bounced.mu.Unlock()
			return len(b.bounced.conds) == 1 && b.bounced.conds[0] == "iq service-unavailable"
		})
	}
	net.Settle(t)
	eventually(t, "b stores the message", func() bool { return b.offline.count() == 1 })
	if n := net.Received("c", cluster.ChanStanza); n != 0 {
		t.Fatalf("c got %d forwarded stanzas: a second hop", n)
	}
	if a.offline.count() != 0 {
		t.Fatal("stored twice")
	}
}

// TestComponentElsewhere: a component connected to another node is
// reached there; not connected anywhere, the stanza bounces.
func TestComponentElsewhere(t *testing.T) {
	net, a, b, _ := cluster3(t)
	b.comps.mu.Lock()
	b.comps.up["cb1.a.lan"] = true
	b.comps.mu.Unlock()
	b.t.ComponentUp("cb1.a.lan")
	net.Settle(t)
	iq := xml.New(stream.NSClient, "iq", "type", "get", "id", "1", "to", "cb1.a.lan", "from", "alice@a.lan/x")
	if c, _ := a.r.Route(iq, jid("cb1.a.lan")); c != "" {
		t.Fatal(c)
	}
	net.Settle(t)
	eventually(t, "the component gets it", func() bool {
		b.comps.mu.Lock()
		defer b.comps.mu.Unlock()
		return b.comps.got == 1
	})
	if c, _ := a.r.Route(iq, jid("cb2.a.lan")); c != "service-unavailable" {
		t.Fatalf("cb2: %q", c)
	}
}

// TestConflict: binding a full JID already bound on another node closes
// that node's session (the newer wins), and the table ends with one entry.
func TestConflict(t *testing.T) {
	net, a, b, c := cluster3(t)
	old := a.bind("bob@a.lan", "desk", 0)
	net.Settle(t)
	time.Sleep(time.Millisecond) // a later bind time, on any clock
	cur := b.bind("bob@a.lan", "desk", 0)
	net.Settle(t)
	eventually(t, "the older session is replaced", old.wasReplaced)
	net.Settle(t)
	if cur.wasReplaced() {
		t.Fatal("the newer session was closed")
	}
	if node, _ := c.t.Resource("bob@a.lan", "desk"); node != "b" || c.t.Len() != 1 || a.t.Len() != 1 {
		t.Fatalf("c sees desk on %q, %d entries", node, c.t.Len())
	}
}

// TestMaxSessions: xmpp max-sessions counts the sessions of every node,
// and one account's resources are counted over every node too.
func TestMaxSessions(t *testing.T) {
	net, a, b, _ := cluster3(t)
	b.bind("bob@a.lan", "1", 0)
	b.bind("carol@a.lan", "1", 0)
	net.Settle(t)
	if err := a.r.BindChecked(&sess{bare: "dave@a.lan", res: "x", r: a.r}, 2); err != router.ErrTooManySessions {
		t.Fatalf("a third session of max 2: %v", err)
	}
	if err := a.r.BindChecked(&sess{bare: "dave@a.lan", res: "x", r: a.r}, 3); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < router.MaxResources-1; i++ {
		b.bind("bob@a.lan", "r"+string(rune('a'+i/26))+string(rune('a'+i%26)), -1000)
	}
	net.Settle(t)
	if err := a.r.BindChecked(&sess{bare: "bob@a.lan", res: "one-more", r: a.r}, 0); err != router.ErrTooManyResources {
		t.Fatalf("resource %d over the nodes: %v", router.MaxResources+1, err)
	}
}

// TestFlood: a peer cannot grow the table beyond its caps, and what does
// not decode is dropped with one log line per episode.
func TestFlood(t *testing.T) {
	net := memmesh.New()
	a := newNode(t, net, "a", 50)
	evil := net.Node(t, "evil")
	net.Members("a", "evil")
	var b []byte
	for i := 0; i < 200; i++ {
		b = appendOp(b, &op{code: opBind, bare: "u" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "@a.lan", res: "r", at: 1})
	}
	evil.Send("a", cluster.ChanRoutes, b)
	// One user, many resources: capped per user too.
	b = nil
	for i := 0; i < 2*router.MaxResources; i++ {
		b = appendOp(b, &op{code: opBind, bare: "v@a.lan", res: "r" + string(rune('a'+i%26)) + string(rune('a'+i/26)), at: 1})
	}
	evil.Send("a", cluster.ChanRoutes, b)
	for i := 0; i < 100; i++ {
		evil.Send("a", cluster.ChanRoutes, []byte{opBind, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		evil.Send("a", cluster.ChanRoutes, []byte{99})
		evil.Send("a", cluster.ChanStanza, []byte{stanzaVersion, 0, 0, 1, 'x'})
		evil.Send("a", cluster.ChanStanza, append([]byte{stanzaVersion, 0, 0, 5, 'a', '.', 'l', 'a', 'n', 0, 0}, "<message><unclosed"...))
	}
	// Asking for the full share a hundred thousand times: one at a time.
	net.Settle(t)
	before := net.Received("evil", cluster.ChanRoutes)
	evil.Send("a", cluster.ChanRoutes, bytes.Repeat([]byte{opSyncReq}, 100000))
	net.Settle(t)
	time.Sleep(20 * time.Millisecond) // the sync goroutine
	net.Settle(t)
	if n := net.Received("evil", cluster.ChanRoutes) - before; n > 1 {
		t.Fatalf("%d messages sent back for a flood of sync requests", n)
	}
	big := make([]byte, MaxMessage+1)
	evil.Send("a", cluster.ChanRoutes, big)
	net.Settle(t)
	if a.t.Len() != 50 {
		t.Fatalf("a holds %d of evil's entries (cap 50)", a.t.Len())
	}
	out := a.logged()
	if n := strings.Count(out, "\n"); n > 3 {
		t.Fatalf("%d log lines for one flood:\n%s", n, out)
	}
	if !strings.Contains(out, "evil") {
		t.Fatalf("the log does not name the node:\n%s", out)
	}
	// The per-user cap, on a fresh table.
	a2 := newNode(t, net, "a2", 0)
	net.Members("a2", "evil")
	evil.Send("a2", cluster.ChanRoutes, b)
	net.Settle(t)
	if n := a2.t.Resources("v@a.lan"); n != router.MaxResources {
		t.Fatalf("v has %d resources from one node", n)
	}
}

// BenchmarkRoute: a chat message routed to a full JID on this node, and
// on another node through the table (encoded, sent over the in-memory
// mesh, decoded and delivered there): what forwarding adds per message.
func BenchmarkRoute(b *testing.B) {
	for _, where := range []string{"local", "other-node"} {
		b.Run(where, func(b *testing.B) {
			net := memmesh.New()
			a, other := newNode(b, net, "a", 0), newNode(b, net, "b", 0)
			net.Members("a", "b")
			n := a
			if where == "other-node" {
				n = other
			}
			s := n.bind("bob@a.lan", "desk", 0)
			net.Settle(b)
			el := msg("chat", "bob@a.lan/desk", "1")
			to := jid("bob@a.lan/desk")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				a.r.Route(el, to)
				if i%512 == 0 {
					net.Settle(b) // the queue holds 4096
					s.mu.Lock()
					s.got = s.got[:0]
					s.mu.Unlock()
				}
			}
			net.Settle(b)
		})
	}
}

// TestBadTreeDropped: a forwarded stanza whose tree does not decode (cut
// short, bytes after it, not a stanza, too deep, counts beyond the
// message) is dropped, and the next one from the same node is delivered.
func TestBadTreeDropped(t *testing.T) {
	net, a, _, c := cluster3(t)
	bob := a.bind("bob@a.lan", "desk", 0)
	head := []byte{stanzaVersion, flagFallback, 3, 'b', 'o', 'b', 5, 'a', '.', 'l', 'a', 'n', 4, 'd', 'e', 's', 'k', 1, 4, 'd', 'e', 's', 'k'}
	good := appendElement(nil, msg("chat", "bob@a.lan/desk", "x"))
	deep := xml.New(stream.NSClient, "message")
	for e, i := deep, 0; i < xml.DefaultLimits.MaxDepth; i++ {
		c := xml.New("urn:x", "x")
		e.Add(c)
		e = c
	}
	bads := [][]byte{
		good[:len(good)-3],                   // cut short
		append(append([]byte{}, good...), 0), // a byte after it
		appendElement(nil, xml.New(stream.NSClient, "foo")),
		appendElement(nil, xml.New("jabber:server", "message")),
		appendElement(nil, deep),
		{0, 7, 'm', 'e', 's', 's', 'a', 'g', 'e', 0xff, 0xff, 0xff, 0x0f}, // a count beyond the message
	}
	for _, bad := range bads {
		c.mesh.Send("a", cluster.ChanStanza, append(append([]byte(nil), head...), bad...))
		if !c.t.Forward("a", msg("chat", "bob@a.lan/desk", "ok"), router.Forwarded{To: jid("bob@a.lan/desk"), Resources: []string{"desk"}, Fallback: true}) {
			t.Fatal("send")
		}
	}
	net.Settle(t)
	if bob.count() != len(bads) {
		t.Fatalf("bob got %d of the %d good stanzas", bob.count(), len(bads))
	}
	for _, el := range bob.got {
		if el.Get("id") != "ok" {
			t.Fatalf("delivered %s", el)
		}
	}
}

// TestBoundBefore: sessions bound before the table was made (a cluster
// enabled on a running node) are published with the rest.
func TestBoundBefore(t *testing.T) {
	net := memmesh.New()
	r := router.New()
	s := &sess{bare: "bob@a.lan", res: "desk", r: r}
	r.Bind(s)
	r.SetAvailable(s, true, 2)
	tbl := New(Config{Mesh: net.Node(t, "a"), Router: r, Log: logging.Discard()})
	t.Cleanup(tbl.Close)
	b := newNode(t, net, "b", 0)
	net.Members("a", "b")
	net.Settle(t)
	rem := b.t.AppendRemote(nil, "bob@a.lan")
	if len(rem) != 1 || rem[0].Node != "a" || !rem[0].Available || rem[0].Priority != 2 {
		t.Fatalf("b sees %+v", rem)
	}
	tbl.Close()
	if r.Cluster() != nil {
		t.Fatal("still clustered after Close")
	}
}

// TestGoneBack: the available resources of a node that leaves go to Gone
// (not those merely bound, and not on the reset of a full sync); when it
// is back, its full sync gives them to Back, once.
func TestGoneBack(t *testing.T) {
	net := memmesh.New()
	var mu sync.Mutex
	var events []string
	a := newNode(t, net, "a", 0)
	newNode(t, net, "0", 0) // a lower id than b's
	mesh := net.Node(t, "b")
	rb := router.New()
	rb.Hosted = func(string) bool { return true }
	b := New(Config{Mesh: mesh, Router: rb, Log: logging.Discard(),
		Gone: func(bare, res string, servers bool) {
			mu.Lock()
			events = append(events, fmt.Sprintf("gone %s/%s servers=%v", bare, res, servers))
			mu.Unlock()
		},
		Back: func(bare, res string, p []byte) {
			mu.Lock()
			events = append(events, "back "+bare+"/"+res)
			mu.Unlock()
		}})
	t.Cleanup(b.Close)
	count := func(n int) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return len(events) == n }
	}
	net.Members("0", "a", "b")
	a.bind("bob@a.lan", "desk", 1)
	a.bind("bob@a.lan", "idle", -1000)
	net.Settle(t)
	net.Members("0", "b") // node 0 tells the other servers, not b
	eventually(t, "gone", count(1))
	net.Members("0", "a", "b")
	eventually(t, "back", count(2))
	eventually(t, "the sync's end", func() bool { b.mu.RLock(); defer b.mu.RUnlock(); return !b.returning["a"] })
	a.bind("bob@a.lan", "later", 1) // after the sync: an ordinary change
	net.Settle(t)
	time.Sleep(20 * time.Millisecond)
	net.Members("b") // b alone: b tells them
	eventually(t, "gone again", count(4))
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(events[2:])
	want := "gone bob@a.lan/desk servers=false, back bob@a.lan/desk, gone bob@a.lan/desk servers=true, gone bob@a.lan/later servers=true"
	if strings.Join(events, ", ") != want {
		t.Fatalf("events: %v", events)
	}
}
