package router

import (
	"github.com/parley-xmpp/parley/server/xml"
)

// Cluster is the other nodes of a cluster as the router sees them: the
// table of the resources and components they hold, and the way to hand a
// stanza to one of them (package server/cluster/routes implements it). A
// standalone router has none, and routes exactly as before.
//
// The router tells it of every change to its own table (Bound, Unbound,
// Presence), under the lock of the user's shard, so that the changes of
// one session reach it in the order they happened; it must not call the
// router back from these.
type Cluster interface {
	// Bound, Unbound and Presence are this node's own changes, to
	// publish to the other nodes.
	Bound(s Session)
	Unbound(s Session)
	Presence(s Session, available bool, priority int, presence *xml.Element)

	// Resource reports the node that holds a full JID (not this one).
	Resource(bare, resource string) (node string, ok bool)
	// AppendRemote appends a user's resources on the other nodes to dst.
	AppendRemote(dst []RemoteResource, bare string) []RemoteResource
	// Component reports the node a component is connected to.
	Component(domain string) (node string, ok bool)
	// Len is the number of resources bound on the other nodes, and
	// Resources the number of one user's.
	Len() int
	Resources(bare string) int

	// Forward hands el to node, which delivers it as Forwarded says
	// (Router.DeliverLocal, then RouteLocal); false if it could not be sent (the node
	// is unreachable or its queue is full): the caller applies the
	// delivery rule itself. el is serialized before Forward returns.
	Forward(node string, el *xml.Element, f Forwarded) bool
}

// RemoteResource is a user's resource bound on another node, as that node
// published it.
type RemoteResource struct {
	Node      string
	Resource  string
	Available bool
	Priority  int
	// Presence is the resource's last available presence as its client
	// sent it (nil when unavailable or too large to publish): the
	// presence module answers probes with it.
	Presence []byte
}

// Forwarded is what the node receiving a forwarded stanza is asked to do
// with it.
type Forwarded struct {
	// To is the stanza's destination as the sending node routed it.
	To JID
	// Resources are the sessions of To.Bare to deliver it to (none: To
	// is a component's domain, or a full JID whose session is asked for).
	Resources []string
	// Fallback: when none of Resources takes it, the receiving node
	// routes it locally by the delivery rule (another local resource,
	// offline storage, or a bounce); without it, a copy that was also
	// delivered elsewhere is dropped there.
	Fallback bool
}

// clusterRef boxes the Cluster so that it can be set while stanzas are
// routed.
type clusterRef struct{ c Cluster }

// SetCluster makes the router route to the other nodes of a cluster (nil:
// standalone again). The sessions already bound are published by the
// caller (Each).
func (r *Router) SetCluster(c Cluster) {
	if c == nil {
		r.cluster.Store(nil)
		return
	}
	r.cluster.Store(&clusterRef{c})
}

// Cluster returns the cluster the router routes to (nil: standalone).
func (r *Router) Cluster() Cluster {
	if p := r.cluster.Load(); p != nil {
		return p.c
	}
	return nil
}

// Each calls fn with every bound session and its availability, for a
// cluster table that publishes what was bound before it existed (their
// presence stanzas follow with their next presence). fn runs under the
// lock of the session's shard: it must not call the router.
func (r *Router) Each(fn func(s Session, available bool, priority int)) {
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		for _, res := range sh.users {
			for _, e := range res {
				fn(e.s, e.available, e.priority)
			}
		}
		sh.mu.RUnlock()
	}
}

// Total is the number of sessions bound on every node of the cluster
// (Len: standalone).
func (r *Router) Total() int {
	n := r.Len()
	if c := r.Cluster(); c != nil {
		n += c.Len()
	}
	return n
}

// RemoteAvailable returns a user's available resources on the other
// nodes (none when standalone).
func (r *Router) RemoteAvailable(bare string) []RemoteResource {
	c := r.Cluster()
	if c == nil {
		return nil
	}
	var out []RemoteResource
	for _, rm := range c.AppendRemote(nil, bare) {
		if rm.Available {
			out = append(out, rm)
		}
	}
	return out
}

// DeliverLocal delivers a stanza another node forwarded here to the
// sessions of bare among resources, on this node only (a stanza never
// hops twice); it reports whether any took it. When none did and the
// sender asked for it (Forwarded.Fallback), the stanza goes to RouteLocal.
func (r *Router) DeliverLocal(el *xml.Element, bare string, resources []string) bool {
	ok := false
	for _, res := range resources {
		if s := r.Session(bare, res); s != nil && r.Deliver(s, el) {
			ok = true
		}
	}
	return ok
}

// RouteLocal is Route as if this node were alone: for a forwarded stanza
// whose session is gone meanwhile (a message to the user's other
// resources here or to offline storage, an IQ bounced, a component's
// stanza to the component if it is connected here). It may wait for the
// store (offline storage).
func (r *Router) RouteLocal(el *xml.Element, to JID) (condition, text string) {
	return r.route(el, to, r.Where(to.Domain), nil)
}
