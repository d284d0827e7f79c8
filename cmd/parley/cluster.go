package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server/cluster"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// trustFile, in the data directory, is where Parley before schema 5 kept
// the name of the cluster trust bundle; it is imported into the store's
// node-local cluster.trust once and removed.
const trustFile = "cluster-trust"

// clusterSettings are the node's own cluster settings
// (commands.ClusterSettings): node-local settings of the store, never
// replicated, so they survive joining and leaving a cluster.
type clusterSettings struct {
	st *store.Store
	// changed is called after the trust bundle changed.
	changed func()
}

// newClusterSettings imports the trust bundle's name from the old file
// in dataDir, if there is one.
func newClusterSettings(dataDir string, st *store.Store) (*clusterSettings, error) {
	s := &clusterSettings{st: st}
	old := filepath.Join(dataDir, trustFile)
	b, err := os.ReadFile(old)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	} else if err != nil {
		return nil, err
	}
	if name := strings.TrimSpace(string(b)); name != "" && s.TrustBundle() == "" {
		if err := st.SetLocal(store.ClusterTrust, name); err != nil {
			return nil, err
		}
	}
	return s, os.Remove(old)
}

func (s *clusterSettings) TrustBundle() string {
	v, _ := s.st.Config(store.ClusterTrust)
	return v
}

func (s *clusterSettings) SetTrustBundle(name string) error {
	var err error
	if name == "" {
		err = s.st.DelLocal(store.ClusterTrust)
	} else {
		err = s.st.SetLocal(store.ClusterTrust, name)
	}
	if err == nil && s.changed != nil {
		s.changed()
	}
	return err
}

// clusterNode is the appliance's cluster node as the commands see it. The
// cluster listener's address follows the node's XMPP listen address (its
// first IP address, or the first address of its first interface) on the
// cluster port; it is read when the listener starts, so `xmpp listen`
// changed before `xmpp cluster enable` is followed.
type clusterNode struct {
	c *cluster.Cluster

	// joined and left are called after the node was enabled and after it
	// was disabled (the engine joins the mesh, or leaves it: a node alone
	// routes without the cluster's route table).
	joined, left func()
}

var _ cluster.Node = (*clusterNode)(nil)

// raftTuning is the raft snapshot settings of serve's flags
// (--raft-snapshot-threshold, --raft-snapshot-interval, --raft-trailing-logs).
var raftTuning struct {
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
}

// newClusterNode makes the node and starts what is enabled (the listener,
// and raft if the node is in a cluster); sessions counts the client
// sessions bound on this node (nil: none).
func newClusterNode(dataDir string, st *store.Store, area *pki.Area, sessions func() int, settings *clusterSettings, logger *slog.Logger) (*clusterNode, error) {
	c, err := cluster.New(cluster.Config{
		DataDir: dataDir,
		Store:   st,
		Listen: func() string {
			return clusterListen(st)
		},
		XMPPAddress: func() string {
			return xmppAddress(st)
		},
		Sessions: sessions,
		Certificate: func() (*tls.Certificate, error) {
			return nodeCertificate(st, area)
		},
		Trust: func() (*x509.CertPool, error) {
			return trustPool(area, settings.TrustBundle())
		},
		Log:               logger,
		SnapshotThreshold: raftTuning.SnapshotThreshold,
		SnapshotInterval:  raftTuning.SnapshotInterval,
		TrailingLogs:      raftTuning.TrailingLogs,
	})
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		// The appliance still serves; xmpp cluster status shows the node.
		logging.Problem(logger, "cluster: %v", err)
	}
	n := &clusterNode{c: c}
	// A new trust bundle or a new certificate for the primary domain: the
	// connections between the nodes are made and verified again.
	settings.changed = n.Reconnect
	st.Watch(func(ch store.Change) {
		switch ch.Op.(type) {
		case store.DomainPrimary, store.XMPPReset:
			n.Reconnect()
		}
	})
	return n, nil
}

func (n *clusterNode) Status() status.Cluster { return n.c.Status() }

// Disable leaves the cluster; the engine leaves the mesh.
func (n *clusterNode) Disable() error {
	err := n.c.Disable()
	if err == nil && n.left != nil {
		n.left()
	}
	return err
}

func (n *clusterNode) Initialize() error                         { return n.c.Initialize() }
func (n *clusterNode) Remove(node string) error                  { return n.c.Remove(node) }
func (n *clusterNode) Join(m string) (cluster.JoinReport, error) { return n.c.Join(m) }

// Enable enables the node (its listener starts on the current cluster
// listen address); the engine joins the mesh.
func (n *clusterNode) Enable() error {
	if err := n.c.Enable(); err != nil {
		return err
	}
	if n.joined != nil {
		n.joined()
	}
	return nil
}

// Enabled reports whether the node is enabled (its listener runs).
func (n *clusterNode) Enabled() bool { return n.c.Enabled() }

// Mesh is the messaging between the nodes.
func (n *clusterNode) Mesh() cluster.Mesh { return n.c.Mesh() }

// bootWriteWait bounds how long a member waits at boot for a leader before
// it writes what the command line asks for.
const bootWriteWait = 10 * time.Second

// waitWritable waits until a write can commit: at once on a node that is
// not in a cluster (the store commits locally), else until it leads or
// follows a leader it reaches, at most wait.
func (n *clusterNode) waitWritable(wait time.Duration) bool {
	for deadline := time.Now().Add(wait); ; time.Sleep(50 * time.Millisecond) {
		st := n.Status()
		leader := false
		for _, p := range st.Peers {
			leader = leader || p.Leader && (p.Self || p.Reachable)
		}
		switch {
		case st.State == status.Disabled, st.Term == 0 && len(st.Peers) <= 1 && !leader:
			return true // not in a cluster
		case st.State == status.Leader, st.State == status.Follower && leader:
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// Reconnect makes the connections to the other nodes again, verified
// with the current certificate and trust bundle.
func (n *clusterNode) Reconnect() { n.c.Reconnect() }

// Close stops the node (its state stays for the next start).
func (n *clusterNode) Close() error { return n.c.Close() }

// clusterListen is the cluster listener's address: the host of the node's
// XMPP listen address and the cluster port; all addresses when XMPP
// listens on all of them (or none).
func clusterListen(st *store.Store) string {
	port := strconv.Itoa(cluster.DefaultPort)
	if n := st.ConfigInt(store.ClusterPort); n > 0 && n < 65536 { // 0: unset
		port = strconv.Itoa(n)
	}
	if host := listenHost(st); host != "" {
		return net.JoinHostPort(host, port)
	}
	return ":" + port
}

// listenHost is the first IP address of xmpp listen (an interface's first
// address, IPv4 preferred), "" for all or none.
func listenHost(st *store.Store) string {
	cfg, err := st.XMPP()
	if err != nil {
		return ""
	}
	for _, l := range cfg.Listen {
		if a, err := netip.ParseAddr(l); err == nil {
			if a.IsUnspecified() {
				return ""
			}
			return a.String()
		}
		if ip := interfaceAddr(l); ip != "" {
			return ip
		}
	}
	return ""
}

func interfaceAddr(name string) string {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return ""
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return ""
	}
	var v6 string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLinkLocalUnicast() {
			continue
		}
		if ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
		if v6 == "" {
			v6 = ipn.IP.String()
		}
	}
	return v6
}

// xmppAddress is the node's XMPP address as xmpp cluster status prints
// it: the listen host and the c2s port ("" when XMPP listens on all
// addresses: the cluster then takes the host it advertises).
func xmppAddress(st *store.Store) string {
	host := listenHost(st)
	if host == "" {
		return ""
	}
	port := store.DefaultPortC2S
	if cfg, err := st.XMPP(); err == nil && cfg.PortC2S > 0 {
		port = cfg.PortC2S
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// nodeCertificate is what the node presents to the others: the primary
// domain's key, certificate and bundle (xmpp certs), as the engine serves
// them.
func nodeCertificate(st *store.Store, area *pki.Area) (*tls.Certificate, error) {
	cfg, err := st.XMPP()
	if err != nil {
		return nil, err
	}
	d, ok := cfg.Primary()
	if !ok || d.Key == "" || d.Cert == "" {
		return nil, errors.New("this node has no certificate: xmpp domain <name>, then xmpp certs <key> <crt> [<bundle>]")
	}
	keyPEM, err := area.ReadFile(d.Key)
	if err != nil {
		return nil, err
	}
	certPEM, err := area.ReadFile(d.Cert)
	if err != nil {
		return nil, err
	}
	var bundlePEM []byte
	if d.Bundle != "" {
		if bundlePEM, err = area.ReadFile(d.Bundle); err != nil {
			return nil, err
		}
	}
	return pki.KeyPair(keyPEM, certPEM, bundlePEM)
}

// trustPool is what the other nodes' certificates must chain to: every
// certificate of the trust bundle (the nodes' own certificates, or their
// CA), and nothing else (not the system roots).
func trustPool(area *pki.Area, bundle string) (*x509.CertPool, error) {
	if bundle == "" {
		return nil, errors.New("no cluster trust bundle: xmpp cluster trust <bundle>")
	}
	data, err := area.ReadFile(bundle)
	if err != nil {
		return nil, fmt.Errorf("cluster trust bundle: %v", err)
	}
	certs, err := pki.ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("cluster trust bundle %s: %v", bundle, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}
