package router

import (
	"testing"

	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
)

// BenchmarkRoute is Route alone, to a local user's sessions that take
// everything (sink): the routing decision and its bookkeeping (the
// metrics counter since issue 12), without parsing or writing.
func BenchmarkRoute(b *testing.B) {
	r := bobOnThreeResources()
	el := xml.New(stream.NSClient, "message", "type", "chat", "to", "bob@a.lan")
	for _, tc := range []struct {
		name string
		to   JID
	}{
		{"full", JID{Local: "bob", Domain: "a.lan", Resource: "desk", Bare: "bob@a.lan"}},
		{"bare", JID{Local: "bob", Domain: "a.lan", Bare: "bob@a.lan"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if c, _ := r.Route(el, tc.to); c != "" {
					b.Fatal(c)
				}
			}
		})
	}
}
