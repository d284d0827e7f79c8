package commands

import (
	"strings"
	"testing"

	"github.com/parley-xmpp/parley/store"
)

func TestBackupSnapshotListRollback(t *testing.T) {
	f := newFixture(t)
	f.ok("xmpp domain example.com")
	f.ok("xmpp user add alice@example.com", "alice-password")
	out := f.ok("backup snapshot before")
	if !strings.Contains(out, "Backup before.bak written") || !strings.Contains(out, "1 domain, 1 XMPP account, 0 call bridges, 1 admin user") {
		t.Errorf("snapshot output:\n%s", out)
	}
	if !f.env.Files.Exists("before.bak") {
		t.Fatal("before.bak not in the files area")
	}

	// Bad and existing names.
	f.refuse("backup snapshot ../x", "not a backup name")
	f.refuse("backup snapshot .hidden", "not a backup name")
	f.refuse("backup snapshot before", "before.bak already exists and was kept", "no")
	f.ok("backup snapshot before.bak", "overwrite")

	// Changes after the snapshot.
	f.ok("xmpp user add bob@example.com", "bob-password")
	f.ok("xmpp callbridge add cb1")
	f.ok("hostname changed")

	out = f.ok("backup list")
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "before ") || !strings.Contains(out, "schema 5: 1 domain, 1 XMPP account") {
		t.Errorf("backup list:\n%s", out)
	}
	f.env.Files.WriteFile("junk.bak", []byte("not a store"), 0o600, true)
	if out := f.ok("backup list"); !strings.Contains(out, "junk") || !strings.Contains(out, "not usable") {
		t.Errorf("backup list with junk:\n%s", out)
	}

	f.refuse("backup rollback before", "not confirmed", "no")
	f.refuse("backup rollback missing", "no backup missing.bak")
	f.refuse("backup rollback junk", "junk.bak cannot be restored")

	eng := &fakeEngine{users: map[string]int{"bob@example.com": 2}}
	f.env.XMPP = eng
	out = f.ok("backup rollback before", "rollback")
	for _, want := range []string{
		"Rolled back to before.bak",
		"XMPP accounts: 2 before, 1 now; 2 sessions of accounts not in the backup closed",
		"Not touched: shell history, last logins, xmpp listen, the audit trail, hostname, xmpp enable/disable",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rollback output lacks %q:\n%s", want, out)
		}
	}
	if _, err := f.env.Store.Account("bob@example.com"); err == nil {
		t.Error("bob is still there after the rollback")
	}
	if _, err := f.env.Store.Account("alice@example.com"); err != nil {
		t.Error("alice is gone after the rollback")
	}
	if comps, _ := f.env.Store.Components(); len(comps) != 0 {
		t.Errorf("call bridges after rollback: %v", comps)
	}
	// Node-local: the host name set after the snapshot stays.
	if h := Hostname(f.env.Store); h != "changed" {
		t.Errorf("hostname %q after rollback: it is node-local", h)
	}
	// The audit trail (node-local) is not touched: it keeps what happened
	// since the snapshot, and the rollback itself.
	audit, _ := f.env.Store.Audit(50)
	var actions []string
	for _, e := range audit {
		actions = append(actions, e.Action)
	}
	all := strings.Join(actions, "\n")
	for _, want := range []string{"xmpp callbridge add cb1", "backup snapshot before", "backup rollback before"} {
		if !strings.Contains(all, want) {
			t.Errorf("audit trail lacks %q:\n%s", want, all)
		}
	}

	// A clustered node refuses.
	f.env.Store.SetLog(clusterLog{})
	defer f.env.Store.SetLog(nil)
	if _, err := f.run("backup rollback before", "rollback"); err == nil || !strings.Contains(err.Error(), "refused: this node is in a cluster") {
		t.Errorf("rollback on a cluster: %v", err)
	}
}

// clusterLog stands for the cluster's raft log.
type clusterLog struct{}

func (clusterLog) Commit([]byte) (uint64, any, error) { return 0, nil, store.ErrClosed }
