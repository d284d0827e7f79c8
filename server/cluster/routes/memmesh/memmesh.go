// Package memmesh is an in-memory cluster.Mesh between the nodes of one
// process, for tests: each node has one inbound queue (so the messages of
// one sender arrive in order) served by a goroutine of its own, as a real
// connection's reader; links can be cut and membership set by hand.
package memmesh

import (
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/cluster"
)

// Net connects the nodes.
type Net struct {
	// Blocking makes Send wait while the destination's queue is full (as
	// a TCP connection pushes back), instead of failing: for benchmarks.
	// Set it before the first Send.
	Blocking bool

	mu      sync.Mutex
	nodes   map[string]*Node
	up      map[string]bool         // members now
	cut     map[[2]string]bool      // links that fail (from, to)
	lose    map[[3]string]int       // messages a link loses silently (from, to, channel)
	sent    map[string]map[byte]int // messages received, by node and channel
	pending atomic.Int64
}

type message struct { // one message in a node's queue
	from string
	ch   byte
	msg  []byte
}

// Node is one node's cluster.Mesh.
type Node struct {
	net       *Net
	id        string
	mu        sync.Mutex
	handlers  map[byte]func(string, []byte)
	onMembers func([]string)
	onReconn  func(string)
	q         chan message
	closed    bool // guarded by net.mu
}

// New returns an empty network.
func New() *Net {
	return &Net{nodes: map[string]*Node{}, up: map[string]bool{}, cut: map[[2]string]bool{}, lose: map[[3]string]int{}, sent: map[string]map[byte]int{}}
}

// Node adds a node (not a member until Members names it); it stops when
// the test ends.
func (n *Net) Node(t testing.TB, id string) *Node {
	m := &Node{net: n, id: id, handlers: map[byte]func(string, []byte){}, q: make(chan message, 4096)}
	n.mu.Lock()
	n.nodes[id] = m
	n.sent[id] = map[byte]int{}
	n.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for msg := range m.q {
			m.mu.Lock()
			h := m.handlers[msg.ch]
			m.mu.Unlock()
			if h != nil {
				h(msg.from, msg.msg)
			}
			n.pending.Add(-1)
		}
	}()
	t.Cleanup(func() {
		n.mu.Lock()
		m.closed = true
		close(m.q)
		n.mu.Unlock()
		<-done
	})
	return m
}

// Members sets who is a member (reachable) and tells every member.
func (n *Net) Members(ids ...string) {
	n.mu.Lock()
	n.up = map[string]bool{}
	for _, id := range ids {
		n.up[id] = true
	}
	var tell []*Node
	for _, id := range ids {
		tell = append(tell, n.nodes[id])
	}
	n.mu.Unlock()
	sort.Strings(ids)
	for _, m := range tell {
		m.mu.Lock()
		fn := m.onMembers
		m.mu.Unlock()
		if fn != nil {
			fn(append([]string(nil), ids...))
		}
	}
}

// Settle waits until every message sent has been handled.
func (n *Net) Settle(t testing.TB) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); n.pending.Load() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("messages still in flight")
		}
	}
}

// Cut makes the link from → to fail (cut) or work again.
func (n *Net) Cut(from, to string, cut bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if cut {
		n.cut[[2]string{from, to}] = true
	} else {
		delete(n.cut, [2]string{from, to})
	}
}

// Lose makes the link from → to lose the next count stanzas (ChanStanza)
// silently: Send succeeds, nothing arrives, as with frames written into a
// connection that breaks.
func (n *Net) Lose(from, to string, count int) { n.LoseOn(from, to, cluster.ChanStanza, count) }

// LoseOn is Lose on any channel.
func (n *Net) LoseOn(from, to string, ch byte, count int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lose[[3]string{from, to, string(ch)}] = count
}

// Reconnected tells node from that its connection to node to was made
// again after a break (Mesh.OnReconnect), and waits for what it does.
func (n *Net) Reconnected(from, to string) {
	n.mu.Lock()
	m := n.nodes[from]
	n.mu.Unlock()
	m.mu.Lock()
	fn := m.onReconn
	m.mu.Unlock()
	if fn != nil {
		fn(to)
	}
}

// Received counts the messages a node was sent on a channel.
func (n *Net) Received(id string, ch byte) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sent[id][ch]
}

var _ cluster.Mesh = (*Node)(nil)

// Self, Members, Send, Handle and OnMembers are cluster.Mesh.
func (m *Node) Self() string { return m.id }

func (m *Node) Members() []string {
	m.net.mu.Lock()
	defer m.net.mu.Unlock()
	var out []string
	for id := range m.net.up {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func (m *Node) Send(to string, ch byte, msg []byte) error {
	n := m.net
	n.mu.Lock()
	defer n.mu.Unlock()
	dst := n.nodes[to]
	if dst == nil || dst.closed || !n.up[to] || !n.up[m.id] || n.cut[[2]string{m.id, to}] {
		return errors.New("unreachable")
	}
	if k := [3]string{m.id, to, string(ch)}; n.lose[k] > 0 {
		n.lose[k]-- // as if written into a connection that then broke
		return nil
	}
	n.pending.Add(1)
	n.sent[to][ch]++
	if n.Blocking {
		dst.q <- message{m.id, ch, append([]byte(nil), msg...)}
		return nil
	}
	select {
	case dst.q <- message{m.id, ch, append([]byte(nil), msg...)}:
		return nil
	default:
		n.sent[to][ch]--
		n.pending.Add(-1)
		return errors.New("queue full")
	}
}

func (m *Node) Handle(ch byte, fn func(string, []byte)) {
	m.mu.Lock()
	m.handlers[ch] = fn
	m.mu.Unlock()
}

func (m *Node) OnReconnect(fn func(string)) {
	m.mu.Lock()
	m.onReconn = fn
	m.mu.Unlock()
}

func (m *Node) OnMembers(fn func([]string)) {
	m.mu.Lock()
	m.onMembers = fn
	m.mu.Unlock()
}
