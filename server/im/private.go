package im

import (
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// NSPrivate is private XML storage's namespace (XEP-0049).
const NSPrivate = "jabber:iq:private"

// privateModule keeps a user's private XML, for the user only.
func (s *Service) privateModule(m *Module) {
	m.IQ(GetSet, NSPrivate, ToSelf, FromClient, s.private)
	m.IQ(GetSet, NSPrivate, ToServer|ToAccount, FromClient, forbidden("only your own private storage"))
	m.IQ(GetSet, NSPrivate, ToServer|ToAccount, FromRemote, forbidden(ownerOnly))
	m.Feature(Server, NSPrivate)
}

// ownerOnly is what another server's user is told about what only the
// account's owner may ask.
const ownerOnly = "only the account's owner may do this"

func (s *Service) private(st *Stanza) {
	iq, sess := st.El, st.Session
	kids := st.Query().Elements()
	if len(kids) != 1 || kids[0].Name.Space == "" || kids[0].Name.Space == NSPrivate {
		st.Error("not-acceptable", "private storage takes exactly one namespaced child")
		return
	}
	k := kids[0]
	key := k.Name.Space + " " + k.Name.Local
	switch iq.Get("type") {
	case "get":
		data, _ := s.Store.Private(sess.Bare(), key)
		out := xml.New(NSPrivate, "query")
		if len(data) > 0 {
			if el, err := newElementParser().parse(data); err == nil {
				out.Add(el)
			}
		} else {
			out.Add(xml.New(k.Name.Space, k.Name.Local))
		}
		st.Reply(result(iq).Add(out))
	case "set":
		if _, err := s.Store.Propose(store.PrivateSet{User: sess.Bare(), Key: key, XML: k.Bytes("")}); err != nil {
			st.Error("not-acceptable", err.Error())
			return
		}
		st.Reply(result(iq))
	}
}
