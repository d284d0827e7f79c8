package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The syslog tests' own loopback addresses (127.0.22.x: nobody else's).
var syslogLoopback atomic.Int32

func syslogHost(t *testing.T) string {
	n := syslogLoopback.Add(1)
	if n > 40 {
		t.Fatal("out of syslog test loopback addresses")
	}
	return fmt.Sprintf("127.0.22.%d", 10+n)
}

// startSyslogXMPP is startXMPPOn on a loopback address of the syslog tests.
func startSyslogXMPP(t *testing.T, o options, domain string, accounts ...string) *xmppAppliance {
	t.Helper()
	return startXMPPOn(t, o, syslogHost(t), domain, accounts...)
}

// syslogLines is what `syslog 2000` shows.
func (x *xmppAppliance) syslogLines(t *testing.T) string {
	t.Helper()
	return x.mustAdmin(t, "syslog 2000")
}

// failLogin runs a client with a wrong password and waits for the refusal.
func (x *xmppAppliance) failLogin(t *testing.T, jid, password string) {
	t.Helper()
	c := x.client(t, jid, password, clientOpts{mech: "PLAIN"})
	c.wait(t, "the refused login", func(e *xev) bool { return e.Ev == "failed_auth" || e.Ev == "failed_all_auth" })
	c.stdin.Close()
}

// TestSyslogLevelsLive: `xmpp log level` changes what is logged at once,
// without a restart: at the default (problems) logins and failed logins
// are logged with the account, the mechanism and the XMPPI tag, never the
// password; at major the failures go; at all every stanza is logged with
// its body hidden until `xmpp log bodies on`; none logs nothing. The log
// file in the data directory and the process's standard error have the
// same lines as `syslog`.
func TestSyslogLevelsLive(t *testing.T) {
	const (
		alicePW = "alice-Pa55-word"
		wrongPW = "Not-Alice-Pa55"
		body    = "a body nobody may read"
	)
	x := startSyslogXMPP(t, options{hostname: "logs1"}, "logs.lan", "alice@logs.lan", alicePW, "bob@logs.lan", "bob-password-1")
	if out := x.mustAdmin(t, "xmpp log level"); out != "Log level: problems (the default)\n" {
		t.Fatalf("xmpp log level: %q", out)
	}
	loginRE := func(user, mech string) *regexp.Regexp {
		return regexp.MustCompile(`(?m)^\S+ MAJOR (XMPPI-\d+) 127\.0\.0\.1:\d+ c2s: ` + regexp.QuoteMeta(user) + ` logged in with ` + mech + `$`)
	}
	failRE := regexp.MustCompile(`(?m)^\S+ PROBLEM XMPPI-\d+ 127\.0\.0\.1:\d+ c2s: login failed for alice@logs\.lan with PLAIN: not-authorized$`)

	alice := x.login(t, "alice@logs.lan/desk", alicePW, clientOpts{mech: "SCRAM-SHA-256"})
	bob := x.login(t, "bob@logs.lan/phone", "bob-password-1", clientOpts{mech: "PLAIN"})
	x.failLogin(t, "alice@logs.lan/x", wrongPW)
	var out string
	waitUntil(t, "the logins in syslog", func() bool {
		out = x.syslogLines(t)
		return failRE.MatchString(out)
	})
	if !loginRE("alice@logs.lan", "SCRAM-SHA-256").MatchString(out) || !loginRE("bob@logs.lan", "PLAIN").MatchString(out) {
		t.Errorf("syslog has no login lines for alice (SCRAM-SHA-256) and bob (PLAIN):\n%s", out)
	}
	if strings.Contains(out, " LOW ") || strings.Contains(out, " ALL ") {
		t.Errorf("records under the default level:\n%s", out)
	}

	// major: a failed login is no longer logged; a login is.
	mustOK(t, x.admin("xmpp log level major"), "xmpp log level major")
	before := strings.Count(x.syslogLines(t), "login failed")
	x.failLogin(t, "alice@logs.lan/y", wrongPW)
	carol := x.login(t, "bob@logs.lan/tablet", "bob-password-1", clientOpts{mech: "SCRAM-SHA-1"})
	waitUntil(t, "the SCRAM-SHA-1 login in syslog", func() bool {
		out = x.syslogLines(t)
		return loginRE("bob@logs.lan", "SCRAM-SHA-1").MatchString(out)
	})
	if n := strings.Count(out, "login failed"); n != before {
		t.Errorf("at level major a failed login was logged (%d before, %d after):\n%s", before, n, out)
	}
	carol.logout(t)

	// all: every stanza, text hidden; then bodies on.
	mustOK(t, x.admin("xmpp log level all"), "xmpp log level all")
	aliceTag := loginRE("alice@logs.lan", "SCRAM-SHA-256").FindStringSubmatch(out)[1]
	alice.send(t, "bob@logs.lan", body)
	bob.message(t, "alice@logs.lan", body)
	stanzaRE := regexp.MustCompile(`(?m)^\S+ ALL ` + aliceTag + ` \S+ stanza in: <message [^\n]*<body>\[hidden\]</body>`)
	waitUntil(t, "alice's message in syslog", func() bool {
		out = x.syslogLines(t)
		return stanzaRE.MatchString(out)
	})
	if strings.Contains(out, body) {
		t.Errorf("a body was logged with bodies off:\n%s", out)
	}
	out = x.mustAdmin(t, "xmpp log bodies on")
	if out != "Message bodies in the log: on\n" {
		t.Errorf("xmpp log bodies on: %q", out)
	}
	alice.send(t, "bob@logs.lan", body+" 2")
	bob.message(t, "alice@logs.lan", body+" 2")
	waitUntil(t, "the body in syslog", func() bool {
		return strings.Contains(x.syslogLines(t), "<body>"+body+" 2</body>")
	})
	x.failLogin(t, "alice@logs.lan/z", wrongPW) // at all, with bodies on

	// none: nothing at all.
	mustOK(t, x.admin("xmpp log level none"), "xmpp log level none")
	n := len(strings.Split(x.syslogLines(t), "\n"))
	alice.send(t, "bob@logs.lan", "quiet")
	bob.message(t, "alice@logs.lan", "quiet")
	x.failLogin(t, "alice@logs.lan/w", wrongPW)
	if m := len(strings.Split(x.syslogLines(t), "\n")); m != n {
		t.Errorf("level none: %d lines before, %d after", n, m)
	}
	mustOK(t, x.admin("xmpp log level problems"), "xmpp log level problems")

	// The same lines in the log file and on standard error; the
	// passwords nowhere.
	file, err := os.ReadFile(filepath.Join(x.dataDir, "log", "parley.log"))
	if err != nil {
		t.Fatal(err)
	}
	stderr := x.stderr.String()
	for _, where := range []struct{ name, text string }{{"syslog", x.syslogLines(t)}, {"log/parley.log", string(file)}, {"stderr", stderr}} {
		if !failRE.MatchString(where.text) || !loginRE("alice@logs.lan", "SCRAM-SHA-256").MatchString(where.text) || !stanzaRE.MatchString(where.text) {
			t.Errorf("%s lacks the login, failure or stanza lines:\n%s", where.name, where.text)
		}
		for _, secret := range []string{alicePW, wrongPW, "bob-password-1"} {
			if strings.Contains(where.text, secret) {
				t.Errorf("%s holds the password %q", where.name, secret)
			}
		}
	}
	// The level is this node's setting, kept across a restart.
	mustOK(t, x.admin("xmpp log level low-level"), "xmpp log level low-level")
	x.restart()
	if out := x.mustAdmin(t, "xmpp log level"); out != "Log level: low-level\n" {
		t.Errorf("after a restart: %q", out)
	}
	if !strings.Contains(x.mustAdmin(t, "audit"), "xmpp log level low-level") {
		t.Error("xmpp log level is not in the audit trail")
	}
}

// rsyslog is a Debian rsyslogd run by the test on a loopback address, with
// a TCP and a UDP input, writing each record's RFC 5424 fields as rsyslog
// parsed them to a file.
type rsyslog struct {
	host, tcpPort, udpPort string
	out                    string
	cmd                    *exec.Cmd
}

const rsyslogdBin = "/usr/sbin/rsyslogd"

func startRsyslog(t *testing.T) *rsyslog {
	t.Helper()
	if _, err := os.Stat(rsyslogdBin); err != nil {
		t.Fatalf("%s is missing: install the Debian package rsyslog (apt-get install rsyslog, or make deps)", rsyslogdBin)
	}
	dir := t.TempDir()
	r := &rsyslog{host: syslogHost(t), out: filepath.Join(dir, "received.log")}
	r.tcpPort = portOn(t, r.host)
	l, err := net.ListenPacket("udp", net.JoinHostPort(r.host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	_, r.udpPort, _ = net.SplitHostPort(l.LocalAddr().String())
	l.Close()
	conf := fmt.Sprintf(`global(workDirectory=%q)
module(load="imtcp")
module(load="imudp")
input(type="imtcp" address=%q port=%q)
input(type="imudp" address=%q port=%q)
template(name="fields" type="string" string="via=%%inputname%% host=%%hostname%% app=%%app-name%% msgid=%%msgid%% pri=%%pri%% sd=%%structured-data%% msg=%%msg%%\n")
if $app-name == "parley" then action(type="omfile" file=%q template="fields")
`, dir, r.host, r.tcpPort, r.host, r.udpPort, r.out)
	confFile := writeFile(t, dir, "rsyslog.conf", []byte(conf))
	if out, err := exec.Command(rsyslogdBin, "-N1", "-f", confFile).CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd refuses the configuration: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	r.cmd = exec.CommandContext(ctx, rsyslogdBin, "-n", "-f", confFile, "-i", filepath.Join(dir, "rsyslogd.pid"))
	logs := &syncBuffer{}
	r.cmd.Stdout, r.cmd.Stderr = logs, logs
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { r.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			r.cmd.Process.Kill()
			<-done
		}
		cancel()
	})
	waitUntil(t, "rsyslogd to listen", func() bool {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(r.host, r.tcpPort), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return r
}

func (r *rsyslog) received() string {
	b, _ := os.ReadFile(r.out)
	return string(b)
}

// TestSyslogRemoteRsyslog: with two servers added (TCP and UDP) and syslog
// enabled, a client's login reaches a real rsyslogd as an RFC 5424 record
// that rsyslog parses into the appliance's host name, APP-NAME parley,
// MSGID XMPPI and the connection's structured data; syslog server list
// shows both connected; after syslog disable nothing more arrives.
func TestSyslogRemoteRsyslog(t *testing.T) {
	rs := startRsyslog(t)
	x := startSyslogXMPP(t, options{hostname: "xmpp-node1"}, "remote.lan", "alice@remote.lan", "alice-password-1")
	tcp := net.JoinHostPort(rs.host, rs.tcpPort)
	udp := net.JoinHostPort(rs.host, rs.udpPort)
	out := x.mustAdmin(t, "syslog server add "+tcp+" tcp")
	if out != "Syslog server "+tcp+" tcp added. Records are sent once you say: syslog enable\n" {
		t.Errorf("syslog server add: %q", out)
	}
	x.mustAdmin(t, "syslog server add "+udp)
	mustFail(t, x.admin("syslog server add "+tcp+" tcp"), "adding a server twice", "already a server")
	mustFail(t, x.admin("syslog server add "+rs.host+":70000"), "a bad port", "port must be a number from 1 to 65535")
	if out := x.mustAdmin(t, "syslog enable"); out != "Remote syslog enabled: sending to 2 servers.\n" {
		t.Errorf("syslog enable: %q", out)
	}
	x.login(t, "alice@remote.lan/desk", "alice-password-1", clientOpts{mech: "SCRAM-SHA-256"})
	want := func(via string) *regexp.Regexp {
		return regexp.MustCompile(`(?m)^via=` + via + ` host=xmpp-node1 app=parley msgid=XMPPI pri=29 sd=\[conn@32473 id="\d+" peer="127\.0\.0\.1:\d+"\] msg=c2s: alice@remote\.lan logged in with SCRAM-SHA-256$`)
	}
	var got string
	waitUntil(t, "the login record at rsyslog over TCP and UDP", func() bool {
		got = rs.received()
		return want("imtcp").MatchString(got) && want("imudp").MatchString(got)
	})
	t.Logf("rsyslog received:\n%s", got)
	list := x.mustAdmin(t, "syslog server list")
	for _, re := range []string{`Remote syslog : enabled`, regexp.QuoteMeta(tcp) + ` +tcp +connected +[1-9]`, regexp.QuoteMeta(udp) + ` +udp +connected +[1-9]`} {
		if !regexp.MustCompile(re).MatchString(list) {
			t.Errorf("syslog server list has no %s:\n%s", re, list)
		}
	}
	// A bad password is a warning (4): PRI 28, with the account.
	x.failLogin(t, "alice@remote.lan/x", "wrong-password-1")
	waitUntil(t, "the failed login at rsyslog", func() bool {
		return regexp.MustCompile(`(?m)^via=imtcp host=xmpp-node1 app=parley msgid=XMPPI pri=28 sd=\[conn@32473 [^\n]* msg=c2s: login failed for alice@remote\.lan with PLAIN: not-authorized$`).MatchString(rs.received())
	})

	// Disabled: nothing more is sent.
	x.mustAdmin(t, "syslog disable")
	n := strings.Count(rs.received(), "\n")
	x.login(t, "alice@remote.lan/later", "alice-password-1", clientOpts{mech: "PLAIN"})
	waitUntil(t, "the later login in syslog", func() bool {
		return strings.Contains(x.mustAdmin(t, "syslog"), "alice@remote.lan logged in with PLAIN")
	})
	time.Sleep(500 * time.Millisecond)
	if m := strings.Count(rs.received(), "\n"); m != n {
		t.Errorf("records sent after syslog disable: %d more", m-n)
	}
	// Deleted servers are gone; a node's servers are its own settings.
	x.mustAdmin(t, "syslog server del "+rs.host)
	if out := x.mustAdmin(t, "syslog server list"); !strings.Contains(out, "No syslog servers") {
		t.Errorf("after del:\n%s", out)
	}
	if rs.cmd.ProcessState != nil {
		t.Fatalf("rsyslogd exited: %v", rs.cmd.ProcessState)
	}
}

// TestSyslogFollowAndAudit: `syslog follow` at a terminal shows a login as
// it happens and stops at Ctrl-C, back to the prompt; in exec mode it runs
// until the SSH session ends. `syslog audit add` writes the audit trail to
// a file downloadable by SFTP.
func TestSyslogFollowAndAudit(t *testing.T) {
	x := startSyslogXMPP(t, options{hostname: "follow1"}, "follow.lan", "alice@follow.lan", "alice-password-1")
	s := x.interactive(t, x.asAdmin())
	s.expect(t, "follow1> ", screenTimeout)
	s.send("syslog follow\r")
	s.expect(t, "Following the log at level problems: Ctrl-C or Enter stops.", screenTimeout)
	x.login(t, "alice@follow.lan/desk", "alice-password-1", clientOpts{mech: "SCRAM-SHA-256"})
	s.expect(t, "c2s: alice@follow.lan logged in with SCRAM-SHA-256", screenTimeout)
	s.send("\x03")
	s.expect(t, "follow1> ", screenTimeout)
	if out := s.command(t, "syslog 1", "follow1> "); !strings.Contains(out, "alice@follow.lan logged in") {
		t.Errorf("the shell after Ctrl-C: %q", out)
	}

	// Exec mode: until the session ends.
	args := x.clientOptions(x.asAdmin())
	args = append(args, "-T", "-p", x.port, "admin@127.0.0.1", "syslog follow")
	cmd := exec.Command(sshBin, args...)
	cmd.Env = clientEnv(x.asAdmin())
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	waitUntil(t, "syslog follow in exec mode to start", func() bool { return strings.Contains(out.String(), "until the session ends") })
	x.login(t, "alice@follow.lan/phone", "alice-password-1", clientOpts{mech: "PLAIN"})
	waitUntil(t, "the login in syslog follow (exec mode)", func() bool {
		return strings.Contains(out.String(), "c2s: alice@follow.lan logged in with PLAIN")
	})
	select {
	case <-exited:
		t.Fatalf("syslog follow ended by itself:\n%s", out)
	default:
	}

	// The audit file.
	x.mustAdmin(t, "syslog audit add audit.log")
	x.mustAdmin(t, "xmpp log level low-level")
	if out := x.mustAdmin(t, "syslog server list"); !strings.Contains(out, "Audit file    : audit.log") {
		t.Errorf("syslog server list:\n%s", out)
	}
	dir := t.TempDir()
	x.get(t, x.asAdmin(), dir, "audit.log")
	b, err := os.ReadFile(filepath.Join(dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^\S+Z user=admin from=127\.0\.0\.1 action="xmpp log level low-level" result="ok"$`).Match(b) {
		t.Errorf("audit.log:\n%s", b)
	}
	mustFail(t, x.admin("syslog audit add follow.lan.key"), "the domain's key as audit file", "is not an audit file")

	// syslog page at a terminal: a page, a prompt, q back to the shell.
	for i := 0; i < 3; i++ {
		x.login(t, fmt.Sprintf("alice@follow.lan/p%d", i), "alice-password-1", clientOpts{mech: "PLAIN"}).logout(t)
	}
	total := strings.Count(x.mustAdmin(t, "syslog 2000"), "\n")
	if total <= 22 {
		t.Fatalf("only %d lines in the log", total)
	}
	p := x.interactive(t, x.asAdmin())
	p.expect(t, "follow1> ", screenTimeout)
	p.send("syslog page\r")
	page := plain(p.expect(t, "-- 22 of ", screenTimeout))
	if n := strings.Count(page, "\n"); n < 22 || n > 23 {
		t.Errorf("the first page has %d lines:\n%s", n, page)
	}
	p.expect(t, "lines: Enter for more, q to stop --", screenTimeout)
	p.send("q\r")
	p.expect(t, "follow1> ", screenTimeout)
	// In exec mode: every line, no prompt.
	if out := x.mustAdmin(t, "syslog page"); strings.Contains(out, "Enter for more") || strings.Count(out, "\n") < total {
		t.Errorf("syslog page in exec mode (%d lines before):\n%s", total, out)
	}
}
