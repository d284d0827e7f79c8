package im

import (
	"testing"

	"github.com/parley-xmpp/parley/server/router"
)

// TestRoute: the routing decision, through the one dispatch and the one
// bounce function: what each recipient gets, and the error the sender
// gets back, for each kind of address and stanza.
func TestRoute(t *testing.T) {
	type res struct {
		name    string
		prio    int
		fail    bool // its connection is gone
		offline bool // bound, not available
	}
	tests := []struct {
		name        string
		bob         []res
		compDown    bool
		noFed       bool
		send        string
		want        map[string]int // recipient ("desk", "laptop", "comp", "remote", "stored") → stanzas
		bounce      string         // the condition alice gets back ("" none)
		bounceText  string
		bounceCheck bool
	}{
		{name: "chat to a full JID", bob: []res{{name: "desk"}, {name: "laptop"}},
			send: `<message to='bob@example.lan/laptop' type='chat'><body>x</body></message>`, want: map[string]int{"laptop": 1}},
		{name: "chat to a resource that is gone goes to the bare JID", bob: []res{{name: "desk"}},
			send: `<message to='bob@example.lan/gone' type='chat'><body>x</body></message>`, want: map[string]int{"desk": 1}},
		{name: "chat to the bare JID: the highest priority", bob: []res{{name: "desk", prio: 5}, {name: "laptop", prio: 1}},
			send: `<message to='bob@example.lan' type='chat'><body>x</body></message>`, want: map[string]int{"desk": 1}},
		{name: "normal to the bare JID: ties all get it", bob: []res{{name: "desk", prio: 2}, {name: "laptop", prio: 2}},
			send: `<message to='bob@example.lan'><body>x</body></message>`, want: map[string]int{"desk": 1, "laptop": 1}},
		{name: "headline: every non-negative resource", bob: []res{{name: "desk", prio: 5}, {name: "laptop", prio: 1}, {name: "phone", prio: -1}},
			send: `<message to='bob@example.lan' type='headline'><body>x</body></message>`, want: map[string]int{"desk": 1, "laptop": 1}},
		{name: "a failing session: the message goes to the next target", bob: []res{{name: "desk", prio: 5, fail: true}, {name: "laptop", prio: 1}},
			send: `<message to='bob@example.lan' type='chat'><body>x</body></message>`, want: map[string]int{"laptop": 1}},
		{name: "chat to an offline account is stored", bob: []res{{name: "desk", offline: true}},
			send: `<message to='bob@example.lan' type='chat'><body>x</body></message>`, want: map[string]int{"stored": 1}},
		{name: "a negative priority only: stored",
			bob:  []res{{name: "desk", prio: -1}},
			send: `<message to='bob@example.lan' type='chat'><body>x</body></message>`, want: map[string]int{"stored": 1}},
		{name: "chat states alone are not stored",
			send: `<message to='bob@example.lan' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>`},
		{name: "headline to an offline account goes nowhere",
			send: `<message to='bob@example.lan' type='headline'><body>x</body></message>`},
		{name: "error to an offline account goes nowhere",
			send: `<message to='bob@example.lan' type='error'><body>x</body></message>`},
		{name: "an unknown account", send: `<message to='nobody@example.lan' type='chat'><body>x</body></message>`, bounce: "service-unavailable"},
		{name: "groupchat to a bare JID", bob: []res{{name: "desk"}},
			send: `<message to='bob@example.lan' type='groupchat'><body>x</body></message>`, bounce: "service-unavailable"},
		{name: "groupchat to a resource that is gone",
			send: `<message to='bob@example.lan/gone' type='groupchat'><body>x</body></message>`, bounce: "service-unavailable"},
		{name: "error to a resource that is gone", bob: []res{{name: "desk"}},
			send: `<message to='bob@example.lan/gone' type='error'><body>x</body></message>`},
		{name: "chat to the server", send: `<message to='example.lan' type='chat'><body>x</body></message>`, bounce: "service-unavailable"},
		{name: "headline to the server", send: `<message to='example.lan' type='headline'><body>x</body></message>`},
		{name: "an IQ to a resource that is gone", bob: []res{{name: "desk"}},
			send: `<iq to='bob@example.lan/gone' type='get' id='q'><ping xmlns='urn:xmpp:ping'/></iq>`, bounce: "service-unavailable"},
		{name: "an IQ to a full JID", bob: []res{{name: "desk", offline: true}},
			send: `<iq to='bob@example.lan/desk' type='get' id='q'><ping xmlns='urn:xmpp:ping'/></iq>`, want: map[string]int{"desk": 1}},
		{name: "presence to a bare JID: every available resource", bob: []res{{name: "desk", prio: 5}, {name: "phone", prio: -1}, {name: "laptop", offline: true}},
			send: `<presence to='bob@example.lan'/>`, want: map[string]int{"desk": 1, "phone": 1}},
		{name: "a component", send: `<message to='room@cb1.example.lan' type='chat'><body>x</body></message>`, want: map[string]int{"comp": 1}},
		{name: "a component not connected", compDown: true,
			send: `<message to='room@cb1.example.lan' type='chat'><body>x</body></message>`, bounce: "service-unavailable",
			bounceText: "the component cb1.example.lan is not connected", bounceCheck: true},
		{name: "presence to a component not connected", compDown: true, send: `<presence to='room@cb1.example.lan'/>`},
		{name: "another server", send: `<message to='romeo@remote.example' type='chat'><body>x</body></message>`, want: map[string]int{"remote": 1}},
		{name: "an IQ to another server", send: `<iq to='remote.example' type='get' id='q'><ping xmlns='urn:xmpp:ping'/></iq>`, want: map[string]int{"remote": 1}},
		{name: "no federation", noFed: true,
			send: `<message to='romeo@remote.example' type='chat'><body>x</body></message>`, bounce: "remote-server-not-found",
			bounceText: "federation with remote.example is not available", bounceCheck: true},
		{name: "presence without federation", noFed: true, send: `<presence to='romeo@remote.example'/>`},
		{name: "a subscription request without federation", noFed: true,
			send: `<presence to='romeo@remote.example' type='subscribe'/>`, bounce: "remote-server-not-found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.comps.up = !tc.compDown
			if tc.noFed {
				h.s.Router.Remote = nil
			}
			alice := h.login("alice@example.lan", "phone", true, 0)
			bob := map[string]*fakeSession{}
			for _, r := range tc.bob {
				bob[r.name] = h.login("bob@example.lan", r.name, !r.offline, r.prio)
				bob[r.name].fail = r.fail
			}
			alice.take()
			for _, b := range bob {
				b.take()
			}
			el := parse(t, tc.send)
			el.Set("from", alice.Full())
			h.s.Handle(alice, el)

			got := map[string]int{}
			for name, b := range bob {
				if n := len(b.take()); n > 0 {
					got[name] = n
				}
			}
			if n := len(h.comps.got); n > 0 {
				got["comp"] = n
			}
			if n := len(h.fed.got); n > 0 {
				got["remote"] = n
			}
			if msgs, _ := h.s.Store.Offline("bob@example.lan"); len(msgs) > 0 {
				got["stored"] = len(msgs)
			}
			if len(got) != len(tc.want) {
				t.Errorf("delivered %v, want %v", got, tc.want)
			}
			for k, n := range tc.want {
				if got[k] != n {
					t.Errorf("delivered %v, want %v", got, tc.want)
				}
			}
			back := alice.take()
			switch {
			case tc.bounce == "" && len(back) != 0:
				t.Errorf("alice got %s", describe(back))
			case tc.bounce != "" && (len(back) != 1 || errorOf(back[0]) != tc.bounce || back[0].Get("type") != "error"):
				t.Errorf("alice got %s, want a %s bounce", describe(back), tc.bounce)
			case tc.bounceCheck && back[0].Child("", "error").Child("", "text").Text() != tc.bounceText:
				t.Errorf("bounce %s, want the text %q", back[0], tc.bounceText)
			}
		})
	}
}

// TestWhere: the decision of where a domain is served.
func TestWhere(t *testing.T) {
	h := newHarness(t)
	for d, want := range map[string]router.Dest{
		"example.lan":     router.Local,
		"cb1.example.lan": router.Component,
		"remote.example":  router.Remote,
	} {
		if got := h.s.Router.Where(d); got != want {
			t.Errorf("Where(%s) = %d, want %d", d, got, want)
		}
	}
	h.s.Router.Remote = nil
	if got := h.s.Router.Where("remote.example"); got != router.Nowhere {
		t.Errorf("without federation: %d", got)
	}
	if !h.s.Local("cb1.example.lan") || !h.s.Local("example.lan") || h.s.Local("remote.example") {
		t.Error("Local: the hosted domain and the component's")
	}
}
