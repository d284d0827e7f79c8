package logging

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/parley-xmpp/parley/pki"
)

// Config is what a Hub is made with.
type Config struct {
	// Stderr gets every line written (nil: none). os.Stderr for the
	// appliance: the journal when systemd runs it.
	Stderr io.Writer
	// File, if set, is the rotating log file (see NewRotating).
	File *Rotating
	// Ring is how many of the last lines `syslog` can show (default
	// DefaultRing).
	Ring int
	// Hostname is the HOSTNAME of RFC 5424 records (nil: os.Hostname).
	Hostname func() string
	// Files is the files area, where `syslog audit add` writes (nil:
	// no audit file).
	Files *pki.Area
	// TLSRoots verify TLS collectors (nil: the system's roots).
	TLSRoots *x509.CertPool
}

// Bounds.
const (
	DefaultRing   = 2000      // lines kept in memory
	MaxRingBytes  = 4 << 20   // and at most this many bytes of them
	MaxLine       = 16 << 10  // a line longer than this is cut
	FollowBuffer  = 512       // lines a follower may lag behind before lines are skipped
	MaxFollowers  = 16        // `syslog follow` sessions at once
	truncatedMark = " …[cut]" // appended to a cut line
)

// Hub is the process's log: one slog.Handler (Logger) whose level is set
// live, writing each record to standard error, the rotating file, the
// in-memory ring, the followers, and the remote syslog collectors. It is
// safe for concurrent use. Writing to standard error and the file happens
// on the caller's goroutine, as the standard library's log does; remote
// collectors are fed through bounded queues and never block a caller.
type Hub struct {
	cfg    Config
	level  slog.LevelVar
	bodies atomic.Bool
	pid    int

	mu        sync.Mutex // the writers, the ring, the followers
	ring      []string   // the last lines, oldest first
	ringBytes int
	followers map[*Follower]struct{}
	fileErr   bool // a write to the file failed: said once on stderr

	remotes atomic.Pointer[[]*remote] // replaced whole by Configure
	confMu  sync.Mutex                // Configure and the audit file
	audit   *auditFile
}

// New makes a Hub at DefaultLevel.
func New(cfg Config) *Hub {
	if cfg.Ring <= 0 {
		cfg.Ring = DefaultRing
	}
	if cfg.Hostname == nil {
		cfg.Hostname = func() string { h, _ := os.Hostname(); return h }
	}
	h := &Hub{cfg: cfg, followers: map[*Follower]struct{}{}, pid: os.Getpid()}
	h.level.Set(DefaultLevel)
	empty := []*remote{}
	h.remotes.Store(&empty)
	return h
}

// Logger is the logger writing to the Hub.
func (h *Hub) Logger() *slog.Logger { return slog.New(&handler{hub: h}) }

// SetLevel sets the level (LevelNone: nothing is written).
func (h *Hub) SetLevel(l slog.Level) { h.level.Set(l) }

// Level is the current level.
func (h *Hub) Level() slog.Level { return h.level.Level() }

// SetBodies says whether message bodies may be written (at level all).
func (h *Hub) SetBodies(on bool) { h.bodies.Store(on) }

// Bodies reports whether message bodies may be written.
func (h *Hub) Bodies() bool { return h.bodies.Load() }

// Lines returns up to n of the last lines, oldest first (n <= 0: all kept).
func (h *Hub) Lines(n int) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	all := h.ring
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return append([]string(nil), all...)
}

// Follower receives the lines written after Follow, until Close.
type Follower struct {
	h       *Hub
	C       <-chan string
	ch      chan string
	skipped atomic.Int64
}

// Skipped returns how many lines were skipped since the last call, because
// the follower was too slow.
func (f *Follower) Skipped() int64 { return f.skipped.Swap(0) }

// Close stops following.
func (f *Follower) Close() {
	f.h.mu.Lock()
	delete(f.h.followers, f)
	f.h.mu.Unlock()
}

// Follow starts following the log; at most MaxFollowers at once.
func (h *Hub) Follow() (*Follower, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.followers) >= MaxFollowers {
		return nil, fmt.Errorf("%d sessions already follow the log: stop one first", MaxFollowers)
	}
	ch := make(chan string, FollowBuffer)
	f := &Follower{h: h, C: ch, ch: ch}
	h.followers[f] = struct{}{}
	return f, nil
}

// entry is one record as the sinks see it.
type entry struct {
	time  time.Time
	level slog.Level
	tag   string // XMPPI …
	conn  uint64
	peer  string
	msg   string // the message and the other attributes, as one text
}

// line is the entry as written locally:
// 2026-12-06T08:50:00.123Z PROBLEM XMPPI-17 192.0.2.7:50412 c2s: …
func (e *entry) line() string {
	var b strings.Builder
	b.Grow(len(e.msg) + 64)
	b.WriteString(e.time.UTC().Format("2006-01-02T15:04:05.000Z"))
	b.WriteByte(' ')
	b.WriteString(recordName(e.level))
	if e.tag != "" {
		b.WriteByte(' ')
		b.WriteString(e.tag)
		b.WriteByte('-')
		b.WriteString(strconv.FormatUint(e.conn, 10))
		if e.peer != "" {
			b.WriteByte(' ')
			b.WriteString(e.peer)
		}
	}
	b.WriteByte(' ')
	b.WriteString(e.msg)
	return b.String()
}

func (h *Hub) publish(e *entry) {
	line := e.line()
	h.mu.Lock()
	if h.cfg.Stderr != nil {
		io.WriteString(h.cfg.Stderr, line+"\n")
	}
	if h.cfg.File != nil {
		if _, err := h.cfg.File.Write([]byte(line + "\n")); err != nil && !h.fileErr {
			h.fileErr = true
			if h.cfg.Stderr != nil {
				fmt.Fprintf(h.cfg.Stderr, "log file: %v (the log goes on here only)\n", err)
			}
		} else if err == nil {
			h.fileErr = false
		}
	}
	h.ring = append(h.ring, line)
	h.ringBytes += len(line)
	drop := 0
	for len(h.ring)-drop > h.cfg.Ring || (h.ringBytes > MaxRingBytes && len(h.ring)-drop > 1) {
		h.ringBytes -= len(h.ring[drop])
		h.ring[drop] = ""
		drop++
	}
	if drop > 0 {
		h.ring = h.ring[drop:]
	}
	for f := range h.followers {
		select {
		case f.ch <- line:
		default:
			f.skipped.Add(1)
		}
	}
	h.mu.Unlock()
	if rs := *h.remotes.Load(); len(rs) > 0 {
		msg := Format5424(e, h.cfg.Hostname(), h.pid)
		for _, r := range rs {
			r.enqueue(msg)
		}
	}
}

// handler is the slog.Handler of a Hub, with the attributes given by With.
type handler struct {
	hub    *Hub
	attrs  []slog.Attr
	groups string // "a.b." prefix of attribute keys
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.hub.level.Level() }

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), h.prefixed(as)...)
	return &n
}

func (h *handler) prefixed(as []slog.Attr) []slog.Attr {
	if h.groups == "" {
		return as
	}
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = slog.Attr{Key: h.groups + a.Key, Value: a.Value}
	}
	return out
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.groups = h.groups + name + "."
	return &n
}

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	e := entry{time: r.Time, level: r.Level}
	if e.time.IsZero() {
		e.time = time.Now()
	}
	var b strings.Builder
	b.WriteString(r.Message)
	add := func(a slog.Attr) {
		switch a.Key {
		case KeyTag:
			e.tag = a.Value.String()
			return
		case KeyConn:
			if a.Value.Kind() == slog.KindUint64 {
				e.conn = a.Value.Uint64()
				return
			}
		case KeyPeer:
			e.peer = a.Value.String()
			return
		}
		h.writeAttr(&b, a)
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(func(a slog.Attr) bool {
		if h.groups != "" {
			a.Key = h.groups + a.Key
		}
		add(a)
		return true
	})
	e.msg = clipLine(b.String())
	h.hub.publish(&e)
	return nil
}

func (h *handler) writeAttr(b *strings.Builder, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Key == "" && a.Value.Kind() != slog.KindGroup {
		return
	}
	if s, ok := a.Value.Any().(stanza); ok && a.Value.Kind() == slog.KindAny {
		b.WriteString(": ")
		b.WriteString(render(s.el, h.hub.bodies.Load()))
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		for _, g := range a.Value.Group() {
			if a.Key != "" {
				g.Key = a.Key + "." + g.Key
			}
			h.writeAttr(b, g)
		}
		return
	}
	b.WriteByte(' ')
	b.WriteString(a.Key)
	b.WriteByte('=')
	v := a.Value.String()
	if v == "" || strings.ContainsAny(v, " \t\r\n\"=") {
		v = strconv.Quote(v)
	}
	b.WriteString(v)
}

// clipLine cuts a message at MaxLine bytes (on a rune boundary) and makes
// it one line: a record never spans lines, so nothing a peer sends can
// forge a line of its own.
func clipLine(s string) string {
	if len(s) > MaxLine {
		cut := MaxLine
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + truncatedMark
	}
	if strings.ContainsAny(s, "\r\n") {
		s = strings.NewReplacer("\r\n", " ⏎ ", "\n", " ⏎ ", "\r", " ⏎ ").Replace(s)
	}
	return s
}
