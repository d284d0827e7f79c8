package store

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Exactly once. When the log cannot tell whether a change was committed
// (on a cluster, the leader died or lost its role while committing it:
// ErrMaybe), proposing it again could apply it twice — a message stored
// twice, a roster push sent twice. ProposeOnce marks its entry (Entry.Once)
// and proposes the same entry, with the same request id, again until the
// answer is certain; the FSM applies a marked entry only if its id was not
// applied before, and remembers the ids of the last onceWindow log entries
// (in the replicated store, so every node, and a node restored from a
// snapshot, decides the same).

// ErrMaybe is the error (errors.Is) of a proposal whose outcome is not
// known: the change may or may not have been made.
var ErrMaybe = errors.New("the change may or may not have been made")

// ErrNotMade is the error (errors.Is) of a proposal that was not committed
// (no leader, a leader busy or stepping down): it may be proposed again.
var ErrNotMade = errors.New("the change was not made")

// Duplicate is the response of a marked entry whose id was applied before:
// nothing was done again.
type Duplicate struct{}

var (
	bucketOnceByID    = []byte("once.id")    // request id → log index
	bucketOnceByIndex = []byte("once.index") // log index → request id
)

// onceWindow is how many log entries back a marked entry's id is
// remembered: far more than a proposal is retried for.
const onceWindow = 100000

// onceRetry bounds the retries of ProposeOnce when the context has no
// deadline.
const onceRetry = 10 * time.Second

// seenOnce reports whether a marked entry's id was applied before.
func seenOnce(tx *bolt.Tx, id string) bool {
	b := tx.Bucket(bucketOnceByID)
	return b != nil && b.Get([]byte(id)) != nil
}

// recordOnce remembers a marked entry's id at index and forgets those
// older than onceWindow entries.
func recordOnce(tx *bolt.Tx, id string, index uint64) error {
	byID, err := tx.CreateBucketIfNotExists(bucketOnceByID)
	if err != nil {
		return err
	}
	byIndex, err := tx.CreateBucketIfNotExists(bucketOnceByIndex)
	if err != nil {
		return err
	}
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], index)
	if err := byID.Put([]byte(id), k[:]); err != nil {
		return err
	}
	if err := byIndex.Put(k[:], []byte(id)); err != nil {
		return err
	}
	if index <= onceWindow {
		return nil
	}
	c := byIndex.Cursor()
	for ik, v := c.First(); ik != nil && binary.BigEndian.Uint64(ik) < index-onceWindow; ik, v = c.First() {
		if err := byID.Delete(v); err != nil {
			return err
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// ProposeOnce is Propose for a change that must not be applied twice: when
// the outcome of a commit is not known (ErrMaybe), the same entry is
// proposed again, until it is committed (or found committed before: then
// the Result's Response is Duplicate) or ctx ends (then the error is
// ErrMaybe's). Any other error of the first try is returned as it is.
//
// Only a cluster's log can leave the outcome unknown: on the store's own
// log the entry is not marked, and costs nothing more than Propose.
func (s *Store) ProposeOnce(ctx context.Context, op Op) (Result, error) {
	entry := Entry{Kind: op.Kind(), Time: time.Now().UTC(), ID: newRequestID(), Op: op}
	var data []byte
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, onceRetry)
		defer cancel()
	}
	var first error
	for {
		s.logMu.RLock()
		if data == nil {
			entry.Once = s.log != Log(s.local) || s.member.Load()
			var err error
			if data, err = EncodeEntry(entry); err != nil {
				s.logMu.RUnlock()
				return Result{}, err
			}
		}
		idx, resp, err := s.log.Commit(data)
		s.logMu.RUnlock()
		if err == nil {
			return Result{Index: idx, Response: resp}, nil
		}
		if first == nil {
			if !errors.Is(err, ErrMaybe) {
				return Result{}, err
			}
			first = err
		} else if !errors.Is(err, ErrMaybe) && !errors.Is(err, ErrNotMade) {
			// Committed this time, and refused by the state (say, what
			// it adds exists): the first try was not applied, or this
			// one would have been a Duplicate.
			return Result{}, err
		}
		// The first try may have been committed: only a commit (or
		// finding it committed) settles it.
		select {
		case <-ctx.Done():
			return Result{}, first
		case <-time.After(200 * time.Millisecond):
		}
	}
}
