package e2e

// The harness of the XMPP end-to-end tests: an appliance whose XMPP service
// is configured over SSH as an administrator would, on a loopback address
// of the test's own (127.0.88.N) with ports the kernel picked there; real
// clients driven against it: slixmpp (Debian's python3-slixmpp, through
// testdata/xmpp_client.py, one JSON line per command and per event),
// go-sendxmpp, and raw sockets where a stream error is the point.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The XMPP clients the suite drives.
const (
	pythonBin     = "/usr/bin/python3" // Debian's, with python3-slixmpp
	goSendxmppBin = "/usr/bin/go-sendxmpp"
	clientScript  = "testdata/xmpp_client.py"
)

// Bounds of the XMPP clients.
const (
	xmppWait      = 15 * time.Second // one expected event
	xmppClientMax = 90               // seconds a slixmpp client may live at most
)

var (
	xmppToolsOnce sync.Once
	xmppToolsErr  error
	loopbackSeq   atomic.Int32
)

// needXMPPClients fails the test unless the real clients are installed.
func needXMPPClients(t *testing.T) {
	t.Helper()
	xmppToolsOnce.Do(func() {
		if out, err := exec.Command(pythonBin, "-c", "import slixmpp").CombinedOutput(); err != nil {
			xmppToolsErr = fmt.Errorf("%s cannot import slixmpp (%v: %s): install the Debian package python3-slixmpp (apt-get install python3-slixmpp, or make deps)", pythonBin, err, strings.TrimSpace(string(out)))
			return
		}
		if _, err := os.Stat(goSendxmppBin); err != nil {
			xmppToolsErr = fmt.Errorf("%s is missing: install the Debian package go-sendxmpp (apt-get install go-sendxmpp, or make deps)", goSendxmppBin)
		}
	})
	if xmppToolsErr != nil {
		t.Fatal(xmppToolsErr)
	}
}

// xmppAppliance is an appliance with its XMPP service configured and
// enabled.
type xmppAppliance struct {
	*appliance
	host                 string // the loopback address it listens on
	c2s, c2sTLS, s2sPort string
	domain               string
}

// newLoopback returns a loopback address no other test uses.
func newLoopback(t *testing.T) string {
	n := loopbackSeq.Add(1)
	if n > 250 {
		t.Fatal("out of test loopback addresses")
	}
	return fmt.Sprintf("127.0.88.%d", n)
}

// portOn returns a TCP port free on host a moment ago. Nobody else uses
// host, so it stays free.
func portOn(t *testing.T, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// startXMPP boots an appliance and configures XMPP for domain over SSH
// (domain, listen address, the three ports, enable), then creates the
// accounts, given as jid, password, jid, password…
func startXMPP(t *testing.T, domain string, accounts ...string) *xmppAppliance {
	t.Helper()
	return startXMPPWith(t, options{}, domain, accounts...)
}

// startXMPPWith is startXMPP with an appliance started with o.
func startXMPPWith(t *testing.T, o options, domain string, accounts ...string) *xmppAppliance {
	t.Helper()
	return startXMPPOn(t, o, newLoopback(t), domain, accounts...)
}

// startXMPPOn is startXMPPWith on a given loopback address (a test that
// keeps to a range of its own).
func startXMPPOn(t *testing.T, o options, host, domain string, accounts ...string) *xmppAppliance {
	t.Helper()
	needXMPPClients(t)
	x := &xmppAppliance{appliance: start(t, o), domain: domain, host: host}
	x.c2s, x.c2sTLS, x.s2sPort = portOn(t, x.host), portOn(t, x.host), portOn(t, x.host)
	script := strings.Join([]string{
		"xmpp domain " + domain,
		"xmpp listen " + x.host,
		"xmpp port c2s " + x.c2s,
		"xmpp port c2s-tls " + x.c2sTLS,
		"xmpp port s2s " + x.s2sPort,
		"xmpp enable",
	}, "\n") + "\n"
	out := mustOK(t, x.ssh(x.asAdmin(), script, ""), "XMPP set-up script")
	for _, want := range []string{
		"Generated a self-signed certificate for " + domain,
		"XMPP enabled: listening on ",
		net.JoinHostPort(x.host, x.c2s) + " (c2s, STARTTLS)",
		net.JoinHostPort(x.host, x.c2sTLS) + " (c2s-tls, direct TLS)",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("the XMPP set-up did not say %q:\n%s", want, out)
		}
	}
	x.addAccounts(t, accounts...)
	return x
}

// addAccounts runs xmpp user add for each jid, password pair, the password
// on the next line of standard input as in any script.
func (x *xmppAppliance) addAccounts(t *testing.T, accounts ...string) {
	t.Helper()
	if len(accounts) == 0 {
		return
	}
	var b strings.Builder
	for i := 0; i+1 < len(accounts); i += 2 {
		fmt.Fprintf(&b, "xmpp user add %s\n%s\n", accounts[i], accounts[i+1])
	}
	out := mustOK(t, x.ssh(x.asAdmin(), b.String(), ""), "xmpp user add")
	for i := 0; i < len(accounts); i += 2 {
		if !strings.Contains(out, "Created "+accounts[i]+"\n") {
			t.Fatalf("xmpp user add %s did not say it created it:\n%s", accounts[i], out)
		}
	}
}

// certFingerprint is the SHA-256 of the (first) certificate in a file of
// the files area, as the clients print it.
func (x *xmppAppliance) certFingerprint(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(x.filesDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s holds no PEM certificate", name)
	}
	sum := sha256.Sum256(blk.Bytes)
	return hex.EncodeToString(sum[:])
}

// status is `xmpp` as label → value (continuation lines joined with "; ").
func (x *xmppAppliance) status(t *testing.T) map[string]string {
	t.Helper()
	out := x.mustAdmin(t, "xmpp")
	st := map[string]string{}
	last := ""
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if strings.HasPrefix(l, " ") && last != "" { // a further value of the label above
			st[last] += "; " + strings.TrimSpace(l)
			continue
		}
		label, value, ok := strings.Cut(l, " : ")
		if !ok {
			t.Fatalf("xmpp: unexpected line %q in:\n%s", l, out)
		}
		label = strings.TrimSpace(label)
		st[label], last = strings.TrimSpace(value), label
	}
	return st
}

// --- slixmpp --------------------------------------------------------------

// xev is one line the client script writes: an event or a command's reply.
type xev struct {
	Ev        string                `json:"ev"`
	ID        string                `json:"id"`
	Op        string                `json:"op"`
	Error     string                `json:"error"`
	Text      string                `json:"text"`
	Condition string                `json:"condition"`
	JID       string                `json:"jid"`
	Cert      string                `json:"cert"`
	TLS       string                `json:"tls"`
	From      string                `json:"from"`
	To        string                `json:"to"`
	Type      string                `json:"type"`
	Body      string                `json:"body"`
	Status    string                `json:"status"`
	Delay     *string               `json:"delay"`
	DelayFrom *string               `json:"delay_from"`
	Photo     *string               `json:"photo"`
	Items     map[string]rosterItem `json:"items"`
	Ver       string                `json:"ver"`
	// disco, version, time, last
	Identities [][]string `json:"identities"`
	Features   []string   `json:"features"`
	Name       string     `json:"name"`
	Version    string     `json:"version"`
	UTC        string     `json:"utc"`
	TZO        string     `json:"tzo"`
	Seconds    int        `json:"seconds"`
	// vcard, private
	FN        string `json:"fn"`
	PhotoType string `json:"photo_type"`
	PhotoSHA1 string `json:"photo_sha1"`
	Found     bool   `json:"found"`

	line string
}

type rosterItem struct {
	Subscription string   `json:"subscription"`
	Ask          string   `json:"ask"`
	Name         string   `json:"name"`
	Groups       []string `json:"groups"`
}

// bareOf is the bare JID of a JID.
func bareOf(j string) string {
	b, _, _ := strings.Cut(j, "/")
	return b
}

// clientOpts say how a slixmpp client logs in.
type clientOpts struct {
	direct     bool   // direct TLS on the c2s-tls port, else STARTTLS on c2s
	mech       string // the one SASL mechanism to use ("" lets slixmpp choose)
	noPresence bool   // no initial presence
	host       string // default: the appliance's address
	priority   *int
}

// xclient is a running slixmpp client.
type xclient struct {
	t    *testing.T
	name string // for messages: the JID and how it logged in
	cmd  *exec.Cmd

	stdin  io.WriteCloser
	stderr *syncBuffer

	mu     sync.Mutex
	events []*xev
	used   []bool
	ended  bool // stdout closed
	notify chan struct{}
	exited chan struct{}
	nextID int

	session *xev // the session event, once logged in
}

// client starts the slixmpp client for jid; it does not wait for anything.
func (x *xmppAppliance) client(t *testing.T, jid, password string, o clientOpts) *xclient {
	t.Helper()
	host, port, mode := x.host, x.c2s, "starttls"
	if o.host != "" {
		host = o.host
	}
	if o.direct {
		port, mode = x.c2sTLS, "direct"
	}
	args := []string{clientScript, "--jid", jid, "--password", password, "--host", host, "--port", port,
		"--mode", mode, "--timeout", strconv.Itoa(xmppClientMax)}
	if o.mech != "" {
		args = append(args, "--mech", o.mech)
	}
	if o.noPresence {
		args = append(args, "--no-presence")
	}
	if o.priority != nil {
		args = append(args, "--priority", strconv.Itoa(*o.priority))
	}
	return startDriver(t, jid+" ("+mode+")", args)
}

// startDriver runs one of the slixmpp driver scripts (args start with the
// script) with a bounded lifetime; at cleanup its stdin is closed (a clean
// logout) and it is killed if it has not left within 5 s.
func startDriver(t *testing.T, name string, args []string) *xclient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), (xmppClientMax+10)*time.Second)
	cmd := exec.CommandContext(ctx, pythonBin, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &xclient{t: t, name: name, cmd: cmd, stdin: stdin, stderr: &syncBuffer{},
		notify: make(chan struct{}, 1), exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", pythonBin, err)
	}
	go c.read(stdout)
	go func() { cmd.Wait(); cancel(); close(c.exited) }()
	t.Cleanup(func() {
		c.stdin.Close()
		select {
		case <-c.exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-c.exited
		}
	})
	return c
}

// login starts a client and waits for its session; the test fails if it
// cannot log in.
func (x *xmppAppliance) login(t *testing.T, jid, password string, o clientOpts) *xclient {
	t.Helper()
	c := x.client(t, jid, password, o)
	c.session = c.wait(t, "a session", func(e *xev) bool { return e.Ev == "session" })
	if bare, _, res := strings.Cut(jid, "/"); bareOf(c.session.JID) != bare || res && c.session.JID != jid {
		t.Fatalf("%s: bound %q, want %s or a resource of it", c.name, c.session.JID, jid)
	}
	return c
}

func (c *xclient) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		e := &xev{line: line}
		if err := json.Unmarshal([]byte(line), e); err != nil {
			e = &xev{Ev: "unparsed", Text: line, line: line}
		}
		c.mu.Lock()
		c.events = append(c.events, e)
		c.used = append(c.used, false)
		c.mu.Unlock()
		c.poke()
	}
	c.mu.Lock()
	c.ended = true
	c.mu.Unlock()
	c.poke()
}

func (c *xclient) poke() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// transcript is everything the client printed, for failure messages.
func (c *xclient) transcript() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for i, e := range c.events {
		mark := " "
		if c.used[i] {
			mark = "*"
		}
		fmt.Fprintf(&b, "  %s %s\n", mark, e.line)
	}
	if s := c.stderr.String(); s != "" {
		fmt.Fprintf(&b, "  stderr:\n%s", s)
	}
	return b.String()
}

// take returns the first event not taken yet that matches, marking it.
func (c *xclient) take(match func(*xev) bool) (*xev, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, e := range c.events {
		if !c.used[i] && match(e) {
			c.used[i] = true
			return e, false
		}
	}
	return nil, c.ended
}

// wait waits for an event that matches and takes it.
func (c *xclient) wait(t *testing.T, what string, match func(*xev) bool) *xev {
	t.Helper()
	return c.waitWithin(t, what, xmppWait, match)
}

// waitWithin is wait with a bound of its own.
func (c *xclient) waitWithin(t *testing.T, what string, bound time.Duration, match func(*xev) bool) *xev {
	t.Helper()
	deadline := time.NewTimer(bound)
	defer deadline.Stop()
	for {
		e, ended := c.take(match)
		if e != nil {
			return e
		}
		if ended {
			t.Fatalf("%s: the client ended without %s; it printed (* = already matched):\n%s", c.name, what, c.transcript())
		}
		select {
		case <-c.notify:
		case <-deadline.C:
			t.Fatalf("%s: no %s within %v; the client printed (* = already matched):\n%s", c.name, what, bound, c.transcript())
		}
	}
}

// none fails the test if an event not taken yet matches. Call it after a
// barrier (a command's reply) that the server sends after what must not
// have come.
func (c *xclient) none(t *testing.T, what string, match func(*xev) bool) {
	t.Helper()
	if e, _ := c.take(match); e != nil {
		t.Fatalf("%s: unexpected %s: %s\nthe client printed (* = already matched):\n%s", c.name, what, e.line, c.transcript())
	}
}

// request sends a command and waits for its reply, error or not.
func (c *xclient) request(t *testing.T, cmd map[string]any) *xev {
	t.Helper()
	c.mu.Lock()
	c.nextID++
	id := strconv.Itoa(c.nextID)
	c.mu.Unlock()
	cmd["id"] = id
	line, _ := json.Marshal(cmd)
	if _, err := c.stdin.Write(append(line, '\n')); err != nil {
		t.Fatalf("%s: sending %s: %v\n%s", c.name, line, err, c.transcript())
	}
	return c.wait(t, fmt.Sprintf("reply to %s", line), func(e *xev) bool { return e.Ev == "reply" && e.ID == id })
}

// do sends a command; the test fails unless it succeeds.
func (c *xclient) do(t *testing.T, cmd map[string]any) *xev {
	t.Helper()
	r := c.request(t, cmd)
	if r.Error != "" {
		t.Fatalf("%s: %v failed: %s (%s)\n%s", c.name, cmd, r.Error, r.Text, c.transcript())
	}
	return r
}

// send sends a chat message.
func (c *xclient) send(t *testing.T, to, body string) {
	t.Helper()
	c.do(t, map[string]any{"op": "send", "to": to, "body": body})
}

// ping pings the server (the client's domain if to is ""). The reply is
// also a barrier: whatever the server queued for the client before it is in.
func (c *xclient) ping(t *testing.T, to string) {
	t.Helper()
	if to == "" {
		to = strings.SplitN(bareOf(c.session.JID), "@", 2)[1]
	}
	c.do(t, map[string]any{"op": "ping", "to": to})
}

// message waits for a chat message with body from bare JID from.
func (c *xclient) message(t *testing.T, from, body string) *xev {
	t.Helper()
	return c.wait(t, fmt.Sprintf("message %q from %s", body, from), func(e *xev) bool {
		return e.Ev == "message" && bareOf(e.From) == from && e.Body == body
	})
}

// presence waits for presence of a type ("available", "subscribe", …)
// from bare JID from.
func (c *xclient) presence(t *testing.T, from, typ string) *xev {
	t.Helper()
	return c.wait(t, fmt.Sprintf("presence %s from %s", typ, from), func(e *xev) bool {
		return e.Ev == "presence" && bareOf(e.From) == from && e.Type == typ
	})
}

// roster fetches the roster.
func (c *xclient) roster(t *testing.T) map[string]rosterItem {
	t.Helper()
	return c.do(t, map[string]any{"op": "roster"}).Items
}

// logout ends the session cleanly and waits for the client to exit.
func (c *xclient) logout(t *testing.T) {
	t.Helper()
	c.stdin.Close()
	c.wait(t, "the end of the session", func(e *xev) bool { return e.Ev == "disconnected" })
	c.waitExit(t)
}

// waitExit waits for the client process to end.
func (c *xclient) waitExit(t *testing.T) {
	t.Helper()
	select {
	case <-c.exited:
	case <-time.After(xmppWait):
		t.Fatalf("%s: the client did not exit within %v:\n%s", c.name, xmppWait, c.transcript())
	}
}

// disconnected waits for the server to end the session with a stream
// error of condition, and for the client to see the connection close.
func (c *xclient) disconnected(t *testing.T, condition string) {
	t.Helper()
	e := c.wait(t, "a stream error", func(e *xev) bool { return e.Ev == "stream_error" })
	if e.Condition != condition {
		t.Fatalf("%s: stream error %q (%s), want %q\n%s", c.name, e.Condition, e.Text, condition, c.transcript())
	}
	c.wait(t, "the disconnection", func(e *xev) bool { return e.Ev == "disconnected" })
	c.waitExit(t)
	c.none(t, "session", func(e *xev) bool { return e.Ev == "session" && e != c.session })
}

// loginFails runs a client with a wrong password: it must see SASL
// failures (not-authorized), never a session, and give up.
func (x *xmppAppliance) loginFails(t *testing.T, jid, password string, o clientOpts) {
	t.Helper()
	c := x.client(t, jid, password, o)
	f := c.wait(t, "failed_auth", func(e *xev) bool { return e.Ev == "failed_auth" })
	if f.Condition != "not-authorized" {
		t.Fatalf("%s: SASL failure %q, want not-authorized\n%s", c.name, f.Condition, c.transcript())
	}
	c.wait(t, "failed_all_auth", func(e *xev) bool { return e.Ev == "failed_all_auth" })
	c.wait(t, "the disconnection", func(e *xev) bool { return e.Ev == "disconnected" })
	c.waitExit(t)
	c.none(t, "session with a wrong password", func(e *xev) bool { return e.Ev == "session" })
}

// --- go-sendxmpp ----------------------------------------------------------

// sendxmpp sends body to recipient with go-sendxmpp, logged in as jid; TLS
// is STARTTLS on c2s, or direct TLS on c2s-tls with direct.
func (x *xmppAppliance) sendxmpp(t *testing.T, jid, password, recipient, body string, direct bool) result {
	port := x.c2s
	args := []string{"-u", jid, "-p", password, "-n", "--timeout", "10"}
	if direct {
		port = x.c2sTLS
		args = append(args, "-t")
	}
	args = append(args, "-j", net.JoinHostPort(x.host, port), recipient)
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goSendxmppBin, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no configuration file of the user running the tests
	return runClient(cmd, body)
}

// --- raw sockets ----------------------------------------------------------

// rawConn is an XMPP client stream written by hand, for what the clients
// hide: the stream error a server sends.
type rawConn struct {
	t      *testing.T
	c      net.Conn
	domain string
	got    strings.Builder // everything read since the last stream (re)start
}

// rawDial connects to the c2s port and opens a stream to domain.
func (x *xmppAppliance) rawDial(t *testing.T, domain string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort(x.host, x.c2s), 5*time.Second)
	if err != nil {
		t.Fatalf("connect to c2s: %v", err)
	}
	r := &rawConn{t: t, c: c, domain: domain}
	t.Cleanup(func() { r.c.Close() })
	r.open()
	return r
}

func (r *rawConn) write(s string) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("raw stream: write: %v (read so far: %s)", err, r.got.String())
	}
}

// open (re)starts the stream.
func (r *rawConn) open() {
	r.got.Reset()
	r.write(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='` + r.domain + `' version='1.0'>`)
}

// until reads until the input since the last restart holds one of subs (or
// the connection ends), and returns the first found ("" at the end).
func (r *rawConn) until(subs ...string) string {
	r.t.Helper()
	buf := make([]byte, 4096)
	deadline := time.Now().Add(xmppWait)
	for {
		for _, s := range subs {
			if strings.Contains(r.got.String(), s) {
				return s
			}
		}
		r.c.SetReadDeadline(deadline)
		n, err := r.c.Read(buf)
		r.got.Write(buf[:n])
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				r.t.Fatalf("raw stream: none of %q within %v; read:\n%s", subs, xmppWait, r.got.String())
			}
			for _, s := range subs {
				if strings.Contains(r.got.String(), s) {
					return s
				}
			}
			return ""
		}
	}
}

// mustRead fails unless what comes next holds sub.
func (r *rawConn) mustRead(sub string) {
	r.t.Helper()
	if r.until(sub) == "" {
		r.t.Fatalf("raw stream: the connection ended without %q; read:\n%s", sub, r.got.String())
	}
}

// login negotiates STARTTLS, SASL PLAIN and binds resource.
func (r *rawConn) login(user, password, resource string) {
	r.t.Helper()
	r.mustRead("</stream:features>")
	r.write(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	r.mustRead("<proceed")
	tc := tls.Client(r.c, &tls.Config{ServerName: r.domain, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		r.t.Fatalf("raw stream: TLS handshake: %v", err)
	}
	tc.SetDeadline(time.Time{})
	r.c = tc
	r.open()
	r.mustRead("</stream:features>")
	creds := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
	r.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + creds + `</auth>`)
	if r.until("<success", "<failure") != "<success" {
		r.t.Fatalf("raw stream: PLAIN login of %s failed:\n%s", user, r.got.String())
	}
	r.open()
	r.mustRead("</stream:features>")
	r.write(`<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>` + resource + `</resource></bind></iq>`)
	r.mustRead("</iq>")
	if !matches(`type=["']result["']`, r.got.String()) || !strings.Contains(r.got.String(), "/"+resource+"</jid>") {
		r.t.Fatalf("raw stream: bind failed:\n%s", r.got.String())
	}
	r.got.Reset()
}

// streamErrorRE finds a stream error's condition (RFC 6120 §4.9.3).
var streamErrorRE = regexp.MustCompile(`<stream:error>\s*<([a-z-]+)\s+xmlns=["']urn:ietf:params:xml:ns:xmpp-streams["']`)

// streamError reads to the end of the stream and returns the condition of
// the stream error in it; the test fails if there is none.
func (r *rawConn) streamError() string {
	r.t.Helper()
	r.until("</stream:stream>")
	m := streamErrorRE.FindStringSubmatch(r.got.String())
	if m == nil {
		r.t.Fatalf("raw stream: no stream error before the end of the stream; read:\n%s", r.got.String())
	}
	return m[1]
}
