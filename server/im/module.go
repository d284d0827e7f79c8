package im

import (
	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
)

// The module surface. A module is a function that registers, on the Module
// it is given, what it owns (IQ handlers by type, namespace, target and
// origin; presence handlers by origin; disco features and
// identities; stream features; hooks on session events). modules.go lists
// the modules in the order they register; disco, the caps hash and the
// stream features are computed from the registrations.

// Origin is where a stanza came from. It travels with the stanza (Stanza)
// through the one dispatch; registrations say which origins they serve.
type Origin uint8

const (
	FromClient    Origin = 1 << iota // a bound client session (Stanza.Session)
	FromRemote                       // another server (federation)
	FromComponent                    // an external component (XEP-0114)

	// FromAnyone is every origin.
	FromAnyone = FromClient | FromRemote | FromComponent
)

// Target is whom an IQ to this server is addressed to.
type Target uint8

const (
	ToServer  Target = 1 << iota // a hosted domain
	ToSelf                       // the sending client's own bare JID, or no `to`
	ToAccount                    // another account's bare JID (it exists)
	// ToFull is a local user's full JID: such IQs are routed to the
	// resource, unless a handler is registered for them.
	ToFull

	// ToBare is any bare JID served here: the domain, one's own, another
	// account's.
	ToBare = ToServer | ToSelf | ToAccount
)

// IQ types a handler is registered for.
type IQType uint8

const (
	Get IQType = 1 << iota
	Set

	GetSet = Get | Set
)

// Entity is whose disco#info a feature or identity is listed in.
type Entity uint8

const (
	Server  Entity = iota // a hosted domain
	Account               // an account's bare JID
)

// Stanza is one stanza being handled, with where it came from and whom
// it is for. Handlers get a pointer to it; it lives for the call.
type Stanza struct {
	El     *xml.Element
	Origin Origin
	// Session is the sending client's session (FromClient).
	Session router.Session
	// From is the sender's address (FromRemote, FromComponent; for a
	// client, its session says it).
	From addr
	// To is the addressee, normalized; for a client's stanza without
	// `to`, the client's own bare JID (and NoTo is set).
	To   addr
	NoTo bool

	s *Service
}

// FromJID is the sender's address as the router spells it (for a client,
// its full JID): for modules in packages beside im.
func (st *Stanza) FromJID() router.JID {
	if st.Origin == FromClient {
		return router.JID{Local: localOf(st.Session.Bare()), Domain: st.Session.Domain(), Resource: st.Session.Resource(), Bare: st.Session.Bare()}
	}
	return st.From.jid()
}

// ToJID is the addressee as the router spells it.
func (st *Stanza) ToJID() router.JID { return st.To.jid() }

// Requester is the sender's bare JID.
func (st *Stanza) Requester() string {
	if st.Origin == FromClient {
		return st.Session.Bare()
	}
	return st.From.bare
}

// target is whom an IQ is addressed to.
func (st *Stanza) target() Target {
	switch {
	case st.To.local == "":
		return ToServer
	case st.Origin == FromClient && (st.NoTo || st.To.bare == st.Session.Bare()):
		return ToSelf
	}
	return ToAccount
}

// Reply sends an answer to the sender: to the client's session itself,
// or routed back to a server or component.
func (st *Stanza) Reply(el *xml.Element) {
	if st.Origin == FromClient {
		st.s.Router.Deliver(st.Session, el)
		return
	}
	st.s.route(el, st.From)
}

// Error answers the stanza with a stanza error. A client gets it on its
// session (whatever the stanza was); servers and components get it as a
// bounce (never for an error or a result).
func (st *Stanza) Error(condition, text string) {
	if st.Origin == FromClient {
		st.s.Router.Deliver(st.Session, stream.ErrorReply(st.El, condition, text))
		return
	}
	st.s.bounce(st.El, condition, text)
}

// Result is an empty result for the IQ, from its addressee to its sender.
func (st *Stanza) Result() *xml.Element { return result(st.El) }

// Query is the IQ's payload (a get or set has exactly one child).
func (st *Stanza) Query() *xml.Element { return st.El.Elements()[0] }

// Module is what a module registers on.
type Module struct{ reg *registry }

// ModuleFunc registers one module.
type ModuleFunc func(s *Service, m *Module)

type iqRoute struct {
	types IQType
	to    Target
	from  Origin
	h     func(*Stanza)
}

type identity struct{ category, typ, name string }

type registry struct {
	iq         map[string][]iqRoute // by namespace, in registration order
	presence   [3]func(*Stanza)     // by origin's bit
	features   [2][]string          // by Entity
	identities [2][]identity
	stream     []func() []byte
	bound      []func(router.Session)
	unbound    []func(router.Session)
	received   []func(*Stanza) bool
	presenceCh []func(sess router.Session, p *xml.Element, available bool)
	deliver    []func(router.Session, *xml.Element) bool
}

func originIndex(o Origin) int {
	switch o {
	case FromRemote:
		return 1
	case FromComponent:
		return 2
	}
	return 0
}

// IQ registers an IQ handler: for the types, the payload namespace, the
// targets and the origins given. The first registration that matches an
// IQ handles it; an IQ nobody handles gets service-unavailable.
func (m *Module) IQ(types IQType, ns string, to Target, from Origin, h func(*Stanza)) {
	if m.reg.iq == nil {
		m.reg.iq = map[string][]iqRoute{}
	}
	m.reg.iq[ns] = append(m.reg.iq[ns], iqRoute{types, to, from, h})
}

// Presence registers the handler of presence stanzas from the origins
// given (to a hosted domain or its users, or a client's to anywhere).
func (m *Module) Presence(from Origin, h func(*Stanza)) { m.stanza(&m.reg.presence, from, h) }

func (m *Module) stanza(table *[3]func(*Stanza), from Origin, h func(*Stanza)) {
	for _, o := range []Origin{FromClient, FromRemote, FromComponent} {
		if from&o != 0 {
			table[originIndex(o)] = h
		}
	}
}

// Feature lists a feature in the disco#info of a server or an account.
func (m *Module) Feature(on Entity, ns string) { m.reg.features[on] = append(m.reg.features[on], ns) }

// Identity lists an identity in the disco#info of a server or an account.
func (m *Module) Identity(on Entity, category, typ, name string) {
	m.reg.identities[on] = append(m.reg.identities[on], identity{category, typ, name})
}

// StreamFeature offers a stream feature to clients once they are
// authenticated (after resource binding's). It is called once, after
// every module registered (so the caps hash is known).
func (m *Module) StreamFeature(f func() []byte) { m.reg.stream = append(m.reg.stream, f) }

// OnBound adds a hook run when a client session is bound.
func (m *Module) OnBound(h func(router.Session)) { m.reg.bound = append(m.reg.bound, h) }

// OnUnbound adds a hook run after a client session is unbound.
func (m *Module) OnUnbound(h func(router.Session)) { m.reg.unbound = append(m.reg.unbound, h) }

// OnStanza adds a hook run on every stanza received (from any origin),
// its `to` parsed, before it is handled; a hook that returns true has
// handled it.
func (m *Module) OnStanza(h func(*Stanza) bool) { m.reg.received = append(m.reg.received, h) }

// OnPresence adds a hook run when a client's broadcast presence changes,
// before it goes out (hooks may add to an available presence).
func (m *Module) OnPresence(h func(sess router.Session, p *xml.Element, available bool)) {
	m.reg.presenceCh = append(m.reg.presenceCh, h)
}

// BeforeDeliver adds a hook run before a routed stanza is written to a
// local session (router.OnDeliver); true: the hook took it.
func (m *Module) BeforeDeliver(h func(router.Session, *xml.Element) bool) {
	m.reg.deliver = append(m.reg.deliver, h)
}

// iqHandler finds the handler of an IQ.
func (r *registry) iqHandler(typ IQType, ns string, to Target, from Origin) func(*Stanza) {
	for _, x := range r.iq[ns] {
		if x.types&typ != 0 && x.to&to != 0 && x.from&from != 0 {
			return x.h
		}
	}
	return nil
}

// Handlers that modules register for what they refuse.

// forbidden refuses with forbidden and a text.
func forbidden(text string) func(*Stanza) {
	return func(st *Stanza) { st.Error("forbidden", text) }
}

// badRequest refuses with bad-request.
func badRequest(st *Stanza) { st.Error("bad-request", "") }

// answer answers with an empty result.
func answer(st *Stanza) { st.Reply(st.Result()) }
