// Package router owns the table of bound client sessions and the one
// decision of where a stanza addressed to a local JID goes: which resources
// of a user receive it (RFC 6121 §8.5), or that nobody does. The table is
// sharded by bare JID, so routing takes no global lock.
package router

import (
	"errors"
	"fmt"
	"hash/maphash"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/parley-xmpp/parley/server/xml"
)

// Session is a bound client session as the router sees it.
type Session interface {
	Bare() string     // local@domain
	Resource() string // the bound resource
	// Available reports whether the session has sent available presence,
	// and its priority.
	Available() (bool, int)
	// Deliver queues a stanza to the client; false if it could not.
	Deliver(*xml.Element) bool
	// Replace closes the session because another took its resource.
	Replace()
}

const shards = 64

type shard struct {
	mu    sync.RWMutex
	users map[string]map[string]Session // bare → resource → session
}

// Router is the session table.
type Router struct {
	n      atomic.Int64 // bound sessions
	seed   maphash.Seed
	shards [shards]shard
}

// New returns an empty router.
func New() *Router {
	r := &Router{seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].users = map[string]map[string]Session{}
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
	sh := r.shard(s.Bare())
	sh.mu.Lock()
	res := sh.users[s.Bare()]
	old := res[s.Resource()]
	if old == nil {
		if len(res) >= MaxResources {
			sh.mu.Unlock()
			return ErrTooManyResources
		}
		for {
			cur := r.n.Load()
			if max > 0 && cur >= int64(max) {
				sh.mu.Unlock()
				return ErrTooManySessions
			}
			if r.n.CompareAndSwap(cur, cur+1) {
				break
			}
		}
	}
	if res == nil {
		res = map[string]Session{}
		sh.users[s.Bare()] = res
	}
	res[s.Resource()] = s
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
	if res := sh.users[s.Bare()]; res != nil && res[s.Resource()] == s {
		delete(res, s.Resource())
		r.n.Add(-1)
		if len(res) == 0 {
			delete(sh.users, s.Bare())
		}
	}
	sh.mu.Unlock()
}

// Session returns the session bound to a full JID.
func (r *Router) Session(bare, resource string) Session {
	sh := r.shard(bare)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.users[bare][resource]
}

// Sessions returns every session of a user, by resource.
func (r *Router) Sessions(bare string) []Session {
	sh := r.shard(bare)
	sh.mu.RLock()
	out := make([]Session, 0, len(sh.users[bare]))
	for _, s := range sh.users[bare] {
		out = append(out, s)
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
			by[domainOf(bare)] += len(res)
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
			for _, s := range res {
				out = append(out, s)
			}
		}
		sh.mu.RUnlock()
	}
	return out
}

func domainOf(bare string) string {
	for i := len(bare) - 1; i >= 0; i-- {
		if bare[i] == '@' {
			return bare[i+1:]
		}
	}
	return bare
}

// Targets returns the sessions a message to the bare JID goes to (RFC 6121
// §8.5.2.1.1): the available resources with the highest non-negative
// priority for chat and normal, every available non-negative resource for
// headline. None means the user is offline for this message.
func (r *Router) Targets(bare, msgType string) []Session {
	var best []Session
	top := -1
	for _, s := range r.Sessions(bare) {
		ok, prio := s.Available()
		if !ok || prio < 0 {
			continue
		}
		if msgType == "headline" {
			best = append(best, s)
			continue
		}
		switch {
		case prio > top:
			best, top = []Session{s}, prio
		case prio == top:
			best = append(best, s)
		}
	}
	return best
}

// Available returns the available sessions of a user (any priority).
func (r *Router) Available(bare string) []Session {
	var out []Session
	for _, s := range r.Sessions(bare) {
		if ok, _ := s.Available(); ok {
			out = append(out, s)
		}
	}
	return out
}
