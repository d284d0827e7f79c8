package store

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/parley-xmpp/parley/server/metrics"
)

// Log is where proposals are committed. Commit makes an encoded entry
// durable at the next index, has the FSM (Store.Apply) apply it, and
// returns the index and the FSM's response, or the op's error.
//
// Standalone, the store's own local log does this in one synced bbolt
// transaction per batch of concurrent proposals (group commit); it refuses
// every proposal on a node marked as a cluster member (SetClustered), so
// nothing can slip into the store past the cluster's log. Clustered,
// a raft implementation calls raft.Apply on the leader and waits for the
// future: raft then calls Store.Apply on every node.
type Log interface {
	Commit(entry []byte) (index uint64, response any, err error)
}

// Result is what a committed proposal returns.
type Result struct {
	Index    uint64 // the entry's log index
	Response any    // the op's response (e.g. a SubscribeResult)
}

// ErrClosed is returned by proposals after Close.
var ErrClosed = errors.New("store: closed")

// SetLog makes proposals commit through l (the cluster's raft log)
// instead of the local log; nil restores the local log. It waits for the
// proposals in flight through the previous log to finish (and holds new
// ones until it returns), so nothing commits through the old log after
// it (the cluster reads the applied index after switching).
func (s *Store) SetLog(l Log) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if l == nil {
		l = s.local
	}
	s.log = l
}

// Propose commits one change: it stamps the time and a request id,
// encodes the entry and commits it through the log. It returns once the
// change is durable and applied (watchers may still be running: see
// Settle), with the op's error if it failed; a failed op changes nothing.
func (s *Store) Propose(op Op) (Result, error) {
	return s.ProposeAt(time.Now(), op)
}

// ProposeAt is Propose with a given time (imports, tests).
func (s *Store) ProposeAt(at time.Time, op Op) (Result, error) {
	data, err := EncodeEntry(Entry{Kind: op.Kind(), Time: at.UTC(), ID: newRequestID(), Op: op})
	if err != nil {
		return Result{}, err
	}
	s.logMu.RLock() // held while committing: see SetLog
	defer s.logMu.RUnlock()
	idx, resp, err := s.log.Commit(data)
	return Result{Index: idx, Response: resp}, err
}

// ProposeSettled proposes op once (ProposeOnce: a commit whose outcome is
// unknown is settled, not repeated) and, if it was applied, waits until
// every watcher has processed it (Settle): when it returns, the engine has
// acted on the change. Shell commands write this way; hot paths do not.
func (s *Store) ProposeSettled(ctx context.Context, op Op) (Result, error) {
	r, err := s.ProposeOnce(ctx, op)
	if err != nil {
		return r, err
	}
	return r, s.Settle(ctx, r.Index)
}

// localLog is the standalone log: a goroutine that commits everything
// proposed while the previous commit was in flight as one batch, in one
// synced transaction (group commit). Each proposer waits until its batch
// is durable.
type localLog struct {
	s *Store

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []*proposal
	closed  bool
	stopped chan struct{}
}

type proposal struct {
	entry []byte
	res   Applied
	done  chan struct{}
}

// maxBatch bounds one group commit: an op that fails makes the batch's
// transaction run again without it.
const maxBatch = 256

func newLocalLog(s *Store) *localLog {
	l := &localLog{s: s, stopped: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	go l.run()
	return l
}

func (l *localLog) Commit(entry []byte) (uint64, any, error) {
	if l.s.member.Load() {
		return 0, nil, ErrClusterLogDown
	}
	defer metrics.StoreCommit(time.Now()) // proposal to durable and applied
	p := &proposal{entry: entry, done: make(chan struct{})}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, nil, ErrClosed
	}
	l.queue = append(l.queue, p)
	l.cond.Signal()
	l.mu.Unlock()
	<-p.done
	return p.res.Index, p.res.Response, p.res.Err
}

func (l *localLog) run() {
	defer close(l.stopped)
	for {
		l.mu.Lock()
		for len(l.queue) == 0 && !l.closed {
			l.cond.Wait()
		}
		if len(l.queue) == 0 {
			l.mu.Unlock()
			return
		}
		n := min(len(l.queue), maxBatch)
		batch := l.queue[:n:n]
		l.queue = l.queue[n:]
		l.mu.Unlock()

		entries := make([][]byte, len(batch))
		for i, p := range batch {
			entries[i] = p.entry
		}
		for i, r := range l.s.applyBatch(0, entries) {
			batch[i].res = r
			close(batch[i].done)
		}
	}
}

// close commits what is queued, then stops.
func (l *localLog) close() {
	l.mu.Lock()
	l.closed = true
	l.cond.Signal()
	l.mu.Unlock()
	<-l.stopped
}
