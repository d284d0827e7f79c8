package im

import "github.com/parley-xmpp/parley/server/stream"

// NSSession is the legacy session establishment's namespace (RFC 3921
// §3): clients that still send it get a result, and the stream feature
// says it is optional.
const NSSession = stream.NSSession

func (s *Service) sessionModule(m *Module) {
	m.IQ(GetSet, NSSession, ToBare, FromClient, answer)
	m.StreamFeature(func() []byte { return []byte(`<session xmlns="` + NSSession + `"><optional/></session>`) })
}
