package store

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// keyApplied (in the meta bucket) is the index of the last log entry
// applied, written in the same transaction as the entry's changes.
var keyApplied = []byte("applied")

// Applied is the outcome of one log entry.
type Applied struct {
	Index    uint64
	Response any
	Err      error // the op's error: the entry changed nothing
}

// Apply is the FSM: it applies the encoded log entry at index in one
// synced transaction and returns the op's response, or its error (then the
// entry changed nothing but its index is recorded as applied, as raft's
// log keeps it). It is deterministic: it never reads the clock or the
// network. An entry at or below the applied index is skipped.
func (s *Store) Apply(index uint64, entry []byte) (any, error) {
	r := s.applyBatch(index, [][]byte{entry})[0]
	return r.Response, r.Err
}

// ApplyBatch applies consecutive entries, the first at index first, in
// one transaction (raft's BatchingFSM). Each entry is all or nothing: one
// that fails is rolled back and the others are applied as if it had been
// alone, so the outcome is that of applying them one by one.
func (s *Store) ApplyBatch(first uint64, entries [][]byte) []Applied {
	return s.applyBatch(first, entries)
}

// AppliedIndex is the index of the last log entry applied.
func (s *Store) AppliedIndex() uint64 {
	var n uint64
	s.view(func(tx *bolt.Tx) error { n = appliedIndex(tx); return nil })
	return n
}

func appliedIndex(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(keyApplied); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// applyBatch is ApplyBatch; first 0 means "after the applied index" (the
// local log, which numbers its entries as it commits them).
func (s *Store) applyBatch(first uint64, entries [][]byte) []Applied {
	out := make([]Applied, len(entries))
	decoded := make([]Entry, len(entries))
	failed := make([]bool, len(entries))
	dup := make([]bool, len(entries)) // marked entries applied before (ProposeOnce)
	for i, data := range entries {
		e, err := DecodeEntry(data)
		decoded[i], out[i].Err, failed[i] = e, err, err != nil
	}
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	for {
		tx, err := s.db.Begin(true)
		if err != nil {
			for i := range out {
				out[i].Err = err
			}
			return out
		}
		applied := appliedIndex(tx)
		start := first
		if start == 0 {
			start = applied + 1
		}
		again := false
		for i := range entries {
			out[i].Index = start + uint64(i)
			if failed[i] || out[i].Index <= applied {
				continue
			}
			if decoded[i].Once && seenOnce(tx, decoded[i].ID) {
				out[i].Response, dup[i] = Duplicate{}, true
				continue
			}
			resp, err := decoded[i].Op.apply(tx, decoded[i].Time)
			if err == nil && decoded[i].Once {
				err = recordOnce(tx, decoded[i].ID, out[i].Index)
			}
			if err != nil {
				// Roll back and run the batch again without it.
				out[i].Err, failed[i], again = err, true, true
				break
			}
			out[i].Response = resp
		}
		if again {
			tx.Rollback()
			for i := range out {
				if !failed[i] {
					out[i].Response = nil
				}
				dup[i] = false
			}
			continue
		}
		last := start + uint64(len(entries)) - 1
		if last > applied {
			var v [8]byte
			binary.BigEndian.PutUint64(v[:], last)
			if err := tx.Bucket(bucketMeta).Put(keyApplied, v[:]); err != nil {
				tx.Rollback()
				return failAll(out, err)
			}
		}
		if err := tx.Commit(); err != nil {
			return failAll(out, err)
		}
		var changes []Change
		for i := range entries {
			if failed[i] || dup[i] || out[i].Index <= applied {
				continue
			}
			changes = append(changes, Change{Index: out[i].Index, Time: decoded[i].Time, Op: decoded[i].Op})
			s.afterCommit(decoded[i].Op)
		}
		s.notes.enqueue(changes, last)
		return out
	}
}

func failAll(out []Applied, err error) []Applied {
	for i := range out {
		if out[i].Err == nil {
			out[i].Err, out[i].Response = err, nil
		}
	}
	return out
}

// afterCommit cleans up the node-local data that belonged to what a
// committed op deleted.
func (s *Store) afterCommit(op Op) {
	if d, ok := op.(AdminDelete); ok {
		s.dropNodeUser(d.Name)
	}
}

// Snapshot writes the whole replicated store (every bucket, the applied
// index and the schema version) to w, as of one consistent read
// transaction; node-local data is not in it.
func (s *Store) Snapshot(w io.Writer) error {
	return s.view(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(w)
		return err
	})
}

// Restored is the Change watchers get after Restore: everything may have
// changed. It is never in the log.
type Restored struct{}

func (Restored) Kind() OpKind { return "restore" }
func (Restored) apply(*bolt.Tx, time.Time) (any, error) {
	return nil, fmt.Errorf("store: a restore is not a log operation")
}

// Restore replaces the replicated store with a snapshot, on a live store:
// the snapshot is written beside the file and checked, then, with
// proposals and reads held off, swapped in by a rename and opened (and
// migrated if it is older). Watchers then get one Restored change.
func (s *Store) Restore(r io.Reader) error {
	tmp := s.path + ".restore"
	if err := writeSynced(tmp, r); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store: restore: %w", err)
	}
	if err := checkSnapshot(tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store: restore: %w", err)
	}
	s.dbMu.Lock()
	if err := s.db.Close(); err != nil {
		s.dbMu.Unlock()
		return err
	}
	renameErr := os.Rename(tmp, s.path)
	if renameErr == nil {
		syncDir(filepath.Dir(s.path))
	}
	db, err := openBolt(s.path) // the new file, or the old one if the rename failed
	if err != nil {
		s.dbMu.Unlock()
		return fmt.Errorf("store: restore: %w (the store is closed: restart parley)", err)
	}
	s.db = db
	err = s.migrate(true)
	s.dbMu.Unlock()
	if renameErr != nil {
		os.Remove(tmp)
		return fmt.Errorf("store: restore: %w", renameErr)
	}
	if err != nil {
		return err
	}
	s.notes.enqueue([]Change{{Index: s.AppliedIndex(), Op: Restored{}}}, 0)
	return nil
}

func writeSynced(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// checkSnapshot opens a snapshot file read-only and checks it is a store
// this parley can read.
func checkSnapshot(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("not a store snapshot: %w", err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return fmt.Errorf("not a store snapshot: no meta bucket")
		}
		v := 0
		if _, err := fmt.Sscan(string(meta.Get([]byte("schema"))), &v); err != nil {
			return fmt.Errorf("not a store snapshot: bad schema version")
		}
		if v > SchemaVersion {
			return fmt.Errorf("the snapshot's schema version %d is newer than this parley understands (%d)", v, SchemaVersion)
		}
		for err := range tx.Check() {
			return fmt.Errorf("the snapshot is damaged: %w", err)
		}
		return nil
	})
}
