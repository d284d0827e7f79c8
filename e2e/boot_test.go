package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Issue item 1: the appliance starts, says how to log in, and keeps its
// ed25519 host key across restarts.
func TestBootPrintsLoginAndKeepsHostKey(t *testing.T) {
	t.Parallel()
	a := start(t, options{hostname: "box1"})

	out := a.stdout.String()
	if want := "Log in with:\n  ssh -p " + a.port + " admin@127.0.0.1\n"; !strings.Contains(out, want) {
		t.Fatalf("boot output does not say how to log in (%q); it is:\n%s", want, out)
	}
	if strings.Contains(out, "First boot") {
		t.Fatalf("with --admin-password-file no password may be generated or printed; boot output:\n%s", out)
	}

	keyFile := filepath.Join(a.dataDir, "ssh_host_ed25519_key")
	st, err := os.Stat(keyFile)
	if err != nil {
		t.Fatalf("host key file: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("host key file %s has mode %v, want 0600", keyFile, st.Mode().Perm())
	}
	fp := run(t, a.work, keygenBin, "-l", "-f", keyFile)
	if !strings.Contains(fp, "(ED25519)") {
		t.Fatalf("host key is not ed25519: ssh-keygen -l says %q", fp)
	}
	fingerprint := strings.Fields(fp)[1]
	if !strings.Contains(a.stderr.String(), "host key "+fingerprint) {
		t.Fatalf("the log does not show the host key fingerprint %s:\n%s", fingerprint, a.stderr)
	}

	// The first connection records the host key in a known_hosts file.
	kh := filepath.Join(a.work, "known_hosts")
	first := a.asAdmin()
	first.opts = []string{"-o", "UserKnownHostsFile=" + kh, "-o", "StrictHostKeyChecking=accept-new"}
	mustOK(t, a.ssh(first, "", "hostname"), "first connection")
	recorded, err := os.ReadFile(kh)
	if err != nil || !strings.Contains(string(recorded), "[127.0.0.1]:"+a.port+" ssh-ed25519 ") {
		t.Fatalf("known_hosts after the first connection: %v\n%s", err, recorded)
	}

	// Control: strict checking refuses a host that is not in known_hosts.
	empty := writeFile(t, a.work, "empty_known_hosts", nil)
	strictEmpty := a.asAdmin()
	strictEmpty.opts = []string{"-o", "UserKnownHostsFile=" + empty, "-o", "StrictHostKeyChecking=yes"}
	if r := a.ssh(strictEmpty, "", "hostname"); r.code != 255 || !strings.Contains(r.stderr, "Host key verification failed") {
		t.Fatalf("strict host key checking with an empty known_hosts should fail: %v", r)
	}

	a.restart()

	if got := run(t, a.work, keygenBin, "-l", "-f", keyFile); got != fp {
		t.Fatalf("host key fingerprint changed across the restart: %q, then %q", fp, got)
	}
	strict := a.asAdmin()
	strict.opts = []string{"-o", "UserKnownHostsFile=" + kh, "-o", "StrictHostKeyChecking=yes"}
	if got := mustOK(t, a.ssh(strict, "", "hostname"), "connection after restart with StrictHostKeyChecking=yes"); got != "box1\n" {
		t.Fatalf("hostname after restart: %q, want box1", got)
	}
}

var generatedRE = regexp.MustCompile(`First boot: the password of user "admin" is (\S+)\n`)

// Issue item 1 and the design's first-boot contract: without a password
// file a password is generated, printed once, works, and must be changed at
// the first interactive login; exec mode with it is refused clearly.
func TestFirstBootGeneratedPassword(t *testing.T) {
	t.Parallel()
	a := start(t, options{noPassword: true})
	m := generatedRE.FindStringSubmatch(a.stdout.String())
	if m == nil {
		t.Fatalf("first boot without --admin-password-file prints no generated password:\n%s", a.stdout)
	}
	generated := m[1]
	if !strings.Contains(a.stdout.String(), "change it at the first interactive login") {
		t.Fatalf("first boot output does not say the password must be changed:\n%s", a.stdout)
	}

	// Exec and script mode refuse the expired password with a clear line.
	mustFail(t, a.ssh(pw("admin", generated), "", "hostname"), "exec with the generated password",
		"password has expired", "ssh -t")
	mustFail(t, a.ssh(pw("admin", generated), "hostname\n", ""), "script with the generated password",
		"password has expired")

	// The first interactive login makes the user choose a new one.
	const newPassword = "Fresh-admin-pw-42"
	s := a.interactive(t, pw("admin", generated))
	s.expect(t, "Your password has expired: choose a new one.", screenTimeout)
	s.expect(t, "New password: ", screenTimeout)
	s.send(newPassword + "\r")
	s.expect(t, "Retype password: ", screenTimeout)
	s.send(newPassword + "\r")
	s.expect(t, "Password changed.", screenTimeout)
	s.expect(t, "parley> ", screenTimeout)
	s.send("exit\r")
	if code := s.wait(t, screenTimeout); code != 0 {
		t.Fatalf("exit: ssh status %d, want 0", code)
	}
	if strings.Contains(s.screen(), newPassword) {
		t.Fatalf("the new password was echoed:\n%q", s.screen())
	}

	if got := mustOK(t, a.ssh(pw("admin", newPassword), "", "hostname"), "exec with the new password"); got != "parley\n" {
		t.Fatalf("hostname: %q, want the default parley", got)
	}
	loginRefused(t, a.ssh(pw("admin", generated), "", "hostname"), "login with the generated password after the change")

	// The generated password is shown only once.
	a.restart()
	if strings.Contains(a.stdout.String(), "First boot") {
		t.Fatalf("a restart printed a first-boot password again:\n%s", a.stdout)
	}
	mustOK(t, a.ssh(pw("admin", newPassword), "", "hostname"), "exec with the new password after restart")
}
