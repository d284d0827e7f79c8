// Package routes is the cluster's live route table: which node holds
// which bound resource (with its availability, priority and last presence)
// and which component, kept by the nodes themselves over the cluster
// transport (Mesh channel ChanRoutes), never through the raft log: bind
// and unbind do not wait for consensus. Each node owns its entries and
// publishes every change to the others, and its whole share to a node
// that (re)appears; the entries of a node that leaves or becomes
// unreachable are dropped at once. A peer cannot grow the table beyond
// its caps (MaxPerNode resources, MaxComponents, message sizes).
//
// The Table is the router's Cluster (router.SetCluster): the router asks
// it where a full JID, a user's other resources or a component are, and
// forwards stanzas through it to their node in one hop (channel
// ChanStanza); the receiving node delivers them to its own sessions only.
package routes

import (
	"hash/maphash"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-xmpp/parley/server/cluster"
	"github.com/parley-xmpp/parley/server/limit"
	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/server/xml"
)

// Config is what a Table is built with.
type Config struct {
	Mesh   cluster.Mesh
	Router *router.Router
	// Bounce answers the sender of a forwarded stanza that could not be
	// delivered here (the IM core's Bounce).
	Bounce func(el *xml.Element, condition, text string)
	Log    *slog.Logger
	// Episodes logs bad messages and caps hit once per episode (nil: a
	// new one on Log).
	Episodes *limit.Episodes
	// MaxPerNode bounds the resources one other node may hold in the
	// table (0: DefaultMaxPerNode).
	MaxPerNode int
	// MaxStanza bounds a forwarded stanza (0: xml.DefaultLimits).
	MaxStanza int64
	// ResyncEvery is how often a node that missed a change is sent the
	// whole share again (0: a second).
	ResyncEvery time.Duration
	// Gone, if set, is told of the available resources of a node that
	// left or became unreachable (their contacts here get unavailable
	// presence: their own node cannot send it), and Back of those of a
	// node that was gone and is back, with their presence. Called off the
	// mesh's goroutines, one batch at a time. servers is true on one node
	// of those left, the one with the lowest id among the members this
	// node reaches: it tells the contacts on other servers as well (once,
	// not once per node).
	Gone func(bare, resource string, servers bool)
	Back func(bare, resource string, presence []byte)
	// AckTimeout is how long a forwarded stanza waits for the other
	// node's acknowledgement before it is routed again (0: AckTimeout).
	AckTimeout time.Duration
	// Kick, if set, closes the sessions of a bare or full JID bound on
	// this node, as another node's administrator asked (Table.Kick).
	// Called on a goroutine of its own.
	Kick func(jid, reason string)
}

const shards = 64

// Table is the route table of one node.
type Table struct {
	cfg  Config
	self string
	seed maphash.Seed

	// The other nodes' resources, by user: read on routing.
	shards [shards]shard
	total  atomic.Int64

	// mu guards nodes and comps (the other nodes' share), written by
	// the receiving side only.
	mu    sync.RWMutex
	nodes map[string]*node
	comps map[string]string // component domain → node

	// pub serializes this node's own changes and what is sent of them,
	// so that a full sync and the changes around it reach a node in the
	// order they happened.
	pub      sync.Mutex
	own      map[ownKey]*ownEntry
	ownComps map[string]bool
	members  map[string]bool // the other members now
	dirty    map[string]bool // members that missed a change: resync

	// Nodes whose entries were dropped because they left (left), and
	// those back whose full sync is under way (returning): see Gone/Back.
	left, returning map[string]bool
	syncing         map[string]bool // a full sync asked for is being sent
	notify          chan func()     // Gone and Back batches, in order

	fallbacks chan struct{} // bounds the forwarded stanzas handled off the mesh goroutine

	// The delivery rule across nodes (acks.go): what this node forwarded
	// and awaits the acknowledgement of, by node (*inFlight), and what it
	// received, by node (*received).
	flights, received sync.Map
	now               atomic.Int64   // a coarse clock (Unix ns), every ackEvery
	lowest            atomic.Bool    // this node has the lowest id of the members it reaches (Gone)
	again             sync.WaitGroup // routeAgain at work
	stop              chan struct{}
	done              sync.WaitGroup
	closed            atomic.Bool
}

type shard struct {
	mu    sync.RWMutex
	users map[string][]remote
}

// remote is a resource on another node.
type remote struct {
	node      string
	res       string
	at        int64
	available bool
	priority  int
	presence  []byte
}

// node is another node's share of the table.
type node struct {
	users    map[ownKey]struct{}
	comps    map[string]bool
	presence atomic.Int64 // bytes of presence stanzas held (MaxPresenceBytes)
}

type ownKey struct{ bare, res string }

type ownEntry struct {
	s         router.Session
	at        int64
	available bool
	priority  int
	presence  []byte
}

// New builds the table of this node (cfg.Mesh.Self()), sets its Mesh
// handlers (before the mesh starts) and makes the router route through
// it. Sessions bound before are published as they are.
func New(cfg Config) *Table {
	if cfg.MaxPerNode <= 0 {
		cfg.MaxPerNode = DefaultMaxPerNode
	}
	if cfg.MaxStanza <= 0 {
		cfg.MaxStanza = xml.DefaultLimits.MaxStanza
	}
	if cfg.ResyncEvery <= 0 {
		cfg.ResyncEvery = time.Second
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = AckTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Episodes == nil {
		cfg.Episodes = limit.NewEpisodes(cfg.Log)
	}
	t := &Table{
		cfg: cfg, self: cfg.Mesh.Self(), seed: maphash.MakeSeed(),
		nodes: map[string]*node{}, comps: map[string]string{},
		own: map[ownKey]*ownEntry{}, ownComps: map[string]bool{}, members: map[string]bool{}, dirty: map[string]bool{},
		left: map[string]bool{}, returning: map[string]bool{}, syncing: map[string]bool{}, notify: make(chan func(), 1024),
		fallbacks: make(chan struct{}, 256), stop: make(chan struct{}),
	}
	for i := range t.shards {
		t.shards[i].users = map[string][]remote{}
	}
	cfg.Mesh.Handle(cluster.ChanRoutes, t.receiveRoutes)
	cfg.Mesh.Handle(cluster.ChanStanza, t.receiveStanza)
	cfg.Mesh.Handle(cluster.ChanAck, t.receiveAck)
	cfg.Mesh.Handle(cluster.ChanControl, t.receiveControl)
	cfg.Mesh.OnMembers(t.onMembers)
	cfg.Mesh.OnReconnect(t.onReconnect)
	// The router tells us every change from here on; what was bound
	// before is ours as well. (Locks in the router's order: its shard,
	// then pub, as when it calls Bound.)
	cfg.Router.SetCluster(t)
	now := time.Now().UnixNano()
	cfg.Router.Each(func(s router.Session, available bool, priority int) {
		k := ownKey{s.Bare(), s.Resource()}
		t.pub.Lock()
		if t.own[k] == nil {
			t.own[k] = &ownEntry{s: s, at: now, available: available, priority: priority}
		}
		t.pub.Unlock()
	})
	t.now.Store(time.Now().UnixNano())
	t.onMembers(cfg.Mesh.Members())
	t.done.Add(3)
	go t.resync()
	go t.notifier()
	go t.acker()
	return t
}

// Close detaches the table from the router (standalone again) and stops
// its background work. The Mesh handlers stay set: what still arrives is
// ignored.
func (t *Table) Close() {
	if t.closed.Swap(true) {
		return
	}
	t.cfg.Router.SetCluster(nil)
	close(t.stop)
	t.done.Wait()
	t.sendAcks() // what was handled here is not sent again by the others
}

func (t *Table) shard(bare string) *shard {
	return &t.shards[maphash.String(t.seed, bare)%shards]
}

// ---- what the router asks (router.Cluster) ----

// Resource reports the node that holds a full JID.
func (t *Table) Resource(bare, resource string) (string, bool) {
	sh := t.shard(bare)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	for i := range sh.users[bare] {
		if r := &sh.users[bare][i]; r.res == resource {
			return r.node, true
		}
	}
	return "", false
}

// AppendRemote appends a user's resources on the other nodes to dst.
func (t *Table) AppendRemote(dst []router.RemoteResource, bare string) []router.RemoteResource {
	sh := t.shard(bare)
	sh.mu.RLock()
	for i := range sh.users[bare] {
		r := &sh.users[bare][i]
		dst = append(dst, router.RemoteResource{Node: r.node, Resource: r.res, Available: r.available, Priority: r.priority, Presence: r.presence})
	}
	sh.mu.RUnlock()
	return dst
}

// Component reports the node a component is connected to.
func (t *Table) Component(domain string) (string, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n, ok := t.comps[domain]
	return n, ok
}

// Len is the number of resources bound on the other nodes.
func (t *Table) Len() int { return int(t.total.Load()) }

// Resources is the number of a user's resources on the other nodes.
func (t *Table) Resources(bare string) int {
	sh := t.shard(bare)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return len(sh.users[bare])
}

// PerNode counts the resources bound on each other node, and the
// components connected there (for status).
func (t *Table) PerNode() (sessions map[string]int, components map[string][]string) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	sessions, components = map[string]int{}, map[string][]string{}
	for id, n := range t.nodes {
		sessions[id] = len(n.users)
		for d := range n.comps {
			components[id] = append(components[id], d)
		}
		sort.Strings(components[id])
	}
	return sessions, components
}

// ---- this node's changes (router.Cluster), published ----

// Bound publishes a session bound here.
func (t *Table) Bound(s router.Session) {
	k := ownKey{s.Bare(), s.Resource()}
	t.pub.Lock()
	e := &ownEntry{s: s, at: time.Now().UnixNano()}
	if old := t.own[k]; old != nil && e.at <= old.at {
		e.at = old.at + 1 // a replacement here is newer, even on a coarse clock
	}
	t.own[k] = e
	t.broadcast(appendOp(nil, &op{code: opBind, bare: k.bare, res: k.res, at: e.at}))
	t.pub.Unlock()
}

// Unbound publishes a session gone from here.
func (t *Table) Unbound(s router.Session) {
	k := ownKey{s.Bare(), s.Resource()}
	t.pub.Lock()
	if e := t.own[k]; e != nil && e.s == s {
		delete(t.own, k)
		t.broadcast(appendOp(nil, &op{code: opUnbind, bare: k.bare, res: k.res}))
	}
	t.pub.Unlock()
}

// Presence publishes a session's availability, priority and presence.
func (t *Table) Presence(s router.Session, available bool, priority int, presence *xml.Element) {
	var p []byte
	if available && presence != nil {
		if p = presence.Bytes(""); len(p) > MaxPresence {
			p = nil
		}
	}
	k := ownKey{s.Bare(), s.Resource()}
	t.pub.Lock()
	if e := t.own[k]; e != nil && e.s == s {
		e.available, e.priority, e.presence = available, priority, p
		t.broadcast(appendOp(nil, &op{code: opPresence, bare: k.bare, res: k.res, available: available, priority: priority, presence: p}))
	}
	t.pub.Unlock()
}

// ComponentUp and ComponentDown publish a component connected here or
// gone (the engine calls them from the component registry).
func (t *Table) ComponentUp(domain string)   { t.component(domain, true) }
func (t *Table) ComponentDown(domain string) { t.component(domain, false) }

func (t *Table) component(domain string, up bool) {
	t.pub.Lock()
	defer t.pub.Unlock()
	if t.ownComps[domain] == up {
		return
	}
	code := byte(opCompDown)
	if up {
		t.ownComps[domain] = true
		code = opCompUp
	} else {
		delete(t.ownComps, domain)
	}
	t.broadcast(appendOp(nil, &op{code: code, bare: domain}))
}

// broadcast sends a change to every other member; one that cannot take it
// gets the whole share later (resync). Called with pub held.
func (t *Table) broadcast(msg []byte) {
	for m := range t.members {
		if t.dirty[m] {
			continue // the resync sends it all
		}
		if err := t.cfg.Mesh.Send(m, cluster.ChanRoutes, msg); err != nil {
			t.dirty[m] = true
		}
	}
}

// sendSync sends this node's whole share to member m: a reset, then
// every entry (and, with ask, a request for m's share). Called with pub
// held. It reports whether every message was sent.
func (t *Table) sendSync(m string, ask bool) bool {
	var b []byte
	if ask {
		b = append(b, opSyncReq)
	}
	b = append(b, opReset)
	flush := func(force bool) bool {
		if len(b) == 0 || (!force && len(b) < syncChunk) {
			return true
		}
		err := t.cfg.Mesh.Send(m, cluster.ChanRoutes, b)
		b = nil
		return err == nil
	}
	var o op
	for k, e := range t.own {
		o = op{code: opBind, bare: k.bare, res: k.res, at: e.at}
		b = appendOp(b, &o)
		if e.available || e.priority != 0 {
			o = op{code: opPresence, bare: k.bare, res: k.res, available: e.available, priority: e.priority, presence: e.presence}
			b = appendOp(b, &o)
		}
		if !flush(false) {
			return false
		}
	}
	for d := range t.ownComps {
		b = appendOp(b, &op{code: opCompUp, bare: d})
		if !flush(false) {
			return false
		}
	}
	b = append(b, opSyncDone)
	return flush(true)
}

// onMembers follows the membership: the entries of a node that is gone
// are dropped at once; a node that (re)appears gets this node's share and
// is asked for its own.
func (t *Table) onMembers(members []string) {
	if t.closed.Load() {
		return
	}
	now := map[string]bool{}
	for _, m := range members {
		if m != t.self {
			now[m] = true
		}
	}
	t.pub.Lock()
	var gone, added []string
	for m := range t.members {
		if !now[m] {
			gone = append(gone, m)
			delete(t.dirty, m)
		}
	}
	for m := range now {
		if !t.members[m] {
			added = append(added, m)
		}
	}
	t.members = now
	lowest := true
	for m := range now {
		if m < t.self {
			lowest = false
		}
	}
	t.lowest.Store(lowest)
	for _, m := range added {
		if !t.sendSync(m, true) {
			t.dirty[m] = true
		}
	}
	t.pub.Unlock()
	for _, m := range gone {
		t.dropNode(m, true)
		t.nodeGone(m)
	}
	// A node known to the table but no member (it sent before it was
	// seen, then vanished) goes too.
	t.mu.RLock()
	var stale []string
	for id := range t.nodes {
		if !now[id] {
			stale = append(stale, id)
		}
	}
	t.mu.RUnlock()
	for _, m := range stale {
		t.dropNode(m, true)
		t.nodeGone(m)
	}
}

// onReconnect: the connection to a member broke and was made again; what
// was sent on the broken one may be lost. The member gets this node's
// whole share again (route changes), and a probe of the stanza numbering
// (a gap shows the stanzas lost, which are then routed again at once
// rather than after AckTimeout).
func (t *Table) onReconnect(node string) {
	if t.closed.Load() {
		return
	}
	t.pub.Lock()
	if t.members[node] {
		t.dirty[node] = true
	}
	t.pub.Unlock()
	t.sendProbe(node)
}

// resync sends the whole share again to the members that missed a
// change, until they have it.
func (t *Table) resync() {
	defer t.done.Done()
	tick := time.NewTicker(t.cfg.ResyncEvery)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
		t.pub.Lock()
		for m := range t.dirty {
			if t.sendSync(m, false) {
				delete(t.dirty, m)
			}
		}
		t.pub.Unlock()
	}
}

// ---- the other nodes' changes ----

// receiveRoutes applies a message of another node's changes. A message
// that does not decode, or an entry over a cap, is dropped (what decoded
// before it stays), with one log line per episode.
func (t *Table) receiveRoutes(from string, msg []byte) {
	if t.closed.Load() || from == t.self {
		return
	}
	if len(msg) > MaxMessage {
		t.bad(from, "a message of %d bytes", len(msg))
		return
	}
	var replace []router.Session
	var back []op
	wantSync := false
	rd := reader{b: msg}
	var o op
	for rd.next(&o) {
		switch o.code {
		case opSyncReq:
			wantSync = true
		case opReset:
			t.dropNode(from, false)
			t.mu.Lock()
			if t.left[from] {
				delete(t.left, from)
				t.returning[from] = true
			}
			t.mu.Unlock()
		case opSyncDone:
			t.mu.Lock()
			delete(t.returning, from)
			t.mu.Unlock()
		case opBind:
			if !t.bind(from, &o) {
				continue
			}
			// The same full JID bound here earlier: the newer session
			// wins, on both nodes alike (ties: the larger node id).
			t.pub.Lock()
			if e := t.own[ownKey{o.bare, o.res}]; e != nil && (e.at < o.at || (e.at == o.at && t.self < from)) {
				replace = append(replace, e.s)
			}
			t.pub.Unlock()
		case opUnbind:
			t.unbind(from, o.bare, o.res)
		case opPresence:
			if t.presence(from, &o) && o.available && len(o.presence) > 0 {
				back = append(back, o)
			}
		case opCompUp, opCompDown:
			t.componentOf(from, o.bare, o.code == opCompUp)
		}
	}
	if rd.err != nil {
		t.bad(from, "a malformed message (%d bytes)", len(msg))
	}
	for _, s := range replace {
		s.Replace()
	}
	if wantSync {
		t.sendSyncLater(from)
	}
	if len(back) > 0 && t.cfg.Back != nil {
		t.later(func() {
			for _, o := range back {
				t.cfg.Back(o.bare, o.res, o.presence)
			}
		})
	}
}

// sendSyncLater sends this node's share to a node that asked, off the
// mesh's goroutine (a share may be large), one at a time per node however
// often it asks.
func (t *Table) sendSyncLater(to string) {
	t.mu.Lock()
	if t.syncing[to] {
		t.mu.Unlock()
		return
	}
	t.syncing[to] = true
	t.mu.Unlock()
	go func() {
		t.pub.Lock()
		if t.members[to] && !t.sendSync(to, false) {
			t.dirty[to] = true
		}
		t.pub.Unlock()
		t.mu.Lock()
		delete(t.syncing, to)
		t.mu.Unlock()
	}()
}

// later queues a batch of Gone or Back calls for the notifier; when the
// queue is full it is dropped (presence is best effort; the log says so).
func (t *Table) later(fn func()) {
	select {
	case t.notify <- fn:
	default:
		t.cfg.Episodes.Printf("cluster routes: presence notices dropped", "cluster: route table: too many nodes' presence changes at once: some contacts were not told")
	}
}

func (t *Table) notifier() {
	defer t.done.Done()
	for {
		select {
		case <-t.stop:
			return
		case fn := <-t.notify:
			fn()
		}
	}
}

func (t *Table) bad(from, format string, args ...any) {
	t.cfg.Episodes.Printf("cluster routes: bad messages from "+from,
		"cluster: route table: dropped "+format+" from node %s", append(args, from)...)
}

// nodeOf returns (making it) another node's share. Called with mu held.
func (t *Table) nodeOf(id string) *node {
	n := t.nodes[id]
	if n == nil {
		n = &node{users: map[ownKey]struct{}{}, comps: map[string]bool{}}
		t.nodes[id] = n
	}
	return n
}

// bind records a resource of node from; false if over a cap.
func (t *Table) bind(from string, o *op) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodeOf(from)
	k := ownKey{o.bare, o.res}
	sh := t.shard(o.bare)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	list := sh.users[o.bare]
	if _, ok := n.users[k]; ok {
		for i := range list {
			if list[i].node == from && list[i].res == o.res {
				n.presence.Add(-int64(len(list[i].presence)))
				list[i] = remote{node: from, res: o.res, at: o.at}
			}
		}
		return true
	}
	if len(n.users) >= t.cfg.MaxPerNode {
		t.cfg.Episodes.Printf("cluster routes: node "+from+" over its cap",
			"cluster: route table: node %s publishes more than %d resources: the rest are not routed to", from, t.cfg.MaxPerNode)
		return false
	}
	mine := 0
	for i := range list {
		if list[i].node == from {
			mine++
		}
	}
	if mine >= router.MaxResources {
		t.bad(from, "resource %d of %s", mine+1, o.bare)
		return false
	}
	n.users[k] = struct{}{}
	sh.users[o.bare] = append(list, remote{node: from, res: o.res, at: o.at})
	t.total.Add(1)
	return true
}

func (t *Table) unbind(from, bare, res string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[from]
	if n == nil {
		return
	}
	k := ownKey{bare, res}
	if _, ok := n.users[k]; !ok {
		return
	}
	delete(n.users, k)
	t.removeLocked(from, bare, res)
}

// availableLocked reports whether a node's resource is available. Called
// with mu held.
func (t *Table) availableLocked(id string, k ownKey) bool {
	sh := t.shard(k.bare)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	for _, r := range sh.users[k.bare] {
		if r.node == id && r.res == k.res {
			return r.available
		}
	}
	return false
}

// removeLocked takes an entry out of its shard. Called with mu held.
func (t *Table) removeLocked(from, bare, res string) {
	sh := t.shard(bare)
	sh.mu.Lock()
	list := sh.users[bare]
	for i := range list {
		if list[i].node == from && list[i].res == res {
			if n := t.nodes[from]; n != nil {
				n.presence.Add(-int64(len(list[i].presence)))
			}
			list[i] = list[len(list)-1]
			list[len(list)-1] = remote{}
			list = list[:len(list)-1]
			t.total.Add(-1)
			break
		}
	}
	if len(list) == 0 {
		delete(sh.users, bare)
	} else {
		sh.users[bare] = list
	}
	sh.mu.Unlock()
}

// presence records a resource's presence; it reports whether the resource
// is of a node back after it was gone, in its full sync (Back).
func (t *Table) presence(from string, o *op) (returning bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	sh := t.shard(o.bare)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	list := sh.users[o.bare]
	for i := range list {
		if list[i].node == from && list[i].res == o.res {
			p := o.presence
			if n := t.nodes[from]; n != nil {
				if n.presence.Load()-int64(len(list[i].presence))+int64(len(p)) > MaxPresenceBytes {
					t.cfg.Episodes.Printf("cluster routes: node "+from+" over its presence budget",
						"cluster: route table: node %s publishes more than %d bytes of presence: the rest are kept without their stanza (probes for them go unanswered)", from, MaxPresenceBytes)
					p = nil
				}
				n.presence.Add(int64(len(p)) - int64(len(list[i].presence)))
			}
			list[i].available, list[i].priority, list[i].presence = o.available, o.priority, p
			return t.returning[from]
		}
	}
	return false
}

func (t *Table) componentOf(from, domain string, up bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodeOf(from)
	if !up {
		if n.comps[domain] {
			delete(n.comps, domain)
			if t.comps[domain] == from {
				delete(t.comps, domain)
				// Another node may have it as well (a reconnect there
				// before this node's down arrived).
				for id, other := range t.nodes {
					if other.comps[domain] {
						t.comps[domain] = id
						break
					}
				}
			}
		}
		return
	}
	if !n.comps[domain] && len(n.comps) >= MaxComponents {
		t.bad(from, "component %d", len(n.comps)+1)
		return
	}
	n.comps[domain] = true
	t.comps[domain] = from
}

// dropNode forgets another node's share; left: because it left or
// became unreachable (its available resources go to Gone), else because
// its full sync follows.
func (t *Table) dropNode(id string, left bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if left {
		delete(t.returning, id)
	}
	n := t.nodes[id]
	if n == nil {
		return
	}
	var gone []ownKey
	for k := range n.users {
		if left && t.cfg.Gone != nil && t.availableLocked(id, k) {
			gone = append(gone, k)
		}
		t.removeLocked(id, k.bare, k.res)
	}
	if left {
		if len(t.left) >= 64 { // nodes removed for good, or reset with new ids
			clear(t.left)
		}
		t.left[id] = true
		if len(gone) > 0 {
			t.later(func() {
				servers := t.lowest.Load()
				for _, k := range gone {
					t.cfg.Gone(k.bare, k.res, servers)
				}
			})
		}
	}
	for d := range n.comps {
		if t.comps[d] == id {
			delete(t.comps, d)
			for other, on := range t.nodes {
				if other != id && on.comps[d] {
					t.comps[d] = other
					break
				}
			}
		}
	}
	delete(t.nodes, id)
}
