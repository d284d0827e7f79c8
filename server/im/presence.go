package im

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/parley-xmpp/parley/server/address"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/router"
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

// Per-session presence state, kept in the session's value store.
type presenceKey struct{}

type presenceState struct {
	mu        sync.Mutex
	available bool
	priority  int
	presence  *xml.Element // the last available presence broadcast
	directed  map[string]bool
}

// presenceOf is a session's presence state (nil before it is bound; the
// methods take that as unavailable).
func presenceOf(sess router.Session) *presenceState {
	ps, _ := sess.Value(presenceKey{}).(*presenceState)
	return ps
}

// last returns the last available presence (nil if unavailable) and the
// priority.
func (ps *presenceState) last() (*xml.Element, int) {
	if ps == nil {
		return nil, 0
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.presence, ps.priority
}

// MaxDirected is how many addresses one session may have sent directed
// presence to (and not yet unavailable presence): each gets the session's
// unavailable presence when it ends. Beyond it, directed presence is
// refused with a policy-violation error.
const MaxDirected = 1000

// addDirected remembers a JID that got directed presence (add) or
// forgets it (unavailable presence). It reports false, remembering
// nothing, when jid is new and MaxDirected are already remembered: the
// presence must not go out.
func (ps *presenceState) addDirected(jid string, add bool) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if !add {
		delete(ps.directed, jid)
		return true
	}
	if ps.directed == nil {
		ps.directed = map[string]bool{}
	}
	if !ps.directed[jid] && len(ps.directed) >= MaxDirected {
		return false
	}
	ps.directed[jid] = true
	return true
}

// takeDirected returns the JIDs that got directed presence, and forgets
// them.
func (ps *presenceState) takeDirected() []string {
	if ps == nil {
		return nil
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]string, 0, len(ps.directed))
	for j := range ps.directed {
		out = append(out, j)
	}
	ps.directed = nil
	return out
}

// setPresence records available (with priority and the presence sent) or
// unavailable presence, here and in the router (which chooses message
// targets by it). It returns whether the session was available before,
// and its priority then.
func (s *Service) setPresence(sess router.Session, available bool, priority int, p *xml.Element) (bool, int) {
	ps := presenceOf(sess)
	if ps == nil {
		return false, 0
	}
	ps.mu.Lock()
	was, oldPrio := ps.available, ps.priority
	ps.available, ps.priority = available, priority
	if available {
		ps.presence = p
	} else {
		ps.presence = nil
	}
	s.Router.SetPresence(sess, available, priority, p)
	ps.mu.Unlock()
	return was, oldPrio
}

// presenceModule handles presence (RFC 6121 §4) and subscriptions (§3):
// a client's broadcast and directed presence, contacts' presence from
// other servers, and a component's presence to users.
func (s *Service) presenceModule(m *Module) {
	m.Presence(FromClient, s.clientPresence)
	m.Presence(FromRemote, s.remotePresence)
	m.Presence(FromComponent, func(st *Stanza) { s.route(st.El, st.To) })
	m.OnBound(func(sess router.Session) { sess.SetValue(presenceKey{}, &presenceState{}) })
	// An available session's contacts see it leave.
	m.OnUnbound(func(sess router.Session) {
		if was, _ := s.setPresence(sess, false, 0, nil); was {
			un := xml.New(stream.NSClient, "presence", "type", "unavailable", "from", sess.Full())
			s.presenceChanged(sess, un, false)
			s.broadcast(sess, un, true)
		}
	})
}

// presenceChanged runs the modules' presence hooks.
func (s *Service) presenceChanged(sess router.Session, p *xml.Element, available bool) {
	for _, h := range s.reg.presenceCh {
		h(sess, p, available)
	}
}

// clientPresence handles presence from a client: subscriptions, directed
// presence, or its broadcast presence (no `to`).
func (s *Service) clientPresence(st *Stanza) {
	sess, el, to, noTo := st.Session, st.El, st.To, st.NoTo
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
	s.route(el, to) // to a hosted domain itself: nowhere
}

// addDirected records directed presence (available or unavailable) to an
// address in the session's set. When the set is full the presence does
// not go out: the client gets a policy-violation error and the log one
// line per episode.
func (s *Service) addDirected(sess router.Session, el *xml.Element, to addr) bool {
	ps := presenceOf(sess)
	if ps == nil || ps.addDirected(to.full(), el.Get("type") == "") {
		return true
	}
	s.Router.Deliver(sess, stream.ErrorReply(el, "policy-violation",
		fmt.Sprintf("directed presence goes to at most %d addresses at once: send unavailable presence to some of them first", MaxDirected)))
	s.logLimit("im: "+sess.Bare()+" directed presence cap", "im: %s has sent directed presence to %d addresses: more is refused", sess.Full(), MaxDirected)
	return false
}

// broadcastOwn handles a client's broadcast presence (RFC 6121 §4.2, §4.5).
func (s *Service) broadcastOwn(sess router.Session, el *xml.Element, available bool) {
	if !available {
		if was, _ := s.setPresence(sess, false, 0, nil); !was {
			return
		}
		s.presenceChanged(sess, el, false)
		s.broadcast(sess, el, true)
		return
	}
	prio := 0
	if p := el.Child("", "priority"); p != nil {
		n, err := strconv.Atoi(strings.TrimSpace(p.Text()))
		if err != nil || n < -128 || n > 127 {
			s.Router.Deliver(sess, stream.ErrorReply(el, "bad-request", "priority must be a number from -128 to 127"))
			return
		}
		prio = n
	}
	s.presenceChanged(sess, el, true)
	wasAvailable, oldPrio := s.setPresence(sess, true, prio, el)
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
			s.Router.Deliver(sess, req)
		}
	}
	// The user's other available resources (here and on the other
	// nodes of a cluster).
	for _, other := range s.Router.Available(sess.Bare()) {
		if other.Resource() != sess.Resource() {
			if p, _ := presenceOf(other).last(); p != nil {
				s.Router.Deliver(sess, p)
			}
		}
	}
	for _, p := range s.remotePresences(sess.Bare(), "") {
		p.Set("to", sess.Full())
		s.Router.Deliver(sess, p)
	}
	if prio >= 0 {
		s.flushOffline(sess)
	}
}

// probe sends a contact's current presence to a session: for local
// contacts the server answers the probe itself, a remote contact's server
// gets a probe from the session's full JID and answers it (RFC 6121 §4.3).
func (s *Service) probe(sess router.Session, contact string) {
	if d := address.Domain(contact); !s.Hosted(d) {
		if c, ok := parseAddr(contact); ok {
			s.route(xml.New(stream.NSClient, "presence", "type", "probe", "from", sess.Full(), "to", contact), c)
		}
		return
	}
	for _, cs := range s.Router.Available(contact) {
		if p, _ := presenceOf(cs).last(); p != nil {
			c := p.Copy()
			c.Set("to", sess.Full())
			s.Router.Deliver(sess, c)
		}
	}
	for _, p := range s.remotePresences(contact, "") {
		p.Set("to", sess.Full())
		s.Router.Deliver(sess, p)
	}
}

// remotePresences returns the current presence of a user's available
// resources on the other nodes of a cluster (of the one named, if
// resource is set), as those nodes published it, from the user's full
// JIDs: the server answers probes for them as for its own sessions.
func (s *Service) remotePresences(bare, resource string) []*xml.Element {
	var out []*xml.Element
	for _, rm := range s.Router.RemoteAvailable(bare) {
		if len(rm.Presence) == 0 || (resource != "" && rm.Resource != resource) {
			continue
		}
		p, err := newElementParser().parse(rm.Presence)
		if err != nil || p.Name.Local != "presence" {
			continue
		}
		p.Set("from", bare+"/"+rm.Resource)
		out = append(out, p)
	}
	return out
}

// broadcast sends a session's presence to its subscribers (contacts with
// subscription from or both), to the user's own available resources, and,
// for unavailable presence, to everyone who got directed presence.
func (s *Service) broadcast(sess router.Session, el *xml.Element, unavailable bool) {
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
		// To a remote contact, one stanza to the bare JID: its server
		// delivers it to the contact's resources.
		s.presenceTo(el, it.JID)
	}
	s.presenceTo(el, sess.Bare())
	if unavailable {
		for _, j := range presenceOf(sess).takeDirected() {
			a, ok := parseAddr(j)
			if !ok || sent[a.bare] {
				continue
			}
			c := el.Copy()
			c.Set("to", j)
			s.route(c, a)
		}
	}
}

// presenceTo routes a copy of a presence to a bare JID (stored JIDs are
// normalized), if anyone takes it: a local user's available resources, or
// a remote user's server.
func (s *Service) presenceTo(el *xml.Element, bare string) {
	if s.Hosted(address.Domain(bare)) && !s.Router.HasAvailable(bare) {
		return // nobody to copy it for
	}
	a, ok := parseAddr(bare)
	if !ok {
		return
	}
	c := el.Copy()
	c.Set("to", bare)
	s.route(c, a)
}

// contactPresence sends every available resource's presence of contact
// (a local user) to user's available resources, or to user's server if
// user is remote (after a subscription is approved), or unavailable
// presence from each (after it is cancelled).
func (s *Service) contactPresence(contact, user string, available bool) {
	// The contact's resources on the other nodes of a cluster.
	for _, rm := range s.Router.RemoteAvailable(contact) {
		var p *xml.Element
		if available {
			ps := s.remotePresences(contact, rm.Resource)
			if len(ps) == 0 {
				continue
			}
			p = ps[0]
		} else {
			p = xml.New(stream.NSClient, "presence", "type", "unavailable")
		}
		p.Set("from", contact+"/"+rm.Resource)
		s.presenceTo(p, user)
	}
	for _, cs := range s.Router.Available(contact) {
		var p *xml.Element
		if available {
			if p, _ = presenceOf(cs).last(); p == nil {
				continue
			}
			p = p.Copy()
		} else {
			p = xml.New(stream.NSClient, "presence", "type", "unavailable")
		}
		p.Set("from", contact+"/"+cs.Resource())
		s.presenceTo(p, user)
	}
}

// subscription handles subscribe, subscribed, unsubscribe and unsubscribed
// sent by a user to a contact (RFC 6121 §3): the user's roster, then the
// contact's side, here for a local contact or through the contact's
// server for a remote one. Both rosters change in one store.RosterSubscribe
// op, whose outcome the store computes.
func (s *Service) subscription(sess router.Session, el *xml.Element, typ string, contact addr) {
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
		logging.Problem(s.Log, "im: roster of %s: %v", user, err)
		return
	}
	// The user's side.
	s.putItem(res.Sender)
	s.subscriptionSent(el, typ, user, contact, res)
}

// subscriptionSent sends on a subscription presence from a local user
// whose store op has been applied (res): to a local contact as its
// outcome says, to a component as it is, or to the contact's server.
func (s *Service) subscriptionSent(el *xml.Element, typ, user string, contact addr, res store.SubscribeResult) {
	if s.Hosted(contact.domain) {
		s.inboundResult(el, typ, user, contact.bare, res)
		return
	}
	switch s.Router.Where(contact.domain) {
	case router.Component: // it takes the stanza as it is
		s.route(el, contact)
		return
	case router.Nowhere:
		condition, text := router.NoFederation(contact.domain)
		s.bounce(el, condition, text)
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
		s.route(el, contact)
		s.contactPresence(user, contact.bare, true)
	case "unsubscribed":
		if hadFrom {
			// While the contact is still subscribed (RFC 6121 §3.2.2).
			s.contactPresence(user, contact.bare, false)
		}
		s.route(el, contact)
	default:
		s.route(el, contact)
	}
}

// inboundSubscription applies a subscription presence from `from` (a bare
// JID of another server) to a local user's roster (RFC 6121 §3, the
// contact's side) in one store.RosterSubscribe op, delivers it to the
// user's available resources (a request is also kept for the next login),
// and answers for the user where the RFC says so.
func (s *Service) inboundSubscription(el *xml.Element, typ, from, user string) {
	fromLocal := s.Hosted(address.Domain(from))
	res, err := s.Store.Subscribe(store.RosterSubscribe{From: from, To: user, Type: typ, Direction: store.SubInbound,
		FromLocal: fromLocal, ToLocal: true, Stanza: el.Bytes(stream.NSClient),
		MaxRequestBytes: MaxRequestBytes, MaxStrangerRequests: MaxStrangerRequests})
	if err != nil {
		logging.Problem(s.Log, "im: roster of %s: %v", user, err)
		return
	}
	s.inboundResult(el, typ, from, user, res)
}

// inboundResult does what a subscription change's outcome asks on the
// receiving user's side: the auto-reply, the roster push, the delivery,
// then the presence that follows.
func (s *Service) inboundResult(el *xml.Element, typ, from, user string, res store.SubscribeResult) {
	if res.AutoReply {
		if res.Replied {
			// A local sender: its roster took the answer in the same op
			// (pushed by the caller); it gets the answer and the presence.
			s.routeTo(xml.New(stream.NSClient, "presence", "type", "subscribed", "from", user, "to", from), from)
			s.contactPresence(user, from, true)
		} else {
			s.subscriptionReply(user, from, "subscribed")
		}
	}
	if res.Dropped {
		// Requests from other servers cannot fill the roster.
		s.logLimit("im: subscription requests to "+user+" dropped", "im: subscription request from %s to %s dropped: %d requests pending", from, user, MaxStrangerRequests)
		return
	}
	s.putItem(res.Receiver)
	if res.Deliver {
		s.routeTo(el, user)
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
// server answering on their behalf) to a remote user, whose server
// applies it; the sender's presence follows.
func (s *Service) subscriptionReply(from, to, typ string) {
	if !s.federated(address.Domain(to)) {
		return
	}
	s.routeTo(xml.New(stream.NSClient, "presence", "type", typ, "from", from, "to", to), to)
	s.contactPresence(from, to, true)
}

// RemoteGone tells the user's contacts here, and the user's own sessions
// here, that a resource on another node of a cluster is unavailable: its
// node left or became unreachable, and cannot say so itself. Contacts on
// other nodes are told by their own node. With servers (one node of those
// left does it: see routes.Config.Gone), the user's contacts on other
// servers are told as well, one stanza to each contact's bare JID, as
// the resource's own unavailable presence would have been sent; those
// that got directed presence from it are not (only its node knew them).
func (s *Service) RemoteGone(bare, resource string, servers bool) {
	p := xml.New(stream.NSClient, "presence", "type", "unavailable", "from", bare+"/"+resource)
	s.presenceHere(bare, p)
	if !servers {
		return
	}
	_, items, _ := s.Store.Roster(bare)
	for _, it := range items {
		if it.Subscription != store.SubFrom && it.Subscription != store.SubBoth {
			continue
		}
		if d := address.Domain(it.JID); !s.Hosted(d) && s.federated(d) {
			s.presenceTo(p, it.JID)
		}
	}
}

// RemoteBack tells the same sessions a resource's presence again when its
// node is back (after RemoteGone).
func (s *Service) RemoteBack(bare, resource string, presence []byte) {
	p, err := newElementParser().parse(presence)
	if err != nil || p.Name.Local != "presence" {
		return
	}
	p.Set("from", bare+"/"+resource)
	s.presenceHere(bare, p)
}

// presenceHere delivers a copy of p to the available sessions on this
// node of the user's subscribers (from or both) and of the user.
func (s *Service) presenceHere(bare string, p *xml.Element) {
	targets := []string{bare}
	_, items, _ := s.Store.Roster(bare)
	for _, it := range items {
		if (it.Subscription == store.SubFrom || it.Subscription == store.SubBoth) && s.Hosted(address.Domain(it.JID)) {
			targets = append(targets, it.JID)
		}
	}
	for _, t := range targets {
		for _, cs := range s.Router.Available(t) {
			c := p.Copy()
			c.Set("to", cs.Full())
			s.Router.Deliver(cs, c)
		}
	}
}
