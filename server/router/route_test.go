package router

import (
	"testing"

	"github.com/parley-xmpp/parley/server/address"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
)

// sink is a session that takes everything and keeps nothing.
type sink struct{ bare, res string }

func (s *sink) Bare() string              { return s.bare }
func (s *sink) Resource() string          { return s.res }
func (s *sink) Full() string              { return s.bare + "/" + s.res }
func (s *sink) Domain() string            { return address.Domain(s.bare) }
func (s *sink) Deliver(*xml.Element) bool { return true }
func (s *sink) Replace()                  {}
func (s *sink) Close(*stream.Error)       {}
func (s *sink) Out() *stream.Conn         { return nil }
func (s *sink) Value(any) any             { return nil }
func (s *sink) SetValue(any, any)         {}

// bobOnThreeResources is a router hosting a.lan where bob@a.lan is
// available on desk, laptop and phone (sessions that take everything).
func bobOnThreeResources() *Router {
	r := New()
	r.Hosted = func(d string) bool { return d == "a.lan" }
	for _, res := range []string{"desk", "laptop", "phone"} {
		s := &sink{"bob@a.lan", res}
		r.Bind(s)
		r.SetAvailable(s, true, 1)
	}
	return r
}

// TestRouteAllocs: routing a message to a local user, by full or bare JID,
// allocates nothing (the targets are chosen into a buffer on the stack).
func TestRouteAllocs(t *testing.T) {
	r := bobOnThreeResources()
	el := xml.New(stream.NSClient, "message", "type", "chat", "to", "bob@a.lan")
	for _, to := range []JID{
		{Local: "bob", Domain: "a.lan", Bare: "bob@a.lan"},
		{Local: "bob", Domain: "a.lan", Resource: "desk", Bare: "bob@a.lan"},
	} {
		if n := testing.AllocsPerRun(100, func() {
			if c, _ := r.Route(el, to); c != "" {
				t.Fatal(c)
			}
		}); n != 0 {
			t.Errorf("routing to %+v: %v allocations", to, n)
		}
	}
}

// TestSetAvailable: presence is recorded for the session bound, and a
// session that is gone (or was replaced) changes nothing.
func TestSetAvailable(t *testing.T) {
	r := New()
	old := &sink{"bob@a.lan", "desk"}
	r.Bind(old)
	cur := &sink{"bob@a.lan", "desk"}
	r.Bind(cur) // replaces old
	r.SetAvailable(old, true, 5)
	if r.HasAvailable("bob@a.lan") {
		t.Fatal("a replaced session's presence was recorded")
	}
	r.SetAvailable(cur, true, 5)
	if !r.HasAvailable("bob@a.lan") || len(r.Targets("bob@a.lan", "chat")) != 1 {
		t.Fatal("the bound session's presence")
	}
	r.Unbind(cur)
	r.SetAvailable(cur, true, 5)
	if r.HasAvailable("bob@a.lan") || r.Len() != 0 {
		t.Fatal("an unbound session came back")
	}
}
