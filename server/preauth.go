package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/parley-xmpp/parley/server/limit"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// preAuth holds the connections not yet authenticated: from accept until a
// client session is bound, or a server or component stream is
// authenticated. It bounds them globally (the oldest is evicted for a new
// one) and per source address (a new one over the limit is refused), so a
// flood of idle connections can neither exhaust the process's file
// descriptors nor crowd out clients from other addresses.
type preAuth struct {
	mu      sync.Mutex
	max     int // global limit, effective
	perAddr int
	byAddr  map[string]*addrState
	head    *pending // the oldest
	tail    *pending
	n       int

	evicting bool // an eviction episode: logged at its start and end
	evicted  int
}

type addrState struct {
	n       int
	refused int // in this episode (since the address went over its limit)
}

func newPreAuth() *preAuth {
	return &preAuth{max: store.DefaultPreAuthMax, perAddr: store.DefaultPreAuthPerAddress, byAddr: map[string]*addrState{}}
}

// autoPreAuth is the automatic global limit for a process allowed limit
// open files: a quarter of them, at most store.DefaultPreAuthMax, so the
// rest stays for authenticated sessions, server links, the store and the
// admin shell.
func autoPreAuth(limit int) int {
	n := limit / 4
	if limit <= 0 || n > store.DefaultPreAuthMax {
		n = store.DefaultPreAuthMax
	}
	return max(n, 8)
}

// setLimits changes the limits; connections already held stay (a lower
// global limit evicts only as new ones arrive).
func (t *preAuth) setLimits(global, perAddr int) {
	t.mu.Lock()
	t.max, t.perAddr = global, perAddr
	t.mu.Unlock()
}

func (t *preAuth) limits() (global, perAddr, held int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.max, t.perAddr, t.n
}

// admit takes a new connection in. It returns the tracked connection,
// or nil and why it is refused. logf gets one line at the start and the
// end of each episode of refusals or evictions.
func (t *preAuth) admit(c net.Conn, logf func(string, ...any)) (*pending, *xml.Error) {
	key := limit.Source(c.RemoteAddr().String())
	var victim *pending
	var lines []string
	t.mu.Lock()
	st := t.byAddr[key]
	if st == nil {
		st = &addrState{}
		t.byAddr[key] = st
	}
	if st.n >= t.perAddr {
		if st.refused == 0 {
			lines = append(lines, fmt.Sprintf("%d connections from %s are waiting to authenticate, the limit per address (xmpp limits): refusing more from there", st.n, key))
		}
		st.refused++
		n := t.perAddr
		t.mu.Unlock()
		for _, l := range lines {
			logf("%s", l)
		}
		return nil, &xml.Error{Condition: "policy-violation",
			Text: fmt.Sprintf("too many connections from your address are waiting to authenticate (the limit is %d): authenticate those first", n)}
	}
	if t.n >= t.max && t.head != nil {
		victim = t.head
		t.unlinkLocked(victim)
		if !t.evicting {
			t.evicting = true
			lines = append(lines, fmt.Sprintf("%d connections are waiting to authenticate, the limit (xmpp limits): closing the oldest for each new one", t.max))
		}
		t.evicted++
	}
	p := &pending{Conn: c, t: t, key: key}
	p.start()
	st.n++
	t.n++
	p.prev, p.in = t.tail, true
	if t.tail != nil {
		t.tail.next = p
	} else {
		t.head = p
	}
	t.tail = p
	t.mu.Unlock()
	for _, l := range lines {
		logf("%s", l)
	}
	if victim != nil {
		victim.evict(&xml.Error{Condition: "resource-constraint",
			Text: "too many connections are waiting to authenticate: the oldest, this one, was closed for a new one"})
	}
	return p, nil
}

// done takes a connection out: it authenticated, or it is closing.
func (t *preAuth) done(p *pending, logf func(string, ...any)) {
	var lines []string
	t.mu.Lock()
	if p.in {
		t.unlinkLocked(p)
	}
	if t.evicting && t.n < t.max/2 {
		lines = append(lines, fmt.Sprintf("connections waiting to authenticate are below the limit again: %d were closed for newer ones", t.evicted))
		t.evicting, t.evicted = false, 0
	}
	t.mu.Unlock()
	for _, l := range lines {
		logf("%s", l)
	}
}

func (t *preAuth) unlinkLocked(p *pending) {
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		t.head = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	} else {
		t.tail = p.prev
	}
	p.prev, p.next, p.in = nil, nil, false
	t.n--
	if st := t.byAddr[p.key]; st != nil {
		st.n--
		if st.n <= 0 {
			delete(t.byAddr, p.key)
			// the end of an episode of refusals for this address: the
			// start was logged; the count is not worth a line of its own
		}
	}
}

// pending is a connection held by preAuth. Evicting it makes its next
// read (or the one in progress) fail with the eviction's stream error, so
// the goroutine serving it tells the peer why and closes it; its own read
// deadlines cannot undo that.
type pending struct {
	net.Conn
	t   *preAuth
	key string

	// list links, under t.mu
	prev, next *pending
	in         bool

	mu      sync.Mutex // deadlines against eviction
	evicted atomic.Pointer[xml.Error]

	meter // bytes in and out, for xmpp connections
}

func (p *pending) evict(e *xml.Error) {
	p.mu.Lock()
	p.evicted.Store(e)
	p.Conn.SetReadDeadline(time.Now())
	p.mu.Unlock()
}

func (p *pending) Read(b []byte) (int, error) {
	if e := p.evicted.Load(); e != nil {
		return 0, e
	}
	n, err := p.Conn.Read(b)
	p.read(n)
	if err != nil {
		if e := p.evicted.Load(); e != nil {
			return n, e
		}
	}
	return n, err
}

func (p *pending) Write(b []byte) (int, error) {
	n, err := p.Conn.Write(b)
	p.wrote(n)
	return n, err
}

func (p *pending) SetDeadline(t time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.evicted.Load() != nil {
		return p.Conn.SetWriteDeadline(t)
	}
	return p.Conn.SetDeadline(t)
}

func (p *pending) SetReadDeadline(t time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.evicted.Load() != nil {
		return nil
	}
	return p.Conn.SetReadDeadline(t)
}

// Authenticated is called (through stream.Authenticated) once the peer
// has authenticated: the connection no longer counts against the limits.
func (p *pending) Authenticated() { p.t.done(p, func(string, ...any) {}) }

// Close takes the connection out and closes it.
func (p *pending) Close() error {
	p.t.done(p, func(string, ...any) {})
	return p.Conn.Close()
}

// NetConn is the connection underneath.
func (p *pending) NetConn() net.Conn { return p.Conn }

// openFiles reports how many files the process has open and the most it
// may have (the soft RLIMIT_NOFILE). When even the count cannot be taken
// because no descriptor is left, open is the limit.
func openFiles() (open, limit int, err error) {
	if limit = fileLimit(); limit == 0 {
		return 0, 0, errors.New("the open-file limit cannot be read")
	}
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		if pe, ok := err.(*os.PathError); ok && (pe.Err == syscall.EMFILE || pe.Err == syscall.ENFILE) {
			return limit, limit, nil
		}
		return 0, limit, err
	}
	n, err := countEntries(f)
	f.Close()
	if err != nil {
		return 0, limit, err
	}
	return n - 1, limit, nil // less the directory's own
}

// countEntries counts a directory's entries but . and .. with a fixed
// buffer: with 19,000 connections, listing /proc/self/fd by name made
// half a megabyte of garbage at every check.
func countEntries(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var buf [8192]byte
	n := 0
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			k, err := syscall.ReadDirent(int(fd), buf[:])
			if err != nil {
				rerr = err
				return true
			}
			if k <= 0 {
				return true
			}
			// linux_dirent64: ino (8), off (8), reclen (2), type (1), name.
			for off := 0; off+19 < k; {
				reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
				if reclen <= 0 {
					break
				}
				name := buf[off+19:]
				if !(name[0] == '.' && (name[1] == 0 || name[1] == '.' && name[2] == 0)) {
					n++
				}
				off += reclen
			}
		}
	})
	if err == nil {
		err = rerr
	}
	return n, err
}

// fileLimit is the soft open-file limit (0 if unknown).
func fileLimit() int {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		return 0
	}
	return int(min(rl.Cur, 1<<30))
}
