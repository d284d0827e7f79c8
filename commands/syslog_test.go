package commands

import (
	"bytes"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/store"
)

// logFixture is a command fixture whose process has a log Hub that
// watches the store, as cmd/parley wires it.
func logFixture(t *testing.T) (*fixture, *logging.Hub) {
	f := newFixture(t)
	h := logging.New(logging.Config{Files: f.env.Files})
	h.Watch(f.env.Store)
	f.env.Logs = h
	t.Cleanup(h.Close)
	f.env.Store.OnAudit(h.Audit)
	return f, h
}

func TestXMPPLogLevel(t *testing.T) {
	f, h := logFixture(t)
	if out := f.ok("xmpp log level"); out != "Log level: problems (the default)\n" {
		t.Errorf("default: %q", out)
	}
	for _, lv := range []string{"all", "low-level", "major", "none", "problems"} {
		if out := f.ok("xmpp log level " + lv); out != "Log level: "+lv+"\n" {
			t.Errorf("set %s: %q", lv, out)
		}
		// Applied when the command returns, on this node only.
		if logging.LevelName(h.Level()) != lv {
			t.Errorf("after xmpp log level %s the hub is at %s", lv, logging.LevelName(h.Level()))
		}
	}
	if !store.IsLocalKey(store.LogLevel) || !store.IsLocalKey(store.SyslogServers) {
		t.Error("the log settings are not node-local")
	}
	if _, err := f.run("xmpp log level verbose"); err == nil || !strings.Contains(err.Error(), "none|major|problems|low-level|all") {
		t.Errorf("a bad level: %v", err)
	}
	if _, err := f.runAs("aud", store.RoleAudit, "xmpp log level all"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("the audit role set the level: %v", err)
	}
	if out, err := f.runAs("aud", store.RoleAudit, "xmpp log level"); err != nil || !strings.Contains(out, "problems") {
		t.Errorf("the audit role cannot read the level: %q %v", out, err)
	}
	if out := f.ok("xmpp log bodies on"); !strings.Contains(out, "on (written only at level all") || !h.Bodies() {
		t.Errorf("bodies on: %q, %v", out, h.Bodies())
	}
	f.ok("xmpp log bodies off")
	if h.Bodies() {
		t.Error("bodies still on")
	}
}

func TestSyslogShowAndPage(t *testing.T) {
	f, h := logFixture(t)
	if out := f.ok("syslog"); out != "The log is empty (level problems).\n" {
		t.Errorf("empty: %q", out)
	}
	for i := 0; i < 60; i++ {
		logging.Problem(h.Logger(), "line %02d", i)
	}
	out := f.ok("syslog")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 50 || !strings.HasSuffix(lines[0], "PROBLEM line 10") || !strings.HasSuffix(lines[49], "PROBLEM line 59") {
		t.Errorf("syslog: %d lines, %q … %q", len(lines), lines[0], lines[len(lines)-1])
	}
	if out := f.ok("syslog 3"); strings.Count(out, "\n") != 3 || !strings.HasSuffix(out, "line 59\n") {
		t.Errorf("syslog 3: %q", out)
	}
	if _, err := f.run("syslog 0"); err == nil {
		t.Error("syslog 0 accepted")
	}
	// Exec mode (not interactive): every line, no prompt. The audit trail
	// of the commands above is logged at low-level, so not here.
	out = f.ok("syslog page")
	if strings.Count(out, "\n") != 60 || strings.Contains(out, "--") {
		t.Errorf("syslog page in exec mode: %d lines", strings.Count(out, "\n"))
	}
	// Interactive: a page, then the prompt; q stops.
	f.out.Reset()
	p := &fakePrompt{interactive: true, answers: []string{"", "q"}}
	c := &Ctx{Env: f.env, User: "root", Role: store.RoleAdmin, Out: &f.out, Prompt: p}
	if err := f.tree.Run(c, "syslog page"); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(f.out.String(), "\n"); n != 2*pageLines || len(p.asked) != 2 || !strings.Contains(p.asked[0], "22 of 60 lines") {
		t.Errorf("paged: %d lines, asked %q", n, p.asked)
	}
}

// syncBuffer is an output written by one goroutine and read by another.
type syncBuffer struct {
	ch chan string
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.ch <- string(p)
	return len(p), nil
}

func TestSyslogFollow(t *testing.T) {
	f, h := logFixture(t)
	done := make(chan struct{})
	out := &syncBuffer{ch: make(chan string, 100)}
	c := &Ctx{Env: f.env, User: "root", Role: store.RoleAdmin, Out: out, Prompt: &fakePrompt{}, Done: done}
	ended := make(chan error)
	go func() { ended <- f.tree.Run(c, "syslog follow") }()
	if s := <-out.ch; !strings.Contains(s, "until the session ends") {
		t.Errorf("first line %q", s)
	}
	logging.Major(h.Logger(), "c2s: a live record")
	select {
	case s := <-out.ch:
		if !strings.HasSuffix(s, "MAJOR c2s: a live record\n") {
			t.Errorf("followed %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the record was not followed")
	}
	close(done) // the SSH session ends
	select {
	case err := <-ended:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("syslog follow did not end with the session")
	}
}

func TestSyslogServers(t *testing.T) {
	f, h := logFixture(t)
	out := f.ok("syslog server list")
	if !strings.HasPrefix(out, "Node          : parley (the settings below are this node's)\n") || !strings.Contains(out, "Remote syslog : disabled") || !strings.Contains(out, "No syslog servers") || !strings.Contains(out, "Audit file    : none") {
		t.Errorf("empty list: %q", out)
	}
	// A collector that counts what it gets.
	pc, err := net.ListenPacket("udp", "127.0.22.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	out = f.ok("syslog server add " + pc.LocalAddr().String())
	if !strings.Contains(out, "udp added. Records are sent once you say: syslog enable") {
		t.Errorf("add: %q", out)
	}
	f.ok("syslog server add logs.example.lan tls")
	f.ok("syslog server add 192.0.2.1:1514 tcp")
	for _, bad := range []struct{ line, err string }{
		{"syslog server add " + pc.LocalAddr().String() + " udp", "already a server"},
		{"syslog server add bad_host!", "not a host name"},
		{"syslog server add host:99999", "port must be"},
		{"syslog server add host sctp", `"sctp" is not one of udp, tcp, tls`},
		{"syslog server del 198.51.100.1", "not a syslog server"},
		{"syslog disable", "already disabled"},
	} {
		if _, err := f.run(bad.line); err == nil || !strings.Contains(err.Error(), bad.err) {
			t.Errorf("%s: %v, want %q", bad.line, err, bad.err)
		}
	}
	if len(h.Remotes()) != 0 {
		t.Error("sending before syslog enable")
	}
	if out := f.ok("syslog enable"); out != "Remote syslog enabled: sending to 3 servers.\n" {
		t.Errorf("enable: %q", out)
	}
	if len(h.Remotes()) != 3 {
		t.Errorf("enabled: %d senders", len(h.Remotes()))
	}
	logging.Problem(h.Logger(), "to the collector")
	buf := make([]byte, 2048)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil || !bytes.HasPrefix(buf[:n], []byte("<28>1 ")) || !bytes.HasSuffix(buf[:n], []byte(" to the collector")) {
		t.Errorf("the collector got %q, %v", buf[:n], err)
	}
	// The sender counts a record once its write returned, which may be
	// after the collector read it: wait for the count.
	sent := regexp.MustCompile(regexp.QuoteMeta(pc.LocalAddr().String()) + ` +udp +connected +1 `)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if out = f.ok("syslog server list"); sent.MatchString(out) || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{`Remote syslog : enabled`, `logs\.example\.lan:6514 +tls +`, `192\.0\.2\.1:1514 +tcp`,
		regexp.QuoteMeta(pc.LocalAddr().String()) + ` +udp +connected +1 +0 +0`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("list has no %s:\n%s", want, out)
		}
	}
	f.ok("syslog server del logs.example.lan")
	if len(h.Remotes()) != 2 {
		t.Errorf("after del: %d senders", len(h.Remotes()))
	}
	// A second protocol for the same address replaces the first.
	f.ok("syslog server add 192.0.2.1:1514 udp")
	if out := f.ok("syslog server list"); strings.Contains(out, "tcp") || !regexp.MustCompile(`192\.0\.2\.1:1514 +udp`).MatchString(out) {
		t.Errorf("protocol change:\n%s", out)
	}
	f.ok("syslog disable")
	if len(h.Remotes()) != 0 {
		t.Error("disabled, still sending")
	}
	if _, err := f.runAs("aud", store.RoleAudit, "syslog server add 192.0.2.9"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("the audit role added a server: %v", err)
	}
}

func TestSyslogAudit(t *testing.T) {
	f, _ := logFixture(t)
	if err := f.env.Files.WriteFile("server.key", []byte("-----BEGIN PRIVATE KEY-----\n"), 0o600, false); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ line, err string }{
		{"syslog audit add server.key", "not an audit file"},
		{"syslog audit add x.bak", ".bak files are backups"},
		{"syslog audit add ../x", "bare file name"},
		{"syslog audit del", "not written to a file"},
	} {
		if _, err := f.run(bad.line); err == nil || !strings.Contains(err.Error(), bad.err) {
			t.Errorf("%s: %v, want %q", bad.line, err, bad.err)
		}
	}
	f.ok("syslog audit add audit.log")
	f.ok("xmpp log level low-level")
	f.ok("syslog audit del")
	f.ok("xmpp log level problems")
	b, err := f.env.Files.ReadFile("audit.log")
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{`user=root from=127.0.0.1 action="syslog audit add audit.log" result="ok"`, `user=root from=127.0.0.1 action="xmpp log level low-level" result="ok"`} {
		if !strings.Contains(got, want) {
			t.Errorf("audit.log has no %s:\n%s", want, got)
		}
	}
	// syslog audit del is audited once it has run: in the node's audit
	// trail, no longer in the file.
	if strings.Contains(got, "level problems") || strings.Contains(got, "audit del") {
		t.Errorf("written after syslog audit del:\n%s", got)
	}
	// Adding it again appends to it.
	f.ok("syslog audit add audit.log")
}
