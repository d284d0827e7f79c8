package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

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
	t    testing.TB
	host string
	dir  string
	st   *store.Store
	c    *Cluster
	cert *tls.Certificate
	pki  *testPKI
	logs *syncBuffer
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
		DataDir: n.dir, Store: n.st, Listen: addr, Advertise: addr,
		Certificate: func() (*tls.Certificate, error) { return n.cert, nil },
		Trust:       func() (*x509.CertPool, error) { return n.pki.pool, nil },
		Log:         log.New(n.logs, n.host+" ", log.Lmicroseconds),
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
