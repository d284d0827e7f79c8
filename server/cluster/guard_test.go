package cluster

import (
	"errors"
	"testing"

	"github.com/parley-xmpp/parley/store"
)

// A member's store never commits through its own log, even with raft
// stopped and the local log put back; node-local writes go on; after
// Disable it commits locally again.
func TestMemberStoreRefusesLocalCommits(t *testing.T) {
	nodes := cluster3(t)
	for _, n := range nodes {
		if !n.st.Clustered() {
			t.Fatalf("%s: not marked as a member after initialize/join", n.host)
		}
	}
	n := nodes[1]
	n.c.Close()
	n.st.SetLog(nil) // what a stray write at boot would meet: the local log
	before := n.st.AppliedIndex()
	if err := addBridge(n.st, "stray"); !errors.Is(err, store.ErrClusterLogDown) {
		t.Fatalf("a local commit on a stopped member: %v", err)
	}
	if n.st.AppliedIndex() != before {
		t.Fatalf("the store moved ahead of the log: %d → %d", before, n.st.AppliedIndex())
	}
	if err := n.st.SetLocal(store.ConfigHostname, "node2"); err != nil {
		t.Errorf("a node-local write on a stopped member: %v", err)
	}
	if err := n.st.AddAudit(store.AuditEntry{User: "root", Action: "audit", Result: "ok"}); err != nil {
		t.Errorf("an audit entry on a stopped member: %v", err)
	}
	// Started again (Start marks it, from the raft state), it follows.
	n.restart()
	if err := addBridge(nodes[0].st, "after"); err != nil {
		t.Fatal(err)
	}
	sameStores(t, nodes)

	// Out of the cluster: it commits locally again.
	if err := nodes[2].c.Disable(); err != nil {
		t.Fatal(err)
	}
	if nodes[2].st.Clustered() {
		t.Error("still marked as a member after disable")
	}
	if err := addBridge(nodes[2].st, "alone"); err != nil {
		t.Errorf("a local commit after disable: %v", err)
	}
}
