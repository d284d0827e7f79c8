package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/parley-xmpp/parley/server/logging"
)

// RPCs between nodes: one request and one answer on a connection of its
// own (join and remove, which a node that is not yet a member must be
// able to ask, and a follower forwards to the leader).
type rpcRequest struct {
	Op   string `json:"op"`             // "info", "join", "remove"
	ID   string `json:"id,omitempty"`   // join: the joining node; remove: the node to remove
	Addr string `json:"addr,omitempty"` // join: its cluster address
}

type rpcAnswer struct {
	Err      *wireError `json:"err,omitempty"`
	Redirect string     `json:"redirect,omitempty"` // not the leader: ask this one
	Leader   string     `json:"leader,omitempty"`   // the leader's cluster address
	Index    uint64     `json:"index,omitempty"`    // join: the index the new node must reach
	Members  int        `json:"members,omitempty"`
}

const (
	rpcTimeout     = 15 * time.Second // one RPC, answer included
	membershipWait = 10 * time.Second // a configuration change to commit
	joinCatchUp    = 30 * time.Second // a new node to get the cluster's state
)

func (c *Cluster) serveRPC(conn net.Conn) {
	conn.SetDeadline(time.Now().Add(rpcTimeout))
	r := bufio.NewReader(conn)
	_, body, err := readFrame(r)
	if err != nil {
		return
	}
	var req rpcRequest
	var a rpcAnswer
	if err := json.Unmarshal(body, &req); err != nil {
		a.Err = encodeError(fmt.Errorf("bad request: %w", err))
	} else {
		a = c.handleRPC(req)
	}
	out, _ := json.Marshal(a)
	w := bufio.NewWriter(conn)
	if writeFrame(w, frame{msg: out}) == nil {
		w.Flush()
	}
}

func (c *Cluster) handleRPC(req rpcRequest) rpcAnswer {
	if req.Op == "ping" { // the leader checks it reaches a joining node
		if req.ID != c.ID() {
			return rpcAnswer{Err: encodeError(fmt.Errorf("the node at this address has id %s, not %s", c.ID(), req.ID))}
		}
		return rpcAnswer{}
	}
	r := c.raftNode()
	if r == nil {
		return rpcAnswer{Err: encodeError(errors.New("that node is not in a cluster (xmpp cluster initialize there, or join it to one)"))}
	}
	if r.r.State() != raft.Leader {
		addr, id := r.r.LeaderWithID()
		if id == "" {
			return rpcAnswer{Err: encodeError(c.noLeader(r))}
		}
		return rpcAnswer{Redirect: string(addr)}
	}
	switch req.Op {
	case "info":
		return rpcAnswer{Leader: c.advertise(), Members: len(r.voters())}
	case "join":
		idx, err := c.addNode(r, req.ID, req.Addr)
		return rpcAnswer{Err: encodeError(err), Leader: c.advertise(), Index: idx, Members: len(r.voters())}
	case "remove":
		return rpcAnswer{Err: encodeError(c.removeLocal(r, req.ID))}
	}
	return rpcAnswer{Err: encodeError(fmt.Errorf("unknown request %q", req.Op))}
}

// addNode is the leader's side of a join: any member with the same id or
// address goes first (a node reset and joining again is never listed
// twice), then the node is added as a voter.
func (c *Cluster) addNode(r *raftNode, id, addr string) (uint64, error) {
	if id == "" || addr == "" {
		return 0, errors.New("a join needs the node's id and address")
	}
	for _, s := range r.voters() {
		if string(s.ID) == id && string(s.Address) == addr {
			return r.r.LastIndex(), nil // already a member
		}
		if string(s.ID) == c.ID() && (string(s.ID) == id || string(s.Address) == addr) {
			return 0, fmt.Errorf("%s is this leader's own address or id", addr)
		}
		if string(s.ID) == id && c.mesh.reachable(id) {
			// The member with this id is alive elsewhere: this node is a
			// copy of it (a cloned appliance, a copied data directory).
			return 0, fmt.Errorf("node id %s is already a member, alive at %s: this node is a copy of it (xmpp cluster disable here gives it an id of its own)", id, s.Address)
		}
		if string(s.ID) == id || string(s.Address) == addr {
			logging.Problem(c.log, "cluster: node %s (%s) joins again: removing its old entry %s (%s)", id, addr, s.ID, s.Address)
			if err := c.removeLocal(r, string(s.ID)); err != nil {
				return 0, err
			}
		}
	}
	if err := c.waitQuorum(r, 2*QuorumWait); err != nil {
		return 0, err
	}
	// A voter that cannot be reached would cost the cluster its quorum
	// (a one-node cluster could not commit anything more): check first
	// that this node reaches the new one, both certificates included.
	if _, err := c.call(addr, rpcRequest{Op: "ping", ID: id}); err != nil {
		return 0, fmt.Errorf("the leader cannot connect back to this node at %s (%v): check this node's cluster address", addr, err)
	}
	f := r.r.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, membershipWait)
	if err := waitFuture(f, membershipWait); err != nil {
		return 0, fmt.Errorf("adding %s: %w", addr, err)
	}
	logging.Major(c.log, "cluster: node %s (%s) joined", id, addr)
	c.mesh.kick()
	return f.Index(), nil
}

// removeLocal removes a server on the leader.
func (c *Cluster) removeLocal(r *raftNode, id string) error {
	if err := c.waitQuorum(r, 2*QuorumWait); err != nil {
		return err
	}
	f := r.r.RemoveServer(raft.ServerID(id), 0, membershipWait)
	if err := waitFuture(f, membershipWait); err != nil {
		return fmt.Errorf("removing node %s: %w", id, err)
	}
	c.mesh.kick()
	logging.Major(c.log, "cluster: node %s removed", id)
	return nil
}

func waitFuture(f raft.Future, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		return fmt.Errorf("not committed within %v", d)
	}
}

// call sends one RPC to a node and reads its answer.
func (c *Cluster) call(addr string, req rpcRequest) (rpcAnswer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	conn, err := c.dial(ctx, addr, connRPC)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" || errors.Is(err, context.DeadlineExceeded) {
			return rpcAnswer{}, fmt.Errorf("cannot reach the cluster node at %s: %w (check the address, and that xmpp cluster enable was run there)", addr, err)
		}
		return rpcAnswer{}, fmt.Errorf("the cluster node at %s: %w", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(rpcTimeout))
	body, _ := json.Marshal(req)
	w := bufio.NewWriter(conn)
	if err := writeFrame(w, frame{msg: body}); err != nil {
		return rpcAnswer{}, err
	}
	if err := w.Flush(); err != nil {
		return rpcAnswer{}, err
	}
	_, out, err := readFrame(bufio.NewReader(conn))
	if err != nil {
		return rpcAnswer{}, fmt.Errorf("no answer from the cluster node at %s: %w", addr, explainTLS(err))
	}
	var a rpcAnswer
	if err := json.Unmarshal(out, &a); err != nil {
		return rpcAnswer{}, fmt.Errorf("bad answer from the cluster node at %s: %w", addr, err)
	}
	return a, nil
}

// callLeader sends an RPC to the leader, following redirects from
// followers.
func (c *Cluster) callLeader(addr string, req rpcRequest) (rpcAnswer, error) {
	for range 4 {
		a, err := c.call(addr, req)
		if err != nil {
			return a, err
		}
		if a.Redirect != "" && a.Redirect != addr {
			addr = a.Redirect
			continue
		}
		if a.Leader == "" {
			a.Leader = addr
		}
		return a, a.Err.decode()
	}
	return rpcAnswer{}, errors.New("the cluster's leader keeps changing: try again")
}

// Join asks a member to add this node. This node's replicated store is
// replaced by the cluster's: it arrives by raft snapshot (a cluster's
// log starts after its first snapshot, so a new node always gets one).
func (c *Cluster) Join(member string) (JoinReport, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	defer c.noteState()
	if err := c.checkFree(); err != nil {
		return JoinReport{}, err
	}
	addr := withPort(strings.TrimSpace(member))
	// Both sides' trust and the leader, before anything changes here.
	info, err := c.callLeader(addr, rpcRequest{Op: "info"})
	if err != nil {
		return JoinReport{}, fmt.Errorf("joining %s: %w", member, err)
	}
	report := c.held()
	report.Leader = info.Leader
	if err := c.startRaft(nil); err != nil {
		return JoinReport{}, err
	}
	a, err := c.callLeader(info.Leader, rpcRequest{Op: "join", ID: c.ID(), Addr: c.advertise()})
	if err != nil {
		c.stopRaft(true)
		c.clearRaftState()
		c.cfg.Store.SetClustered(false) // not a member after all
		return JoinReport{}, fmt.Errorf("joining %s: %w", member, err)
	}
	report.Leader = a.Leader
	r := c.raftNode()
	if r == nil || !r.fsm.waitApplied(a.Index, joinCatchUp) {
		return report, fmt.Errorf("joined the cluster of %s, but this node has not received its state within %v: see xmpp cluster status", report.Leader, joinCatchUp)
	}
	return report, nil
}

// held counts what this node's store holds before it joins.
func (c *Cluster) held() JoinReport {
	var r JoinReport
	if x, err := c.cfg.Store.XMPP(); err == nil {
		r.Domains = len(x.Domains)
	}
	if a, err := c.cfg.Store.Accounts(""); err == nil {
		r.Accounts = len(a)
	}
	if b, err := c.cfg.Store.Components(); err == nil {
		r.Bridges = len(b)
	}
	return r
}

// clearRaftState removes raft's files, keeping the enabled mark.
func (c *Cluster) clearRaftState() {
	entries, _ := os.ReadDir(c.raftDir())
	for _, e := range entries {
		if e.Name() != enabledMark {
			os.RemoveAll(filepath.Join(c.raftDir(), e.Name()))
		}
	}
}

// Remove takes a node out of the cluster: by id, cluster address, XMPP
// address or host.
func (c *Cluster) Remove(node string) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	r := c.raftNode()
	if r == nil {
		return errors.New("this node is not in a cluster")
	}
	node = strings.TrimSpace(node)
	var match []raft.Server
	for _, s := range r.voters() {
		id, addr := string(s.ID), string(s.Address)
		host, _, _ := net.SplitHostPort(addr)
		xmpp := c.mesh.info(id).XMPP
		if id == c.ID() {
			xmpp = c.xmppAddress()
		}
		if node == id || node == addr || node == host || node == xmpp || withPort(node) == addr {
			match = append(match, s)
		}
	}
	switch len(match) {
	case 0:
		return fmt.Errorf("no node %s in the cluster (see xmpp cluster status)", node)
	case 1:
	default:
		return fmt.Errorf("%s names %d nodes: give the node's id or cluster address:port", node, len(match))
	}
	return c.removeServer(string(match[0].ID))
}

// removeServer removes a node on the leader, asking it if this node is
// not the leader.
func (c *Cluster) removeServer(id string) error {
	r := c.raftNode()
	if r == nil {
		return errors.New("this node is not in a cluster")
	}
	if r.r.State() == raft.Leader {
		return c.removeLocal(r, id)
	}
	addr, leader := r.r.LeaderWithID()
	if leader == "" {
		return c.noLeader(r)
	}
	_, err := c.callLeader(string(addr), rpcRequest{Op: "remove", ID: id})
	return err
}
