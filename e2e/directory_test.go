package e2e

// Accounts from a company directory: a real OpenLDAP server (Debian's
// slapd, started by the test with its own configuration, users and a
// private CA: server/directory/ldaptest), the appliance configured over
// SSH with xmpp directory, and slixmpp logging in with directory
// passwords.

import (
	"crypto/sha1"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/directory/ldaptest"
)

// This branch's loopback addresses (127.0.21.0/24): slapd and the
// appliance's XMPP listener.
const (
	dirLDAPIP = "127.0.21.40"
	dirXMPPIP = "127.0.21.41"
)

func TestDirectoryAccounts(t *testing.T) {
	srv := ldaptest.Start(t, dirLDAPIP)
	x := startXMPPOn(t, options{}, dirXMPPIP, "example.lan")
	users := ldaptest.Users()
	alice, bob, odd := users[0], users[1], users[2]

	// The private CA goes to the files area over SFTP.
	ca := filepath.Join(t.TempDir(), "dir-ca.pem")
	if err := os.WriteFile(ca, srv.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	x.put(t, x.asAdmin(), ca)

	// Configured over SSH; the bind password on the next line, as every secret.
	out := mustOK(t, x.ssh(x.asAdmin(), "xmpp directory example.lan ldap "+srv.URL()+" base "+ldaptest.People+" bind "+ldaptest.ReaderDN+"\n"+
		ldaptest.ReaderPW+"\nxmpp directory example.lan starttls on\n", ""), "xmpp directory set-up")
	if !strings.Contains(out, "example.lan takes its accounts from "+srv.URL()) {
		t.Fatalf("set-up output:\n%s", out)
	}
	// Without the CA the check says what is wrong and how to fix it.
	r := x.admin("xmpp directory example.lan test")
	mustFail(t, r, "directory test without the CA", "does not work", "certificate signed by unknown authority")
	out = r.stdout
	for _, want := range []string{"ok    connect " + dirLDAPIP, "fail  TLS", "fix: give the CA bundle that signed the directory's certificate"} {
		if !strings.Contains(out, want) {
			t.Errorf("test without the CA lacks %q:\n%s", want, out)
		}
	}
	mustOK(t, x.admin("xmpp directory example.lan trust dir-ca.pem"), "trust")
	out = mustOK(t, x.admin("xmpp directory example.lan test alice"), "directory test alice")
	for _, want := range []string{"ok    TLS: StartTLS: TLS 1.3, certificate of " + dirLDAPIP + " verified by the trusted bundle",
		"ok    bind as " + ldaptest.ReaderDN, "ok    search " + ldaptest.People + ": 3 users match (objectClass=inetOrgPerson)",
		"ok    user alice@example.lan: found " + ldaptest.UserDN("alice"), "info  vCard: FN: Alice Liddell", "info  vCard: TITLE: Explorer",
		"info  vCard: PHOTO: image/jpeg", "alice@example.lan can log in with their directory password"} {
		if !strings.Contains(out, want) {
			t.Errorf("xmpp directory test alice lacks %q:\n%s", want, out)
		}
	}
	for _, cmd := range []string{"xmpp directory", "xmpp"} {
		if out := x.mustAdmin(t, cmd); strings.Contains(out, ldaptest.ReaderPW) {
			t.Fatalf("%s shows the bind password:\n%s", cmd, out)
		}
	}

	// Members of the directory's groups see each other.
	out = mustOK(t, x.admin("xmpp directory example.lan roster-groups "+ldaptest.Groups), "roster-groups")
	if !strings.Contains(out, "see each other in their rosters") {
		t.Fatalf("roster-groups: %s", out)
	}

	// Accounts for every user of the directory before anyone logs in.
	out = x.mustAdmin(t, "xmpp directory example.lan sync")
	if !strings.Contains(out, "3 users in the directory of example.lan: created 3 accounts, 0 already had one") {
		t.Fatalf("sync: %s", out)
	}

	// Login with the directory password (PLAIN over STARTTLS, the only offer).
	start := time.Now()
	c := x.login(t, "alice@example.lan", alice.Password, clientOpts{})
	t.Logf("first directory login took %s", time.Since(start))
	if it, ok := c.session.Items["bob@example.lan"]; !ok || it.Subscription != "both" || strings.Join(it.Groups, ",") != "staff" || it.Name != "Bob Builder" {
		t.Fatalf("alice's roster at login: %+v", c.session.Items)
	}
	sum := sha1.Sum(ldaptest.Photo())
	hash := hex.EncodeToString(sum[:])
	v := c.do(t, map[string]any{"op": "vcard_get", "to": "alice@example.lan"})
	if v.FN != "Alice Liddell" || v.PhotoSHA1 != hash || v.PhotoType != "image/jpeg" {
		t.Fatalf("alice's vCard: fn %q photo %s %s, want the directory's (photo %s)", v.FN, v.PhotoType, v.PhotoSHA1, hash)
	}
	p := c.wait(t, "own presence with the avatar hash", func(e *xev) bool { return e.Ev == "presence" && bareOf(e.From) == "alice@example.lan" })
	if p.Photo == nil || *p.Photo != hash {
		t.Fatalf("presence photo %v, want %s", p.Photo, hash)
	}
	if r := c.request(t, map[string]any{"op": "vcard_set", "fn": "Someone Else"}); r.Error == "" || !strings.Contains(r.Error+r.Condition+r.Text, "not-allowed") {
		t.Fatalf("changing FN: %+v", r)
	}
	c.do(t, map[string]any{"op": "vcard_set", "fn": "Alice Liddell", "nickname": "ally"})
	if v := c.do(t, map[string]any{"op": "vcard_get", "to": "alice@example.lan"}); v.FN != "Alice Liddell" || v.PhotoSHA1 != hash {
		t.Fatalf("after setting her nickname the directory fields are gone: %+v", v)
	}

	// Wrong password, unknown user, and what would be a filter injection.
	x.loginFails(t, "alice@example.lan", "not-her-password", clientOpts{})
	x.loginFails(t, "*@example.lan", alice.Password, clientOpts{})
	x.loginFails(t, "carol@example.lan", alice.Password, clientOpts{})
	// The user whose address holds ")(" and "*" logs in as herself.
	x.login(t, odd.Mail, odd.Password, clientOpts{})

	out = x.mustAdmin(t, "xmpp user list example.lan")
	rows := table(t, out, "JID", "CREATED", "ONLINE", "ACCOUNT")
	if r := rows["alice@example.lan"]; len(r) < 4 || r[len(r)-1] != "directory" {
		t.Fatalf("xmpp user list does not mark alice as a directory account:\n%s", out)
	}
	mustFail(t, x.ssh(x.asAdmin(), "xmpp user add dave@example.lan\nDave-password-1\n", ""), "xmpp user add on a directory domain",
		"the accounts of example.lan come from its directory")
	mustFail(t, x.admin("xmpp user del alice@example.lan"), "xmpp user del on a directory domain", "come from its directory")

	// ldaps with the same private CA.
	mustOK(t, x.ssh(x.asAdmin(), "xmpp directory example.lan ldap "+srv.LDAPS()+" base "+ldaptest.People+" bind "+ldaptest.ReaderDN+"\n"+ldaptest.ReaderPW+"\n", ""), "ldaps")
	if out := x.mustAdmin(t, "xmpp directory example.lan test bob"); !strings.Contains(out, "ok    TLS: ldaps: TLS 1.3") {
		t.Fatalf("test over ldaps:\n%s", out)
	}
	b := x.login(t, "bob@example.lan", bob.Password, clientOpts{direct: true})
	if it, ok := b.session.Items["alice@example.lan"]; !ok || it.Subscription != "both" || strings.Join(it.Groups, ",") != "staff" {
		t.Fatalf("bob's roster at login: %+v", b.session.Items)
	}
	// Subscribed both ways by the group: alice sees bob come online, and he sees her.
	c.wait(t, "bob's presence", func(e *xev) bool {
		return bareOf(e.From) == "bob@example.lan" && e.Ev == "presence" && e.Type == "available"
	})
	b.wait(t, "alice's presence", func(e *xev) bool {
		return bareOf(e.From) == "alice@example.lan" && e.Ev == "presence" && e.Type == "available"
	})

	// The odd user leaves the company: she can no longer log in, and prune deletes her account.
	srv.Delete(t, ldaptest.UserDN(odd.UID))
	x.loginFails(t, odd.Mail, odd.Password, clientOpts{})
	out = mustOK(t, x.ssh(x.asAdmin(), "prune\n", "xmpp directory example.lan prune"), "prune")
	if !strings.Contains(out, "No longer in the directory (1 of 3):\n  "+odd.Mail+"\n") || !strings.Contains(out, "Deleted 1 account no longer in the directory of example.lan") {
		t.Fatalf("prune:\n%s", out)
	}
	if out := x.mustAdmin(t, "xmpp user list example.lan"); strings.Contains(out, odd.Mail) {
		t.Fatalf("the pruned account is still listed:\n%s", out)
	}

	// The directory goes down: logins fail at once with temporary-auth-failure, health says so.
	srv.Stop()
	start = time.Now()
	down := x.client(t, "bob@example.lan", bob.Password, clientOpts{})
	f := down.wait(t, "failed_auth", func(e *xev) bool { return e.Ev == "failed_auth" })
	waited := time.Since(start)
	if f.Condition != "temporary-auth-failure" {
		t.Fatalf("directory down: SASL %q, want temporary-auth-failure\n%s", f.Condition, down.transcript())
	}
	down.wait(t, "the disconnection", func(e *xev) bool { return e.Ev == "disconnected" })
	down.none(t, "a session", func(e *xev) bool { return e.Ev == "session" })
	t.Logf("a login with the directory down got temporary-auth-failure after %s (client start included)", waited)
	if waited > 5*time.Second {
		t.Fatalf("a login with the directory down took %s", waited)
	}
	r = x.admin("health")
	mustFail(t, r, "health with the directory down", "some checks failed")
	out = r.stdout
	if !strings.Contains(out, "FAIL  directory example.lan") || !strings.Contains(out, "unreachable since") {
		t.Fatalf("health does not say the directory is down:\n%s", out)
	}
	if st := x.status(t); !strings.Contains(st["Directories"], "UNREACHABLE") {
		t.Fatalf("xmpp: Directories %q", st["Directories"])
	}
	// Back up: logins work again.
	srv.Start(t)
	time.Sleep(2500 * time.Millisecond) // the client's back-off after a failed dial
	x.login(t, "bob@example.lan", bob.Password, clientOpts{})
	if out := x.mustAdmin(t, "health"); !strings.Contains(out, "OK    directory example.lan") {
		t.Fatalf("health after the directory is back:\n%s", out)
	}

	// none: the domain's accounts are local again.
	mustOK(t, x.admin("xmpp directory example.lan none"), "directory none")
	// One mechanism, one try: slixmpp's default tries three, and the
	// account's earlier failures make the per-account back-off delay the
	// later tries past the harness's wait on a slow box.
	x.loginFails(t, "alice@example.lan", alice.Password, clientOpts{mech: "PLAIN"})
}
