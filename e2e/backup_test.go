package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// backup snapshot, changes, sftp get of the .bak, backup rollback: the
// changes are gone, a user who existed at snapshot time logs in, one
// added after cannot, and the node-local settings stay.
func TestBackupSnapshotRollback(t *testing.T) {
	x := startXMPP(t, "example.lan", "alice@example.lan", "Alice-pass-1")
	out := x.mustAdmin(t, "backup snapshot before")
	for _, want := range []string{"Backup before.bak written", "1 domain, 1 XMPP account, 0 call bridges, 1 admin user"} {
		if !strings.Contains(out, want) {
			t.Fatalf("backup snapshot did not say %q:\n%s", want, out)
		}
	}
	mustFail(t, x.admin("backup snapshot ../etc/x"), "a path as a backup name", "not a backup name")
	mustFail(t, x.ssh(x.asAdmin(), "no\n", "backup snapshot before"), "an existing name, not confirmed", "before.bak already exists and was kept")

	// Changes after the snapshot: a user, a call bridge, a setting.
	x.addAccounts(t, "bob@example.lan", "Bob-pass-22")
	mustOK(t, x.admin("xmpp callbridge add cb1"), "xmpp callbridge add")
	mustOK(t, x.admin("xmpp max-sessions 50"), "xmpp max-sessions")
	bob := x.login(t, "bob@example.lan", "Bob-pass-22", clientOpts{})

	out = x.mustAdmin(t, "backup list")
	if !strings.Contains(out, "before") || !strings.Contains(out, "schema 5: 1 domain, 1 XMPP account, 0 call bridges") {
		t.Fatalf("backup list:\n%s", out)
	}

	// The backup downloads by SFTP and is what is in the files area.
	dir := t.TempDir()
	x.get(t, x.asAdmin(), dir, "before.bak")
	got, err := os.ReadFile(filepath.Join(dir, "before.bak"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(x.filesDir(), "before.bak"))
	if len(got) == 0 || !bytes.Equal(got, want) {
		t.Fatalf("sftp get before.bak: %d bytes, want %d", len(got), len(want))
	}

	mustFail(t, x.ssh(x.asAdmin(), "no\n", "backup rollback before"), "rollback not confirmed", "not confirmed")
	out = mustOK(t, x.ssh(x.asAdmin(), "rollback\n", "backup rollback before"), "backup rollback")
	for _, want := range []string{
		"Rolled back to before.bak",
		"XMPP accounts: 2 before, 1 now; 1 session of accounts not in the backup closed",
		"Not touched: shell history, last logins, xmpp listen",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("backup rollback did not say %q:\n%s", want, out)
		}
	}
	bob.streamEnds(t, "not-authorized")

	if out := x.mustAdmin(t, "xmpp callbridge list"); out != "" {
		t.Errorf("call bridges after the rollback:\n%s", out)
	}
	st := x.status(t)
	if st["Max sessions"] != "none" {
		t.Errorf("Max sessions %q after the rollback", st["Max sessions"])
	}
	if !strings.Contains(st["Listeners"], x.host+":"+x.c2s) {
		t.Errorf("the node-local listen address was not kept: %q", st["Listeners"])
	}
	x.login(t, "alice@example.lan", "Alice-pass-1", clientOpts{})
	x.loginFails(t, "bob@example.lan", "Bob-pass-22", clientOpts{})
	audit := x.mustAdmin(t, "audit 50")
	for _, want := range []string{"xmpp callbridge add cb1", "backup snapshot before", "backup rollback before"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit lacks %q:\n%s", want, audit)
		}
	}
}
