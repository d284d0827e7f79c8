package im

// NSPing is XMPP ping's namespace (XEP-0199).
const NSPing = "urn:xmpp:ping"

// pingModule answers pings to the server and to accounts, from anyone.
func (s *Service) pingModule(m *Module) {
	m.IQ(GetSet, NSPing, ToBare, FromAnyone, answer)
	m.Feature(Server, NSPing)
	m.Feature(Account, NSPing)
}
