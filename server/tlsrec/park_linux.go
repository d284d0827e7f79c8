package tlsrec

import (
	"container/heap"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Parking a connection: instead of a goroutine blocked in a read for as
// long as a client stays quiet (its stack, 2 to 8 KiB, is most of what an
// idle session would cost), the connection's socket is watched by one
// epoll instance shared by every parked connection, with one goroutine
// for all of them; the reader's function is called on a new goroutine
// when input comes, the peer hangs up, the read deadline passes, or the
// connection is closed.
//
// The runtime's own poller cannot be asked for readiness without a
// goroutine waiting, hence an epoll of our own. A socket may be in both:
// ours is level-triggered and one-shot, so input that arrives between the
// check for it and the arming is reported at once, and each arming
// reports once.

// poller is the process's one epoll instance for parked connections.
type poller struct {
	once sync.Once
	epfd int
	file *os.File // epfd, for the runtime's poller
	err  error

	nextID atomic.Uint64
	mu     sync.Mutex
	parked map[uint64]*parking
	// The parked waits with a read deadline, earliest first, and one
	// timer for the earliest (a timer each was ~150 bytes a session).
	deadlines deadlineHeap
	timer     *time.Timer
	timerAt   int64 // when the timer fires, unix nanoseconds; 0: not set
}

var thePoller = poller{parked: map[uint64]*parking{}}

// parking is one wait: fired exactly once, by whichever comes first.
type parking struct {
	id    uint64
	fired atomic.Bool
	fn    func(error)
	at    int64 // the read deadline, unix nanoseconds (0: none)
	hidx  int   // index in the poller's deadlines (-1: not there)
}

// deadlineHeap orders parked waits by deadline (container/heap).
type deadlineHeap []*parking

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *deadlineHeap) Push(x any) {
	k := x.(*parking)
	k.hidx = len(*h)
	*h = append(*h, k)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	k := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	k.hidx = -1
	return k
}

// scheduleLocked sets the timer for a deadline at, unless it fires
// earlier already; p.mu is held.
func (p *poller) scheduleLocked(at int64) {
	if p.timerAt != 0 && p.timerAt <= at {
		return
	}
	p.timerAt = at
	d := time.Until(time.Unix(0, at))
	if p.timer == nil {
		p.timer = time.AfterFunc(d, p.expire)
	} else {
		p.timer.Reset(d)
	}
}

// expire fires the waits whose deadline has passed.
func (p *poller) expire() {
	now := time.Now().UnixNano()
	var due []*parking
	p.mu.Lock()
	p.timerAt = 0
	for len(p.deadlines) > 0 && p.deadlines[0].at <= now {
		k := heap.Pop(&p.deadlines).(*parking)
		delete(p.parked, k.id)
		if k.fired.CompareAndSwap(false, true) {
			due = append(due, k)
		}
	}
	if len(p.deadlines) > 0 {
		p.scheduleLocked(p.deadlines[0].at)
	}
	p.mu.Unlock()
	for _, k := range due {
		go k.fn(os.ErrDeadlineExceeded)
	}
}

func (p *poller) start() error {
	p.once.Do(func() {
		p.epfd, p.err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if p.err != nil {
			return
		}
		// The epoll descriptor is itself waited on through the runtime's
		// poller (it is readable while it has events), so the loop is an
		// ordinary goroutine: not a thread blocked in epoll_wait, which
		// would have to win a processor back for every wake.
		if p.err = syscall.SetNonblock(p.epfd, true); p.err != nil {
			return
		}
		p.file = os.NewFile(uintptr(p.epfd), "parked connections")
		var rc syscall.RawConn
		if rc, p.err = p.file.SyscallConn(); p.err != nil {
			return
		}
		go p.loop(rc)
	})
	return p.err
}

func (p *poller) loop(rc syscall.RawConn) {
	var evs [256]syscall.EpollEvent
	for {
		err := rc.Read(func(uintptr) bool {
			for {
				n, err := syscall.EpollWait(p.epfd, evs[:], 0)
				if err == syscall.EINTR {
					continue
				}
				if err != nil || n <= 0 {
					return false // wait until it is readable again
				}
				for i := range evs[:n] {
					id := uint64(uint32(evs[i].Fd)) | uint64(uint32(evs[i].Pad))<<32
					if k := p.take(id); k != nil {
						go k.fn(nil)
					}
				}
				if n < len(evs) {
					return false
				}
			}
		})
		if err != nil {
			// Cannot happen while the descriptor is open; parked
			// connections still end by deadline or close.
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// add registers k under its id.
func (p *poller) add(k *parking) {
	p.mu.Lock()
	p.parked[k.id] = k
	p.mu.Unlock()
}

// take fires the wait with id, if it is still parked: the caller then
// calls its function.
func (p *poller) take(id uint64) *parking {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := p.parked[id]
	delete(p.parked, id)
	if k == nil || !k.fired.CompareAndSwap(false, true) {
		return nil
	}
	if k.hidx >= 0 {
		heap.Remove(&p.deadlines, k.hidx)
	}
	return k
}

// Parked reports how many connections wait in the poller (for tests and
// measurements).
func Parked() int {
	thePoller.mu.Lock()
	defer thePoller.mu.Unlock()
	return len(thePoller.parked)
}

// ErrNotParkable is Park's answer for a connection without a socket the
// poller can watch.
var ErrNotParkable = errors.New("tlsrec: the connection cannot be parked")

// Park waits for the client's next bytes without a goroutine: fn is
// called on a new goroutine with nil when input comes (or the peer hung
// up: the next Read says which), os.ErrDeadlineExceeded once the read
// deadline passes, or net.ErrClosed when the connection is closed. Park
// reports false, and fn is not called, if input is there already; call
// it only with nothing Buffered, from the goroutine that reads, which
// then must leave the connection to fn.
func (c *Conn) Park(fn func(error)) (bool, error) {
	if err := thePoller.start(); err != nil {
		return false, err
	}
	if err := c.rawConn(); err != nil {
		return false, err
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.closed.Load() {
		return false, net.ErrClosed
	}
	c.Release()
	k := &parking{id: thePoller.nextID.Add(1), fn: fn, hidx: -1}
	thePoller.add(k)
	var ready bool
	var perr error
	err := c.rc.Control(func(fd uintptr) {
		if ready, perr = peek(int(fd)); ready || perr != nil {
			return
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
			Fd: int32(uint32(k.id)), Pad: int32(uint32(k.id >> 32))}
		op := syscall.EPOLL_CTL_MOD
		if !c.registered {
			op = syscall.EPOLL_CTL_ADD
		}
		if perr = syscall.EpollCtl(thePoller.epfd, op, int(fd), &ev); perr == nil {
			c.registered = true
		}
	})
	if err == nil {
		err = perr
	}
	if err != nil || ready {
		thePoller.take(k.id)
		return false, err
	}
	c.parked = k
	if at := c.readDeadline.Load(); at != 0 {
		p := &thePoller
		p.mu.Lock()
		if !k.fired.Load() {
			k.at = at
			heap.Push(&p.deadlines, k)
			p.scheduleLocked(at)
		}
		p.mu.Unlock()
	}
	return true, nil
}

// unpark takes the connection out of the poller before its socket is
// closed, and fires a wait still parked with net.ErrClosed.
func (c *Conn) unpark() {
	c.pmu.Lock()
	k := c.parked
	c.parked = nil
	if c.registered && c.rc != nil {
		c.rc.Control(func(fd uintptr) {
			syscall.EpollCtl(thePoller.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
		})
		c.registered = false
	}
	c.pmu.Unlock()
	if k != nil && thePoller.take(k.id) != nil {
		go k.fn(net.ErrClosed)
	}
}

// peek reports whether fd has bytes to read or an end to report.
func peek(fd int) (bool, error) {
	var one [1]byte
	for {
		_, _, err := syscall.Recvfrom(fd, one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false, nil
		case nil:
			return true, nil
		}
		return true, nil // an error: the next read reports it
	}
}
