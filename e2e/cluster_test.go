package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Issue 11, Shell: three appliances form a cluster with Cisco Meeting
// Server's command sequence, typed verbatim, and a fourth shows the
// refusals. Each node is a loopback address of 127.0.11.0/24 (no other
// test uses it): its XMPP listeners on the default ports and its cluster
// listener on the default cluster port there; its SSH shell on a free
// port of 127.0.0.1 as for every appliance.

const clusterDomain = "chat.lan"

// clusterIP is node n's address.
func clusterIP(n int) string { return fmt.Sprintf("127.0.11.%d", n) }

// clusterCerts makes, with openssl, what the admin uploads to every node:
// a CA (cluster-ca.pem) and one key and certificate (cluster.key,
// cluster.crt) naming the domain and every node (DNS and IP), as Cisco's
// guide has it; and a rogue CA with a certificate it signed for node 4
// (rogue.key, rogue.crt), with a bundle that trusts both CAs
// (rogue-trust.pem), so node 4 trusts the cluster but the cluster does not
// trust node 4.
func clusterCerts(t *testing.T, dir string) {
	t.Helper()
	ec := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"}
	ca := func(name, cn string) {
		run(t, dir, opensslBin, append(append([]string{"req", "-x509"}, ec...), "-keyout", name+".key", "-out", name+".pem",
			"-subj", "/CN="+cn, "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE",
			"-addext", "keyUsage=critical,keyCertSign,cRLSign")...)
	}
	leaf := func(name, caName string, serial int, sans string) {
		writeFile(t, dir, name+".ext", []byte("subjectAltName="+sans+"\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n"))
		run(t, dir, opensslBin, append(append([]string{"req", "-new"}, ec...), "-keyout", name+".key", "-out", name+".csr", "-subj", "/CN="+clusterDomain)...)
		run(t, dir, opensslBin, "x509", "-req", "-in", name+".csr", "-CA", caName+".pem", "-CAkey", caName+".key",
			"-set_serial", fmt.Sprint(serial), "-days", "30", "-extfile", name+".ext", "-out", name+".crt")
	}
	ca("cluster-ca", "Cluster Test CA")
	sans := []string{"DNS:" + clusterDomain, "DNS:*." + clusterDomain}
	for n := 1; n <= 4; n++ {
		sans = append(sans, fmt.Sprintf("DNS:node%d.%s", n, clusterDomain), "IP:"+clusterIP(n))
	}
	leaf("cluster", "cluster-ca", 100, strings.Join(sans, ","))
	ca("rogue-ca", "Rogue Test CA")
	leaf("rogue", "rogue-ca", 200, "DNS:"+clusterDomain+",IP:"+clusterIP(4))
	run(t, dir, "/bin/sh", "-c", "cat rogue-ca.pem cluster-ca.pem > rogue-trust.pem")
}

// clusterNode is one appliance of the cluster.
type clusterNode struct {
	*appliance
	n  int
	ip string
}

func (c *clusterNode) logs() string {
	return fmt.Sprintf("--- node %d (%s) stderr:\n%s", c.n, c.ip, c.stderr)
}

// script runs lines as the admin in script mode; it must succeed.
func (c *clusterNode) script(t *testing.T, lines ...string) string {
	t.Helper()
	return mustOK(t, c.ssh(c.asAdmin(), strings.Join(lines, "\n")+"\n", ""), fmt.Sprintf("node %d: %s", c.n, strings.Join(lines, "; ")))
}

// clusterState is `xmpp cluster status` as CMS prints it.
type clusterState struct {
	state  string
	peers  []string // as printed, " (Leader)" cut off
	leader string
	out    string
}

var lastChangeRE = regexp.MustCompile(`^Last state change: (never|\d{4}-[A-Z][a-z]{2}-\d{2} \d{2}:\d{2}:\d{2})$`)

// parseClusterStatus parses and checks the CMS block of xmpp cluster
// status.
func parseClusterStatus(t *testing.T, out string) clusterState {
	t.Helper()
	lines := strings.Split(out, "\n")
	st := clusterState{out: out}
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "State: ") || lines[1] != "List of peers" {
		t.Fatalf("xmpp cluster status does not start with the CMS block:\n%s", out)
	}
	st.state = strings.TrimPrefix(lines[0], "State: ")
	i := 2
	for ; i < len(lines) && !strings.HasPrefix(lines[i], "Last state change: "); i++ {
		p := lines[i]
		if strings.HasSuffix(p, " (Leader)") {
			p = strings.TrimSuffix(p, " (Leader)")
			if st.leader != "" {
				t.Fatalf("two leaders in xmpp cluster status:\n%s", out)
			}
			st.leader = p
		}
		st.peers = append(st.peers, p)
	}
	if i+3 >= len(lines) || !lastChangeRE.MatchString(lines[i]) ||
		!strings.HasPrefix(lines[i+1], "Key file           : ") ||
		!strings.HasPrefix(lines[i+2], "Certificate file   : ") ||
		!strings.HasPrefix(lines[i+3], "Trust bundle       : ") {
		t.Fatalf("xmpp cluster status: the CMS block does not end as CMS's does:\n%s", out)
	}
	return st
}

// status runs xmpp cluster status on the node.
func (c *clusterNode) status(t *testing.T) clusterState {
	t.Helper()
	return parseClusterStatus(t, c.mustAdmin(t, "xmpp cluster status"))
}

// waitPeers waits until the node reports want as its peers (each once, in
// address order), one of them the leader, and its state LEADER or
// FOLLOWER.
func (c *clusterNode) waitPeers(t *testing.T, want ...string) clusterState {
	t.Helper()
	var st clusterState
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st = c.status(t)
		if strings.Join(st.peers, " ") == strings.Join(want, " ") && st.leader != "" && (st.state == "LEADER" || st.state == "FOLLOWER") {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d: xmpp cluster status does not show the peers %v with a leader:\n%s", c.n, want, st.out)
		}
	}
}

// waitOutput waits until command's output on the node holds every one of
// want (a change made on another node reaches this one).
func (c *clusterNode) waitOutput(t *testing.T, command string, want ...string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out := c.mustAdmin(t, command)
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(out, w)
		}
		if ok {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d: %s does not show %q:\n%s\nxmpp cluster status there:\n%s", c.n, command, want, out, c.admin("xmpp cluster status").stdout)
		}
	}
}

func xmppAddr(n int) string { return clusterIP(n) + ":5222" }

// needCluster skips the test when the binary has no cluster node wired in.
func needCluster(t *testing.T, c *clusterNode) {
	t.Helper()
	r := c.admin("xmpp cluster status")
	if r.code != 0 && strings.Contains(r.stderr, "no cluster node") {
		t.Skip("the appliance has no cluster node: server/cluster is not wired into cmd/parley in this build")
	}
}

// startClusterNodes makes the certificates (clusterCerts) in a local
// directory and starts count appliances, nodes[1] to nodes[count] (their
// logs shown if the test fails); it skips the test if the binary has no
// cluster node.
func startClusterNodes(t *testing.T, count int) (string, []*clusterNode) {
	t.Helper()
	return startClusterNodesWith(t, count, nil)
}

// startClusterNodesWith is startClusterNodes with more arguments to every
// node's serve.
func startClusterNodesWith(t *testing.T, count int, serveArgs []string) (string, []*clusterNode) {
	t.Helper()
	local := t.TempDir()
	clusterCerts(t, local)
	nodes := make([]*clusterNode, count+1)
	var logs []interface{ logs() string }
	for n := 1; n <= count; n++ {
		nodes[n] = &clusterNode{appliance: start(t, options{hostname: fmt.Sprintf("node%d", n), serveArgs: serveArgs}), n: n, ip: clusterIP(n)}
		logs = append(logs, nodes[n])
	}
	dumpOnFailure(t, logs...)
	needCluster(t, nodes[1])
	return local, nodes
}

// TestClusterCMSSequence: the CMS sequence, verbatim, on three
// appliances; status on each; a change on any node seen on all; remove,
// disable and rejoin never show a node twice; a node whose certificate the
// bundle does not cover is refused; the one-line errors of the shell.
func TestClusterCMSSequence(t *testing.T) {
	local, nodes := startClusterNodes(t, 4)
	for n := 1; n <= 3; n++ {
		nodes[n].uploadCerts(t, local)
	}
	nodes[4].put(t, nodes[4].asAdmin(), filepath.Join(local, "rogue.key"), filepath.Join(local, "rogue.crt"), filepath.Join(local, "rogue-ca.pem"), filepath.Join(local, "rogue-trust.pem"), filepath.Join(local, "cluster-ca.pem"))
	one, two, three, four := nodes[1], nodes[2], nodes[3], nodes[4]

	// The first node, as Cisco's guide has it.
	out := one.script(t,
		"xmpp domain "+clusterDomain,
		"xmpp listen "+one.ip,
		"xmpp certs cluster.key cluster.crt cluster-ca.pem",
		"xmpp cluster trust cluster-ca.pem",
		"xmpp callbridge add cb1",
		"xmpp disable",
		"xmpp cluster enable",
		"xmpp cluster initialize",
		"xmpp enable",
	)
	for _, want := range []string{"Callbridge cb1 added", "Clustering enabled", "Cluster initialized", "XMPP enabled: listening on " + one.ip + ":5222"} {
		if !strings.Contains(out, want) {
			t.Fatalf("node 1: the CMS sequence did not say %q:\n%s", want, out)
		}
	}
	st := one.waitPeers(t, xmppAddr(1))
	if st.state != "LEADER" || st.leader != xmppAddr(1) {
		t.Fatalf("node 1 after initialize:\n%s", st.out)
	}
	for _, want := range []string{"Key file           : cluster.key\n", "Certificate file   : cluster.crt\n", "Trust bundle       : cluster-ca.pem\n"} {
		if !strings.Contains(st.out, want) {
			t.Errorf("node 1: xmpp cluster status does not say %q:\n%s", want, st.out)
		}
	}
	// Initialize again: refused, with the fix.
	mustFail(t, one.admin("xmpp cluster initialize"), "xmpp cluster initialize on a member", "already in a cluster", "xmpp cluster disable")

	// Joining without trust is refused before anything is tried.
	mustFail(t, four.admin("xmpp cluster join "+one.ip), "join without trust", "xmpp cluster trust <bundle>")

	// Every other node: CMS admins set domain, listen and certs on each
	// node first, then the cluster commands.
	for _, x := range []*clusterNode{two, three} {
		out := x.script(t,
			"xmpp domain "+clusterDomain,
			"xmpp listen "+x.ip,
			"xmpp certs cluster.key cluster.crt cluster-ca.pem",
			"xmpp cluster trust cluster-ca.pem",
			"xmpp disable",
			"xmpp cluster enable",
			"xmpp enable",
			"xmpp cluster join "+one.ip,
		)
		for _, want := range []string{"Clustering enabled", "Joined the cluster", "replaced by the cluster's"} {
			if !strings.Contains(out, want) {
				t.Fatalf("node %d: the CMS sequence did not say %q:\n%s", x.n, want, out)
			}
		}
	}
	all := []string{xmppAddr(1), xmppAddr(2), xmppAddr(3)}
	leaders := map[string]bool{}
	for _, x := range []*clusterNode{one, two, three} {
		st := x.waitPeers(t, all...)
		leaders[st.leader] = true
	}
	if len(leaders) != 1 {
		t.Fatalf("the nodes do not agree on the leader: %v", leaders)
	}

	// A change made on any node is seen on all: an account on node 3, a
	// call bridge on node 2; cb1 (made on node 1 before the others joined)
	// with the same secret everywhere.
	mustOK(t, three.ssh(three.asAdmin(), "xmpp user add alice@"+clusterDomain+"\nAlice-pw-2024\n", ""), "node 3: xmpp user add")
	two.mustAdmin(t, "xmpp callbridge add cb2")
	bridges := one.waitOutput(t, "xmpp callbridge list", "Callbridge : cb1\n", "Callbridge : cb2\n")
	for _, x := range []*clusterNode{one, two, three} {
		x.waitOutput(t, "xmpp user list", "alice@"+clusterDomain)
		if got := x.waitOutput(t, "xmpp callbridge list", "Callbridge : cb2\n"); got != bridges {
			t.Errorf("node %d: xmpp callbridge list differs from node 1's:\n%s\nnode 1:\n%s", x.n, got, bridges)
		}
	}

	// A node whose certificate the cluster's bundle does not cover is
	// refused, with one line. (Its own bundle trusts the cluster's CA.)
	four.script(t,
		"xmpp domain "+clusterDomain,
		"xmpp listen "+four.ip,
		"xmpp certs rogue.key rogue.crt rogue-ca.pem",
	)
	mustFail(t, four.admin("xmpp cluster trust cluster-ca.pem"), "trust a bundle that does not cover this node", "does not cover this node's certificate rogue.crt")
	four.script(t, "xmpp cluster trust rogue-trust.pem", "xmpp cluster enable")
	line := mustFail(t, four.admin("xmpp cluster join "+one.ip), "join with a certificate outside the bundle", "xmpp cluster join", "trust bundle does not cover")
	t.Logf("node 4 refused: %s", line)
	for _, x := range []*clusterNode{one, two, three} {
		x.waitPeers(t, all...)
	}
	// Joining an address where no node listens: one line.
	line = mustFail(t, four.admin("xmpp cluster join 127.0.11.250"), "join an unreachable address", "xmpp cluster join", "127.0.11.250", "check the address")
	t.Logf("join of an unreachable address: %s", line)

	// Remove node 3 from node 1; node 3 leaves, starts afresh and joins
	// again through node 2: each node is listed once.
	out = one.mustAdmin(t, "xmpp cluster remove "+three.ip)
	if !strings.Contains(out, "Removed "+xmppAddr(3)) {
		t.Fatalf("xmpp cluster remove: %s", out)
	}
	one.waitPeers(t, xmppAddr(1), xmppAddr(2))
	two.waitPeers(t, xmppAddr(1), xmppAddr(2))
	three.script(t, "xmpp cluster disable", "xmpp cluster enable", "xmpp cluster join "+two.ip)
	for _, x := range []*clusterNode{one, two, three} {
		x.waitPeers(t, all...)
	}

	// Disable and rejoin without a remove (CMS's CSCvi67717: the node was
	// listed twice): still each node once.
	two.script(t, "xmpp cluster disable")
	if st := two.status(t); st.state != "DISABLED" || len(st.peers) != 0 {
		t.Fatalf("node 2 after disable:\n%s", st.out)
	}
	two.script(t, "xmpp cluster enable", "xmpp cluster join "+one.ip)
	for _, x := range []*clusterNode{one, two, three} {
		x.waitPeers(t, all...)
	}
	t.Logf("xmpp cluster status on node 1:\n%s", one.status(t).out)

	// xmpp reset on a member takes it out of the cluster first (it resets
	// that node alone); set up again, it rejoins, listed once.
	out = mustOK(t, three.ssh(three.asAdmin(), "xmpp reset\nreset\n", ""), "node 3: xmpp reset")
	if !strings.Contains(out, "left its cluster first") {
		t.Fatalf("xmpp reset on a member:\n%s", out)
	}
	one.waitOutput(t, "xmpp callbridge list", "Callbridge : cb1\n") // the others keep their configuration
	three.script(t,
		"xmpp domain "+clusterDomain,
		"xmpp listen "+three.ip,
		"xmpp certs cluster.key cluster.crt cluster-ca.pem",
		"xmpp cluster enable",
		"xmpp cluster join "+one.ip,
	)
	for _, x := range []*clusterNode{one, two, three} {
		x.waitPeers(t, all...)
	}

	// The cluster still takes changes after all this, on any node.
	two.mustAdmin(t, "xmpp callbridge add cb3")
	one.waitOutput(t, "xmpp callbridge list", "Callbridge : cb3\n")
	three.waitOutput(t, "xmpp callbridge list", "Callbridge : cb3\n")

	// Quorum lost (two of three stopped): a write on the third is refused
	// with one line, and nothing changed.
	leader := one.status(t).leader
	survivor := one
	if leader == xmppAddr(1) {
		survivor = two // keep a follower, so the leader is among the stopped
	}
	for _, x := range []*clusterNode{one, two, three} {
		if x != survivor {
			x.stop()
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st := survivor.status(t)
		if st.state == "NO QUORUM" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d with two of three nodes stopped:\n%s", survivor.n, st.out)
		}
	}
	mustFail(t, survivor.admin("xmpp callbridge add cb4"), "a write without quorum", "xmpp callbridge add: no cluster leader: 1 of 3 nodes reachable; the change was not made")
	if out := survivor.mustAdmin(t, "xmpp"); strings.Contains(out, "cb4.") {
		t.Fatalf("a refused write changed the configuration:\n%s", out)
	}
}

// TestClusterRestartFollower: a member restarted comes back by itself,
// with its node id, listed once, and gets the changes made after. (Its
// --hostname at boot is node-local now; when it was replicated and
// written into the store alone, it put the store one entry ahead of the
// log, and the leader's next entry was skipped there: the store now
// refuses such a write on a member, store.SetClustered.)
func TestClusterRestartFollower(t *testing.T) {
	local, nodes := startClusterNodes(t, 3)
	formCluster(t, local, nodes)
	one, two, three := nodes[1], nodes[2], nodes[3]
	all := []string{xmppAddr(1), xmppAddr(2), xmppAddr(3)}
	one.mustAdmin(t, "xmpp callbridge add cb1")
	three.waitOutput(t, "xmpp callbridge list", "Callbridge : cb1\n")
	before := nodeIDLine(three.status(t).out)
	three.restart()
	three.waitPeers(t, all...)
	if after := nodeIDLine(three.status(t).out); before == "" || after != before {
		t.Errorf("node 3 changed its id across a restart: %q, then %q", before, after)
	}
	two.mustAdmin(t, "xmpp callbridge add cb2")
	one.waitOutput(t, "xmpp callbridge list", "Callbridge : cb2\n")
	three.waitOutput(t, "xmpp callbridge list", "Callbridge : cb1\n", "Callbridge : cb2\n")
}

// TestClusterSnapshotCatchUp (issue 11, Tests: a snapshot restores a
// node that was down through many changes): with a small snapshot
// threshold and few trailing entries (serve's --raft-* flags), node 3 is
// stopped while 60 call bridges are added on node 1; the others snapshot
// and drop the log entries node 3 missed, so when node 3 comes back the
// leader sends it the snapshot: node 3 says so in its log, lists every
// bridge, and takes part in the next change.
func TestClusterSnapshotCatchUp(t *testing.T) {
	local, nodes := startClusterNodesWith(t, 3, []string{"--raft-snapshot-threshold", "20", "--raft-snapshot-interval", "500ms", "--raft-trailing-logs", "5"})
	formCluster(t, local, nodes)
	one, two, three := nodes[1], nodes[2], nodes[3]
	all := []string{xmppAddr(1), xmppAddr(2), xmppAddr(3)}
	three.stop()
	var lines []string
	for i := 1; i <= 60; i++ {
		lines = append(lines, fmt.Sprintf("xmpp callbridge add snap%d", i))
	}
	one.script(t, lines...)
	two.waitOutput(t, "xmpp callbridge list", "Callbridge : snap60\n")
	// Let the running nodes snapshot past what node 3 missed (a check
	// every 0.5–1 s).
	time.Sleep(3 * time.Second)
	three.boot() // its stderr is this boot's: the restore at its join is not in it
	three.waitPeers(t, all...)
	want := []string{}
	for i := 1; i <= 60; i++ {
		want = append(want, fmt.Sprintf("Callbridge : snap%d\n", i))
	}
	three.waitOutput(t, "xmpp callbridge list", want...)
	if !strings.Contains(three.stderr.String(), "replaced by the leader's snapshot") {
		t.Fatalf("node 3 caught up without the leader's snapshot (the test's premise failed):\n%s", three.logs())
	}
	three.mustAdmin(t, "xmpp callbridge add after")
	one.waitOutput(t, "xmpp callbridge list", "Callbridge : after\n")
}

// nodeIDLine is the Node id line of xmpp cluster status.
func nodeIDLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Node id ") {
			return l
		}
	}
	return ""
}

// uploadCerts puts the cluster's key, certificate and CA bundle (made by
// clusterCerts in local) into the node's files area.
func (c *clusterNode) uploadCerts(t *testing.T, local string) {
	t.Helper()
	c.put(t, c.asAdmin(), filepath.Join(local, "cluster.key"), filepath.Join(local, "cluster.crt"), filepath.Join(local, "cluster-ca.pem"))
}

// cmsLines is the CMS sequence for node c: domain, listen, certs, trust,
// the extra lines, enable, then initialize (join "") or join the member
// join, then xmpp enable.
func (c *clusterNode) cmsLines(join string, extra ...string) []string {
	lines := append([]string{"xmpp domain " + clusterDomain, "xmpp listen " + c.ip, "xmpp certs cluster.key cluster.crt cluster-ca.pem",
		"xmpp cluster trust cluster-ca.pem"}, extra...)
	lines = append(lines, "xmpp cluster enable")
	if join == "" {
		lines = append(lines, "xmpp cluster initialize")
	} else {
		lines = append(lines, "xmpp cluster join "+join)
	}
	return append(lines, "xmpp enable")
}

// formCluster runs the CMS sequence on nodes 1..3 (node 1 initializes,
// the others join it) with the certificates of clusterCerts in local, and
// waits until every node lists the three.
func formCluster(t *testing.T, local string, nodes []*clusterNode) {
	t.Helper()
	for _, x := range nodes[1:4] {
		x.uploadCerts(t, local)
	}
	for _, x := range nodes[1:4] {
		join := nodes[1].ip
		if x.n == 1 {
			join = ""
		}
		x.script(t, x.cmsLines(join)...)
	}
	all := []string{xmppAddr(1), xmppAddr(2), xmppAddr(3)}
	for _, x := range nodes[1:4] {
		x.waitPeers(t, all...)
	}
}

// xmpp is the node as the XMPP clients' harness sees it (default ports).
func (c *clusterNode) xmpp() *xmppAppliance {
	return &xmppAppliance{appliance: c.appliance, host: c.ip, c2s: "5222", c2sTLS: "5223", s2sPort: "5269", domain: clusterDomain}
}

// TestClusterChat: users logged in to different nodes of a cluster (real
// slixmpp clients) subscribe to each other, see each other's presence and
// chat by bare and full JID, one hop through the cluster's route table; a
// message to a user who is offline is stored through the cluster's log on
// one node and delivered when the user logs in to another.
func TestClusterChat(t *testing.T) {
	needXMPPClients(t)
	local, nodes := startClusterNodes(t, 3)
	formCluster(t, local, nodes)
	alice, bob, carol := "alice@"+clusterDomain, "bob@"+clusterDomain, "carol@"+clusterDomain
	nodes[2].xmpp().addAccounts(t, alice, "alice-password", bob, "bob-password", carol, "carol-password")
	// The accounts replicate: log in to node 1 and node 3 once both have them.
	for _, x := range []*clusterNode{nodes[1], nodes[3]} {
		x.waitOutput(t, "xmpp user list "+clusterDomain, alice, bob, carol)
	}
	a := nodes[1].xmpp().login(t, alice+"/one", "alice-password", clientOpts{})
	b := nodes[3].xmpp().login(t, bob+"/three", "bob-password", clientOpts{})

	a.do(t, map[string]any{"op": "subscribe", "to": bob})
	b.presence(t, alice, "subscribe")
	b.do(t, map[string]any{"op": "subscribed", "to": alice})
	a.presence(t, bob, "subscribed")
	if p := a.presence(t, bob, "available"); p.From != b.session.JID {
		t.Fatalf("alice (node 1) got bob's presence from %q, want %s (node 3)", p.From, b.session.JID)
	}
	b.send(t, alice, "to the bare JID, across nodes")
	if m := a.message(t, bob, "to the bare JID, across nodes"); m.From != b.session.JID || m.Delay != nil {
		t.Fatalf("alice got %s: want from %s, no delay", m.line, b.session.JID)
	}
	a.send(t, b.session.JID, "to the full JID, across nodes")
	if m := b.message(t, alice, "to the full JID, across nodes"); m.From != a.session.JID {
		t.Fatalf("bob got %s: want from %s", m.line, a.session.JID)
	}

	// carol is offline: a message from node 1 is stored; she logs in to
	// node 2 and gets it, with the offline delay stamp.
	a.send(t, carol, "while you were away")
	time.Sleep(500 * time.Millisecond) // stored through the log before carol logs in
	c := nodes[2].xmpp().login(t, carol+"/two", "carol-password", clientOpts{})
	if m := c.message(t, alice, "while you were away"); m.Delay == nil {
		t.Fatalf("carol got %s: want the offline delay stamp", m.line)
	}

	// The administrator on node 1 kicks bob, whose session is on node 3.
	out := nodes[1].mustAdmin(t, "xmpp sessions kick "+bob+" maintenance")
	if want := "Closed 1 session of " + bob + " (policy-violation: maintenance): 1 on node " + xmppAddr(3); !strings.Contains(out, want) {
		t.Fatalf("xmpp sessions kick on node 1: %q, want %q", out, want)
	}
	b.streamEnds(t, "policy-violation")
}

// TestClusterNodeLocal: what is node-local stays on its node. xmpp disable
// on node 2 stops XMPP there only (CMS: xmpp enable and disable act where
// they are typed); a host name set on node 1 is not node 3's prompt; each
// node keeps its own audit trail; with two nodes stopped, the third still
// answers reads (xmpp callbridge list, audit) and node-local changes,
// while a replicated change is refused with the no-leader line.
func TestClusterNodeLocal(t *testing.T) {
	local, nodes := startClusterNodes(t, 3)
	formCluster(t, local, nodes)
	one, two, three := nodes[1], nodes[2], nodes[3]
	one.mustAdmin(t, "xmpp callbridge add cb1")
	three.waitOutput(t, "xmpp callbridge list", "Callbridge : cb1\n")

	// xmpp disable on node 2: node 2 stops, nodes 1 and 3 run on.
	if out := two.mustAdmin(t, "xmpp disable"); !strings.Contains(out, "XMPP disabled") {
		t.Fatalf("xmpp disable on node 2: %s", out)
	}
	if out := two.mustAdmin(t, "xmpp"); !strings.Contains(out, "disabled, not running") {
		t.Fatalf("xmpp on node 2 after xmpp disable there:\n%s", out)
	}
	time.Sleep(500 * time.Millisecond) // were it replicated, the others would have stopped by now
	for _, x := range []*clusterNode{one, three} {
		if out := x.mustAdmin(t, "xmpp"); !strings.Contains(out, "enabled, running since") {
			t.Fatalf("xmpp on node %d after xmpp disable on node 2:\n%s", x.n, out)
		}
	}
	if c, err := net.DialTimeout("tcp", xmppAddr(2), time.Second); err == nil {
		c.Close()
		t.Fatal("node 2 still accepts XMPP connections after xmpp disable")
	}
	t.Run("client login on node 1", func(t *testing.T) {
		needXMPPClients(t)
		alice := "alice@" + clusterDomain
		one.xmpp().addAccounts(t, alice, "alice-password")
		one.xmpp().login(t, alice+"/one", "alice-password", clientOpts{})
	})
	two.mustAdmin(t, "xmpp enable")
	if out := two.mustAdmin(t, "xmpp"); !strings.Contains(out, "enabled, running since") {
		t.Fatalf("xmpp on node 2 after xmpp enable:\n%s", out)
	}

	// The host name is each node's own.
	one.mustAdmin(t, "hostname renamed1")
	if out := one.mustAdmin(t, "hostname"); out != "renamed1\n" {
		t.Fatalf("hostname on node 1: %q", out)
	}
	if out := three.mustAdmin(t, "hostname"); out != "node3\n" {
		t.Fatalf("hostname on node 3 after node 1 was renamed: %q", out)
	}
	leave(t, loginPrompt(t, three.appliance, "node3> "))

	// Each node's audit trail is its own.
	if out := two.mustAdmin(t, "audit 100"); !strings.Contains(out, "xmpp disable") || strings.Contains(out, "hostname renamed1") {
		t.Fatalf("audit on node 2:\n%s", out)
	}

	// Two of three stopped (the leader among them): reads and node-local
	// changes still work on the third, a replicated change is refused.
	survivor := three
	if three.status(t).leader == xmppAddr(3) {
		survivor = two
	}
	for _, x := range []*clusterNode{one, two, three} {
		if x != survivor {
			x.stop()
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if st := survivor.status(t); st.state == "NO QUORUM" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("node %d with two of three nodes stopped:\n%s", survivor.n, st.out)
		}
	}
	if out := survivor.mustAdmin(t, "xmpp callbridge list"); !strings.Contains(out, "Callbridge : cb1\n") {
		t.Fatalf("xmpp callbridge list without quorum:\n%s", out)
	}
	if out := survivor.mustAdmin(t, "audit"); !strings.Contains(out, "xmpp callbridge list") {
		t.Fatalf("audit without quorum:\n%s", out)
	}
	survivor.mustAdmin(t, "hostname alone")
	mustFail(t, survivor.admin("xmpp callbridge add cb4"), "a write without quorum", "xmpp callbridge add: no cluster leader: 1 of 3 nodes reachable; the change was not made")
}

// TestClusterCertificatesUploadedOnce: the contents of a domain's key,
// certificate and bundle travel through the cluster's log (issue 11:
// "an admin uploads certificates once, on any node: they appear in every
// node's files area"). The cluster's own certificate is on every node (a
// node presents it before it joins); a second domain's files are uploaded
// to node 1 alone, and its self-signed files are made on node 3 alone:
// each node then has every file, byte for byte, the key with mode 0600,
// and serves the second domain's certificate by SNI. Node 3 joins after
// the second domain was added, so it gets the files with the cluster's
// state.
func TestClusterCertificatesUploadedOnce(t *testing.T) {
	local, nodes := startClusterNodes(t, 3)
	one, two, three := nodes[1], nodes[2], nodes[3]
	const second, third = "second.lan", "third.lan"
	ec := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"}
	writeFile(t, local, "second.ext", []byte("subjectAltName=DNS:"+second+"\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n"))
	run(t, local, opensslBin, append(append([]string{"req", "-new"}, ec...), "-keyout", "second.key", "-out", "second.csr", "-subj", "/CN="+second)...)
	run(t, local, opensslBin, "x509", "-req", "-in", "second.csr", "-CA", "cluster-ca.pem", "-CAkey", "cluster-ca.key",
		"-set_serial", "300", "-days", "30", "-extfile", "second.ext", "-out", "second.crt")

	for _, x := range []*clusterNode{one, two, three} {
		x.uploadCerts(t, local)
	}
	one.put(t, one.asAdmin(), filepath.Join(local, "second.key"), filepath.Join(local, "second.crt"))
	one.script(t, one.cmsLines("")...)
	two.script(t, two.cmsLines(one.ip)...)
	one.waitPeers(t, xmppAddr(1), xmppAddr(2))
	one.mustAdmin(t, "xmpp multi-domain add "+second+" second.key second.crt cluster-ca.pem")
	three.script(t, three.cmsLines(two.ip)...)
	all := []string{xmppAddr(1), xmppAddr(2), xmppAddr(3)}
	for _, x := range []*clusterNode{one, two, three} {
		x.waitPeers(t, all...)
	}
	// A domain with a self-signed certificate made on node 3.
	three.mustAdmin(t, "xmpp multi-domain add "+third)
	thirdKey, err := os.ReadFile(filepath.Join(three.filesDir(), third+".key"))
	if err != nil {
		t.Fatalf("node 3 did not make %s.key: %v", third, err)
	}

	want := map[string][]byte{"third.lan.key": thirdKey}
	for _, name := range []string{"second.key", "second.crt", "cluster-ca.pem"} {
		data, err := os.ReadFile(filepath.Join(local, name))
		if err != nil {
			t.Fatal(err)
		}
		want[name] = data
	}
	for _, x := range []*clusterNode{one, two, three} {
		x.waitOutput(t, "pki list", "second.key", "second.crt", third+".key", third+".crt")
		x.waitOutput(t, "xmpp multi-domain list", second, third)
		got := t.TempDir()
		x.get(t, x.asAdmin(), got, "second.key", "second.crt", "cluster-ca.pem", third+".key")
		for name, data := range want {
			if b, err := os.ReadFile(filepath.Join(got, name)); err != nil || !bytes.Equal(b, data) {
				t.Errorf("node %d: %s fetched by sftp differs from the file uploaded once (%d bytes, want %d; %v)", x.n, name, len(b), len(data), err)
			}
		}
		for _, key := range []string{"second.key", third + ".key"} {
			if st, err := os.Stat(filepath.Join(x.filesDir(), key)); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("node %d: %s: %v, mode %v; want 0600", x.n, key, err, st)
			}
		}
	}

	// Node 3 serves the second domain's certificate, by SNI, on direct TLS.
	secondCert, err := os.ReadFile(filepath.Join(local, "second.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(secondCert)
	if block == nil {
		t.Fatal("second.crt is not PEM")
	}
	var served []byte
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", net.JoinHostPort(three.ip, "5223"),
			&tls.Config{ServerName: second, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
		if err == nil {
			served = conn.ConnectionState().PeerCertificates[0].Raw
			conn.Close()
			if bytes.Equal(served, block.Bytes) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 3 does not serve second.crt for SNI %s (dial: %v; served %d bytes)\n%s", second, err, len(served), three.mustAdmin(t, "xmpp"))
		}
	}
}

// TestClusterCallBridge: a call bridge added on one node (its secret
// replicated: no add-secret on the others) connects to node 1 as a
// slixmpp ComponentXMPP, and a user logged in to node 3 reaches it and
// gets its answer, in one hop each way through the cluster's route table.
func TestClusterCallBridge(t *testing.T) {
	needXMPPClients(t)
	local, nodes := startClusterNodes(t, 3)
	formCluster(t, local, nodes)
	one, two, three := nodes[1], nodes[2], nodes[3]
	secret, cb1 := addClusterBridge(t, two, "cb1", one, three)
	alice := "alice@" + clusterDomain
	three.xmpp().addAccounts(t, alice, "alice-password")

	comp := one.xmpp().connectComponent(t, cb1, secret, false)
	a := three.xmpp().login(t, alice+"/three", "alice-password", clientOpts{})
	room := "room1@" + cb1
	in := sendUntilBridgeGets(t, a, comp, room, "hello bridge")
	if in.From != a.session.JID || in.To != room {
		t.Fatalf("the bridge got the message from %q to %q, want from %s to %s", in.From, in.To, a.session.JID, room)
	}
	comp.componentSend(t, room, in.From, "welcome from node 1")
	if got := a.message(t, room, "welcome from node 1"); got.From != room {
		t.Fatalf("alice got the answer from %q, want %s", got.From, room)
	}
}

// addClusterBridge adds call bridge name on node on and waits until the
// other nodes list it with the same secret (replicated); it returns the
// secret and the bridge's component address.
func addClusterBridge(t *testing.T, on *clusterNode, name string, others ...*clusterNode) (secret, jid string) {
	t.Helper()
	out := on.mustAdmin(t, "xmpp callbridge add "+name)
	m := regexp.MustCompile(`secret ([A-Za-z0-9]{20})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("xmpp callbridge add printed %q, want its secret", out)
	}
	for _, x := range others {
		x.waitOutput(t, "xmpp callbridge list", "Secret     : "+m[1]+"\n")
	}
	return m[1], name + "." + clusterDomain
}

// sendUntilBridgeGets sends body from a to room until the bridge comp gets
// it, and returns what the bridge got: a bridge's new connection reaches
// the other nodes' route tables a moment after its handshake, and until
// then a message to it bounces (not connected).
func sendUntilBridgeGets(t *testing.T, a, comp *xclient, room, body string) *xev {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; {
		a.send(t, room, body)
		time.Sleep(300 * time.Millisecond)
		if in, _ := comp.take(func(e *xev) bool { return e.Ev == "message" && e.Body == body }); in != nil {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bridge never got %q from %s\n%s\n%s", body, a.name, comp.transcript(), a.transcript())
		}
	}
}

// TestClusterCallBridgeFailover (issue 11, Engine: call bridges): a call
// bridge that finds the nodes through `_xmpp-component._tcp` SRV records
// (a real dnsmasq; slixmpp's own SRV resolver) connects to the first,
// node 1; `xmpp` on node 3 says it is connected there. Node 1 is killed
// with SIGKILL: the bridge connects to the next record, node 2, with the
// replicated secret, `xmpp` on node 3 now names node 2, and a user on node
// 3 reaches it again and gets its answer.
func TestClusterCallBridgeFailover(t *testing.T) {
	needXMPPClients(t)
	needPeers(t)
	local, nodes := startClusterNodes(t, 3)
	formCluster(t, local, nodes)
	one, two, three := nodes[1], nodes[2], nodes[3]
	const dnsIP = "127.0.11.53"
	records := []string{}
	for n := 1; n <= 3; n++ {
		host := fmt.Sprintf("node%d.%s", n, clusterDomain)
		records = append(records,
			fmt.Sprintf("--srv-host=_xmpp-component._tcp.%s,%s,5222,%d,10", clusterDomain, host, 10*n),
			fmt.Sprintf("--host-record=%s,%s", host, clusterIP(n)))
	}
	startDNS(t, dnsIP, records...)

	secret, cb1 := addClusterBridge(t, three, "cb1", one, two)
	alice := "alice@" + clusterDomain
	three.xmpp().addAccounts(t, alice, "alice-password")

	comp := startDriver(t, "component cb1 (SRV)", []string{componentScript, "--jid", cb1, "--secret", secret,
		"--srv", clusterDomain, "--dns", dnsIP, "--reconnect", "--timeout", strconv.Itoa(xmppClientMax)})
	comp.wait(t, "the bridge's session", func(e *xev) bool { return e.Ev == "session" })
	one.waitOutput(t, "xmpp", cb1+": connected since")
	three.waitOutput(t, "xmpp", cb1+": connected to node "+xmppAddr(1))

	a := three.xmpp().login(t, alice+"/three", "alice-password", clientOpts{})
	room := "room1@" + cb1
	reach := func(body string) {
		t.Helper()
		in := sendUntilBridgeGets(t, a, comp, room, body)
		comp.componentSend(t, room, in.From, "answer to "+body)
		if got := a.message(t, room, "answer to "+body); got.From != room {
			t.Fatalf("alice got the answer from %q, want %s", got.From, room)
		}
	}
	reach("before the failure")

	one.kill9()
	comp.wait(t, "the bridge's connection to node 1 ending", func(e *xev) bool { return e.Ev == "disconnected" })
	comp.waitWithin(t, "the bridge's session on another node", 30*time.Second, func(e *xev) bool { return e.Ev == "session" })
	three.waitOutput(t, "xmpp", cb1+": connected to node "+xmppAddr(2))
	two.waitOutput(t, "xmpp", cb1+": connected since")
	reach("after the failure")
}

// TestClusterFederationAnyNode (issue 11, Engine: federation from any
// node): the cluster's domain is published by SRV at node 2 only, and a
// real Prosody federates with it. A user on node 1 writes to a Prosody
// user: node 1 opens the link, and Prosody's dialback check, made to the
// address of the SRV record, is answered by node 2 (the dialback secret is
// the cluster's, not the node's). The answer comes in on node 2's listener
// and reaches the user on node 1 through the cluster.
func TestClusterFederationAnyNode(t *testing.T) {
	needXMPPClients(t)
	needPeers(t)
	local, nodes := startClusterNodes(t, 3)
	formCluster(t, local, nodes)
	one, two := nodes[1], nodes[2]
	const dnsIP, peerIP, peerDomain = "127.0.11.53", "127.0.11.21", "pros.lan"
	dns := startDNS(t, dnsIP, append(xmppDomainRecs(clusterDomain, clusterIP(2)), xmppDomainRecs(peerDomain, peerIP)...)...)
	one.script(t, "dns resolver add "+dnsIP, "xmpp federation enable")
	for _, x := range nodes[1:4] {
		x.waitOutput(t, "xmpp federation", "enabled")
	}
	peer := startProsody(t, peerConfig{ip: peerIP, domain: peerDomain, dns: dns, users: []string{"bob", "pw-bob-42"}})
	dumpOnFailure(t, peer)
	alice := "alice@" + clusterDomain
	one.xmpp().addAccounts(t, alice, "alice-password")
	a := one.xmpp().login(t, alice+"/one", "alice-password", clientOpts{})
	bobJID := "bob@" + peerDomain
	bob := peer.login(t, bobJID, "pw-bob-42")

	a.send(t, bobJID, "from node 1")
	waitPeerMessage(t, bob, alice, "from node 1", peer)
	one.xmpp().waitLink(t, clusterDomain+" → "+peerDomain+" (out)", "up", "dialback")
	bob.send(t, alice, "back to node 1")
	if got := a.message(t, bobJID, "back to node 1"); bareOf(got.From) != bobJID {
		t.Fatalf("alice got the answer from %q", got.From)
	}
	// Prosody's link to the cluster is the SRV record's: node 2.
	two.xmpp().waitLink(t, clusterDomain+" → "+peerDomain+" (in)", "up", "dialback")
}

// clusterStanza is a top-level stanza as a raw cluster client reads it.
type clusterStanza struct {
	XMLName xml.Name
	ID      string `xml:"id,attr"`
	Type    string `xml:"type,attr"`
	From    string `xml:"from,attr"`
	Body    string `xml:"body"`
	Error   *struct {
		Type  string `xml:"type,attr"`
		Inner string `xml:",innerxml"`
	} `xml:"error"`
}

// rawClusterClient is a raw c2s session on a cluster node whose reader
// hands every stanza it reads to in (closed when the stream ends).
type rawClusterClient struct {
	r  *rawConn
	in chan clusterStanza
}

// rawLogin logs user in to node over STARTTLS and PLAIN, binds resource,
// and starts reading stanzas.
func (c *clusterNode) rawLogin(t *testing.T, user, password, resource string) *rawClusterClient {
	t.Helper()
	r := c.xmpp().rawDial(t, clusterDomain)
	r.login(user, password, resource)
	r.c.SetReadDeadline(time.Time{})
	rc := &rawClusterClient{r: r, in: make(chan clusterStanza, 100000)}
	go func() {
		defer close(rc.in)
		dec := xml.NewDecoder(r.c)
		for {
			tok, err := dec.Token()
			if err != nil {
				return
			}
			if se, ok := tok.(xml.StartElement); ok {
				var s clusterStanza
				if dec.DecodeElement(&s, &se) != nil {
					return
				}
				rc.in <- s
			}
		}
	}()
	return rc
}

// send writes raw XML; false if the connection failed.
func (rc *rawClusterClient) send(s string) bool {
	rc.r.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := io.WriteString(rc.r.c, s)
	return err == nil
}

// next waits up to d for the next stanza.
func (rc *rawClusterClient) next(d time.Duration) (clusterStanza, bool) {
	select {
	case s, ok := <-rc.in:
		return s, ok
	case <-time.After(d):
		return clusterStanza{}, false
	}
}

// leaderNode is the node that nodes[from] names as the leader.
func leaderNode(t *testing.T, nodes []*clusterNode, from *clusterNode) *clusterNode {
	t.Helper()
	st := from.status(t)
	for _, x := range nodes[1:] {
		if x != nil && xmppAddr(x.n) == st.leader {
			return x
		}
	}
	t.Fatalf("node %d names no leader among the nodes:\n%s", from.n, st.out)
	return nil
}

// TestClusterKill9Leader (issue 11, Engine: acknowledged means committed):
// a sender on a follower sends messages to an offline user, each followed
// by a ping, while the leader is killed with SIGKILL partway. A message
// counts as acknowledged when the answer to the ping sent after it came
// back and no error came back for it (a session's stanzas are handled in
// order, and storing a message offline waits for the log's commit). A new
// leader is elected within 2 s of the kill, writes resume, every message
// ends acknowledged or bounced (none unanswered), and the offline user,
// logging in to the other surviving node, gets every acknowledged message.
func TestClusterKill9Leader(t *testing.T) {
	const total, killAt, window = 300, 100, 8
	local, nodes := startClusterNodes(t, 3)
	formCluster(t, local, nodes)
	alice, carol := "alice@"+clusterDomain, "carol@"+clusterDomain
	nodes[1].xmpp().addAccounts(t, alice, "alice-password", carol, "carol-password")
	for _, x := range nodes[1:4] {
		x.waitOutput(t, "xmpp user list "+clusterDomain, alice, carol)
	}
	leader := leaderNode(t, nodes, nodes[1])
	var survivors []*clusterNode
	for _, x := range nodes[1:4] {
		if x != leader {
			survivors = append(survivors, x)
		}
	}
	senderNode, readerNode := survivors[0], survivors[1]
	t.Logf("leader node %d; sender on node %d; carol logs in to node %d", leader.n, senderNode.n, readerNode.n)
	a := senderNode.rawLogin(t, "alice", "alice-password", "sender")

	// The reader: pings answered (in order) and errors, by index.
	var mu sync.Mutex
	answered := -1              // the highest i whose ping was answered
	bounced := map[int]string{} // message i → its error
	answeredAt := map[int]time.Time{}
	other := []string{}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for s := range a.in {
			mu.Lock()
			var i int
			switch {
			case s.XMLName.Local == "iq" && s.Type == "result" && scanIndex(s.ID, "p", &i):
				if i > answered {
					answered = i
				}
				answeredAt[i] = time.Now()
			case s.XMLName.Local == "message" && s.Type == "error" && scanIndex(s.ID, "m", &i):
				e := ""
				if s.Error != nil {
					e = s.Error.Type + ": " + strings.TrimSpace(s.Error.Inner)
				}
				bounced[i] = e
			default:
				other = append(other, fmt.Sprintf("%s type=%q id=%q", s.XMLName.Local, s.Type, s.ID))
			}
			mu.Unlock()
		}
	}()
	highest := func() int { mu.Lock(); defer mu.Unlock(); return answered }

	sentAt := make([]time.Time, total)
	senderDone := make(chan error, 1)
	go func() {
		for i := 0; i < total; i++ {
			for i-highest() > window {
				time.Sleep(time.Millisecond)
			}
			sentAt[i] = time.Now()
			if !a.send(fmt.Sprintf(`<message to='%s' type='chat' id='m%d'><body>kill9 %d</body></message><iq type='get' id='p%d' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>`, carol, i, i, i, clusterDomain)) {
				senderDone <- fmt.Errorf("the sender's connection failed at message %d", i)
				return
			}
		}
		senderDone <- nil
	}()

	for deadline := time.Now().Add(60 * time.Second); highest() < killAt; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of the first %d messages acknowledged within 60 s", highest()+1, killAt)
		}
	}
	ackedBeforeKill := highest() + 1
	leader.kill9()
	killed := time.Now()
	t.Logf("killed the leader (node %d) with SIGKILL after %d acknowledged messages", leader.n, ackedBeforeKill)

	// A new leader within 2 s, as the survivors' xmpp cluster status says.
	var elected, asked time.Duration
	var newLeader string
	for elected == 0 {
		for _, x := range survivors {
			start := time.Since(killed)
			r := x.admin("xmpp cluster status")
			if r.code != 0 {
				continue
			}
			st := parseClusterStatus(t, r.stdout)
			if st.state == "LEADER" && st.leader == xmppAddr(x.n) {
				elected, asked, newLeader = time.Since(killed), start, st.leader
				break
			}
		}
		if elected == 0 && time.Since(killed) > 15*time.Second {
			t.Fatalf("no new leader within 15 s of the kill:\n%s\n%s", survivors[0].admin("xmpp cluster status").stdout, survivors[1].admin("xmpp cluster status").stdout)
		}
	}
	t.Logf("new leader %s seen %v after the kill (by the xmpp cluster status over SSH asked %v after it: an upper bound)", newLeader, elected.Round(time.Millisecond), asked.Round(time.Millisecond))
	if elected > 2*time.Second {
		t.Errorf("the new leader was seen %v after the kill, want ≤ 2 s", elected.Round(time.Millisecond))
	}

	// Every message is answered: acknowledged or bounced, none left hanging.
	if err := <-senderDone; err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); highest() < total-1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the kill, the sender's pings stopped being answered: %d of %d answered (a hang)", highest()+1, total)
		}
	}
	mu.Lock()
	acked := map[int]bool{}
	var bouncedIdx []int
	firstAfter := -1
	for i := 0; i < total; i++ {
		if e, ok := bounced[i]; ok {
			bouncedIdx = append(bouncedIdx, i)
			if !strings.HasPrefix(e, "wait: ") || !strings.Contains(e, "resource-constraint") || !strings.Contains(e, "<text") {
				t.Errorf("message %d bounced with %q, want wait/resource-constraint with a text", i, e)
			}
			continue
		}
		acked[i] = true
		if firstAfter < 0 && sentAt[i].After(killed) {
			firstAfter = i
		}
	}
	if len(other) > 0 {
		t.Logf("the sender also got: %v", other)
	}
	var resumed time.Duration
	if firstAfter >= 0 {
		resumed = answeredAt[firstAfter].Sub(killed)
	}
	mu.Unlock()
	t.Logf("%d messages: %d acknowledged, %d bounced %v; the first message sent after the kill and stored was acknowledged %v after it", total, len(acked), len(bouncedIdx), bouncedIdx, resumed.Round(time.Millisecond))
	if firstAfter < 0 {
		t.Fatal("writes did not resume: no message sent after the kill was stored")
	}
	if len(bouncedIdx) > 0 {
		var e string
		mu.Lock()
		e = bounced[bouncedIdx[0]]
		mu.Unlock()
		t.Logf("bounce of message %d: %s", bouncedIdx[0], e)
	}
	// A shell write on the other survivor works too.
	readerNode.mustAdmin(t, "xmpp callbridge add cbk")

	// carol logs in to the other survivor and gets every acknowledged
	// message; a bounced one that arrives anyway (its commit was in doubt
	// when the leader died) is reported, duplicates too.
	c := readerNode.rawLogin(t, "carol", "carol-password", "reader")
	c.send("<presence/>")
	got := map[int]int{}
	missing := func() int {
		n := 0
		for i := range acked {
			if got[i] == 0 {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		wait := 2 * time.Second
		if missing() > 0 {
			wait = time.Until(deadline)
		}
		s, ok := c.next(wait)
		if !ok {
			break
		}
		var i int
		if s.XMLName.Local == "message" && strings.HasPrefix(s.Body, "kill9 ") {
			if _, err := fmt.Sscanf(s.Body, "kill9 %d", &i); err == nil {
				got[i]++
			}
		}
	}
	var lost, dups, extra []int
	for i := 0; i < total; i++ {
		switch {
		case acked[i] && got[i] == 0:
			lost = append(lost, i)
		case got[i] > 1:
			dups = append(dups, i)
		}
		if !acked[i] && got[i] > 0 {
			extra = append(extra, i)
		}
	}
	t.Logf("carol got %d distinct messages; duplicates %v; bounced but delivered %v", len(got), dups, extra)
	if len(lost) > 0 {
		t.Errorf("%d acknowledged messages lost: %v", len(lost), lost)
	}
	if len(dups) > 0 {
		t.Errorf("duplicates delivered: %v", dups)
	}
}

// scanIndex reads the number after prefix in id.
func scanIndex(id, prefix string, i *int) bool {
	if !strings.HasPrefix(id, prefix) {
		return false
	}
	n, err := strconv.Atoi(id[len(prefix):])
	*i = n
	return err == nil
}

// TestClusterQuorumLossChat (issue 11, Without quorum): with two of the
// three nodes stopped, users online on the third keep chatting, and a
// message to an offline user bounces to its sender with wait /
// resource-constraint and a text: it never vanishes.
func TestClusterQuorumLossChat(t *testing.T) {
	local, nodes := startClusterNodes(t, 3)
	formCluster(t, local, nodes)
	alice, bob, carol := "alice@"+clusterDomain, "bob@"+clusterDomain, "carol@"+clusterDomain
	nodes[1].xmpp().addAccounts(t, alice, "alice-password", bob, "bob-password", carol, "carol-password")
	for _, x := range nodes[1:4] {
		x.waitOutput(t, "xmpp user list "+clusterDomain, alice, bob, carol)
	}
	leader := leaderNode(t, nodes, nodes[1])
	survivor := nodes[1]
	if leader == survivor {
		survivor = nodes[2]
	}
	a := survivor.rawLogin(t, "alice", "alice-password", "a")
	b := survivor.rawLogin(t, "bob", "bob-password", "b")
	// Available, so that a message to the bare JID goes to the session.
	a.send("<presence/>")
	b.send("<presence/>")
	for _, x := range nodes[1:4] {
		if x != survivor {
			x.stop()
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if st := survivor.status(t); st.state == "NO QUORUM" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("node %d with two of three nodes stopped:\n%s", survivor.n, st.out)
		}
	}
	expect := func(c *rawClusterClient, who string, match func(clusterStanza) bool) clusterStanza {
		t.Helper()
		deadline := time.Now().Add(xmppWait)
		var seen []string
		for {
			s, ok := c.next(time.Until(deadline))
			if !ok {
				t.Fatalf("%s: nothing expected arrived within %v; got %v", who, xmppWait, seen)
			}
			if match(s) {
				return s
			}
			seen = append(seen, fmt.Sprintf("%s type=%q id=%q body=%q", s.XMLName.Local, s.Type, s.ID, s.Body))
		}
	}
	// Online chat on the surviving node, both ways, by bare and full JID.
	for i := 0; i < 3; i++ {
		body := fmt.Sprintf("no quorum, still chatting %d", i)
		start := time.Now()
		a.send(fmt.Sprintf(`<message to='%s' type='chat' id='q%d'><body>%s</body></message>`, bob, i, body))
		expect(b, "bob", func(s clusterStanza) bool { return s.XMLName.Local == "message" && s.Body == body })
		b.send(fmt.Sprintf(`<message to='%s/a' type='chat' id='r%d'><body>re: %s</body></message>`, alice, i, body))
		expect(a, "alice", func(s clusterStanza) bool { return s.XMLName.Local == "message" && s.Body == "re: "+body })
		t.Logf("round trip %d without quorum: %v", i, time.Since(start).Round(time.Microsecond))
	}
	// carol is offline: the message bounces with wait/resource-constraint
	// and a text.
	start := time.Now()
	a.send(fmt.Sprintf(`<message to='%s' type='chat' id='off1'><body>are you there?</body></message>`, carol))
	e := expect(a, "alice", func(s clusterStanza) bool { return s.XMLName.Local == "message" && s.ID == "off1" })
	if e.Type != "error" || e.Error == nil || e.Error.Type != "wait" || !strings.Contains(e.Error.Inner, "<resource-constraint") || !strings.Contains(e.Error.Inner, "<text") {
		t.Fatalf("the message to an offline user without quorum came back as type=%q error=%+v, want a wait/resource-constraint error with a text", e.Type, e.Error)
	}
	t.Logf("bounced after %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(e.Error.Inner))
	// Chat still flows after the refused write.
	a.send(fmt.Sprintf(`<message to='%s' type='chat' id='q9'><body>after the bounce</body></message>`, bob))
	expect(b, "bob", func(s clusterStanza) bool { return s.XMLName.Local == "message" && s.Body == "after the bounce" })
}

// TestClusterPortSetting: a node whose cluster port was changed (xmpp
// cluster port) listens there and joins; the other node lists it with
// that port.
func TestClusterPortSetting(t *testing.T) {
	local, nodes := startClusterNodes(t, 2)
	one, two := nodes[1], nodes[2]
	for _, x := range nodes[1:3] {
		x.uploadCerts(t, local)
	}
	one.script(t, one.cmsLines("")...)
	out := two.script(t, two.cmsLines(one.ip, "xmpp cluster port 5299")...)
	if !strings.Contains(out, "Clustering enabled: listening on "+two.ip+":5299") {
		t.Fatalf("node 2 with xmpp cluster port 5299:\n%s", out)
	}
	mustFail(t, two.admin("xmpp cluster port 5300"), "a port change while enabled", "xmpp cluster disable first")
	one.waitPeers(t, xmppAddr(1), xmppAddr(2))
	if st := one.status(t); !strings.Contains(st.out, two.ip+":5299") {
		t.Fatalf("node 1 does not list node 2's cluster listener on port 5299:\n%s", st.out)
	}
}
