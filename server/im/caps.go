package im

import (
	"crypto/sha1"
	"encoding/base64"
	"sort"
	"strings"

	"github.com/parley-xmpp/parley/server/xml"
)

// NSCaps is entity capabilities' namespace (XEP-0115).
const NSCaps = "http://jabber.org/protocol/caps"

// CapsNode is the node of the server's entity capabilities (XEP-0115).
const CapsNode = "https://parley.example/caps"

// capsModule offers the server's caps hash in the stream features, so
// that clients need not ask for the server's disco#info.
func (s *Service) capsModule(m *Module) {
	m.Feature(Server, NSCaps)
	m.StreamFeature(func() []byte { return s.CapsFeature() })
}

// CapsVer is the XEP-0115 verification string of the server's disco#info
// (computed from the registrations by Init).
func (s *Service) CapsVer() string { return s.caps }

// CapsFeature is the <c/> element servers may put in stream features.
func (s *Service) CapsFeature() []byte {
	return xml.New(NSCaps, "c", "hash", "sha-1", "node", CapsNode, "ver", s.caps).Bytes("")
}

// capsVer is the verification string of identities and features
// (XEP-0115 §5.1; no extended forms).
func capsVer(ids []identity, features []string) string {
	var b strings.Builder
	idents := make([]string, 0, len(ids))
	for _, id := range ids {
		idents = append(idents, id.category+"/"+id.typ+"//"+id.name+"<")
	}
	sort.Strings(idents)
	for _, id := range idents {
		b.WriteString(id)
	}
	f := append([]string(nil), features...)
	sort.Strings(f)
	for _, x := range f {
		b.WriteString(x + "<")
	}
	sum := sha1.Sum([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(sum[:])
}
