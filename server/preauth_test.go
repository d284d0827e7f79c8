package server

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// fakeConn is a connection from a given address that reads nothing until
// its read deadline passes or it is closed.
type fakeConn struct {
	net.Conn // nil: only what is below is used
	remote   net.Addr

	mu       sync.Mutex
	deadline time.Time
	closed   bool
}

func newFakeConn(addr string) *fakeConn {
	return &fakeConn{remote: &net.TCPAddr{IP: net.ParseIP(addr), Port: 40000}}
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.remote }
func (c *fakeConn) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5222} }
func (c *fakeConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}
func (c *fakeConn) SetDeadline(t time.Time) error      { return c.SetReadDeadline(t) }
func (c *fakeConn) SetWriteDeadline(t time.Time) error { return nil }
func (c *fakeConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return nil
}
func (c *fakeConn) Write(b []byte) (int, error) { return len(b), nil }

// Read returns a timeout once the deadline has passed (polled: enough
// for a test), io.EOF once closed.
func (c *fakeConn) Read(b []byte) (int, error) {
	for {
		c.mu.Lock()
		d, closed := c.deadline, c.closed
		c.mu.Unlock()
		if closed {
			return 0, net.ErrClosed
		}
		if !d.IsZero() && time.Now().After(d) {
			return 0, timeoutErr{}
		}
		time.Sleep(time.Millisecond)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestPreAuthPerAddressRefusesTheNew(t *testing.T) {
	tr := newPreAuth()
	tr.setLimits(100, 3)
	var lines []string
	logf := func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }
	var held []*pending
	for i := 0; i < 3; i++ {
		p, refused := tr.admit(newFakeConn("192.0.2.1"), logf)
		if refused != nil {
			t.Fatalf("connection %d refused: %v", i+1, refused)
		}
		held = append(held, p)
	}
	for i := 0; i < 5; i++ {
		if p, refused := tr.admit(newFakeConn("192.0.2.1"), logf); p != nil || refused == nil || refused.Condition != "policy-violation" {
			t.Fatalf("4th connection from one address: %v, %v", p, refused)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "192.0.2.1") {
		t.Fatalf("one log line per episode, got %q", lines)
	}
	// Another address is not affected, and nobody was evicted.
	if _, refused := tr.admit(newFakeConn("192.0.2.2"), logf); refused != nil {
		t.Fatalf("another address refused: %v", refused)
	}
	for _, p := range held {
		if p.evicted.Load() != nil {
			t.Fatal("a connection was evicted under the global limit")
		}
	}
	// Once one authenticates, there is room again.
	stream.Authenticated(held[0])
	if _, refused := tr.admit(newFakeConn("192.0.2.1"), logf); refused != nil {
		t.Fatalf("after one authenticated: %v", refused)
	}
	if _, _, n := tr.limits(); n != 4 {
		t.Fatalf("held %d, want 4", n)
	}
}

func TestPreAuthGlobalEvictsTheOldest(t *testing.T) {
	tr := newPreAuth()
	tr.setLimits(4, 100)
	logf := func(string, ...any) {}
	var held []*pending
	for i := 0; i < 4; i++ {
		p, _ := tr.admit(newFakeConn(fmt.Sprintf("192.0.2.%d", i+1)), logf)
		held = append(held, p)
	}
	// The oldest authenticates meanwhile: it is no longer a candidate.
	stream.Authenticated(held[0])
	p5, refused := tr.admit(newFakeConn("198.51.100.1"), logf)
	if refused != nil || p5 == nil {
		t.Fatalf("under the global limit after one authenticated: %v", refused)
	}
	p6, refused := tr.admit(newFakeConn("198.51.100.2"), logf)
	if refused != nil || p6 == nil {
		t.Fatalf("a new connection at the global limit is taken, the oldest goes: %v", refused)
	}
	if held[0].evicted.Load() != nil {
		t.Fatal("an authenticated connection was evicted")
	}
	e := held[1].evicted.Load()
	if e == nil || e.Condition != "resource-constraint" {
		t.Fatalf("the oldest unauthenticated connection was not evicted: %v", e)
	}
	for _, p := range held[2:] {
		if p.evicted.Load() != nil {
			t.Fatal("a newer connection was evicted")
		}
	}
	// The evicted connection's blocked read ends with the stream error,
	// and moving its deadline does not undo that.
	held[1].SetReadDeadline(time.Now().Add(time.Hour))
	_, err := held[1].Read(make([]byte, 10))
	var xe *xml.Error
	if !errors.As(err, &xe) || xe.Condition != "resource-constraint" {
		t.Fatalf("read after eviction: %v", err)
	}
	if _, _, n := tr.limits(); n != 4 {
		t.Fatalf("held %d, want 4", n)
	}
}

func TestPreAuthEvictionWakesABlockedRead(t *testing.T) {
	tr := newPreAuth()
	tr.setLimits(1, 1)
	p, _ := tr.admit(newFakeConn("192.0.2.1"), func(string, ...any) {})
	p.SetReadDeadline(time.Now().Add(time.Hour))
	got := make(chan error, 1)
	go func() {
		_, err := p.Read(make([]byte, 1))
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	tr.admit(newFakeConn("192.0.2.2"), func(string, ...any) {})
	select {
	case err := <-got:
		var xe *xml.Error
		if !errors.As(err, &xe) {
			t.Fatalf("got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the evicted connection's read did not end")
	}
}

func TestPreAuthIPv6CountsThe64(t *testing.T) {
	tr := newPreAuth()
	tr.setLimits(100, 2)
	logf := func(string, ...any) {}
	tr.admit(newFakeConn("2001:db8:1:2::1"), logf)
	tr.admit(newFakeConn("2001:db8:1:2:ffff::9"), logf)
	if _, refused := tr.admit(newFakeConn("2001:db8:1:2::3"), logf); refused == nil {
		t.Fatal("a third connection from the same /64 was taken")
	}
	if _, refused := tr.admit(newFakeConn("2001:db8:1:3::1"), logf); refused != nil {
		t.Fatal("another /64 was refused")
	}
	if _, refused := tr.admit(newFakeConn("::ffff:192.0.2.7"), logf); refused != nil {
		t.Fatal("a v4-mapped address was refused")
	}
}

// TestAuthenticatedThroughTLS: a server or component stream marks its
// connection authenticated through the TLS layer.
func TestAuthenticatedThroughTLS(t *testing.T) {
	tr := newPreAuth()
	tr.setLimits(10, 10)
	p, _ := tr.admit(newFakeConn("192.0.2.1"), func(string, ...any) {})
	stream.Authenticated(tls.Server(p, &tls.Config{}))
	if _, _, n := tr.limits(); n != 0 {
		t.Fatalf("held %d after authentication under TLS", n)
	}
}

func TestAutoPreAuth(t *testing.T) {
	for _, tc := range []struct{ limit, want int }{
		{20000, 5000}, {1 << 20, store.DefaultPreAuthMax}, {2000, 500}, {1024, 256}, {16, 8}, {0, store.DefaultPreAuthMax},
	} {
		if got := autoPreAuth(tc.limit); got != tc.want {
			t.Errorf("autoPreAuth(%d) = %d, want %d", tc.limit, got, tc.want)
		}
	}
}

// failingListener fails Accept with EMFILE a number of times, then hands
// out connections, then reports itself closed.
type failingListener struct {
	mu    sync.Mutex
	fails int
	conns []net.Conn
	calls []time.Time
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, time.Now())
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	if len(l.conns) > 0 {
		c := l.conns[0]
		l.conns = l.conns[1:]
		return c, nil
	}
	return nil, net.ErrClosed
}
func (l *failingListener) Close() error   { return nil }
func (l *failingListener) Addr() net.Addr { return &net.TCPAddr{} }

// TestAcceptBacksOff: EMFILE from accept is retried with a doubling delay
// up to the maximum, recorded as the last error, logged once for the
// episode, and the connection that comes next is served.
func TestAcceptBacksOff(t *testing.T) {
	oldMin, oldMax := acceptMinDelay, acceptMaxDelay
	acceptMinDelay, acceptMaxDelay = 2*time.Millisecond, 16*time.Millisecond
	defer func() { acceptMinDelay, acceptMaxDelay = oldMin, oldMax }()

	var logBuf syncLog
	e := &Engine{cfg: Config{Log: logging.NewWriter(&logBuf, logging.LevelLow), Limits: xml.DefaultLimits}, stop: make(chan struct{}), preauth: newPreAuth(),
		conns: map[net.Conn]*connState{}, xmpp: store.XMPPConfig{ClientAuthTimeout: 5 * time.Second}}
	server, client := net.Pipe()
	defer client.Close()
	l := &failingListener{fails: 7, conns: []net.Conn{server}}
	e.wg.Add(1)
	done := make(chan struct{})
	go func() { e.accept(&listener{l: l, label: "127.0.0.1:5222 (c2s, STARTTLS)"}); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("accept did not return after the listener closed")
	}
	if len(l.calls) != 9 {
		t.Fatalf("Accept called %d times, want 7 failures + 1 connection + the close", len(l.calls))
	}
	// delays 2, 4, 8, 16, 16, 16, 16 ms
	want := []time.Duration{2, 4, 8, 16, 16, 16, 16}
	for i, w := range want {
		if d := l.calls[i+1].Sub(l.calls[i]); d < w*time.Millisecond {
			t.Errorf("retry %d after %v, want at least %v", i+1, d, w*time.Millisecond)
		}
	}
	st := e.lastErr
	if !strings.Contains(st, "too many open files") || !strings.Contains(st, "127.0.0.1:5222") {
		t.Errorf("last error = %q", st)
	}
	logged := logBuf.String()
	if n := strings.Count(logged, "too many open files"); n != 1 {
		t.Errorf("the failure logged %d times, want once per episode:\n%s", n, logged)
	}
	if !strings.Contains(logged, "accepting connections on 127.0.0.1:5222 (c2s, STARTTLS) again, after 7 failed attempts") {
		t.Errorf("the recovery is not logged:\n%s", logged)
	}
	// The connection accepted after the failures was served: it gets a
	// stream error for what it sends.
	client.SetDeadline(time.Now().Add(5 * time.Second))
	go client.Write([]byte(`<stream:stream xmlns='urn:example:nope' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`))
	buf := make([]byte, 4096)
	var got []byte
	for !bytes.Contains(got, []byte("</stream:stream>")) {
		n, err := client.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	if !bytes.Contains(got, []byte("invalid-namespace")) {
		t.Fatalf("the connection after the failures got %q", got)
	}
}

type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// dialFrom connects to the fixture's c2s port from a given loopback
// address.
func (f *fixture) dialFrom(t *testing.T, src string) *client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", f.port))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &client{t: t, conn: c}
}

// TestPreAuthLimitsInTheEngine: over real TCP, the limits apply as they
// are set; a connection from an address over its limit gets a stream
// error at once; the oldest unauthenticated connection makes room for a
// new one at the global limit; logging in from elsewhere works all along;
// a bound session no longer counts.
func TestPreAuthLimitsInTheEngine(t *testing.T) {
	f := start(t)
	f.setConfig(store.XMPPPreAuth, "6", func(c store.XMPPConfig) bool { return c.PreAuth == 6 })
	f.setConfig(store.XMPPPreAuthPerAddress, "3", func(c store.XMPPConfig) bool { return c.PreAuthPerAddress == 3 })
	held := func() int { _, _, n := f.eng.preauth.limits(); return n }

	var idle []*client
	for i := 0; i < 3; i++ {
		idle = append(idle, f.dialFrom(t, "127.0.0.2"))
	}
	waitFor(t, "3 connections held", func() bool { return held() == 3 })
	over := f.dialFrom(t, "127.0.0.2")
	over.rd = xml.NewReader(over.conn, xml.DefaultLimits)
	begin := time.Now()
	if _, err := over.rd.Header(); err != nil {
		t.Fatal(err)
	}
	if got := over.streamError(); got != "policy-violation" {
		t.Fatalf("over the per-address limit: %s", got)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Fatalf("refused after %v", d)
	}

	// A client from another address logs in; once bound it does not count.
	c := f.dialFrom(t, "127.0.0.3")
	c.login("alice", "alice-password", "elsewhere")
	waitFor(t, "the bound session to leave the count", func() bool { return held() == 3 })

	// Fill the global limit from other addresses: the oldest goes.
	for i := 0; i < 3; i++ {
		f.dialFrom(t, "127.0.0.4")
	}
	waitFor(t, "6 connections held", func() bool { return held() == 6 })
	f.dialFrom(t, "127.0.0.5")
	oldest := idle[0]
	oldest.rd = xml.NewReader(oldest.conn, xml.DefaultLimits)
	if _, err := oldest.rd.Header(); err != nil {
		t.Fatal(err)
	}
	if got := oldest.streamError(); got != "resource-constraint" {
		t.Fatalf("the oldest: %s", got)
	}
	if held() != 6 {
		t.Fatalf("held %d, want 6", held())
	}
	if el := c.ping("still"); el.Get("type") != "result" {
		t.Fatal(el)
	}
	st := f.eng.Status()
	if st.PreAuthLimit != 6 || st.PreAuthPerAddress != 3 || st.PreAuth != 6 {
		t.Fatalf("status: %d of %d, %d per address", st.PreAuth, st.PreAuthLimit, st.PreAuthPerAddress)
	}
}

// TestOpenFilesWarning: the log warns once when the open files pass the
// share of the limit, and says when they are back.
func TestOpenFilesWarning(t *testing.T) {
	old := filesWarnShare
	defer func() { filesWarnShare = old }()
	var logBuf syncLog
	e := &Engine{cfg: Config{Log: logging.NewWriter(&logBuf, logging.LevelLow)}}
	open, limit, err := openFiles()
	if err != nil || open <= 0 || limit <= 0 {
		t.Fatalf("openFiles = %d, %d, %v", open, limit, err)
	}
	filesWarnShare = float64(open-1) / float64(limit) / 2 // well below what is open
	e.checkFiles()
	e.checkFiles()
	if n := strings.Count(logBuf.String(), "files the process may open are in use"); n != 1 {
		t.Fatalf("warned %d times, want once:\n%s", n, logBuf.String())
	}
	filesWarnShare = 2 // far above
	e.checkFiles()
	if !strings.Contains(logBuf.String(), "open files back to") {
		t.Fatalf("no line at the end of the episode:\n%s", logBuf.String())
	}
}

// TestStanzaRateSetting: c2s sees xmpp limits stanza-rate as it changes.
func TestStanzaRateSetting(t *testing.T) {
	f := start(t)
	if r, b := f.eng.c2s.StanzaRate(); r != store.DefaultStanzaRate || b != store.DefaultStanzaBurst {
		t.Fatalf("defaults: %v, %d", r, b)
	}
	f.setConfig(store.XMPPStanzaRate, "2.5", func(c store.XMPPConfig) bool { return c.StanzaRate == 2.5 })
	f.setConfig(store.XMPPStanzaBurst, "7", func(c store.XMPPConfig) bool { return c.StanzaBurst == 7 })
	if r, b := f.eng.c2s.StanzaRate(); r != 2.5 || b != 7 {
		t.Fatalf("after the change: %v, %d", r, b)
	}
}
