package im

import "github.com/parley-xmpp/parley/server/xml"

// NSVersion is software version's namespace (XEP-0092).
const NSVersion = "jabber:iq:version"

// versionModule tells the server's name and version (not an account's).
func (s *Service) versionModule(m *Module) {
	m.IQ(Get, NSVersion, ToServer, FromClient|FromRemote, func(st *Stanza) {
		st.Reply(st.Result().Add(xml.New(NSVersion, "query").Add(
			xml.New(NSVersion, "name").AddText("Parley"),
			xml.New(NSVersion, "version").AddText(s.Version))))
	})
	m.Feature(Server, NSVersion)
}
