package store

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SnapshotInfo is what a snapshot file holds, as `backup list` shows it.
type SnapshotInfo struct {
	Schema     int
	Applied    uint64 // the log index the snapshot was taken at
	Domains    int
	Accounts   int
	Components int
	Admins     int
}

// InspectSnapshot opens a snapshot file (written by Snapshot) read-only,
// checks it as Restore would, and counts what it holds.
func InspectSnapshot(path string) (SnapshotInfo, error) {
	if err := checkSnapshot(path); err != nil {
		return SnapshotInfo{}, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("not a store snapshot: %w", err)
	}
	defer db.Close()
	var info SnapshotInfo
	err = db.View(func(tx *bolt.Tx) error {
		fmt.Sscan(string(tx.Bucket(bucketMeta).Get([]byte("schema"))), &info.Schema)
		info.Applied = appliedIndex(tx)
		count := func(name []byte) int {
			if b := tx.Bucket(name); b != nil {
				return b.Stats().KeyN
			}
			return 0
		}
		info.Domains = count(bucketDomains)
		info.Accounts = count(bucketAccounts)
		info.Components = count(bucketComponents)
		info.Admins = count(bucketAdmins)
		return nil
	})
	return info, err
}

// Clustered reports whether this node is in a cluster: proposals commit
// through another log than the store's own (the cluster's raft log,
// SetLog), or the node is marked as a member (SetClustered).
func (s *Store) Clustered() bool {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log != Log(s.local) || s.member.Load()
}
