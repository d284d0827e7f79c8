package im

import (
	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// Federation: the IM core's side of server-to-server traffic. Stanzas
// for other servers leave through router.Route; stanzas from them come in
// through FromRemote (dispatch.go) and are handled as the contact's or the
// user's server of RFC 6121: messages are routed, IQs dispatched as any
// (FromRemote registrations), presence here.

// federated reports whether stanzas for domain go to another server.
func (s *Service) federated(domain string) bool {
	return s.Router.Where(domain) == router.Remote
}

// routeTo routes a stanza to an address given as a string (a stored,
// normalized JID).
func (s *Service) routeTo(el *xml.Element, jid string) {
	if a, ok := parseAddr(jid); ok {
		s.route(el, a)
	}
}

// remotePresence handles presence from a remote entity to a local address.
// Nothing goes back for an account that does not exist (RFC 6121 §8.5.1).
func (s *Service) remotePresence(st *Stanza) {
	el, to, from := st.El, st.To, st.From
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
		s.route(el, to)
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
		s.route(xml.New(stream.NSClient, "presence", "type", "unsubscribed", "from", to.bare, "to", from.bare), from)
		return
	}
	// Those on the other nodes of a cluster first, as they published it.
	for _, p := range s.remotePresences(to.bare, to.resource) {
		p.Set("to", from.full())
		s.route(p, from)
	}
	for _, cs := range s.Router.Available(to.bare) {
		if to.resource != "" && cs.Resource() != to.resource {
			continue
		}
		p, _ := presenceOf(cs).last()
		if p == nil {
			continue
		}
		c := p.Copy()
		c.Set("from", to.bare+"/"+cs.Resource())
		c.Set("to", from.full())
		s.route(c, from)
	}
}
