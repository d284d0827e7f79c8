package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server/cluster"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/store"
)

func openStore(t *testing.T) (string, *store.Store, *pki.Area) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	area, err := pki.OpenArea(filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { area.Close() })
	return dir, st, area
}

func TestClusterSettings(t *testing.T) {
	dir, st, _ := openStore(t)
	s, err := newClusterSettings(dir, st)
	if err != nil {
		t.Fatal(err)
	}
	changed := 0
	s.changed = func() { changed++ }
	if got := s.TrustBundle(); got != "" {
		t.Fatalf("fresh: %q", got)
	}
	if err := s.SetTrustBundle("ca.pem"); err != nil {
		t.Fatal(err)
	}
	again, _ := newClusterSettings(dir, st)
	if got := again.TrustBundle(); got != "ca.pem" {
		t.Fatalf("after set, read again: %q", got)
	}
	// A node-local setting: not in the replicated store, never through
	// the log.
	if v, _ := st.Config(store.ClusterTrust); v != "ca.pem" {
		t.Fatalf("cluster.trust = %q", v)
	}
	if err := s.SetTrustBundle(""); err != nil {
		t.Fatal(err)
	}
	if err := s.SetTrustBundle(""); err != nil { // clearing twice is fine
		t.Fatal(err)
	}
	if got := s.TrustBundle(); got != "" || changed != 3 {
		t.Fatalf("after clear: %q, changed %d times", got, changed)
	}
}

// The data-directory file of earlier versions is imported once.
func TestClusterSettingsImportsTheOldFile(t *testing.T) {
	dir, st, _ := openStore(t)
	old := filepath.Join(dir, trustFile)
	if err := os.WriteFile(old, []byte("nodes.pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := newClusterSettings(dir, st)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.TrustBundle(); got != "nodes.pem" {
		t.Fatalf("imported: %q", got)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("the old file is still there: %v", err)
	}
	if s, _ := newClusterSettings(dir, st); s.TrustBundle() != "nodes.pem" {
		t.Fatalf("after import, read again: %q", s.TrustBundle())
	}
}

func TestClusterListen(t *testing.T) {
	_, st, _ := openStore(t)
	for _, tc := range []struct {
		listen       string // "" leaves it unset: all addresses
		want, wantXM string
	}{
		{"", ":5270", ""},
		{"192.0.2.10 2001:db8::1", "192.0.2.10:5270", "192.0.2.10:5222"},
		{"2001:db8::1", "[2001:db8::1]:5270", "[2001:db8::1]:5222"},
		{"lo", "127.0.0.1:5270", "127.0.0.1:5222"},
		{store.ListenNone, ":5270", ""},
	} {
		if tc.listen == "" {
			st.DelLocal(store.XMPPListen)
		} else if err := st.SetLocal(store.XMPPListen, tc.listen); err != nil {
			t.Fatal(err)
		}
		if got := clusterListen(st); got != tc.want {
			t.Errorf("xmpp listen %q: cluster listen %q, want %q", tc.listen, got, tc.want)
		}
		if got := xmppAddress(st); got != tc.wantXM {
			t.Errorf("xmpp listen %q: XMPP address %q, want %q", tc.listen, got, tc.wantXM)
		}
	}
	// xmpp cluster port: this node's own port.
	if err := st.SetLocal(store.XMPPListen, "192.0.2.10"); err != nil {
		t.Fatal(err)
	}
	if err := st.SetLocal(store.ClusterPort, "5299"); err != nil {
		t.Fatal(err)
	}
	if got := clusterListen(st); got != "192.0.2.10:5299" {
		t.Errorf("xmpp cluster port 5299: cluster listen %q, want 192.0.2.10:5299", got)
	}
}

func TestTrustPool(t *testing.T) {
	_, _, area := openStore(t)
	if _, err := trustPool(area, ""); err == nil {
		t.Error("no bundle: no error")
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "node"}, DNSNames: []string{"node.lan"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	area.WriteFile("node.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600, false)
	pool, err := trustPool(area, "node.pem")
	if err != nil {
		t.Fatal(err)
	}
	// The bundle's certificate is trusted, even self-signed and not a CA
	// (a node's own certificate), and nothing else: not the system roots.
	cert, _ := x509.ParseCertificate(der)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("the bundle's own certificate does not verify: %v", err)
	}
	if sys, _ := x509.SystemCertPool(); sys != nil && pool.Equal(sys) {
		t.Error("the pool is the system's")
	}
	area.WriteFile("notes.txt", []byte("hello\n"), 0o600, false)
	if _, err := trustPool(area, "notes.txt"); err == nil {
		t.Error("a file without certificates: no error")
	}
}

// TestClusterNodeRemade: a node enabled after xmpp listen changed listens
// on the new address, keeping its id and what was registered on the Mesh.
func TestClusterNodeRemade(t *testing.T) {
	dir, st, area := openStore(t)
	logger := logging.Discard()
	n, err := newClusterNode(dir, st, area, nil, &clusterSettings{st: st}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if got := clusterListen(st); got != ":5270" {
		t.Fatalf("listen before xmpp listen: %q", got)
	}
	id := n.Mesh().Self()
	mesh := n.Mesh()
	n.Mesh().Handle(cluster.ChanStanza, func(string, []byte) {})
	if err := st.SetLocal(store.XMPPListen, "127.0.12.77"); err != nil {
		t.Fatal(err)
	}
	if err := n.Enable(); err != nil {
		t.Fatal(err)
	}
	if st := n.Status(); st.Listen != "127.0.12.77:5270" || st.NodeID != id {
		t.Errorf("status after enable: listen %q, id %q (was %q)", st.Listen, st.NodeID, id)
	}
	if n.Mesh() != mesh {
		t.Errorf("Mesh handlers not kept: the Mesh changed at enable")
	}
	// The store still commits (locally: the node is enabled, not in a cluster).
	if _, err := st.Propose(store.ConfigSet{Key: store.XMPPPortS2S, Value: "5270"}); err != nil {
		t.Errorf("a write after enable: %v", err)
	}
}
