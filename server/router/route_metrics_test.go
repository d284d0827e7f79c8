package router

import (
	"testing"

	"github.com/parley-xmpp/parley/server/metrics/metricstest"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
)

type metricComponents struct{}

func (metricComponents) Known(d string) bool                 { return d == "cb1.a.lan" || d == "cb2.a.lan" }
func (metricComponents) Route(d string, _ *xml.Element) bool { return d == "cb1.a.lan" }
func (metricComponents) Connected() []string                 { return []string{"cb1.a.lan"} }

type metricRemote struct{ n int }

func (m *metricRemote) Route(*xml.Element) { m.n++ }

type metricOffline struct{ stored int }

func (m *metricOffline) Exists(bare string) bool { return bare == "bob@a.lan" || bare == "carol@a.lan" }
func (m *metricOffline) Store(*xml.Element, JID) { m.stored++ }

// TestRouteCountsOutcomes: every decision of Route counts its stanza once,
// under its kind and the outcome the admin graphs (local, offline,
// component, remote, bounced, nowhere).
func TestRouteCountsOutcomes(t *testing.T) {
	r := New()
	r.Hosted = func(d string) bool { return d == "a.lan" }
	r.Components = metricComponents{}
	off := &metricOffline{}
	r.Offline = off
	s := &sink{"bob@a.lan", "desk"}
	r.Bind(s)
	r.SetAvailable(s, true, 1)
	remote := &metricRemote{}

	jid := func(local, domain, res string) JID {
		bare := domain
		if local != "" {
			bare = local + "@" + domain
		}
		return JID{Local: local, Domain: domain, Resource: res, Bare: bare}
	}
	msg := func(typ string) *xml.Element { return xml.New(stream.NSClient, "message", "type", typ) }
	pres := xml.New(stream.NSClient, "presence")
	iq := xml.New(stream.NSClient, "iq", "type", "get", "id", "1")
	for _, tc := range []struct {
		name    string
		el      *xml.Element
		to      JID
		remote  bool // federation on
		outcome string
		bounce  bool
	}{
		{"chat to a bound full JID", msg("chat"), jid("bob", "a.lan", "desk"), false, "local", false},
		{"chat to a bare JID with a session", msg("chat"), jid("bob", "a.lan", ""), false, "local", false},
		{"chat to an offline account", msg("chat"), jid("carol", "a.lan", ""), false, "offline", false},
		{"chat to no account", msg("chat"), jid("nobody", "a.lan", ""), false, "bounced", true},
		{"headline to an offline account", msg("headline"), jid("carol", "a.lan", ""), false, "nowhere", false},
		{"iq to a gone resource", iq, jid("bob", "a.lan", "gone"), false, "bounced", true},
		{"presence to a gone resource", pres, jid("bob", "a.lan", "gone"), false, "nowhere", false},
		{"presence to a bare JID", pres, jid("bob", "a.lan", ""), false, "local", false},
		{"presence to nobody online", pres, jid("carol", "a.lan", ""), false, "nowhere", false},
		{"message to a connected component", msg("normal"), jid("", "cb1.a.lan", ""), false, "component", false},
		{"iq to a component not connected", iq, jid("", "cb2.a.lan", ""), false, "bounced", true},
		{"message to another server, no federation", msg("chat"), jid("x", "elsewhere.lan", ""), false, "bounced", true},
		{"presence to another server, no federation", pres, jid("x", "elsewhere.lan", ""), false, "nowhere", false},
		{"message to another server", msg("chat"), jid("x", "elsewhere.lan", ""), true, "remote", false},
		{"message to the domain", msg("chat"), jid("", "a.lan", ""), false, "bounced", true},
	} {
		r.Remote = nil
		if tc.remote {
			r.Remote = remote
		}
		kind := tc.el.Name.Local
		before := metricstest.Value(t, "parley_stanzas_routed_total", "kind", kind, "outcome", tc.outcome)
		total := routedTotal(t)
		cond, _ := r.Route(tc.el, tc.to)
		if (cond != "") != tc.bounce {
			t.Errorf("%s: condition %q", tc.name, cond)
		}
		if got := metricstest.Value(t, "parley_stanzas_routed_total", "kind", kind, "outcome", tc.outcome) - before; got != 1 {
			t.Errorf("%s: %s/%s moved by %v, want 1", tc.name, kind, tc.outcome, got)
		}
		if got := routedTotal(t) - total; got != 1 {
			t.Errorf("%s: %v stanzas counted in all, want 1", tc.name, got)
		}
	}
	if off.stored != 1 || remote.n != 1 {
		t.Errorf("stored %d, sent to federation %d: want 1 and 1", off.stored, remote.n)
	}
}

// routedTotal sums parley_stanzas_routed_total over its labels.
func routedTotal(t *testing.T) float64 {
	n := 0.0
	for _, k := range []string{"message", "presence", "iq", "other"} {
		for _, o := range []string{"local", "offline", "component", "remote", "cluster", "bounced", "nowhere"} {
			n += metricstest.Value(t, "parley_stanzas_routed_total", "kind", k, "outcome", o)
		}
	}
	return n
}

// metricCluster holds dave's resource "pad" on node n2.
type metricCluster struct{ forwarded int }

func (*metricCluster) Bound(Session)                                  {}
func (*metricCluster) Unbound(Session)                                {}
func (*metricCluster) Presence(Session, bool, int, *xml.Element)      {}
func (*metricCluster) Component(string) (string, bool)                { return "", false }
func (*metricCluster) Len() int                                       { return 1 }
func (*metricCluster) Resources(string) int                           { return 1 }
func (c *metricCluster) Forward(string, *xml.Element, Forwarded) bool { c.forwarded++; return true }
func (*metricCluster) Resource(bare, res string) (string, bool) {
	return "n2", bare == "dave@a.lan" && res == "pad"
}
func (*metricCluster) AppendRemote(dst []RemoteResource, bare string) []RemoteResource {
	if bare == "dave@a.lan" {
		dst = append(dst, RemoteResource{Node: "n2", Resource: "pad", Available: true, Priority: 1})
	}
	return dst
}

// TestRouteCountsCluster: a stanza handed to another node counts as
// cluster; one a session here took counts as local.
func TestRouteCountsCluster(t *testing.T) {
	r := New()
	r.Hosted = func(d string) bool { return d == "a.lan" }
	r.Offline = &metricOffline{}
	c := &metricCluster{}
	r.SetCluster(c)
	s := &sink{"bob@a.lan", "desk"}
	r.Bind(s)
	r.SetAvailable(s, true, 1)
	dave := JID{Local: "dave", Domain: "a.lan", Bare: "dave@a.lan"}
	davePad := dave
	davePad.Resource = "pad"
	for _, tc := range []struct {
		name    string
		to      JID
		outcome string
	}{
		{"chat to a full JID on another node", davePad, "cluster"},
		{"chat to a bare JID on another node", dave, "cluster"},
		{"chat to a bare JID here", JID{Local: "bob", Domain: "a.lan", Bare: "bob@a.lan"}, "local"},
	} {
		before := metricstest.Value(t, "parley_stanzas_routed_total", "kind", "message", "outcome", tc.outcome)
		if cond, _ := r.Route(xml.New(stream.NSClient, "message", "type", "chat"), tc.to); cond != "" {
			t.Fatalf("%s: %s", tc.name, cond)
		}
		if got := metricstest.Value(t, "parley_stanzas_routed_total", "kind", "message", "outcome", tc.outcome) - before; got != 1 {
			t.Errorf("%s: message/%s moved by %v", tc.name, tc.outcome, got)
		}
	}
	if c.forwarded != 2 {
		t.Errorf("forwarded %d, want 2", c.forwarded)
	}
}
