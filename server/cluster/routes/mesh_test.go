package routes

import (
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeNet is an in-memory cluster.Mesh between nodes of one process: each
// node has one inbound queue (so the messages of one sender arrive in
// order) served by its own goroutine, as a real connection's reader.
type fakeNet struct {
	mu      sync.Mutex
	nodes   map[string]*fakeMesh
	up      map[string]bool         // members now
	cut     map[[2]string]bool      // links that fail (from, to)
	sent    map[string]map[byte]int // messages received, by node and channel
	pending atomic.Int64
}

type fakeMsg struct {
	from string
	ch   byte
	msg  []byte
}

type fakeMesh struct {
	net       *fakeNet
	id        string
	mu        sync.Mutex
	handlers  map[byte]func(string, []byte)
	onMembers func([]string)
	q         chan fakeMsg
}

func newFakeNet() *fakeNet {
	return &fakeNet{nodes: map[string]*fakeMesh{}, up: map[string]bool{}, cut: map[[2]string]bool{}, sent: map[string]map[byte]int{}}
}

// node adds a node (not a member until join).
func (n *fakeNet) node(t testing.TB, id string) *fakeMesh {
	m := &fakeMesh{net: n, id: id, handlers: map[byte]func(string, []byte){}, q: make(chan fakeMsg, 4096)}
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
	t.Cleanup(func() { close(m.q); <-done })
	return m
}

// members sets who is a member (reachable) and tells every member.
func (n *fakeNet) members(ids ...string) {
	n.mu.Lock()
	n.up = map[string]bool{}
	for _, id := range ids {
		n.up[id] = true
	}
	var tell []*fakeMesh
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

// settle waits until every message sent has been handled.
func (n *fakeNet) settle(t testing.TB) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); n.pending.Load() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("messages still in flight")
		}
	}
}

func (n *fakeNet) received(id string, ch byte) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sent[id][ch]
}

func (m *fakeMesh) Self() string { return m.id }

func (m *fakeMesh) Members() []string {
	m.net.mu.Lock()
	defer m.net.mu.Unlock()
	var out []string
	for id := range m.net.up {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func (m *fakeMesh) Send(to string, ch byte, msg []byte) error {
	n := m.net
	n.mu.Lock()
	dst := n.nodes[to]
	if dst == nil || !n.up[to] || !n.up[m.id] || n.cut[[2]string{m.id, to}] {
		n.mu.Unlock()
		return errors.New("unreachable")
	}
	n.sent[to][ch]++
	n.pending.Add(1)
	n.mu.Unlock()
	select {
	case dst.q <- fakeMsg{m.id, ch, append([]byte(nil), msg...)}:
		return nil
	default:
		n.pending.Add(-1)
		return errors.New("queue full")
	}
}

func (m *fakeMesh) Handle(ch byte, fn func(string, []byte)) {
	m.mu.Lock()
	m.handlers[ch] = fn
	m.mu.Unlock()
}

func (m *fakeMesh) OnMembers(fn func([]string)) {
	m.mu.Lock()
	m.onMembers = fn
	m.mu.Unlock()
}
