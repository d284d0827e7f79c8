// Package store owns Parley's persistent state: the replicated state in
// one bbolt file (parley.db: configuration, domains, components and their
// secrets, admin users, XMPP accounts, rosters, offline
// queues, vCards, private XML, last activity) and the node-local state in
// another (node.db: shell history, last logins, the audit trail, the
// node-local settings hostname, xmpp.listen, xmpp.enabled and
// cluster.trust, and whether the node is in a cluster).
//
// The replicated store is a state machine in the shape of hashicorp/raft's
// FSM. A change is a typed Op (ConfigSet, AdminCreate, OfflinePush …).
// Propose stamps it with the time and a request id, encodes it as a log
// entry and commits it through a Log: standalone, the local log commits
// the entries that arrive together in one synced transaction (group
// commit); clustered, raft.Apply will. The FSM, Store.Apply(index, entry),
// is deterministic: it never reads the clock or the network (the time
// travels in the entry), and it records the applied index in the same
// transaction. Snapshot and Restore cover the whole replicated store.
// Watchers are told of each change after it commits, in log order, by a
// goroutine of the store's own; Settle waits until they have processed
// it. Node-local data never goes through the log. Reads go straight to
// bbolt. docs/developing.md explains how to add an op kind.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the version of the layout this code reads and writes.
const SchemaVersion = 5

// FileName is the replicated store's bbolt file inside the data directory.
const FileName = "parley.db"

var (
	bucketMeta    = []byte("meta")
	bucketConfig  = []byte("config")
	bucketAdmins  = []byte("admins")
	bucketAudit   = []byte("audit")   // node-local since schema 5 (node.db)
	bucketHistory = []byte("history") // node-local since schema 4 (node.db)

	bucketDomains  = []byte("xmpp.domains")
	bucketAccounts = []byte("xmpp.accounts")
	bucketRosters  = []byte("xmpp.rosters")
	bucketOffline  = []byte("xmpp.offline")
	bucketVCards   = []byte("xmpp.vcards")
	bucketPrivate  = []byte("xmpp.private")
	bucketLast     = []byte("xmpp.last")

	bucketComponents = []byte("xmpp.components")
)

// migrations[i] brings a store from schema i to i+1. migrations[0] creates
// the first layout. restored is true when the file is a snapshot being
// restored (Restore): it is not this node's, so a migration drops its
// node-local data instead of moving it into node.db.
var migrations = []func(s *Store, tx *bolt.Tx, restored bool) error{
	func(s *Store, tx *bolt.Tx, _ bool) error {
		for _, b := range [][]byte{bucketConfig, bucketAdmins, bucketAudit, bucketHistory} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
	// 1 → 2: the XMPP engine's data.
	func(s *Store, tx *bolt.Tx, _ bool) error {
		for _, b := range [][]byte{bucketDomains, bucketAccounts, bucketRosters, bucketOffline, bucketVCards, bucketPrivate, bucketLast} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
	// 2 → 3: external components (call bridges).
	func(s *Store, tx *bolt.Tx, _ bool) error {
		_, err := tx.CreateBucketIfNotExists(bucketComponents)
		return err
	},
	// 3 → 4: node-local data moves to node.db (node.go).
	func(s *Store, tx *bolt.Tx, restored bool) error { return s.moveNodeLocal(tx, restored) },
	// 4 → 5: hostname, xmpp.enabled and the audit trail become
	// node-local (node.go).
	func(s *Store, tx *bolt.Tx, restored bool) error { return s.moveNodeLocal5(tx, restored) },
}

// Store is the open store.
type Store struct {
	dir  string
	path string

	// dbMu guards db, which Restore swaps; reads and FSM transactions
	// hold it shared.
	dbMu sync.RWMutex
	db   *bolt.DB
	node *bolt.DB // node-local data (node.go)

	logMu sync.RWMutex // Propose holds it shared while committing
	log   Log
	local *localLog
	// member: this node is in a cluster, so the local log refuses
	// (SetClustered, kept in node.db).
	member atomic.Bool

	notes *notifier

	onAudit atomic.Pointer[func(AuditEntry)] // OnAudit
}

// Open opens (creating them if needed) the stores in dataDir and migrates
// them to SchemaVersion. A store written by a newer Parley is refused.
func Open(dataDir string) (*Store, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	s := &Store{dir: dataDir, path: filepath.Join(dataDir, FileName)}
	db, err := openBolt(s.path)
	if err != nil {
		return nil, err
	}
	s.db = db
	if s.node, err = openNode(dataDir); err != nil {
		db.Close()
		return nil, err
	}
	err = s.migrate(false)
	if err == nil {
		err = s.loadClustered()
	}
	if err != nil {
		db.Close()
		s.node.Close()
		return nil, err
	}
	s.notes = newNotifier()
	s.local = newLocalLog(s)
	s.log = s.local
	return s, nil
}

func openBolt(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%s is in use by another parley process", path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

func (s *Store) migrate(restored bool) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		v := 0
		if b := meta.Get([]byte("schema")); b != nil {
			if _, err := fmt.Sscan(string(b), &v); err != nil {
				return fmt.Errorf("store: bad schema version %q", b)
			}
		}
		if v > SchemaVersion {
			return fmt.Errorf("store: schema version %d is newer than this parley understands (%d): run a newer parley", v, SchemaVersion)
		}
		for ; v < SchemaVersion; v++ {
			if err := migrations[v](s, tx, restored); err != nil {
				return fmt.Errorf("store: migrating to schema %d: %w", v+1, err)
			}
		}
		return meta.Put([]byte("schema"), []byte(fmt.Sprint(SchemaVersion)))
	})
}

// Close stops the log and the watchers' goroutine (after it has told them
// of every committed change) and closes the files.
func (s *Store) Close() error {
	s.local.close()
	s.notes.close()
	s.node.Close()
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	return s.db.Close()
}

// view runs a read-only transaction on the replicated store.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	return s.db.View(fn)
}

// Schema returns the schema version recorded in the file.
func (s *Store) Schema() (int, error) {
	v := 0
	err := s.view(func(tx *bolt.Tx) error {
		_, err := fmt.Sscan(string(tx.Bucket(bucketMeta).Get([]byte("schema"))), &v)
		return err
	})
	return v, err
}

// Check verifies the store is readable and its pages are consistent.
func (s *Store) Check() error {
	return s.view(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
}

func getJSON(b *bolt.Bucket, key string, v any) (bool, error) {
	data := b.Get([]byte(key))
	if data == nil {
		return false, nil
	}
	return true, json.Unmarshal(data, v)
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

func seqKey(n uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], n)
	return k[:]
}
