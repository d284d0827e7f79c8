package e2e

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Issue 3, Shell and Tests: a second domain added live (with a generated
// self-signed certificate, chosen by SNI) serves its users while the first
// domain's clients stay connected; a new certificate for the primary domain
// applies to new connections and drops nobody; a removed domain's sessions
// end with host-gone.
func TestXMPPLiveDomainsAndCertificates(t *testing.T) {
	t.Parallel()
	x := startXMPP(t, "example.lan", "alice@example.lan", "Alice-pass-1", "bob@example.lan", "Bob-pass-22")
	first := x.certFingerprint(t, "example.lan.crt")
	alice := x.login(t, "alice@example.lan", "Alice-pass-1", clientOpts{})

	out := x.mustAdmin(t, "xmpp multi-domain add second.lan")
	for _, want := range []string{"Generated a self-signed certificate for second.lan: second.lan.key and second.lan.crt", "second.lan is now hosted"} {
		if !strings.Contains(out, want) {
			t.Fatalf("xmpp multi-domain add second.lan did not say %q:\n%s", want, out)
		}
	}
	x.addAccounts(t, "carol@second.lan", "Carol-pass-333")
	second := x.certFingerprint(t, "second.lan.crt")
	if second == first {
		t.Fatal("second.lan got the same certificate as example.lan")
	}

	// SNI picks second.lan's certificate, in STARTTLS and in direct TLS.
	carol := x.login(t, "carol@second.lan", "Carol-pass-333", clientOpts{})
	direct := x.login(t, "carol@second.lan", "Carol-pass-333", clientOpts{direct: true, noPresence: true})
	for _, c := range []*xclient{carol, direct} {
		if c.session.Cert != second {
			t.Fatalf("%s: the server presented %s, want second.lan.crt (%s); example.lan.crt is %s", c.name, c.session.Cert, second, first)
		}
	}
	direct.logout(t)

	// An internationalized domain: its certificate files are named by the
	// A-label, and SNI (which carries the A-label) finds it.
	out = x.mustAdmin(t, "xmpp multi-domain add bücher.lan")
	if !strings.Contains(out, "Generated a self-signed certificate for bücher.lan: xn--bcher-kva.lan.key and xn--bcher-kva.lan.crt") {
		t.Fatalf("xmpp multi-domain add bücher.lan:\n%s", out)
	}
	x.addAccounts(t, "dora@bücher.lan", "Dora-pass-4444")
	dora := x.login(t, "dora@bücher.lan", "Dora-pass-4444", clientOpts{direct: true})
	if idn := x.certFingerprint(t, "xn--bcher-kva.lan.crt"); dora.session.Cert != idn {
		t.Fatalf("%s: the server presented %s, want xn--bcher-kva.lan.crt (%s); example.lan.crt is %s", dora.name, dora.session.Cert, idn, first)
	}
	dora.send(t, "carol@second.lan", "from bücher.lan ✓")
	carol.message(t, "dora@bücher.lan", "from bücher.lan ✓")
	dora.logout(t)

	// alice never noticed, and talks to carol across the domains.
	alice.ping(t, "")
	alice.send(t, "carol@second.lan", "hello second.lan ✓")
	carol.message(t, "alice@example.lan", "hello second.lan ✓")
	carol.send(t, "alice@example.lan", "hello example.lan ✓")
	alice.message(t, "carol@second.lan", "hello example.lan ✓")
	alice.none(t, "disconnection", func(e *xev) bool { return e.Ev == "stream_error" || e.Ev == "disconnected" })

	if st := x.status(t); st["Sessions"] != "2 (example.lan 1, second.lan 1)" || !strings.Contains(st["Domains"], "second.lan: key second.lan.key, certificate second.lan.crt") {
		t.Fatalf("xmpp status with one session in each domain: %v", st)
	}
	if out := x.mustAdmin(t, "xmpp multi-domain list"); !strings.Contains(out, "second.lan") || !strings.Contains(out, "example.lan (primary)") {
		t.Fatalf("xmpp multi-domain list:\n%s", out)
	}

	// A new certificate for example.lan: alice's session stays, new
	// connections get it.
	x.mustAdmin(t, "pki selfsigned renewed CN:example.lan subjectAltName:example.lan days:30")
	out = x.mustAdmin(t, "xmpp certs renewed.key renewed.crt")
	if !strings.Contains(out, "example.lan now uses key renewed.key, certificate renewed.crt") {
		t.Fatalf("xmpp certs:\n%s", out)
	}
	renewed := x.certFingerprint(t, "renewed.crt")
	bob := x.login(t, "bob@example.lan", "Bob-pass-22", clientOpts{direct: true})
	other := x.login(t, "alice@example.lan", "Alice-pass-1", clientOpts{noPresence: true})
	for _, c := range []*xclient{bob, other} {
		if c.session.Cert != renewed {
			t.Fatalf("%s after xmpp certs: the server presented %s, want renewed.crt (%s)", c.name, c.session.Cert, renewed)
		}
	}
	other.logout(t)
	alice.ping(t, "")
	alice.send(t, "bob@example.lan", "after the new certificate")
	bob.message(t, "alice@example.lan", "after the new certificate")
	alice.none(t, "disconnection after xmpp certs", func(e *xev) bool { return e.Ev == "stream_error" || e.Ev == "disconnected" })
	// A certificate that does not name the domain is refused; nothing changes.
	x.mustAdmin(t, "pki selfsigned wrongname CN:other.lan subjectAltName:other.lan")
	mustFail(t, x.admin("xmpp certs wrongname.key wrongname.crt"), "xmpp certs with a certificate for other.lan", "example.lan")
	if c := x.login(t, "bob@example.lan", "Bob-pass-22", clientOpts{noPresence: true}); c.session.Cert != renewed {
		t.Fatalf("after a refused xmpp certs the server presents %s, want renewed.crt", c.session.Cert)
	}

	// Removing second.lan ends carol's session; example.lan's stay.
	x.mustAdmin(t, "xmpp multi-domain del second.lan")
	carol.disconnected(t, "host-gone")
	alice.ping(t, "")
	bob.ping(t, "")
}

// Issue 3, Shell: accounts change live. A new password applies at the next
// login; a deleted account's session ends at once; a CSV import creates
// accounts that can log in.
func TestXMPPLiveAccounts(t *testing.T) {
	t.Parallel()
	x := startXMPP(t, "example.lan", "alice@example.lan", "Alice-pass-1", "bob@example.lan", "Bob-pass-22")
	alice := x.login(t, "alice@example.lan", "Alice-pass-1", clientOpts{})
	bob := x.login(t, "bob@example.lan", "Bob-pass-22", clientOpts{})

	list := x.mustAdmin(t, "xmpp user list")
	if !matches(`(?m)^alice@example\.lan\s+\d{4}-\d\d-\d\d \d\d:\d\d\s+yes \(1\)\s+local$`, list) || !matches(`(?m)^bob@example\.lan\s.*yes \(1\)\s+local$`, list) {
		t.Fatalf("xmpp user list while both are online:\n%s", list)
	}

	// passwd: the old password fails, the new one works.
	out := mustOK(t, x.ssh(x.asAdmin(), "Bob-new-pass-3\n", "xmpp user passwd bob@example.lan"), "xmpp user passwd")
	if !strings.Contains(out, "Password changed for bob@example.lan") {
		t.Fatalf("xmpp user passwd:\n%s", out)
	}
	x.loginFails(t, "bob@example.lan", "Bob-pass-22", clientOpts{})
	x.login(t, "bob@example.lan", "Bob-new-pass-3", clientOpts{direct: true, noPresence: true}).logout(t)
	bob.ping(t, "")

	// del: alice is disconnected at once, and cannot log in again.
	if out := x.mustAdmin(t, "xmpp user del alice@example.lan"); !strings.Contains(out, "Deleted alice@example.lan") {
		t.Fatalf("xmpp user del:\n%s", out)
	}
	alice.disconnected(t, "not-authorized")
	x.loginFails(t, "alice@example.lan", "Alice-pass-1", clientOpts{})
	bob.send(t, "alice@example.lan", "are you there?")
	if e := bob.wait(t, "an error for a message to a deleted account", func(e *xev) bool { return e.Ev == "message_error" }); e.Condition != "service-unavailable" {
		t.Fatalf("a message to a deleted account: %s, want service-unavailable", e.line)
	}

	// import: 46 good lines, a header, a blank line, six bad lines and one
	// account that exists.
	var csv strings.Builder
	csv.WriteString("jid,password\r\n")
	for i := 1; i <= 46; i++ {
		fmt.Fprintf(&csv, "user%02d@example.lan,Import-pass-%02d\r\n", i, i)
		if i == 20 {
			csv.WriteString("\r\n")
		}
	}
	bad := []string{
		"no comma on this line",
		"bad@@example.lan,Bad-pass-123",
		"eve@unknown.lan,Eve-pass-123",
		"user01@example.lan,Dup-pass-999",
		"short@example.lan,abc",
		"nopass@example.lan,",
	}
	for _, l := range bad {
		csv.WriteString(l + "\r\n")
	}
	csv.WriteString("bob@example.lan,Other-pass-123\r\n")
	local := t.TempDir()
	x.put(t, x.asAdmin(), writeFile(t, local, "users.csv", []byte(csv.String())))
	out = x.mustAdmin(t, "xmpp user import users.csv")
	if !strings.Contains(out, "created 46, skipped 1 (already exist), rejected 6\n") {
		t.Fatalf("xmpp user import users.csv: want 46 created, 1 skipped, 6 rejected:\n%s", out)
	}
	// Lines: 1 header, 2–21 users 1–20, 22 blank, 23–48 users 21–46, then the bad ones.
	for i, why := range []string{"no comma", "bad@@example.lan", "unknown.lan is not a hosted domain", "user01@example.lan is also on line 2", "too short", "no password"} {
		want := fmt.Sprintf("line %d: ", 49+i)
		if !matches(`(?m)^`+want+`.*`+regexp.QuoteMeta(why), out) {
			t.Fatalf("xmpp user import: no line saying %q%s…:\n%s", want, why, out)
		}
	}
	rows := strings.Count(x.mustAdmin(t, "xmpp user list example.lan"), "@example.lan")
	if rows != 47 {
		t.Fatalf("xmpp user list example.lan after the import: %d accounts, want 47 (bob and 46 imported)", rows)
	}
	u := x.login(t, "user33@example.lan", "Import-pass-33", clientOpts{direct: true})
	u.send(t, "bob@example.lan", "imported and online ✓")
	bob.message(t, "user33@example.lan", "imported and online ✓")
	// Running it again creates nothing (resumable import).
	if out := x.mustAdmin(t, "xmpp user import users.csv"); !strings.Contains(out, "created 0, skipped 47 (already exist), rejected 6") {
		t.Fatalf("xmpp user import, again:\n%s", out)
	}
}

// Issue 3, Shell and Protocol: xmpp max-sessions refuses sessions over the
// limit (resource-constraint), xmpp shows the sessions, xmpp disable ends
// every session with system-shutdown and closes the listeners, xmpp enable
// brings the service back.
func TestXMPPLiveServiceControl(t *testing.T) {
	t.Parallel()
	x := startXMPP(t, "example.lan", "alice@example.lan", "Alice-pass-1", "bob@example.lan", "Bob-pass-22")
	if st := x.status(t); st["Sessions"] != "0" || !strings.HasPrefix(st["State"], "enabled, running since ") {
		t.Fatalf("xmpp with nobody connected: %v", st)
	}
	alice := x.login(t, "alice@example.lan", "Alice-pass-1", clientOpts{})
	if st := x.status(t); st["Sessions"] != "1 (example.lan 1)" {
		t.Fatalf("xmpp with alice connected: Sessions %q, want 1 (example.lan 1)", st["Sessions"])
	}

	x.mustAdmin(t, "xmpp max-sessions 1")
	if st := x.status(t); st["Max sessions"] != "1" {
		t.Fatalf("xmpp after max-sessions 1: %v", st)
	}
	if cond := x.rawDial(t, "example.lan").streamError(); cond != "resource-constraint" {
		t.Fatalf("a stream over the session limit ended with %q, want resource-constraint", cond)
	}
	over := x.client(t, "bob@example.lan", "Bob-pass-22", clientOpts{})
	over.disconnected(t, "resource-constraint")
	alice.ping(t, "") // the session already open stays

	x.mustAdmin(t, "xmpp max-sessions none")
	bob := x.login(t, "bob@example.lan", "Bob-pass-22", clientOpts{direct: true})
	raw := x.rawDial(t, "example.lan")
	raw.login("bob", "Bob-pass-22", "raw")
	if st := x.status(t); st["Sessions"] != "3 (example.lan 3)" {
		t.Fatalf("xmpp with three sessions: Sessions %q, want 3 (example.lan 3)", st["Sessions"])
	}
	if out := x.mustAdmin(t, "xmpp user list"); !matches(`(?m)^bob@example\.lan\s.*yes \(2\)\s+local$`, out) {
		t.Fatalf("xmpp user list with bob connected twice:\n%s", out)
	}

	out := x.mustAdmin(t, "xmpp disable")
	if !strings.Contains(out, "XMPP disabled") {
		t.Fatalf("xmpp disable:\n%s", out)
	}
	if cond := raw.streamError(); cond != "system-shutdown" {
		t.Fatalf("xmpp disable ended a raw session with %q, want system-shutdown", cond)
	}
	alice.disconnected(t, "system-shutdown")
	bob.disconnected(t, "system-shutdown")
	st := x.status(t)
	if st["State"] != "disabled, not running" || st["Sessions"] != "0" || st["Listeners"] != "none" {
		t.Fatalf("xmpp after xmpp disable: %v", st)
	}
	refused(t, x.host, x.c2s)
	refused(t, x.host, x.c2sTLS)

	out = x.mustAdmin(t, "xmpp enable")
	if !strings.Contains(out, "XMPP enabled: listening on ") || !strings.Contains(out, net.JoinHostPort(x.host, x.c2sTLS)) {
		t.Fatalf("xmpp enable:\n%s", out)
	}
	alice = x.login(t, "alice@example.lan", "Alice-pass-1", clientOpts{direct: true})
	alice.ping(t, "")
	if st := x.status(t); st["Sessions"] != "1 (example.lan 1)" || !strings.HasPrefix(st["State"], "enabled, running since ") {
		t.Fatalf("xmpp after xmpp enable and a login: %v", st)
	}

	// Stopping the appliance tells connected clients (system-shutdown);
	// the service stays as set across the restart: enabled, no limit.
	x.restart()
	alice.disconnected(t, "system-shutdown")
	x.login(t, "bob@example.lan", "Bob-pass-22", clientOpts{}).ping(t, "")
}

// matches reports whether s matches the regular expression pattern.
func matches(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// Issue 3, Shell: listeners follow xmpp port and xmpp listen at once, and
// xmpp client_auth_timeout closes a stream that does not authenticate in
// time (connection-timeout).
func TestXMPPLiveListenersAndAuthTimeout(t *testing.T) {
	t.Parallel()
	x := startXMPP(t, "example.lan", "alice@example.lan", "Alice-pass-1")

	// A new direct TLS port: the old one closes, the new one serves.
	old := x.c2sTLS
	x.c2sTLS = portOn(t, x.host)
	x.mustAdmin(t, "xmpp port c2s-tls "+x.c2sTLS)
	refused(t, x.host, old)
	x.login(t, "alice@example.lan", "Alice-pass-1", clientOpts{direct: true}).ping(t, "")
	if st := x.status(t); !strings.Contains(st["Listeners"], net.JoinHostPort(x.host, x.c2sTLS)+" (c2s-tls, direct TLS)") || strings.Contains(st["Listeners"], ":"+old+" ") {
		t.Fatalf("xmpp after xmpp port c2s-tls %s: %v", x.c2sTLS, st)
	}

	// Another address: the old one closes, the new one serves.
	oldHost := x.host
	x.host = newLoopback(t)
	x.mustAdmin(t, "xmpp listen "+x.host)
	refused(t, oldHost, x.c2s)
	refused(t, oldHost, x.c2sTLS)
	x.login(t, "alice@example.lan", "Alice-pass-1", clientOpts{}).ping(t, "")

	// A stream that does not authenticate within 5 seconds is closed.
	x.mustAdmin(t, "xmpp client_auth_timeout 5")
	if st := x.status(t); st["Client auth timeout"] != "5 seconds" {
		t.Fatalf("xmpp after client_auth_timeout 5: %v", st)
	}
	began := time.Now()
	r := x.rawDial(t, "example.lan")
	r.mustRead("</stream:features>")
	if cond := r.streamError(); cond != "connection-timeout" {
		t.Fatalf("an unauthenticated stream ended with %q, want connection-timeout", cond)
	}
	if took := time.Since(began); took < 4*time.Second || took > 10*time.Second {
		t.Fatalf("the unauthenticated stream was closed after %v, want about 5 s", took)
	}
}

// refused fails the test unless nothing accepts connections on host:port.
func refused(t *testing.T, host, port string) {
	t.Helper()
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), 2*time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections", net.JoinHostPort(host, port))
	}
}
