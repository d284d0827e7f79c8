package routes

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/cluster"
	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/store"
)

// TestRealMesh: the route table and forwarding over the cluster's own
// Mesh (mutual TLS on loopback, two nodes of one raft cluster): a bind
// on one node is seen on the other, a message to it is forwarded there,
// and when the node is gone its entries are dropped.
func TestRealMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two raft nodes")
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cluster"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	cert := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}

	type node struct {
		c     *cluster.Cluster
		r     *router.Router
		t     *Table
		off   *offline
		addr  string
		store *store.Store
	}
	start := func() *node {
		dir := t.TempDir()
		st, err := store.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		c, err := cluster.New(cluster.Config{DataDir: dir, Store: st, Listen: addr, Advertise: addr,
			Certificate: func() (*tls.Certificate, error) { return cert, nil },
			Trust:       func() (*x509.CertPool, error) { return pool, nil },
			Log:         log.New(io.Discard, "", 0)})
		if err != nil {
			t.Fatal(err)
		}
		n := &node{c: c, r: router.New(), off: &offline{}, addr: addr, store: st}
		n.r.Hosted = func(d string) bool { return d == "a.lan" }
		n.r.Offline = n.off
		n.t = New(Config{Mesh: c.Mesh(), Router: n.r, Log: log.New(io.Discard, "", 0)})
		t.Cleanup(func() { n.t.Close(); c.Close(); st.Close() })
		if err := c.Enable(); err != nil {
			t.Fatal(err)
		}
		return n
	}
	a, b := start(), start()
	if err := a.c.Initialize(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.c.Join(a.addr); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two reachable members", func() bool {
		return len(a.c.Mesh().Members()) == 2 && len(b.c.Mesh().Members()) == 2
	})
	bob := &sess{bare: "bob@a.lan", res: "desk", r: b.r}
	b.r.Bind(bob)
	b.r.SetAvailable(bob, true, 1)
	eventually(t, "a sees bob on b", func() bool {
		n, ok := a.t.Resource("bob@a.lan", "desk")
		return ok && n == b.c.ID()
	})
	for _, to := range []string{"bob@a.lan/desk", "bob@a.lan"} {
		if c, _ := a.r.Route(msg("chat", to, to), jid(to)); c != "" {
			t.Fatal(c)
		}
	}
	eventually(t, "bob gets both messages", func() bool { return bob.count() == 2 })

	// b goes: its entries go on a, and what was for bob is stored there.
	b.t.Close()
	b.c.Close()
	eventually(t, "a drops b's entries", func() bool { return a.t.Len() == 0 })
	a.r.Route(msg("chat", "bob@a.lan/desk", "later"), jid("bob@a.lan/desk"))
	if a.off.count() != 1 {
		t.Fatal("not stored offline on a")
	}
}
