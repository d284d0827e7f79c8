// Package im owns the instant-messaging core (RFC 6121 and the XEPs around
// it) as modules: roster with versioning, presence and subscriptions,
// offline storage (XEP-0160), vcard-temp with avatar hashes, private XML
// storage, ping, disco with a caps hash, version, time, last activity and
// the legacy session IQ. Each module registers, in a file of its own, its
// IQ handlers (by type, namespace, target and origin), disco features and
// identities, stream features and hooks on session events (module.go is
// the surface, modules.go the list). Stanzas from clients, other servers
// and components share one dispatch (dispatch.go), their origin carried
// with them; everything that leaves a handler for someone else goes
// through router.Route, and every bounce through one function (bounce).
package im

import (
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/parley-xmpp/parley/server/c2s"
	"github.com/parley-xmpp/parley/server/limit"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/store"
)

// Service is the IM core. It implements c2s.Handler, and the handlers of
// the s2s and component layers. Set its fields, then call Init once
// before the first stanza.
type Service struct {
	Store *store.Store
	// Router is the session table and the routing point; its Hosted,
	// Components and Remote say where other addresses are served.
	Router  *router.Router
	Hosted  func(domain string) bool
	Version string
	Started time.Time
	Log     *slog.Logger

	// Episodes, if set, logs limits hit once per episode (nil: every
	// time, to Log).
	Episodes *limit.Episodes

	// DirectoryUser, if set, reports whether a user's vCard comes from a
	// company directory: its DirectoryFields, as stored at the last login
	// or refresh (SetDirectoryVCard), are the directory's, and the user
	// may not change them.
	DirectoryUser func(bare string) bool

	reg      registry
	caps     string // the caps hash (XEP-0115) of the server's disco#info
	features []byte // the stream features the modules offer

	photos sync.Map // bare JID → avatar hash ("" for none)

	offline [64]sync.Mutex // by bare JID: storing vs. flushing offline messages
	// flushing holds the running offline flush of each user (offline.go).
	flushMu  sync.Mutex
	flushing map[string]*flusher
}

var _ c2s.Handler = (*Service)(nil)

// Init registers the modules (modules.go, then extra ones) and computes
// what depends on all of them: the caps hash and the stream features.
func (s *Service) Init(extra ...ModuleFunc) {
	for _, load := range append(append([]ModuleFunc(nil), modules...), extra...) {
		load(s, &Module{reg: &s.reg})
	}
	s.caps = capsVer(s.reg.identities[Server], s.reg.features[Server])
	var b strings.Builder
	for _, f := range s.reg.stream {
		b.Write(f())
	}
	s.features = []byte(b.String())
	for _, h := range s.reg.deliver {
		s.Router.OnDeliver(h)
	}
}

// StreamFeatures are the stream features the modules offer to an
// authenticated client (c2s.Config.Features).
func (s *Service) StreamFeatures() []byte { return s.features }

const nsChatStates = "http://jabber.org/protocol/chatstates"

var offlineSeed = maphash.MakeSeed()

func (s *Service) offlineLock(bare string) *sync.Mutex {
	return &s.offline[maphash.String(offlineSeed, bare)%uint64(len(s.offline))]
}

// addr is a parsed, normalized address.
type addr struct {
	bare, resource, domain, local string
}

// addrCacheSize bounds the cache of normalized addresses; when full it
// starts over, so a peer sending endless new addresses costs only a parse.
const addrCacheSize = 16384

var addrCache struct {
	sync.RWMutex
	m map[string]addr
}

// parseAddr parses and normalizes (PRECIS) a JID. Valid results are
// cached: the same few addresses recur on every stanza of a session.
func parseAddr(s string) (addr, bool) {
	addrCache.RLock()
	a, ok := addrCache.m[s]
	addrCache.RUnlock()
	if ok {
		return a, true
	}
	j, err := jid.Parse(s)
	if err != nil {
		return addr{}, false
	}
	a = addr{bare: j.Bare().String(), resource: j.Resourcepart(), domain: j.Domainpart(), local: j.Localpart()}
	if full := a.full(); full != s && !stable(full) {
		return addr{}, false // e.g. "a@b..": its domain "b." would not parse again
	}
	addrCache.Lock()
	if addrCache.m == nil || len(addrCache.m) >= addrCacheSize {
		addrCache.m = make(map[string]addr, 256)
	}
	addrCache.m[s] = a
	addrCache.Unlock()
	return a, true
}

// stable reports whether a normalized address parses again to itself
// (what normalization changed must not change again, or the same
// address would have two spellings).
func stable(full string) bool {
	j, err := jid.Parse(full)
	return err == nil && j.String() == full
}

func (a addr) full() string {
	if a.resource == "" {
		return a.bare
	}
	return a.bare + "/" + a.resource
}

func (a addr) jid() router.JID {
	return router.JID{Local: a.local, Domain: a.domain, Resource: a.resource, Bare: a.bare}
}

// logLimit logs a limit hit, once per episode of key.
func (s *Service) logLimit(key, format string, args ...any) {
	if s.Episodes != nil {
		s.Episodes.Printf(key, format, args...)
	} else {
		logging.Problem(s.Log, format, args...)
	}
}
