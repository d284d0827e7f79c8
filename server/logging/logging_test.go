package logging

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// TestLevels: each setting writes the records at and above it, none
// writes nothing, and the setting names round-trip.
func TestLevels(t *testing.T) {
	records := []struct {
		name  string
		level slog.Level
	}{{"major", LevelMajor}, {"problems", LevelProblems}, {"low-level", LevelLow}, {"all", LevelAll}}
	for i, setting := range LevelNames {
		t.Run(setting, func(t *testing.T) {
			var buf bytes.Buffer
			h := New(Config{Stderr: &buf})
			l, err := ParseLevel(setting)
			if err != nil {
				t.Fatal(err)
			}
			if LevelName(l) != setting {
				t.Errorf("LevelName(ParseLevel(%q)) = %q", setting, LevelName(l))
			}
			h.SetLevel(l)
			for _, r := range records {
				Conn{}.Log(h.Logger(), r.level, "record %s", r.name)
			}
			// Setting i (none=0, major=1, …) writes the first i records.
			for j, r := range records {
				has := strings.Contains(buf.String(), "record "+r.name+"\n")
				if has != (j < i) {
					t.Errorf("level %s: record %s written = %v", setting, r.name, has)
				}
			}
		})
	}
	if _, err := ParseLevel("verbose"); err == nil || !strings.Contains(err.Error(), "none, major, problems, low-level, all") {
		t.Errorf("ParseLevel(verbose) = %v", err)
	}
	if New(Config{}).Level() != LevelProblems {
		t.Error("the default level is not problems")
	}
	// slog's own levels map onto the settings.
	h := New(Config{})
	var buf bytes.Buffer
	h.cfg.Stderr = &buf
	h.Logger().Error("an error")
	h.Logger().Warn("a warning")
	h.Logger().Info("info")
	if s := buf.String(); !strings.Contains(s, "MAJOR an error") || !strings.Contains(s, "PROBLEM a warning") || strings.Contains(s, "info") {
		t.Errorf("slog levels at problems:\n%s", s)
	}
}

var lineRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z `)

// TestTagsAndLines: a connection's records carry its tag, number and peer
// before the message; attributes follow as key=value; a record is always
// one line, so a peer cannot forge a line with a newline.
func TestTagsAndLines(t *testing.T) {
	var buf bytes.Buffer
	h := New(Config{Stderr: &buf})
	l := h.Logger()
	for _, kind := range []string{KindClient, KindServerIn, KindServerOut, KindComponent} {
		Conn{Kind: kind, ID: 42, Peer: "192.0.2.7:5222"}.Problem(l, "%s says %q", kind, "hi")
	}
	Major(l, "untagged")
	l.Warn("structured", "user", "alice@example.lan", "why", "two words")
	Problem(l, "forged?\n2026-01-01T00:00:00.000Z MAJOR XMPPI-1 c2s: admin logged in")
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	want := []string{
		`PROBLEM XMPPI-42 192.0.2.7:5222 XMPPI says "hi"`,
		`PROBLEM XMPPS-42 192.0.2.7:5222 XMPPS says "hi"`,
		`PROBLEM XMPPO-42 192.0.2.7:5222 XMPPO says "hi"`,
		`PROBLEM XMPPC-42 192.0.2.7:5222 XMPPC says "hi"`,
		`MAJOR untagged`,
		`PROBLEM structured user=alice@example.lan why="two words"`,
		`PROBLEM forged? ⏎ 2026-01-01T00:00:00.000Z MAJOR XMPPI-1 c2s: admin logged in`,
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if !lineRE.MatchString(lines[i]) || lines[i][25:] != w {
			t.Errorf("line %d = %q, want time then %q", i, lines[i], w)
		}
	}
	// Ids are unique.
	if a, b := NextID(), NextID(); a == b {
		t.Error("NextID repeats")
	}
	// A long record is cut.
	buf.Reset()
	Problem(l, "%s", strings.Repeat("é", MaxLine))
	if n := len(buf.String()); n > MaxLine+100 || !strings.HasSuffix(buf.String(), truncatedMark+"\n") {
		t.Errorf("a long record: %d bytes", n)
	}
}

// TestStanzaRedaction: bodies off hides every text; bodies on shows text
// but never a password, SASL data or a password form field.
func TestStanzaRedaction(t *testing.T) {
	msg := xml.New("jabber:client", "message", "to", "bob@example.lan", "type", "chat").
		Add(xml.New("jabber:client", "body").AddText("meet at noon"),
			xml.New("jabber:client", "subject").AddText("lunch"))
	reg := xml.New("jabber:client", "iq", "type", "set").
		Add(xml.New("jabber:iq:register", "query").Add(
			xml.New("jabber:iq:register", "username").AddText("alice"),
			xml.New("jabber:iq:register", "password").AddText("s3cret")))
	form := xml.New("jabber:client", "iq", "type", "set").
		Add(xml.New("jabber:x:data", "x").Add(
			xml.New("jabber:x:data", "field", "var", "muc#roomconfig_roomsecret").Add(xml.New("jabber:x:data", "value").AddText("not-a-password-field")),
			xml.New("jabber:x:data", "field", "var", "password").Add(xml.New("jabber:x:data", "value").AddText("form-s3cret"))))
	auth := xml.New("jabber:client", "iq", "type", "set").
		Add(xml.New("jabber:iq:auth", "query").Add(xml.New("jabber:iq:auth", "digest").AddText("abcdef0123")))
	sasl := xml.New("urn:ietf:params:xml:ns:xmpp-sasl", "auth", "mechanism", "PLAIN").AddText("AGFsaWNlAHMzY3JldA==")
	for _, tc := range []struct {
		el         *xml.Element
		bodies     bool
		want, gone []string
	}{
		{msg, false, []string{`<body>[hidden]</body>`, `<subject>[hidden]</subject>`, `to="bob@example.lan"`}, []string{"noon", "lunch"}},
		{msg, true, []string{`<body>meet at noon</body>`}, nil},
		{reg, false, []string{`<password>[hidden]</password>`}, []string{"s3cret", "alice"}},
		{reg, true, []string{`<username>alice</username>`, `<password>[hidden]</password>`}, []string{"s3cret"}},
		{form, true, []string{"not-a-password-field"}, []string{"form-s3cret"}},
		{auth, true, nil, []string{"abcdef0123"}},
		{sasl, true, nil, []string{"AGFsaWNlAHMzY3JldA=="}},
	} {
		got := render(tc.el, tc.bodies)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("render(bodies=%v) = %s: no %s", tc.bodies, got, w)
			}
		}
		for _, g := range tc.gone {
			if strings.Contains(got, g) {
				t.Errorf("render(bodies=%v) = %s: shows %s", tc.bodies, got, g)
			}
		}
	}
	// The original is not changed.
	if msg.Child("jabber:client", "body").Text() != "meet at noon" {
		t.Error("render changed the stanza")
	}
	// Through a logger: only at level all.
	var buf bytes.Buffer
	h := New(Config{Stderr: &buf})
	c := Conn{Kind: KindClient, ID: 1, Peer: "p"}
	c.Stanza(h.Logger(), msg)
	if buf.Len() != 0 {
		t.Errorf("a stanza was logged at problems: %s", buf.String())
	}
	h.SetLevel(LevelAll)
	c.Stanza(h.Logger(), msg)
	if !strings.Contains(buf.String(), "ALL XMPPI-1 p stanza in: <message") || strings.Contains(buf.String(), "noon") {
		t.Errorf("at all, bodies off: %s", buf.String())
	}
}

// TestFormat5424 checks a record against RFC 5424's grammar, field by
// field, and the octet-counting frame.
func TestFormat5424(t *testing.T) {
	at := time.Date(2026, 12, 6, 9, 1, 2, 345678912, time.UTC)
	e := &entry{time: at, level: LevelMajor, tag: KindClient, conn: 17, peer: `[2001:db8::1]:5222`, msg: "c2s: alice@example.lan logged in with PLAIN"}
	got := string(Format5424(e, "xmpp1.example.lan", 4242))
	want := `<29>1 2026-12-06T09:01:02.345678Z xmpp1.example.lan parley 4242 XMPPI [conn@32473 id="17" peer="[2001:db8::1\]:5222"] c2s: alice@example.lan logged in with PLAIN`
	if got != want {
		t.Errorf("Format5424:\n got %s\nwant %s", got, want)
	}
	// Untagged, problems (warning, 4): PRI 28, NILVALUE for MSGID and SD;
	// a host name with a space is not printable US-ASCII: dropped.
	e = &entry{time: at, level: LevelProblems, msg: "x"}
	if got := string(Format5424(e, "bad host", 1)); got != `<28>1 2026-12-06T09:01:02.345678Z badhost parley 1 - - x` {
		t.Errorf("untagged: %s", got)
	}
	if got := string(Format5424(&entry{time: at, level: LevelLow}, "", 1)); got != `<30>1 2026-12-06T09:01:02.345678Z - parley 1 - -` {
		t.Errorf("empty: %s", got)
	}
	if got := string(Format5424(&entry{time: at, level: LevelAll, msg: "m"}, "h", 1)); !strings.HasPrefix(got, "<31>1 ") {
		t.Errorf("all: %s", got)
	}
	if got := string(Frame([]byte("héllo"))); got != "6 héllo" {
		t.Errorf("Frame = %q", got)
	}
	big := Frame(bytes.Repeat([]byte("é"), MaxStream))
	n, rest, _ := strings.Cut(string(big), " ")
	if l, _ := strconv.Atoi(n); l != len(rest) || l > MaxStream {
		t.Errorf("a big frame says %s for %d bytes", n, len(rest))
	}
}

func TestParseServer(t *testing.T) {
	for _, tc := range []struct {
		in, proto, want, err string
	}{
		{"192.0.2.1", "", "192.0.2.1:514 udp", ""},
		{"Logs.Example.com:1514", "tcp", "logs.example.com:1514 tcp", ""},
		{"logs.example.com", "tls", "logs.example.com:6514 tls", ""},
		{"[2001:db8::1]:601", "tcp", "[2001:db8::1]:601 tcp", ""},
		{"2001:db8::1", "udp", "[2001:db8::1]:514 udp", ""},
		{"host:0", "", "", "port must be a number"},
		{"host:x", "", "", "port must be a number"},
		{"host", "sctp", "", "unknown protocol"},
		{"bad_host!", "", "", "not a host name"},
		{"", "", "", "empty"},
	} {
		s, err := ParseServer(tc.in, tc.proto)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseServer(%q, %q) = %v, %v; want error %q", tc.in, tc.proto, s, err, tc.err)
			}
			continue
		}
		if err != nil || s.String() != tc.want {
			t.Errorf("ParseServer(%q, %q) = %v, %v; want %s", tc.in, tc.proto, s, err, tc.want)
		}
	}
	list := []Server{{"a.example", 514, "udp"}, {"192.0.2.1", 6514, "tls"}}
	if got := ParseServers(FormatServers(list) + "junk\n"); len(got) != 2 || got[0] != list[0] || got[1] != list[1] {
		t.Errorf("round trip: %v", got)
	}
}

// TestRotation: the file never grows past its size; the generations shift
// and the oldest goes.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log", "parley.log")
	r, err := NewRotating(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := 0; i < 20; i++ {
		fmt.Fprintf(r, "line %02d is thirty bytes long\n", i) // 30 bytes
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cur, one, two := read(path), read(path+".1"), read(path+".2")
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("a third generation exists: %v", err)
	}
	for _, s := range []string{cur, one, two} {
		if len(s) > 100 {
			t.Errorf("a file of %d bytes", len(s))
		}
	}
	// 20 lines, 3 a file: 18..19 in the current file, 15..17 in .1,
	// 12..14 in .2.
	if !strings.HasPrefix(cur, "line 18") || !strings.HasPrefix(one, "line 15") || !strings.HasPrefix(two, "line 12") {
		t.Errorf("generations:\n%s\n--\n%s\n--\n%s", cur, one, two)
	}
	// Reopening appends to the current file.
	r.Close()
	r2, err := NewRotating(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(r2, "after reopening\n")
	r2.Close()
	if !strings.HasSuffix(read(path), "after reopening\n") || !strings.HasPrefix(read(path), "line 18") {
		t.Errorf("after reopening: %q", read(path))
	}
	// Through a Hub.
	f, err := NewRotating(filepath.Join(dir, "hub.log"), 1<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	h := New(Config{File: f})
	Problem(h.Logger(), "to the file")
	h.Close()
	if !strings.Contains(read(filepath.Join(dir, "hub.log")), "PROBLEM to the file") {
		t.Error("the hub did not write its file")
	}
}

// TestRingAndFollow: Lines gives the last lines; a follower gets new
// ones; a follower that does not read loses lines (counted) and never
// blocks the logger.
func TestRingAndFollow(t *testing.T) {
	h := New(Config{Ring: 5})
	l := h.Logger()
	for i := 0; i < 8; i++ {
		Problem(l, "n%d", i)
	}
	got := h.Lines(0)
	if len(got) != 5 || !strings.HasSuffix(got[0], "n3") || !strings.HasSuffix(got[4], "n7") {
		t.Errorf("Lines(0) = %q", got)
	}
	if got := h.Lines(2); len(got) != 2 || !strings.HasSuffix(got[1], "n7") {
		t.Errorf("Lines(2) = %q", got)
	}
	// Bounded in bytes too: long lines push old ones out sooner.
	big := New(Config{})
	for i := 0; i < 400; i++ {
		Problem(big.Logger(), "%d %s", i, strings.Repeat("x", MaxLine-100))
	}
	kept := big.Lines(0)
	size := 0
	for _, s := range kept {
		size += len(s)
	}
	if size > MaxRingBytes || len(kept) >= 400 || len(kept) < 200 || !strings.Contains(kept[len(kept)-1], " 399 ") {
		t.Errorf("kept %d lines of %d bytes", len(kept), size)
	}
	f, err := h.Follow()
	if err != nil {
		t.Fatal(err)
	}
	Problem(l, "live")
	select {
	case s := <-f.C:
		if !strings.HasSuffix(s, "PROBLEM live") {
			t.Errorf("followed %q", s)
		}
	case <-time.After(time.Second):
		t.Fatal("the follower got nothing")
	}
	start := time.Now()
	for i := 0; i < FollowBuffer+10; i++ {
		Problem(l, "flood %d", i)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a follower that does not read slowed the logger: %v", d)
	}
	if n := f.Skipped(); n != 10 {
		t.Errorf("skipped %d, want 10", n)
	}
	f.Close()
	var fs []*Follower
	for i := 0; i < MaxFollowers; i++ {
		f, err := h.Follow()
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	if _, err := h.Follow(); err == nil {
		t.Error("more followers than MaxFollowers")
	}
	fs[0].Close()
	if _, err := h.Follow(); err != nil {
		t.Errorf("after one left: %v", err)
	}
}

// collector is a TCP (or TLS) syslog server reading octet-counted frames.
type collector struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []string
	got  chan string
}

func newCollector(t *testing.T, cfg *tls.Config) *collector {
	ln, err := net.Listen("tcp", "127.0.22.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	c := &collector{ln: ln, got: make(chan string, 100)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go c.read(conn)
		}
	}()
	return c
}

func (c *collector) read(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	for {
		n, err := br.ReadString(' ')
		if err != nil {
			return
		}
		size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
		if err != nil {
			c.got <- "BAD FRAME " + n
			return
		}
		buf := make([]byte, size)
		if _, err := io.ReadFull(br, buf); err != nil {
			return
		}
		c.got <- string(buf)
	}
}

func (c *collector) next(t *testing.T, what string) string {
	t.Helper()
	select {
	case m := <-c.got:
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("the collector got no %s", what)
	}
	return ""
}

func serverOf(t *testing.T, addr, proto string) Server {
	s, err := ParseServer(addr, proto)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRemoteTCP: records reach a TCP collector framed by octet counting;
// when the collector goes away and comes back, sending resumes.
func TestRemoteTCP(t *testing.T) {
	c := newCollector(t, nil)
	h := New(Config{Hostname: func() string { return "node1.example.lan" }})
	defer h.Close()
	h.Apply(Settings{Enabled: true, Servers: []Server{serverOf(t, c.ln.Addr().String(), "tcp")}})
	Conn{Kind: KindClient, ID: 9, Peer: "192.0.2.1:4000"}.Major(h.Logger(), "c2s: alice@example.lan logged in with PLAIN")
	m := c.next(t, "record")
	if !regexp.MustCompile(`^<29>1 \S+Z node1\.example\.lan parley \d+ XMPPI \[conn@32473 id="9" peer="192\.0\.2\.1:4000"\] c2s: alice@example\.lan logged in with PLAIN$`).MatchString(m) {
		t.Errorf("received %q", m)
	}
	waitFor(t, "sent counted", func() bool { r := h.Remotes(); return len(r) == 1 && r[0].Sent == 1 && r[0].State == "connected" })

	// Disabled: nothing more is sent, the sender stops.
	h.Apply(Settings{Enabled: false, Servers: []Server{serverOf(t, c.ln.Addr().String(), "tcp")}})
	if len(h.Remotes()) != 0 {
		t.Errorf("disabled, still sending to %v", h.Remotes())
	}
	Problem(h.Logger(), "not sent")
	select {
	case m := <-c.got:
		t.Errorf("sent while disabled: %q", m)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestRemoteUnreachable: a collector that is down never blocks the
// logger; the queue is bounded and what does not fit is counted.
func TestRemoteUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.22.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there
	h := New(Config{})
	defer h.Close()
	h.Apply(Settings{Enabled: true, Servers: []Server{serverOf(t, addr, "tcp")}})
	start := time.Now()
	for i := 0; i < QueueLen+100; i++ {
		Problem(h.Logger(), "record %d", i)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("logging with a collector down took %v", d)
	}
	waitFor(t, "the failure in the state", func() bool {
		r := h.Remotes()
		return len(r) == 1 && strings.HasPrefix(r[0].State, "unreachable") && r[0].Dropped >= 100 && r[0].Queued <= QueueLen
	})
}

// TestRemoteTLSAndUDP: a TLS collector verified by its certificate, and
// UDP datagrams.
func TestRemoteTLSAndUDP(t *testing.T) {
	key, keyPEM, err := pki.GenerateKey(pki.KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := pki.SelfSigned(key, pki.Request{CN: "logs.example.lan", IPs: []net.IP{net.ParseIP("127.0.22.1")}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	c := newCollector(t, &tls.Config{Certificates: []tls.Certificate{pair}})
	h := New(Config{TLSRoots: roots, Hostname: func() string { return "n1" }})
	defer h.Close()

	pc, err := net.ListenPacket("udp", "127.0.22.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	h.Apply(Settings{Enabled: true, Servers: []Server{serverOf(t, c.ln.Addr().String(), "tls"), serverOf(t, pc.LocalAddr().String(), "udp")}})
	waitFor(t, "both connected", func() bool {
		r := h.Remotes()
		return len(r) == 2 && r[0].State == "connected" && r[1].State == "connected"
	})
	Problem(h.Logger(), "over TLS and UDP")
	if m := c.next(t, "TLS record"); !strings.HasSuffix(m, " n1 parley "+strconv.Itoa(os.Getpid())+" - - over TLS and UDP") {
		t.Errorf("TLS: %q", m)
	}
	buf := make([]byte, 4096)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "<28>1 ") || !strings.HasSuffix(string(buf[:n]), "over TLS and UDP") {
		t.Errorf("UDP: %q, %v", buf[:n], err)
	}
	// A TLS collector whose certificate does not verify is not sent to.
	h2 := New(Config{})
	defer h2.Close()
	h2.Apply(Settings{Enabled: true, Servers: []Server{serverOf(t, c.ln.Addr().String(), "tls")}})
	waitFor(t, "the certificate refused", func() bool {
		r := h2.Remotes()
		return len(r) == 1 && strings.Contains(r[0].State, "certificate")
	})
}

// TestAuditFile: entries go to the file in the files area, one line each.
func TestAuditFile(t *testing.T) {
	area, err := pki.OpenArea(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer area.Close()
	h := New(Config{Files: area})
	h.Audit(store.AuditEntry{User: "admin", From: "192.0.2.9", Action: "before", Result: "ok"})
	h.Apply(Settings{Audit: "audit.log"})
	at := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	h.Audit(store.AuditEntry{Time: at, User: "admin", From: "192.0.2.9", Action: `xmpp log level "all"`, Result: "ok"})
	h.Apply(Settings{})
	h.Audit(store.AuditEntry{User: "admin", Action: "after", Result: "ok"})
	b, err := area.ReadFile("audit.log")
	if err != nil {
		t.Fatal(err)
	}
	want := `2026-12-06T09:00:00Z user=admin from=192.0.2.9 action="xmpp log level \"all\"" result="ok"` + "\n"
	if string(b) != want {
		t.Errorf("audit.log = %q, want %q", b, want)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
