package e2e

// Issue 9, item 6: password guessing against client logins (SASL PLAIN over
// STARTTLS) and component handshakes (XEP-0114), by many parallel raw
// connections from several source addresses (127.0.9x.N: every loopback
// address works as a source), bounded in time. The rate of guesses the
// server evaluates is bounded by the throttle (per source address and per
// account, shared by all connections); meanwhile the real user — slixmpp,
// from 127.0.0.1, an address that never failed — still logs in, and the
// real call bridge still connects.

import (
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// bruteConn is one attacker connection; its errors end the connection, never
// the test (it runs on its own goroutine).
type bruteConn struct {
	c   net.Conn
	buf []byte
}

// dialFrom connects from the local address src to addr.
func dialFrom(src, addr string, deadline time.Time) (*bruteConn, error) {
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(deadline)
	return &bruteConn{c: c}, nil
}

func (b *bruteConn) write(s string) error {
	_, err := b.c.Write([]byte(s))
	return err
}

// until reads until one of subs is in the input, and returns the input up
// to and including it (consumed), and which one it was.
func (b *bruteConn) until(subs ...string) (string, string, error) {
	tmp := make([]byte, 4096)
	for {
		best, which := -1, ""
		for _, s := range subs {
			if i := strings.Index(string(b.buf), s); i >= 0 && (best < 0 || i < best) {
				best, which = i, s
			}
		}
		if best >= 0 {
			end := best + len(which)
			got := string(b.buf[:end])
			b.buf = b.buf[end:]
			return got, which, nil
		}
		n, err := b.c.Read(tmp)
		b.buf = append(b.buf, tmp[:n]...)
		if err != nil {
			return string(b.buf), "", err
		}
	}
}

const clientHeader = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>`

// saslReady opens a client stream, negotiates STARTTLS and reads the
// mechanisms.
func (b *bruteConn) saslReady(domain string) error {
	if err := b.write(fmt.Sprintf(clientHeader, domain)); err != nil {
		return err
	}
	if _, _, err := b.until("</stream:features>"); err != nil {
		return err
	}
	if err := b.write(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`); err != nil {
		return err
	}
	if _, w, err := b.until("<proceed", "<failure", "</stream:stream>"); err != nil || w != "<proceed" {
		return fmt.Errorf("no proceed (%v)", err)
	}
	tc := tls.Client(b.c, &tls.Config{ServerName: domain, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		return err
	}
	b.c, b.buf = tc, nil
	if err := b.write(fmt.Sprintf(clientHeader, domain)); err != nil {
		return err
	}
	_, _, err := b.until("</stream:features>")
	return err
}

// plain makes one PLAIN attempt and returns its outcome: "success", the
// SASL failure's condition, or "" with the error that ended the stream.
func (b *bruteConn) plain(user, password string) (string, error) {
	creds := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
	if err := b.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + creds + `</auth>`); err != nil {
		return "", err
	}
	got, w, err := b.until("</failure>", "<success", "</stream:stream>")
	switch {
	case err != nil:
		return "", err
	case w == "<success":
		return "success", nil
	case w == "</stream:stream>":
		return "", fmt.Errorf("stream closed: %s", got)
	}
	for _, c := range []string{"not-authorized", "temporary-auth-failure", "aborted", "invalid-mechanism", "malformed-request", "incorrect-encoding"} {
		if strings.Contains(got, "<"+c) {
			return c, nil
		}
	}
	return "?", nil
}

// attackSources are n source addresses under prefix (e.g. "127.0.98.").
func attackSources(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i+1)
	}
	return out
}

// tally counts outcomes of attacker attempts.
type tally struct {
	mu sync.Mutex
	m  map[string]int
}

func (t *tally) add(k string) {
	t.mu.Lock()
	if t.m == nil {
		t.m = map[string]int{}
	}
	t.m[k]++
	t.mu.Unlock()
}

func (t *tally) get(k string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[k]
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return fmt.Sprint(t.m)
}

// Password guessing against alice for 10 s by 50 parallel connections: 25
// from one address (with one more logging in as bob, a valid account of
// the attacker's, between the guesses: that must not reset the address),
// 25 spread over five more addresses. The guesses the server checks are
// bounded by the throttle: per address 5 at once then one per 10 s, per
// account 10 then one per 20 s (one more for each address's first, clean,
// guess). Meanwhile alice logs in with slixmpp from 127.0.0.1. The log has
// a line per throttled episode, not per guess.
func TestXMPPBruteForceSASL(t *testing.T) {
	t.Parallel()
	const domain = "brute.lan"
	x := startXMPP(t, domain, "alice@"+domain, "Alice-pass-1", "bob@"+domain, "Bob-pass-1")
	target := net.JoinHostPort(x.host, x.c2s)

	const attack = 10 * time.Second
	start := time.Now()
	end := start.Add(attack)
	heavy := "127.0.98.1"
	spread := attackSources("127.0.98.", 6)[1:]
	var (
		out     tally
		wg      sync.WaitGroup
		guessNo atomic.Int64
	)
	worker := func(src string, user, password func() string) {
		defer wg.Done()
		for time.Now().Before(end) {
			b, err := dialFrom(src, target, end)
			if err != nil {
				out.add("dial error")
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if err := b.saslReady(domain); err != nil {
				out.add("stream refused")
				b.c.Close()
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for time.Now().Before(end) {
				u := user()
				res, err := b.plain(u, password())
				if err != nil {
					break
				}
				out.add(u + " " + res)
				if res == "success" {
					break
				}
			}
			b.c.Close()
		}
	}
	guess := func() string { return fmt.Sprintf("guess-%d", guessNo.Add(1)) }
	alice := func() string { return "alice" }
	for i := 0; i < 25; i++ {
		wg.Add(1)
		go worker(heavy, alice, guess)
	}
	wg.Add(1)
	go worker(heavy, func() string { return "bob" }, func() string { return "Bob-pass-1" })
	for i := 0; i < 25; i++ {
		wg.Add(1)
		go worker(spread[i%len(spread)], alice, guess)
	}

	// The real alice, from an address that never failed, during the attack.
	time.Sleep(2 * time.Second)
	in := time.Now()
	real := x.login(t, "alice@"+domain, "Alice-pass-1", clientOpts{})
	took := time.Since(in)
	real.ping(t, "")
	wg.Wait()
	real.logout(t)

	guesses := out.get("alice not-authorized")
	t.Logf("in %v from 6 addresses × 50 connections: %s; alice's own login took %v", attack, out.String(), took.Round(time.Millisecond))
	if out.get("alice success") != 0 {
		t.Fatalf("a guess succeeded: %s", out.String())
	}
	if guesses < 6 {
		t.Fatalf("the attack hardly reached the server (%d guesses checked): %s", guesses, out.String())
	}
	// 6 clean guesses + the account's burst of 10 + one turn per 20 s;
	// the addresses alone would allow 6 × (5 + 1).
	if guesses > 20 {
		t.Fatalf("%d guesses at alice's password were checked in %v by 50 parallel connections from 6 addresses, want at most 20 (the throttle per address and per account): %s", guesses, attack, out.String())
	}
	if took > 10*time.Second {
		t.Fatalf("the real alice took %v to log in during the attack, want it slowed at most a few seconds", took)
	}
	logs := x.stderr.String() + x.stdout.String()
	if n := strings.Count(logs, "c2s: login failed for"); n > 6*5+5 {
		t.Fatalf("%d log lines for failed logins, want one per episode once an address is throttled", n)
	}
	if !strings.Contains(logs, `address "127.0.98.1" is over`) {
		t.Fatalf("no log line says 127.0.98.1 is throttled:\n%s", lastLines(logs, 40))
	}
}

// lastLines is the end of a log.
func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// Handshake guessing against a call bridge's secret for 8 s by 30 parallel
// raw XEP-0114 connections from four addresses: wrong secrets get
// not-authorized as before, but only as many as the throttle allows are
// checked (the rest wait their turn or get policy-violation); the real
// call bridge (slixmpp, from 127.0.0.1) connects meanwhile.
func TestXMPPBruteForceComponent(t *testing.T) {
	t.Parallel()
	const (
		domain = "cbrute.lan"
		cb1    = "cb1." + domain
		secret = "the-real-secret-42"
	)
	x := startXMPP(t, domain, "alice@"+domain, "Alice-pass-1")
	mustOK(t, x.ssh(x.asAdmin(), secret+"\n", "xmpp callbridge add-secret cb1"), "xmpp callbridge add-secret cb1")
	target := net.JoinHostPort(x.host, x.c2s)

	const attack = 8 * time.Second
	end := time.Now().Add(attack)
	srcs := attackSources("127.0.97.", 4)
	var (
		out tally
		wg  sync.WaitGroup
		n   atomic.Int64
	)
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func(src string) {
			defer wg.Done()
			for time.Now().Before(end) {
				b, err := dialFrom(src, target, end)
				if err != nil {
					out.add("dial error")
					time.Sleep(100 * time.Millisecond)
					continue
				}
				b.write(`<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='` + cb1 + `'>`)
				head, _, err := b.until(">")
				for err == nil && !strings.Contains(head, "<stream:stream") {
					var more string
					more, _, err = b.until(">")
					head += more
				}
				m := streamIDRE.FindStringSubmatch(head)
				if err != nil || m == nil {
					out.add("no header")
					b.c.Close()
					continue
				}
				sum := sha1.Sum([]byte(m[1] + fmt.Sprintf("guess-%d", n.Add(1))))
				b.write(`<handshake>` + hex.EncodeToString(sum[:]) + `</handshake>`)
				got, w, err := b.until("</stream:error>", "<handshake")
				switch {
				case err != nil:
					out.add("cut")
				case w == "<handshake":
					out.add("accepted")
				case strings.Contains(got, "<not-authorized"):
					out.add("not-authorized")
				case strings.Contains(got, "<policy-violation"):
					out.add("policy-violation")
				default:
					out.add("other")
				}
				b.c.Close()
			}
		}(srcs[i%len(srcs)])
	}

	time.Sleep(2 * time.Second)
	in := time.Now()
	comp := x.connectComponent(t, cb1, secret, false)
	took := time.Since(in)
	alice := x.login(t, "alice@"+domain, "Alice-pass-1", clientOpts{})
	alice.send(t, "room@"+cb1, "still bridged ✓")
	comp.wait(t, "alice's message", func(e *xev) bool { return e.Ev == "message" && e.Body == "still bridged ✓" })
	wg.Wait()

	guesses := out.get("not-authorized")
	t.Logf("in %v from 4 addresses × 30 connections: %s; the call bridge's handshake took %v", attack, out.String(), took.Round(time.Millisecond))
	if out.get("accepted") != 0 {
		t.Fatalf("a wrong secret was accepted: %s", out.String())
	}
	if guesses < 4 {
		t.Fatalf("the attack hardly reached the server (%d handshakes checked): %s", guesses, out.String())
	}
	// 4 clean guesses + the component's burst of 10 + one turn per 20 s.
	if guesses > 18 {
		t.Fatalf("%d wrong handshakes for %s were checked in %v by 30 parallel connections from 4 addresses, want at most 18: %s", guesses, cb1, attack, out.String())
	}
	if took > 10*time.Second {
		t.Fatalf("the real call bridge took %v to connect during the attack", took)
	}
	logs := x.stderr.String() + x.stdout.String()
	if n := strings.Count(logs, "component: authentication failure for"); n > 4*5+5 {
		t.Fatalf("%d log lines for failed handshakes, want one per episode once an address is throttled", n)
	}
}
