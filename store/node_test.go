package store

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writeSchema4 builds a data directory as Parley with schema 4 left it:
// hostname, xmpp.enabled and the audit trail in the replicated file,
// xmpp.listen and the history in node.db.
func writeSchema4(t *testing.T, dir string) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, _ := tx.CreateBucket(bucketMeta)
		meta.Put([]byte("schema"), []byte("4"))
		for _, b := range [][]byte{bucketConfig, bucketAdmins, bucketAudit, bucketDomains, bucketAccounts,
			bucketRosters, bucketOffline, bucketVCards, bucketPrivate, bucketLast, bucketComponents} {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		cfg := tx.Bucket(bucketConfig)
		cfg.Put([]byte(XMPPEnabled), []byte("true"))
		cfg.Put([]byte(ConfigHostname), []byte("old"))
		cfg.Put([]byte(XMPPPortC2S), []byte("5333"))
		a := tx.Bucket(bucketAudit)
		for i := 0; i < 3; i++ {
			n, _ := a.NextSequence()
			putJSON(a, string(seqKey(n)), AuditEntry{Time: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC), User: "root", Action: fmt.Sprint("act ", i), Result: "ok"})
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	node, err := openNode(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	node.Update(func(tx *bolt.Tx) error { return tx.Bucket(nodeConfig).Put([]byte(XMPPListen), []byte("127.0.0.1")) })
}

func TestMigrationSchema5MovesNodeLocalSettingsAndAudit(t *testing.T) {
	dir := t.TempDir()
	writeSchema4(t, dir)
	s := open(t, dir)
	if v, _ := s.Schema(); v != SchemaVersion {
		t.Errorf("schema %d", v)
	}
	check := func() {
		t.Helper()
		if v, ok := s.Config(ConfigHostname); !ok || v != "old" {
			t.Errorf("hostname = %q %v", v, ok)
		}
		cfg, _ := s.XMPP()
		if !cfg.Enabled || cfg.PortC2S != 5333 || strings.Join(cfg.Listen, " ") != "127.0.0.1" {
			t.Errorf("xmpp: %+v", cfg)
		}
		a, _ := s.Audit(10)
		if len(a) != 3 || a[0].Action != "act 0" || a[2].Action != "act 2" || a[2].User != "root" {
			t.Errorf("audit: %+v", a)
		}
		for _, line := range dump(t, s) {
			if strings.HasPrefix(line, "audit") || strings.Contains(line, `"hostname"`) || strings.Contains(line, XMPPEnabled) {
				t.Errorf("node-local data in the replicated store: %s", line)
			}
		}
	}
	check()
	// The trail goes on after the old entries.
	s.AddAudit(AuditEntry{User: "root", Action: "act 3"})
	if a, _ := s.Audit(1); len(a) != 1 || a[0].Action != "act 3" {
		t.Errorf("audit after migration: %+v", a)
	}
	s.Close()
	s = open(t, dir) // nothing more to migrate
	defer s.Close()
	if a, _ := s.Audit(10); len(a) != 4 {
		t.Errorf("audit after reopening: %+v", a)
	}
	for _, k := range []string{ConfigHostname, XMPPEnabled, ClusterTrust} {
		if err := prop(s, ConfigSet{Key: k, Value: "x"}); err == nil {
			t.Errorf("the node-local %s went through the log", k)
		}
	}
}

// A restored snapshot of an older schema is not this node's: its
// node-local data is dropped, this node's kept.
func TestRestoreOfOldSnapshotKeepsThisNodesLocalData(t *testing.T) {
	old := t.TempDir()
	writeSchema4(t, old)
	snap, err := bolt.Open(filepath.Join(old, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	snap.View(func(tx *bolt.Tx) error { _, err := tx.WriteTo(&buf); return err })
	snap.Close()

	s := open(t, t.TempDir())
	defer s.Close()
	s.SetLocal(ConfigHostname, "mine")
	s.AddAudit(AuditEntry{User: "me", Action: "mine"})
	if err := s.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Config(ConfigHostname); v != "mine" {
		t.Errorf("hostname after restore: %q", v)
	}
	if cfg, _ := s.XMPP(); cfg.Enabled || cfg.PortC2S != 5333 {
		t.Errorf("xmpp after restore: %+v", cfg)
	}
	if a, _ := s.Audit(10); len(a) != 1 || a[0].Action != "mine" {
		t.Errorf("audit after restore: %+v", a)
	}
	for _, line := range dump(t, s) {
		if strings.HasPrefix(line, "audit") || strings.Contains(line, `"hostname"`) {
			t.Errorf("node-local data in the replicated store: %s", line)
		}
	}
}

func TestClusteredStoreRefusesLocalCommits(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	mustApply(t, s, admin("root", RoleAdmin))
	if err := s.SetClustered(true); err != nil {
		t.Fatal(err)
	}
	before := s.AppliedIndex()
	check := func() {
		t.Helper()
		_, err := s.Propose(ConfigSet{Key: XMPPPortC2S, Value: "1"})
		if !errors.Is(err, ErrClusterLogDown) || !strings.HasPrefix(err.Error(), "this node is in a cluster whose log is not running: ") {
			t.Fatalf("a local commit on a cluster member: %v", err)
		}
		if s.AppliedIndex() != before {
			t.Errorf("applied index moved: %d → %d", before, s.AppliedIndex())
		}
		if !s.Clustered() {
			t.Error("Clustered() is false on a member")
		}
		// Node-local writes go on.
		if err := s.SetLocal(ConfigHostname, "n1"); err != nil {
			t.Error(err)
		}
		if err := s.AddHistory("root", "xmpp"); err != nil {
			t.Error(err)
		}
		if err := s.RecordLogin("root", time.Now()); err != nil {
			t.Error(err)
		}
		if err := s.AddAudit(AuditEntry{User: "root", Action: "xmpp callbridge list", Result: "ok"}); err != nil {
			t.Error(err)
		}
		// The FSM (raft's Apply) still applies the cluster's entries.
		data, _ := EncodeEntry(Entry{Kind: "config.set", Time: time.Now(), Op: ConfigSet{Key: XMPPPortS2S, Value: "7"}})
		before++
		if _, err := s.Apply(before, data); err != nil || s.ConfigInt(XMPPPortS2S) != 7 {
			t.Errorf("FSM apply on a member: %v", err)
		}
	}
	check()
	// The mark is kept across a restart: nothing commits before the
	// cluster starts.
	s.Close()
	s = open(t, dir)
	defer s.Close()
	check()
	// Leaving the cluster: local commits again.
	if err := s.SetClustered(false); err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, ConfigSet{Key: XMPPPortC2S, Value: "1"})
	if s.Clustered() {
		t.Error("Clustered() after SetClustered(false)")
	}
}

// An audit entry in a log written before the trail was node-local still
// decodes, and applies as nothing.
func TestOldAuditEntryIsANoOp(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	data, _ := EncodeEntry(Entry{Kind: "audit", Time: time.Now(), Op: AuditAdd{Entry: AuditEntry{User: "u", Action: "a"}}})
	if _, err := s.Apply(1, data); err != nil {
		t.Fatal(err)
	}
	if s.AppliedIndex() != 1 {
		t.Errorf("applied %d", s.AppliedIndex())
	}
	if a, _ := s.Audit(10); len(a) != 0 {
		t.Errorf("audit: %+v", a)
	}
}
