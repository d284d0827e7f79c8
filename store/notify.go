package store

import (
	"context"
	"sync"
	"time"
)

// Change is what watchers are told after a change committed.
type Change struct {
	Index uint64    // the log index (0 for a node-local change)
	Time  time.Time // the entry's time
	Op    Op        // the typed op; Restored after Restore
	Local bool      // a node-local setting (SetLocal, DelLocal): Op is ConfigSet or ConfigDel
}

// Watch registers fn to be called with every change after it is durable,
// in log order, on the store's notifier goroutine (never the proposer's).
// fn must not block for long, and must not call Settle or ProposeSettled.
func (s *Store) Watch(fn func(Change)) {
	s.notes.mu.Lock()
	defer s.notes.mu.Unlock()
	s.notes.watchers = append(s.notes.watchers, fn)
}

// Settle waits until every watcher has processed every change committed
// up to index, and every change queued before the call (node-local ones
// included), or until ctx is done.
func (s *Store) Settle(ctx context.Context, index uint64) error {
	return s.notes.settle(ctx, index)
}

// notifier delivers changes to the watchers on a goroutine of its own.
type notifier struct {
	mu       sync.Mutex
	cond     *sync.Cond
	watchers []func(Change)
	queue    []notice
	queued   uint64 // notices ever queued
	done     uint64 // notices delivered
	index    uint64 // every change up to this log index is delivered
	closed   bool
	stopped  chan struct{}
}

// notice is one queued change, or (Change nil) a mark that every entry
// up to index has been delivered (a batch whose last op failed).
type notice struct {
	change *Change
	index  uint64
}

func newNotifier() *notifier {
	n := &notifier{stopped: make(chan struct{})}
	n.cond = sync.NewCond(&n.mu)
	go n.run()
	return n
}

// enqueue queues changes; through, if not 0, is the log index up to which
// the FSM has now applied everything.
func (n *notifier) enqueue(changes []Change, through uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := range changes {
		n.queue = append(n.queue, notice{change: &changes[i], index: changes[i].Index})
		n.queued++
	}
	if through != 0 {
		n.queue = append(n.queue, notice{index: through})
		n.queued++
	}
	n.cond.Broadcast()
}

func (n *notifier) run() {
	defer close(n.stopped)
	n.mu.Lock()
	defer n.mu.Unlock()
	for {
		for len(n.queue) == 0 && !n.closed {
			n.cond.Wait()
		}
		if len(n.queue) == 0 {
			return
		}
		batch := n.queue
		n.queue = nil
		ws := n.watchers
		n.mu.Unlock()
		for _, x := range batch {
			if x.change == nil {
				continue
			}
			for _, w := range ws {
				w(*x.change)
			}
		}
		n.mu.Lock()
		n.done += uint64(len(batch))
		for _, x := range batch {
			n.index = max(n.index, x.index)
		}
		n.cond.Broadcast()
	}
}

func (n *notifier) settle(ctx context.Context, index uint64) error {
	stop := context.AfterFunc(ctx, func() {
		n.mu.Lock()
		n.cond.Broadcast()
		n.mu.Unlock()
	})
	defer stop()
	n.mu.Lock()
	defer n.mu.Unlock()
	target := n.queued
	for n.done < target || n.index < index {
		if err := ctx.Err(); err != nil {
			return err
		}
		if n.closed && len(n.queue) == 0 && n.done >= n.queued {
			return ErrClosed
		}
		n.cond.Wait()
	}
	return nil
}

// close delivers what is queued, then stops.
func (n *notifier) close() {
	n.mu.Lock()
	n.closed = true
	n.cond.Broadcast()
	n.mu.Unlock()
	<-n.stopped
}
