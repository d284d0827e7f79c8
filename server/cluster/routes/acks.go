package routes

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/parley-xmpp/parley/server/cluster"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/xml"
)

// The delivery rule across nodes. A stanza forwarded as its sender's only
// copy (Forwarded.Fallback) is kept by the sending node until the
// receiving node acknowledges it: a frame written into a connection that
// breaks, or still queued for a node that leaves, would otherwise vanish.
// Each such stanza carries a sequence number per receiving node, from 1,
// in a numbering named by a random id (a new one when the receiving node
// left and is back: both sides then start afresh, whoever noticed); the
// receiver acknowledges the highest it has handled every ackEvery (in one
// small message on ChanAck) and names the numbers it never got (a gap: the
// frames a broken connection lost). The sender routes again, as if it had
// never forwarded them, the stanzas the receiver says it lost, those of a
// node that leaves or becomes unreachable, and those unacknowledged after
// AckTimeout: they reach their recipient where it is now, are stored
// offline, or are bounced — never dropped. The price is that a stanza a
// dying node had delivered but not yet acknowledged may be delivered
// twice (stored for the recipient's next login as well): a duplicate
// rather than a loss.
const (
	// AckTimeout is how long a tracked stanza waits for its
	// acknowledgement before it is routed again. It only matters when a
	// connection broke while its node stayed reachable and nothing sent
	// after the lost frames showed the gap; a node that is gone is handled
	// at once.
	AckTimeout = 15 * time.Second
	// MaxInFlight bounds the stanzas kept for one node awaiting their
	// acknowledgement: over it, Forward fails and the router decides
	// alone (stores or bounces), as when the node's queue is full.
	MaxInFlight = 16384
	ackVersion  = 1
	ackEvery    = 20 * time.Millisecond
	maxLost     = 64 // gaps named in one acknowledgement
	lostRepeats = 3  // acknowledgements that repeat a gap (one may be lost)
)

// inFlight is what this node forwarded to one other node and awaits the
// acknowledgement of.
type inFlight struct {
	id   uint64     // the numbering's id, random
	send sync.Mutex // orders numbering and Send: frames reach the node in number order
	next uint64     // the next number (from 1)

	mu      sync.Mutex
	entries []flight // in number order
	head    int
}

type flight struct {
	seq uint64
	at  int64 // coarse clock (Table.now), for AckTimeout
	msg []byte
}

// received is what this node got from one other node.
type received struct {
	mu    sync.Mutex
	id    uint64 // the sender's numbering
	next  uint64 // the next number expected
	acked uint64 // the highest number acknowledged
	lost  []gap
	dirty bool
}

type gap struct {
	from, to uint64 // inclusive
	repeats  int
}

func (t *Table) flightsOf(node string) *inFlight {
	if f, ok := t.flights.Load(node); ok {
		return f.(*inFlight)
	}
	f, _ := t.flights.LoadOrStore(node, &inFlight{id: rand.Uint64() | 1, next: 1})
	return f.(*inFlight)
}

// sendTracked numbers msg (whose header has room for it: see Forward),
// keeps it until it is acknowledged and sends it.
func (t *Table) sendTracked(node string, build func(id, seq uint64) []byte) bool {
	fl := t.flightsOf(node)
	fl.send.Lock()
	defer fl.send.Unlock()
	fl.mu.Lock()
	if len(fl.entries)-fl.head >= MaxInFlight {
		fl.mu.Unlock()
		t.cfg.Episodes.Printf("cluster routes: in flight to "+node,
			"cluster: %d stanzas to node %s await its acknowledgement: the next are handled here as if their recipients were offline", MaxInFlight, node)
		return false
	}
	seq := fl.next
	msg := build(fl.id, seq)
	fl.entries = append(fl.entries, flight{seq: seq, at: t.now.Load(), msg: msg})
	fl.mu.Unlock()
	if err := t.cfg.Mesh.Send(node, cluster.ChanStanza, msg); err != nil {
		fl.mu.Lock()
		fl.entries = fl.entries[:len(fl.entries)-1] // the one just added: numbers are taken under send
		fl.mu.Unlock()
		return false
	}
	fl.next++
	return true
}

// sendProbe sends a numbered frame without a stanza: the node acknowledges
// it, or names the numbers before it that it never got.
func (t *Table) sendProbe(node string) {
	t.sendTracked(node, func(id, seq uint64) []byte {
		return binary.AppendUvarint(binary.AppendUvarint([]byte{stanzaVersion, flagTracked | flagProbe}, id), seq)
	})
}

// ack removes the entries numbered up to upTo in numbering id, and returns
// those among them that lost names (the node never got them).
func (fl *inFlight) ack(id, upTo uint64, lost []gap) (again [][]byte) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if id != fl.id {
		return nil // of a numbering before this one
	}
	isLost := func(seq uint64) bool {
		for _, g := range lost {
			if seq >= g.from && seq <= g.to {
				return true
			}
		}
		return false
	}
	i := fl.head
	for ; i < len(fl.entries) && fl.entries[i].seq <= upTo; i++ {
		if isLost(fl.entries[i].seq) {
			again = append(again, fl.entries[i].msg)
		}
		fl.entries[i] = flight{}
	}
	fl.head = i
	fl.compact()
	return again
}

// expire removes the entries sent before the coarse time before (every
// entry, with all) and returns them.
func (fl *inFlight) expire(before int64, all bool) (again [][]byte) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	i := fl.head
	for ; i < len(fl.entries) && (all || fl.entries[i].at < before); i++ {
		again = append(again, fl.entries[i].msg)
		fl.entries[i] = flight{}
	}
	fl.head = i
	fl.compact()
	return again
}

// compact reclaims the acknowledged front. Called with mu held.
func (fl *inFlight) compact() {
	if fl.head == len(fl.entries) {
		fl.entries, fl.head = fl.entries[:0], 0
		return
	}
	if fl.head > 1024 && fl.head*2 > len(fl.entries) {
		n := copy(fl.entries, fl.entries[fl.head:])
		clear(fl.entries[n:])
		fl.entries, fl.head = fl.entries[:n], 0
	}
}

// Pending is the number of stanzas forwarded to node that await its
// acknowledgement (for tests and status).
func (t *Table) Pending(node string) int {
	f, ok := t.flights.Load(node)
	if !ok {
		return 0
	}
	fl := f.(*inFlight)
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return len(fl.entries) - fl.head
}

// gotTracked records number seq of numbering id from node: it reports
// false for one already handled (a frame seen twice), which is not handled
// again. A new numbering starts at 1: numbers before seq in it were lost.
func (t *Table) gotTracked(from string, id, seq uint64) bool {
	r := t.receivedOf(from)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.id != id {
		r.id, r.next, r.acked, r.lost = id, 1, 0, nil
	}
	switch {
	case seq < r.next:
		return false
	case seq > r.next:
		if len(r.lost) < maxLost {
			r.lost = append(r.lost, gap{from: r.next, to: seq - 1})
		} else { // more gaps than one message names: widen the last
			r.lost[len(r.lost)-1].to = seq - 1
		}
	}
	r.next = seq + 1
	r.dirty = true
	return true
}

func (t *Table) receivedOf(node string) *received {
	if r, ok := t.received.Load(node); ok {
		return r.(*received)
	}
	r, _ := t.received.LoadOrStore(node, &received{})
	return r.(*received)
}

// acker sends the acknowledgements, and routes again what waited too long
// for its own.
func (t *Table) acker() {
	defer t.done.Done()
	tick := time.NewTicker(ackEvery)
	defer tick.Stop()
	var lastExpiry time.Time
	for {
		select {
		case <-t.stop:
			return
		case now := <-tick.C:
			t.now.Store(now.UnixNano())
			t.sendAcks()
			if now.Sub(lastExpiry) >= min(time.Second, t.cfg.AckTimeout/4) {
				lastExpiry = now
				before := now.Add(-t.cfg.AckTimeout).UnixNano()
				t.flights.Range(func(k, v any) bool {
					if again := v.(*inFlight).expire(before, false); len(again) > 0 {
						t.cfg.Episodes.Printf("cluster routes: unacknowledged by "+k.(string),
							"cluster: node %s did not acknowledge %d forwarded stanzas within %s: routed again", k.(string), len(again), t.cfg.AckTimeout)
						t.routeAgain(again)
					}
					return true
				})
			}
		}
	}
}

func (t *Table) sendAcks() {
	t.received.Range(func(k, v any) bool {
		r := v.(*received)
		r.mu.Lock()
		if !r.dirty {
			r.mu.Unlock()
			return true
		}
		msg := []byte{ackVersion}
		msg = binary.AppendUvarint(msg, r.id)
		msg = binary.AppendUvarint(msg, r.next-1)
		msg = binary.AppendUvarint(msg, uint64(len(r.lost)))
		for _, g := range r.lost {
			msg = binary.AppendUvarint(msg, g.from)
			msg = binary.AppendUvarint(msg, g.to)
		}
		r.mu.Unlock()
		if t.cfg.Mesh.Send(k.(string), cluster.ChanAck, msg) != nil {
			return true // dirty still: the next tick tries again
		}
		r.mu.Lock()
		kept := r.lost[:0]
		for _, g := range r.lost {
			if g.repeats++; g.repeats < lostRepeats {
				kept = append(kept, g)
			}
		}
		r.lost = kept
		r.acked = max(r.acked, r.next-1)
		r.dirty = len(kept) > 0 || r.acked != r.next-1
		r.mu.Unlock()
		return true
	})
}

// receiveAck applies another node's acknowledgement of what this node
// forwarded to it.
func (t *Table) receiveAck(from string, msg []byte) {
	if t.closed.Load() {
		return
	}
	if len(msg) < 1 || msg[0] != ackVersion || len(msg) > 32+maxLost*20 {
		t.bad(from, "an acknowledgement that does not decode")
		return
	}
	rd := reader{b: msg[1:]}
	id := rd.uvarint()
	upTo := rd.uvarint()
	n := rd.uvarint()
	if n > maxLost {
		rd.err = errBad
	}
	var lost []gap
	for i := uint64(0); i < n && rd.err == nil; i++ {
		g := gap{from: rd.uvarint(), to: rd.uvarint()}
		lost = append(lost, g)
	}
	if rd.err != nil {
		t.bad(from, "an acknowledgement that does not decode")
		return
	}
	f, ok := t.flights.Load(from)
	if !ok {
		return
	}
	if again := f.(*inFlight).ack(id, upTo, lost); len(again) > 0 {
		t.cfg.Episodes.Printf("cluster routes: lost on the link to "+from,
			"cluster: %d stanzas forwarded to node %s were lost on a broken connection: routed again", len(again), from)
		t.routeAgain(again)
	}
}

// nodeGone routes again what a node that left or became unreachable had
// not acknowledged, and forgets what it had sent (numbering starts afresh
// when it is back).
func (t *Table) nodeGone(id string) {
	t.received.Delete(id)
	f, ok := t.flights.LoadAndDelete(id)
	if !ok {
		return
	}
	if again := f.(*inFlight).expire(0, true); len(again) > 0 {
		logging.Problem(t.cfg.Log, "cluster: node %s is gone with %d forwarded stanzas unacknowledged: routed again", id, len(again))
		t.routeAgain(again)
	}
}

// routeAgain routes forwarded stanzas again from here, as the router
// would have had it not forwarded them (their node's entries are gone,
// or the node is asked again), off the caller's goroutine: offline
// storage waits for the store.
func (t *Table) routeAgain(msgs [][]byte) {
	t.again.Add(1)
	go func() {
		defer t.again.Done()
		for _, msg := range msgs {
			f, _, _, body, err := decodeForward(msg, nil)
			if err != nil {
				continue // our own encoding, or a probe: nothing to route
			}
			el, err := decodeStanza(body, xml.DefaultLimits.MaxDepth)
			if err != nil {
				continue
			}
			if c, text := t.cfg.Router.Route(el, f.To); c != "" && t.cfg.Bounce != nil {
				t.cfg.Bounce(el, c, text)
			}
		}
	}()
}

// routedAgain waits until what routeAgain started is done (tests).
func (t *Table) routedAgain() { t.again.Wait() }
