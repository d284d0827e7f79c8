package im

import (
	"github.com/parley-xmpp/parley/server/c2s"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// Federation: the IM core's side of server-to-server traffic. Stanzas
// for other servers leave through Remote; stanzas from them come in
// through FromRemote and are handled as the contact's or the user's
// server of RFC 6121 (messages, IQs, subscriptions, presence).

// Remote is where stanzas for other servers go (federation). Route never
// blocks; the stanza is in the jabber:client namespace with from and to
// set (full or bare JIDs, normalized). When delivery fails, the s2s layer
// builds the error reply itself and hands it back through FromRemote.
// Route owns the element: the IM core does not touch it afterwards.
type Remote interface {
	Route(el *xml.Element)
}

// Local reports whether a domain is served here: hosted, or a registered
// component's.
func (s *Service) Local(domain string) bool {
	return s.Hosted(domain) || (s.Components != nil && s.Components.Known(domain))
}

// federated reports whether stanzas for domain go to another server.
func (s *Service) federated(domain string) bool {
	return s.Remote != nil && !s.Local(domain)
}

// toRemote routes a message or IQ to another server, or, without
// federation, bounces it with remote-server-not-found.
func (s *Service) toRemote(el *xml.Element, domain string) {
	if s.Remote == nil {
		s.bounce(el, "remote-server-not-found", "federation with "+domain+" is not available")
		return
	}
	s.Remote.Route(el)
}

// Bounce answers a local sender's stanza that could not be delivered to
// another server (for the s2s layer).
func (s *Service) Bounce(el *xml.Element, condition, text string) { s.bounce(el, condition, text) }

// FromRemote handles a stanza from another server, already checked by the
// s2s layer: its from-domain is authenticated on the stream, its to-domain
// is Local, its namespace jabber:client. Messages and presence are
// delivered as a local contact's would be; IQs to an account or a domain
// are answered by the server, and answers and errors go back through
// Remote.
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
	if !s.Hosted(to.domain) {
		if !s.toComponent(el, to) && el.Name.Local != "presence" {
			s.bounce(el, "item-not-found", to.domain+" is not served here")
		}
		return
	}
	switch el.Name.Local {
	case "message":
		s.routeMessage(el, to)
	case "presence":
		s.remotePresence(el, to, from)
	case "iq":
		s.remoteIQ(el, to, from)
	}
}

// remotePresence handles presence from a remote entity to a local address.
// Nothing goes back for an account that does not exist (RFC 6121 §8.5.1).
func (s *Service) remotePresence(el *xml.Element, to, from addr) {
	if to.local == "" {
		return // presence to the server itself
	}
	switch typ := el.Get("type"); typ {
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
		if !s.accountExists(to.bare) {
			return
		}
		// Subscription stanzas are between bare JIDs.
		el.Set("from", from.bare)
		el.Set("to", to.bare)
		s.inboundSubscription(el, typ, from.bare, to.bare)
	case "probe":
		s.answerProbe(to, from)
	case "", "unavailable", "error":
		// A contact's broadcast, directed presence, or an error about
		// presence the user sent: to the addressed resource, or to every
		// available one.
		s.deliverTo(el, to)
	}
}

// answerProbe answers a remote server's probe for a local user (RFC 6121
// §4.3.2): a subscriber gets the current presence of each available
// resource (of the one probed, for a full JID), and nothing when the user
// is offline; anyone else is told unsubscribed, unless they are waiting
// for the user's approval.
func (s *Service) answerProbe(to, from addr) {
	it, ok, _ := s.Store.RosterItem(to.bare, from.bare)
	if !ok || (it.Subscription != store.SubFrom && it.Subscription != store.SubBoth) {
		if (ok && it.PendingIn) || !s.accountExists(to.bare) {
			return
		}
		s.deliverTo(xml.New(stream.NSClient, "presence", "type", "unsubscribed", "from", to.bare, "to", from.bare), from)
		return
	}
	for _, cs := range s.Router.Available(to.bare) {
		if to.resource != "" && cs.Resource() != to.resource {
			continue
		}
		p := cs.(*c2s.Session).Presence()
		if p == nil {
			continue
		}
		c := p.Copy()
		c.Set("from", to.bare+"/"+cs.Resource())
		c.Set("to", from.full())
		s.deliverTo(c, from)
	}
}

// remoteIQ handles an IQ from a remote entity to a local address: to a
// user's resource it is delivered; to an account's bare JID or a domain,
// the server answers (RFC 6120 §10.3, §10.5), through Remote.
func (s *Service) remoteIQ(iq *xml.Element, to, from addr) {
	typ := iq.Get("type")
	if iq.Get("id") == "" || (typ != "get" && typ != "set" && typ != "result" && typ != "error") {
		s.bounce(iq, "bad-request", "an iq needs an id and a type of get, set, result or error")
		return
	}
	if to.local != "" && to.resource != "" {
		s.iqToResource(iq, to)
		return
	}
	if typ == "result" || typ == "error" {
		return // nothing here asked
	}
	kids := iq.Elements()
	if len(kids) != 1 {
		s.bounce(iq, "bad-request", "a get or set iq has exactly one child element")
		return
	}
	if to.local != "" && !s.accountExists(to.bare) {
		s.bounce(iq, "service-unavailable", "")
		return
	}
	reply := func(e *xml.Element) { s.deliverTo(e, from) }
	switch q := kids[0]; q.Name.Space {
	case NSRoster, NSPrivate:
		reply(stream.ErrorReply(iq, "forbidden", "only the account's owner may do this"))
	case NSVCard:
		if typ != "get" {
			reply(stream.ErrorReply(iq, "forbidden", "only your own vCard"))
			return
		}
		s.vcardGet(reply, iq, to)
	default:
		if !s.serverIQ(reply, iq, q, to, from.bare) {
			reply(stream.ErrorReply(iq, "service-unavailable", ""))
		}
	}
}
