// Package cluster makes three or more appliances one service (issue 11):
// the store's log replicated with hashicorp/raft (the store is the FSM),
// proposals forwarded from followers to the leader, node identity, join
// and remove, and one mutual-TLS listener between nodes that carries raft
// and the nodes' own messages (Mesh). The live state of the nodes (which
// node holds which bound resource and component, and forwarding stanzas
// to it in one hop) is built on Mesh and never goes through the log.
//
// This file is the contract the parts share: the node as the shell and
// the engine see it (Node), and the messaging between nodes (Mesh).
package cluster

import (
	"github.com/parley-xmpp/parley/server/status"
)

// Node is the cluster as one appliance sees it: what `xmpp cluster …`
// does. Every method is safe to call on any node, whatever its role.
type Node interface {
	// Status is what `xmpp cluster status` prints.
	Status() status.Cluster
	// Enable starts the cluster listener on this node (node-local
	// setting); the node then waits to be initialized or to join.
	Enable() error
	// Disable leaves the cluster: stops the listener and raft, clears
	// this node's raft state and gives it a new node id. The replicated
	// store stays as it was, and the node runs standalone again.
	Disable() error
	// Initialize makes a one-node cluster of this node (raft bootstrap),
	// with its store as the first state. It fails on a node that is
	// already in a cluster.
	Initialize() error
	// Join asks a member (address or name, host[:port] of its cluster
	// listener) to add this node. The leader first removes any member
	// with the same address or id. This node's replicated state is
	// replaced by the cluster's; Replaced says what it held before.
	Join(member string) (JoinReport, error)
	// Remove takes a node (id, or address) out of the cluster.
	Remove(node string) error
}

// JoinReport says what joining replaced on this node.
type JoinReport struct {
	Leader   string // the leader's cluster address
	Domains  int    // what this node held before, now replaced
	Accounts int
	Bridges  int
}

// Channels of Mesh messages. Raft has its own stream on the same
// listener; these are the nodes' own messages.
const (
	ChanPropose byte = 1 // a follower's proposal to the leader, and its answer
	ChanRoutes  byte = 2 // the route table: a node's bound resources and components
	ChanStanza  byte = 3 // a stanza forwarded to the node that holds its recipient
	ChanAck     byte = 4 // the acknowledgement of forwarded stanzas (the delivery rule)
	ChanControl byte = 5 // requests between nodes' engines (an administrator's kick)
)

// Mesh is the messaging between the nodes of a cluster, over the
// mutual-TLS cluster listener. Messages on one channel to one node arrive
// in the order sent. Send never blocks for long: each node has a bounded
// queue; a node that is unreachable makes Send fail at once, a full queue
// makes it fail at once on the route table's channel and after waiting
// for room up to StanzaWait on ChanStanza and ChanAck (back-pressure on the sending
// session). On failure the caller bounces or retries what it sent, by
// the delivery rule.
type Mesh interface {
	// Self is this node's id.
	Self() string
	// Members lists the ids of the nodes that are members now, Self
	// included, sorted.
	Members() []string
	// Send sends msg to node on channel.
	Send(node string, channel byte, msg []byte) error
	// Handle sets the function that receives the messages of a channel
	// (one function per channel, set before the mesh starts). It is
	// called on the receiving connection's goroutine: it must not block.
	Handle(channel byte, fn func(from string, msg []byte))
	// OnMembers sets a function called with the member ids whenever they
	// change (a node joined, left, or became unreachable / reachable
	// again: unreachable nodes are not in the list).
	OnMembers(fn func(members []string))
	// OnReconnect sets a function called when this node's connection to
	// a member is made again after it broke: what was sent on the broken
	// one may be lost. It is called on a goroutine of its own.
	OnReconnect(fn func(node string))
}
