package cluster

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/parley-xmpp/parley/server/logging"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-xmpp/parley/server/metrics"
)

// Mesh timing and bounds.
const (
	QueueLength    = 4096                   // messages waiting for one node
	QueueBytes     = 64 << 20               // and their bytes
	pingEvery      = 200 * time.Millisecond // a node's hello on an idle connection
	ReachableAfter = 1500 * time.Millisecond
	writeTimeout   = 5 * time.Second
	readTimeout    = 5 * time.Second // a live connection carries a hello every pingEvery
	membersEvery   = 200 * time.Millisecond
	redialMax      = time.Second
	// StanzaWait is how long a stanza waits for room in a node's full
	// queue: the sending session's reads pause meanwhile (back-pressure,
	// as a slow local recipient's queue gives), instead of the stanza
	// being handled as if its recipient were not online. Other channels
	// (the route table) never wait: their senders hold locks.
	StanzaWait = 2 * time.Second
)

// chanHello is the mesh's own channel: a node's announcement, sent on
// every idle connection (and so its heartbeat).
const chanHello byte = 0

// Errors of Send.
var (
	ErrUnreachable = errors.New("cluster: node unreachable")
	ErrQueueFull   = errors.New("cluster: the node's queue is full")
	ErrNotMember   = errors.New("cluster: not a member")
)

// hello is what a node announces to the others.
type hello struct {
	XMPP     string `json:"xmpp,omitempty"` // its XMPP address, host:5222
	Sessions int    `json:"sessions,omitempty"`
}

// peerInfo is what this node heard from another.
type peerInfo struct {
	hello
	heard time.Time
}

type mesh struct {
	c        *Cluster
	handlers [256]atomic.Pointer[func(from string, msg []byte)]

	mu        sync.RWMutex     // Send and the readers take it shared
	peers     map[string]*peer // by node id: the other members
	heard     map[string]peerInfo
	members   []string // the last members told to OnMembers
	onMembers func([]string)
	onReconn  func(string)
	running   bool
	stopCh    chan struct{}
	kickCh    chan struct{}
	wg        sync.WaitGroup
}

func newMesh(c *Cluster) *mesh {
	return &mesh{c: c, peers: map[string]*peer{}, heard: map[string]peerInfo{}, kickCh: make(chan struct{}, 1)}
}

// kick makes the mesh look at raft's configuration now.
func (m *mesh) kick() {
	select {
	case m.kickCh <- struct{}{}:
	default:
	}
}

func (m *mesh) Self() string { return m.c.ID() }

// Members lists the members this node reaches now, itself included,
// sorted: what OnMembers last reported (or would report).
func (m *mesh) Members() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.members == nil {
		return []string{m.c.ID()}
	}
	return slices.Clone(m.members)
}

func (m *mesh) Handle(channel byte, fn func(from string, msg []byte)) {
	if channel == chanHello {
		panic("cluster: channel 0 is the mesh's own")
	}
	m.handlers[channel].Store(&fn)
}

func (m *mesh) OnMembers(fn func(members []string)) {
	m.mu.Lock()
	m.onMembers = fn
	m.mu.Unlock()
}

func (m *mesh) OnReconnect(fn func(node string)) {
	m.mu.Lock()
	m.onReconn = fn
	m.mu.Unlock()
}

func (m *mesh) Send(node string, channel byte, msg []byte) error {
	if channel == chanHello {
		return errors.New("cluster: channel 0 is the mesh's own")
	}
	if len(msg) > MaxFrame {
		return fmt.Errorf("cluster: a message of %d bytes is over the limit (%d)", len(msg), MaxFrame)
	}
	m.mu.RLock()
	p := m.peers[node]
	m.mu.RUnlock()
	if p == nil {
		return fmt.Errorf("%w: %s", ErrNotMember, node)
	}
	if !m.reachable(node) {
		return fmt.Errorf("%w: %s", ErrUnreachable, node)
	}
	if p.queued.Add(int64(len(msg))) > QueueBytes {
		p.queued.Add(-int64(len(msg)))
		metrics.QueueRejected(metrics.ClusterQueue)
		return fmt.Errorf("%w: %s", ErrQueueFull, node)
	}
	f := frame{ch: channel, epoch: p.epoch.Load(), msg: msg}
	select {
	case p.q <- f:
		return nil
	default:
	}
	if channel == ChanStanza || channel == ChanAck {
		t := time.NewTimer(StanzaWait)
		defer t.Stop()
		select {
		case p.q <- f:
			return nil
		case <-t.C:
		case <-p.stopped:
		}
	}
	p.queued.Add(-int64(len(msg)))
	metrics.QueueRejected(metrics.ClusterQueue)
	return fmt.Errorf("%w: %s", ErrQueueFull, node)
}

// reachable: the connection to the node is up and the node was heard
// from lately.
func (m *mesh) reachable(node string) bool {
	m.mu.RLock()
	p := m.peers[node]
	info := m.heard[node]
	m.mu.RUnlock()
	return p != nil && p.isUp() && time.Since(info.heard) < ReachableAfter
}

func (m *mesh) info(node string) peerInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.heard[node]
}

func (m *mesh) start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running {
		return
	}
	m.running = true
	m.stopCh = make(chan struct{})
	m.wg.Add(1)
	go m.loop(m.stopCh)
}

// stop closes every connection to the other nodes.
func (m *mesh) stop() {
	m.mu.Lock()
	if !m.running {
		m.mu.Unlock()
		return
	}
	m.running = false
	close(m.stopCh)
	peers := m.peers
	m.peers = map[string]*peer{}
	m.mu.Unlock()
	for _, p := range peers {
		p.close()
	}
	m.wg.Wait()
	m.update()
}

// reconnect closes the connections to the other nodes: each is dialed
// again.
func (m *mesh) reconnect() {
	m.mu.RLock()
	for _, p := range m.peers {
		p.mu.Lock()
		if p.conn != nil {
			p.conn.Close()
		}
		p.mu.Unlock()
	}
	m.mu.RUnlock()
}

// reset forgets what was heard (a new node id).
func (m *mesh) reset() {
	m.mu.Lock()
	m.heard = map[string]peerInfo{}
	m.mu.Unlock()
	m.update()
}

// loop keeps a connection to every other member of raft's configuration
// and tells OnMembers when the reachable members change.
func (m *mesh) loop(stop chan struct{}) {
	defer m.wg.Done()
	t := time.NewTicker(membersEvery)
	defer t.Stop()
	for {
		m.sync()
		m.update()
		m.c.noteState() // LastChange as it happens, not when asked
		select {
		case <-stop:
			return
		case <-t.C:
		case <-m.kickCh:
		}
	}
}

// sync makes the peers those of raft's configuration.
func (m *mesh) sync() {
	want := map[string]string{}
	self := m.c.ID()
	if r := m.c.raftNode(); r != nil {
		for _, s := range r.voters() {
			if string(s.ID) != self {
				want[string(s.ID)] = string(s.Address)
			}
		}
	}
	m.mu.Lock()
	if !m.running {
		m.mu.Unlock()
		return
	}
	for id := range m.heard {
		if _, ok := want[id]; !ok {
			delete(m.heard, id)
		}
	}
	var drop []*peer
	for id, p := range m.peers {
		if addr, ok := want[id]; !ok || addr != p.addr {
			drop = append(drop, p)
			delete(m.peers, id)
		}
	}
	for id, addr := range want {
		if m.peers[id] == nil {
			p := newPeer(m, id, addr)
			m.peers[id] = p
			go p.run()
		}
	}
	m.mu.Unlock()
	for _, p := range drop {
		p.close()
	}
}

// update computes the reachable members and tells OnMembers of a change.
func (m *mesh) update() {
	m.mu.Lock()
	ids := make([]string, 0, len(m.peers))
	for id := range m.peers {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	members := []string{m.c.ID()}
	for _, id := range ids {
		if m.reachable(id) {
			members = append(members, id)
		}
	}
	slices.Sort(members)
	m.mu.Lock()
	changed := !slices.Equal(members, m.members)
	if changed {
		// The stanzas still queued for a node that is no longer
		// reachable are not sent when it is back: their sender routes
		// them again now (the route table's acknowledgements).
		for _, id := range m.members {
			if p := m.peers[id]; p != nil && !slices.Contains(members, id) {
				p.epoch.Add(1)
			}
		}
		m.members = members
	}
	fn := m.onMembers
	m.mu.Unlock()
	if changed && fn != nil {
		fn(slices.Clone(members))
	}
}

// serveIncoming reads the messages another node sends on a connection
// it opened, and hands them to the channels' handlers.
func (m *mesh) serveIncoming(conn net.Conn, from string) {
	r := bufio.NewReaderSize(conn, 32<<10)
	var noted time.Time // when a data frame last counted as hearing from the node
	for {
		conn.SetReadDeadline(time.Now().Add(readTimeout))
		ch, msg, err := readFrame(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				logging.Problem(m.c.log, "cluster: connection from node %s: %v", from, err)
			}
			// The node closed or died: unreachable until it is heard again.
			m.mu.Lock()
			m.heard[from] = peerInfo{hello: m.heard[from].hello}
			m.mu.Unlock()
			m.kick()
			return
		}
		if ch == chanHello {
			var h hello
			json.Unmarshal(msg, &h)
			m.mu.Lock()
			m.heard[from] = peerInfo{hello: h, heard: time.Now()}
			m.mu.Unlock()
			continue
		}
		// A busy connection keeps the node reachable even if its hellos
		// wait behind data (the lock at most every pingEvery).
		if now := time.Now(); now.Sub(noted) >= pingEvery {
			noted = now
			m.mu.Lock()
			m.heard[from] = peerInfo{hello: m.heard[from].hello, heard: now}
			m.mu.Unlock()
		}
		if fn := m.handlers[ch].Load(); fn != nil {
			(*fn)(from, msg)
		}
	}
}

type frame struct {
	ch    byte
	epoch uint32 // the peer's epoch when queued (ChanStanza, ChanAck)
	msg   []byte
}

// A frame: channel (1 byte), length (4 bytes, big-endian), message.
func writeFrame(w *bufio.Writer, f frame) error {
	var h [5]byte
	h[0] = f.ch
	binary.BigEndian.PutUint32(h[1:], uint32(len(f.msg)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(f.msg)
	return err
}

func readFrame(r *bufio.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("a frame of %d bytes is over the limit (%d)", n, MaxFrame)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return 0, nil, err
	}
	return h[0], msg, nil
}

// peer is the outgoing side to one node: a bounded queue and the
// goroutine that dials the node and writes the queue in order.
type peer struct {
	m        *mesh
	id, addr string
	q        chan frame
	queued   atomic.Int64 // bytes in q
	// epoch counts the times the node became unreachable: a stanza or
	// acknowledgement queued before is dropped, not sent (its sender
	// routed it again when the node went).
	epoch atomic.Uint32

	mu        sync.Mutex
	up        atomic.Bool
	connected bool // a connection was made before (the next is a reconnection)
	lastErr   string
	conn      net.Conn
	stopped   chan struct{}
	once      sync.Once
}

func newPeer(m *mesh, id, addr string) *peer {
	return &peer{m: m, id: id, addr: addr, q: make(chan frame, QueueLength), stopped: make(chan struct{})}
}

func (p *peer) isUp() bool { return p.up.Load() }

func (p *peer) close() {
	p.once.Do(func() {
		close(p.stopped)
		p.mu.Lock()
		if p.conn != nil {
			p.conn.Close()
		}
		p.up.Store(false)
		p.mu.Unlock()
	})
}

func (p *peer) run() {
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-p.stopped:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), dialTimeout+HandshakeTimeout)
		go func() {
			select {
			case <-p.stopped:
				cancel()
			case <-ctx.Done():
			}
		}()
		conn, err := p.m.c.dial(ctx, p.addr, connMesh)
		cancel()
		if err != nil {
			p.mu.Lock()
			msg := err.Error()
			if msg != p.lastErr {
				logging.Problem(p.m.c.log, "cluster: cannot reach node %s at %s: %v", p.id, p.addr, err)
			}
			p.lastErr = msg
			p.mu.Unlock()
			select {
			case <-p.stopped:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, redialMax)
			continue
		}
		backoff = 100 * time.Millisecond
		p.mu.Lock()
		select {
		case <-p.stopped:
			p.mu.Unlock()
			conn.Close()
			return
		default:
		}
		p.conn = conn
		p.up.Store(true)
		if p.lastErr != "" {
			logging.Major(p.m.c.log, "cluster: node %s at %s is reachable again", p.id, p.addr)
		}
		p.lastErr = ""
		again := p.connected
		p.connected = true
		p.mu.Unlock()
		if again {
			p.m.mu.RLock()
			fn := p.m.onReconn
			p.m.mu.RUnlock()
			if fn != nil {
				go fn(p.id)
			}
		}
		err = p.write(conn)
		conn.Close()
		p.mu.Lock()
		p.conn = nil
		p.up.Store(false)
		p.mu.Unlock()
		if err != nil {
			select {
			case <-p.stopped:
				return
			default:
			}
			logging.Problem(p.m.c.log, "cluster: connection to node %s at %s: %v", p.id, p.addr, err)
		}
	}
}

// writeFrame writes f unless it is a stanza or acknowledgement queued
// before the node was last unreachable.
func (p *peer) writeFrame(w *bufio.Writer, f frame) error {
	if (f.ch == ChanStanza || f.ch == ChanAck) && f.epoch != p.epoch.Load() {
		return nil
	}
	return writeFrame(w, f)
}

// write sends the queue, and a hello whenever the connection is idle.
func (p *peer) write(conn net.Conn) error {
	w := bufio.NewWriterSize(conn, 32<<10)
	// The other side never writes after its ack: a read that ends means
	// the connection is gone (the node closed or died).
	gone := make(chan struct{})
	go func() {
		var b [1]byte
		conn.Read(b[:])
		close(gone)
	}()
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	sendHello := func() error {
		h, _ := json.Marshal(hello{XMPP: p.m.c.xmppAddress(), Sessions: p.m.c.sessions()})
		return writeFrame(w, frame{ch: chanHello, msg: h})
	}
	conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := sendHello(); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for {
		var err error
		select {
		case <-p.stopped:
			return nil
		case <-gone:
			return errors.New("closed by the other node")
		case f := <-p.q:
			conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			p.queued.Add(-int64(len(f.msg)))
			err = p.writeFrame(w, f)
			for n := len(p.q); err == nil && n > 0; n-- { // what else is queued, in one write
				f = <-p.q
				p.queued.Add(-int64(len(f.msg)))
				err = p.writeFrame(w, f)
			}
		case <-t.C:
			conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			err = sendHello()
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			return err
		}
	}
}
