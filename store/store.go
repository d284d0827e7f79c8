// Package store owns Parley's persistent state in one bbolt file: the
// appliance configuration, admin users, the audit trail and shell history
// (and, as the engine grows, XMPP accounts, rosters, offline queues).
//
// Every change is a small serializable Op applied by one function, Apply,
// in one bbolt transaction that is synced to disk before Apply returns. That
// function is the seam where a cluster log plugs in later: clustered, the same
// Op is applied on every node as the raft FSM. Reads go straight to bbolt.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the version of the layout this code reads and writes.
const SchemaVersion = 3

// FileName is the bbolt file's name inside the data directory.
const FileName = "parley.db"

var (
	bucketMeta    = []byte("meta")
	bucketConfig  = []byte("config")
	bucketAdmins  = []byte("admins")
	bucketAudit   = []byte("audit")
	bucketHistory = []byte("history")

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
// the first layout.
var migrations = []func(tx *bolt.Tx) error{
	func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketConfig, bucketAdmins, bucketAudit, bucketHistory} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
	// 1 → 2: the XMPP engine's data.
	func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketDomains, bucketAccounts, bucketRosters, bucketOffline, bucketVCards, bucketPrivate, bucketLast} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
	// 2 → 3: external components (call bridges).
	func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketComponents)
		return err
	},
}

// Store is the open configuration store.
type Store struct {
	db *bolt.DB

	mu       sync.Mutex
	watchers []func(Op)
}

// Open opens (creating it if needed) the store in dataDir and migrates it to
// SchemaVersion. A store written by a newer Parley is refused.
func Open(dataDir string) (*Store, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dataDir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%s is in use by another parley process", path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &Store{db: db}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate() error {
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
			if err := migrations[v](tx); err != nil {
				return fmt.Errorf("store: migrating to schema %d: %w", v+1, err)
			}
		}
		return meta.Put([]byte("schema"), []byte(fmt.Sprint(SchemaVersion)))
	})
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// Schema returns the schema version recorded in the file.
func (s *Store) Schema() (int, error) {
	v := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		_, err := fmt.Sscan(string(tx.Bucket(bucketMeta).Get([]byte("schema"))), &v)
		return err
	})
	return v, err
}

// Check verifies the store is readable and its pages are consistent.
func (s *Store) Check() error {
	return s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
}

// Watch registers fn to be called after every applied Op, in order, after
// the change is durable. fn must not block for long.
func (s *Store) Watch(fn func(Op)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watchers = append(s.watchers, fn)
}

// Apply applies one Op in a single synced transaction. It is the only way
// the store changes.
func (s *Store) Apply(op Op) error {
	if op.Time.IsZero() {
		op.Time = time.Now().UTC()
	}
	err := s.db.Update(func(tx *bolt.Tx) error { return apply(tx, op) })
	if err != nil {
		return err
	}
	s.mu.Lock()
	ws := append([]func(Op){}, s.watchers...)
	s.mu.Unlock()
	for _, w := range ws {
		w(op)
	}
	return nil
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
