package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Paper cut 1: a port already in use fails xmpp port with the reason, in
// one line; the listener stays on the previous port; xmpp shows no last
// error once the problem is gone (and xmpp enable clears one that was).
func TestPaperCutPortInUse(t *testing.T) {
	x := startXMPP(t, "example.lan", "alice@example.lan", "Alice-pass-1")
	busy, err := net.Listen("tcp", net.JoinHostPort(x.host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	_, busyPort, _ := net.SplitHostPort(busy.Addr().String())
	mustFail(t, x.admin("xmpp port c2s "+busyPort), "xmpp port c2s on a port in use",
		"xmpp port: the server cannot apply it: listen tcp "+net.JoinHostPort(x.host, busyPort), "address already in use", "the previous setting is kept")
	st := x.status(t)
	if !strings.Contains(st["Ports"], "c2s "+x.c2s+" ") || !strings.Contains(st["Listeners"], net.JoinHostPort(x.host, x.c2s)+" (c2s, STARTTLS)") {
		t.Fatalf("after the refused port change: Ports %q, Listeners %q", st["Ports"], st["Listeners"])
	}
	if st["Last error"] != "none" {
		t.Errorf("Last error %q after the previous port came back", st["Last error"])
	}
	x.login(t, "alice@example.lan", "Alice-pass-1", clientOpts{}).logout(t)
	// An address this machine does not have: the same.
	mustFail(t, x.admin("xmpp listen 192.0.2.10"), "xmpp listen on a foreign address",
		"xmpp listen: the server cannot apply it: listen tcp 192.0.2.10:", "the previous setting is kept")
	if st := x.status(t); st["Listen"] != x.host || st["Last error"] != "none" {
		t.Errorf("after the refused listen address: Listen %q, Last error %q", st["Listen"], st["Last error"])
	}

	// Disabled, the port is only stored; enabling fails with the reason,
	// and once the port is free xmpp enable works and the error is gone.
	mustOK(t, x.admin("xmpp disable"), "xmpp disable")
	mustOK(t, x.admin("xmpp port c2s "+busyPort), "xmpp port c2s while disabled")
	mustFail(t, x.admin("xmpp enable"), "xmpp enable on a port in use", "address already in use")
	if st := x.status(t); !strings.Contains(st["Last error"], "address already in use") {
		t.Errorf("Last error %q while the port is in use", st["Last error"])
	}
	busy.Close()
	mustOK(t, x.admin("xmpp enable"), "xmpp enable once the port is free")
	if st := x.status(t); st["Last error"] != "none" {
		t.Errorf("Last error %q once the problem is gone", st["Last error"])
	}
}

// Paper cut 2: xmpp multi-domain certs replaces a secondary domain's
// certificate live; its users and sessions stay.
func TestPaperCutMultiDomainCerts(t *testing.T) {
	x := startXMPP(t, "example.lan")
	x.mustAdmin(t, "xmpp multi-domain add second.lan")
	x.addAccounts(t, "carol@second.lan", "Carol-pass-333")
	carol := x.login(t, "carol@second.lan", "Carol-pass-333", clientOpts{})
	x.mustAdmin(t, "pki selfsigned second2 CN:second.lan subjectAltName:second.lan days:30")
	out := x.mustAdmin(t, "xmpp multi-domain certs second.lan second2.key second2.crt")
	if !strings.Contains(out, "second.lan now uses key second2.key, certificate second2.crt") {
		t.Fatalf("xmpp multi-domain certs:\n%s", out)
	}
	renewed := x.certFingerprint(t, "second2.crt")
	if c := x.login(t, "carol@second.lan/new", "Carol-pass-333", clientOpts{direct: true, noPresence: true}); c.session.Cert != renewed {
		t.Fatalf("after xmpp multi-domain certs the server presents %s, want second2.crt (%s)", c.session.Cert, renewed)
	}
	carol.ping(t, "")
	carol.none(t, "disconnection after multi-domain certs", func(e *xev) bool { return e.Ev == "stream_error" || e.Ev == "disconnected" })
	if out := x.mustAdmin(t, "xmpp user list second.lan"); !strings.Contains(out, "carol@second.lan") {
		t.Fatalf("carol's account after multi-domain certs:\n%s", out)
	}
}

// Paper cut 4: after xmpp reset the call bridge is kept under its old
// domain, the reset says so, and xmpp and xmpp callbridge list agree.
func TestPaperCutBridgesAfterReset(t *testing.T) {
	x := startXMPP(t, "example.lan")
	x.mustAdmin(t, "xmpp callbridge add cb1")
	out := mustOK(t, x.ssh(x.asAdmin(), "reset\n", "xmpp reset"), "xmpp reset")
	if !strings.Contains(out, "1 call bridge kept with its secret, under a domain no longer hosted: cb1.example.lan.") {
		t.Fatalf("xmpp reset:\n%s", out)
	}
	x.mustAdmin(t, "xmpp domain new.lan")
	if list := x.mustAdmin(t, "xmpp callbridge list"); !strings.Contains(list, "Callbridge : cb1\nDomain     : example.lan\n") {
		t.Fatalf("xmpp callbridge list:\n%s", list)
	}
	if st := x.status(t); !strings.Contains(st["Components"], "cb1.example.lan: not connected; example.lan is not hosted") {
		t.Fatalf("xmpp Components: %q", st["Components"])
	}
}

// Paper cut 5: the files area is flat; OpenSSH's sftp gets permission
// denied for mkdir and for a path into a folder, and the audit trail says
// why.
func TestPaperCutSFTPFlat(t *testing.T) {
	a := start(t, options{})
	local := t.TempDir()
	writeFile(t, local, "x.txt", []byte("x\n"))
	for _, batch := range []string{"mkdir sub\n", "put x.txt ../../etc/x.txt\n", "put x.txt sub/x.txt\n"} {
		r := a.sftp(t, a.asAdmin(), local, batch)
		if r.code == 0 || !strings.Contains(r.stderr, "Permission denied") {
			t.Errorf("sftp %s: %v", strings.TrimSpace(batch), r)
		}
	}
	entries, _ := os.ReadDir(a.filesDir())
	for _, e := range entries {
		if e.IsDir() {
			t.Errorf("a folder in the files area: %s", e.Name())
		}
	}
	if _, err := os.Stat(filepath.Join(a.filesDir(), "etc")); err == nil {
		t.Error("files/etc was created")
	}
	audit := a.mustAdmin(t, "audit 10")
	if !strings.Contains(audit, "sftp put etc/x.txt") || !strings.Contains(audit, "the files area is flat: folders are not allowed") {
		t.Errorf("the audit trail does not say why:\n%s", audit)
	}
	a.put(t, a.asAdmin(), filepath.Join(local, "x.txt"))
}

// Paper cut 6: at a terminal, a password the rules refuse is refused
// before it is asked again; XMPP accounts have their own rule.
func TestPaperCutPasswordRules(t *testing.T) {
	x := startXMPP(t, "example.lan")
	mustOK(t, x.admin("xmpp user rule min_length 10"), "xmpp user rule min_length 10")
	mustFail(t, x.ssh(x.asAdmin(), "Nine-char\n", "xmpp user add bob@example.lan"), "a 9-character XMPP password",
		"use at least 10 characters (xmpp user rule min_length)")
	x.addAccounts(t, "bob@example.lan", "Ten-chars!")
	s := x.interactive(t, x.asAdmin())
	s.expect(t, "> ", screenTimeout)
	s.send("user add carol audit\r")
	s.expect(t, "Password for carol: ", screenTimeout)
	s.send("short\r")
	out := s.expect(t, "(user rule min_length)", screenTimeout)
	if strings.Contains(out, "Retype password") {
		t.Errorf("a refused password was asked for again:\n%s", out)
	}
}

// Paper cut 7: the lock notice is shown once per SSH connection, however
// many password prompts the client makes.
func TestPaperCutLockNoticeOnce(t *testing.T) {
	a := start(t, options{})
	a.addUser(t, "alice", "audit", "Alice-password-1")
	mustOK(t, a.admin("user rule max_failed_logins 1"), "user rule max_failed_logins 1")
	once := from("127.0.0.6", pw("alice", "Wrong-password-1"))
	once.opts = append(once.opts, "-o", "PreferredAuthentications=password", "-o", "NumberOfPasswordPrompts=1")
	loginRefused(t, a.ssh(once, "", "hostname"), "a wrong password")
	kbd := from("127.0.0.6", pw("alice", "Alice-password-1"))
	kbd.opts = append(kbd.opts, "-o", "LogLevel=INFO", "-o", "NumberOfPasswordPrompts=3")
	r := a.ssh(kbd, "", "hostname")
	loginRefused(t, r, "the right password while locked")
	if n := strings.Count(r.stderr, "Password logins for alice from 127.0.0.6 are locked"); n != 1 {
		t.Errorf("the lock notice was shown %d times:\n%s", n, r.stderr)
	}
}
