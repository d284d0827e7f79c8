package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// flakyLog is a log that commits every entry but answers the first n
// commits with ErrMaybe, as a cluster whose leader died after committing
// but before answering.
type flakyLog struct {
	s     *Store
	mu    sync.Mutex
	n     int
	index uint64
	tries int
}

func (l *flakyLog) Commit(entry []byte) (uint64, any, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tries++
	l.index++
	resp, err := l.s.Apply(l.index, entry)
	if l.n > 0 {
		l.n--
		return 0, nil, fmt.Errorf("the leader lost its role while committing: %w", ErrMaybe)
	}
	return l.index, resp, err
}

// TestProposeOnce: a commit answered "may or may not" that was in fact
// made is proposed again, found applied (Duplicate), and applied once: one
// offline message stored, not two. Without the mark (Propose), the same
// log stores it twice.
func TestProposeOnce(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	// On the store's own log the outcome is always known: nothing is
	// marked or remembered.
	if _, err := s.ProposeOnce(context.Background(), ConfigSet{Key: "k", Value: "v"}); err != nil {
		t.Fatal(err)
	}
	s.view(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketOnceByID) != nil {
			t.Error("a standalone proposal was remembered")
		}
		return nil
	})
	l := &flakyLog{s: s, n: 1, index: s.AppliedIndex()}
	s.SetLog(l)
	r, err := s.ProposeOnce(context.Background(), OfflinePush{User: "bob@example.com", Stanza: []byte("<message/>")})
	if err != nil {
		t.Fatal(err)
	}
	if r.Response != (Duplicate{}) || l.tries != 2 {
		t.Fatalf("response %#v after %d tries, want Duplicate after 2", r.Response, l.tries)
	}
	if msgs, _ := s.OfflineAfter("bob@example.com", 0, 10); len(msgs) != 1 {
		t.Fatalf("%d messages stored, want 1", len(msgs))
	}

	// The same flaky log with a plain Propose: the caller is told it may
	// not have been made, and retrying stores it twice.
	l.n = 1
	if _, err := s.Propose(OfflinePush{User: "carol@example.com", Stanza: []byte("<message/>")}); !errors.Is(err, ErrMaybe) {
		t.Fatalf("Propose: %v", err)
	}
	s.Propose(OfflinePush{User: "carol@example.com", Stanza: []byte("<message/>")})
	if msgs, _ := s.OfflineAfter("carol@example.com", 0, 10); len(msgs) != 2 {
		t.Fatalf("%d messages stored by plain proposals, want 2 (the test's premise)", len(msgs))
	}

	// A definite error of the first try is returned as it is; an unknown
	// outcome that never settles ends with the context, as ErrMaybe.
	s.SetLog(errLog{errors.New("disk full")})
	if _, err := s.ProposeOnce(context.Background(), ConfigSet{Key: "k", Value: "v"}); err == nil || err.Error() != "disk full" {
		t.Fatalf("definite error: %v", err)
	}
	// Unknown, then refused for good on the retry (what it adds exists
	// now): that answer, not the wait.
	s.SetLog(&seqLog{errs: []error{ErrMaybe, fmt.Errorf("no leader: %w", ErrNotMade), ErrExists}})
	start := time.Now()
	if _, err := s.ProposeOnce(context.Background(), ConfigSet{Key: "k", Value: "v"}); !errors.Is(err, ErrExists) || time.Since(start) > 2*time.Second {
		t.Fatalf("definite error on a retry: %v after %v", err, time.Since(start))
	}
	s.SetLog(errLog{ErrMaybe})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := s.ProposeOnce(ctx, ConfigSet{Key: "k", Value: "v"}); !errors.Is(err, ErrMaybe) {
		t.Fatalf("never settled: %v", err)
	}
}

// seqLog answers its errors in turn, then the last one.
type seqLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *seqLog) Commit([]byte) (uint64, any, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.errs[0]
	if len(l.errs) > 1 {
		l.errs = l.errs[1:]
	}
	return 0, nil, err
}

type errLog struct{ err error }

func (l errLog) Commit([]byte) (uint64, any, error) { return 0, nil, l.err }

// TestOnceSurvivesSnapshot: the ids of marked entries are in the
// replicated store: a node restored from a snapshot skips an entry that
// was applied before the snapshot.
func TestOnceSurvivesSnapshot(t *testing.T) {
	a := open(t, t.TempDir())
	defer a.Close()
	entry, err := EncodeEntry(Entry{Time: time.Unix(1, 0), ID: "req-1", Once: true, Op: OfflinePush{User: "bob@example.com", Stanza: []byte("<message/>")}})
	if err != nil {
		t.Fatal(err)
	}
	next := a.AppliedIndex() + 1
	if resp, err := a.Apply(next, entry); err != nil || resp != nil {
		t.Fatalf("first apply: %v %v", resp, err)
	}
	b := restoredCopy(t, a)
	if resp, err := b.Apply(next+1, entry); err != nil || resp != (Duplicate{}) {
		t.Fatalf("the same entry after the restore: %v %v, want Duplicate", resp, err)
	}
	if msgs, _ := b.OfflineAfter("bob@example.com", 0, 10); len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	if _, err := EncodeEntry(Entry{Once: true, Op: ConfigSet{Key: "k"}}); err == nil {
		t.Fatal("a marked entry without its id encoded")
	}
}

// TestOnceWindow: ids older than onceWindow entries are forgotten.
func TestOnceWindow(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, x := range []struct {
			id    string
			index uint64
		}{{"old", 5}, {"mid", onceWindow}, {"new", onceWindow + 6}} {
			if err := recordOnce(tx, x.id, x.index); err != nil {
				return err
			}
		}
		if seenOnce(tx, "old") || !seenOnce(tx, "mid") || !seenOnce(tx, "new") {
			return errors.New("window: want old forgotten, mid and new kept")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
