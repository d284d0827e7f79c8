package im

import (
	"errors"
	"strconv"
	"strings"

	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// NSRoster is the roster namespace (RFC 6121 §2).
const NSRoster = "jabber:iq:roster"

// rosterModule serves a user's roster to the user (with versioning, RFC
// 6121 §2.6) and pushes its changes to the sessions that asked for it.
func (s *Service) rosterModule(m *Module) {
	m.IQ(GetSet, NSRoster, ToSelf, FromClient, func(st *Stanza) { s.rosterIQ(st.Session, st.El, st.Query()) })
	m.IQ(GetSet, NSRoster, ToServer|ToAccount, FromClient, forbidden("only your own roster"))
	m.IQ(GetSet, NSRoster, ToServer|ToAccount, FromRemote, forbidden(ownerOnly))
	m.Feature(Server, NSRoster)
	m.StreamFeature(func() []byte { return []byte(`<ver xmlns="` + stream.NSRosterVer + `"/>`) })
	m.BeforeDeliver(pushFilter)
}

// rosterKey keys a session's interest in roster pushes (it asked for the
// roster: RFC 6121 §2.1.6) in its value store.
type rosterKey struct{}

func interested(sess router.Session) bool { return sess.Value(rosterKey{}) == true }

// Limits on roster item fields.
const (
	maxItemName  = 1023
	maxGroups    = 32
	maxGroupName = 1023
)

func itemElement(it store.RosterItem) *xml.Element {
	e := xml.New(NSRoster, "item", "jid", it.JID, "name", it.Name, "subscription", it.Subscription)
	if it.Ask {
		e.Set("ask", "subscribe")
	}
	for _, g := range it.Groups {
		e.Add(xml.New(NSRoster, "group").AddText(g))
	}
	return e
}

// putItem pushes an item the store changed (or logs why it could not
// store it) to the user's interested resources; hidden items are not
// pushed.
func (s *Service) putItem(c store.RosterChange) {
	if c.Err != nil {
		logging.Problem(s.Log, "im: roster of %s: %v", c.User, c.Err)
		return
	}
	if !c.Stored || c.After.Hidden {
		return
	}
	s.push(c.User, itemElement(c.After))
}

func (s *Service) push(user string, item *xml.Element) {
	ver, _, _ := s.Store.Roster(user)
	for _, sess := range s.Router.Sessions(user) {
		if !interested(sess) {
			continue
		}
		iq := xml.New(stream.NSClient, "iq", "type", "set", "id", "push-"+stream.NewID(), "to", sess.Full())
		iq.Add(xml.New(NSRoster, "query", "ver", strconv.FormatUint(ver, 10)).Add(item.Copy()))
		s.Router.Deliver(sess, iq)
	}
	// The user's sessions on the other nodes of a cluster: routed there,
	// from the user's bare JID; the node that holds each delivers it only
	// if that session asked for the roster (pushFilter).
	if c := s.Router.Cluster(); c != nil {
		for _, rm := range c.AppendRemote(nil, user) {
			to, ok := parseAddr(user + "/" + rm.Resource)
			if !ok {
				continue
			}
			iq := xml.New(stream.NSClient, "iq", "type", "set", "id", "push-"+stream.NewID(), "from", user, "to", to.full())
			iq.Add(xml.New(NSRoster, "query", "ver", strconv.FormatUint(ver, 10)).Add(item.Copy()))
			s.route(iq, to)
		}
	}
}

// pushFilter keeps a roster push that another node routed here from a
// session that has not asked for the roster (RFC 6121 §2.1.6), as the
// pushes made here (push) are kept from it.
func pushFilter(sess router.Session, el *xml.Element) bool {
	return el.Name.Local == "iq" && el.Get("type") == "set" && el.Get("from") == sess.Bare() &&
		el.Child(NSRoster, "query") != nil && !interested(sess)
}

func (s *Service) rosterIQ(sess router.Session, iq, q *xml.Element) {
	switch iq.Get("type") {
	case "get":
		ver, items, err := s.Store.Roster(sess.Bare())
		if err != nil {
			s.Router.Deliver(sess, stream.ErrorReply(iq, "internal-server-error", ""))
			return
		}
		sess.SetValue(rosterKey{}, true)
		v := strconv.FormatUint(ver, 10)
		if q.Has("ver") && q.Get("ver") == v {
			s.Router.Deliver(sess, result(iq)) // unchanged: the client's copy is current
			return
		}
		out := xml.New(NSRoster, "query", "ver", v)
		for _, it := range items {
			if !it.Hidden {
				out.Add(itemElement(it))
			}
		}
		s.Router.Deliver(sess, result(iq).Add(out))
	case "set":
		items := q.Elements()
		if len(items) != 1 || items[0].Name.Local != "item" {
			s.Router.Deliver(sess, stream.ErrorReply(iq, "bad-request", "a roster set has exactly one item"))
			return
		}
		el := items[0]
		a, ok := parseAddr(el.Get("jid"))
		if !ok || a.resource != "" {
			s.Router.Deliver(sess, stream.ErrorReply(iq, "jid-malformed", "the item needs a bare JID"))
			return
		}
		if a.bare == sess.Bare() {
			s.Router.Deliver(sess, stream.ErrorReply(iq, "not-allowed", "you cannot add yourself"))
			return
		}
		if el.Get("subscription") == "remove" {
			switch err := s.removeItem(sess, a); {
			case errors.Is(err, store.ErrNotFound):
				s.Router.Deliver(sess, stream.ErrorReply(iq, "item-not-found", ""))
			case err != nil:
				s.Router.Deliver(sess, stream.ErrorReply(iq, "internal-server-error", ""))
			default:
				s.Router.Deliver(sess, result(iq))
			}
			return
		}
		name := el.Get("name")
		var groups []string
		seen := map[string]bool{}
		for _, g := range el.Elements() {
			if g.Name.Local != "group" {
				continue
			}
			t := strings.TrimSpace(g.Text())
			if t == "" || len(t) > maxGroupName {
				s.Router.Deliver(sess, stream.ErrorReply(iq, "not-acceptable", "a group name must be 1 to 1023 bytes"))
				return
			}
			if seen[t] {
				s.Router.Deliver(sess, stream.ErrorReply(iq, "bad-request", "duplicate group "+t))
				return
			}
			seen[t] = true
			groups = append(groups, t)
		}
		if len(name) > maxItemName || len(groups) > maxGroups {
			s.Router.Deliver(sess, stream.ErrorReply(iq, "not-acceptable", "the item's name or groups are too long"))
			return
		}
		// The store keeps the item's subscription state as it is when the
		// change applies.
		r, err := s.Store.Propose(store.RosterSet{User: sess.Bare(), JID: a.bare, Name: name, Groups: groups})
		if err != nil {
			s.Router.Deliver(sess, stream.ErrorReply(iq, "resource-constraint", err.Error()))
			return
		}
		it, _ := r.Response.(store.RosterItem)
		s.Router.Deliver(sess, result(iq))
		s.push(sess.Bare(), itemElement(it))
	default:
		s.Router.Deliver(sess, stream.ErrorReply(iq, "bad-request", ""))
	}
}

// removeItem deletes a contact, cancelling subscriptions both ways
// (RFC 6121 §2.5.2), in one store op (store.RosterRemove); then the
// cancellations go out as any subscription presence the user sent, and
// the user's interested resources get the remove push. A missing (or
// hidden) item is store.ErrNotFound.
func (s *Service) removeItem(sess router.Session, contact addr) error {
	user := sess.Bare()
	r, err := s.Store.Propose(store.RosterRemove{User: user, JID: contact.bare, ContactLocal: s.Hosted(contact.domain)})
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			logging.Problem(s.Log, "im: roster of %s: %v", user, err)
		}
		return err
	}
	res, _ := r.Response.(store.RemoveResult)
	for _, c := range []struct {
		typ string
		res *store.SubscribeResult
	}{{"unsubscribe", res.Unsubscribe}, {"unsubscribed", res.Unsubscribed}} {
		if c.res != nil {
			p := xml.New(stream.NSClient, "presence", "type", c.typ, "from", user, "to", contact.bare)
			s.subscriptionSent(p, c.typ, user, contact, *c.res)
		}
	}
	s.push(user, xml.New(NSRoster, "item", "jid", contact.bare, "subscription", "remove"))
	return nil
}

// ApplyDirectoryRoster makes the shared part of a directory user's roster
// what their directory groups say (store.DirectoryRoster, both sides) and
// pushes what changed to the sessions that asked for their roster.
func (s *Service) ApplyDirectoryRoster(user, name string, contacts []store.SharedContact) error {
	r, err := s.Store.Propose(store.DirectoryRoster{User: user, UserName: name, Contacts: contacts})
	if err != nil {
		return err
	}
	res, _ := r.Response.(store.DirectoryRosterResult)
	for _, c := range res.Stored {
		s.putItem(c)
	}
	for _, c := range res.Removed {
		s.push(c.User, xml.New(NSRoster, "item", "jid", c.Before.JID, "subscription", "remove"))
	}
	return nil
}
