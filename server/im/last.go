package im

import (
	"fmt"
	"time"

	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// NSLast is last activity's namespace (XEP-0012).
const NSLast = "jabber:iq:last"

// lastModule answers last activity: the server's uptime, a user's idle
// time. A user's last activity is recorded when their last session ends.
func (s *Service) lastModule(m *Module) {
	m.IQ(Get, NSLast, ToBare, FromClient|FromRemote, s.lastActivity)
	m.IQ(Set, NSLast, ToBare, FromClient|FromRemote, badRequest)
	m.Feature(Server, NSLast)
	m.Feature(Account, NSLast)
	m.OnUnbound(func(sess router.Session) {
		if len(s.Router.Sessions(sess.Bare())) == 0 && !s.onOtherNode(sess.Bare()) {
			s.Store.Propose(store.LastSet{User: sess.Bare()})
		}
	})
}

// lastActivity answers jabber:iq:last: the server's uptime on a domain, a
// user's idle time to the user and to contacts subscribed to them.
func (s *Service) lastActivity(st *Stanza) {
	to, requester := st.To, st.Requester()
	secs := int64(0)
	status := ""
	switch {
	case to.local == "":
		secs = int64(time.Since(s.Started).Seconds())
	case to.bare == requester || s.subscribedFrom(to.bare, requester):
		if !s.Router.HasAvailable(to.bare) { // on any node
			l, ok, _ := s.Store.Last(to.bare)
			if !ok {
				st.Reply(stream.ErrorReply(st.El, "service-unavailable", "no activity recorded"))
				return
			}
			secs, status = int64(time.Since(l.Time).Seconds()), l.Status
		}
	default:
		st.Reply(stream.ErrorReply(st.El, "forbidden", "you are not subscribed to this contact's presence"))
		return
	}
	st.Reply(st.Result().Add(xml.New(NSLast, "query", "seconds", fmt.Sprint(secs)).AddText(status)))
}

// subscribedFrom reports whether who is subscribed to user's presence.
func (s *Service) subscribedFrom(user, who string) bool {
	it, ok, _ := s.Store.RosterItem(user, who)
	return ok && (it.Subscription == store.SubFrom || it.Subscription == store.SubBoth)
}

// onOtherNode reports whether a user has a session bound on another node
// of a cluster (its last activity is recorded when the last one ends).
func (s *Service) onOtherNode(bare string) bool {
	c := s.Router.Cluster()
	return c != nil && c.Resources(bare) > 0
}
