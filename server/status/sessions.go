package status

import (
	"sort"
	"time"
)

// Session is one bound client resource, as `xmpp sessions` shows it. A
// resource bound on another node of a cluster has Node set and only JID,
// Available and Priority known.
type Session struct {
	JID       string // the full JID
	Node      string // "" here; else the id of the node that holds it
	Remote    string // the client's address:port
	TLS       string // e.g. "TLS 1.3"; "" without TLS
	Mechanism string // the SASL mechanism it authenticated with
	Since     time.Time
	LastRead  time.Time // when the client last sent anything (data or a keepalive)
	// Stanzas received from the client, and written to it.
	StanzasIn, StanzasOut uint64
	// Available is whether it sent available presence, with Priority.
	Available bool
	Priority  int
}

// SortSessions orders sessions by JID, this node's before the others'.
func SortSessions(s []Session) {
	sort.SliceStable(s, func(i, j int) bool {
		if (s[i].Node == "") != (s[j].Node == "") {
			return s[i].Node == ""
		}
		if s[i].JID != s[j].JID {
			return s[i].JID < s[j].JID
		}
		return s[i].Node < s[j].Node
	})
}

// ConnKind is what a TCP connection carries.
type ConnKind string

// Kinds of connections, in the order `xmpp connections` lists them.
const (
	ConnPreLogin  ConnKind = "pre-login"  // not authenticated yet (any kind, stream not told yet or not done)
	ConnClient    ConnKind = "client"     // a bound client session
	ConnServerIn  ConnKind = "server-in"  // another server connected to us
	ConnServerOut ConnKind = "server-out" // we connected to another server
	ConnComponent ConnKind = "component"  // an external component (call bridge)
)

var kindOrder = map[ConnKind]int{ConnPreLogin: 0, ConnClient: 1, ConnServerIn: 2, ConnServerOut: 3, ConnComponent: 4}

// Connection is one TCP connection of the XMPP engine.
type Connection struct {
	Kind ConnKind
	Peer string // remote address:port
	// Name is who is at the other end, when known: a full JID, "remote →
	// local" domains of a server link, a component's address; else "".
	Name  string
	Since time.Time
	// Bytes read from and written to the socket (TLS records included).
	BytesIn, BytesOut uint64
}

// SortConnections orders connections by kind, then oldest first.
func SortConnections(c []Connection) {
	sort.SliceStable(c, func(i, j int) bool {
		if c[i].Kind != c[j].Kind {
			return kindOrder[c[i].Kind] < kindOrder[c[j].Kind]
		}
		if !c[i].Since.Equal(c[j].Since) {
			return c[i].Since.Before(c[j].Since)
		}
		return c[i].Peer < c[j].Peer
	})
}

// Kicked is what an administrator's kick closed: sessions on this node,
// and, on a cluster, on each other node (by node id) that was asked and
// closed them within the wait; Unanswered lists the nodes asked that
// still held the sessions after it.
type Kicked struct {
	Here       int
	Nodes      map[string]int
	Unanswered []string
}
