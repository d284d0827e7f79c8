package commands

import (
	"context"
	"strings"
	"testing"

	"github.com/parley-xmpp/parley/server/directory/ldaptest"
	"github.com/parley-xmpp/parley/store"
)

// The commands tests' slapd address (127.0.21.0/24 is this branch's).
const dirTestIP = "127.0.21.11"

func (f *fixture) fails(line, want string, secrets ...string) {
	f.t.Helper()
	out, err := f.run(line, secrets...)
	if err == nil || !strings.Contains(err.Error(), want) {
		f.t.Fatalf("%s: error %v (output %q), want %q", line, err, out, want)
	}
}

func TestXMPPDirectorySettings(t *testing.T) {
	f := newFixture(t)
	f.ok("xmpp domain example.lan")
	if out := f.ok("xmpp directory"); !strings.Contains(out, "No domain takes its accounts from a directory") {
		t.Fatalf("xmpp directory with none: %q", out)
	}
	f.fails("xmpp directory other.lan ldap ldap://127.0.0.1 base dc=x", "other.lan is not a hosted domain")
	f.fails("xmpp directory example.lan starttls on", "has no directory yet")
	f.fails("xmpp directory example.lan ldap http://x base dc=x", "not an LDAP server URL")
	f.fails("xmpp directory example.lan ldap ldap://x base nodn", "is not a DN")
	f.fails("xmpp directory example.lan ldap ldap://x dc=x", "usage: xmpp directory example.lan ldap")
	f.fails("xmpp directory example.lan frob", `"frob" is not a setting`)
	f.fails("xmpp directory example.lan ldap ldap://x base dc=x bind cn=r,dc=x", "no password given") // no stdin line
	f.fails("xmpp directory example.lan ldap ldap://x base dc=x bind cn=r,dc=x", "bind password is empty", "")
	if _, ok := f.env.Store.DirectoryOf("example.lan"); ok {
		t.Fatal("a refused command stored a directory")
	}

	out := f.ok("xmpp directory example.lan ldap ldap://ldap.example.lan:389/ base ou=people,dc=example,dc=lan bind cn=reader,dc=example,dc=lan", "Bind-Secret-1")
	if !strings.Contains(out, "example.lan takes its accounts from ldap://ldap.example.lan:389 (base ou=people,dc=example,dc=lan, searching as cn=reader,dc=example,dc=lan)") {
		t.Fatalf("ldap: %q", out)
	}
	d, ok := f.env.Store.DirectoryOf("example.lan")
	if !ok || d.BindPassword != "Bind-Secret-1" || d.URL != "ldap://ldap.example.lan:389" {
		t.Fatalf("stored %+v", d)
	}
	f.ok("xmpp directory example.lan starttls on")
	f.fails("xmpp directory example.lan starttls maybe", "give on or off")
	f.ok("xmpp directory example.lan user-filter (&(objectClass=inetOrgPerson)(!(ou=retired)))")
	f.fails("xmpp directory example.lan user-filter objectClass=x", "is not an LDAP filter")
	f.ok("xmpp directory example.lan jid-from uid")
	f.fails("xmpp directory example.lan jid-from ma)il", "is not an LDAP attribute name")
	f.fails("xmpp directory example.lan trust nothing.pem", "nothing.pem")
	show := f.ok("xmpp directory")
	for _, want := range []string{"Domain      : example.lan", "Bind        : cn=reader,dc=example,dc=lan (password set)", "TLS         : StartTLS (trust: system roots)",
		"User filter : (&(objectClass=inetOrgPerson)(!(ou=retired)))", "JID from    : uid"} {
		if !strings.Contains(show, want) {
			t.Errorf("xmpp directory lacks %q:\n%s", want, show)
		}
	}
	if strings.Contains(show, "Bind-Secret-1") {
		t.Fatal("xmpp directory shows the bind password")
	}
	// Re-pointing the directory keeps the other settings; without bind it searches anonymously.
	f.ok("xmpp directory example.lan ldap ldap://127.0.0.1 base dc=example,dc=lan")
	d, _ = f.env.Store.DirectoryOf("example.lan")
	if d.BindDN != "" || d.BindPassword != "" || !d.StartTLS || d.Attribute() != "uid" {
		t.Fatalf("after ldap without bind: %+v", d)
	}

	// Accounts of a directory domain belong to the directory.
	f.fails("xmpp user add carol@example.lan", "the accounts of example.lan come from its directory", "Carol-pass-1")
	if out := f.ok("xmpp user list example.lan"); !strings.Contains(out, "No one has logged in from the directory of example.lan") {
		t.Fatalf("user list of a directory domain without accounts: %q", out)
	}
	a, _ := store.NewAccount("alice@example.lan", "x-password-1")
	a.Directory = true
	if _, err := f.env.Store.ProposeSettled(context.Background(), store.AccountCreate{Accounts: []store.Account{a}}); err != nil {
		t.Fatal(err)
	}
	f.fails("xmpp user passwd alice@example.lan", "come from its directory", "New-pass-123")
	f.fails("xmpp user del alice@example.lan", "come from its directory")
	if out := f.ok("xmpp user list example.lan"); !strings.Contains(out, "alice@example.lan") || !strings.Contains(out, "directory") ||
		!strings.Contains(out, "users who have not logged in yet are not listed") {
		t.Fatalf("user list: %q", out)
	}
	f.ok("xmpp directory example.lan none")
	f.fails("xmpp directory example.lan none", "has no directory")
	f.ok("xmpp user passwd alice@example.lan", "New-pass-123")
}

func TestXMPPDirectoryTest(t *testing.T) {
	srv := ldaptest.Start(t, dirTestIP)
	f := newFixture(t)
	f.ok("xmpp domain example.lan")
	if err := f.env.Files.WriteFile("dir-ca.pem", srv.CAPEM, 0o644, false); err != nil {
		t.Fatal(err)
	}
	f.ok("xmpp directory example.lan ldap "+srv.URL()+" base "+ldaptest.People+" bind "+ldaptest.ReaderDN, ldaptest.ReaderPW)
	f.ok("xmpp directory example.lan starttls on")

	// The system roots do not know the private CA.
	out, err := f.run("xmpp directory example.lan test")
	if err == nil || !strings.Contains(out, "fail  TLS") || !strings.Contains(out, "fix: give the CA bundle") {
		t.Fatalf("test without the CA: %v\n%s", err, out)
	}
	f.ok("xmpp directory example.lan trust dir-ca.pem")
	f.fails("xmpp directory example.lan roster-groups notadn", "is not a DN")
	f.fails("xmpp directory example.lan roster-groups "+ldaptest.Groups+" objectClass=x", "is not an LDAP filter")
	if out := f.ok("xmpp directory example.lan roster-groups " + ldaptest.Groups); !strings.Contains(out, "see each other in their rosters") {
		t.Fatalf("roster-groups: %q", out)
	}
	out = f.ok("xmpp directory example.lan test alice@example.lan")
	if !strings.Contains(out, "ok    roster groups: 1 colleague in 1 group: staff") {
		t.Errorf("test lacks the roster groups:\n%s", out)
	}
	if out := f.ok("xmpp directory"); !strings.Contains(out, "Roster groups: "+ldaptest.Groups+" (|(objectClass=groupOfNames)") {
		t.Errorf("xmpp directory lacks the roster groups:\n%s", out)
	}
	f.ok("xmpp directory example.lan roster-groups none")
	out = f.ok("xmpp directory example.lan test alice@example.lan")
	for _, want := range []string{"Checking the directory of example.lan: " + srv.URL(), "ok    connect " + dirTestIP, "ok    TLS: StartTLS",
		"ok    bind as " + ldaptest.ReaderDN, "ok    search " + ldaptest.People + ": 3 users match (objectClass=inetOrgPerson)",
		"ok    user alice@example.lan: found " + ldaptest.UserDN("alice"), "info  vCard: FN: Alice Liddell", "info  vCard: PHOTO: image/jpeg",
		"alice@example.lan can log in with their directory password"} {
		if !strings.Contains(out, want) {
			t.Errorf("test lacks %q:\n%s", want, out)
		}
	}
	out, err = f.run("xmpp directory example.lan test carol")
	if err == nil || !strings.Contains(out, "fail  user carol@example.lan: no entry") || !strings.Contains(err.Error(), "does not work") {
		t.Fatalf("test carol: %v\n%s", err, out)
	}
	f.fails("xmpp directory example.lan test alice@other.lan", "is not in example.lan")

	// sync: an account for every user of the directory.
	if out := f.ok("xmpp directory example.lan sync"); !strings.Contains(out, "3 users in the directory of example.lan: created 3 accounts, 0 already had one") {
		t.Fatalf("sync: %s", out)
	}
	if a, err := f.env.Store.Account("o)(k*@example.lan"); err != nil || !a.Directory {
		t.Fatalf("after sync: %+v %v", a, err)
	}
	if out := f.ok("xmpp directory example.lan sync"); !strings.Contains(out, "created 0 accounts, 3 already had one") {
		t.Fatalf("sync again: %s", out)
	}
	for _, j := range []string{"bob@example.lan", "o)(k*@example.lan"} {
		f.env.Store.ProposeSettled(context.Background(), store.AccountDelete{JID: j})
	}

	// prune: directory accounts whose user is gone, after a confirmation.
	var accts []store.Account
	for _, j := range []string{"alice@example.lan", "gone@example.lan", "left@example.lan"} {
		accts = append(accts, store.Account{JID: j, Directory: true})
	}
	local, _ := store.NewAccount("local@example.lan", "Local-pass-1")
	accts = append(accts, local)
	if _, err := f.env.Store.ProposeSettled(context.Background(), store.AccountCreate{Accounts: accts, SkipExisting: true}); err != nil {
		t.Fatal(err)
	}
	out, err = f.run("xmpp directory example.lan prune", "no")
	if err == nil || !strings.Contains(err.Error(), "not confirmed") || !strings.Contains(out, "No longer in the directory (2 of 3):\n  gone@example.lan\n  left@example.lan\n") {
		t.Fatalf("prune, not confirmed: %v\n%s", err, out)
	}
	if _, err := f.env.Store.Account("gone@example.lan"); err != nil {
		t.Fatal("an unconfirmed prune deleted gone@")
	}
	if out := f.ok("xmpp directory example.lan prune", "prune"); !strings.Contains(out, "Deleted 2 accounts no longer in the directory of example.lan") {
		t.Fatalf("prune: %s", out)
	}
	for j, want := range map[string]bool{"alice@example.lan": true, "gone@example.lan": false, "left@example.lan": false, "local@example.lan": true} {
		if _, err := f.env.Store.Account(j); (err == nil) != want {
			t.Errorf("after prune, %s exists: %v, want %v", j, err == nil, want)
		}
	}
	if out := f.ok("xmpp directory example.lan prune"); !strings.Contains(out, "still in it (1 account checked)") {
		t.Fatalf("prune again: %s", out)
	}
	srv.Stop()
	f.fails("xmpp directory example.lan prune", "the directory cannot be asked")
	out, err = f.run("xmpp directory example.lan test")
	if err == nil || !strings.Contains(out, "fail  connect") {
		t.Fatalf("test with slapd stopped: %v\n%s", err, out)
	}
}
