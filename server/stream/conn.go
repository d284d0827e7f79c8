package stream

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-xmpp/parley/server/metrics"
	"github.com/parley-xmpp/parley/server/xml"
)

// Conn is a connection with a bounded outbound queue and at most one writer
// goroutine, which runs while there is something to write and for
// WriterLinger after (an idle connection has no writer and holds no write
// buffer; a busy one does not start a goroutine per stanza). Send never
// blocks, and a stanza handed to a Conn that accepted
// it (Send reported true) is either written to the socket or, when the
// connection ends first, handed back by Unwritten once Done is closed, so
// that its owner stores or bounces it (the delivery rule): nothing is
// dropped here.
//
// When what waits for the peer would exceed MaxQueueBytes, the connection
// fails: the stanza is refused (Send reports false), the write in progress
// gets OverflowGrace to finish, the peer gets a policy-violation stream
// error if the stream is still whole, and the connection closes; what was
// queued comes back through Unwritten.
//
// Stanzas queued with SendTracked belong to a Pacer, which is told when they
// are written and when the queue runs low; they are never handed back
// (their owner still holds them, e.g. in offline storage).
type Conn struct {
	net.Conn
	NS string // the stream's default namespace, for serializing

	mu      sync.Mutex
	queue   []item
	queued  int  // bytes queued or being written
	closed  bool // the writer has stopped
	closing bool // no more stanzas: write the queue and final, then close
	// overflowed: the queue overflowed, close without writing the queue
	// (set under mu; the writer also reads it without the lock).
	overflowed atomic.Bool
	final      []byte
	unwritten  [][]byte
	pacer      Pacer
	low        int
	running    bool          // a writer goroutine exists
	written    uint64        // stanzas wholly written (under mu)
	wake       chan struct{} // the running writer's (nil: none)
	done       chan struct{} // made by Done
	finished   bool          // the writer has finished for good (under mu)
}

// item is one queued stanza; id is the Pacer's number for a tracked one.
type item struct {
	b  []byte
	id uint64
}

// Queue limits.
const (
	MaxQueueBytes = 4 << 20
	WriteTimeout  = 30 * time.Second
	// OverflowGrace is how long the write in progress may still take once
	// the queue overflowed.
	OverflowGrace = 3 * time.Second
	maxBatch      = 256 << 10 // the most one write takes from the queue
	maxIdleBatch  = 64 << 10  // the largest write buffer a connection keeps between bursts
)

// WriterLinger is how long a writer goroutine waits for more to write
// before it ends (the next Send starts another).
var WriterLinger = 250 * time.Millisecond

// Pacer is told by a Conn's writer what became of the stanzas queued with
// SendTracked. Written(id) says that every tracked stanza up to and
// including id is written; Low says that at most the low-water mark given
// to SetPacer is queued after a write. Both are called on the writer's
// goroutine and must not block.
type Pacer interface {
	Written(id uint64)
	Low()
}

// NewConn wraps c; its writer starts with the first thing to write.
func NewConn(c net.Conn, ns string) *Conn {
	return &Conn{Conn: c, NS: ns}
}

// poke wakes the writer, or starts one; called with c.mu held.
func (c *Conn) poke() {
	if !c.running {
		c.running = true
		c.wake = make(chan struct{}, 1) // the running writer's; an idle connection holds none
		go c.writer(c.wake)
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// finish marks the writer's end for good: Done is closed.
func (c *Conn) finish() {
	c.mu.Lock()
	c.finished = true
	if c.done != nil {
		close(c.done)
	}
	c.mu.Unlock()
}

func (c *Conn) writer(wake chan struct{}) {
	var batch bytes.Buffer
	var linger *time.Timer
	for {
		for {
			c.mu.Lock()
			if c.overflowed.Load() {
				rest := c.queue
				c.queue, c.closed = nil, true
				c.mu.Unlock()
				c.Conn.SetWriteDeadline(time.Now().Add(OverflowGrace))
				c.Conn.Write(overflowError.Bytes())
				c.Conn.Close()
				c.handBack(rest)
				c.finish()
				return
			}
			if len(c.queue) == 0 {
				if !c.closing {
					c.mu.Unlock()
					break
				}
				final := c.final
				c.final, c.closed = nil, true
				c.mu.Unlock()
				if final != nil {
					c.Conn.SetWriteDeadline(time.Now().Add(WriteTimeout))
					c.Conn.Write(final)
				}
				c.Conn.Close()
				c.finish()
				return
			}
			// One write takes at most maxBatch bytes (and at least one
			// stanza), so that what is in flight when the peer stalls is
			// small. Until written it still counts against MaxQueueBytes.
			k, size, tracked := 0, 0, false
			for k < len(c.queue) && (k == 0 || size+len(c.queue[k].b) <= maxBatch) {
				size += len(c.queue[k].b)
				tracked = tracked || c.queue[k].id != 0
				k++
			}
			q := c.queue[:k:k]
			if k == len(c.queue) {
				c.queue = nil
			} else {
				c.queue = c.queue[k:]
			}
			c.mu.Unlock()
			c.Conn.SetWriteDeadline(time.Now().Add(WriteTimeout))
			if c.overflowed.Load() {
				// An overflow set its shorter deadline in the meantime:
				// it stands.
				c.Conn.SetWriteDeadline(time.Now().Add(OverflowGrace))
			}

			batch.Reset()
			for _, it := range q {
				batch.Write(it.b)
			}
			n, err := c.Conn.Write(batch.Bytes())
			if err != nil {
				n = min(n, size)
			}
			// A stanza counts as written once all its bytes are.
			var last uint64
			first := len(q) // the first stanza not wholly written
			if tracked || err != nil {
				off := 0
				for i, it := range q {
					off += len(it.b)
					if off > n {
						first = i
						break
					}
					if it.id != 0 {
						last = it.id
					}
				}
			}
			c.mu.Lock()
			c.queued = max(c.queued-size, 0)
			c.written += uint64(first)
			p, low, queued := c.pacer, c.low, c.queued
			if err != nil {
				rest := append(q[first:], c.queue...)
				c.queue, c.closed = nil, true
				c.mu.Unlock()
				if p != nil && last != 0 {
					p.Written(last)
				}
				c.Conn.Close()
				c.handBack(rest)
				c.finish()
				return
			}
			c.mu.Unlock()
			// The written stanzas may share an array with what is still
			// queued: let go of them.
			clear(q)
			if p != nil {
				if last != 0 {
					p.Written(last)
				}
				if queued <= low {
					p.Low()
				}
			}
			if batch.Cap() > maxIdleBatch {
				batch = bytes.Buffer{} // a burst's buffer is not kept for good
			}
		}
		// Nothing to write: wait a while for more, then end (a wake that
		// came meanwhile is taken first, under the lock).
		if linger == nil {
			linger = time.NewTimer(WriterLinger)
		} else {
			linger.Reset(WriterLinger)
		}
		select {
		case <-wake:
			continue
		case <-linger.C:
		}
		c.mu.Lock()
		select {
		case <-wake:
			c.mu.Unlock()
			continue
		default:
		}
		if len(c.queue) > 0 || c.closing || c.overflowed.Load() {
			c.mu.Unlock()
			continue
		}
		c.running, c.wake = false, nil
		c.mu.Unlock()
		// A connection that keeps cipher state for writing (tlsrec) lets
		// go of it until the next write.
		if r, ok := c.Conn.(interface{ ReleaseWrite() }); ok {
			r.ReleaseWrite()
		}
		return
	}
}

// handBack keeps the untracked stanzas of q for Unwritten.
func (c *Conn) handBack(q []item) {
	var out [][]byte
	for _, it := range q {
		if it.id == 0 {
			out = append(out, it.b)
		}
	}
	c.mu.Lock()
	c.unwritten = out
	c.mu.Unlock()
}

var overflowError = &Error{Condition: "policy-violation",
	Text: fmt.Sprintf("you did not read what was sent to you fast enough (more than %d MiB waited)", MaxQueueBytes>>20)}

// SendRaw queues the bytes of one stanza; it reports false if the
// connection is closing or closed, or if its queue overflowed (then it is
// being closed). The caller keeps the stanza when it gets false.
func (c *Conn) SendRaw(b []byte) bool { return c.send(b, 0) }

// SendTracked is SendRaw for a stanza of the Pacer's, numbered id (not 0,
// increasing): the Pacer learns when it is written, and it is never handed
// back by Unwritten.
func (c *Conn) SendTracked(b []byte, id uint64) bool { return c.send(b, id) }

func (c *Conn) send(b []byte, id uint64) bool {
	c.mu.Lock()
	if c.closed || c.closing {
		c.mu.Unlock()
		return false
	}
	if c.queued+len(b) > MaxQueueBytes {
		metrics.QueueOverflow(c.NS)
		c.closing = true
		c.overflowed.Store(true)
		c.Conn.SetWriteDeadline(time.Now().Add(OverflowGrace))
		c.poke()
		c.mu.Unlock()
		return false
	}
	c.queue = append(c.queue, item{b, id})
	c.queued += len(b)
	c.poke()
	c.mu.Unlock()
	return true
}

// Send queues an element.
func (c *Conn) Send(e *xml.Element) bool { return c.SendRaw(e.Bytes(c.NS)) }

// SetPacer sets (nil: removes) the Pacer of tracked stanzas and its
// low-water mark in bytes.
func (c *Conn) SetPacer(p Pacer, low int) {
	c.mu.Lock()
	c.pacer, c.low = p, low
	c.mu.Unlock()
}

// Queued is the number of bytes queued or being written.
func (c *Conn) Queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queued
}

// Written is the number of stanzas wholly written to the peer.
func (c *Conn) Written() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.written
}

// Closing reports whether the connection takes no more stanzas.
func (c *Conn) Closing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing || c.closed
}

// Overflowed reports whether the connection failed because its queue
// overflowed.
func (c *Conn) Overflowed() bool { return c.overflowed.Load() }

// CloseWith queues final bytes (a stream error or the stream end), then
// closes the connection once the queue and they are written.
func (c *Conn) CloseWith(b []byte) {
	c.mu.Lock()
	if c.closed || c.closing {
		c.mu.Unlock()
		return
	}
	c.final, c.closing = b, true
	c.poke()
	c.mu.Unlock()
}

// Done is closed when the writer has finished and the connection is closed.
func (c *Conn) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil { // made on demand: most of a connection's life nobody waits
		c.done = make(chan struct{})
		if c.finished {
			close(c.done)
		}
	}
	return c.done
}

// Unwritten returns, once Done is closed, the stanzas accepted by SendRaw
// or Send that were not wholly written, in order; before, nil.
func (c *Conn) Unwritten() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.finished {
		return nil
	}
	return c.unwritten
}

// ParseStanzas reads back stanzas serialized for a stream whose default
// namespace is ns (what Unwritten returns); what is not a message,
// presence or iq in ns, or does not parse, is left out.
func ParseStanzas(bs [][]byte, ns string) []*xml.Element {
	if len(bs) == 0 {
		return nil
	}
	size := 0
	for _, b := range bs {
		size = max(size, len(b))
	}
	head := `<stream:stream xmlns="` + ns + `" xmlns:stream="` + NSStream + `">`
	var out []*xml.Element
	for _, b := range bs {
		rd := xml.NewReader(io.MultiReader(strings.NewReader(head), bytes.NewReader(b)), xml.Limits{MaxStanza: int64(size) + 1024, MaxDepth: 64})
		if _, err := rd.Header(); err != nil {
			continue
		}
		el, err := rd.Next()
		if err != nil || el.Name.Space != ns {
			continue
		}
		switch el.Name.Local {
		case "message", "presence", "iq":
			out = append(out, el)
		}
	}
	return out
}
