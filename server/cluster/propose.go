package cluster

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/metrics"
	"github.com/parley-xmpp/parley/store"
)

// Proposal timing.
const (
	// CommitWait is how long a proposal waits for raft to commit it once
	// the leader has it (quorum was reachable when it was proposed).
	CommitWait = 5 * time.Second
	// ForwardWait is how long a follower waits for the leader's answer.
	ForwardWait = CommitWait + 2*time.Second
	// readYourWrites is how long a follower waits for its own store to
	// apply what it forwarded, before answering the proposer.
	readYourWrites = 3 * time.Second
	maxForwarded   = 512 // proposals the leader runs for followers at once
)

// ErrNoLeader is what a write gets without a leader or without quorum
// (errors.Is): the change was not made.
var ErrNoLeader = fmt.Errorf("no cluster leader: %w", store.ErrNotMade)

// NoLeaderError says how many nodes this node reaches.
type NoLeaderError struct {
	Reachable, Members int
}

func (e *NoLeaderError) Error() string {
	return fmt.Sprintf("no cluster leader: %d of %d nodes reachable; the change was not made", e.Reachable, e.Members)
}

func (e *NoLeaderError) Unwrap() error { return ErrNoLeader }

// reachableVoters counts the voters this node reaches, itself included,
// and all voters.
func (c *Cluster) reachableVoters(r *raftNode) (n, m int) {
	self := c.ID()
	for _, s := range r.voters() {
		m++
		if string(s.ID) == self || c.mesh.reachable(string(s.ID)) {
			n++
		}
	}
	return n, m
}

// QuorumWait is how long a write waits for a majority to be reachable
// (after a join, or a node's restart) before it is refused.
const QuorumWait = 1500 * time.Millisecond

// waitQuorum waits until a majority of the voters is reachable, or d.
func (c *Cluster) waitQuorum(r *raftNode, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		n, m := c.reachableVoters(r)
		if n >= m/2+1 {
			return nil
		}
		if time.Now().After(deadline) {
			return &NoLeaderError{Reachable: n, Members: m}
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (c *Cluster) noLeader(r *raftNode) error {
	n, m := c.reachableVoters(r)
	return &NoLeaderError{Reachable: n, Members: m}
}

// clusterLog is the store's Log while the node is in a cluster.
type clusterLog struct {
	c *Cluster
}

func (l *clusterLog) Commit(entry []byte) (uint64, any, error) {
	defer metrics.StoreCommit(time.Now())
	c := l.c
	r := c.raftNode()
	if r == nil {
		return 0, nil, fmt.Errorf("the cluster is stopped: %w", store.ErrNotMade)
	}
	// During an election, or just after a restart, wait a little for a
	// leader: QuorumWait, then refuse.
	deadline := time.Now().Add(QuorumWait)
	var leader raft.ServerID
	for {
		if r.r.State() == raft.Leader {
			idx, resp, err := c.applyLeader(r, entry, time.Until(deadline))
			if !errors.Is(err, raft.ErrNotLeader) {
				return idx, resp, err
			}
			// Lost the role before the entry was in the log: forward it.
		}
		if _, leader = r.r.LeaderWithID(); leader != "" && string(leader) != c.ID() && c.mesh.reachable(string(leader)) {
			break
		}
		if time.Now().After(deadline) {
			return 0, nil, c.noLeader(r)
		}
		time.Sleep(25 * time.Millisecond)
	}
	idx, resp, err := c.forward(string(leader), entry)
	if err == nil || idx != 0 {
		// Read your writes: the caller reads this node's store next.
		r.fsm.waitApplied(idx, readYourWrites)
	}
	return idx, resp, err
}

// applyLeader commits an entry on the leader and returns the FSM's
// answer. Without quorum it fails at once: raft would keep the entry
// until the others return.
func (c *Cluster) applyLeader(r *raftNode, entry []byte, wait time.Duration) (uint64, any, error) {
	if err := c.waitQuorum(r, max(wait, 0)); err != nil {
		return 0, nil, err
	}
	f := r.r.Apply(entry, CommitWait)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	t := time.NewTimer(CommitWait)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			if errors.Is(err, raft.ErrNotLeader) {
				return 0, nil, err
			}
			if errors.Is(err, raft.ErrLeadershipLost) {
				return 0, nil, fmt.Errorf("the leader lost its role while committing (%v): %w", err, store.ErrMaybe)
			}
			return 0, nil, fmt.Errorf("cluster: %w", err)
		}
	case <-t.C:
		n, m := c.reachableVoters(r)
		return 0, nil, fmt.Errorf("the cluster did not commit the change within %v (%d of %d nodes reachable): it may still be made", CommitWait, n, m)
	}
	a, ok := f.Response().(store.Applied)
	if !ok {
		return f.Index(), nil, fmt.Errorf("cluster: unexpected FSM response %T", f.Response())
	}
	return a.Index, a.Response, a.Err
}

// Forwarding over ChanPropose. A request is 'Q', an 8-byte request id
// and the entry; an answer is 'A', the id and a JSON proposeAnswer.
const (
	msgRequest = 'Q'
	msgAnswer  = 'A'
)

type proposeAnswer struct {
	Index    uint64        `json:"index,omitempty"`
	Response *wireResponse `json:"response,omitempty"`
	Err      *wireError    `json:"err,omitempty"`
}

var forwardSeq atomic.Uint64

type pendingCalls struct {
	mu    sync.Mutex
	calls map[uint64]chan proposeAnswer
	busy  chan struct{}
}

func (c *Cluster) pending() *pendingCalls {
	c.pendOnce.Do(func() {
		c.pend = &pendingCalls{calls: map[uint64]chan proposeAnswer{}, busy: make(chan struct{}, maxForwarded)}
	})
	return c.pend
}

// forward sends an entry to the leader and waits for its answer.
func (c *Cluster) forward(leader string, entry []byte) (uint64, any, error) {
	p := c.pending()
	id := forwardSeq.Add(1)
	ch := make(chan proposeAnswer, 1)
	p.mu.Lock()
	p.calls[id] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.calls, id)
		p.mu.Unlock()
	}()
	msg := make([]byte, 9, 9+len(entry))
	msg[0] = msgRequest
	binary.BigEndian.PutUint64(msg[1:], id)
	msg = append(msg, entry...)
	if err := c.mesh.Send(leader, ChanPropose, msg); err != nil {
		if r := c.raftNode(); r != nil {
			return 0, nil, c.noLeader(r)
		}
		return 0, nil, err
	}
	t := time.NewTimer(ForwardWait)
	defer t.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case a := <-ch:
			resp, err := decodeResponse(a.Response)
			if err != nil {
				return a.Index, nil, err
			}
			return a.Index, resp, a.Err.decode()
		case <-tick.C:
			if !c.mesh.reachable(leader) {
				return 0, nil, fmt.Errorf("the leader became unreachable while committing: %w", store.ErrMaybe)
			}
		case <-t.C:
			return 0, nil, fmt.Errorf("the leader did not answer within %v: %w", ForwardWait, store.ErrMaybe)
		}
	}
}

// onPropose is the ChanPropose handler: the leader's side of forwarding
// (requests) and the follower's (answers).
func (c *Cluster) onPropose(from string, msg []byte) {
	if len(msg) < 9 {
		return
	}
	id := binary.BigEndian.Uint64(msg[1:9])
	p := c.pending()
	switch msg[0] {
	case msgAnswer:
		var a proposeAnswer
		if err := json.Unmarshal(msg[9:], &a); err != nil {
			a = proposeAnswer{Err: encodeError(fmt.Errorf("cluster: bad answer from the leader: %w", err))}
		}
		p.mu.Lock()
		ch := p.calls[id]
		p.mu.Unlock()
		if ch != nil {
			select {
			case ch <- a:
			default:
			}
		}
	case msgRequest:
		entry := append([]byte(nil), msg[9:]...)
		select {
		case p.busy <- struct{}{}:
		default:
			c.answer(from, id, proposeAnswer{Err: encodeError(fmt.Errorf("the cluster leader is busy: %w, try again", store.ErrNotMade))})
			return
		}
		go func() {
			defer func() { <-p.busy }()
			c.answer(from, id, c.commitForwarded(entry))
		}()
	}
}

func (c *Cluster) commitForwarded(entry []byte) proposeAnswer {
	r := c.raftNode()
	if r == nil {
		return proposeAnswer{Err: encodeError(fmt.Errorf("the cluster is stopped on the leader: %w", store.ErrNotMade))}
	}
	if r.r.State() != raft.Leader {
		return proposeAnswer{Err: encodeError(fmt.Errorf("%w: the node asked is no longer the leader: %w, try again", raft.ErrNotLeader, store.ErrNotMade))}
	}
	idx, resp, err := c.applyLeader(r, entry, QuorumWait)
	a := proposeAnswer{Index: idx, Err: encodeError(err)}
	if err == nil {
		wr, werr := encodeResponse(resp)
		if werr != nil {
			a.Err = encodeError(werr)
		}
		a.Response = wr
	}
	return a
}

func (c *Cluster) answer(to string, id uint64, a proposeAnswer) {
	body, err := json.Marshal(a)
	if err != nil {
		body, _ = json.Marshal(proposeAnswer{Index: a.Index, Err: encodeError(err)})
	}
	msg := make([]byte, 9, 9+len(body))
	msg[0] = msgAnswer
	binary.BigEndian.PutUint64(msg[1:], id)
	msg = append(msg, body...)
	if err := c.mesh.Send(to, ChanPropose, msg); err != nil {
		logging.Problem(c.log, "cluster: answering node %s's proposal: %v", to, err)
	}
}

// Errors cross the wire as a kind (one of the store's sentinel errors the
// callers test with errors.Is) and the message, unchanged: on the
// proposer, Error() is the leader's text and errors.Is(err, kind) holds.
type wireError struct {
	Kind string `json:"kind,omitempty"`
	Msg  string `json:"msg"`
}

var errorKinds = []struct {
	kind string
	err  error
}{
	{"exists", store.ErrExists},
	{"not-found", store.ErrNotFound},
	{"full", store.ErrFull},
	{"last-admin", store.ErrLastAdmin},
	{"closed", store.ErrClosed},
	{"no-leader", ErrNoLeader},
	{"not-leader", raft.ErrNotLeader},
	{"maybe", store.ErrMaybe},
	{"not-made", store.ErrNotMade},
}

func encodeError(err error) *wireError {
	if err == nil {
		return nil
	}
	w := &wireError{Msg: err.Error()}
	var kinds []string
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			kinds = append(kinds, k.kind)
		}
	}
	w.Kind = strings.Join(kinds, ",")
	return w
}

func (w *wireError) decode() error {
	if w == nil {
		return nil
	}
	var kinds []error
	for _, name := range strings.Split(w.Kind, ",") {
		for _, k := range errorKinds {
			if k.kind == name {
				kinds = append(kinds, k.err)
			}
		}
	}
	if len(kinds) == 0 {
		return errors.New(w.Msg)
	}
	return &remoteError{msg: w.Msg, kinds: kinds}
}

// remoteError is an error made on another node.
type remoteError struct {
	msg   string
	kinds []error
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Unwrap() []error { return e.kinds }

// Responses cross the wire by kind: each response type an op may return
// has a name here (store.RosterSet returns a RosterItem, RosterSubscribe
// a SubscribeResult; the other ops return nil). A new response type must
// be added, or the proposer on a follower gets an error saying so.
type wireResponse struct {
	Kind string          `json:"kind"`
	Data json.RawMessage `json:"data"`
}

// wireSubscribeResult is store.SubscribeResult with its errors encoded.
type wireSubscribeResult struct {
	store.SubscribeResult
	SenderErr   *wireError `json:"sender_err,omitempty"`
	ReceiverErr *wireError `json:"receiver_err,omitempty"`
}

// wireRosterChange is store.RosterChange with its error encoded.
type wireRosterChange struct {
	store.RosterChange
	ChangeErr *wireError `json:"change_err,omitempty"`
}

func wireChanges(cs []store.RosterChange) []wireRosterChange {
	var out []wireRosterChange
	for _, c := range cs {
		w := wireRosterChange{RosterChange: c, ChangeErr: encodeError(c.Err)}
		w.Err = nil
		out = append(out, w)
	}
	return out
}

func unwireChanges(ws []wireRosterChange) []store.RosterChange {
	var out []store.RosterChange
	for _, w := range ws {
		c := w.RosterChange
		c.Err = w.ChangeErr.decode()
		out = append(out, c)
	}
	return out
}

// wireRemoveResult is store.RemoveResult with its subscription results
// encoded.
type wireRemoveResult struct {
	Item         store.RosterItem     `json:"item"`
	Unsubscribe  *wireSubscribeResult `json:"unsubscribe,omitempty"`
	Unsubscribed *wireSubscribeResult `json:"unsubscribed,omitempty"`
}

func wireSubscribe(r *store.SubscribeResult) *wireSubscribeResult {
	if r == nil {
		return nil
	}
	w := wireSubscribeResult{SubscribeResult: *r, SenderErr: encodeError(r.Sender.Err), ReceiverErr: encodeError(r.Receiver.Err)}
	w.Sender.Err, w.Receiver.Err = nil, nil
	return &w
}

func unwireSubscribe(w *wireSubscribeResult) *store.SubscribeResult {
	if w == nil {
		return nil
	}
	res := w.SubscribeResult
	res.Sender.Err, res.Receiver.Err = w.SenderErr.decode(), w.ReceiverErr.decode()
	return &res
}

type wireDirectoryRoster struct {
	Stored  []wireRosterChange `json:"stored,omitempty"`
	Removed []wireRosterChange `json:"removed,omitempty"`
}

func encodeResponse(resp any) (*wireResponse, error) {
	var kind string
	var v any
	switch r := resp.(type) {
	case nil:
		return nil, nil
	case store.RosterItem:
		kind, v = "roster-item", r
	case store.Duplicate:
		kind, v = "duplicate", struct{}{}
	case store.DirectoryRosterResult:
		kind, v = "directory-roster", wireDirectoryRoster{Stored: wireChanges(r.Stored), Removed: wireChanges(r.Removed)}
	case store.SubscribeResult:
		kind, v = "subscribe-result", wireSubscribe(&r)
	case store.RemoveResult:
		kind, v = "remove-result", wireRemoveResult{Item: r.Item, Unsubscribe: wireSubscribe(r.Unsubscribe), Unsubscribed: wireSubscribe(r.Unsubscribed)}
	default:
		return nil, fmt.Errorf("cluster: the change was made, but its response (%T) cannot be sent to this node", resp)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("cluster: the change was made, but its response cannot be sent to this node: %w", err)
	}
	return &wireResponse{Kind: kind, Data: data}, nil
}

func decodeResponse(w *wireResponse) (any, error) {
	if w == nil {
		return nil, nil
	}
	switch w.Kind {
	case "duplicate":
		return store.Duplicate{}, nil
	case "directory-roster":
		var r wireDirectoryRoster
		if err := json.Unmarshal(w.Data, &r); err != nil {
			return nil, err
		}
		return store.DirectoryRosterResult{Stored: unwireChanges(r.Stored), Removed: unwireChanges(r.Removed)}, nil
	case "roster-item":
		var it store.RosterItem
		return it, json.Unmarshal(w.Data, &it)
	case "subscribe-result":
		var r wireSubscribeResult
		if err := json.Unmarshal(w.Data, &r); err != nil {
			return nil, err
		}
		return *unwireSubscribe(&r), nil
	case "remove-result":
		var r wireRemoveResult
		if err := json.Unmarshal(w.Data, &r); err != nil {
			return nil, err
		}
		return store.RemoveResult{Item: r.Item, Unsubscribe: unwireSubscribe(r.Unsubscribe), Unsubscribed: unwireSubscribe(r.Unsubscribed)}, nil
	}
	return nil, fmt.Errorf("cluster: the change was made, but its response (%q) is unknown to this node", w.Kind)
}
