// Package status owns the types the XMPP engine reports to the shell: the
// engine's state (XMPP), its external components (Component), its
// server-to-server links and their recent failures (Link, Failure), and the
// steps of the federation check with their typed verdicts (Step, Verdict,
// Auth); and the order links and failures are shown in (SortLinks,
// SortFailures). The engine and its sub-packages (server, server/s2s,
// server/component, server/fedcheck) fill them in; commands/ prints them as
// they are. It is a leaf: it imports nothing of Parley, so both sides can
// import it.
package status

import (
	"sort"
	"time"
)

// XMPP is the engine's state as `xmpp` and `xmpp federation` show it.
type XMPP struct {
	Running     bool
	Since       time.Time
	Listeners   []string       // e.g. "127.0.0.1:5222 (c2s, STARTTLS)"
	Sessions    int            // authenticated client sessions
	ByDomain    map[string]int // sessions per domain
	LastError   string         // e.g. "listen tcp 0.0.0.0:5222: bind: address already in use"
	LastErrorAt time.Time
	Components  []Component // the external components (call bridges) the engine knows of
	// Federation is every server-to-server stream; FederationFailures the
	// recent failed links, newest first.
	Federation         []Link
	FederationFailures []Failure
	// Connections not yet authenticated: held now, the limit in force
	// (set, or automatic from the open-file limit), the limit per address.
	PreAuth, PreAuthLimit, PreAuthPerAddress int
	// The process's open files and its open-file limit (0: unknown).
	OpenFiles, FileLimit int
	IdleTimeout          time.Duration // a silent client is pinged after this, closed after twice
	MaxStanza            int64         // bytes
	// Directories are the LDAP directories hosted domains take their
	// accounts from, by domain.
	Directories []Directory
}

// Directory is what the engine last saw of a domain's LDAP directory.
type Directory struct {
	Domain, URL string
	Known       bool      // the engine has asked it something
	OK          bool      // the last request reached it
	At          time.Time // of the last request
	Since       time.Time // OK (or not) since then
	Error       string    // why it is not usable or the last request failed
}

// Component is one external (XEP-0114) component as the engine sees it.
type Component struct {
	JID           string // name.domain
	Connected     bool
	Since         time.Time // connected since
	From          string    // remote address while connected
	LastFailure   string    // e.g. "authentication failure", "unknown component"
	LastFailureAt time.Time
	// Node is, on a cluster, the id of the other node the component is
	// connected to (it is not connected here); "" otherwise.
	Node string
}

// Direction is which side opened a server-to-server stream.
type Direction string

// Directions of a link.
const (
	Out Direction = "out" // we connected to the remote server
	In  Direction = "in"  // the remote server connected to us
)

// LinkState is where a server-to-server link is in its life.
type LinkState string

// States of a link.
const (
	Connecting LinkState = "connecting"
	Up         LinkState = "up"
	Closing    LinkState = "closing"
)

// Auth is how a server authenticated to another on a link.
type Auth string

// Ways a server authenticates.
const (
	External Auth = "EXTERNAL" // SASL EXTERNAL: its certificate
	Dialback Auth = "dialback" // server dialback (XEP-0220)
)

// Link is one server-to-server stream.
type Link struct {
	Local, Remote string
	Direction     Direction
	State         LinkState
	Auth          Auth // "" while connecting
	TLS           bool
	Peer          string // remote address:port
	Since         time.Time
	Queued        int    // stanzas waiting (outgoing)
	Stanzas       uint64 // sent (outgoing) or received (incoming) on the link
}

// SortLinks orders links by local domain, remote domain, then out before
// in.
func SortLinks(links []Link) {
	sort.SliceStable(links, func(i, j int) bool {
		a, b := links[i], links[j]
		if a.Local != b.Local {
			return a.Local < b.Local
		}
		if a.Remote != b.Remote {
			return a.Remote < b.Remote
		}
		return a.Direction > b.Direction // "out" before "in"
	})
}

// Failure is a recent failure to reach or accept a remote domain.
type Failure struct {
	Local, Remote, Error string
	At                   time.Time
}

// SortFailures orders failures newest first.
func SortFailures(failures []Failure) {
	sort.SliceStable(failures, func(i, j int) bool { return failures[i].At.After(failures[j].At) })
}

// Verdict is what one step of the federation check found.
type Verdict string

// Verdicts of a step.
const (
	OK   Verdict = "ok"
	Warn Verdict = "warn"
	Fail Verdict = "fail"
	Info Verdict = "info"
)

// Step is one line of `xmpp federation check`.
type Step struct {
	Verdict Verdict
	Name    string // what was checked, e.g. "SRV _xmpp-server._tcp.b.lan"
	Detail  string // what was found
	Fix     string // for warn and fail: what to do about it
	// Auth, on an ok step that found a way to authenticate to the remote
	// server, is that way.
	Auth Auth
}

// ClusterState is a node's role in the cluster, as `xmpp cluster status`
// prints it on its first line (the CMS words).
type ClusterState string

// States of a node.
const (
	Leader    ClusterState = "LEADER"
	Follower  ClusterState = "FOLLOWER"
	Candidate ClusterState = "CANDIDATE"
	NoQuorum  ClusterState = "NO QUORUM"
	Disabled  ClusterState = "DISABLED"
)

// Cluster is a node's view of the cluster (`xmpp cluster status`).
type Cluster struct {
	State      ClusterState
	Peers      []ClusterPeer // every member, this node included, in address order
	LastChange time.Time     // of State
	// Parley's own lines.
	NodeID            string
	Term              uint64 // raft term
	CommitIndex       uint64
	AppliedIndex      uint64
	Listen            string // the cluster listener, address:port
	KeyFile, CertFile string // what the node presents (its xmpp certs)
	TrustBundle       string // xmpp cluster trust (file name), "" for none
	LastError         string
	LastErrorAt       time.Time
}

// ClusterPeer is one member of the cluster.
type ClusterPeer struct {
	ID          string // node id
	Address     string // the XMPP address CMS prints, host:5222
	Cluster     string // its cluster listener, host:port
	Leader      bool
	Self        bool
	Reachable   bool
	LastContact time.Time // zero for self
	Sessions    int       // client sessions bound on it
}

// Metrics is the Prometheus exporter's state as `metrics` shows it.
type Metrics struct {
	Listen      string // the setting (metrics listen); "" when none
	Listening   string // where the exporter listens now; "" when nowhere
	LastError   string // why the exporter could not listen where it was told
	LastErrorAt time.Time
	NodeID      string // what parley_node_info says of this node
	Hostname    string
}
