package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// testPKI is a CA (the trust bundle) and certificates for nodes.
type testPKI struct {
	ca    *x509.Certificate
	key   *ecdsa.PrivateKey
	pool  *x509.CertPool
	other *testPKI // a CA the bundle does not cover
}

func newCA(t testing.TB, name string) *testPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{ca: ca, key: key, pool: pool}
}

var serial = big.NewInt(100)
var serialMu sync.Mutex

func (p *testPKI) cert(t testing.TB, host string) *tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serialMu.Lock()
	serial.Add(serial, big.NewInt(1))
	sn := new(big.Int).Set(serial)
	serialMu.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP(host)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// testNode is one in-process node on its own loopback address.
type testNode struct {
	t     testing.TB
	host  string
	dir   string
	st    *store.Store
	c     *Cluster
	cert  *tls.Certificate
	pki   *testPKI
	trust atomic.Pointer[x509.CertPool]
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if os.Getenv("CLUSTER_TEST_LOG") != "" {
		os.Stderr.Write(p)
	}
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// port is the cluster port of the tests: every node has its own address.
var testPort = 15270 + os.Getpid()%1000

var hostSeq struct {
	sync.Mutex
	n int
}

// nextHost gives each node of the test run its own 127.0.x.y address.
func nextHost() string {
	hostSeq.Lock()
	defer hostSeq.Unlock()
	hostSeq.n++
	return fmt.Sprintf("127.0.%d.%d", 100+hostSeq.n/200, 10+hostSeq.n%200)
}

func newTestNode(t testing.TB, p *testPKI, opts ...func(*Config)) *testNode {
	t.Helper()
	n := &testNode{t: t, host: nextHost(), dir: t.TempDir(), pki: p, logs: &syncBuffer{}}
	n.cert = p.cert(t, n.host)
	n.trust.Store(p.pool)
	st, err := store.Open(n.dir)
	if err != nil {
		t.Fatal(err)
	}
	n.st = st
	n.open(opts...)
	t.Cleanup(func() {
		n.c.Close()
		n.st.Close()
	})
	return n
}

func (n *testNode) open(opts ...func(*Config)) {
	addr := net.JoinHostPort(n.host, fmt.Sprint(testPort))
	cfg := Config{
		DataDir: n.dir, Store: n.st, Listen: func() string { return addr }, Advertise: addr,
		Certificate: func() (*tls.Certificate, error) { return n.cert, nil },
		Trust:       func() (*x509.CertPool, error) { return n.trust.Load(), nil },
		Log:         logging.NewWriter(n.logs, logging.LevelLow),
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	n.c = c
}

func (n *testNode) addr() string { return net.JoinHostPort(n.host, fmt.Sprint(testPort)) }

// cluster3 makes a three-node cluster: the first initialized, the others
// joined.
func cluster3(t testing.TB, opts ...func(*Config)) []*testNode {
	t.Helper()
	p := newCA(t, "cluster CA")
	var nodes []*testNode
	for range 3 {
		n := newTestNode(t, p, opts...)
		if err := n.c.Enable(); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	if err := nodes[0].c.Initialize(); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[1:] {
		if _, err := n.c.Join(nodes[0].addr()); err != nil {
			t.Fatalf("join: %v\n%s", err, n.logs)
		}
	}
	waitFor(t, 5*time.Second, "3 reachable members", func() bool {
		for _, n := range nodes {
			if len(n.c.Mesh().Members()) != 3 {
				return false
			}
		}
		return true
	})
	return nodes
}

func waitFor(t testing.TB, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func leaderOf(nodes []*testNode) *testNode {
	for _, n := range nodes {
		if n.c != nil && n.c.Status().State == status.Leader {
			return n
		}
	}
	return nil
}

// dump is a store's replicated contents, for comparing nodes.
func dump(t testing.TB, st *store.Store) string {
	t.Helper()
	var b strings.Builder
	x, err := st.XMPP()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range x.Domains {
		fmt.Fprintf(&b, "domain %s %v\n", d.Name, d.Primary)
	}
	accts, _ := st.Accounts("")
	for _, a := range accts {
		fmt.Fprintf(&b, "account %s\n", a.JID)
	}
	comps, _ := st.Components()
	for _, c := range comps {
		fmt.Fprintf(&b, "bridge %s %s %s\n", c.Name, c.Domain, c.Secret)
	}
	admins, _ := st.Admins()
	for _, a := range admins {
		fmt.Fprintf(&b, "admin %s %s\n", a.Name, a.Role)
	}
	return b.String()
}

func sameStores(t testing.TB, nodes []*testNode) {
	t.Helper()
	var want string
	waitFor(t, 5*time.Second, "the same store on every node", func() bool {
		want = dump(t, nodes[0].st)
		for _, n := range nodes[1:] {
			if dump(t, n.st) != want {
				return false
			}
		}
		return true
	})
}

func addBridge(st *store.Store, name string) error {
	_, err := st.Propose(store.ComponentAdd{Component: store.Component{Name: name, Domain: "example.com", Secret: "s3cret-" + name}})
	return err
}

func TestThreeNodes(t *testing.T) {
	nodes := cluster3(t)
	leader := leaderOf(nodes)
	if leader != nodes[0] {
		t.Fatalf("the first node is not the leader")
	}
	// A change on a follower is committed and visible everywhere.
	if err := addBridge(nodes[2].st, "cb1"); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[2].st.Component("cb1"); err != nil {
		t.Fatalf("the proposer does not read its write: %v", err)
	}
	if err := addBridge(nodes[0].st, "cb2"); err != nil {
		t.Fatal(err)
	}
	sameStores(t, nodes)
	if !strings.Contains(dump(t, nodes[1].st), "bridge cb1") {
		t.Fatal("cb1 missing on node 2")
	}
	// An op's error reaches the proposer on a follower as the same kind.
	err := addBridge(nodes[1].st, "cb1")
	if !errors.Is(err, store.ErrExists) || err.Error() != "call bridge cb1 already exists" {
		t.Fatalf("got %v, want ErrExists", err)
	}
	_, err = nodes[1].st.Propose(store.ComponentDel{Name: "nope"})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	// A response crosses the wire.
	r, err := nodes[1].st.Propose(store.RosterSet{User: "a@example.com", JID: "b@example.com", Name: "B", Groups: []string{"g"}})
	if err != nil {
		t.Fatal(err)
	}
	if it, ok := r.Response.(store.RosterItem); !ok || it.Name != "B" || it.JID != "b@example.com" {
		t.Fatalf("response %#v", r.Response)
	}
	res, err := nodes[2].st.Subscribe(store.RosterSubscribe{From: "a@example.com", To: "c@example.com", Type: "subscribe", Direction: store.SubOutbound, FromLocal: true, ToLocal: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Sender.Stored || !res.Deliver {
		t.Fatalf("subscribe result %+v", res)
	}

	// Status: three peers, one leader, each once.
	st := nodes[1].c.Status()
	if st.State != status.Follower || len(st.Peers) != 3 {
		t.Fatalf("status %+v", st)
	}
	leaders := 0
	for _, p := range st.Peers {
		if p.Leader {
			leaders++
			if p.ID != nodes[0].c.ID() {
				t.Fatalf("leader %s", p.ID)
			}
		}
		if !p.Reachable {
			t.Fatalf("peer %+v unreachable", p)
		}
		if !strings.HasSuffix(p.Address, ":5222") {
			t.Fatalf("peer address %q", p.Address)
		}
	}
	if leaders != 1 || st.CommitIndex == 0 || st.AppliedIndex == 0 || st.Term == 0 {
		t.Fatalf("status %+v", st)
	}
	// Initialize or join again is refused.
	if err := nodes[1].c.Initialize(); err == nil || !strings.Contains(err.Error(), "already in a cluster of 3 nodes") {
		t.Fatalf("initialize again: %v", err)
	}
}

// restart closes a node's cluster and starts it again on the same data
// directory and store.
func (n *testNode) restart(opts ...func(*Config)) {
	n.c.Close()
	n.open(opts...)
	if err := n.c.Start(); err != nil {
		n.t.Fatal(err)
	}
}

func TestLeaderFailover(t *testing.T) {
	nodes := cluster3(t)
	if err := addBridge(nodes[1].st, "before"); err != nil {
		t.Fatal(err)
	}
	old := leaderOf(nodes)
	stopped := time.Now()
	old.c.Close()
	var rest []*testNode
	for _, n := range nodes {
		if n != old {
			rest = append(rest, n)
		}
	}
	var leader *testNode
	waitFor(t, 3*time.Second, "a new leader", func() bool {
		leader = leaderOf(rest)
		return leader != nil
	})
	elected := time.Since(stopped)
	if elected > 2*time.Second {
		t.Errorf("a new leader after %v", elected)
	}
	// Writes resume, on the leader and through the other follower.
	for i, n := range rest {
		if err := addBridge(n.st, fmt.Sprintf("after%d", i)); err != nil {
			t.Fatalf("write on %s after failover: %v", n.host, err)
		}
	}
	t.Logf("new leader after %v, writes after %v", elected, time.Since(stopped))
	// The old leader comes back as a follower and catches up.
	old.restart()
	sameStores(t, nodes)
}

func TestQuorumLost(t *testing.T) {
	nodes := cluster3(t)
	nodes[1].c.Close()
	nodes[2].c.Close()
	// The leader notices the connections closing (a proposal made at the
	// very moment may end "may or may not have been made").
	waitFor(t, 2*time.Second, "the others unreachable", func() bool { return len(nodes[0].c.Mesh().Members()) == 1 })
	start := time.Now()
	err := addBridge(nodes[0].st, "lost")
	took := time.Since(start)
	want := "no cluster leader: 1 of 3 nodes reachable; the change was not made"
	if err == nil || err.Error() != want || !errors.Is(err, ErrNoLeader) {
		t.Fatalf("got %v, want %q", err, want)
	}
	if took > 3*time.Second {
		t.Errorf("refused after %v", took)
	}
	if _, err := nodes[0].st.Component("lost"); err == nil {
		t.Fatal("the change was made")
	}
	waitFor(t, 3*time.Second, "NO QUORUM", func() bool { return nodes[0].c.Status().State == status.NoQuorum })
	// A follower without a leader refuses too.
	nodes[1].restart()
	waitFor(t, 5*time.Second, "a leader again", func() bool {
		return leaderOf(nodes[:2]) != nil && len(nodes[0].c.Mesh().Members()) == 2 && len(nodes[1].c.Mesh().Members()) == 2
	})
	l := leaderOf(nodes[:2])
	l.c.Close()
	f := nodes[0]
	if f == l {
		f = nodes[1]
	}
	waitFor(t, 2*time.Second, "the leader unreachable", func() bool { return len(f.c.Mesh().Members()) == 1 })
	start = time.Now()
	err = addBridge(f.st, "lost2")
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
	took2 := time.Since(start)
	if took2 > 3*time.Second {
		t.Errorf("refused after %v", took2)
	}
	t.Logf("refused after %v on the leader, %v on a follower", took, took2)
}

func TestUntrustedNodeRefused(t *testing.T) {
	nodes := cluster3(t)
	other := newCA(t, "another CA")
	n := newTestNode(t, nodes[0].pki)
	n.cert = other.cert(t, n.host) // trusts the bundle, but is not covered by it
	if err := n.c.Enable(); err != nil {
		t.Fatal(err)
	}
	_, err := n.c.Join(nodes[0].addr())
	if err == nil || !strings.Contains(err.Error(), "trust bundle") {
		t.Fatalf("join with an untrusted certificate: %v", err)
	}
	waitFor(t, 2*time.Second, "a log line", func() bool {
		return strings.Contains(nodes[0].logs.String(), "refused a connection from ")
	})
	if !strings.Contains(nodes[0].logs.String(), "not covered by the cluster trust bundle") {
		t.Fatalf("log: %s", nodes[0].logs)
	}
	if len(nodes[0].c.Status().Peers) != 3 {
		t.Fatal("the untrusted node was added")
	}
	// And a node that does not trust the cluster's certificates.
	m := newTestNode(t, other)
	m.cert = nodes[0].pki.cert(t, m.host)
	m.c.Enable()
	_, err = m.c.Join(nodes[0].addr())
	if err == nil || !strings.Contains(err.Error(), "not covered by the cluster trust bundle") {
		t.Fatalf("join of a cluster not trusted: %v", err)
	}
	if has, _ := hasRaftState(m.c.raftDir()); has {
		t.Fatal("a failed join left raft state")
	}
}

func TestRejoinAndRemove(t *testing.T) {
	nodes := cluster3(t)
	if err := addBridge(nodes[0].st, "cb1"); err != nil {
		t.Fatal(err)
	}
	n := nodes[2]
	// A commit needs a majority, not every node: wait until this one has
	// it, so that what it holds when it rejoins is known.
	waitFor(t, 3*time.Second, "cb1 on node 3", func() bool {
		_, err := n.st.Component("cb1")
		return err == nil
	})
	oldID := n.c.ID()
	if err := n.c.Disable(); err != nil {
		t.Fatal(err)
	}
	if n.c.ID() == oldID {
		t.Fatal("same id after disable")
	}
	if st := n.c.Status(); st.State != status.Disabled {
		t.Fatalf("state %s", st.State)
	}
	// Standalone again: it commits locally.
	if err := addBridge(n.st, "local-only"); err != nil {
		t.Fatal(err)
	}
	if err := n.c.Enable(); err != nil {
		t.Fatal(err)
	}
	rep, err := n.c.Join(nodes[1].addr()) // a follower: it sends the join to the leader
	if err != nil {
		t.Fatal(err)
	}
	if rep.Bridges != 2 || rep.Leader != nodes[0].addr() {
		t.Fatalf("report %+v", rep)
	}
	sameStores(t, nodes)
	if _, err := n.st.Component("local-only"); err == nil {
		t.Fatal("the node kept what it held before joining")
	}
	waitFor(t, 3*time.Second, "3 peers, each once", func() bool {
		for _, x := range nodes {
			st := x.c.Status()
			seen := map[string]bool{}
			for _, p := range st.Peers {
				if seen[p.Cluster] || !p.Reachable {
					return false
				}
				seen[p.Cluster] = true
			}
			if len(st.Peers) != 3 {
				return false
			}
		}
		return true
	})
	// Reset without leaving (the leader never heard): joining again with
	// a new id replaces the old entry of the same address.
	n.c.Close()
	os.RemoveAll(n.c.raftDir())
	n.open()
	newID := n.c.ID()
	if err := n.c.Enable(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.c.Join(nodes[0].addr()); err != nil {
		t.Fatal(err)
	}
	if newID != n.c.ID() {
		t.Fatal("id changed")
	}
	st := nodes[0].c.Status()
	if len(st.Peers) != 3 {
		t.Fatalf("peers %+v", st.Peers)
	}
	// Remove by address, from a follower.
	if err := nodes[1].c.Remove(n.host); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "2 peers", func() bool { return len(nodes[0].c.Status().Peers) == 2 && len(nodes[1].c.Status().Peers) == 2 })
	if err := addBridge(nodes[1].st, "two"); err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].c.Remove("nosuchnode"); err == nil {
		t.Fatal("removed nothing without an error")
	}
}

func TestCatchUpBySnapshot(t *testing.T) {
	lowSnap := func(c *Config) {
		c.SnapshotThreshold = 20
		c.SnapshotInterval = 100 * time.Millisecond
		c.TrailingLogs = 5
	}
	nodes := cluster3(t, lowSnap)
	down := nodes[2]
	down.c.Close()
	for i := range 120 {
		if err := addBridge(nodes[i%2].st, fmt.Sprintf("cb%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "a snapshot on the leader", func() bool {
		ents, _ := os.ReadDir(nodes[0].c.raftDir() + "/snapshots")
		return len(ents) >= 2
	})
	time.Sleep(500 * time.Millisecond) // the log compacted after it
	restored := make(chan struct{}, 1)
	down.st.Watch(func(c store.Change) {
		if _, ok := c.Op.(store.Restored); ok {
			select {
			case restored <- struct{}{}:
			default:
			}
		}
	})
	down.restart(lowSnap)
	sameStores(t, nodes)
	select {
	case <-restored:
	case <-time.After(5 * time.Second):
		t.Fatal("the node caught up without a snapshot")
	}
	// And it takes new entries after it.
	if err := addBridge(down.st, "after"); err != nil {
		t.Fatal(err)
	}
	sameStores(t, nodes)
}

func TestMesh(t *testing.T) {
	nodes := cluster3(t)
	a, b := nodes[1], nodes[2]
	var mu sync.Mutex
	var got []string
	var from string
	b.c.Mesh().Handle(ChanStanza, func(f string, msg []byte) {
		mu.Lock()
		got, from = append(got, string(msg)), f
		mu.Unlock()
	})
	var members [][]string
	a.c.Mesh().OnMembers(func(m []string) {
		mu.Lock()
		members = append(members, m)
		mu.Unlock()
	})
	const n = 2000
	for i := range n {
		for {
			err := a.c.Mesh().Send(b.c.ID(), ChanStanza, []byte(fmt.Sprint(i)))
			if err == nil {
				break
			}
			if !errors.Is(err, ErrQueueFull) {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(t, 5*time.Second, "every message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == n
	})
	for i, m := range got {
		if m != fmt.Sprint(i) {
			t.Fatalf("message %d is %s: out of order", i, m)
		}
	}
	if from != a.c.ID() {
		t.Fatalf("from %s", from)
	}
	if m := a.c.Mesh().Members(); len(m) != 3 || !slices.IsSorted(m) || !slices.Contains(m, a.c.Mesh().Self()) {
		t.Fatalf("members %v", m)
	}
	// A node that goes away: Send fails at once, OnMembers is told.
	b.c.Close()
	waitFor(t, 2*time.Second, "OnMembers without the node", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(members) > 0 && len(members[len(members)-1]) == 2
	})
	if err := a.c.Mesh().Send(b.c.ID(), ChanStanza, []byte("x")); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("send to a closed node: %v", err)
	}
	if err := a.c.Mesh().Send("nosuchnode", ChanStanza, []byte("x")); !errors.Is(err, ErrNotMember) {
		t.Fatalf("send to a non-member: %v", err)
	}
	b.restart()
	waitFor(t, 3*time.Second, "OnMembers with the node again", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(members[len(members)-1]) == 3
	})
	// Connections made again (a new trust bundle, say): OnReconnect is
	// told of each other node, which may have lost what was in flight.
	var again []string
	a.c.Mesh().OnReconnect(func(node string) {
		mu.Lock()
		again = append(again, node)
		mu.Unlock()
	})
	a.c.Reconnect()
	waitFor(t, 5*time.Second, "OnReconnect for both other nodes", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(again, b.c.ID()) && slices.Contains(again, nodes[0].c.ID())
	})
}

func TestRestartSkipsApplied(t *testing.T) {
	nodes := cluster3(t)
	for i := range 10 {
		if err := addBridge(nodes[0].st, fmt.Sprintf("cb%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	n := nodes[1]
	sameStores(t, nodes)
	before := n.st.AppliedIndex()
	n.st.Settle(t.Context(), before)
	var mu sync.Mutex
	var again []uint64
	n.st.Watch(func(c store.Change) {
		mu.Lock()
		defer mu.Unlock()
		if c.Index <= before {
			again = append(again, c.Index)
		}
	})
	n.restart()
	if err := addBridge(n.st, "after"); err != nil {
		t.Fatal(err)
	}
	sameStores(t, nodes)
	n.st.Settle(t.Context(), n.st.AppliedIndex())
	mu.Lock()
	defer mu.Unlock()
	if len(again) > 0 {
		t.Fatalf("entries applied again after the restart: %v", again)
	}
}

func TestFSMSkipsAppliedEntries(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := newFSM(st)
	entry := func(name string) []byte {
		b, err := store.EncodeEntry(store.Entry{Time: time.Now(), ID: name, Op: store.ComponentAdd{Component: store.Component{Name: name, Domain: "d", Secret: "s"}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	logs := []*raft.Log{
		{Index: 5, Type: raft.LogCommand, Data: entry("a")},
		{Index: 6, Type: raft.LogConfiguration},
		{Index: 7, Type: raft.LogCommand, Data: entry("b")},
		{Index: 8, Type: raft.LogCommand, Data: entry("a")},
	}
	out := f.ApplyBatch(logs)
	if a := out[0].(store.Applied); a.Err != nil || a.Index != 5 {
		t.Fatalf("%+v", a)
	}
	if out[1] != nil {
		t.Fatalf("%+v", out[1])
	}
	if a := out[3].(store.Applied); !errors.Is(a.Err, store.ErrExists) {
		t.Fatalf("%+v", a)
	}
	if st.AppliedIndex() != 8 || !f.waitApplied(8, 0) {
		t.Fatal("applied index")
	}
	// Replayed after a restart: skipped.
	f = newFSM(st)
	out = f.ApplyBatch(logs[2:3])
	if a := out[0].(store.Applied); a.Err != nil {
		t.Fatalf("replayed: %+v", a)
	}
	out = f.ApplyBatch([]*raft.Log{{Index: 9, Type: raft.LogCommand, Data: entry("b")}})
	if a := out[0].(store.Applied); !errors.Is(a.Err, store.ErrExists) {
		t.Fatalf("new entry: %+v", a)
	}
}

func TestWireErrorsAndResponses(t *testing.T) {
	for _, kind := range []error{store.ErrExists, store.ErrNotFound, store.ErrFull, store.ErrLastAdmin, ErrNoLeader, store.ErrMaybe, store.ErrNotMade} {
		err := fmt.Errorf("thing x %w", kind)
		got := encodeError(err).decode()
		if !errors.Is(got, kind) || got.Error() != err.Error() {
			t.Errorf("%v → %v", err, got)
		}
	}
	if encodeError(nil).decode() != nil {
		t.Fatal("nil error")
	}
	// An error of two kinds keeps both across the wire.
	two := fmt.Errorf("%w: no longer the leader: %w, try again", raft.ErrNotLeader, store.ErrNotMade)
	if got := encodeError(two).decode(); !errors.Is(got, raft.ErrNotLeader) || !errors.Is(got, store.ErrNotMade) || got.Error() != two.Error() {
		t.Errorf("%v → %v", two, got)
	}
	if got := encodeError(&NoLeaderError{1, 3}).decode(); !errors.Is(got, ErrNoLeader) || !errors.Is(got, store.ErrNotMade) {
		t.Errorf("no leader → %v", got)
	}
	res := store.SubscribeResult{
		Sender:   store.RosterChange{User: "a@x", After: store.RosterItem{JID: "b@x", Subscription: store.SubTo}, Stored: true},
		Receiver: store.RosterChange{User: "b@x", Err: fmt.Errorf("roster full: %w", store.ErrFull)},
		Deliver:  true, Presence: []store.PresenceNote{{Of: "a@x", To: "b@x", Available: true}},
	}
	dir := store.DirectoryRosterResult{
		Stored:  []store.RosterChange{{User: "a@x", After: store.RosterItem{JID: "b@x", Subscription: store.SubBoth, Groups: []string{"staff"}}, Stored: true}},
		Removed: []store.RosterChange{{User: "b@x", Before: store.RosterItem{JID: "c@x"}, Existed: true}},
	}
	ok := store.SubscribeResult{Sender: store.RosterChange{User: "a@x", Stored: true}, Deliver: true}
	removed := store.RemoveResult{Item: store.RosterItem{JID: "b@x", Subscription: store.SubBoth}, Unsubscribe: &ok}
	for _, resp := range []any{nil, store.RosterItem{JID: "b@x", Name: "B", Groups: []string{"g"}}, res, dir, store.Duplicate{}, removed} {
		w, err := encodeResponse(resp)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(w)
		var w2 *wireResponse
		json.Unmarshal(b, &w2)
		got, err := decodeResponse(w2)
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := got.(store.SubscribeResult); ok {
			if !errors.Is(r.Receiver.Err, store.ErrFull) {
				t.Fatalf("receiver error %v", r.Receiver.Err)
			}
			r.Receiver.Err = res.Receiver.Err
			got = r
		}
		if !reflect.DeepEqual(got, resp) {
			t.Errorf("%#v → %#v", resp, got)
		}
	}
	if _, err := encodeResponse(42); err == nil {
		t.Fatal("an unknown response type crossed the wire")
	}
}

func TestJoinErrors(t *testing.T) {
	p := newCA(t, "cluster CA")
	a := newTestNode(t, p)
	if err := a.c.Initialize(); err == nil || err.Error() != "the cluster is not enabled on this node: xmpp cluster enable first" {
		t.Fatalf("initialize before enable: %v", err)
	}
	if err := a.c.Enable(); err != nil {
		t.Fatal(err)
	}
	b := newTestNode(t, p, func(c *Config) { c.Trust = nil })
	b.c.Enable()
	if _, err := b.c.Join(a.addr()); err == nil || err.Error() != "this node has no cluster trust bundle: xmpp cluster trust <bundle> first" {
		t.Fatalf("join without trust: %v", err)
	}
	c := newTestNode(t, p)
	c.c.Enable()
	_, err := c.c.Join(a.addr())
	if err == nil || !strings.Contains(err.Error(), "not in a cluster") {
		t.Fatalf("join of a node not initialized: %v", err)
	}
	_, err = c.c.Join(net.JoinHostPort(nextHost(), fmt.Sprint(testPort)))
	if err == nil || !strings.Contains(err.Error(), "cannot reach the cluster node at") {
		t.Fatalf("join of nothing: %v", err)
	}
	if err := a.c.Initialize(); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Initialize(); err == nil || err.Error() != "this node is already in a cluster of 1 node: xmpp cluster disable first" {
		t.Fatalf("initialize twice: %v", err)
	}
	// A node the leader cannot connect back to is not added (a one-node
	// cluster would lose its quorum).
	d := newTestNode(t, p, func(c *Config) { c.Advertise = net.JoinHostPort(nextHost(), fmt.Sprint(testPort)) })
	d.c.Enable()
	_, err = d.c.Join(a.addr())
	if err == nil || !strings.Contains(err.Error(), "cannot connect back to this node") {
		t.Fatalf("join with a wrong address: %v", err)
	}
	if err := addBridge(a.st, "still"); err != nil {
		t.Fatal(err)
	}
	// The state survives a restart.
	a.restart()
	waitFor(t, 3*time.Second, "leader after restart", func() bool { return a.c.Status().State == status.Leader })
	if err := addBridge(a.st, "x"); err != nil {
		t.Fatal(err)
	}
}

func TestDisableLeaderAndRemoveLeader(t *testing.T) {
	nodes := cluster3(t)
	old := nodes[0]
	if err := old.c.Disable(); err != nil {
		t.Fatal(err)
	}
	rest := nodes[1:]
	waitFor(t, 3*time.Second, "a new leader of 2", func() bool {
		l := leaderOf(rest)
		return l != nil && len(l.c.Status().Peers) == 2
	})
	if err := addBridge(rest[0].st, "two"); err != nil {
		t.Fatal(err)
	}
	if err := addBridge(old.st, "alone"); err != nil { // standalone again
		t.Fatal(err)
	}
	// The disabled node joins again; then a follower removes the leader.
	if err := old.c.Enable(); err != nil {
		t.Fatal(err)
	}
	if _, err := old.c.Join(rest[0].addr()); err != nil {
		t.Fatal(err)
	}
	sameStores(t, nodes)
	l := leaderOf(nodes)
	var f *testNode
	for _, n := range nodes {
		if n != l {
			f = n
		}
	}
	waitFor(t, 3*time.Second, "3 reachable members", func() bool { return len(f.c.Mesh().Members()) == 3 })
	if err := f.c.Remove(l.c.ID()); err != nil {
		t.Fatal(err)
	}
	var others []*testNode
	for _, n := range nodes {
		if n != l {
			others = append(others, n)
		}
	}
	waitFor(t, 3*time.Second, "a new leader of 2", func() bool {
		nl := leaderOf(others)
		return nl != nil && len(nl.c.Status().Peers) == 2
	})
	if err := addBridge(f.st, "after-remove"); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkPropose measures proposals through raft on three loopback
// nodes, from the leader and from a follower (forwarded), in parallel.
func BenchmarkPropose(b *testing.B) {
	nodes := cluster3(b)
	for _, bc := range []struct {
		name string
		n    *testNode
	}{{"leader", nodes[0]}, {"follower", nodes[1]}} {
		b.Run(bc.name, func(b *testing.B) {
			var seq atomicCounter
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := bc.n.st.Propose(store.OfflinePush{User: "u@example.com", Stanza: []byte(fmt.Sprintf("<message id='%d'/>", seq.next()))}); err != nil && !errors.Is(err, store.ErrFull) {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

type atomicCounter struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCounter) next() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n
}

func TestTrustChangeAndClone(t *testing.T) {
	nodes := cluster3(t)
	// The bundle on node 3 no longer covers the others: after Reconnect
	// it refuses them, and they it.
	other := newCA(t, "another CA")
	nodes[2].trust.Store(other.pool)
	nodes[2].c.Reconnect()
	waitFor(t, 3*time.Second, "node 3 cut off", func() bool {
		return len(nodes[0].c.Mesh().Members()) == 2 && len(nodes[2].c.Mesh().Members()) == 1
	})
	if err := addBridge(nodes[1].st, "two-of-three"); err != nil {
		t.Fatal(err)
	}
	nodes[2].trust.Store(nodes[2].pki.pool)
	nodes[2].c.Reconnect()
	waitFor(t, 3*time.Second, "node 3 back", func() bool { return len(nodes[2].c.Mesh().Members()) == 3 })
	sameStores(t, nodes)

	// A copy of node 2 (its data directory's node id) is refused while
	// node 2 is alive.
	d := newTestNode(t, nodes[0].pki)
	d.c.Close()
	if err := os.WriteFile(d.dir+"/"+NodeIDFile, []byte(nodes[1].c.ID()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.open()
	if d.c.ID() != nodes[1].c.ID() {
		t.Fatal("id not read")
	}
	d.c.Enable()
	_, err := d.c.Join(nodes[0].addr())
	if err == nil || !strings.Contains(err.Error(), "this node is a copy of it") {
		t.Fatalf("join of a copy: %v", err)
	}
	if len(nodes[0].c.Status().Peers) != 3 {
		t.Fatal("the copy replaced the node")
	}
}

func TestSortPeers(t *testing.T) {
	ps := []status.ClusterPeer{{Address: "b.lan:5222"}, {Address: "10.0.0.10:5222"}, {Address: "a.lan:5222"}, {Address: "10.0.0.9:5222"}}
	sortPeers(ps)
	var got []string
	for _, p := range ps {
		got = append(got, p.Address)
	}
	if want := "10.0.0.9:5222 10.0.0.10:5222 a.lan:5222 b.lan:5222"; strings.Join(got, " ") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
}

// TestMeshStanzaBackPressure: a burst of stanzas to a node that reads
// them slowly fills its queue; Send then waits for room (at most
// StanzaWait) instead of failing, so no stanza of the burst is refused
// while the node is up and draining.
func TestMeshStanzaBackPressure(t *testing.T) {
	nodes := cluster3(t)
	a, b := nodes[1], nodes[2]
	var got atomic.Int64
	b.c.Mesh().Handle(ChanStanza, func(string, []byte) {
		if got.Add(1)%256 == 0 {
			time.Sleep(3 * time.Millisecond) // a busy receiver, slower than the sender
		}
	})
	const n = 3 * QueueLength
	for i := range n {
		if err := a.c.Mesh().Send(b.c.ID(), ChanStanza, []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("stanza %d of a burst of %d: %v", i, n, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for got.Load() != n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := got.Load(); g != n {
		t.Fatalf("%d of %d stanzas arrived", g, n)
	}
}
