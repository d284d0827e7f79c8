// Package router is the one place that decides where a stanza goes. It
// owns the table of bound client sessions (sharded by bare JID, so routing
// takes no global lock), with each session's availability and priority as
// the presence module sets them, and Route (route.go): local sessions by
// the rules of RFC 6121 §8.5, offline storage, an external component,
// another server (and, from the cluster issue on, another node). Route
// does not build error replies: it says why a stanza cannot be delivered,
// and its caller (the IM core) bounces it.
package router

import (
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/parley-xmpp/parley/server/address"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
)

// Session is a bound client session as the router and the IM modules see
// it. State that belongs to a module (presence, roster interest, directed
// presence …) lives in the session's value store, keyed by the module.
type Session interface {
	Bare() string     // local@domain
	Resource() string // the bound resource
	Full() string     // local@domain/resource
	Domain() string
	// Deliver queues a stanza to the client; false if it could not (the
	// session is then unbound).
	Deliver(*xml.Element) bool
	// Replace closes the session because another took its resource.
	Replace()
	// Close ends the session with a stream error (nil: a clean end).
	Close(*stream.Error)
	// Out is the session's outbound connection, for a sender that paces
	// itself by the writer (the offline flush).
	Out() *stream.Conn
	// Value returns what SetValue stored under key (nil if nothing).
	// Keys are module-owned types, as with context.Context.
	Value(key any) any
	// SetValue stores v under key for the life of the session.
	SetValue(key, v any)
}

const shards = 64

type shard struct {
	mu    sync.RWMutex
	users map[string][]entry // bare → its sessions (a slice: most users have one or two, and a map each cost ~450 bytes)
}

// entry is a bound session with its presence state as the presence module
// set it (SetAvailable): what RFC 6121 §8.5 chooses message targets by,
// read here without asking the session.
type entry struct {
	s         Session
	available bool
	priority  int
}

// Router is the session table and the routing decision (route.go). Its
// exported fields are set once, before the first stanza.
type Router struct {
	n      atomic.Int64 // bound sessions
	seed   maphash.Seed
	shards [shards]shard

	// Hosted reports whether a domain is served here (nil: none is).
	Hosted func(domain string) bool
	// Components, if set, is where stanzas for external components go.
	Components Components
	// Remote, if set, is where stanzas for other servers go; nil: no
	// federation (they bounce with remote-server-not-found).
	Remote RemoteServers
	// Offline, if set, keeps messages for accounts with no session that
	// takes them (nil: there are no accounts, only sessions).
	Offline Offline

	beforeDeliver []func(Session, *xml.Element) bool
	cluster       atomic.Pointer[clusterRef] // the other nodes (SetCluster); nil: standalone
}

// New returns an empty router.
func New() *Router {
	r := &Router{seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].users = map[string][]entry{}
	}
	return r
}

func (r *Router) shard(bare string) *shard {
	return &r.shards[maphash.String(r.seed, bare)%shards]
}

// Bind adds a session. A session already bound to the same full JID is
// replaced (it is told so and should close with a conflict stream error).
func (r *Router) Bind(s Session) { r.BindLimited(s, 0) }

// MaxResources is how many sessions one account may have bound at once:
// each gets its own copy of what is sent to the account and of its
// contacts' presence, so more would multiply what one user can make the
// server do.
const MaxResources = 100

// Why a session cannot be bound.
var (
	ErrTooManySessions  = errors.New("the server's limit of sessions is reached")
	ErrTooManyResources = fmt.Errorf("the account has %d sessions, the most one account may have", MaxResources)
)

// BindLimited is Bind with a limit on the number of bound sessions (0: none):
// it reports false, binding nothing, when a new session would exceed it.
// Replacing a session of the same full JID never counts as new.
func (r *Router) BindLimited(s Session, max int) bool { return r.BindChecked(s, max) == nil }

// BindChecked is BindLimited saying why a session is refused:
// ErrTooManySessions (max) or ErrTooManyResources (MaxResources for its
// account).
func (r *Router) BindChecked(s Session, max int) error {
	c := r.Cluster()
	remote := 0 // sessions bound on the other nodes count against max
	if c != nil && max > 0 {
		remote = c.Len()
	}
	sh := r.shard(s.Bare())
	sh.mu.Lock()
	res := sh.users[s.Bare()]
	i := find(res, s.Resource())
	var old Session
	if i >= 0 {
		old = res[i].s
	}
	if old == nil {
		n := len(res)
		if c != nil {
			n += c.Resources(s.Bare())
		}
		if n >= MaxResources {
			sh.mu.Unlock()
			return ErrTooManyResources
		}
		for {
			cur := r.n.Load()
			if max > 0 && cur+int64(remote) >= int64(max) {
				sh.mu.Unlock()
				return ErrTooManySessions
			}
			if r.n.CompareAndSwap(cur, cur+1) {
				break
			}
		}
	}
	if i >= 0 {
		res[i] = entry{s: s}
	} else {
		sh.users[s.Bare()] = append(res, entry{s: s})
	}
	if c != nil {
		c.Bound(s)
	}
	sh.mu.Unlock()
	if old != nil && old != s {
		old.Replace()
	}
	return nil
}

// Len is the number of bound sessions.
func (r *Router) Len() int { return int(r.n.Load()) }

// Unbind removes a session if it is still the one bound to its full JID.
func (r *Router) Unbind(s Session) {
	sh := r.shard(s.Bare())
	sh.mu.Lock()
	res := sh.users[s.Bare()]
	if i := find(res, s.Resource()); i >= 0 && res[i].s == s {
		res = slices.Delete(res, i, i+1)
		r.n.Add(-1)
		if len(res) == 0 {
			delete(sh.users, s.Bare())
		} else {
			sh.users[s.Bare()] = res
		}
		if c := r.Cluster(); c != nil {
			c.Unbound(s)
		}
	}
	sh.mu.Unlock()
}

// Session returns the session bound to a full JID.
func (r *Router) Session(bare, resource string) Session {
	sh := r.shard(bare)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	res := sh.users[bare]
	if i := find(res, resource); i >= 0 {
		return res[i].s
	}
	return nil
}

// find is the index of the session bound to resource in res, or -1.
func find(res []entry, resource string) int {
	for i := range res {
		if res[i].s.Resource() == resource {
			return i
		}
	}
	return -1
}

// SetAvailable records a bound session's presence: available (with a
// priority) or not. A session that is not (or no longer) bound is ignored.
func (r *Router) SetAvailable(s Session, available bool, priority int) {
	r.SetPresence(s, available, priority, nil)
}

// SetPresence is SetAvailable with the presence stanza the session sent
// (nil if none): the presence module calls it, and in a cluster the other
// nodes get the stanza too, to answer probes for the session.
func (r *Router) SetPresence(s Session, available bool, priority int, presence *xml.Element) {
	sh := r.shard(s.Bare())
	sh.mu.Lock()
	if res := sh.users[s.Bare()]; res != nil {
		if i := find(res, s.Resource()); i >= 0 && res[i].s == s {
			res[i] = entry{s: s, available: available, priority: priority}
			if c := r.Cluster(); c != nil {
				c.Presence(s, available, priority, presence)
			}
		}
	}
	sh.mu.Unlock()
}

// Sessions returns every session of a user, by resource.
func (r *Router) Sessions(bare string) []Session {
	sh := r.shard(bare)
	sh.mu.RLock()
	out := make([]Session, 0, len(sh.users[bare]))
	for _, e := range sh.users[bare] {
		out = append(out, e.s)
	}
	sh.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Resource() < out[j].Resource() })
	return out
}

// Count returns how many sessions are bound, in total and per domain.
func (r *Router) Count() (int, map[string]int) {
	total, by := 0, map[string]int{}
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		for bare, res := range sh.users {
			total += len(res)
			by[address.Domain(bare)] += len(res)
		}
		sh.mu.RUnlock()
	}
	return total, by
}

// All returns every bound session.
func (r *Router) All() []Session {
	var out []Session
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		for _, res := range sh.users {
			for _, e := range res {
				out = append(out, e.s)
			}
		}
		sh.mu.RUnlock()
	}
	return out
}

// Targets returns the sessions a message to the bare JID goes to (RFC 6121
// §8.5.2.1.1): the available resources with the highest non-negative
// priority for chat and normal, every available non-negative resource for
// headline. None means the user is offline for this message.
func (r *Router) Targets(bare, msgType string) []Session {
	return r.appendTargets(nil, bare, msgType)
}

// appendTargets appends the targets (as Targets) to dst, in the order of
// their resources: a caller's buffer on its stack makes it allocate
// nothing.
func (r *Router) appendTargets(dst []Session, bare, msgType string) []Session {
	dst, _ = r.appendTargetsTop(dst, bare, msgType)
	return dst
}

// appendTargetsTop is appendTargets also reporting the highest priority of
// an available non-negative resource (-1: none).
func (r *Router) appendTargetsTop(dst []Session, bare, msgType string) ([]Session, int) {
	start := len(dst)
	top := -1
	sh := r.shard(bare)
	sh.mu.RLock()
	for _, e := range sh.users[bare] {
		if !e.available || e.priority < 0 {
			continue
		}
		if msgType == "headline" {
			dst = append(dst, e.s)
			continue
		}
		switch {
		case e.priority > top:
			dst, top = append(dst[:start], e.s), e.priority
		case e.priority == top:
			dst = append(dst, e.s)
		}
	}
	sh.mu.RUnlock()
	sortByResource(dst[start:])
	return dst, top
}

// appendAvailable appends the available sessions of a user (any priority)
// to dst, in the order of their resources.
func (r *Router) appendAvailable(dst []Session, bare string) []Session {
	start := len(dst)
	sh := r.shard(bare)
	sh.mu.RLock()
	for _, e := range sh.users[bare] {
		if e.available {
			dst = append(dst, e.s)
		}
	}
	sh.mu.RUnlock()
	sortByResource(dst[start:])
	return dst
}

// sortByResource is an insertion sort: the lists are a few sessions long,
// and it allocates nothing.
func sortByResource(ss []Session) {
	for i := 1; i < len(ss); i++ {
		for j := i; j > 0 && ss[j].Resource() < ss[j-1].Resource(); j-- {
			ss[j], ss[j-1] = ss[j-1], ss[j]
		}
	}
}

// HasAvailable reports whether a user has an available session, here or
// on another node of the cluster.
func (r *Router) HasAvailable(bare string) bool {
	sh := r.shard(bare)
	sh.mu.RLock()
	for _, e := range sh.users[bare] {
		if e.available {
			sh.mu.RUnlock()
			return true
		}
	}
	sh.mu.RUnlock()
	if c := r.Cluster(); c != nil {
		var buf [8]RemoteResource
		for _, rm := range c.AppendRemote(buf[:0], bare) {
			if rm.Available {
				return true
			}
		}
	}
	return false
}

// Available returns the available sessions of a user on this node (any
// priority); RemoteAvailable has those on the other nodes of a cluster.
func (r *Router) Available(bare string) []Session {
	return r.appendAvailable(nil, bare)
}
