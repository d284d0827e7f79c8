package e2e

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// Issue item 7: hostname, version, uptime and health.
func TestSystemCommands(t *testing.T) {
	t.Parallel()
	a := start(t, options{hostname: "box1"})

	t.Run("Hostname", func(t *testing.T) {
		if got := a.mustAdmin(t, "hostname"); got != "box1\n" {
			t.Fatalf("hostname: %q", got)
		}
		mustOK(t, a.admin("hostname xmpp1.example.com"), "hostname xmpp1.example.com")
		if got := a.mustAdmin(t, "hostname"); got != "xmpp1.example.com\n" {
			t.Fatalf("hostname after the change: %q", got)
		}
		mustFail(t, a.admin("hostname bad_name!"), "an invalid host name", "not a valid host name")
		if got := a.mustAdmin(t, "hostname"); got != "xmpp1.example.com\n" {
			t.Fatalf("an invalid host name changed it to %q", got)
		}
	})

	t.Run("Version", func(t *testing.T) {
		bin, err := exec.Command(parleyBin, "version").Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := a.mustAdmin(t, "version"); got != string(bin) || !strings.HasPrefix(got, "Parley ") {
			t.Fatalf("version in the shell %q, parley version %q", got, bin)
		}
	})

	t.Run("Uptime", func(t *testing.T) {
		got := a.mustAdmin(t, "uptime")
		if !regexp.MustCompile(`^up 00:00:\d\d, since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n$`).MatchString(got) {
			t.Fatalf("uptime: %q", got)
		}
	})

	t.Run("Health", func(t *testing.T) {
		got := a.mustAdmin(t, "health")
		for _, re := range []string{
			`(?m)^OK +store +consistent, schema \d+$`,
			`(?m)^OK +files area +writable`,
			`(?m)^OK +certificates +none in the files area$`,
		} {
			if !regexp.MustCompile(re).MatchString(got) {
				t.Fatalf("health does not match %s:\n%s", re, got)
			}
		}
		// A certificate expiring soon is a warning, not a failure.
		a.mustAdmin(t, "pki selfsigned soon CN:soon.example.com days:10")
		a.mustAdmin(t, "pki selfsigned later CN:later.example.com days:365")
		got = a.mustAdmin(t, "health")
		if !regexp.MustCompile(`(?m)^WARN +certificate soon\.crt +expires \d{4}-\d\d-\d\d \(in \d+ days\)$`).MatchString(got) {
			t.Fatalf("health does not warn of soon.crt:\n%s", got)
		}
		if strings.Contains(got, "later.crt") || strings.Contains(got, "FAIL") {
			t.Fatalf("health:\n%s", got)
		}
	})
}

// Issue item 7: the audit trail says who did what, and never holds secrets.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	a := start(t, options{})
	const davePassword = "Dave-Audit-Secret-9"
	const coraPassword = "Cora-Audit-Secret-8"
	a.addUser(t, "dave", "audit", davePassword)
	mustOK(t, a.ssh(a.asAdmin(), "user add cora crypto\n"+coraPassword+"\nhostname audited\n", ""), "script")
	mustFail(t, a.ssh(a.asAdmin(), "Another-Secret-7\n", "user add dave audit"), "user add of an existing user", "already exists")
	mustOK(t, a.ssh(pw("cora", coraPassword), "", "pki selfsigned cora CN:cora.example.com"), "cora makes a certificate")
	mustOK(t, a.ssh(pw("cora", coraPassword), coraPassword+"\nCora-New-Secret-6\n", "passwd"), "cora changes her password")
	mustFail(t, a.ssh(pw("dave", davePassword), "", "hostname nope"), "dave tries to change the hostname", "permission denied")
	mustOK(t, a.ssh(pw("dave", davePassword), "", "pki list"), "dave reads")

	out := mustOK(t, a.ssh(pw("dave", davePassword), "", "audit 100"), "audit as the audit role")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if strings.Join(strings.Fields(lines[0]), " ") != "TIME USER FROM ACTION RESULT" {
		t.Fatalf("audit header: %q", lines[0])
	}
	entry := func(user, action, result string) {
		t.Helper()
		re := regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ +` + regexp.QuoteMeta(user) + ` +127\.0\.0\.1 +` +
			regexp.QuoteMeta(action) + ` +` + regexp.QuoteMeta(result))
		if !re.MatchString(out) {
			t.Fatalf("the audit trail has no entry %q by %s with result %q:\n%s", action, user, result, out)
		}
	}
	entry("admin", "user add dave audit", "ok")
	entry("admin", "user add cora crypto", "ok")
	entry("admin", "hostname audited", "ok")
	entry("admin", "user add dave audit", "failed: user add: user dave already exists")
	entry("cora", "pki selfsigned cora CN:cora.example.com", "ok")
	entry("cora", "passwd", "ok")
	for _, s := range []string{davePassword, coraPassword, "Cora-New-Secret-6", "Another-Secret-7", "argon2"} {
		if strings.Contains(out, s) {
			t.Fatalf("the audit output holds the secret %q:\n%s", s, out)
		}
	}
	// Reading changes nothing, so it is not audited.
	if strings.Contains(out, "pki list") {
		t.Fatalf("a read-only command was audited:\n%s", out)
	}
}
