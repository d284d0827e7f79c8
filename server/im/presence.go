package im

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/parley-xmpp/parley/server/c2s"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

type elementParser struct{}

func newElementParser() elementParser { return elementParser{} }

// parse reads one stored stanza back into an element.
func (elementParser) parse(b []byte) (*xml.Element, error) {
	head := `<stream:stream xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams">`
	rd := xml.NewReader(io.MultiReader(strings.NewReader(head), bytes.NewReader(b)), xml.Limits{MaxStanza: int64(len(b)) + 1024, MaxDepth: 64})
	if _, err := rd.Header(); err != nil {
		return nil, err
	}
	return rd.Next()
}

func (s *Service) handlePresence(sess *c2s.Session, el *xml.Element, to addr, noTo bool) {
	typ := el.Get("type")
	switch typ {
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
		if noTo || to.local == "" {
			return
		}
		el.Set("to", to.bare)
		s.subscription(sess, el, typ, to)
		return
	case "probe", "error":
		return
	case "", "unavailable":
	default:
		return // unknown types are ignored (RFC 6121 §4.7.1.1... bad-request is also allowed)
	}
	if noTo {
		s.broadcastOwn(sess, el, typ == "")
		return
	}
	// Directed presence: to a local user, a component, or another server.
	if !s.addDirected(sess, el, to) {
		return
	}
	if to.local == "" && s.Hosted(to.domain) {
		return
	}
	s.deliverTo(el, to)
}

// addDirected records directed presence (available or unavailable) to an
// address in the session's set. When the set is full the presence does
// not go out: the client gets a policy-violation error and the log one
// line per episode.
func (s *Service) addDirected(sess *c2s.Session, el *xml.Element, to addr) bool {
	if sess.AddDirected(to.full(), el.Get("type") == "") {
		return true
	}
	sess.Deliver(stream.ErrorReply(el, "policy-violation",
		fmt.Sprintf("directed presence goes to at most %d addresses at once: send unavailable presence to some of them first", c2s.MaxDirected)))
	s.logLimit("im: "+sess.Bare()+" directed presence cap", "im: %s has sent directed presence to %d addresses: more is refused", sess.Full(), c2s.MaxDirected)
	return false
}

// broadcastOwn handles a client's broadcast presence (RFC 6121 §4.2, §4.5).
func (s *Service) broadcastOwn(sess *c2s.Session, el *xml.Element, available bool) {
	if !available {
		if was := sess.SetPresence(false, 0, nil); !was {
			return
		}
		s.broadcast(sess, el, true)
		return
	}
	prio := 0
	if p := el.Child("", "priority"); p != nil {
		n, err := strconv.Atoi(strings.TrimSpace(p.Text()))
		if err != nil || n < -128 || n > 127 {
			sess.Deliver(stream.ErrorReply(el, "bad-request", "priority must be a number from -128 to 127"))
			return
		}
		prio = n
	}
	s.stampAvatar(sess.Bare(), el)
	_, oldPrio := sess.Available()
	wasAvailable := sess.SetPresence(true, prio, el)
	s.broadcast(sess, el, false)
	if wasAvailable {
		if oldPrio < 0 && prio >= 0 {
			s.flushOffline(sess) // from a negative priority to a usable one
		}
		return
	}
	// Initial presence: the contacts' presence, pending requests, and
	// offline messages.
	_, items, _ := s.Store.Roster(sess.Bare())
	for _, it := range items {
		if it.Subscription == store.SubTo || it.Subscription == store.SubBoth {
			s.probe(sess, it.JID)
		}
		if it.PendingIn {
			req := xml.New(stream.NSClient, "presence", "type", "subscribe", "from", it.JID, "to", sess.Bare())
			if len(it.PendingInMsg) > 0 {
				if p, err := newElementParser().parse(it.PendingInMsg); err == nil {
					req = p
				}
			}
			sess.Deliver(req)
		}
	}
	// The user's other available resources.
	for _, other := range s.Router.Available(sess.Bare()) {
		if other.Resource() != sess.Resource() {
			if p := other.(*c2s.Session).Presence(); p != nil {
				sess.Deliver(p)
			}
		}
	}
	if prio >= 0 {
		s.flushOffline(sess)
	}
}

// probe sends a contact's current presence to a session: for local
// contacts the server answers the probe itself, a remote contact's server
// gets a probe from the session's full JID and answers it (RFC 6121 §4.3).
func (s *Service) probe(sess *c2s.Session, contact string) {
	if d := domainOf(contact); !s.Hosted(d) {
		if s.federated(d) {
			s.Remote.Route(xml.New(stream.NSClient, "presence", "type", "probe", "from", sess.Full(), "to", contact))
		}
		return
	}
	for _, cs := range s.Router.Available(contact) {
		if p := cs.(*c2s.Session).Presence(); p != nil {
			c := p.Copy()
			c.Set("to", sess.Full())
			sess.Deliver(c)
		}
	}
}

// broadcast sends a session's presence to its subscribers (contacts with
// subscription from or both), to the user's own available resources, and,
// for unavailable presence, to everyone who got directed presence.
func (s *Service) broadcast(sess *c2s.Session, el *xml.Element, unavailable bool) {
	if el.Get("from") != sess.Full() {
		// Only when needed: el may be the session's stored presence,
		// which probes from other goroutines copy.
		el.Set("from", sess.Full())
	}
	sent := map[string]bool{}
	_, items, _ := s.Store.Roster(sess.Bare())
	for _, it := range items {
		if it.Subscription != store.SubFrom && it.Subscription != store.SubBoth {
			continue
		}
		sent[it.JID] = true
		if d := domainOf(it.JID); !s.Hosted(d) {
			// A remote contact: one stanza to the bare JID, its server
			// delivers it to the contact's resources.
			if s.federated(d) {
				c := el.Copy()
				c.Set("to", it.JID)
				s.Remote.Route(c)
			}
			continue
		}
		for _, cs := range s.Router.Available(it.JID) {
			c := el.Copy()
			c.Set("to", it.JID)
			cs.Deliver(c)
		}
	}
	for _, own := range s.Router.Available(sess.Bare()) {
		c := el.Copy()
		c.Set("to", sess.Bare())
		own.Deliver(c)
	}
	if unavailable {
		for _, j := range sess.DirectedTo(true) {
			a, ok := parseAddr(j)
			if !ok || sent[a.bare] {
				continue
			}
			c := el.Copy()
			c.Set("to", j)
			s.deliverTo(c, a)
		}
	}
}

// contactPresence sends every available resource's presence of contact
// (a local user) to user's available resources, or to user's server if
// user is remote (after a subscription is approved), or unavailable
// presence from each (after it is cancelled).
func (s *Service) contactPresence(contact, user string, available bool) {
	remote := !s.Hosted(domainOf(user))
	if remote && !s.federated(domainOf(user)) {
		return
	}
	for _, cs := range s.Router.Available(contact) {
		var p *xml.Element
		if available {
			if p = cs.(*c2s.Session).Presence(); p == nil {
				continue
			}
			p = p.Copy()
		} else {
			p = xml.New(stream.NSClient, "presence", "type", "unavailable")
		}
		p.Set("from", contact+"/"+cs.Resource())
		if remote {
			p.Set("to", user)
			s.Remote.Route(p)
			continue
		}
		for _, us := range s.Router.Available(user) {
			c := p.Copy()
			c.Set("to", user)
			us.Deliver(c)
		}
	}
}

// subscription handles subscribe, subscribed, unsubscribe and unsubscribed
// sent by a user to a contact (RFC 6121 §3): the user's roster, then the
// contact's side, here for a local contact or through the contact's
// server for a remote one. Both rosters change in one store.RosterSubscribe
// op, whose outcome the store computes.
func (s *Service) subscription(sess *c2s.Session, el *xml.Element, typ string, contact addr) {
	user := sess.Bare()
	el.Set("from", user) // subscription stanzas carry the bare JID
	if contact.bare == user {
		return
	}
	local := s.Hosted(contact.domain)
	if local && !s.accountExists(contact.bare) {
		if typ == "subscribe" {
			s.bounce(el, "item-not-found", "")
		}
		return
	}
	res, err := s.Store.Subscribe(store.RosterSubscribe{From: user, To: contact.bare, Type: typ, Direction: store.SubOutbound,
		FromLocal: true, ToLocal: local, Stanza: el.Bytes(stream.NSClient),
		MaxRequestBytes: MaxRequestBytes, MaxStrangerRequests: MaxStrangerRequests})
	if err != nil {
		s.Log.Printf("im: roster of %s: %v", user, err)
		return
	}
	// The user's side.
	s.putItem(res.Sender)
	if local {
		s.inboundResult(el, typ, user, contact.bare, res)
		return
	}
	if s.Components != nil && s.Components.Known(contact.domain) {
		s.Components.Route(contact.domain, el)
		return
	}
	if s.Remote == nil {
		s.bounce(el, "remote-server-not-found", "federation with "+contact.domain+" is not available")
		return
	}
	// The contact's server applies it to the contact's roster; the
	// user's presence follows the subscription from here.
	before, it := res.Sender.Before, res.Sender.After
	hadFrom := before.Subscription == store.SubFrom || before.Subscription == store.SubBoth
	switch typ {
	case "subscribed":
		if it.Subscription != store.SubFrom && it.Subscription != store.SubBoth {
			return // nothing was asked (pre-approval is not supported)
		}
		s.Remote.Route(el)
		s.contactPresence(user, contact.bare, true)
	case "unsubscribed":
		if hadFrom {
			// While the contact is still subscribed (RFC 6121 §3.2.2).
			s.contactPresence(user, contact.bare, false)
		}
		s.Remote.Route(el)
	default:
		s.Remote.Route(el)
	}
}

// inboundSubscription applies a subscription presence from `from` (a bare
// JID of another server) to a local user's roster (RFC 6121 §3, the
// contact's side) in one store.RosterSubscribe op, delivers it to the
// user's available resources (a request is also kept for the next login),
// and answers for the user where the RFC says so.
func (s *Service) inboundSubscription(el *xml.Element, typ, from, user string) {
	fromLocal := s.Hosted(domainOf(from))
	res, err := s.Store.Subscribe(store.RosterSubscribe{From: from, To: user, Type: typ, Direction: store.SubInbound,
		FromLocal: fromLocal, ToLocal: true, Stanza: el.Bytes(stream.NSClient),
		MaxRequestBytes: MaxRequestBytes, MaxStrangerRequests: MaxStrangerRequests})
	if err != nil {
		s.Log.Printf("im: roster of %s: %v", user, err)
		return
	}
	s.inboundResult(el, typ, from, user, res)
}

// inboundResult does what a subscription change's outcome asks on the
// receiving user's side: the auto-reply, the roster push, the delivery,
// then the presence that follows.
func (s *Service) inboundResult(el *xml.Element, typ, from, user string, res store.SubscribeResult) {
	if res.AutoReply {
		s.subscriptionReply(user, from, "subscribed")
	}
	if res.Dropped {
		// Requests from other servers cannot fill the roster.
		s.logLimit("im: subscription requests to "+user+" dropped", "im: subscription request from %s to %s dropped: %d requests pending", from, user, MaxStrangerRequests)
		return
	}
	s.putItem(res.Receiver)
	if res.Deliver {
		for _, cs := range s.Router.Available(user) {
			cs.Deliver(el)
		}
	}
	for _, p := range res.Presence {
		s.contactPresence(p.Of, p.To, p.Available)
	}
}

// Bounds on subscription requests kept for a user (stanzas from other
// servers may be as large as the stanza limit, and come from anyone).
const (
	// MaxRequestBytes is the largest request stanza kept as sent, to be
	// delivered at the next login; a larger one is kept without its
	// payload.
	MaxRequestBytes = 4096
	// MaxStrangerRequests is how many requests from remote users who are
	// not in the roster may wait for an answer; more are dropped.
	MaxStrangerRequests = 100
)

// subscriptionReply sends a subscription presence from a local user (the
// server answering on their behalf) to another user: a local one has it
// applied to their roster (a store.RosterSubscribe reply) as if the sender
// had sent it, a remote one's server gets it. The sender's presence
// follows.
func (s *Service) subscriptionReply(from, to, typ string) {
	p := xml.New(stream.NSClient, "presence", "type", typ, "from", from, "to", to)
	if d := domainOf(to); !s.Hosted(d) {
		if s.federated(d) {
			s.Remote.Route(p)
			s.contactPresence(from, to, true)
		}
		return
	}
	res, err := s.Store.Subscribe(store.RosterSubscribe{From: from, To: to, Type: typ, Direction: store.SubReply, FromLocal: true, ToLocal: true})
	if err != nil {
		s.Log.Printf("im: roster of %s: %v", to, err)
		return
	}
	if !res.Receiver.Existed {
		return
	}
	s.putItem(res.Receiver)
	for _, us := range s.Router.Available(to) {
		us.Deliver(p)
	}
	s.contactPresence(from, to, true)
}
