package im

import (
	"bytes"
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
		s.rosterMu.Lock()
		defer s.rosterMu.Unlock()
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
	// Directed presence.
	sess.AddDirected(to.full(), typ == "")
	if to.local == "" {
		return
	}
	s.deliverTo(el, to)
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

// probe sends a contact's current presence to a session (for local
// contacts the server answers the probe itself).
func (s *Service) probe(sess *c2s.Session, contact string) {
	if !s.Hosted(domainOf(contact)) {
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
	el.Set("from", sess.Full())
	sent := map[string]bool{}
	_, items, _ := s.Store.Roster(sess.Bare())
	for _, it := range items {
		if it.Subscription != store.SubFrom && it.Subscription != store.SubBoth {
			continue
		}
		sent[it.JID] = true
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
// to the user's available resources (after a subscription is approved), or
// unavailable presence from each (after it is cancelled).
func (s *Service) contactPresence(contact, user string, available bool) {
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
		for _, us := range s.Router.Available(user) {
			c := p.Copy()
			c.Set("to", user)
			us.Deliver(c)
		}
	}
}

// subscription handles subscribe, subscribed, unsubscribe and unsubscribed
// sent by a user to a contact (RFC 6121 §3), for both ends when the
// contact is local.
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
	// The user's side.
	it, _, _ := s.Store.RosterItem(user, contact.bare)
	if it.JID == "" {
		it = store.RosterItem{JID: contact.bare, Subscription: store.SubNone}
	}
	before := it
	switch typ {
	case "subscribe":
		if it.Subscription == store.SubTo || it.Subscription == store.SubBoth {
			break // already subscribed: nothing changes on the user's side
		}
		it.Ask, it.Hidden = true, false
	case "unsubscribe":
		it.Ask = false
		it.Subscription = dropTo(it.Subscription)
	case "subscribed":
		if it.PendingIn {
			it.Subscription = addFrom(it.Subscription)
		}
		it.PendingIn, it.PendingInMsg, it.Hidden = false, nil, false
	case "unsubscribed":
		it.Subscription = dropFrom(it.Subscription)
		it.PendingIn, it.PendingInMsg = false, nil
	}
	if !sameItem(before, it) {
		s.putItem(user, it)
	}
	if !local {
		s.bounce(el, "remote-server-not-found", "federation with "+contact.domain+" is not available")
		return
	}
	// The contact's side.
	ct, _, _ := s.Store.RosterItem(contact.bare, user)
	existed := ct.JID != ""
	if !existed {
		ct = store.RosterItem{JID: user, Subscription: store.SubNone}
	}
	cbefore := ct
	deliver := true
	switch typ {
	case "subscribe":
		if ct.Subscription == store.SubFrom || ct.Subscription == store.SubBoth {
			// Already approved: answer for the contact (RFC 6121 §3.1.3).
			deliver = false
			s.subscriptionReply(contact.bare, user, "subscribed")
			break
		}
		if !existed || (cbefore.Subscription == store.SubNone && !cbefore.Ask && cbefore.Hidden) {
			ct.Hidden = true
		}
		ct.PendingIn = true
		ct.PendingInMsg = el.Bytes(stream.NSClient)
	case "unsubscribe":
		ct.Subscription = dropFrom(ct.Subscription)
		ct.PendingIn, ct.PendingInMsg = false, nil
		defer s.contactPresence(user, contact.bare, false)
	case "subscribed":
		if !ct.Ask {
			deliver = false // nothing was asked: ignore (RFC 6121 §3.1.5)
			break
		}
		ct.Ask = false
		ct.Subscription = addTo(ct.Subscription)
		defer s.contactPresence(user, contact.bare, true)
	case "unsubscribed":
		ct.Ask = false
		ct.Subscription = dropTo(ct.Subscription)
		defer s.contactPresence(user, contact.bare, false)
	}
	if !sameItem(cbefore, ct) && !(!existed && ct.Subscription == store.SubNone && !ct.PendingIn) {
		s.putItem(contact.bare, ct)
	}
	if deliver {
		for _, cs := range s.Router.Available(contact.bare) {
			cs.Deliver(el)
		}
	}
}

// Subscription state changes (RFC 6121 §3, Appendix A).
func addTo(sub string) string {
	switch sub {
	case store.SubNone:
		return store.SubTo
	case store.SubFrom:
		return store.SubBoth
	}
	return sub
}

func addFrom(sub string) string {
	switch sub {
	case store.SubNone:
		return store.SubFrom
	case store.SubTo:
		return store.SubBoth
	}
	return sub
}

func dropTo(sub string) string {
	switch sub {
	case store.SubTo:
		return store.SubNone
	case store.SubBoth:
		return store.SubFrom
	}
	return sub
}

func dropFrom(sub string) string {
	switch sub {
	case store.SubFrom:
		return store.SubNone
	case store.SubBoth:
		return store.SubTo
	}
	return sub
}

// subscriptionReply sends a subscription presence from a local user (the
// server answering on their behalf) to another local user and applies it
// to the receiver's roster as if the sender had sent it.
func (s *Service) subscriptionReply(from, to, typ string) {
	p := xml.New(stream.NSClient, "presence", "type", typ, "from", from, "to", to)
	it, _, _ := s.Store.RosterItem(to, from)
	if it.JID == "" {
		return
	}
	before := it
	if typ == "subscribed" && it.Ask {
		it.Ask = false
		it.Subscription = addTo(it.Subscription)
	}
	if !sameItem(before, it) {
		s.putItem(to, it)
	}
	for _, us := range s.Router.Available(to) {
		us.Deliver(p)
	}
	s.contactPresence(from, to, true)
}

func sameItem(a, b store.RosterItem) bool {
	return a.JID == b.JID && a.Name == b.Name && a.Subscription == b.Subscription && a.Ask == b.Ask &&
		a.PendingIn == b.PendingIn && a.Hidden == b.Hidden && strings.Join(a.Groups, "\x00") == strings.Join(b.Groups, "\x00") &&
		bytes.Equal(a.PendingInMsg, b.PendingInMsg)
}
