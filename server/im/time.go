package im

import (
	"time"

	"github.com/parley-xmpp/parley/server/xml"
)

// NSTime is entity time's namespace (XEP-0202).
const NSTime = "urn:xmpp:time"

// timeModule tells the server's time, in UTC.
func (s *Service) timeModule(m *Module) {
	m.IQ(Get, NSTime, ToServer, FromClient|FromRemote, func(st *Stanza) {
		now := time.Now().UTC()
		st.Reply(st.Result().Add(xml.New(NSTime, "time").Add(
			xml.New(NSTime, "tzo").AddText("+00:00"),
			xml.New(NSTime, "utc").AddText(now.Format("2006-01-02T15:04:05.000Z")))))
	})
	m.Feature(Server, NSTime)
}
