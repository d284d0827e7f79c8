package cluster

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// How the parts fit (see api.go for the contract):
//
//   - cluster.go: Config, New, Start/Close, Enable/Disable/Initialize,
//     Status, the node id (DataDir/node-id, never in the log).
//   - raft.go: raft over raft-boltdb (DataDir/raft/raft.db) and a file
//     snapshot store (DataDir/raft/snapshots); the FSM is the store, and
//     raft's indices are the store's. Initialize writes the first
//     snapshot (the store at its applied index) instead of a bootstrap
//     entry, so a cluster's log starts after it and every node that joins
//     gets the state by InstallSnapshot, whatever its own store held.
//   - transport.go: the mutual-TLS listener (TLS 1.3, certificates
//     verified against the trust bundle both ways), a header after the
//     handshake (raft stream, Mesh, RPC), raft's StreamLayer.
//   - mesh.go: Mesh: one outgoing connection per member with an ordered
//     bounded queue, hellos every 200 ms as heartbeat and announcement
//     (XMPP address, sessions), reachability, OnMembers.
//   - propose.go: the store's Log when clustered: raft.Apply on the
//     leader, forwarding over ChanPropose from followers; errors and
//     responses across the wire; the no-leader error.
//   - membership.go: join, remove, and their RPCs.

// DefaultPort is the cluster listener's port when none is given: raft and
// the Mesh share it (5222, 5223 and 5269 are XMPP's, 5270 is free).
const DefaultPort = 5270

// Files in the data directory.
const (
	// RaftDir holds raft's log and stable store (raft.db), its snapshots
	// and the "enabled" mark. Disable removes it.
	RaftDir = "raft"
	// NodeIDFile holds this node's id, generated once (node-local).
	NodeIDFile  = "node-id"
	enabledMark = "enabled"
)

// Raft timing, chosen for a LAN or loopback: a follower that hears
// nothing from the leader for HeartbeatTimeout (randomized up to twice
// that) stands for election, so a new leader is elected about 0.5–1.5 s
// after the old one died (measured here: 0.8–1.4 s). LeaderLeaseTimeout
// is how long a leader keeps its role without contact with a majority (a
// write does not wait for it: it checks that a majority is reachable).
const (
	HeartbeatTimeout   = 500 * time.Millisecond
	ElectionTimeout    = 500 * time.Millisecond
	LeaderLeaseTimeout = 500 * time.Millisecond
	CommitTimeout      = 20 * time.Millisecond
)

// Config is what a node's cluster needs from the appliance.
type Config struct {
	DataDir string       // the node's data directory (raft state in DataDir/raft)
	Store   *store.Store // the replicated store: the FSM
	// Listen is the cluster listener's address (nil or "": ":5270"),
	// read each time the listener starts (Start, Enable), so a node
	// follows a new address when it is enabled again.
	Listen func() string
	// Advertise is the host:port the other nodes reach this node at
	// (default: the listen address if it names a host, else the host of XMPPAddress,
	// else this host's name; with Listen's port). It is this node's
	// address in raft's configuration: keep it stable.
	Advertise string
	// XMPPAddress is this node's XMPP address as `xmpp cluster status`
	// prints it (host:5222); nil: the host of Advertise and port 5222.
	XMPPAddress func() string
	// Sessions is the number of client sessions bound on this node,
	// announced to the others (nil: 0).
	Sessions func() int
	// Certificate is what this node presents (its `xmpp certs`).
	Certificate func() (*tls.Certificate, error)
	// Trust is the bundle peers' certificates must chain to (`xmpp
	// cluster trust`); nil or a nil pool refuses every peer.
	Trust func() (*x509.CertPool, error)
	Log   *slog.Logger // nil: discard

	// Tuning; zero values are the defaults (tests lower them).
	SnapshotThreshold uint64        // raft entries between snapshots (default 8192)
	SnapshotInterval  time.Duration // how often to check (default 30 s)
	TrailingLogs      uint64        // entries kept after a snapshot (default 10240)
}

// Cluster is one node's side of the cluster: it implements Node and
// provides the Mesh.
type Cluster struct {
	cfg  Config
	log  *slog.Logger
	mesh *mesh

	opMu sync.Mutex // serializes Enable, Disable, Initialize, Join, Remove, Close

	mu        sync.Mutex
	id        string
	enabled   bool
	ln        *listener
	listen    string // the address ln was opened on, "" when it is not running
	r         *raftNode
	state     status.ClusterState
	changed   time.Time
	lastErr   string
	lastErrAt time.Time

	pendOnce sync.Once
	pend     *pendingCalls

	raftLogOnce sync.Once
	raftLog     hclog.Logger
}

var _ Node = (*Cluster)(nil)

// New prepares a node's cluster: it reads (or makes) the node id. Start
// starts what is enabled.
func New(cfg Config) (*Cluster, error) {
	if cfg.DataDir == "" || cfg.Store == nil {
		return nil, errors.New("cluster: a data directory and a store are needed")
	}
	if cfg.Log == nil {
		cfg.Log = logging.Discard()
	}
	c := &Cluster{cfg: cfg, log: cfg.Log, state: status.Disabled, changed: time.Now()}
	id, err := readNodeID(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	c.id = id
	c.mesh = newMesh(c)
	c.mesh.Handle(ChanPropose, c.onPropose)
	return c, nil
}

// Mesh is the messaging between the nodes.
func (c *Cluster) Mesh() Mesh { return c.mesh }

// ID is this node's id.
func (c *Cluster) ID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// Enabled says whether the cluster is enabled on this node.
func (c *Cluster) Enabled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enabled
}

// Start starts the cluster listener if the cluster is enabled on this
// node, and raft if this node is in a cluster (it was initialized or
// joined): the store then commits through raft.
func (c *Cluster) Start() error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if _, err := os.Stat(filepath.Join(c.raftDir(), enabledMark)); err != nil {
		return nil
	}
	has, err := hasRaftState(c.raftDir())
	if err == nil && has {
		// A member: its store refuses local commits from now on, also if
		// raft does not start (store.SetClustered).
		err = c.cfg.Store.SetClustered(true)
	}
	if err == nil {
		err = c.startListener()
	}
	if err == nil && has {
		err = c.startRaft(nil)
	}
	if err != nil {
		c.setError(err)
		if has {
			// A member that cannot run its part must not commit alone.
			c.cfg.Store.SetLog(pausedLog{reason: err.Error()})
		}
	}
	return err
}

// Close stops raft and the listener; the node's cluster state stays on
// disk for the next Start. A node that was in a cluster refuses changes
// from then on (they must not be committed locally).
func (c *Cluster) Close() error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.stopRaft(false)
	c.stopListener()
	return nil
}

// Enable starts the cluster listener on this node and remembers it (a
// node-local setting): the node then waits to be initialized or to join.
func (c *Cluster) Enable() error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	defer c.noteState()
	if err := os.MkdirAll(c.raftDir(), 0o700); err != nil {
		return err
	}
	if err := c.startListener(); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(c.raftDir(), enabledMark), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// Disable leaves the cluster: it asks the leader to remove this node
// (best effort), stops raft and the listener, removes the raft state and
// gives this node a new id. The store keeps its contents and commits
// locally again.
func (c *Cluster) Disable() error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	defer c.noteState()
	if r := c.raftNode(); r != nil && len(r.voters()) > 1 {
		if err := c.removeServer(c.ID()); err != nil {
			logging.Problem(c.log, "cluster: leaving the cluster: %v (the leader removes this node's old entry when it joins again)", err)
		}
	}
	c.stopRaft(true)
	c.stopListener()
	if err := os.RemoveAll(c.raftDir()); err != nil {
		return fmt.Errorf("cluster: removing the raft state: %w", err)
	}
	// Not a member any more: the store commits locally again.
	if err := c.cfg.Store.SetClustered(false); err != nil {
		return err
	}
	c.cfg.Store.SetLog(nil)
	id, err := newNodeID(c.cfg.DataDir)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.id = id
	c.mu.Unlock()
	c.mesh.reset()
	return nil
}

// Initialize makes a one-node cluster of this node, with its store as
// the first state: raft's log starts after the store's applied index,
// with a snapshot of the store at that index, so every node that joins
// gets the state by snapshot.
func (c *Cluster) Initialize() error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	defer c.noteState()
	if err := c.checkFree(); err != nil {
		return err
	}
	if err := c.startRaft(c.bootstrap); err != nil {
		return err
	}
	// A one-node cluster elects itself.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if r := c.raftNode(); r != nil && r.r.State() == raft.Leader {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("cluster: initialized, but this node did not become the leader within 5s (see the log)")
}

// checkFree refuses a node that is not enabled, or already in a cluster.
func (c *Cluster) checkFree() error {
	if !c.Enabled() {
		return errors.New("the cluster is not enabled on this node: xmpp cluster enable first")
	}
	if r := c.raftNode(); r != nil {
		n := len(r.voters())
		return fmt.Errorf("this node is already in a cluster of %d node%s: xmpp cluster disable first", n, map[bool]string{true: "s"}[n != 1])
	}
	if _, err := c.certificate(); err != nil {
		return err
	}
	if c.cfg.Trust == nil {
		return errNoTrust
	}
	if p, err := c.cfg.Trust(); err != nil {
		return fmt.Errorf("the cluster trust bundle: %w", err)
	} else if p == nil {
		return errNoTrust
	}
	if has, err := hasRaftState(c.raftDir()); err != nil {
		return err
	} else if has {
		return errors.New("this node holds the state of a cluster: xmpp cluster disable first")
	}
	return nil
}

// Reconnect closes every connection between this node and the others:
// they are made again, and verified again (after the certificate or the
// trust bundle changed: a node the bundle no longer covers is refused).
func (c *Cluster) Reconnect() {
	c.mesh.reconnect()
	c.mu.Lock()
	l := c.ln
	c.mu.Unlock()
	if l != nil {
		l.closeConns()
	}
}

// Status is what `xmpp cluster status` prints. KeyFile, CertFile and
// TrustBundle are left for the caller, who knows the files.
func (c *Cluster) Status() status.Cluster {
	c.mu.Lock()
	st := status.Cluster{NodeID: c.id, LastError: c.lastErr, LastErrorAt: c.lastErrAt}
	enabled, r := c.enabled, c.r
	if c.ln != nil {
		st.Listen = c.ln.addr
	}
	c.mu.Unlock()
	st.AppliedIndex = c.cfg.Store.AppliedIndex()
	self := status.ClusterPeer{ID: st.NodeID, Address: c.xmppAddress(), Cluster: c.advertise(), Self: true, Reachable: true, Sessions: c.sessions()}
	switch {
	case !enabled:
		st.Peers = []status.ClusterPeer{self}
	case r == nil:
		st.Peers = []status.ClusterPeer{self}
		if st.LastError == "" {
			st.LastError = "not in a cluster yet: xmpp cluster initialize, or xmpp cluster join <member>"
		}
	default:
		st.Term, _ = strconv.ParseUint(r.r.Stats()["term"], 10, 64)
		st.CommitIndex = r.r.CommitIndex()
		_, leader := r.r.LeaderWithID()
		for _, s := range r.voters() {
			p := status.ClusterPeer{ID: string(s.ID), Cluster: string(s.Address), Leader: s.ID == leader}
			if p.ID == st.NodeID {
				self.Leader = p.Leader
				p = self
			} else {
				info := c.mesh.info(p.ID)
				p.Reachable = c.mesh.reachable(p.ID)
				p.LastContact = info.heard
				p.Sessions = info.Sessions
				p.Address = info.XMPP
				if p.Address == "" {
					p.Address = xmppFromCluster(p.Cluster)
				}
			}
			st.Peers = append(st.Peers, p)
		}
	}
	sortPeers(st.Peers)
	st.State, st.LastChange = c.noteState()
	return st
}

// noteState computes the node's state and remembers when it changed.
func (c *Cluster) noteState() (status.ClusterState, time.Time) {
	s := c.currentState()
	c.mu.Lock()
	defer c.mu.Unlock()
	if s != c.state {
		if s != status.Disabled || c.state != status.Disabled {
			logging.Major(c.log, "cluster: this node is now %s (was %s)", s, c.state)
		}
		c.state, c.changed = s, time.Now()
	}
	return c.state, c.changed
}

func (c *Cluster) currentState() status.ClusterState {
	c.mu.Lock()
	enabled, r := c.enabled, c.r
	c.mu.Unlock()
	if !enabled || r == nil {
		if enabled {
			return status.NoQuorum
		}
		return status.Disabled
	}
	n, m := c.reachableVoters(r)
	if n < m/2+1 {
		return status.NoQuorum
	}
	switch r.r.State() {
	case raft.Leader:
		return status.Leader
	case raft.Candidate:
		return status.Candidate
	case raft.Follower:
		if _, id := r.r.LeaderWithID(); id == "" {
			return status.NoQuorum
		}
		return status.Follower
	}
	return status.NoQuorum
}

func (c *Cluster) setError(err error) {
	c.mu.Lock()
	c.lastErr, c.lastErrAt = err.Error(), time.Now()
	c.mu.Unlock()
}

func (c *Cluster) raftDir() string { return filepath.Join(c.cfg.DataDir, RaftDir) }

func (c *Cluster) raftNode() *raftNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.r
}

// advertise is the address the other nodes reach this node at.
func (c *Cluster) advertise() string {
	if c.cfg.Advertise != "" {
		return c.cfg.Advertise
	}
	listen := c.listenAddr()
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if unspecified(host) {
		// Listening on every address: the host this node's XMPP address
		// names, else the host name.
		host = ""
		if c.cfg.XMPPAddress != nil {
			if h, _, err := net.SplitHostPort(c.cfg.XMPPAddress()); err == nil && !unspecified(h) {
				host = h
			}
		}
		if host == "" {
			host, _ = os.Hostname()
		}
	}
	return net.JoinHostPort(host, port)
}

// listenAddr is the address the listener runs on, or, when it does not
// run, the one it would start on now.
func (c *Cluster) listenAddr() string {
	c.mu.Lock()
	a := c.listen
	c.mu.Unlock()
	if a == "" {
		a = c.configListen()
	}
	return a
}

// configListen is Config.Listen now, or the default.
func (c *Cluster) configListen() string {
	if c.cfg.Listen != nil {
		if a := c.cfg.Listen(); a != "" {
			return a
		}
	}
	return ":" + strconv.Itoa(DefaultPort)
}

func unspecified(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}

func (c *Cluster) xmppAddress() string {
	if c.cfg.XMPPAddress != nil {
		if a := c.cfg.XMPPAddress(); a != "" {
			return a
		}
	}
	return xmppFromCluster(c.advertise())
}

func (c *Cluster) sessions() int {
	if c.cfg.Sessions != nil {
		return c.cfg.Sessions()
	}
	return 0
}

// xmppFromCluster is a node's XMPP address when it announced none: the
// host of its cluster address and port 5222.
func xmppFromCluster(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	return net.JoinHostPort(host, strconv.Itoa(store.DefaultPortC2S))
}

// withPort adds the default cluster port to an address without one.
func withPort(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	if strings.Count(addr, ":") > 1 && !strings.HasPrefix(addr, "[") { // a bare IPv6 address
		return net.JoinHostPort(addr, strconv.Itoa(DefaultPort))
	}
	return net.JoinHostPort(strings.Trim(addr, "[]"), strconv.Itoa(DefaultPort))
}

func readNodeID(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, NodeIDFile))
	if err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("cluster: reading the node id: %w", err)
	}
	return newNodeID(dataDir)
}

// newNodeID makes a node id and keeps it in the data directory.
func newNodeID(dataDir string) (string, error) {
	var b [8]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", err
	}
	tmp := filepath.Join(dataDir, NodeIDFile+".tmp")
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("cluster: writing the node id: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dataDir, NodeIDFile)); err != nil {
		return "", fmt.Errorf("cluster: writing the node id: %w", err)
	}
	return id, nil
}

// sortPeers puts peers in address order (what `xmpp cluster status`
// lists), then by cluster address.
func sortPeers(ps []status.ClusterPeer) {
	slices.SortFunc(ps, func(a, b status.ClusterPeer) int {
		if c := compareAddr(a.Address, b.Address); c != 0 {
			return c
		}
		return compareAddr(a.Cluster, b.Cluster)
	})
}

// compareAddr orders host:port addresses, IP addresses by number
// (10.0.0.9 before 10.0.0.10), names after them by text.
func compareAddr(a, b string) int {
	x, errx := netip.ParseAddrPort(a)
	y, erry := netip.ParseAddrPort(b)
	switch {
	case errx == nil && erry == nil:
		return x.Compare(y)
	case errx == nil:
		return -1
	case erry == nil:
		return 1
	}
	return strings.Compare(a, b)
}
