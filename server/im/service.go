// Package im owns the instant-messaging core for client sessions (RFC 6121
// and the XEPs around it): routing of messages with offline storage
// (XEP-0160), presence broadcast and subscriptions, the roster with
// versioning, and the server's own IQ handlers (disco with a caps hash,
// ping, version, time, last activity, vcard-temp with avatar hashes,
// private XML storage). Each handler is registered by namespace in a
// small table, one file per concern.
package im

import (
	"hash/maphash"
	"log"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/parley-xmpp/parley/server/c2s"
	"github.com/parley-xmpp/parley/server/limit"
	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// Service is the IM core. It implements c2s.Handler.
type Service struct {
	Store   *store.Store
	Router  *router.Router
	Hosted  func(domain string) bool
	Version string
	Started time.Time
	Log     *log.Logger

	// Components, if set, is where stanzas for external components go.
	Components Components

	// Remote, if set, is where stanzas for other servers go (federation);
	// nil makes them bounce with remote-server-not-found.
	Remote Remote

	// Episodes, if set, logs limits hit once per episode (nil: every
	// time, to Log).
	Episodes *limit.Episodes

	photos sync.Map // bare JID → avatar hash ("" for none)

	offline [64]sync.Mutex // by bare JID: storing vs. flushing offline messages
	// flushing holds the running offline flush of each user (offline.go).
	flushMu  sync.Mutex
	flushing map[string]*flusher
}

const nsChatStates = "http://jabber.org/protocol/chatstates"

var offlineSeed = maphash.MakeSeed()

func (s *Service) offlineLock(bare string) *sync.Mutex {
	return &s.offline[maphash.String(offlineSeed, bare)%uint64(len(s.offline))]
}

var _ c2s.Handler = (*Service)(nil)

// Components is the registry of external components (XEP-0114).
type Components interface {
	// Known reports whether a component is registered at domain.
	Known(domain string) bool
	// Route delivers to the component at domain; false if not connected.
	Route(domain string, el *xml.Element) bool
	// Connected lists the connected components' addresses.
	Connected() []string
}

// toComponent routes a stanza whose target is a registered component. It
// reports false if the domain is not a component's. A component that is
// not connected makes messages and IQs bounce with service-unavailable.
func (s *Service) toComponent(el *xml.Element, a addr) bool {
	if s.Components == nil || !s.Components.Known(a.domain) {
		return false
	}
	if !s.Components.Route(a.domain, el) && el.Name.Local != "presence" {
		s.bounce(el, "service-unavailable", "the component "+a.domain+" is not connected")
	}
	return true
}

// FromComponent routes a stanza sent by an external component (its `from`
// already checked to be at the component's domain).
func (s *Service) FromComponent(component string, el *xml.Element) {
	a, ok := parseAddr(el.Get("to"))
	if !ok {
		s.bounce(el, "jid-malformed", "the 'to' address is not a valid JID")
		return
	}
	el.Set("to", a.full())
	if !s.Hosted(a.domain) {
		if !s.toComponent(el, a) {
			s.toRemote(el, a.domain)
		}
		return
	}
	switch el.Name.Local {
	case "message":
		s.routeMessage(el, a)
	case "presence":
		if a.local != "" {
			s.deliverTo(el, a)
		}
	case "iq":
		s.componentIQ(el, a)
	}
}

// componentIQ handles an IQ from a component to a local address: to a
// user's resource it is delivered; the server answers ping and disco.
func (s *Service) componentIQ(iq *xml.Element, a addr) {
	typ := iq.Get("type")
	if a.local != "" && a.resource != "" {
		s.iqToResource(iq, a)
		return
	}
	if typ != "get" && typ != "set" {
		return
	}
	kids := iq.Elements()
	if len(kids) != 1 {
		s.bounce(iq, "bad-request", "a get or set iq has exactly one child element")
		return
	}
	from, _ := parseAddr(iq.Get("from"))
	var payload *xml.Element
	switch q := kids[0]; {
	case q.Name.Space == NSPing && (a.local == "" || s.accountExists(a.bare)):
	case q.Name.Space == NSDiscoInfo && a.local == "":
		if payload = serverInfo(q.Get("node")); payload == nil {
			s.bounce(iq, "item-not-found", "")
			return
		}
	case q.Name.Space == NSDiscoItems && a.local == "":
		payload = s.discoItems(a, true)
	default:
		s.bounce(iq, "service-unavailable", "")
		return
	}
	r := result(iq)
	if payload != nil {
		r.Add(payload)
	}
	s.deliverTo(r, from)
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

// Online is called when a session is bound.
func (s *Service) Online(sess *c2s.Session) {}

// iqToResource delivers an IQ to a user's full JID, or bounces it with
// service-unavailable (RFC 6121 §8.5.3.1) when no session is bound there or
// its connection is failing.
func (s *Service) iqToResource(iq *xml.Element, to addr) {
	if t := s.Router.Session(to.bare, to.resource); t != nil && t.Deliver(iq) {
		return
	}
	s.bounce(iq, "service-unavailable", "")
}

// Undelivered takes the stanzas a session's connection accepted and could
// not write (the session is unbound by now): messages are routed again, so
// they reach another resource or offline storage (RFC 6121 §8.5.3.2.1, as
// for a resource that is gone); IQ requests bounce with
// service-unavailable (§8.5.3.1); presence goes nowhere (§8.5.3.1:
// pending subscription requests are in the roster and come again at the
// next login).
func (s *Service) Undelivered(sess *c2s.Session, stanzas []*xml.Element) {
	for _, el := range stanzas {
		switch el.Name.Local {
		case "message":
			if to, ok := parseAddr(el.Get("to")); ok {
				s.routeMessage(el, to)
			}
		case "iq":
			s.bounce(el, "service-unavailable", "the recipient's connection closed before it was sent")
		}
	}
}

// Offline is called when a session ends: an available session's contacts
// see it leave.
func (s *Service) Offline(sess *c2s.Session) {
	s.waitFlush(sess)
	if was := sess.SetPresence(false, 0, nil); was {
		un := xml.New(stream.NSClient, "presence", "type", "unavailable", "from", sess.Full())
		s.broadcast(sess, un, true)
	}
	if len(s.Router.Sessions(sess.Bare())) == 0 {
		s.Store.Propose(store.LastSet{User: sess.Bare()})
	}
}

// Handle dispatches one stanza from a client.
func (s *Service) Handle(sess *c2s.Session, el *xml.Element) {
	to := el.Get("to")
	var a addr
	if to == "" {
		a = addr{bare: sess.Bare(), domain: sess.Domain(), local: sess.Local()}
	} else {
		var ok bool
		if a, ok = parseAddr(to); !ok {
			if el.Name.Local != "presence" && el.Get("type") != "error" {
				sess.Deliver(stream.ErrorReply(el, "jid-malformed", "the 'to' address is not a valid JID"))
			}
			return
		}
		el.Set("to", a.full())
		if !s.Hosted(a.domain) && s.Components != nil && s.Components.Known(a.domain) {
			if el.Name.Local == "presence" && (el.Get("type") == "" || el.Get("type") == "unavailable") && !s.addDirected(sess, el, a) {
				return
			}
			s.toComponent(el, a)
			return
		}
	}
	switch el.Name.Local {
	case "iq":
		s.handleIQ(sess, el, a, to == "")
	case "message":
		if to == "" {
			el.Set("to", sess.Bare())
		}
		s.routeMessage(el, a)
	case "presence":
		s.handlePresence(sess, el, a, to == "")
	}
}

// bounce returns an error reply to the sender of a stanza routed on its
// behalf, unless it is an error itself.
func (s *Service) bounce(el *xml.Element, condition, text string) {
	if el.Get("type") == "error" || (el.Name.Local == "iq" && el.Get("type") == "result") {
		return
	}
	reply := stream.ErrorReply(el, condition, text)
	from, ok := parseAddr(el.Get("from"))
	if !ok {
		return
	}
	s.deliverTo(reply, from)
}

// deliverTo sends a stanza generated by the server to an address: a
// local full JID's session, every available resource of a local bare JID,
// a component, or another server (nothing without federation).
func (s *Service) deliverTo(el *xml.Element, a addr) {
	if !s.Hosted(a.domain) {
		if s.Components != nil && s.Components.Known(a.domain) {
			s.Components.Route(a.domain, el)
		} else if s.Remote != nil {
			s.Remote.Route(el)
		}
		return
	}
	if a.resource != "" {
		if sess := s.Router.Session(a.bare, a.resource); sess != nil {
			sess.Deliver(el)
		}
		return
	}
	for _, sess := range s.Router.Available(a.bare) {
		sess.Deliver(el)
	}
}

func (s *Service) accountExists(bare string) bool {
	_, err := s.Store.Account(bare)
	return err == nil
}

// routeMessage delivers a message (RFC 6121 §8.5).
func (s *Service) routeMessage(el *xml.Element, to addr) {
	typ := el.Get("type")
	if !s.Hosted(to.domain) {
		s.toRemote(el, to.domain)
		return
	}
	if to.local == "" { // to the server itself
		if to.resource == "" && typ != "error" && typ != "groupchat" && typ != "headline" {
			s.bounce(el, "service-unavailable", "")
		}
		return
	}
	if to.resource != "" {
		// A session whose connection fails is unbound by Deliver: then it
		// is as if the resource were gone.
		if sess := s.Router.Session(to.bare, to.resource); sess != nil && sess.Deliver(el) {
			return
		}
		if typ == "error" || typ == "groupchat" {
			if typ == "groupchat" {
				s.bounce(el, "service-unavailable", "")
			}
			return
		}
		// No such resource: chat, normal and headline go to the bare JID.
	}
	if typ == "" {
		typ = "normal"
	}
	// Bound sessions prove the account exists; the store is read (a JSON
	// decode) only when nobody is online, not on every message.
	if typ == "groupchat" { // to a user's bare JID: nothing here takes it
		s.bounce(el, "service-unavailable", "")
		return
	}
	if s.deliverTargets(el, to.bare, typ) {
		return
	}
	if !s.accountExists(to.bare) {
		s.bounce(el, "service-unavailable", "")
		return
	}
	if typ == "chat" || typ == "normal" {
		s.storeOffline(el, to)
	}
}

// deliverTargets delivers a message to the resources of a user that get
// it (router.Targets); it reports false when none could take it. A session
// whose connection fails is unbound by its Deliver, so the targets are
// chosen again without it.
func (s *Service) deliverTargets(el *xml.Element, bare, typ string) bool {
	for try := 0; try < 4; try++ {
		targets := s.Router.Targets(bare, typ)
		if len(targets) == 0 {
			return false
		}
		ok := false
		for _, t := range targets {
			if t.Deliver(el) {
				ok = true
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// storeOffline keeps a message for an offline user (XEP-0160), durably,
// with a delay stamp; a full queue bounces it.
func (s *Service) storeOffline(el *xml.Element, to addr) {
	// Nothing without a body or a payload worth keeping (chat states alone).
	keep := false
	for _, c := range el.Elements() {
		keep = keep || c.Name.Space != nsChatStates
	}
	if !keep {
		return
	}
	// The recipient may have come online since the targets were chosen;
	// initial presence flushes under the same lock, so look again here.
	mu := s.offlineLock(to.bare)
	mu.Lock()
	defer mu.Unlock()
	typ := el.Get("type")
	if typ == "" {
		typ = "normal"
	}
	if s.deliverTargets(el, to.bare, typ) {
		return
	}
	c := el.Copy()
	c.Add(xml.New("urn:xmpp:delay", "delay", "from", to.domain, "stamp", time.Now().UTC().Format("2006-01-02T15:04:05.000Z")).AddText("Offline storage"))
	if _, err := s.Store.Propose(store.OfflinePush{User: to.bare, Stanza: c.Bytes(stream.NSClient)}); err != nil {
		s.logLimit("im: offline messages for "+to.bare+" not stored", "im: offline message for %s not stored: %v", to.bare, err)
		s.bounce(el, "service-unavailable", "the recipient's offline storage is full")
	}
}

// logLimit logs a limit hit, once per episode of key.
func (s *Service) logLimit(key, format string, args ...any) {
	if s.Episodes != nil {
		s.Episodes.Printf(key, format, args...)
	} else {
		s.Log.Printf(format, args...)
	}
}

func domainOf(bare string) string {
	if i := strings.LastIndexByte(bare, '@'); i >= 0 {
		return bare[i+1:]
	}
	return bare
}
