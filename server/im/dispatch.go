package im

import (
	"strings"

	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
)

// The one dispatch. Clients (c2s), other servers (s2s) and components
// hand stanzas in through Handle, FromRemote and FromComponent, which
// check and normalize the addresses and say where the stanza came from;
// dispatch does the rest for all three.

// Handle dispatches one stanza from a client (c2s.Handler), its `from`
// stamped by the session.
func (s *Service) Handle(sess router.Session, el *xml.Element) {
	st := Stanza{s: s, El: el, Origin: FromClient, Session: sess}
	if to := el.Get("to"); to == "" {
		bare := sess.Bare()
		st.To, st.NoTo = addr{bare: bare, domain: sess.Domain(), local: localOf(bare)}, true
	} else {
		a, ok := parseAddr(to)
		if !ok {
			if el.Name.Local != "presence" && el.Get("type") != "error" {
				s.Router.Deliver(sess, stream.ErrorReply(el, "jid-malformed", "the 'to' address is not a valid JID"))
			}
			return
		}
		el.Set("to", a.full())
		st.To = a
	}
	s.dispatch(st)
}

// FromComponent dispatches a stanza sent by an external component (its
// `from` already checked to be at the component's domain).
func (s *Service) FromComponent(component string, el *xml.Element) {
	to, ok := parseAddr(el.Get("to"))
	if !ok {
		s.bounce(el, "jid-malformed", "the 'to' address is not a valid JID")
		return
	}
	el.Set("to", to.full())
	from, _ := parseAddr(el.Get("from"))
	s.dispatch(Stanza{s: s, El: el, Origin: FromComponent, From: from, To: to})
}

// FromRemote dispatches a stanza from another server, already checked by
// the s2s layer: its from-domain is authenticated on the stream, its
// to-domain is Local, its namespace jabber:client. Answers and errors go
// back through the router to the remote sender.
func (s *Service) FromRemote(el *xml.Element) {
	from, ok := parseAddr(el.Get("from"))
	if !ok || s.Local(from.domain) {
		return // not a remote sender: nothing to answer to
	}
	el.Set("from", from.full())
	to, ok := parseAddr(el.Get("to"))
	if !ok {
		if el.Name.Local != "presence" {
			s.bounce(el, "jid-malformed", "the 'to' address is not a valid JID")
		}
		return
	}
	el.Set("to", to.full())
	s.dispatch(Stanza{s: s, El: el, Origin: FromRemote, From: from, To: to})
}

// Local reports whether a domain is served here: hosted, or a registered
// component's (for the s2s layer).
func (s *Service) Local(domain string) bool {
	w := s.Router.Where(domain)
	return w == router.Local || w == router.Component
}

// Bounce answers the sender of a stanza that could not be delivered to
// another server or a component (for the s2s and component layers).
func (s *Service) Bounce(el *xml.Element, condition, text string) { s.bounce(el, condition, text) }

// Online is called when a client session is bound: the modules' bound
// hooks.
func (s *Service) Online(sess router.Session) {
	for _, h := range s.reg.bound {
		h(sess)
	}
}

// Offline is called when a session ends: the modules' unbound hooks.
func (s *Service) Offline(sess router.Session) {
	for _, h := range s.reg.unbound {
		h(sess)
	}
}

// Undelivered takes the stanzas a session's connection accepted and could
// not write (the session is unbound by now): messages are routed again, so
// they reach another resource or offline storage (RFC 6121 §8.5.3.2.1, as
// for a resource that is gone); IQ requests bounce with
// service-unavailable (§8.5.3.1); presence goes nowhere (§8.5.3.1:
// pending subscription requests are in the roster and come again at the
// next login).
func (s *Service) Undelivered(sess router.Session, stanzas []*xml.Element) {
	for _, el := range stanzas {
		switch el.Name.Local {
		case "message":
			if to, ok := parseAddr(el.Get("to")); ok {
				s.route(el, to)
			}
		case "iq":
			s.bounce(el, "service-unavailable", "the recipient's connection closed before it was sent")
		}
	}
}

// dispatch handles a stanza whose addresses are checked: the modules'
// stanza hooks, then what is for elsewhere, then by kind. It takes the
// Stanza by value and hands out pointers only in the functions it calls,
// so that a routed message allocates nothing here.
func (s *Service) dispatch(st Stanza) {
	if len(s.reg.received) > 0 && s.received(st) {
		return
	}
	el := st.El
	w := s.Router.Where(st.To.domain)
	if w != router.Local {
		switch {
		case w == router.Component:
			// A client's presence to a component is directed presence.
			if st.Origin == FromClient && el.Name.Local == "presence" && (el.Get("type") == "" || el.Get("type") == "unavailable") &&
				!s.addDirected(st.Session, el, st.To) {
				return
			}
			s.route(el, st.To)
			return
		case st.Origin == FromRemote:
			// Another server's stanza goes only to what is served here.
			if el.Name.Local != "presence" {
				s.bounce(el, "item-not-found", st.To.domain+" is not served here")
			}
			return
		case st.Origin == FromComponent:
			s.route(el, st.To)
			return
		}
		// A client's stanza for another server: its kind's handler sends
		// it on (IQs are checked first, presence is directed or a
		// subscription).
	}
	switch el.Name.Local {
	case "message":
		if st.NoTo {
			el.Set("to", st.To.bare)
		}
		s.routeAt(el, st.To, w)
	case "presence":
		if h := s.reg.presence[originIndex(st.Origin)]; h != nil {
			handle(h, st)
		}
	case "iq":
		s.iq(st)
	}
}

// handle calls a handler with a stanza of its own (not inlined: the copy
// a handler may keep is allocated only when there is a handler).
//
//go:noinline
func handle(h func(*Stanza), st Stanza) { h(&st) }

// received runs the stanza hooks; true: one handled the stanza.
//
//go:noinline
func (s *Service) received(st Stanza) bool {
	for _, h := range s.reg.received {
		if h(&st) {
			return true
		}
	}
	return false
}

// iq dispatches an IQ: checked, routed if it is for a resource or another
// server, else handed to the handler registered for its type, namespace,
// target and origin (RFC 6120 §8.2.3, §10.3, §10.5).
func (s *Service) iq(st Stanza) {
	iq := st.El
	typ := iq.Get("type")
	request := typ == "get" || typ == "set"
	if st.Origin != FromComponent && (iq.Get("id") == "" || !(request || typ == "result" || typ == "error")) {
		st.Error("bad-request", "an iq needs an id and a type of get, set, result or error")
		return
	}
	// A client's request is checked before it goes anywhere; what comes
	// from servers and components is checked only where it is handled.
	if st.Origin == FromClient && request && len(iq.Elements()) != 1 {
		st.Error("bad-request", "a get or set iq has exactly one child element")
		return
	}
	t := Get
	if typ == "set" {
		t = Set
	}
	if !s.Hosted(st.To.domain) {
		s.route(iq, st.To)
		return
	}
	if st.To.local != "" && st.To.resource != "" {
		// To a user's full JID: that resource's, unless a module answers
		// for it.
		if kids := iq.Elements(); request && len(kids) == 1 {
			if h := s.reg.iqHandler(t, kids[0].Name.Space, ToFull, st.Origin); h != nil {
				h(&st)
				return
			}
		}
		s.route(iq, st.To)
		return
	}
	if !request {
		return // answers to the server's own pings, or to nothing
	}
	if len(iq.Elements()) != 1 {
		st.Error("bad-request", "a get or set iq has exactly one child element")
		return
	}
	to := st.target()
	if to == ToAccount && !s.accountExists(st.To.bare) {
		s.bounce(iq, "service-unavailable", "")
		return
	}
	h := s.reg.iqHandler(t, iq.Elements()[0].Name.Space, to, st.Origin)
	if h == nil {
		st.Error("service-unavailable", "")
		return
	}
	h(&st)
}

// route sends a stanza on through the routing point, and bounces what it
// cannot deliver.
func (s *Service) route(el *xml.Element, to addr) {
	if condition, text := s.Router.Route(el, to.jid()); condition != "" {
		s.bounce(el, condition, text)
	}
}

// routeAt is route when where to's domain is served is known (Where).
func (s *Service) routeAt(el *xml.Element, to addr, w router.Dest) {
	if condition, text := s.Router.RouteAt(el, to.jid(), w); condition != "" {
		s.bounce(el, condition, text)
	}
}

// bounce returns an error reply to the sender of a stanza routed on its
// behalf, unless it is an error itself or an IQ result. Every bounce goes
// through here.
func (s *Service) bounce(el *xml.Element, condition, text string) {
	if el.Get("type") == "error" || (el.Name.Local == "iq" && el.Get("type") == "result") {
		return
	}
	reply := stream.ErrorReply(el, condition, text)
	from, ok := parseAddr(el.Get("from"))
	if !ok {
		return
	}
	s.route(reply, from)
}

func (s *Service) accountExists(bare string) bool {
	_, err := s.Store.Account(bare)
	return err == nil
}

// localOf is the localpart of a bare JID.
func localOf(bare string) string {
	if i := strings.LastIndexByte(bare, '@'); i >= 0 {
		return bare[:i]
	}
	return ""
}

func result(iq *xml.Element) *xml.Element {
	r := xml.New(stream.NSClient, "iq", "type", "result", "id", iq.Get("id"))
	r.Set("to", iq.Get("from"))
	r.Set("from", iq.Get("to"))
	return r
}
