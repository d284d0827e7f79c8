package commands

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server/cluster"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// ClusterSettings are this node's own cluster settings: never replicated,
// they stay with the node when it joins or leaves a cluster.
type ClusterSettings interface {
	// TrustBundle is the file name set with xmpp cluster trust, "" for
	// none.
	TrustBundle() string
	// SetTrustBundle sets it; "" clears it.
	SetTrustBundle(name string) error
}

// lastChangeLayout is how CMS prints the time of the last state change:
// "2017-Aug-13 11:37:02".
const lastChangeLayout = "2006-Jan-02 15:04:05"

// cmsLabelWidth aligns the CMS lines "Key file           : …".
const cmsLabelWidth = 19

func clusterCommands() []*Command {
	return []*Command{
		{
			Words:   []string{"xmpp", "cluster", "status"},
			Summary: "Show this node's cluster state and the peers, in Cisco Meeting Server's format, then Parley's own details",
			Help: "The first lines are exactly what Cisco Meeting Server prints, so scripts written for it keep working:\n" +
				"  State: LEADER|FOLLOWER|CANDIDATE|NO QUORUM|DISABLED\n" +
				"  List of peers\n" +
				"  10.106.81.30:5222 (Leader)\n" +
				"  10.106.81.31:5222\n" +
				"  Last state change: 2017-Aug-13 11:37:02\n" +
				"  Key file           : node.key\n" +
				"  Certificate file   : node.crt\n" +
				"  Trust bundle       : cluster-ca.pem\n" +
				"Each peer is its XMPP address (host:port of its c2s listener); the leader is marked. Times are UTC.\n" +
				"Below them, after an empty line: this node's id, its cluster listener, the raft term, commit and\n" +
				"applied index, the last error, and one line per node with its id, cluster listener, role, when this\n" +
				"node last heard from it, and the client sessions it holds.",
			Perm: PermRead,
			Run:  runClusterStatus,
		},
		{
			Words:   []string{"xmpp", "cluster", "enable"},
			Summary: "Open this node's cluster listener, so it can start a cluster (initialize) or join one (join)",
			Help: "Needs the primary domain's certificate (xmpp certs: the node presents it to the other nodes) and a\n" +
				"trust bundle (xmpp cluster trust). The setting is this node's own. The XMPP service may stay\n" +
				"enabled: Cisco Meeting Server's 'xmpp disable' before 'xmpp cluster enable' is accepted but not\n" +
				"needed. Then run xmpp cluster initialize on the first node, or xmpp cluster join <member> on\n" +
				"the others.",
			Example: "xmpp cluster enable",
			Perm:    PermXMPP,
			Run:     runClusterEnable,
		},
		{
			Words:   []string{"xmpp", "cluster", "disable"},
			Summary: "Leave the cluster: close the cluster listener, forget the raft state, run standalone again",
			Help: "The node keeps the replicated configuration and data as they were when it left, and gets a new\n" +
				"node id, so joining again later never shows it twice. Run it on the node that leaves; from\n" +
				"another node, take a dead node out with xmpp cluster remove.",
			Example: "xmpp cluster disable",
			Perm:    PermXMPP,
			Run:     runClusterDisable,
		},
		{
			Words:   []string{"xmpp", "cluster", "initialize"},
			Summary: "Start a new cluster of one node, this one, with its configuration and data as the first state",
			Help: "Run it once, on the first node, after xmpp cluster enable. The other nodes then join with\n" +
				"xmpp cluster join <this node>. A node already in a cluster is refused: xmpp cluster disable first.",
			Example: "xmpp cluster initialize",
			Perm:    PermXMPP,
			Run:     runClusterInitialize,
		},
		{
			Words:   []string{"xmpp", "cluster", "join"},
			Args:    []Arg{{Name: "node"}},
			Summary: "Join the cluster that <node> (an address or name of any member) belongs to",
			Help: "<node> is host or host:port of a member's cluster listener (the port may be left out when it is\n" +
				"the default). Needs xmpp cluster enable and a trust bundle that covers the other nodes'\n" +
				"certificates, as theirs must cover this node's. This node's replicated state (domains, accounts,\n" +
				"call bridges and their secrets, admin users) is replaced by the cluster's: the command says what it\n" +
				"held before. Its own settings (xmpp listen, the trust bundle) stay. A node that was a member\n" +
				"before under the same address is replaced, never listed twice.",
			Example: "xmpp cluster join 10.106.81.30",
			Perm:    PermXMPP,
			Run:     runClusterJoin,
		},
		{
			Words:   []string{"xmpp", "cluster", "remove"},
			Args:    []Arg{{Name: "node"}},
			Summary: "Take a node (its id or address, see xmpp cluster status) out of the cluster, e.g. a dead one",
			Help: "Run it on any member. To take this node out, run xmpp cluster disable on it instead. A cluster of\n" +
				"three that loses one node keeps working; remove the dead node before adding its replacement so\n" +
				"that quorum is counted on the nodes that exist.",
			Example: "xmpp cluster remove 10.106.81.32",
			Perm:    PermXMPP,
			Run:     runClusterRemove,
		},
		{
			Words:   []string{"xmpp", "cluster", "trust"},
			Args:    []Arg{{Name: "bundle", Kind: ArgFile}},
			Summary: "Trust the nodes whose certificates this PEM bundle covers (their certificates, or their CA)",
			Help: "The bundle is a file in the files area holding certificates: the nodes' own certificates, or the\n" +
				"CA that signed them. A node is admitted when its certificate is in the bundle or chains to one\n" +
				"there. The bundle must cover this node's certificate (xmpp certs), since the other nodes check\n" +
				"it the same way. The setting is this node's own; give every node the same bundle.",
			Example: "xmpp cluster trust cluster-ca.pem",
			Perm:    PermXMPP,
			Run:     runClusterTrust,
		},
		{
			Words:            []string{"xmpp", "cluster", "port"},
			Args:             []Arg{{Name: "port", Kind: ArgNumber, Optional: true}},
			Summary:          "Show or set this node's cluster listener port (raft and the nodes' own messages)",
			QueryWithoutArgs: true,
			Help: "One TCP port carries everything between the nodes, on the host of this node's xmpp listen address;\n" +
				"the default is 5270. The setting is this node's own; change it only while clustering is disabled\n" +
				"(xmpp cluster disable), then enable again. Other nodes join this one as <host>:<port>.",
			Example: "xmpp cluster port\nxmpp cluster port 5270",
			Perm:    PermXMPP,
			Run:     runClusterPort,
		},
		{
			Words:   []string{"xmpp", "cluster", "trust", "none"},
			Summary: "Forget the cluster trust bundle (only while clustering is disabled)",
			Perm:    PermXMPP,
			Run:     runClusterTrustNone,
		},
	}
}

// clusterNode is the cluster node, or the one-line error of a process
// that has none.
func clusterNode(c *Ctx, what string) (cluster.Node, error) {
	if c.Cluster == nil {
		return nil, errNoNode(what)
	}
	return c.Cluster, nil
}

// errNoNode is the error of a process without a cluster node (unit
// tests, tools that only edit the store).
func errNoNode(what string) error {
	return errorf("%s: this process has no cluster node (clustering is not available here); run the command on the appliance's shell", what)
}

// nodeError is an error from the cluster node as one line.
func nodeError(what string, err error) error {
	return errorf("%s: %s", what, oneLine(err))
}

// oneLine is an error's text on one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

// trustBundle is the trust bundle setting, "" for none.
func trustBundle(c *Ctx) string {
	if c.ClusterSettings == nil {
		return ""
	}
	return c.ClusterSettings.TrustBundle()
}

// --- status ---------------------------------------------------------------

func runClusterStatus(c *Ctx, args []string) error {
	n, err := clusterNode(c, "xmpp cluster status")
	if err != nil {
		return err
	}
	st := n.Status()
	if st.State == "" {
		st.State = status.Disabled
	}
	var peers []status.ClusterPeer
	if st.State != status.Disabled {
		peers = append(peers, st.Peers...)
	}

	keyFile, certFile := st.KeyFile, st.CertFile
	if keyFile == "" && certFile == "" {
		if p, err := primaryDomain(c, ""); err == nil {
			keyFile, certFile = p.Key, p.Cert
		}
	}
	trust := trustBundle(c)
	if trust == "" {
		trust = st.TrustBundle
	}

	c.printf("State: %s\n", st.State)
	c.printf("List of peers\n")
	for _, p := range peers {
		line := p.Address
		if p.Leader {
			line += " (Leader)"
		}
		c.printf("%s\n", line)
	}
	last := "never"
	if !st.LastChange.IsZero() {
		last = st.LastChange.UTC().Format(lastChangeLayout)
	}
	c.printf("Last state change: %s\n", last)
	c.printf("%-*s: %s\n", cmsLabelWidth, "Key file", orNoneText(keyFile))
	c.printf("%-*s: %s\n", cmsLabelWidth, "Certificate file", orNoneText(certFile))
	c.printf("%-*s: %s\n", cmsLabelWidth, "Trust bundle", orNoneText(trust))

	// Parley's own lines.
	c.printf("\n")
	c.printf("%-*s: %s\n", cmsLabelWidth, "Node id", orNoneText(st.NodeID))
	c.printf("%-*s: %s\n", cmsLabelWidth, "Cluster listener", orText(st.Listen, "not listening"))
	c.printf("%-*s: %d\n", cmsLabelWidth, "Raft term", st.Term)
	c.printf("%-*s: %d (applied %d)\n", cmsLabelWidth, "Commit index", st.CommitIndex, st.AppliedIndex)
	lastErr := "none"
	if st.LastError != "" {
		lastErr = st.LastError
		if !st.LastErrorAt.IsZero() {
			lastErr += " (at " + st.LastErrorAt.UTC().Format(time.RFC3339) + ")"
		}
	}
	c.printf("%-*s: %s\n", cmsLabelWidth, "Last error", lastErr)
	if len(peers) == 0 {
		return nil
	}
	c.printf("\n")
	tw := tabwriter.NewWriter(c.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tCLUSTER\tROLE\tLAST CONTACT\tSESSIONS")
	now := c.now()
	for _, p := range peers {
		role := "follower"
		if p.Leader {
			role = "leader"
		}
		if p.Self {
			role += " (this node)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", orDash(p.ID), orDash(p.Address), orDash(p.Cluster), role, lastContact(p, now), p.Sessions)
	}
	return tw.Flush()
}

// lastContact says when this node last heard from a peer.
func lastContact(p status.ClusterPeer, now time.Time) string {
	switch {
	case p.Self:
		return "-"
	case p.LastContact.IsZero() && !p.Reachable:
		return "unreachable, never contacted"
	case p.LastContact.IsZero():
		return "reachable"
	}
	ago := now.Sub(p.LastContact)
	if ago < 0 {
		ago = 0
	}
	s := ago.Truncate(time.Second).String() + " ago"
	if ago < time.Minute {
		s = ago.Round(time.Millisecond).String() + " ago"
	}
	if !p.Reachable {
		s = "unreachable, last " + s
	}
	return s
}

func orNoneText(s string) string { return orText(s, "none") }

func orText(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

// --- enable, disable, initialize -------------------------------------------

func runClusterEnable(c *Ctx, args []string) error {
	const what = "xmpp cluster enable"
	n, err := clusterNode(c, what)
	if err != nil {
		return err
	}
	if st := n.Status(); st.State != "" && st.State != status.Disabled {
		c.printf("Clustering is already enabled (state %s); see xmpp cluster status\n", st.State)
		return nil
	}
	p, err := primaryDomain(c, what)
	if err != nil {
		return errorf("%s: set the domain and its certificate first (xmpp domain <name>, xmpp certs <key> <crt> [<bundle>]): the node presents that certificate to the others", what)
	}
	if p.Cert == "" {
		return errorf("%s: %s has no certificate: configure one with xmpp certs <key> <crt> [<bundle>]; the node presents it to the others", what, p.Name)
	}
	bundle := trustBundle(c)
	if bundle == "" {
		return errorf("%s: set the cluster trust bundle first: xmpp cluster trust <bundle> (a PEM file in the files area with the nodes' certificates or their CA)", what)
	}
	if _, err := checkTrustCovers(c, what, bundle, p.Cert); err != nil {
		return err
	}
	if err := n.Enable(); err != nil {
		return nodeError(what, err)
	}
	st := n.Status()
	where := ""
	if st.Listen != "" {
		where = ": listening on " + st.Listen
	}
	c.printf("Clustering enabled%s\n", where)
	c.printf("Next: xmpp cluster initialize on the first node, or xmpp cluster join <member> on the others\n")
	return nil
}

func runClusterDisable(c *Ctx, args []string) error {
	const what = "xmpp cluster disable"
	n, err := clusterNode(c, what)
	if err != nil {
		return err
	}
	before := n.Status()
	if before.State == "" || before.State == status.Disabled {
		c.printf("Clustering is already disabled\n")
		return nil
	}
	if err := n.Disable(); err != nil {
		return nodeError(what, err)
	}
	after := n.Status()
	c.printf("Clustering disabled: this node left the cluster and runs standalone with the configuration it had\n")
	if after.NodeID != "" && after.NodeID != before.NodeID {
		c.printf("Its node id is now %s; the old one (%s) will not be seen again\n", after.NodeID, orDash(before.NodeID))
	}
	return nil
}

// inCluster reports whether the node is a member of a cluster, with the
// leader's address if known. An enabled node that has not initialized or
// joined lists only itself, without a leader or a raft term.
func inCluster(st status.Cluster) (bool, string) {
	leader := ""
	for _, p := range st.Peers {
		if p.Leader {
			leader = p.Address
		}
	}
	if st.State == "" || st.State == status.Disabled {
		return false, leader
	}
	return len(st.Peers) > 1 || leader != "" || st.Term > 0, leader
}

func runClusterInitialize(c *Ctx, args []string) error {
	const what = "xmpp cluster initialize"
	n, err := clusterNode(c, what)
	if err != nil {
		return err
	}
	st := n.Status()
	if st.State == "" || st.State == status.Disabled {
		return errorf("%s: clustering is disabled on this node: run xmpp cluster enable first", what)
	}
	if in, leader := inCluster(st); in {
		return errorf("%s: this node is already in a cluster of %s%s: to start a new one, run xmpp cluster disable first", what, plural(len(st.Peers), "node"), leaderText(leader))
	}
	if err := n.Initialize(); err != nil {
		return nodeError(what, err)
	}
	st = n.Status()
	c.printf("Cluster initialized: this node is its first member%s\n", listenText2(st.Listen))
	c.printf("Next, on every other node: xmpp cluster trust <bundle>, xmpp cluster enable, xmpp cluster join %s\n", joinTarget(st))
	return nil
}

func leaderText(leader string) string {
	if leader == "" {
		return ""
	}
	return " (leader " + leader + ")"
}

func listenText2(listen string) string {
	if listen == "" {
		return ""
	}
	return " (cluster listener " + listen + ")"
}

// joinTarget is what other nodes give xmpp cluster join to reach this one.
func joinTarget(st status.Cluster) string {
	if st.Listen == "" {
		return "<this node's address>"
	}
	if host, _, err := net.SplitHostPort(st.Listen); err == nil {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			return st.Listen
		}
	}
	return "<this node's address>"
}

// leaveClusterForReset takes a clustered node out of its cluster before
// xmpp reset, so the reset clears this node only and not, through the
// log, every node; the node gets a new id, as with xmpp cluster disable.
// It reports whether the node left.
func leaveClusterForReset(c *Ctx, what string) (bool, error) {
	if c.Cluster == nil {
		return false, nil
	}
	if st := c.Cluster.Status(); st.State == "" || st.State == status.Disabled {
		return false, nil
	}
	if err := c.Cluster.Disable(); err != nil {
		return false, errorf("%s: leaving the cluster first failed: %s; nothing was changed (see xmpp cluster status)", what, oneLine(err))
	}
	return true, nil
}

// --- join, remove -----------------------------------------------------------

func runClusterJoin(c *Ctx, args []string) error {
	const what = "xmpp cluster join"
	n, err := clusterNode(c, what)
	if err != nil {
		return err
	}
	member := strings.TrimSpace(args[0])
	if member == "" {
		return errorf("%s: give the address or name of a member, e.g. xmpp cluster join 10.106.81.30", what)
	}
	if trustBundle(c) == "" {
		return errorf("%s: set the cluster trust bundle first: xmpp cluster trust <bundle> (the nodes' certificates or their CA), then xmpp cluster enable", what)
	}
	st := n.Status()
	if st.State == "" || st.State == status.Disabled {
		return errorf("%s: clustering is disabled on this node: run xmpp cluster enable first", what)
	}
	if in, leader := inCluster(st); in {
		return errorf("%s: this node is already in a cluster of %s%s: to join another, run xmpp cluster disable first", what, plural(len(st.Peers), "node"), leaderText(leader))
	}
	report, err := n.Join(member)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" && !strings.Contains(err.Error(), "check the address") {
			return errorf("%s: %s; check the address, that clustering is enabled there (xmpp cluster enable) and that the cluster port is open between the nodes", what, oneLine(err))
		}
		return nodeError(what, err)
	}
	leader := report.Leader
	if leader == "" {
		leader = member
	}
	settled := waitMember(n)
	c.printf("Joined the cluster (leader %s)\n", leader)
	c.printf("This node's replicated state was replaced by the cluster's; it held %s, %s and %s before\n",
		plural(report.Domains, "domain"), plural(report.Accounts, "account"), plural(report.Bridges, "call bridge"))
	c.printf("Its own settings (xmpp listen, the cluster trust bundle) are kept; see xmpp cluster status\n")
	if !settled {
		c.printf("Warning: this node has not reached the leader within %s: changes are refused until it does (see xmpp cluster status)\n", clusterWait)
	}
	return nil
}

// How long join waits for the node to follow a leader it can reach, so
// that the next replicated change is accepted, and how
// often it looks. Variables so tests can shorten them.
var (
	clusterWait = 10 * time.Second
	clusterPoll = 50 * time.Millisecond
)

// waitMember waits until the node is a leader or a follower of a
// reachable leader.
func waitMember(n cluster.Node) bool {
	for deadline := time.Now().Add(clusterWait); ; time.Sleep(clusterPoll) {
		st := n.Status()
		if st.State == status.Leader {
			return true
		}
		if st.State == status.Follower {
			for _, p := range st.Peers {
				if p.Leader && (p.Reachable || p.Self) {
					return true
				}
			}
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func runClusterRemove(c *Ctx, args []string) error {
	const what = "xmpp cluster remove"
	n, err := clusterNode(c, what)
	if err != nil {
		return err
	}
	st := n.Status()
	if in, _ := inCluster(st); !in {
		return errorf("%s: this node is not in a cluster (state %s): run it on a member (see xmpp cluster status)", what, orText(string(st.State), string(status.Disabled)))
	}
	p, ok := findPeer(st.Peers, args[0])
	if !ok {
		var known []string
		for _, p := range st.Peers {
			known = append(known, p.Address)
		}
		return errorf("%s: %q is not a member: give a node id or address from xmpp cluster status (members: %s)", what, args[0], strings.Join(known, ", "))
	}
	if p.Self {
		return errorf("%s: %s is this node: to take it out, run xmpp cluster disable here, or xmpp cluster remove on another member", what, p.Address)
	}
	id := p.ID
	if id == "" {
		id = args[0]
	}
	if err := n.Remove(id); err != nil {
		return nodeError(what, err)
	}
	c.printf("Removed %s (node %s) from the cluster\n", orText(p.Address, args[0]), orDash(p.ID))
	return nil
}

// findPeer finds a member by id, XMPP address, cluster address, or the
// host of either.
func findPeer(peers []status.ClusterPeer, s string) (status.ClusterPeer, bool) {
	for _, p := range peers {
		if p.ID != "" && p.ID == s {
			return p, true
		}
	}
	for _, p := range peers {
		if s == p.Address || s == p.Cluster {
			return p, true
		}
	}
	var found []status.ClusterPeer
	for _, p := range peers {
		if s == hostOf(p.Address) || s == hostOf(p.Cluster) {
			found = append(found, p)
		}
	}
	if len(found) == 1 {
		return found[0], true
	}
	return status.ClusterPeer{}, false
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// --- trust ------------------------------------------------------------------

func runClusterTrust(c *Ctx, args []string) error {
	const what = "xmpp cluster trust"
	if c.ClusterSettings == nil {
		return errNoNode(what)
	}
	bundle := args[0]
	p, err := primaryDomain(c, what)
	if err != nil {
		return errorf("%s: set the domain and its certificate first (xmpp domain <name>, xmpp certs <key> <crt> [<bundle>]): the bundle must cover this node's certificate", what)
	}
	if p.Cert == "" {
		return errorf("%s: %s has no certificate: configure one with xmpp certs first; the bundle must cover it", what, p.Name)
	}
	n, err := checkTrustCovers(c, what, bundle, p.Cert)
	if err != nil {
		return err
	}
	if err := c.ClusterSettings.SetTrustBundle(bundle); err != nil {
		return errorf("%s: %v", what, err)
	}
	c.printf("Cluster trust bundle: %s (%s); it covers this node's certificate %s\n", bundle, plural(n, "certificate"), p.Cert)
	return nil
}

func runClusterTrustNone(c *Ctx, args []string) error {
	const what = "xmpp cluster trust none"
	if c.ClusterSettings == nil {
		return errNoNode(what)
	}
	if c.Cluster != nil {
		if st := c.Cluster.Status(); st.State != "" && st.State != status.Disabled {
			return errorf("%s: clustering is enabled and the nodes authenticate with the bundle: run xmpp cluster disable first", what)
		}
	}
	if c.ClusterSettings.TrustBundle() == "" {
		c.printf("No cluster trust bundle is set\n")
		return nil
	}
	if err := c.ClusterSettings.SetTrustBundle(""); err != nil {
		return errorf("%s: %v", what, err)
	}
	c.printf("Cluster trust bundle cleared\n")
	return nil
}

// checkTrustCovers checks that the trust bundle in the files area covers
// this node's certificate (the file crtName): the certificate is in the
// bundle, or chains to a certificate there (any intermediates shipped in
// the certificate file help to build the chain). It returns how many
// certificates the bundle holds.
func checkTrustCovers(c *Ctx, what, bundleName, crtName string) (int, error) {
	bundlePEM, err := c.Files.ReadFile(bundleName)
	if err != nil {
		return 0, errorf("%s: %v", what, err)
	}
	bundle, err := pki.ParseCertificates(bundlePEM)
	if err != nil {
		return 0, errorf("%s: %s: %v: give a PEM file with the nodes' certificates or their CA", what, bundleName, err)
	}
	crtPEM, err := c.Files.ReadFile(crtName)
	if err != nil {
		return 0, errorf("%s: this node's certificate: %v", what, err)
	}
	chain, err := pki.ParseCertificates(crtPEM)
	if err != nil {
		return 0, errorf("%s: this node's certificate %s: %v", what, crtName, err)
	}
	if err := trustCovers(bundle, chain, c.now()); err != nil {
		return 0, errorf("%s: %s does not cover this node's certificate %s (%s): %v; put that certificate or the CA that signed it in the bundle",
			what, bundleName, crtName, pki.SubjectString(chain[0]), err)
	}
	return len(bundle), nil
}

// trustCovers reports nil when a cluster trust bundle admits a node's
// certificate chain (leaf first, then any intermediates it is shipped
// with): the leaf is one of the bundle's certificates, or it chains to one
// of them at now. Otherwise the error says why not.
func trustCovers(bundle, chain []*x509.Certificate, now time.Time) error {
	if len(chain) == 0 {
		return fmt.Errorf("no certificate")
	}
	leaf := chain[0]
	for _, b := range bundle {
		if b.Equal(leaf) {
			if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
				return fmt.Errorf("the certificate is not valid now (valid %s to %s)", leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
			}
			return nil
		}
	}
	roots := x509.NewCertPool()
	for _, b := range bundle {
		roots.AddCert(b)
	}
	inters := x509.NewCertPool()
	for _, x := range chain[1:] {
		inters.AddCert(x)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		if _, ok := err.(x509.UnknownAuthorityError); ok {
			return fmt.Errorf("it is not in the bundle and was not signed by a CA there (issuer %s)", leaf.Issuer.String())
		}
		return err
	}
	return nil
}

// --- port ---------------------------------------------------------------------

func runClusterPort(c *Ctx, args []string) error {
	const what = "xmpp cluster port"
	current := c.Store.ConfigInt(store.ClusterPort)
	if current == 0 {
		current = cluster.DefaultPort
	}
	if len(args) == 0 {
		c.printf("%d\n", current)
		return nil
	}
	n, _ := parseCount(args[0])
	if n < 1 || n > 65535 {
		return errorf("%s: %s is not a TCP port: give 1 to 65535", what, args[0])
	}
	if c.Cluster != nil {
		if st := c.Cluster.Status(); st.State != "" && st.State != status.Disabled {
			return errorf("%s: clustering is enabled on this node (listening on %s): run xmpp cluster disable first, then set the port and enable again", what, st.Listen)
		}
	}
	if err := commit(c, store.ConfigSet{Key: store.ClusterPort, Value: strconv.Itoa(n)}); err != nil {
		return errorf("%s: %v", what, err)
	}
	c.printf("Cluster port set to %d: it is used when clustering is enabled (xmpp cluster enable)\n", n)
	return nil
}
