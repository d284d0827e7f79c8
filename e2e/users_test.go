package e2e

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue item 4: admin users, their life cycle, and the list's columns.
func TestUserLifecycle(t *testing.T) {
	t.Parallel()
	a := start(t, options{hostname: "box1"})
	a.addUser(t, "alice", "crypto", "Alice-password-1")

	rows := a.userRows(t)
	if got := strings.Join(rows["alice"], " "); got != "alice crypto never no" {
		t.Fatalf("user list row of alice: %q, want \"alice crypto never no\"", got)
	}
	// The admin running the listing has one session open.
	if got := strings.Join(rows["admin"], " "); got != "admin admin never yes (1)" {
		t.Fatalf("user list row of admin: %q, want \"admin admin never yes (1)\"", got)
	}

	info := a.mustAdmin(t, "user info alice")
	for _, want := range []string{"Username         : alice", "Role             : crypto", "Password expiry  : never", "Locked           : no", "SSH keys         : 0"} {
		if !strings.Contains(info, want) {
			t.Fatalf("user info alice does not show %q:\n%s", want, info)
		}
	}
	mustFail(t, a.admin("user info nobody"), "user info of an unknown user", "no user nobody")

	// Expire: alice must change her password interactively before anything else.
	mustOK(t, a.admin("user expire alice"), "user expire alice")
	if got := a.userRows(t)["alice"]; len(got) < 3 || got[2] != "expired" {
		t.Fatalf("user list after user expire alice: %v, want PASSWORD-EXPIRY expired", got)
	}
	mustFail(t, a.ssh(pw("alice", "Alice-password-1"), "", "pki list"), "alice with an expired password", "password has expired")
	s := a.interactive(t, pw("alice", "Alice-password-1"))
	s.expect(t, "Your password has expired: choose a new one.", screenTimeout)
	s.expect(t, "New password: ", screenTimeout)
	s.send("Alice-password-2\r")
	s.expect(t, "Retype password: ", screenTimeout)
	s.send("Alice-password-2\r")
	s.expect(t, "Password changed.", screenTimeout)
	s.expect(t, "box1> ", screenTimeout)
	s.send("exit\r")
	if code := s.wait(t, screenTimeout); code != 0 {
		t.Fatalf("exit: ssh status %d", code)
	}
	mustOK(t, a.ssh(pw("alice", "Alice-password-2"), "", "pki list"), "alice with her new password")
	if got := a.userRows(t)["alice"]; got[2] != "never" {
		t.Fatalf("user list after the change: %v, want PASSWORD-EXPIRY never", got)
	}

	// LOGGED-IN shows alice's open session; deleting her ends it at her
	// next command, and she can no longer log in.
	s = a.interactive(t, pw("alice", "Alice-password-2"))
	s.expect(t, "Type 'help' for commands", screenTimeout)
	s.expect(t, "box1> ", screenTimeout)
	if got := strings.Join(a.userRows(t)["alice"], " "); got != "alice crypto never yes (1)" {
		t.Fatalf("user list row of alice while she is logged in: %q, want \"alice crypto never yes (1)\"", got)
	}
	mustOK(t, a.admin("user del alice"), "user del alice")
	s.send("pki list\r")
	s.expect(t, "user alice no longer exists", screenTimeout)
	if code := s.wait(t, screenTimeout); code == 0 {
		t.Fatal("the deleted user's session ended with status 0")
	}
	if _, ok := a.userRows(t)["alice"]; ok {
		t.Fatal("alice is still listed after user del")
	}
	loginRefused(t, a.ssh(pw("alice", "Alice-password-2"), "", "pki list"), "deleted user")
	mustFail(t, a.admin("user del alice"), "deleting alice twice", "no user alice")
}

// The last admin cannot be deleted: only an admin may delete users, and an
// admin cannot delete the user they are logged in as, so the appliance
// always keeps one.
func TestLastAdminCannotBeDeleted(t *testing.T) {
	t.Parallel()
	a := start(t, options{})
	mustFail(t, a.admin("user del admin"), "the only admin deleting itself", "user del", "cannot delete")
	if _, ok := a.userRows(t)["admin"]; !ok {
		t.Fatal("the last admin was deleted")
	}

	// With a second admin, one may delete the other; the survivor is then
	// the last and cannot go either.
	a.addUser(t, "root2", "admin", "Root2-password-1")
	mustOK(t, a.ssh(pw("root2", "Root2-password-1"), "", "user del admin"), "root2 deletes admin")
	mustFail(t, a.ssh(pw("root2", "Root2-password-1"), "", "user del root2"), "the last admin deleting itself", "cannot delete")
	rows := a.userRows2(t, pw("root2", "Root2-password-1"))
	if _, ok := rows["root2"]; !ok || len(rows) != 1 {
		t.Fatalf("users after the deletions: %v, want root2 alone", rows)
	}
}

// userRows2 is `user list` as another user.
func (a *appliance) userRows2(t *testing.T, l login) map[string][]string {
	t.Helper()
	return table(t, mustOK(t, a.ssh(l, "", "user list"), "user list"), "USERNAME", "ROLE", "PASSWORD-EXPIRY", "LOGGED-IN")
}

func TestWrongPasswordRefused(t *testing.T) {
	t.Parallel()
	a := start(t, options{})
	loginRefused(t, a.ssh(pw("admin", "Not-the-password"), "", "hostname"), "wrong password")
	loginRefused(t, a.ssh(pw("nosuchuser", adminPassword), "", "hostname"), "unknown user")
	// Without a lockout rule, failures do not lock anyone out.
	mustOK(t, a.admin("hostname"), "the right password after failures")
}

// Issue item 4, as amended by issue 9 item 5: `user rule max_failed_logins
// 3`, then three wrong passwords from one address lock the user's password
// logins from that address for 15 minutes; the right password is refused
// there too and ssh shows why, while the user's key still works there and
// the password works from other addresses; `user unlock` ends the lock.
func TestLockoutAfterFailedLogins(t *testing.T) {
	t.Parallel()
	a := start(t, options{})
	a.addUser(t, "alice", "audit", "Alice-password-1")
	local := t.TempDir()
	aliceKey, alicePub := newKey(t, local, "alice_ed25519")
	a.put(t, a.asAdmin(), alicePub)
	mustOK(t, a.admin("user sshkey add alice alice_ed25519.pub"), "user sshkey add alice")
	mustOK(t, a.admin("user rule max_failed_logins 3"), "user rule max_failed_logins 3")
	if rules := a.mustAdmin(t, "user rule"); !strings.Contains(rules, "max_failed_logins        3 per address (then password logins from there locked for 15 minutes)") {
		t.Fatalf("user rule does not show the new rule:\n%s", rules)
	}

	// One password attempt per connection, so each run is one failure;
	// alice is at 127.0.0.5.
	once := func(password string) login {
		l := from("127.0.0.5", pw("alice", password))
		l.opts = append(l.opts, "-o", "PreferredAuthentications=password", "-o", "NumberOfPasswordPrompts=1")
		return l
	}
	for i := 1; i <= 3; i++ {
		loginRefused(t, a.ssh(once("Wrong-password-"+string(rune('0'+i))), "", "hostname"), "wrong password")
		if i < 3 {
			if info := a.mustAdmin(t, "user info alice"); !strings.Contains(info, "Locked           : no") || !strings.Contains(info, "Failed logins    : "+string(rune('0'+i))) {
				t.Fatalf("alice after %d failed logins:\n%s", i, info)
			}
		}
	}
	if info := a.mustAdmin(t, "user info alice"); !strings.Contains(info, "Locked           : password logins from 127.0.0.5 until ") {
		t.Fatalf("alice's password logins from 127.0.0.5 are not locked after 3 failed logins:\n%s", info)
	}

	// The right password is refused from there now, by either method.
	loginRefused(t, a.ssh(once("Alice-password-1"), "", "hostname"), "the right password while locked")
	kbd := from("127.0.0.5", pw("alice", "Alice-password-1"))
	kbd.opts = append(kbd.opts, "-o", "LogLevel=INFO", "-o", "PreferredAuthentications=keyboard-interactive", "-o", "NumberOfPasswordPrompts=1")
	r := a.ssh(kbd, "", "hostname")
	loginRefused(t, r, "the right password by keyboard-interactive while locked")
	if !strings.Contains(r.stderr, "Password logins for alice from 127.0.0.5 are locked") || !strings.Contains(r.stderr, "user unlock alice") {
		t.Fatalf("ssh does not tell the user the password is locked and how to unlock it:\n%s", r.stderr)
	}

	// Failed passwords never lock a key out, and never lock other addresses.
	mustOK(t, a.ssh(from("127.0.0.5", keyLogin("alice", aliceKey)), "", "hostname"), "alice's key from 127.0.0.5 while her password is locked there")
	mustOK(t, a.ssh(from("127.0.0.7", pw("alice", "Alice-password-1")), "", "hostname"), "alice's password from another address")

	mustOK(t, a.admin("user unlock alice"), "user unlock alice")
	mustOK(t, a.ssh(once("Alice-password-1"), "", "hostname"), "alice after user unlock")
	if info := a.mustAdmin(t, "user info alice"); !strings.Contains(info, "Locked           : no") {
		t.Fatalf("alice still locked after unlock:\n%s", info)
	}
}

// Issue item 4: roles. audit only reads, crypto owns pki, appadmin owns xmpp,
// admin does everything.
func TestRolesEnforced(t *testing.T) {
	t.Parallel()
	a := start(t, options{hostname: "box1"})
	users := map[string]string{"aud": "audit", "cry": "crypto", "app": "appadmin"}
	for name, role := range users {
		a.addUser(t, name, role, "Password-of-"+name)
	}
	cases := []struct {
		user, command string
		allowed       bool
	}{
		{"aud", "user list", true},
		{"aud", "user info admin", true},
		{"aud", "hostname", true},
		{"aud", "pki list", true},
		{"aud", "audit", true},
		{"aud", "health", true},
		{"aud", "hostname x", false},
		{"aud", "pki csr a CN:a.example.com", false},
		{"aud", "pki selfsigned a CN:a.example.com", false},
		{"aud", "user add z audit", false},
		{"aud", "user rule min_length 10", false},
		{"cry", "pki selfsigned c CN:c.example.com", true},
		{"cry", "pki csr c2 CN:c.example.com", true},
		{"cry", "user add z audit", false},
		{"cry", "user expire aud", false},
		{"cry", "hostname y", false},
		{"app", "xmpp", true},
		{"app", "user list", true},
		{"app", "pki csr d CN:d.example.com", false},
		{"app", "pki selfsigned d CN:d.example.com", false},
		{"app", "user del aud", false},
	}
	for _, c := range cases {
		r := a.ssh(pw(c.user, "Password-of-"+c.user), "Password-z-1\n", c.command)
		what := c.user + " (" + users[c.user] + "): " + c.command
		if c.allowed {
			mustOK(t, r, what)
			continue
		}
		mustFail(t, r, what, "permission denied: needs role", "(you are "+users[c.user]+")")
	}

	// Nothing refused happened.
	if got := a.mustAdmin(t, "hostname"); got != "box1\n" {
		t.Fatalf("hostname changed to %q by a refused command", got)
	}
	rows := a.userRows(t)
	if _, ok := rows["z"]; ok || len(rows) != 4 || rows["aud"][2] != "never" {
		t.Fatalf("users changed by refused commands: %v", rows)
	}
	entries, err := os.ReadDir(a.filesDir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "c.crt c.key c2.csr c2.key" {
		t.Fatalf("files area after the role cases: %q, want only crypto's c.crt c.key c2.csr c2.key", got)
	}
}

// Passwords are kept only as salted slow hashes: no password is in any file
// of the data directory.
func TestPasswordsNotStoredInClear(t *testing.T) {
	t.Parallel()
	a := start(t, options{})
	secrets := []string{adminPassword, "Alice-Clear-Text-Pw1", "Bob-Clear-Text-Pw2"}
	a.addUser(t, "alice", "audit", secrets[1])
	mustOK(t, a.ssh(a.asAdmin(), "user add bob crypto\n"+secrets[2]+"\n", ""), "script user add bob")
	mustOK(t, a.ssh(pw("bob", secrets[2]), "", "hostname"), "bob logs in")

	db, err := os.ReadFile(filepath.Join(a.dataDir, "parley.db"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(db, []byte("$argon2id$")) {
		t.Fatal("the store holds no argon2id password hash")
	}
	err = filepath.WalkDir(a.dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s holds the password %q in clear", path, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Issue item 4: SSH public keys uploaded over SFTP and authorized per user.
func TestSSHKeys(t *testing.T) {
	t.Parallel()
	a := start(t, options{adminKey: true})
	admin := keyLogin("admin", a.key)
	mustOK(t, a.ssh(admin, "", "hostname"), "admin logs in with the --admin-key key")

	a.addUser(t, "alice", "audit", "Alice-password-1")
	local := t.TempDir()
	priv, pub := newKey(t, local, "alice_ed25519")
	loginRefused(t, a.ssh(keyLogin("alice", priv), "", "hostname"), "alice's key before it is authorized")
	notKey := writeFile(t, local, "notakey.pub", []byte("this is not a key\n"))
	a.put(t, admin, pub, notKey)

	out := mustOK(t, a.ssh(admin, "", "user sshkey add alice alice_ed25519.pub"), "user sshkey add")
	fingerprint := strings.Fields(run(t, local, keygenBin, "-l", "-f", pub))[1]
	if want := "added: ssh-ed25519 " + fingerprint + " alice_ed25519\n"; out != want {
		t.Fatalf("user sshkey add printed %q, want %q", out, want)
	}
	mustFail(t, a.ssh(admin, "", "user sshkey add alice alice_ed25519.pub"), "adding the same key again", "already authorized")
	mustFail(t, a.ssh(admin, "", "user sshkey add alice notakey.pub"), "a file with no key", "holds no SSH public key")
	mustFail(t, a.ssh(admin, "", "user sshkey add alice nosuch.pub"), "a missing file", "no such file in the files area")

	if got := mustOK(t, a.ssh(keyLogin("alice", priv), "", "user info alice"), "alice logs in with her key"); !strings.Contains(got, "SSH keys         : 1") {
		t.Fatalf("user info alice:\n%s", got)
	}
	list := mustOK(t, a.ssh(admin, "", "user sshkey list alice"), "user sshkey list")
	if !strings.HasPrefix(list, "1  ssh-ed25519 "+fingerprint+" alice_ed25519  (added ") || strings.Count(list, "\n") != 1 {
		t.Fatalf("user sshkey list alice:\n%s", list)
	}

	mustFail(t, a.ssh(admin, "", "user sshkey del alice 2"), "deleting a key that is not there", "no key number 2")
	mustOK(t, a.ssh(admin, "", "user sshkey del alice 1"), "user sshkey del")
	if got := mustOK(t, a.ssh(admin, "", "user sshkey list alice"), "user sshkey list"); got != "alice has no SSH keys\n" {
		t.Fatalf("user sshkey list after del: %q", got)
	}
	loginRefused(t, a.ssh(keyLogin("alice", priv), "", "hostname"), "alice's key after it was removed")

	// --admin-key is applied again at every boot: the key is not doubled.
	a.restart()
	mustOK(t, a.ssh(admin, "", "hostname"), "admin's key after a restart")
	if got := mustOK(t, a.ssh(admin, "", "user sshkey list admin"), "user sshkey list admin"); strings.Count(got, "\n") != 1 || !strings.HasPrefix(got, "1  ssh-ed25519 ") {
		t.Fatalf("admin's keys after a restart with --admin-key again:\n%s", got)
	}
}

// Issue item 4: passwd in exec mode reads the current and the new password
// from stdin; then only the new one works.
func TestPasswdExec(t *testing.T) {
	t.Parallel()
	a := start(t, options{})
	const newPassword = "Changed-admin-pw-9"
	mustFail(t, a.ssh(a.asAdmin(), "Wrong-current-pw\n"+newPassword+"\n", "passwd"), "passwd with a wrong current password",
		"passwd: the current password is wrong; nothing was changed")
	mustFail(t, a.ssh(a.asAdmin(), adminPassword+"\nshort\n", "passwd"), "passwd with a too short new password", "too short")
	mustOK(t, a.admin("hostname"), "the old password still works after failed passwd runs")

	if out := mustOK(t, a.ssh(a.asAdmin(), adminPassword+"\n"+newPassword+"\n", "passwd"), "passwd"); out != "Password changed.\n" {
		t.Fatalf("passwd printed %q", out)
	}
	mustOK(t, a.ssh(pw("admin", newPassword), "", "hostname"), "the new password")
	loginRefused(t, a.admin("hostname"), "the old password after passwd")
	// --admin-password-file only seeds the first boot: a restart with it
	// does not bring the old password back.
	a.restart()
	mustOK(t, a.ssh(pw("admin", newPassword), "", "hostname"), "the new password after a restart")
	loginRefused(t, a.admin("hostname"), "the old password after a restart")

	// Every role may change its own password.
	a.addUser2(t, pw("admin", newPassword), "aud", "audit", "Audit-password-1")
	mustOK(t, a.ssh(pw("aud", "Audit-password-1"), "Audit-password-1\nAudit-password-2\n", "passwd"), "passwd as audit")
	mustOK(t, a.ssh(pw("aud", "Audit-password-2"), "", "hostname"), "aud's new password")
}

// addUser2 adds a user as the admin logged in by l.
func (a *appliance) addUser2(t *testing.T, l login, name, role, password string) {
	t.Helper()
	mustOK(t, a.ssh(l, password+"\n", "user add "+name+" "+role), "user add "+name)
}

// Issue item 4: `user rule min_length 12` refuses shorter passwords.
func TestMinLengthRule(t *testing.T) {
	t.Parallel()
	a := start(t, options{})
	mustOK(t, a.admin("user rule min_length 12"), "user rule min_length 12")
	if rules := a.mustAdmin(t, "user rule"); !strings.Contains(rules, "min_length               12\n") {
		t.Fatalf("user rule:\n%s", rules)
	}
	mustFail(t, a.ssh(a.asAdmin(), "Eleven-char\n", "user add alice audit"), "an 11-character password",
		"the password is too short: use at least 12 characters")
	if _, ok := a.userRows(t)["alice"]; ok {
		t.Fatal("alice was added with a too short password")
	}
	mustFail(t, a.ssh(a.asAdmin(), adminPassword+"\nEleven-char\n", "passwd"), "passwd to an 11-character password", "too short")
	a.addUser(t, "alice", "audit", "Twelve-chars")
	mustOK(t, a.ssh(pw("alice", "Twelve-chars"), "", "hostname"), "alice with a 12-character password")
	mustFail(t, a.admin("user rule min_length 0"), "min_length 0", "out of range")
}
