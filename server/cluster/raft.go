package cluster

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/store"
)

// raftNode is a running raft instance and what it is made of.
type raftNode struct {
	r      *raft.Raft
	trans  *raft.NetworkTransport
	stream *streamLayer
	logs   *raftboltdb.BoltStore
	fsm    *fsm
}

// voters is the latest raft configuration's servers.
func (n *raftNode) voters() []raft.Server {
	f := n.r.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	return f.Configuration().Servers
}

// hclog is raft's logger: warnings and errors, into the node's log, each
// kind of line at most once per raftLogEvery (raft repeats its
// complaints about an unreachable node several times a second).
func (c *Cluster) hclog() hclog.Logger {
	c.raftLogOnce.Do(func() {
		c.raftLog = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, DisableTime: true,
			Output: &limitedLog{log: c.log, last: map[string]time.Time{}}})
	})
	return c.raftLog
}

const raftLogEvery = 30 * time.Second

type limitedLog struct {
	log  *slog.Logger
	mu   sync.Mutex
	last map[string]time.Time
}

func (l *limitedLog) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	// The message and its first field (e.g. which peer).
	key := line
	if i := strings.IndexByte(line, '='); i >= 0 {
		if j := strings.IndexByte(line[i:], ' '); j >= 0 {
			key = line[:i+j]
		}
	}
	now := time.Now()
	l.mu.Lock()
	last, seen := l.last[key]
	if !seen || now.Sub(last) >= raftLogEvery {
		if len(l.last) >= 512 {
			clear(l.last)
		}
		l.last[key] = now
	}
	l.mu.Unlock()
	if !seen || now.Sub(last) >= raftLogEvery {
		logging.Problem(l.log, "cluster: %s", line)
	}
	return len(p), nil
}

func (c *Cluster) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.ID())
	rc.HeartbeatTimeout = HeartbeatTimeout
	rc.ElectionTimeout = ElectionTimeout
	rc.LeaderLeaseTimeout = LeaderLeaseTimeout
	rc.CommitTimeout = CommitTimeout
	rc.SnapshotThreshold = 8192
	rc.SnapshotInterval = 30 * time.Second
	rc.TrailingLogs = 10240
	if c.cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = c.cfg.SnapshotThreshold
	}
	if c.cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = c.cfg.SnapshotInterval
	}
	if c.cfg.TrailingLogs > 0 {
		rc.TrailingLogs = c.cfg.TrailingLogs
	}
	// The store is persistent: after a restart it is where it was, and
	// raft's replay of the entries it already holds is skipped by the FSM.
	rc.NoSnapshotRestoreOnStart = true
	rc.Logger = c.hclog()
	return rc
}

// hasRaftState says whether the raft directory holds a cluster's state.
func hasRaftState(dir string) (bool, error) {
	if _, err := os.Stat(filepath.Join(dir, "raft.db")); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), BoltOptions: &bolt.Options{Timeout: time.Second, ReadOnly: true}})
	if err != nil {
		return false, fmt.Errorf("cluster: reading the raft state: %w", err)
	}
	defer logs.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
	if err != nil {
		return false, err
	}
	return raft.HasExistingState(logs, logs, snaps)
}

// startRaft opens raft's stores in the raft directory, runs prepare on
// them (the bootstrap of Initialize), starts raft and makes the store
// commit through it. The listener must be running.
func (c *Cluster) startRaft(prepare func(logs *raftboltdb.BoltStore, snaps raft.SnapshotStore, trans raft.Transport) error) error {
	c.mu.Lock()
	ln := c.ln
	c.mu.Unlock()
	if ln == nil {
		return errors.New("the cluster listener is not running: xmpp cluster enable first")
	}
	dir := c.raftDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	hl := c.hclog()
	stream := ln.newStream()
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: stream, MaxPool: 3, Timeout: 2 * time.Second, Logger: hl})
	fail := func(err error, closers ...io.Closer) error {
		for _, x := range closers {
			x.Close()
		}
		trans.Close()
		return err
	}
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), BoltOptions: &bolt.Options{Timeout: 2 * time.Second}})
	if err != nil {
		return fail(fmt.Errorf("cluster: opening the raft log: %w", err))
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hl)
	if err != nil {
		return fail(err, logs)
	}
	// Nothing may commit locally from here on (SetLog waits for the local
	// log): the bootstrap snapshot and raft's indices follow the store's.
	c.cfg.Store.SetLog(pausedLog{})
	if prepare != nil {
		if err := prepare(logs, snaps, trans); err != nil {
			c.cfg.Store.SetLog(nil)
			return fail(err, logs)
		}
	}
	cache, err := raft.NewLogCache(512, logs)
	if err != nil {
		c.cfg.Store.SetLog(nil)
		return fail(err, logs)
	}
	f := newFSM(c.cfg.Store)
	f.restored = func(index uint64) {
		logging.Major(c.log, "cluster: this node's store was replaced by the leader's snapshot at log index %d (the node joined, or was too far behind for the log)", index)
	}
	rc := c.raftConfig()
	if list, err := snaps.List(); err == nil && len(list) > 0 && list[0].Index > c.cfg.Store.AppliedIndex() {
		// The store is behind raft's last snapshot (a restore that did
		// not finish, a store file put back from a backup): raft must
		// restore the snapshot, or the entries in between are missed.
		logging.Problem(c.log, "cluster: the store (index %d) is behind raft's snapshot (index %d): restoring it", c.cfg.Store.AppliedIndex(), list[0].Index)
		rc.NoSnapshotRestoreOnStart = false
	}
	r, err := raft.NewRaft(rc, f, cache, logs, snaps, trans)
	if err != nil {
		c.cfg.Store.SetLog(nil)
		return fail(fmt.Errorf("cluster: starting raft: %w", err), logs)
	}
	c.mu.Lock()
	c.r = &raftNode{r: r, trans: trans, stream: stream, logs: logs, fsm: f}
	c.mu.Unlock()
	// A member (Initialize, Join, Start): the store's own log refuses
	// from now on, across restarts, until Disable (store.SetClustered).
	if err := c.cfg.Store.SetClustered(true); err != nil {
		logging.Problem(c.log, "cluster: marking the store as a cluster member: %v", err)
	}
	c.cfg.Store.SetLog(&clusterLog{c: c})
	c.mesh.kick()
	return nil
}

// bootstrap writes a one-node cluster's first state: a snapshot of the
// store at its applied index (term 1) whose configuration is this node
// alone. Raft's log then starts after it, and a node that joins gets the
// store by snapshot.
func (c *Cluster) bootstrap(logs *raftboltdb.BoltStore, snaps raft.SnapshotStore, trans raft.Transport) error {
	st := c.cfg.Store
	idx := max(st.AppliedIndex(), 1)
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(c.ID()), Address: raft.ServerAddress(c.advertise())}}}
	sink, err := snaps.Create(raft.SnapshotVersionMax, idx, 1, conf, idx, trans)
	if err != nil {
		return err
	}
	if err := st.Snapshot(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("cluster: the first snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return err
	}
	// What raft.BootstrapCluster records: the first term.
	return logs.SetUint64([]byte("CurrentTerm"), 1)
}

// stopRaft shuts raft down. standalone: the store commits locally again
// (Disable); otherwise proposals fail until raft runs again (Close).
func (c *Cluster) stopRaft(standalone bool) {
	c.mu.Lock()
	n := c.r
	c.r = nil
	c.mu.Unlock()
	if n == nil {
		return
	}
	if standalone {
		c.cfg.Store.SetLog(nil)
	} else {
		c.cfg.Store.SetLog(pausedLog{stopped: true})
	}
	if err := n.r.Shutdown().Error(); err != nil {
		logging.Problem(c.log, "cluster: stopping raft: %v", err)
	}
	n.trans.Close()
	n.logs.Close()
}

// pausedLog refuses proposals while raft starts, after it stopped, or
// when it could not start.
type pausedLog struct {
	stopped bool
	reason  string
}

func (p pausedLog) Commit([]byte) (uint64, any, error) {
	switch {
	case p.reason != "":
		return 0, nil, fmt.Errorf("the cluster does not run on this node (%s): the change was not made", p.reason)
	case p.stopped:
		return 0, nil, fmt.Errorf("the cluster is stopped: %w", store.ErrNotMade)
	}
	return 0, nil, fmt.Errorf("the cluster is starting: %w, try again", store.ErrNotMade)
}

// fsm is raft's FSM over the store. raft's log indices are the store's:
// the store skips entries at or below its applied index, which raft
// replays after a restart (the store is persistent, and raft does not
// restore its snapshot on start).
type fsm struct {
	st       *store.Store
	restored func(index uint64) // told after a Restore (nil: nobody)

	mu      sync.Mutex
	applied uint64        // the last index applied (or restored)
	moved   chan struct{} // closed and replaced whenever applied moves
}

var (
	_ raft.FSM         = (*fsm)(nil)
	_ raft.BatchingFSM = (*fsm)(nil)
)

func newFSM(st *store.Store) *fsm {
	return &fsm{st: st, applied: st.AppliedIndex(), moved: make(chan struct{})}
}

// Apply applies one entry; its response is a store.Applied.
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies runs of consecutive commands in one store
// transaction each; configuration entries are raft's own.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	var last uint64
	for i := 0; i < len(logs); {
		if logs[i].Type != raft.LogCommand {
			last = max(last, logs[i].Index)
			i++
			continue
		}
		j := i + 1
		for j < len(logs) && logs[j].Type == raft.LogCommand && logs[j].Index == logs[i].Index+uint64(j-i) {
			j++
		}
		entries := make([][]byte, j-i)
		for k := i; k < j; k++ {
			entries[k-i] = logs[k].Data
		}
		for k, a := range f.st.ApplyBatch(logs[i].Index, entries) {
			out[i+k] = a
		}
		last = max(last, logs[j-1].Index)
		i = j
	}
	f.advance(last)
	return out
}

func (f *fsm) advance(to uint64) {
	f.mu.Lock()
	if to > f.applied {
		f.applied = to
		close(f.moved)
		f.moved = make(chan struct{})
	}
	f.mu.Unlock()
}

// waitApplied waits until the FSM has applied index, or timeout.
func (f *fsm) waitApplied(index uint64, timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		f.mu.Lock()
		applied, moved := f.applied, f.moved
		f.mu.Unlock()
		if applied >= index {
			return true
		}
		select {
		case <-moved:
		case <-t.C:
			return false
		}
	}
}

// Snapshot snapshots the store when raft persists it: the snapshot may
// hold entries after raft's snapshot index, which the restoring store
// then skips (its applied index comes with the snapshot).
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) { return storeSnapshot{f.st}, nil }

// Restore replaces the store with a snapshot (a node that joined, or
// fell too far behind).
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.st.Restore(rc); err != nil {
		return err
	}
	f.mu.Lock()
	f.applied = f.st.AppliedIndex()
	close(f.moved)
	f.moved = make(chan struct{})
	index := f.applied
	f.mu.Unlock()
	if f.restored != nil {
		f.restored(index)
	}
	return nil
}

type storeSnapshot struct{ st *store.Store }

func (s storeSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.st.Snapshot(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (storeSnapshot) Release() {}
