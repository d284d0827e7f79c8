package router

import (
	"github.com/parley-xmpp/parley/server/metrics"
	"github.com/parley-xmpp/parley/server/xml"
)

// JID is a parsed, normalized address (the IM core parses and caches them).
type JID struct {
	Local, Domain, Resource string
	Bare                    string // local@domain, or the domain
}

// Where an address's domain is served.
type Dest uint8

const (
	// Local: a hosted domain; its users' sessions are in the table, their
	// messages may be stored offline.
	Local Dest = iota
	// Component: a registered external component (XEP-0114).
	Component
	// Remote: another server, through federation.
	Remote
	// Nowhere: another server, and there is no federation.
	Nowhere
	// Another cluster node is not a Dest of its own: nodes serve the same
	// domains, so the cluster issue adds it to the Local case of Route (a
	// user's sessions on the other nodes, after the local table).
)

// Components is the registry of external components (XEP-0114).
type Components interface {
	// Known reports whether a component is registered at domain.
	Known(domain string) bool
	// Route delivers to the component at domain; false if not connected.
	Route(domain string, el *xml.Element) bool
	// Connected lists the connected components' addresses.
	Connected() []string
}

// RemoteServers is where stanzas for other servers go (federation). Route
// never blocks; the stanza is in the jabber:client namespace with from and
// to set (full or bare JIDs, normalized). When delivery fails, the s2s
// layer builds the error reply itself. Route owns the element afterwards.
type RemoteServers interface {
	Route(el *xml.Element)
}

// Offline keeps messages for accounts that have no session to take them
// (the IM core's offline module implements it).
type Offline interface {
	// Exists reports whether bare is an account here.
	Exists(bare string) bool
	// Store keeps a chat or normal message for the account to.Bare, or
	// bounces it (a full queue); it may deliver it after all, to a session
	// that became available meanwhile (DeliverMessage).
	Store(el *xml.Element, to JID)
}

// Where says where an address's domain is served: decided here only.
func (r *Router) Where(domain string) Dest {
	switch {
	case r.Hosted != nil && r.Hosted(domain):
		return Local
	case r.Components != nil && r.Components.Known(domain):
		return Component
	case r.Remote != nil:
		return Remote
	}
	return Nowhere
}

// OnDeliver adds a hook run before a routed stanza is written to a local
// session's queue; a hook that returns true has taken the stanza (it will
// deliver it itself, later or never), and the rest are not run. Add hooks
// before the first stanza.
func (r *Router) OnDeliver(h func(s Session, el *xml.Element) bool) {
	r.beforeDeliver = append(r.beforeDeliver, h)
}

// Deliver hands a stanza to one given local session, through the hooks:
// for what must reach that session and no other (an answer to the session
// that asked, a roster push, the presence a session gets when it comes
// online). Everything else goes through Route.
func (r *Router) Deliver(s Session, el *xml.Element) bool {
	for _, h := range r.beforeDeliver {
		if h(s, el) {
			return true
		}
	}
	return s.Deliver(el)
}

// Route sends a stanza on to its destination to (el's `to`, parsed), and
// is the one place that decides where that is:
//
//   - another domain: the component registered there (not connected:
//     service-unavailable, except for presence), or another server (no
//     federation: remote-server-not-found, except for presence);
//   - a hosted domain itself: nothing is routed there (its handlers
//     answer); a message to it bounces with service-unavailable unless it
//     is an error, groupchat or headline, or to a resource;
//   - a full JID: that session; if none takes it, an IQ bounces with
//     service-unavailable (RFC 6121 §8.5.3.1), presence and error
//     messages go nowhere, groupchat bounces, and other messages go on to
//     the bare JID;
//   - a bare JID: presence and IQs (the server's answers) go to every
//     available resource; messages by RFC 6121 §8.5.2: groupchat bounces,
//     the others go to DeliverMessage's targets; with none, an unknown
//     account bounces with service-unavailable, chat and normal are stored
//     offline, headline and error go nowhere.
//
// In a cluster (SetCluster), the other nodes' sessions and components
// count as well, and a stanza for one of them is handed to its node in one
// hop (Cluster.Forward): a component connected to another node; a full JID
// bound on another node; a bare JID's available resources on every node
// (presence and IQs), or its message targets chosen among the resources of
// every node by the same rules. When a node cannot be sent to, the
// stanza is routed as if this node were alone.
//
// What cannot be delivered is returned as a stanza error condition and
// text ("" when there is nothing to bounce: delivered, stored, or nowhere
// to go by the rules); the caller bounces it to the sender, so that every
// bounce goes through one function.
func (r *Router) Route(el *xml.Element, to JID) (condition, text string) {
	return r.RouteAt(el, to, r.Where(to.Domain))
}

// RouteAt is Route for a caller that has already asked Where about
// to.Domain: w is the answer, so the stanza path does not ask twice.
func (r *Router) RouteAt(el *xml.Element, to JID, w Dest) (condition, text string) {
	return r.route(el, to, w, r.Cluster())
}

// route is RouteAt with the cluster to consult (nil: this node alone).
func (r *Router) route(el *xml.Element, to JID, w Dest, c Cluster) (condition, text string) {
	kind := el.Name.Local
	switch w {
	case Component:
		if r.Components.Route(to.Domain, el) {
			metrics.Routed(kind, metrics.Component)
			return "", ""
		}
		if c != nil {
			if node, ok := c.Component(to.Domain); ok && c.Forward(node, el, Forwarded{To: to, Fallback: true}) {
				metrics.Routed(kind, metrics.Cluster)
				return "", ""
			}
		}
		if kind != "presence" {
			metrics.Routed(kind, metrics.Bounced)
			return "service-unavailable", "the component " + to.Domain + " is not connected"
		}
		metrics.Routed(kind, metrics.Nowhere)
		return "", ""
	case Remote:
		metrics.Routed(kind, metrics.Remote)
		r.Remote.Route(el)
		return "", ""
	case Nowhere:
		if kind == "presence" {
			metrics.Routed(kind, metrics.Nowhere)
			return "", ""
		}
		metrics.Routed(kind, metrics.Bounced)
		return NoFederation(to.Domain)
	}
	typ := el.Get("type")
	if to.Local == "" { // the server itself
		if kind == "message" && to.Resource == "" && typ != "error" && typ != "groupchat" && typ != "headline" {
			metrics.Routed(kind, metrics.Bounced)
			return "service-unavailable", ""
		}
		metrics.Routed(kind, metrics.Nowhere)
		return "", ""
	}
	if to.Resource != "" {
		// A session whose connection fails is unbound by Deliver: then it
		// is as if the resource were gone.
		if s := r.Session(to.Bare, to.Resource); s != nil && r.Deliver(s, el) {
			metrics.Routed(kind, metrics.Local)
			return "", ""
		}
		if c != nil {
			// The node that holds this resource, before giving up. If it
			// cannot be sent to, the rest is decided here alone.
			if node, ok := c.Resource(to.Bare, to.Resource); ok {
				var res [1]string
				res[0] = to.Resource
				if c.Forward(node, el, Forwarded{To: to, Resources: res[:], Fallback: true}) {
					metrics.Routed(kind, metrics.Cluster)
					return "", ""
				}
				c = nil
			}
		}
		switch {
		case kind == "iq":
			metrics.Routed(kind, metrics.Bounced)
			return "service-unavailable", ""
		case kind == "presence" || typ == "error":
			metrics.Routed(kind, metrics.Nowhere)
			return "", ""
		case typ == "groupchat":
			metrics.Routed(kind, metrics.Bounced)
			return "service-unavailable", ""
		}
		// No such resource: chat, normal and headline go to the bare JID.
	}
	if kind != "message" {
		forwarded := c != nil && r.forwardAvailable(c, el, to)
		var buf [8]Session
		local := r.appendAvailable(buf[:0], to.Bare)
		for _, s := range local {
			r.Deliver(s, el)
		}
		metrics.Routed(kind, fanOut(len(local) > 0, forwarded))
		return "", ""
	}
	if typ == "" {
		typ = "normal"
	}
	if typ == "groupchat" { // to a user's bare JID: nothing here takes it
		metrics.Routed(kind, metrics.Bounced)
		return "service-unavailable", ""
	}
	// Bound sessions prove the account exists; the store is read only
	// when nobody takes the message, not on every message.
	if c != nil {
		if ok, here := r.deliverMessageCluster(c, el, to, typ); ok {
			metrics.Routed(kind, fanOut(here, !here))
			return "", ""
		}
	} else if r.DeliverMessage(el, to.Bare, typ) {
		metrics.Routed(kind, metrics.Local)
		return "", ""
	}
	if r.Offline == nil || !r.Offline.Exists(to.Bare) {
		metrics.Routed(kind, metrics.Bounced)
		return "service-unavailable", ""
	}
	if typ == "chat" || typ == "normal" {
		metrics.Routed(kind, metrics.Offline)
		r.Offline.Store(el, to)
		return "", ""
	}
	metrics.Routed(kind, metrics.Nowhere)
	return "", ""
}

// fanOut is the outcome of a stanza handed to sessions here (local) and
// to other nodes (forwarded): local when a session here took it, else
// cluster when another node did, else nowhere.
func fanOut(local, forwarded bool) metrics.Outcome {
	switch {
	case local:
		return metrics.Local
	case forwarded:
		return metrics.Cluster
	}
	return metrics.Nowhere
}

// forwardAvailable hands a presence or IQ for a bare JID to every other
// node with available resources of the user, once per node; it reports
// whether a node took it.
func (r *Router) forwardAvailable(c Cluster, el *xml.Element, to JID) (forwarded bool) {
	var buf [8]RemoteResource
	rem := c.AppendRemote(buf[:0], to.Bare)
	var resBuf [8]string
	for i := range rem {
		if !rem[i].Available || rem[i].Node == "" {
			continue
		}
		node := rem[i].Node
		res := resBuf[:0]
		for j := i; j < len(rem); j++ {
			if rem[j].Node == node && rem[j].Available {
				res = append(res, rem[j].Resource)
				rem[j].Node = "" // taken
			}
		}
		if c.Forward(node, el, Forwarded{To: to, Resources: res}) {
			forwarded = true
		}
	}
	return forwarded
}

// deliverMessageCluster is DeliverMessage over every node: the targets
// (RFC 6121 §8.5.2) are chosen among the user's resources here and on the
// other nodes; the local ones get the message, each other node gets it
// once for its own. It reports false when nobody took it, and whether a
// session here took it; a node that could not be sent to leaves the
// choice to this node alone.
func (r *Router) deliverMessageCluster(c Cluster, el *xml.Element, to JID, typ string) (ok, here bool) {
	var rbuf [8]RemoteResource
	rem := c.AppendRemote(rbuf[:0], to.Bare)
	if len(rem) == 0 { // the common case: the user is on this node only
		return r.DeliverMessage(el, to.Bare, typ), true
	}
	var buf [8]Session
	local, top := r.appendTargetsTop(buf[:0], to.Bare, typ)
	if typ != "headline" {
		localTop := top
		for _, rm := range rem {
			if rm.Available && rm.Priority > top {
				top = rm.Priority
			}
		}
		if localTop < top {
			local = local[:0] // a resource on another node ranks higher
		}
	}
	var resBuf [8]string
	for i := range rem {
		if !rem[i].Available || rem[i].Priority < 0 || (typ != "headline" && rem[i].Priority != top) || rem[i].Node == "" {
			continue
		}
		node := rem[i].Node
		res := resBuf[:0]
		for j := i; j < len(rem); j++ {
			if rem[j].Node == node && rem[j].Available && rem[j].Priority >= 0 && (typ == "headline" || rem[j].Priority == top) {
				res = append(res, rem[j].Resource)
				rem[j].Node = ""
			}
		}
		// Only one copy may fall back to storage on its node, and only
		// when no local session was chosen: else a resource gone there
		// would store a message that was delivered here as well.
		if c.Forward(node, el, Forwarded{To: to, Resources: res, Fallback: !ok && len(local) == 0}) {
			ok = true
		}
	}
	for _, s := range local {
		if r.Deliver(s, el) {
			ok, here = true, true
		}
	}
	if ok {
		return true, here
	}
	// Nobody took it (connections failing, nodes unreachable): the local
	// decision.
	return r.DeliverMessage(el, to.Bare, typ), true
}

// NoFederation is the error for a stanza to another server when there is
// no federation.
func NoFederation(domain string) (condition, text string) {
	return "remote-server-not-found", "federation with " + domain + " is not available"
}

// DeliverMessage delivers a message of type typ to the resources of a user
// that get it (Targets); it reports false when none could take it. A
// session whose connection fails is unbound by its Deliver, so the targets
// are chosen again without it.
func (r *Router) DeliverMessage(el *xml.Element, bare, typ string) bool {
	var buf [8]Session
	for try := 0; try < 4; try++ {
		targets := r.appendTargets(buf[:0], bare, typ)
		if len(targets) == 0 {
			return false
		}
		ok := false
		for _, t := range targets {
			if r.Deliver(t, el) {
				ok = true
			}
		}
		if ok {
			return true
		}
	}
	return false
}
