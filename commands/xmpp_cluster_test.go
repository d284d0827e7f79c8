package commands

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/cluster"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// fakeNode is a cluster node that keeps its state in memory: enable,
// initialize and join change it as the real node would.
type fakeNode struct {
	mu       sync.Mutex
	st       status.Cluster
	joinErr  error
	report   cluster.JoinReport
	members  []status.ClusterPeer // what joining adds
	removed  []string
	disabled int
}

var _ cluster.Node = (*fakeNode)(nil)

func (n *fakeNode) Status() status.Cluster {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.st
	st.Peers = append([]status.ClusterPeer(nil), n.st.Peers...)
	return st
}

func (n *fakeNode) Enable() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.st.State = status.NoQuorum
	n.st.Listen = "10.106.81.30:5290"
	n.st.Peers = []status.ClusterPeer{n.self()}
	return nil
}

func (n *fakeNode) Disable() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.disabled++
	n.st = status.Cluster{State: status.Disabled, NodeID: "n-new"}
	n.st.Peers = []status.ClusterPeer{n.self()}
	return nil
}

func (n *fakeNode) self() status.ClusterPeer {
	return status.ClusterPeer{ID: n.st.NodeID, Address: "10.106.81.30:5222", Cluster: n.st.Listen, Self: true, Reachable: true}
}

func (n *fakeNode) Initialize() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.st.State = status.Leader
	n.st.Term = 1
	p := n.self()
	p.Leader = true
	n.st.Peers = []status.ClusterPeer{p}
	return nil
}

func (n *fakeNode) Join(member string) (cluster.JoinReport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.joinErr != nil {
		return cluster.JoinReport{}, n.joinErr
	}
	n.st.State = status.Follower
	n.st.Peers = append([]status.ClusterPeer{n.self()}, n.members...)
	return n.report, nil
}

func (n *fakeNode) Remove(node string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.removed = append(n.removed, node)
	var keep []status.ClusterPeer
	for _, p := range n.st.Peers {
		if p.ID != node {
			keep = append(keep, p)
		}
	}
	n.st.Peers = keep
	return nil
}

// fakeClusterSettings keeps the trust bundle in memory.
type fakeClusterSettings struct{ trust string }

func (s *fakeClusterSettings) TrustBundle() string { return s.trust }
func (s *fakeClusterSettings) SetTrustBundle(name string) error {
	s.trust = name
	return nil
}

// clusterFixture is a fixture with a domain served with node.crt (signed
// by ca.pem), a fake node (disabled, id n1) and cluster settings.
func clusterFixture(t *testing.T) (*fixture, *fakeNode) {
	f := newFixture(t)
	f.certFiles("example.com")
	f.ok("xmpp domain example.com")
	f.ok("xmpp certs example.com.key example.com.crt ca.pem")
	n := &fakeNode{st: status.Cluster{State: status.Disabled, NodeID: "n1"}}
	n.st.Peers = []status.ClusterPeer{n.self()} // the real node lists itself even when disabled
	f.env.Cluster = n
	f.env.ClusterSettings = &fakeClusterSettings{}
	return f, n
}

// fail runs line, which must fail with one line holding every one of want.
func (f *fixture) fail(line string, want ...string) string {
	f.t.Helper()
	_, err := f.run(line)
	if err == nil {
		f.t.Fatalf("%s: succeeded, want an error with %q", line, want)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		f.t.Errorf("%s: the error is not one line: %q", line, msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			f.t.Errorf("%s: error %q does not say %q", line, msg, w)
		}
	}
	return msg
}

func TestClusterStatusGolden(t *testing.T) {
	f, n := clusterFixture(t)
	f.env.ClusterSettings.SetTrustBundle("ca.pem")
	n.st = status.Cluster{
		State:      status.Follower,
		LastChange: time.Date(2017, 8, 13, 11, 37, 2, 0, time.UTC),
		NodeID:     "7f3c9a2e", Term: 4, CommitIndex: 1042, AppliedIndex: 1041,
		Listen:  "10.106.81.31:5290",
		KeyFile: "example.com.key", CertFile: "example.com.crt",
		Peers: []status.ClusterPeer{
			{ID: "a0b1c2d3", Address: "10.106.81.30:5222", Cluster: "10.106.81.30:5290", Leader: true, Reachable: true, LastContact: fixedNow.Add(-40 * time.Millisecond), Sessions: 3},
			{ID: "7f3c9a2e", Address: "10.106.81.31:5222", Cluster: "10.106.81.31:5290", Self: true, Reachable: true, Sessions: 12},
			{ID: "c41d0b77", Address: "10.106.81.32:5222", Cluster: "10.106.81.32:5290", Reachable: false, LastContact: fixedNow.Add(-95 * time.Second)},
		},
	}
	golden(t, "xmpp-cluster-status", f.ok("xmpp cluster status")) // peers in address order, as the node gives them
	// The CMS block comes first, exactly.
	out := f.ok("xmpp cluster status")
	cms := "State: FOLLOWER\nList of peers\n10.106.81.30:5222 (Leader)\n10.106.81.31:5222\n10.106.81.32:5222\n" +
		"Last state change: 2017-Aug-13 11:37:02\nKey file           : example.com.key\nCertificate file   : example.com.crt\nTrust bundle       : ca.pem\n\n"
	if !strings.HasPrefix(out, cms) {
		t.Errorf("xmpp cluster status does not start with the CMS block:\n%s", out)
	}
	// Every role may read it.
	if _, err := f.runAs("auditor", store.RoleAudit, "xmpp cluster status"); err != nil {
		t.Errorf("xmpp cluster status as audit: %v", err)
	}
}

func TestClusterStatusDisabled(t *testing.T) {
	f, _ := clusterFixture(t)
	golden(t, "xmpp-cluster-status-disabled", f.ok("xmpp cluster status"))
}

func TestClusterWithoutNode(t *testing.T) {
	f := newFixture(t)
	for _, line := range []string{"xmpp cluster status", "xmpp cluster enable", "xmpp cluster initialize", "xmpp cluster join 10.0.0.1", "xmpp cluster trust ca.pem", "xmpp cluster trust none"} {
		f.fail(line, "no cluster node")
	}
}

func TestClusterTrust(t *testing.T) {
	f, n := clusterFixture(t)
	// A certificate of another CA is not covered.
	other := makeCert(t, nil, "Other CA", nil, true, fixedNow.AddDate(-1, 0, 0), fixedNow.AddDate(5, 0, 0))
	f.put("other-ca.pem", other.certPEM)
	f.fail("xmpp cluster trust other-ca.pem", "other-ca.pem does not cover this node's certificate example.com.crt", "CA that signed it")
	f.fail("xmpp cluster trust missing.pem", "missing.pem")
	f.put("notes.txt", []byte("hello\n"))
	f.fail("xmpp cluster trust notes.txt", "notes.txt", "not a certificate")
	if got := f.env.ClusterSettings.TrustBundle(); got != "" {
		t.Fatalf("a refused bundle was set: %q", got)
	}
	// The CA, the certificate itself, and a bundle holding the other CA
	// and ours are.
	out := f.ok("xmpp cluster trust ca.pem")
	if want := "Cluster trust bundle: ca.pem (1 certificate); it covers this node's certificate example.com.crt\n"; out != want {
		t.Errorf("trust:\n%s\nwant\n%s", out, want)
	}
	f.ok("xmpp cluster trust example.com.crt")
	ca, _ := f.env.Files.ReadFile("ca.pem")
	f.put("both.pem", append(append([]byte{}, other.certPEM...), ca...))
	if out := f.ok("xmpp cluster trust both.pem"); !strings.Contains(out, "2 certificates") {
		t.Errorf("trust both.pem: %s", out)
	}
	// trust none: refused while clustering is enabled.
	f.ok("xmpp cluster enable")
	f.fail("xmpp cluster trust none", "xmpp cluster disable first")
	n.Disable()
	if out := f.ok("xmpp cluster trust none"); out != "Cluster trust bundle cleared\n" {
		t.Errorf("trust none: %q", out)
	}
	if out := f.ok("xmpp cluster trust none"); out != "No cluster trust bundle is set\n" {
		t.Errorf("trust none again: %q", out)
	}
	// appadmin may, audit may not.
	if _, err := f.runAs("app", store.RoleAppAdmin, "xmpp cluster trust ca.pem"); err != nil {
		t.Errorf("appadmin: %v", err)
	}
	if _, err := f.runAs("auditor", store.RoleAudit, "xmpp cluster trust ca.pem"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("audit: %v", err)
	}
}

func TestClusterFirstNode(t *testing.T) {
	f, n := clusterFixture(t)
	f.fail("xmpp cluster initialize", "clustering is disabled on this node", "xmpp cluster enable first")
	f.fail("xmpp cluster enable", "xmpp cluster trust <bundle>")
	f.ok("xmpp cluster trust ca.pem")
	// XMPP may be disabled first, as CMS wants, or not.
	f.ok("xmpp disable")
	out := f.ok("xmpp cluster enable")
	want := "Clustering enabled: listening on 10.106.81.30:5290\nNext: xmpp cluster initialize on the first node, or xmpp cluster join <member> on the others\n"
	if out != want {
		t.Errorf("enable:\n%s\nwant\n%s", out, want)
	}
	if out := f.ok("xmpp cluster enable"); !strings.Contains(out, "already enabled") {
		t.Errorf("enable again: %q", out)
	}
	golden(t, "xmpp-cluster-initialize", f.ok("xmpp cluster initialize"))
	f.ok("xmpp enable")
	f.fail("xmpp cluster initialize", "already in a cluster of 1 node (leader 10.106.81.30:5222)", "xmpp cluster disable first")
	f.fail("xmpp cluster join 10.106.81.31", "already in a cluster", "xmpp cluster disable first")
	// The audit trail has the cluster commands.
	entries, _ := f.env.Store.Audit(100)
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
	}
	if all := strings.Join(actions, "\n"); !strings.Contains(all, "xmpp cluster initialize") || !strings.Contains(all, "xmpp cluster trust ca.pem") {
		t.Errorf("audit trail:\n%s", all)
	}
	_ = n
}

func TestClusterJoin(t *testing.T) {
	f, n := clusterFixture(t)
	f.fail("xmpp cluster join 10.106.81.30", "set the cluster trust bundle first", "xmpp cluster trust <bundle>")
	f.ok("xmpp cluster trust ca.pem")
	f.fail("xmpp cluster join 10.106.81.30", "clustering is disabled", "xmpp cluster enable first")
	f.ok("xmpp cluster enable")
	n.joinErr = errors.New("cannot reach 10.106.81.99:5290: dial tcp 10.106.81.99:5290: connect: connection refused\ncheck the address")
	f.fail("xmpp cluster join 10.106.81.99", "xmpp cluster join: cannot reach 10.106.81.99:5290", "connection refused; check the address")
	n.joinErr = fmt.Errorf("joining 10.106.81.98: cannot reach the cluster node at 10.106.81.98:5270: %w",
		&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")})
	f.fail("xmpp cluster join 10.106.81.98", "connection refused; check the address, that clustering is enabled there (xmpp cluster enable)")
	n.joinErr = nil
	n.report = cluster.JoinReport{Leader: "10.106.81.30:5290", Domains: 1, Accounts: 2, Bridges: 1}
	n.members = []status.ClusterPeer{{ID: "n0", Address: "10.106.81.29:5222", Cluster: "10.106.81.29:5290", Leader: true, Reachable: true}}
	golden(t, "xmpp-cluster-join", f.ok("xmpp cluster join 10.106.81.30"))

	// A leader that is not reachable yet: join says so after waiting.
	defer func(w time.Duration) { clusterWait = w }(clusterWait)
	clusterWait = 100 * time.Millisecond
	n.Disable()
	f.ok("xmpp cluster enable")
	n.members[0].Reachable = false
	if out := f.ok("xmpp cluster join 10.106.81.30"); !strings.Contains(out, "Warning: this node has not reached the leader within 100ms") {
		t.Errorf("join with the leader unreachable:\n%s", out)
	}
}

func TestClusterRemove(t *testing.T) {
	f, n := clusterFixture(t)
	f.fail("xmpp cluster remove 10.106.81.32", "not in a cluster")
	n.st = status.Cluster{State: status.Leader, NodeID: "n1", Peers: []status.ClusterPeer{
		{ID: "n1", Address: "10.106.81.30:5222", Cluster: "10.106.81.30:5290", Self: true, Leader: true},
		{ID: "n2", Address: "10.106.81.31:5222", Cluster: "10.106.81.31:5290"},
		{ID: "n3", Address: "10.106.81.32:5222", Cluster: "10.106.81.32:5290"},
	}}
	f.fail("xmpp cluster remove 10.106.81.30", "this node", "xmpp cluster disable")
	f.fail("xmpp cluster remove 10.9.9.9", `"10.9.9.9" is not a member`, "10.106.81.31:5222")
	if out := f.ok("xmpp cluster remove 10.106.81.32"); out != "Removed 10.106.81.32:5222 (node n3) from the cluster\n" {
		t.Errorf("remove: %q", out)
	}
	f.ok("xmpp cluster remove n2")
	if strings.Join(n.removed, ",") != "n3,n2" {
		t.Errorf("removed %v", n.removed)
	}
}

func TestClusterDisable(t *testing.T) {
	f, n := clusterFixture(t)
	if out := f.ok("xmpp cluster disable"); out != "Clustering is already disabled\n" {
		t.Errorf("disable when disabled: %q", out)
	}
	n.st = status.Cluster{State: status.Follower, NodeID: "n1"}
	out := f.ok("xmpp cluster disable")
	want := "Clustering disabled: this node left the cluster and runs standalone with the configuration it had\nIts node id is now n-new; the old one (n1) will not be seen again\n"
	if out != want {
		t.Errorf("disable:\n%s\nwant\n%s", out, want)
	}
}

// failingLog is the store's log while the cluster has no quorum.
type failingLog struct{}

func (failingLog) Commit([]byte) (uint64, any, error) {
	return 0, nil, errors.New("no cluster leader: 1 of 3 nodes reachable; the change was not made")
}

// TestClusterNoQuorum: a write while the cluster has no leader fails with
// the store's one line.
func TestClusterNoQuorum(t *testing.T) {
	f, _ := clusterFixture(t)
	f.env.Store.SetLog(failingLog{})
	defer f.env.Store.SetLog(nil)
	for _, line := range []string{"xmpp callbridge add cb2", "xmpp domain example.org", "xmpp max-sessions 10"} {
		msg := f.fail(line, "no cluster leader: 1 of 3 nodes reachable; the change was not made")
		if want := strings.Fields(line)[0] + " " + strings.Fields(line)[1]; !strings.HasPrefix(msg, want) {
			t.Errorf("%s: %q", line, msg)
		}
	}
	// Reading still works.
	f.ok("xmpp cluster status")
	f.ok("xmpp")
}

// TestClusterPort: xmpp cluster port shows and sets this node's own
// cluster port, node-locally, and only while clustering is disabled.
func TestClusterPort(t *testing.T) {
	f, _ := clusterFixture(t)
	if out := f.ok("xmpp cluster port"); out != "5270\n" {
		t.Errorf("the default port: %q, want 5270", out)
	}
	f.fail("xmpp cluster port 0", "0 is not a TCP port", "1 to 65535")
	f.fail("xmpp cluster port 70000", "70000 is not a TCP port")
	if out := f.ok("xmpp cluster port 5299"); !strings.Contains(out, "Cluster port set to 5299") {
		t.Errorf("set: %q", out)
	}
	if v, _ := f.env.Store.Config(store.ClusterPort); v != "5299" {
		t.Errorf("stored %q, want 5299", v)
	}
	if out := f.ok("xmpp cluster port"); out != "5299\n" {
		t.Errorf("after setting: %q", out)
	}
	f.ok("xmpp cluster trust ca.pem")
	f.ok("xmpp cluster enable")
	f.fail("xmpp cluster port 5300", "clustering is enabled on this node", "xmpp cluster disable first")
	if v, _ := f.env.Store.Config(store.ClusterPort); v != "5299" {
		t.Errorf("a refused change stored %q", v)
	}
}
