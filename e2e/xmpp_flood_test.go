package e2e

// Floods of idle connections against the built appliance, started with a
// small open-file limit (prlimit) so that a flood is cheap and bounded;
// the limits of unauthenticated connections, the accept loop's back-off,
// the xmpp limits commands; bytes that are not XML before the stream
// header, a second stream header.

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// floodNofile is the appliance's open-file limit in the flood tests.
const floodNofile = 1000

// raiseNofile lifts the test process's soft open-file limit to the hard
// one: it holds every connection of a flood.
func raiseNofile(t *testing.T) {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			t.Fatal(err)
		}
	}
	if rl.Cur < 3*floodNofile {
		t.Fatalf("the open-file limit of the tests is %d: a flood needs %d (ulimit -n)", rl.Cur, 3*floodNofile)
	}
}

// flood opens n idle TCP connections to addr, from the source addresses
// in turn, within a bounded time; the caller closes them.
func flood(t *testing.T, addr string, sources []string, n int) []net.Conn {
	t.Helper()
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	deadline := time.Now().Add(20 * time.Second)
	per := (n + len(sources) - 1) / len(sources)
	for _, src := range sources {
		wg.Add(1)
		go func(src string) {
			defer wg.Done()
			d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Deadline: deadline}
			for i := 0; i < per; i++ {
				c, err := d.Dial("tcp", addr)
				if err != nil {
					return // the backlog is full, or time is up
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}(src)
	}
	wg.Wait()
	t.Cleanup(func() { closeAll(conns) })
	return conns
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// answers reports whether a new connection from src gets a stream header
// back within d.
func answers(addr, src, domain string, d time.Duration) bool {
	dl := net.Dialer{Timeout: d, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := dl.Dial("tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d))
	io.WriteString(c, `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='`+domain+`' version='1.0'>`)
	var got []byte
	buf := make([]byte, 1024)
	for !strings.Contains(string(got), "<stream:features") {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return false
		}
	}
	return true
}

// servesAgainWithin waits until a new connection is served.
func servesAgainWithin(t *testing.T, addr, domain string, bound time.Duration) time.Duration {
	t.Helper()
	begin := time.Now()
	for !answers(addr, "127.0.0.1", domain, time.Second) {
		if time.Since(begin) > bound {
			t.Fatalf("%s did not serve again within %v of the flood's end", addr, bound)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(begin)
}

// heldNow is the count of unauthenticated connections in xmpp limits.
var heldNowRE = regexp.MustCompile(`Pre-auth connections : auto: (\d+), (\d+) now`)

func (x *xmppAppliance) preAuthHeld(t *testing.T) (limit, held string) {
	t.Helper()
	out := x.mustAdmin(t, "xmpp limits")
	m := heldNowRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("xmpp limits does not show the automatic limit and the count:\n%s", out)
	}
	return m[1], m[2]
}

// TestXMPPFloodPreAuth: with the default limits, a flood of idle
// connections from one address holds only that address's share, a flood
// from many addresses only the limit in all (the oldest make room); a
// client from another address logs in meanwhile, and once the flood ends
// the port serves at once. Before the limits, the flood exhausted the open
// files and the accept loop ended for good.
func TestXMPPFloodPreAuth(t *testing.T) {
	raiseNofile(t)
	x := startXMPPWith(t, options{nofile: floodNofile}, "flood.lan", "alice@flood.lan", "Alice-pass-1")
	addr := net.JoinHostPort(x.host, x.c2s)
	if limit, held := x.preAuthHeld(t); limit != fmt.Sprint(floodNofile/4) || held != "0" {
		t.Fatalf("automatic pre-auth limit %s (want a quarter of %d), %s held", limit, floodNofile, held)
	}

	// One address, more connections than the process may open files.
	conns := flood(t, addr, []string{"127.0.77.1"}, floodNofile+200)
	if len(conns) < floodNofile {
		t.Fatalf("only %d connections opened", len(conns))
	}
	c := x.login(t, "alice@flood.lan/during", "Alice-pass-1", clientOpts{})
	if _, held := x.preAuthHeld(t); held != "100" {
		t.Errorf("%s unauthenticated connections held during a flood from one address, want 100 (its limit)", held)
	}
	c.logout(t)
	closeAll(conns)
	servesAgainWithin(t, addr, x.domain, 5*time.Second)
	if n := strings.Count(x.stderr.String(), "from 127.0.77.1 are waiting to authenticate"); n != 1 {
		t.Errorf("the per-address episode logged %d times, want once:\n%s", n, x.stderr)
	}

	// Many addresses: the limit in all holds, the oldest go first.
	var sources []string
	for i := 1; i <= 12; i++ {
		sources = append(sources, fmt.Sprintf("127.0.78.%d", i))
	}
	conns = flood(t, addr, sources, floodNofile+200)
	c = x.login(t, "alice@flood.lan/many", "Alice-pass-1", clientOpts{})
	// The client's own connection took the place of the oldest, then
	// left the count once bound.
	if limit, held := x.preAuthHeld(t); held != limit && held != fmt.Sprint(atoi(limit)-1) {
		t.Errorf("%s unauthenticated connections held during a flood from many addresses, want the limit %s", held, limit)
	}
	// The oldest were closed with a stream error saying why.
	conns[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(conns[0])
	if !strings.Contains(string(got), "resource-constraint") {
		t.Errorf("the oldest connection of the flood got %q, want a resource-constraint stream error", got)
	}
	c.logout(t)
	closeAll(conns)
	servesAgainWithin(t, addr, x.domain, 5*time.Second)
	if st := x.status(t); st["Last error"] != "none" {
		t.Errorf("Last error after floods the limits absorbed: %s", st["Last error"])
	}
}

// TestXMPPFloodExhaustsFiles: with the pre-auth limits set above what the
// process may open, a flood takes every file descriptor; accept fails, the
// status says so while it lasts, health warns, and once the flood ends the
// listener serves again within seconds (it used to stop for good, with
// "Last error: none").
func TestXMPPFloodExhaustsFiles(t *testing.T) {
	raiseNofile(t)
	x := startXMPPWith(t, options{nofile: floodNofile, hostname: "flood2"}, "flood2.lan", "alice@flood2.lan", "Alice-pass-1")
	addr := net.JoinHostPort(x.host, x.c2s)
	x.mustAdmin(t, "xmpp limits pre-auth 100000 per-address 100000")
	// A shell opened before the flood: new SSH connections fail as well
	// while no descriptor is left.
	sh := x.interactive(t, x.asAdmin())
	sh.expect(t, "flood2> ", screenTimeout)

	conns := flood(t, addr, []string{"127.0.77.2", "127.0.77.3"}, floodNofile+300)
	if answers(addr, "127.0.0.1", x.domain, 2*time.Second) {
		t.Fatalf("the appliance still accepts with %d connections open and an open-file limit of %d", len(conns), floodNofile)
	}
	status := sh.command(t, "xmpp", "flood2> ")
	if !strings.Contains(status, "Last error") || !strings.Contains(status, "too many open files") || !strings.Contains(status, "retrying") {
		t.Errorf("xmpp while accept fails:\n%s", status)
	}
	health := sh.command(t, "health", "flood2> ")
	if !strings.Contains(health, "WARN  open files") || !strings.Contains(health, fmt.Sprintf("of %d", floodNofile)) {
		t.Errorf("health while the open files are exhausted:\n%s", health)
	}

	closeAll(conns)
	took := servesAgainWithin(t, addr, x.domain, 5*time.Second)
	t.Logf("served again %v after the flood ended", took)
	x.login(t, "alice@flood2.lan/after", "Alice-pass-1", clientOpts{}).logout(t)
	if strings.Count(x.stderr.String(), "xmpp: accepting connections on "+addr+" (c2s, STARTTLS): ") != 1 {
		t.Errorf("the accept failures were not logged once for the episode:\n%s", x.stderr)
	}
	if !strings.Contains(x.stderr.String(), "accepting connections on "+addr+" (c2s, STARTTLS) again") {
		t.Errorf("the recovery is not in the log:\n%s", x.stderr)
	}
}

// TestXMPPLimitsCommands: xmpp limits shows and changes every limit,
// durably; bad input gets one line saying what to give.
func TestXMPPLimitsCommands(t *testing.T) {
	a := start(t, options{nofile: 2000})
	out := a.mustAdmin(t, "xmpp limits")
	for _, want := range []string{
		"Pre-auth connections : auto: 500, 0 now (a quarter of the open-file limit of 2000, at most 5000)",
		"Pre-auth per address : 100",
		"Stanza rate          : 100 per second per client session, burst 500",
		"Idle timeout         : 5m0s: a silent client is pinged, and closed after 10m0s",
		"Open files           : ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("xmpp limits lacks %q:\n%s", want, out)
		}
	}
	if got := a.mustAdmin(t, "xmpp limits pre-auth 300 per-address 20"); got != "Connections not yet authenticated: at most 300 in all, 20 per address\n" {
		t.Errorf("pre-auth: %q", got)
	}
	a.mustAdmin(t, "xmpp limits stanza-rate 12.5 burst 40")
	for _, bad := range []struct {
		cmd  string
		want []string
	}{
		{"xmpp limits pre-auth 0", []string{"0 would refuse everything", "give 1 to 1000000, or auto"}},
		{"xmpp limits pre-auth 100 per-address 200", []string{"per-address 200 is more than the limit in all (100)", "give per-address 100 or less"}},
		{"xmpp limits pre-auth many", []string{`not "many"`}},
		{"xmpp limits stanza-rate 0", []string{"stanzas per second from 0.1 to 100000"}},
		{"xmpp limits stanza-rate 10 burst", []string{"burst needs a number"}},
	} {
		mustFail(t, a.admin(bad.cmd), bad.cmd, bad.want...)
	}
	a.restart()
	out = a.mustAdmin(t, "xmpp limits")
	for _, want := range []string{"Pre-auth connections : 300, 0 now", "Pre-auth per address : 20", "Stanza rate          : 12.5 per second per client session, burst 40"} {
		if !strings.Contains(out, want) {
			t.Errorf("after a restart, xmpp limits lacks %q:\n%s", want, out)
		}
	}
	audit := a.mustAdmin(t, "audit 20")
	if !strings.Contains(audit, "xmpp limits pre-auth 300 per-address 20") || !strings.Contains(audit, "xmpp limits stanza-rate 10 burst") {
		t.Errorf("the audit trail lacks the changes:\n%s", audit)
	}
	a.mustAdmin(t, "xmpp limits pre-auth auto")
	if out := a.mustAdmin(t, "xmpp limits"); !strings.Contains(out, "Pre-auth connections : auto: 500") || !strings.Contains(out, "Pre-auth per address : 20") {
		t.Errorf("after pre-auth auto:\n%s", out)
	}
	mustOK(t, a.ssh(a.asAdmin(), "reset\n", "xmpp reset"), "xmpp reset")
	if out := a.mustAdmin(t, "xmpp limits"); !strings.Contains(out, "Pre-auth per address : 100") || !strings.Contains(out, "burst 500") {
		t.Errorf("after xmpp reset:\n%s", out)
	}
}

// TestXMPPNotXMLClosedAtOnce: a TLS ClientHello or an HTTP request on the
// STARTTLS port gets a stream header and not-well-formed, and the
// connection is closed at once, not after the authentication timeout; a
// second stream header in a session is a stream error.
func TestXMPPNotXMLClosedAtOnce(t *testing.T) {
	x := startXMPP(t, "bytes.lan", "alice@bytes.lan", "Alice-pass-1")
	addr := net.JoinHostPort(x.host, x.c2s)
	for name, send := range map[string][]byte{
		"TLS ClientHello": clientHello(t, x.domain),
		"HTTP request":    []byte("GET / HTTP/1.1\r\nHost: bytes.lan\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"),
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			begin := time.Now()
			c.SetDeadline(begin.Add(10 * time.Second))
			c.Write(send)
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("not closed within 10 s: %v; read %q", err, got)
			}
			if d := time.Since(begin); d > 2*time.Second {
				t.Errorf("closed after %v, want at once", d)
			}
			if !strings.Contains(string(got), "<stream:stream") || !strings.Contains(string(got), "<not-well-formed") {
				t.Errorf("got %q, want a stream header and not-well-formed", got)
			}
		})
	}
	t.Run("second stream header", func(t *testing.T) {
		r := x.rawDial(t, x.domain)
		r.login("alice", "Alice-pass-1", "twice")
		r.write(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='bytes.lan' version='1.0'>` +
			`<message to='alice@bytes.lan/twice' type='chat' id='m1'><body>swallowed?</body></message>`)
		if got := r.streamError(); got != "unsupported-stanza-type" {
			t.Fatalf("got %s", got)
		}
	})
}

// clientHello is the first flight of a real TLS client.
func clientHello(t *testing.T, domain string) []byte {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		tls.Client(a, &tls.Config{ServerName: domain, InsecureSkipVerify: true}).Handshake()
		a.Close()
	}()
	defer b.Close()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := b.Read(buf)
	if err != nil || n < 5 || buf[0] != 0x16 {
		t.Fatalf("capturing a ClientHello: %d bytes, %v", n, err)
	}
	return buf[:n]
}

// TestXMPPSilentClientAndBoundedErrorTexts: with `--xmpp-idle-timeout 3s`
// a client that goes silent right after its last stanza is pinged after
// the idle timeout and closed with connection-timeout after twice it,
// counted from its last bytes (the flag's help and the admin guide say 2×;
// it was up to 3×). And a stream error quotes only a bounded prefix of
// what the peer sent.
func TestXMPPSilentClientAndBoundedErrorTexts(t *testing.T) {
	x := startXMPPWith(t, options{serveArgs: []string{"--xmpp-idle-timeout", "3s"}}, "idle.lan", "alice@idle.lan", "Alice-pass-1")

	r := x.rawDial(t, x.domain)
	r.login("alice", "Alice-pass-1", "quiet")
	r.write(`<presence/>`)
	last := time.Now()
	r.c.SetReadDeadline(last.Add(20 * time.Second))
	if got := r.streamError(); got != "connection-timeout" {
		t.Fatalf("a silent client: stream error %s, want connection-timeout", got)
	}
	closed := time.Since(last)
	if !strings.Contains(r.got.String(), "urn:xmpp:ping") {
		t.Errorf("closed without a ping first; read:\n%s", r.got.String())
	}
	// 2 × 3 s from the last bytes; 3 × would be 9 s.
	if closed < 5*time.Second || closed > 7500*time.Millisecond {
		t.Errorf("a client silent since its presence was closed after %v, want about 6 s (twice the idle timeout)", closed.Round(100*time.Millisecond))
	}

	// A bogus top-level element with a 5,000-byte name: the stream error's
	// text quotes a bounded prefix of it.
	b := x.rawDial(t, x.domain)
	b.login("alice", "Alice-pass-1", "long")
	name := strings.Repeat("n", 5000)
	b.write(`<` + name + ` xmlns='urn:example:x'/>`)
	if got := b.streamError(); got != "unsupported-stanza-type" {
		t.Fatalf("a bogus element: stream error %s", got)
	}
	errText := b.got.String()[strings.Index(b.got.String(), "<stream:error"):]
	if strings.Contains(errText, strings.Repeat("n", 100)) || len(errText) > 1024 {
		t.Errorf("the stream error quotes too much of the input (%d bytes):\n%.300s", len(errText), errText)
	}
}
