// Package clustertest starts real cluster nodes for tests and benchmarks
// in other packages: mutual TLS on loopback with one self-signed
// certificate every node presents and trusts, each node with a store of
// its own in a temporary directory.
package clustertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"github.com/parley-xmpp/parley/server/logging"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/cluster"
	"github.com/parley-xmpp/parley/store"
)

// PKI is one self-signed certificate for 127.0.0.1 and the pool that
// trusts it.
type PKI struct {
	Cert *tls.Certificate
	Pool *x509.CertPool
}

// NewPKI makes a PKI valid for an hour either side of now.
func NewPKI(tb testing.TB) PKI {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cluster"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return PKI{Cert: &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, Pool: pool}
}

// Node is a started, enabled cluster node (not yet initialized or
// joined), its store and its cluster address. Both are closed at the
// end of the test.
func Node(tb testing.TB, p PKI) (*cluster.Cluster, *store.Store, string) {
	tb.Helper()
	dir := tb.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := cluster.New(cluster.Config{DataDir: dir, Store: st, Listen: func() string { return addr }, Advertise: addr,
		Certificate: func() (*tls.Certificate, error) { return p.Cert, nil },
		Trust:       func() (*x509.CertPool, error) { return p.Pool, nil },
		Log:         logging.Discard()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close(); st.Close() })
	if err := c.Enable(); err != nil {
		tb.Fatal(err)
	}
	return c, st, addr
}
