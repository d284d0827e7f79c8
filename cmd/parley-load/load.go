package main

// The load generator: sessions, logins, message exchange and the report
// (loadCmd parses the flags; see main.go for what the tool does).
//
// Efficiency: one goroutine per session reads, splitting the stream into
// top-level elements without parsing them (a byte scanner: only a
// message's start tag is looked at); one goroutine per session writes
// while messages are sent, as many messages per write as its window
// allows.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"mellium.im/sasl"
)

// loadConfig is what one run does.
type loadConfig struct {
	Addr        string
	Domain      string
	Users       int
	Messages    int
	UserFormat  string // fmt verb %d: the user's number
	Password    string
	StartTLS    bool
	Mechanism   string // PLAIN, SCRAM-SHA-1, SCRAM-SHA-256
	Register    bool   // register each account in-band (XEP-0077) before logging in
	ServerPID   int    // 0: no server figures
	Window      int    // messages in flight per sender
	Timeout     time.Duration
	Concurrency int           // logins in progress at once
	Settle      time.Duration // pause with every session idle before reading the server's memory
	Resource    string
	Log         io.Writer // progress lines; nil: none
}

// Bounds on what the flags accept.
const (
	maxLoadUsers    = 100000
	maxLoadMessages = 1000000
	maxLoadWindow   = 10000
	maxElementSize  = 1 << 20 // a top-level element larger than this ends the session
)

// loadReport is what one run measured.
type loadReport struct {
	Sessions         int
	Expected         int64
	Delivered        int64
	Errors           int64 // error stanzas received instead of messages
	LoginWall        time.Duration
	Wall             time.Duration // first message sent to last delivered
	MsgsPerSec       float64
	ServerCPU        time.Duration // during the message phase; 0 without --server-pid
	ServerCPULogins  time.Duration
	ServerRSSBefore  int64 // bytes, before the first login
	ServerRSSIdle    int64 // bytes, every session logged in and idle
	ServerRSSAfter   int64 // bytes, after the messages
	ServerAnonBefore int64 // RssAnon, bytes: the same without the binary's code and mapped files
	ServerAnonIdle   int64
	GeneratorCPU     time.Duration // this process, during the message phase
	LoadAvg          string        // /proc/loadavg at the start
	LoadAvgEnd       string
	FirstError       string // the first error stanza or session failure seen
	ServerMeasured   bool
	MessagesSent     bool // the message phase ran
}

// CPUPerMsg is the server's CPU time per delivered message.
func (r *loadReport) CPUPerMsg() time.Duration {
	if r.Delivered == 0 {
		return 0
	}
	return r.ServerCPU / time.Duration(r.Delivered)
}

// KiBPerSession is the server's memory per idle session.
func (r *loadReport) KiBPerSession() float64 {
	if r.Sessions == 0 {
		return 0
	}
	return float64(r.ServerRSSIdle-r.ServerRSSBefore) / 1024 / float64(r.Sessions)
}

// AnonKiBPerSession is KiBPerSession counted in anonymous memory only:
// the code pages a server touches for the first time while its clients
// log in (and pages of its store file) are not per session.
func (r *loadReport) AnonKiBPerSession() float64 {
	if r.Sessions == 0 {
		return 0
	}
	return float64(r.ServerAnonIdle-r.ServerAnonBefore) / 1024 / float64(r.Sessions)
}

func (r *loadReport) write(w io.Writer, cfg *loadConfig) {
	fmt.Fprintf(w, "load average at start: %s; at end: %s\n", r.LoadAvg, r.LoadAvgEnd)
	fmt.Fprintf(w, "sessions:           %d logged in (%s, %s) in %s\n", r.Sessions, tlsWord(cfg.StartTLS), cfg.Mechanism, r.LoginWall.Round(time.Millisecond))
	if !r.MessagesSent {
		fmt.Fprintf(w, "messages:           none sent (the run stopped before)\n")
		return
	}
	fmt.Fprintf(w, "messages:           %d/%d delivered", r.Delivered, r.Expected)
	if r.Errors > 0 {
		fmt.Fprintf(w, ", %d error stanzas", r.Errors)
	}
	fmt.Fprintf(w, "\nwall time:          %s\n", r.Wall.Round(time.Millisecond))
	fmt.Fprintf(w, "throughput:         %.0f msgs/s\n", r.MsgsPerSec)
	if r.ServerMeasured {
		fmt.Fprintf(w, "server CPU:         %s, %.1f µs per message (TLS included)\n", r.ServerCPU.Round(time.Millisecond), float64(r.CPUPerMsg())/1e3)
		if r.Sessions > 0 {
			fmt.Fprintf(w, "server CPU, logins: %s, %.2f ms per login\n", r.ServerCPULogins.Round(time.Millisecond), float64(r.ServerCPULogins)/1e6/float64(r.Sessions))
		}
		fmt.Fprintf(w, "server RSS:         %s before logins, %s idle, %s after messages\n", mib(r.ServerRSSBefore), mib(r.ServerRSSIdle), mib(r.ServerRSSAfter))
		fmt.Fprintf(w, "memory per session: %.1f KiB per idle session\n", r.KiBPerSession())
		fmt.Fprintf(w, "anonymous memory:   %s before logins, %s idle: %.1f KiB per idle session\n", mib(r.ServerAnonBefore), mib(r.ServerAnonIdle), r.AnonKiBPerSession())
	} else {
		fmt.Fprintf(w, "server CPU, memory: not measured (give --server-pid)\n")
	}
	perMsg := 0.0
	if r.Delivered > 0 {
		perMsg = float64(r.GeneratorCPU) / 1e3 / float64(r.Delivered)
	}
	fmt.Fprintf(w, "generator CPU:      %s, %.1f µs per message (this process)\n", r.GeneratorCPU.Round(time.Millisecond), perMsg)
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error:        %s\n", r.FirstError)
	}
}

func tlsWord(starttls bool) string {
	if starttls {
		return "STARTTLS"
	}
	return "no TLS"
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// loadCmd is `parley-load ARGS`.
func loadCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("parley-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := loadConfig{Log: stderr}
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:5222", "the server's client port (host:port)")
	fs.StringVar(&cfg.Domain, "domain", "", "the XMPP domain the accounts are in (required)")
	fs.IntVar(&cfg.Users, "users", 1000, "sessions, one per account")
	fs.IntVar(&cfg.Messages, "messages", 200, "messages each user sends")
	fs.StringVar(&cfg.UserFormat, "user-format", "user%d", "account names: a format with one %d, numbered from 0")
	fs.StringVar(&cfg.Password, "password", "load-password-1", "every account's password")
	fs.BoolVar(&cfg.StartTLS, "starttls", true, "negotiate STARTTLS (the certificate is not verified)")
	fs.StringVar(&cfg.Mechanism, "sasl", "PLAIN", "SASL mechanism: PLAIN, SCRAM-SHA-1 or SCRAM-SHA-256")
	fs.BoolVar(&cfg.Register, "register", false, "register each account in-band (XEP-0077) first; one that exists is used as is")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "the server's process id: read its CPU time and memory from /proc")
	fs.IntVar(&cfg.Window, "window", 32, "messages in flight per user")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Minute, "bound on the whole run")
	fs.IntVar(&cfg.Concurrency, "login-concurrency", 50, "logins in progress at once")
	fs.DurationVar(&cfg.Settle, "settle", 3*time.Second, "pause with every session idle before the server's memory is read")
	fs.StringVar(&cfg.Resource, "resource", "load", "the resource every session binds")
	makeCSV := fs.String("make-csv", "", "write the accounts as jid,password lines to this file (- for standard output) and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := cfg.check(); err != nil {
		return err
	}
	if *makeCSV != "" {
		return writeCSV(&cfg, *makeCSV, stdout)
	}
	if err := raiseFileLimit(cfg.Users + 64); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	rep, err := runLoad(ctx, &cfg)
	if rep != nil {
		rep.write(stdout, &cfg)
	}
	return err
}

func (c *loadConfig) check() error {
	switch {
	case c.Domain == "":
		return errors.New("--domain is required (the XMPP domain of the accounts)")
	case c.Users < 2 || c.Users > maxLoadUsers:
		return fmt.Errorf("--users must be between 2 and %d, not %d", maxLoadUsers, c.Users)
	case c.Messages < 1 || c.Messages > maxLoadMessages:
		return fmt.Errorf("--messages must be between 1 and %d, not %d", maxLoadMessages, c.Messages)
	case c.Window < 1 || c.Window > maxLoadWindow:
		return fmt.Errorf("--window must be between 1 and %d, not %d", maxLoadWindow, c.Window)
	case c.Timeout <= 0:
		return fmt.Errorf("--timeout must be positive")
	case c.Concurrency < 1 || c.Concurrency > 1000:
		return fmt.Errorf("--login-concurrency must be between 1 and 1000, not %d", c.Concurrency)
	case c.Settle < 0 || c.Settle > 10*time.Minute:
		return fmt.Errorf("--settle must be between 0 and 10m")
	case c.ServerPID < 0:
		return fmt.Errorf("--server-pid must be a process id")
	case c.Password == "":
		return errors.New("--password must not be empty")
	case c.Resource == "" || strings.ContainsAny(c.Resource, "<>&'\"/"):
		return fmt.Errorf("--resource %q: give a plain word", c.Resource)
	}
	if strings.Count(c.UserFormat, "%") != 1 || !strings.Contains(c.UserFormat, "%d") {
		return fmt.Errorf("--user-format %q must contain exactly one %%d", c.UserFormat)
	}
	if strings.ContainsAny(c.UserFormat+c.Domain, "<>&'\"/@ ") {
		return fmt.Errorf("--user-format and --domain must be plain names (no <>&'\"/@ or spaces)")
	}
	switch c.Mechanism = strings.ToUpper(c.Mechanism); c.Mechanism {
	case "PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256":
	default:
		return fmt.Errorf("--sasl %q: give PLAIN, SCRAM-SHA-1 or SCRAM-SHA-256", c.Mechanism)
	}
	if c.ServerPID > 0 {
		if _, err := readProcCPU(c.ServerPID); err != nil {
			return fmt.Errorf("--server-pid %d: %v", c.ServerPID, err)
		}
	}
	return nil
}

func (c *loadConfig) user(i int) string { return fmt.Sprintf(c.UserFormat, i) }

func (c *loadConfig) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "parley-load: "+format+"\n", args...)
	}
}

func writeCSV(c *loadConfig, name string, stdout io.Writer) error {
	var b bytes.Buffer
	for i := 0; i < c.Users; i++ {
		fmt.Fprintf(&b, "%s@%s,%s\n", c.user(i), c.Domain, c.Password)
	}
	if name == "-" {
		_, err := stdout.Write(b.Bytes())
		return err
	}
	return os.WriteFile(name, b.Bytes(), 0o600)
}

// raiseFileLimit raises the open-files soft limit up to the hard limit
// and fails clearly when need descriptors are not available.
func raiseFileLimit(need int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("open-files limit: %v", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("raising the open-files limit to %d: %v", lim.Max, err)
		}
	}
	if uint64(need) > lim.Cur {
		return fmt.Errorf("%d sessions need about %d open files; the limit is %d (raise the hard limit: ulimit -Hn)", need-64, need, lim.Cur)
	}
	return nil
}

// --- measurements from /proc ---

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on
// every Linux architecture Go supports).
const clockTicks = 100

// readProcCPU returns a process's user+system CPU time (all threads).
func readProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("no such process to measure (%v)", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unreadable CPU times in /proc stat")
	}
	return time.Duration(u+s) * time.Second / clockTicks, nil
}

// readProcRSS returns a process's resident set size and the anonymous
// part of it (RssAnon), in bytes.
func readProcRSS(pid int) (rss, anon int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	kB := func(v string) int64 {
		f := strings.Fields(v)
		if len(f) == 2 && f[1] == "kB" {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				return n * 1024
			}
		}
		return -1
	}
	rss, anon = -1, -1
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			rss = kB(v)
		}
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			anon = kB(v)
		}
	}
	if rss < 0 || anon < 0 {
		return 0, 0, errors.New("no VmRSS or RssAnon in /proc status")
	}
	return rss, anon, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// --- the run ---

// runLoad runs one measurement. The report is returned with what was
// measured even when the run fails part-way.
func runLoad(ctx context.Context, cfg *loadConfig) (*loadReport, error) {
	rep := &loadReport{Expected: int64(cfg.Users) * int64(cfg.Messages), LoadAvg: loadAvg(), ServerMeasured: cfg.ServerPID > 0}
	r := &run{cfg: cfg, rep: rep, total: rep.Expected,
		done: make(chan struct{}), stop: make(chan struct{}), failedc: make(chan struct{})}
	defer func() { rep.LoadAvgEnd = loadAvg() }()
	var cpu0 time.Duration
	if cfg.ServerPID > 0 {
		var err error
		if rep.ServerRSSBefore, rep.ServerAnonBefore, err = readProcRSS(cfg.ServerPID); err != nil {
			return rep, fmt.Errorf("server memory: %v", err)
		}
		if cpu0, err = readProcCPU(cfg.ServerPID); err != nil {
			return rep, fmt.Errorf("server CPU: %v", err)
		}
	}
	defer r.closeAll()

	// Logins, a bounded number at once.
	cfg.logf("logging in %d sessions to %s", cfg.Users, cfg.Addr)
	t0 := time.Now()
	if err := r.loginAll(ctx); err != nil {
		rep.LoginWall = time.Since(t0)
		return rep, err
	}
	rep.LoginWall = time.Since(t0)
	rep.Sessions = len(r.sessions)
	cfg.logf("%d sessions logged in in %s", rep.Sessions, rep.LoginWall.Round(time.Millisecond))

	// Idle: the server's memory with every session logged in.
	if cfg.Settle > 0 {
		select {
		case <-time.After(cfg.Settle):
		case <-ctx.Done():
			return rep, fmt.Errorf("timed out (--timeout) while idle")
		}
	}
	if err := r.failed(); err != nil {
		return rep, err
	}
	var cpu1 time.Duration
	if cfg.ServerPID > 0 {
		var err error
		if rep.ServerRSSIdle, rep.ServerAnonIdle, err = readProcRSS(cfg.ServerPID); err != nil {
			return rep, fmt.Errorf("server memory: %v", err)
		}
		if cpu1, err = readProcCPU(cfg.ServerPID); err != nil {
			return rep, fmt.Errorf("server CPU: %v", err)
		}
		rep.ServerCPULogins = cpu1 - cpu0
	}

	// Messages.
	cfg.logf("sending %d messages per user (window %d)", cfg.Messages, cfg.Window)
	gen0 := selfCPU()
	t1 := time.Now()
	rep.MessagesSent = true
	var wg sync.WaitGroup
	for i, s := range r.sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.send(ctx, s, r.sessions[(i+1)%len(r.sessions)])
		}()
	}
	var runErr error
	select {
	case <-r.done:
	case <-r.failedc:
		runErr = r.failed()
	case <-ctx.Done():
		runErr = fmt.Errorf("timed out (--timeout %s): %d of %d messages delivered", cfg.Timeout, r.delivered.Load(), r.total)
	}
	rep.Wall = time.Since(t1)
	rep.GeneratorCPU = selfCPU() - gen0
	rep.Delivered = r.delivered.Load()
	rep.Errors = r.errStanzas.Load()
	if rep.Wall > 0 {
		rep.MsgsPerSec = float64(rep.Delivered) / rep.Wall.Seconds()
	}
	if cfg.ServerPID > 0 {
		if cpu2, err := readProcCPU(cfg.ServerPID); err == nil {
			rep.ServerCPU = cpu2 - cpu1
		}
		rep.ServerRSSAfter, _, _ = readProcRSS(cfg.ServerPID)
	}
	r.stopSenders()
	wg.Wait()
	rep.FirstError = r.firstError()
	if runErr == nil && rep.Delivered != rep.Expected {
		runErr = fmt.Errorf("%d of %d messages delivered", rep.Delivered, rep.Expected)
	}
	return rep, runErr
}

type run struct {
	cfg      *loadConfig
	rep      *loadReport
	sessions []*session

	total      int64
	delivered  atomic.Int64
	errStanzas atomic.Int64
	arrived    atomic.Int64  // delivered + errStanzas
	done       chan struct{} // closed when every message has arrived (or come back as an error)
	doneOnce   sync.Once
	stop       chan struct{} // closed to stop the senders
	stopOnce   sync.Once

	mu       sync.Mutex
	err      error         // the first session failure
	failedc  chan struct{} // closed at the first session failure
	errFirst string        // the first error stanza
}

func (r *run) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
		close(r.failedc)
	}
}

func (r *run) failed() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *run) firstError() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.errFirst != "" {
		return r.errFirst
	}
	if r.err != nil {
		return r.err.Error()
	}
	return ""
}

func (r *run) stopSenders() { r.stopOnce.Do(func() { close(r.stop) }) }

func (r *run) closeAll() {
	r.stopSenders()
	for _, s := range r.sessions {
		s.close()
	}
}

func (r *run) loginAll(ctx context.Context) error {
	n := r.cfg.Users
	r.sessions = make([]*session, n)
	for i := range r.sessions {
		r.sessions[i] = &session{run: r, user: r.cfg.user(i), wake: make(chan struct{}, 1)}
	}
	jobs := make(chan *session)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for w := 0; w < min(r.cfg.Concurrency, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range jobs {
				if err := s.login(ctx); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
feed:
	for _, s := range r.sessions {
		mu.Lock()
		stop := firstErr != nil
		mu.Unlock()
		if stop {
			break
		}
		select {
		case jobs <- s:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if ctx.Err() != nil {
		return fmt.Errorf("timed out (--timeout %s) during logins", r.cfg.Timeout)
	}
	if err := r.failed(); err != nil {
		return err
	}
	for _, s := range r.sessions {
		go s.readLoop()
	}
	return nil
}

// session is one client connection.
type session struct {
	run  *run
	user string
	jid  string // the bound full JID

	raw  net.Conn
	conn net.Conn // raw, or the TLS connection over it
	rd   *stanzaReader

	wmu sync.Mutex // writes: the sender and the reader's iq answers

	// recv counts messages received; the sender whose messages this
	// session receives waits on wake while its window is full.
	recv     atomic.Int64
	wakeAt   atomic.Int64 // wake the sender once recv reaches this
	wake     chan struct{}
	closing  atomic.Bool
	closeMu  sync.Mutex
	closedIO bool
}

func (s *session) close() {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closedIO || s.raw == nil {
		return
	}
	s.closedIO = true
	s.closing.Store(true)
	s.conn.SetWriteDeadline(time.Now().Add(time.Second))
	if s.wmu.TryLock() { // a writer blocked on a full connection gives up at the deadline
		s.conn.Write([]byte("</stream:stream>"))
		s.wmu.Unlock()
	}
	s.raw.Close()
}

func (s *session) write(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.conn.Write(b)
	return err
}

func (s *session) errorf(format string, args ...any) error {
	return fmt.Errorf("%s@%s: %s", s.user, s.run.cfg.Domain, fmt.Sprintf(format, args...))
}

// login runs the whole negotiation: stream, STARTTLS, (registration),
// SASL, bind, initial presence, and a ping whose answer says the server
// has handled the presence.
func (s *session) login(ctx context.Context) error {
	cfg := s.run.cfg
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("connecting to %s: %v", cfg.Addr, err)
	}
	s.closeMu.Lock()
	s.raw, s.conn = conn, conn
	s.closeMu.Unlock()
	conn.SetDeadline(deadline)
	s.rd = newStanzaReader(conn)
	fail := func(format string, args ...any) error {
		err := s.errorf(format, args...)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%v (the run's --timeout %s ran out)", err, cfg.Timeout)
		}
		return err
	}

	feats, err := s.openStream()
	if err != nil {
		return fail("%v", err)
	}
	if cfg.StartTLS {
		if !bytes.Contains(feats, []byte("urn:ietf:params:xml:ns:xmpp-tls")) {
			return fail("the server offers no STARTTLS")
		}
		if err := s.write([]byte("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")); err != nil {
			return fail("starttls: %v", err)
		}
		el, err := s.nextElement()
		if err != nil {
			return fail("starttls: %v", err)
		}
		if string(elemName(el)) != "proceed" {
			return fail("STARTTLS refused: %s", clip(el))
		}
		if s.rd.buffered() > 0 {
			return fail("the server sent data after <proceed/>")
		}
		tc := tls.Client(conn, &tls.Config{ServerName: cfg.Domain, InsecureSkipVerify: true})
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail("TLS handshake: %v", err)
		}
		s.closeMu.Lock()
		s.conn = tc
		s.closeMu.Unlock()
		s.rd.reset(tc)
		if feats, err = s.openStream(); err != nil {
			return fail("%v", err)
		}
	}
	if cfg.Register {
		if err := s.register(); err != nil {
			return fail("%v", err)
		}
	}
	if err := s.auth(feats); err != nil {
		return fail("%v", err)
	}
	if feats, err = s.openStream(); err != nil {
		return fail("%v", err)
	}
	if !bytes.Contains(feats, []byte("urn:ietf:params:xml:ns:xmpp-bind")) {
		return fail("the server offers no resource binding after authentication")
	}
	bind := "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>" + cfg.Resource + "</resource></bind></iq>"
	if err := s.write([]byte(bind)); err != nil {
		return fail("bind: %v", err)
	}
	el, err := s.iqReply("bind1")
	if err != nil {
		return fail("bind: %v", err)
	}
	if attr(el, "type") != "result" {
		return fail("bind refused: %s", clip(el))
	}
	s.jid = xmlUnescape(between(el, "<jid>", "</jid>"))
	if s.jid == "" {
		return fail("bind: no JID in %s", clip(el))
	}
	if err := s.write([]byte("<presence/><iq type='get' id='ready1' to='" + cfg.Domain + "'><ping xmlns='urn:xmpp:ping'/></iq>")); err != nil {
		return fail("presence: %v", err)
	}
	if _, err := s.iqReply("ready1"); err != nil {
		return fail("waiting for the answer to a ping after initial presence: %v", err)
	}
	conn.SetDeadline(time.Time{})
	return nil
}

// openStream sends a stream header and returns the stream features.
func (s *session) openStream() ([]byte, error) {
	s.rd.depth = 0
	hdr := "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='" + s.run.cfg.Domain + "'>"
	if err := s.write([]byte(hdr)); err != nil {
		return nil, fmt.Errorf("opening the stream: %v", err)
	}
	k, b, err := s.rd.next()
	if err != nil {
		return nil, fmt.Errorf("waiting for the stream header: %v", err)
	}
	if k != itemHeader {
		return nil, fmt.Errorf("expected a stream header, got %s", clip(b))
	}
	el, err := s.nextElement()
	if err != nil {
		return nil, fmt.Errorf("waiting for stream features: %v", err)
	}
	if string(elemName(el)) != "features" {
		return nil, fmt.Errorf("expected stream features, got %s", clip(el))
	}
	return bytes.Clone(el), nil
}

// nextElement returns the next top-level element; a stream error or the
// end of the stream is an error.
func (s *session) nextElement() ([]byte, error) {
	k, b, err := s.rd.next()
	if err != nil {
		return nil, err
	}
	switch {
	case k == itemStreamEnd:
		return nil, errors.New("the server closed the stream")
	case k == itemHeader:
		return nil, errors.New("unexpected second stream header")
	case string(elemName(b)) == "error" && bytes.HasPrefix(b, []byte("<stream:")):
		return nil, fmt.Errorf("stream error: %s", clip(b))
	}
	return b, nil
}

// iqReply skips elements until the iq result or error with that id.
func (s *session) iqReply(id string) ([]byte, error) {
	for {
		el, err := s.nextElement()
		if err != nil {
			return nil, err
		}
		if string(elemName(el)) == "iq" && attr(el, "id") == id {
			return el, nil
		}
	}
}

// register creates the account in-band (XEP-0077); an account that
// exists already (conflict) is fine.
func (s *session) register() error {
	cfg := s.run.cfg
	q := "<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>" + s.user + "</username><password>" + xmlEscape(cfg.Password) + "</password></query></iq>"
	if err := s.write([]byte(q)); err != nil {
		return fmt.Errorf("registration: %v", err)
	}
	el, err := s.iqReply("reg1")
	if err != nil {
		return fmt.Errorf("registration: %v", err)
	}
	if attr(el, "type") == "result" || bytes.Contains(el, []byte("<conflict")) {
		return nil
	}
	return fmt.Errorf("registration refused: %s", clip(el))
}

func (s *session) auth(feats []byte) error {
	cfg := s.run.cfg
	offered := mechanisms(feats)
	found := false
	for _, m := range offered {
		found = found || m == cfg.Mechanism
	}
	if !found {
		return fmt.Errorf("the server does not offer SASL %s (it offers %s)", cfg.Mechanism, strings.Join(offered, ", "))
	}
	var mech sasl.Mechanism
	switch cfg.Mechanism {
	case "PLAIN":
		mech = sasl.Plain
	case "SCRAM-SHA-1":
		mech = sasl.ScramSha1
	default:
		mech = sasl.ScramSha256
	}
	neg := sasl.NewClient(mech, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte(s.user), []byte(cfg.Password), nil
	}))
	_, resp, err := neg.Step(nil)
	if err != nil {
		return fmt.Errorf("SASL: %v", err)
	}
	if err := s.write([]byte("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='" + cfg.Mechanism + "'>" + base64.StdEncoding.EncodeToString(resp) + "</auth>")); err != nil {
		return fmt.Errorf("SASL: %v", err)
	}
	for {
		el, err := s.nextElement()
		if err != nil {
			return fmt.Errorf("SASL: %v", err)
		}
		switch string(elemName(el)) {
		case "challenge":
			data, err := base64.StdEncoding.DecodeString(innerText(el))
			if err != nil {
				return fmt.Errorf("SASL challenge: %v", err)
			}
			_, resp, err := neg.Step(data)
			if err != nil {
				return fmt.Errorf("SASL: %v", err)
			}
			if err := s.write([]byte("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.StdEncoding.EncodeToString(resp) + "</response>")); err != nil {
				return fmt.Errorf("SASL: %v", err)
			}
		case "success":
			if mech.Name != "PLAIN" {
				data, err := base64.StdEncoding.DecodeString(innerText(el))
				if err != nil {
					return fmt.Errorf("SASL success: %v", err)
				}
				if _, _, err := neg.Step(data); err != nil {
					return fmt.Errorf("SASL: the server's signature does not verify: %v", err)
				}
			}
			return nil
		case "failure":
			return fmt.Errorf("authentication failed: %s", clip(el))
		default:
			return fmt.Errorf("SASL: unexpected %s", clip(el))
		}
	}
}

// readLoop counts what a logged-in session receives until it is closed.
func (s *session) readLoop() {
	r := s.run
	for {
		k, el, err := s.rd.next()
		if err != nil {
			if !s.closing.Load() {
				r.fail(s.errorf("read: %v", err))
			}
			return
		}
		if k != itemElement {
			if !s.closing.Load() {
				r.fail(s.errorf("the server closed the stream"))
			}
			return
		}
		switch string(elemName(el)) {
		case "message":
			if attr(el, "type") == "error" {
				r.errStanzas.Add(1)
				r.mu.Lock()
				if r.errFirst == "" {
					r.errFirst = s.errorf("error stanza: %s", clip(el)).Error()
				}
				r.mu.Unlock()
			} else {
				r.delivered.Add(1)
			}
			// An error counts for the window too, so the sender is not stuck.
			n := s.recv.Add(1)
			if r.arrived.Add(1) == r.total {
				r.doneOnce.Do(func() { close(r.done) })
			}
			if n >= s.wakeAt.Load() {
				select {
				case s.wake <- struct{}{}:
				default:
				}
			}
		case "iq":
			if t := attr(el, "type"); t == "get" || t == "set" {
				// Answer the server's pings; anything else is not supported.
				reply := "<iq type='result' id='" + xmlEscape(attr(el, "id")) + "'/>"
				if !bytes.Contains(el, []byte("urn:xmpp:ping")) {
					reply = "<iq type='error' id='" + xmlEscape(attr(el, "id")) + "'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
				}
				if from := attr(el, "from"); from != "" {
					reply = strings.Replace(reply, "<iq ", "<iq to='"+xmlEscape(from)+"' ", 1)
				}
				s.write([]byte(reply))
			}
		case "error":
			if bytes.HasPrefix(el, []byte("<stream:")) {
				r.fail(s.errorf("stream error: %s", clip(el)))
				return
			}
		}
	}
}

// send sends cfg.Messages messages from s to to, at most cfg.Window in
// flight, as many per write as the window allows.
func (r *run) send(ctx context.Context, s, to *session) {
	m := int64(r.cfg.Messages)
	window := int64(r.cfg.Window)
	low := window / 2 // refill once in-flight drops to this
	head := []byte("<message type='chat' to='" + xmlEscape(to.jid) + "' id='" + s.user + "-")
	tail := []byte("'><body>Hello, this is a message of the load test: are we still on for lunch?</body></message>")
	var buf []byte
	var sent int64
	base := to.recv.Load() // messages the receiver had before (none, normally)
	for sent < m {
		inFlight := sent - (to.recv.Load() - base)
		if inFlight > low {
			to.wakeAt.Store(base + sent - low)
			if sent-(to.recv.Load()-base) > low { // re-check: no lost wake-up
				select {
				case <-to.wake:
				case <-r.stop:
					return
				case <-ctx.Done():
					return
				}
			}
			continue
		}
		n := min(window-inFlight, m-sent)
		buf = buf[:0]
		for k := int64(0); k < n; k++ {
			buf = append(buf, head...)
			buf = strconv.AppendInt(buf, sent+k, 10)
			buf = append(buf, tail...)
		}
		if err := s.write(buf); err != nil {
			if !s.closing.Load() {
				r.fail(s.errorf("write: %v", err))
			}
			return
		}
		sent += n
	}
}

// --- a stream splitter: top-level elements without parsing ---

type itemKind int

const (
	itemElement   itemKind = iota // a complete top-level element
	itemHeader                    // the stream's start tag
	itemStreamEnd                 // </stream:stream>
	itemSkip                      // whitespace, XML declaration, comment
)

// stanzaReader splits the server's side of an XML stream into its
// header, its top-level elements and its end, scanning bytes (tags,
// quotes, comments, CDATA) without building anything. It relies on the
// server sending well-formed XML and checks only what it needs.
type stanzaReader struct {
	r          io.Reader
	buf        []byte
	start, end int // unconsumed: buf[start:end]
	depth      int // 0: before the stream header; 1: inside the stream
}

func newStanzaReader(r io.Reader) *stanzaReader {
	return &stanzaReader{r: r, buf: make([]byte, 4096)}
}

func (s *stanzaReader) reset(r io.Reader) { s.r, s.start, s.end, s.depth = r, 0, 0, 0 }

func (s *stanzaReader) buffered() int { return s.end - s.start }

// next returns the next item; the bytes are valid until the next call.
func (s *stanzaReader) next() (itemKind, []byte, error) {
	for {
		k, from, to, ok, err := s.scan(s.buf[s.start:s.end])
		if err != nil {
			return 0, nil, err
		}
		if ok {
			b := s.buf[s.start+from : s.start+to]
			s.start += to
			if k == itemSkip {
				continue
			}
			return k, b, nil
		}
		if s.end-s.start > maxElementSize {
			return 0, nil, fmt.Errorf("an element larger than %d bytes", maxElementSize)
		}
		if err := s.fill(); err != nil {
			if err == io.EOF {
				if s.end > s.start {
					return 0, nil, errors.New("connection closed in the middle of an element")
				}
				return 0, nil, errors.New("connection closed")
			}
			return 0, nil, err
		}
	}
}

func (s *stanzaReader) fill() error {
	if s.start == s.end {
		s.start, s.end = 0, 0
	}
	if len(s.buf)-s.end < 1024 {
		if s.start > 0 {
			s.end = copy(s.buf, s.buf[s.start:s.end])
			s.start = 0
		}
		if len(s.buf)-s.end < 1024 {
			nb := make([]byte, 2*len(s.buf))
			copy(nb, s.buf[:s.end])
			s.buf = nb
		}
	}
	n, err := s.r.Read(s.buf[s.end:])
	s.end += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

var errIncomplete = errors.New("incomplete")

// scan finds the next item at the start of d: the item is d[from:to],
// and to bytes are consumed. ok is false when d holds no complete item.
func (s *stanzaReader) scan(d []byte) (k itemKind, from, to int, ok bool, err error) {
	i := bytes.IndexByte(d, '<')
	if i < 0 {
		// Text between elements (whitespace keepalives): skip it.
		return itemSkip, 0, len(d), len(d) > 0, nil
	}
	if i > 0 {
		return itemSkip, 0, i, true, nil
	}
	if len(d) < 2 {
		return 0, 0, 0, false, nil
	}
	switch d[1] {
	case '?':
		e := bytes.Index(d, []byte("?>"))
		if e < 0 {
			return 0, 0, 0, false, nil
		}
		return itemSkip, 0, e + 2, true, nil
	case '!':
		n, err := skipBang(d)
		if err == errIncomplete {
			return 0, 0, 0, false, nil
		}
		return itemSkip, 0, n, err == nil, err
	case '/':
		e := bytes.IndexByte(d, '>')
		if e < 0 {
			return 0, 0, 0, false, nil
		}
		if s.depth == 0 {
			return 0, 0, 0, false, fmt.Errorf("end tag %s before the stream header", clip(d[:e+1]))
		}
		s.depth = 0
		return itemStreamEnd, 0, e + 1, true, nil
	}
	if s.depth == 0 {
		e, self := tagEnd(d)
		if e < 0 {
			return 0, 0, 0, false, nil
		}
		if self {
			return 0, 0, 0, false, fmt.Errorf("empty stream header %s", clip(d[:e]))
		}
		s.depth = 1
		return itemHeader, 0, e, true, nil
	}
	n, err := elementEnd(d)
	if err == errIncomplete {
		return 0, 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, 0, false, err
	}
	return itemElement, 0, n, true, nil
}

// tagEnd returns the length of the start tag at the start of d (-1 if
// incomplete) and whether it is an empty-element tag. Quoted attribute
// values may hold '>'.
func tagEnd(d []byte) (int, bool) {
	var q byte
	for k := 1; k < len(d); k++ {
		c := d[k]
		switch {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '"' || c == '\'':
			q = c
		case c == '>':
			return k + 1, d[k-1] == '/'
		}
	}
	return -1, false
}

// skipBang returns the length of a comment or CDATA section at the start
// of d.
func skipBang(d []byte) (int, error) {
	for _, p := range [][2]string{{"<!--", "-->"}, {"<![CDATA[", "]]>"}} {
		if bytes.HasPrefix(d, []byte(p[0])) {
			e := bytes.Index(d[len(p[0]):], []byte(p[1]))
			if e < 0 {
				return 0, errIncomplete
			}
			return len(p[0]) + e + len(p[1]), nil
		}
		if len(d) < len(p[0]) && bytes.HasPrefix([]byte(p[0]), d) {
			return 0, errIncomplete
		}
	}
	return 0, fmt.Errorf("unexpected markup %s", clip(d[:min(len(d), 16)]))
}

// elementEnd returns the length of the element at the start of d.
func elementEnd(d []byte) (int, error) {
	depth := 0
	j := 0
	for {
		if j+1 >= len(d) {
			return 0, errIncomplete
		}
		switch d[j+1] {
		case '/':
			e := bytes.IndexByte(d[j:], '>')
			if e < 0 {
				return 0, errIncomplete
			}
			j += e + 1
			depth--
		case '!':
			n, err := skipBang(d[j:])
			if err != nil {
				return 0, err
			}
			j += n
		case '?':
			e := bytes.Index(d[j:], []byte("?>"))
			if e < 0 {
				return 0, errIncomplete
			}
			j += e + 2
		default:
			e, self := tagEnd(d[j:])
			if e < 0 {
				return 0, errIncomplete
			}
			j += e
			if !self {
				depth++
			}
		}
		if depth == 0 {
			return j, nil
		}
		e := bytes.IndexByte(d[j:], '<')
		if e < 0 {
			return 0, errIncomplete
		}
		j += e
	}
}

// elemName is the local name of the element starting b.
func elemName(b []byte) []byte {
	if len(b) < 2 || b[0] != '<' {
		return nil
	}
	e := 1
	for e < len(b) && !isSpace(b[e]) && b[e] != '>' && b[e] != '/' {
		e++
	}
	name := b[1:e]
	if c := bytes.IndexByte(name, ':'); c >= 0 {
		name = name[c+1:]
	}
	return name
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// attr returns the value of an attribute of the start tag starting b,
// unescaped only for the predefined entities.
func attr(b []byte, name string) string {
	end, _ := tagEnd(b)
	if end < 0 {
		return ""
	}
	t := b[:end]
	k := 1
	for k < len(t) && !isSpace(t[k]) && t[k] != '>' && t[k] != '/' { // the element's name
		k++
	}
	for k < len(t) {
		for k < len(t) && isSpace(t[k]) {
			k++
		}
		ns := k
		for k < len(t) && t[k] != '=' && !isSpace(t[k]) && t[k] != '>' && t[k] != '/' {
			k++
		}
		n := t[ns:k]
		for k < len(t) && isSpace(t[k]) {
			k++
		}
		if k >= len(t) || t[k] != '=' {
			return ""
		}
		k++
		for k < len(t) && isSpace(t[k]) {
			k++
		}
		if k >= len(t) || (t[k] != '\'' && t[k] != '"') {
			return ""
		}
		q := t[k]
		vs := k + 1
		ve := bytes.IndexByte(t[vs:], q)
		if ve < 0 {
			return ""
		}
		if string(n) == name {
			return xmlUnescape(string(t[vs : vs+ve]))
		}
		k = vs + ve + 1
	}
	return ""
}

// innerText is the text between an element's start and end tags (its
// only child being text, as in SASL elements).
func innerText(b []byte) string {
	end, self := tagEnd(b)
	if end < 0 || self {
		return ""
	}
	e := bytes.LastIndexByte(b, '<')
	if e < end {
		return ""
	}
	return strings.TrimSpace(xmlUnescape(string(b[end:e])))
}

func between(b []byte, open, close string) string {
	i := bytes.Index(b, []byte(open))
	if i < 0 {
		return ""
	}
	rest := b[i+len(open):]
	j := bytes.Index(rest, []byte(close))
	if j < 0 {
		return ""
	}
	return strings.TrimSpace(string(rest[:j]))
}

// mechanisms lists the SASL mechanisms in stream features.
func mechanisms(feats []byte) []string {
	var out []string
	rest := feats
	for {
		i := bytes.Index(rest, []byte("<mechanism>"))
		if i < 0 {
			return out
		}
		rest = rest[i+len("<mechanism>"):]
		j := bytes.Index(rest, []byte("</mechanism>"))
		if j < 0 {
			return out
		}
		out = append(out, strings.TrimSpace(string(rest[:j])))
		rest = rest[j:]
	}
}

var (
	unescaper = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&", "&apos;", "'", "&quot;", `"`)
	escaper   = strings.NewReplacer("<", "&lt;", ">", "&gt;", "&", "&amp;", "'", "&apos;", `"`, "&quot;")
)

func xmlUnescape(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	return unescaper.Replace(s)
}

func xmlEscape(s string) string { return escaper.Replace(s) }

// clip shows at most 300 bytes of what the server sent, on one line.
func clip(b []byte) string {
	s := string(b)
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return strings.Join(strings.Fields(s), " ")
}
