package e2e

// Issue 4: call bridges and other external components (XEP-0114), as Cisco
// Meeting Server call bridges connect: registered with xmpp callbridge,
// connected with slixmpp's ComponentXMPP (testdata/component.py) and, where
// the point is what a library hides (the handshake itself, a stream error,
// two connections of one component), with raw sockets.
//
// Every source address here is loopback, so `xmpp callbridge plain deny`
// (the default) is only seen letting plain connections from loopback in;
// that a plain connection from another host is refused cannot be tested on
// one machine.

import (
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const componentScript = "testdata/component.py"

// component starts the slixmpp component for jid with secret, plain on the
// c2s port or TLS-wrapped on the c2s-tls port; it does not wait for
// anything. Its events are read as a client's.
func (x *xmppAppliance) component(t *testing.T, jid, secret string, direct bool) *xclient {
	t.Helper()
	port, mode := x.c2s, "plain"
	args := []string{componentScript, "--jid", jid, "--secret", secret, "--host", x.host,
		"--timeout", strconv.Itoa(xmppClientMax)}
	if direct {
		port, mode = x.c2sTLS, "tls"
		args = append(args, "--tls")
	}
	args = append(args, "--port", port)
	return startDriver(t, "component "+jid+" ("+mode+")", args)
}

// connectComponent starts the slixmpp component and waits until the
// server has accepted its handshake.
func (x *xmppAppliance) connectComponent(t *testing.T, jid, secret string, direct bool) *xclient {
	t.Helper()
	c := x.component(t, jid, secret, direct)
	c.session = c.wait(t, "an accepted handshake", func(e *xev) bool { return e.Ev == "session" })
	if c.session.JID != jid {
		t.Fatalf("%s: connected as %q, want %s", c.name, c.session.JID, jid)
	}
	return c
}

// componentSend sends a chat message from an address at the component.
func (c *xclient) componentSend(t *testing.T, from, to, body string) {
	t.Helper()
	c.do(t, map[string]any{"op": "send", "from": from, "to": to, "body": body})
}

// streamEnds waits for a stream error of condition and the end of the
// connection, as the client or component sees them.
func (c *xclient) streamEnds(t *testing.T, condition string) {
	t.Helper()
	e := c.wait(t, "a stream error", func(e *xev) bool { return e.Ev == "stream_error" })
	if e.Condition != condition {
		t.Fatalf("%s: stream error %q (%s), want %q\n%s", c.name, e.Condition, e.Text, condition, c.transcript())
	}
	c.wait(t, "the disconnection", func(e *xev) bool { return e.Ev == "disconnected" })
	c.waitExit(t)
}

// bounced waits for a message error of condition from bare JID from.
func (c *xclient) bounced(t *testing.T, from, condition string) {
	t.Helper()
	e := c.wait(t, "a message error from "+from, func(e *xev) bool { return e.Ev == "message_error" && bareOf(e.From) == from })
	if e.Condition != condition {
		t.Fatalf("%s: message error %q from %s, want %q\n%s", c.name, e.Condition, from, condition, c.transcript())
	}
}

// discoItems is the JIDs of a disco#items query.
func (c *xclient) discoItems(t *testing.T, to string) []string {
	t.Helper()
	r := c.do(t, map[string]any{"op": "disco_items", "to": to})
	var v struct {
		JIDs []string `json:"jids"`
	}
	if err := json.Unmarshal([]byte(r.line), &v); err != nil {
		t.Fatalf("%s: disco_items reply %s: %v", c.name, r.line, err)
	}
	return v.JIDs
}

// components is the Components row of `xmpp`, one entry per line.
func (x *xmppAppliance) components(t *testing.T) []string {
	t.Helper()
	st := x.status(t)
	v, ok := st["Components"]
	if !ok {
		t.Fatalf("xmpp shows no Components row: %v", st)
	}
	return strings.Split(v, "; ")
}

// componentLine is the line of the Components row about jid ("" if none).
func (x *xmppAppliance) componentLine(t *testing.T, jid string) string {
	t.Helper()
	for _, l := range x.components(t) {
		if strings.HasPrefix(l, jid+": ") {
			return l
		}
	}
	return ""
}

// mustComponentLine fails unless the Components line about jid matches
// pattern (a regular expression, anchored) within xmppWait, and returns it.
// It asks again while it does not: a component whose connection a client
// saw end leaves the engine's registry a moment later.
func (x *xmppAppliance) mustComponentLine(t *testing.T, jid, pattern string) string {
	t.Helper()
	re := regexp.MustCompile("^" + pattern + "$")
	deadline := time.Now().Add(xmppWait)
	for {
		l := x.componentLine(t, jid)
		if re.MatchString(l) {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("xmpp: the component line about %s is %q, want it to match %q; Components:\n  %s", jid, l, pattern, strings.Join(x.components(t), "\n  "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stamp matches a time as `xmpp` prints it.
const stamp = `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`

// loopbackAddr matches the address of a connection from this machine
// (the kernel picks 127.0.0.1 as the source towards 127.0.88.N).
const loopbackAddr = `127\.\d+\.\d+\.\d+:\d+`

// --- raw component streams ------------------------------------------------

var streamIDRE = regexp.MustCompile(`<stream:stream\s[^>]*\bid=['"]([^'"]+)['"][^>]*>`)

// rawComponent opens a component stream to jid by hand, on the c2s port or
// TLS-wrapped on the c2s-tls port, and returns it with the stream id the
// server gave (the handshake is not sent).
func (x *xmppAppliance) rawComponent(t *testing.T, jid string, direct bool) (*rawConn, string) {
	t.Helper()
	port := x.c2s
	if direct {
		port = x.c2sTLS
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(x.host, port), 5*time.Second)
	if err != nil {
		t.Fatalf("connect to %s: %v", port, err)
	}
	if direct {
		tc := tls.Client(c, &tls.Config{ServerName: x.domain, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			t.Fatalf("TLS handshake on c2s-tls: %v", err)
		}
		tc.SetDeadline(time.Time{})
		c = tc
	}
	r := &rawConn{t: t, c: c, domain: jid}
	t.Cleanup(func() { r.c.Close() })
	r.write(`<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='` + jid + `'>`)
	m := r.untilMatch(streamIDRE)
	if m == nil {
		t.Fatalf("raw component %s: the connection ended before the stream header; read:\n%s", jid, r.got.String())
	}
	return r, m[1]
}

// handshake sends the XEP-0114 handshake for secret over stream id.
func (r *rawConn) handshake(id, secret string) {
	r.t.Helper()
	sum := sha1.Sum([]byte(id + secret))
	r.write(`<handshake>` + hex.EncodeToString(sum[:]) + `</handshake>`)
}

// accepted fails unless the server accepted the handshake.
func (r *rawConn) accepted() {
	r.t.Helper()
	if r.until("<handshake/>", "<handshake></handshake>", "<stream:error") == "<stream:error" || !strings.Contains(r.got.String(), "<handshake") {
		r.t.Fatalf("raw component %s: the handshake was not accepted; read:\n%s", r.domain, r.got.String())
	}
	r.got.Reset()
}

// untilMatch reads until the input since the last reset matches re, and
// returns the submatches (nil if the connection ends first).
func (r *rawConn) untilMatch(re *regexp.Regexp) []string {
	r.t.Helper()
	buf := make([]byte, 4096)
	deadline := time.Now().Add(xmppWait)
	for {
		if m := re.FindStringSubmatch(r.got.String()); m != nil {
			return m
		}
		r.c.SetReadDeadline(deadline)
		n, err := r.c.Read(buf)
		r.got.Write(buf[:n])
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				r.t.Fatalf("raw stream: nothing matching %s within %v; read:\n%s", re, xmppWait, r.got.String())
			}
			return re.FindStringSubmatch(r.got.String())
		}
	}
}

// closed fails unless the server closes the connection (after whatever
// it still sends) within xmppWait.
func (r *rawConn) closed() {
	r.t.Helper()
	buf := make([]byte, 4096)
	r.c.SetReadDeadline(time.Now().Add(xmppWait))
	for {
		n, err := r.c.Read(buf)
		r.got.Write(buf[:n])
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			r.t.Fatalf("raw stream: the server did not close the connection within %v; read:\n%s", xmppWait, r.got.String())
		}
		if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
			r.t.Fatalf("raw stream: reading to the end: %v", err)
		}
		return
	}
}

// --- tests ----------------------------------------------------------------

// A call bridge added with a generated secret: the secret as printed and
// listed in CMS's block format; slixmpp's ComponentXMPP connecting with it
// (plain, from loopback) and talking with a client both ways; the server's
// disco#items; the status in `xmpp`; a wrong secret; a component sending
// from outside its domain; a message to it once it is gone.
func TestXMPPComponentCallbridge(t *testing.T) {
	t.Parallel()
	const (
		domain = "bridge.lan"
		cb1    = "cb1." + domain
		room   = "room@" + cb1
	)
	x := startXMPP(t, domain, "alice@"+domain, "Alice-pass-1")

	// No call bridges: `list` prints nothing, `xmpp` says how to add one.
	if out := x.mustAdmin(t, "xmpp callbridge list"); out != "" {
		t.Fatalf("xmpp callbridge list with no call bridges printed:\n%s", out)
	}
	if got := x.components(t); len(got) != 1 || !strings.HasPrefix(got[0], "none: add a call bridge with xmpp callbridge add") {
		t.Fatalf("xmpp Components with no call bridges: %q", got)
	}
	if st := x.status(t); st["Component plain"] != "loopback only" {
		t.Fatalf("xmpp Component plain by default: %q, want loopback only", st["Component plain"])
	}

	out := x.mustAdmin(t, "xmpp callbridge add cb1")
	m := regexp.MustCompile(`^Callbridge cb1 added: component cb1\.bridge\.lan, secret ([A-Za-z0-9]{20})\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("xmpp callbridge add cb1 printed %q, want \"Callbridge cb1 added: component %s, secret <20 letters and digits>\"", out, cb1)
	}
	secret := m[1]
	if out := x.mustAdmin(t, "xmpp callbridge list"); out != "***\nCallbridge : cb1\nDomain     : "+domain+"\nSecret     : "+secret+"\n" {
		t.Fatalf("xmpp callbridge list is not exactly the CMS block with the printed secret %s:\n%q", secret, out)
	}
	mustFail(t, x.admin("xmpp callbridge add cb1"), "a second xmpp callbridge add cb1", "cb1 already exists", "xmpp callbridge del cb1")
	x.mustComponentLine(t, cb1, regexp.QuoteMeta(cb1)+`: not connected`)

	// A wrong secret: not-authorized, and `xmpp` says why.
	bad := x.component(t, cb1, secret+"x", false)
	bad.streamEnds(t, "not-authorized")
	bad.none(t, "accepted handshake with a wrong secret", func(e *xev) bool { return e.Ev == "session" })
	x.mustComponentLine(t, cb1, regexp.QuoteMeta(cb1)+`: not connected \(last failure: authentication failure at `+stamp+`\)`)

	// The right one, plain on the c2s port from loopback (plain deny, the
	// default, lets loopback in).
	comp := x.connectComponent(t, cb1, secret, false)
	if comp.session.TLS != "" {
		t.Fatalf("%s: TLS %s on the plain port", comp.name, comp.session.TLS)
	}
	x.mustComponentLine(t, cb1, regexp.QuoteMeta(cb1)+`: connected since `+stamp+` from `+loopbackAddr)

	alice := x.login(t, "alice@"+domain, "Alice-pass-1", clientOpts{})
	if items := alice.discoItems(t, domain); !contains(items, cb1) {
		t.Fatalf("disco#items of %s: %q, want %s among them", domain, items, cb1)
	}

	// Client → component → client.
	alice.send(t, room, "hello bridge ✓")
	in := comp.wait(t, "alice's message", func(e *xev) bool { return e.Ev == "message" && e.Body == "hello bridge ✓" })
	if in.From != alice.session.JID || in.To != room || in.Type != "chat" {
		t.Fatalf("%s: got the message from %q to %q type %q, want from %s to %s, chat", comp.name, in.From, in.To, in.Type, alice.session.JID, room)
	}
	comp.componentSend(t, room, in.From, "welcome to the room ✓")
	if got := alice.message(t, room, "welcome to the room ✓"); got.From != room {
		t.Fatalf("%s: the answer came from %q, want %s", alice.name, got.From, room)
	}
	// An IQ from the component to the server is answered.
	comp.do(t, map[string]any{"op": "ping", "to": domain})

	// A stanza from outside the component's domain ends its stream.
	comp.componentSend(t, "mallory@"+domain, alice.session.JID, "spoofed")
	comp.streamEnds(t, "invalid-from")
	alice.ping(t, "")
	alice.none(t, "the spoofed message", func(e *xev) bool { return e.Ev == "message" && e.Body == "spoofed" })
	x.mustComponentLine(t, cb1, regexp.QuoteMeta(cb1)+`: not connected`)

	// Registered but not connected: messages bounce, disco#items forgets it.
	alice.send(t, room, "anyone there?")
	alice.bounced(t, room, "service-unavailable")
	if items := alice.discoItems(t, domain); contains(items, cb1) {
		t.Fatalf("disco#items of %s lists the disconnected %s: %q", domain, cb1, items)
	}
}

// The other ways a component connects: an unknown name, a secret given with
// add-secret in exec mode, TLS-wrapped on the c2s-tls port, the same
// component twice (the newer wins), and del while it is connected.
func TestXMPPComponentConnections(t *testing.T) {
	t.Parallel()
	const (
		domain = "cms.lan"
		cb2    = "cb2." + domain
		secret = "secret-value-123"
	)
	x := startXMPP(t, domain, "alice@"+domain, "Alice-pass-1")

	// An unknown name: host-unknown, shown as not configured.
	r, _ := x.rawComponent(t, "nope."+domain, false)
	if cond := r.streamError(); cond != "host-unknown" {
		t.Fatalf("a component stream to nope.%s: stream error %q, want host-unknown", domain, cond)
	}
	x.mustComponentLine(t, "nope."+domain, `nope\.cms\.lan: not configured, not connected \(last failure: unknown component at `+stamp+`\)`)

	// The secret on the next line of standard input, in exec mode.
	out := mustOK(t, x.ssh(x.asAdmin(), secret+"\n", "xmpp callbridge add-secret cb2"), "xmpp callbridge add-secret cb2")
	if out != "Callbridge cb2 added: component "+cb2+", with the secret given\n" {
		t.Fatalf("xmpp callbridge add-secret cb2 printed %q", out)
	}
	if out := x.mustAdmin(t, "xmpp callbridge list"); out != "***\nCallbridge : cb2\nDomain     : "+domain+"\nSecret     : "+secret+"\n" {
		t.Fatalf("xmpp callbridge list after add-secret:\n%q", out)
	}
	if out := x.mustAdmin(t, "xmpp callbridge plain deny"); out != "Component plain: loopback only; TLS on the c2s-tls port "+x.c2sTLS+" is always allowed\n" {
		t.Fatalf("xmpp callbridge plain deny printed %q", out)
	}

	// A raw component with that secret, plain on c2s, naming itself in
	// other letter case (domain names are case-insensitive): it is cb2.
	older, id := x.rawComponent(t, "CB2.Cms.LAN", false)
	older.handshake(id, secret)
	older.accepted()
	x.mustComponentLine(t, cb2, regexp.QuoteMeta(cb2)+`: connected since `+stamp+` from `+regexp.QuoteMeta(older.c.LocalAddr().String()))

	// The same component again, TLS-wrapped on c2s-tls as a CMS call
	// bridge connects: the newer wins, the older gets conflict.
	comp := x.connectComponent(t, cb2, secret, true)
	if !strings.HasPrefix(comp.session.TLS, "TLSv1.") {
		t.Fatalf("%s: TLS %q on the c2s-tls port", comp.name, comp.session.TLS)
	}
	if cond := older.streamError(); cond != "conflict" {
		t.Fatalf("the older connection of %s: stream error %q, want conflict", cb2, cond)
	}
	older.closed()
	line := x.mustComponentLine(t, cb2, regexp.QuoteMeta(cb2)+`: connected since `+stamp+` from `+loopbackAddr)
	if strings.HasSuffix(line, " from "+older.c.LocalAddr().String()) {
		t.Fatalf("xmpp shows the replaced connection: %q", line)
	}

	alice := x.login(t, "alice@"+domain, "Alice-pass-1", clientOpts{})
	alice.send(t, cb2, "over TLS ✓")
	in := comp.wait(t, "alice's message", func(e *xev) bool { return e.Ev == "message" && e.Body == "over TLS ✓" })
	if in.From != alice.session.JID || in.To != cb2 {
		t.Fatalf("%s: got the message from %q to %q, want from %s to %s", comp.name, in.From, in.To, alice.session.JID, cb2)
	}
	comp.componentSend(t, cb2, "alice@"+domain, "back over TLS ✓")
	alice.message(t, cb2, "back over TLS ✓")
	// IQs both ways: slixmpp answers disco#info for the component.
	if info := alice.do(t, map[string]any{"op": "disco_info", "to": cb2}); !contains(info.Features, "http://jabber.org/protocol/disco#info") {
		t.Fatalf("disco#info of %s through the server: %s", cb2, info.line)
	}

	// del disconnects it.
	out = x.mustAdmin(t, "xmpp callbridge del cb2")
	if !matches(`^Callbridge cb2 deleted: cb2\.cms\.lan was connected from `+loopbackAddr+` and has been disconnected\n$`, out) {
		t.Fatalf("xmpp callbridge del cb2 with cb2 connected printed %q", out)
	}
	comp.streamEnds(t, "not-authorized")
	if out := x.mustAdmin(t, "xmpp callbridge list"); out != "" {
		t.Fatalf("xmpp callbridge list after del:\n%s", out)
	}
	if l := x.componentLine(t, cb2); l != "" {
		t.Fatalf("xmpp still shows the deleted %s: %q", cb2, l)
	}
	// Deleted, cb2.cms.lan is no component any more but a domain not served
	// here: the bounce is the one for any such domain (remote-server-not-
	// found, as long as there is no federation), not the service-unavailable
	// of a registered component that is not connected.
	alice.send(t, "room@"+cb2, "still there?")
	alice.bounced(t, "room@"+cb2, "remote-server-not-found")
	comp.none(t, "a message after del", func(e *xev) bool { return e.Ev == "message" && e.Body == "still there?" })

	// And it cannot connect again.
	again, id := x.rawComponent(t, cb2, false)
	if cond := again.streamError(); cond != "host-unknown" {
		t.Fatalf("%s after del: stream error %q, want host-unknown (id %s)", cb2, cond, id)
	}
}
