package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// The IM core (server/im) through the engine: the subscription state
// machine of RFC 6121 §3 on both users' rosters, roster versioning and
// pushes, offline storage, and message delivery to bare JIDs.

var iqSeq int

func (c *client) rosterGet(ver string) *xml.Element {
	c.t.Helper()
	iqSeq++
	id := fmt.Sprint("roster", iqSeq)
	q := `<query xmlns='jabber:iq:roster'/>`
	if ver != "-" {
		q = `<query xmlns='jabber:iq:roster' ver='` + ver + `'/>`
	}
	c.send(`<iq type='get' id='` + id + `'>` + q + `</iq>`)
	el := c.reply(id)
	if el.Get("type") != "result" {
		c.t.Fatalf("roster get: %s", el)
	}
	return el
}

// pushAndResult reads the roster push and the result of a roster set, in
// whichever order they come.
func (c *client) pushAndResult(id string) (push, result *xml.Element) {
	c.t.Helper()
	for push == nil || result == nil {
		el := c.expect("a push and a result", func(el *xml.Element) bool { return el.Name.Local == "iq" })
		switch {
		case el.Get("type") == "set" && el.Child("jabber:iq:roster", "query") != nil:
			push = el
		case el.Get("id") == id:
			result = el
		}
	}
	return push, result
}

// state describes a roster item compactly: "none", "to+ask",
// "from+pending", "both", or "-" for no visible item.
func state(it store.RosterItem, ok bool) string {
	if !ok || it.Hidden && !it.PendingIn {
		return "-"
	}
	s := it.Subscription
	if it.Ask {
		s += "+ask"
	}
	if it.PendingIn {
		s += "+pending"
	}
	if it.Hidden {
		s += "+hidden"
	}
	return s
}

func (f *fixture) rosterState(user, contact string) string {
	it, ok, err := f.st.RosterItem(user, contact)
	if err != nil {
		f.t.Fatal(err)
	}
	return state(it, ok)
}

func (f *fixture) putItem(user string, it store.RosterItem) {
	f.t.Helper()
	if _, err := f.st.ProposeSettled(context.Background(), store.RosterPut{User: user, Item: it}); err != nil {
		f.t.Fatal(err)
	}
}

// item builds a roster item from the compact form used by state.
func item(jid, s string) (store.RosterItem, bool) {
	if s == "-" {
		return store.RosterItem{}, false
	}
	parts := strings.Split(s, "+")
	it := store.RosterItem{JID: jid, Subscription: parts[0]}
	for _, p := range parts[1:] {
		switch p {
		case "ask":
			it.Ask = true
		case "pending":
			it.PendingIn = true
		case "hidden":
			it.Hidden = true
		}
	}
	return it, true
}

// TestSubscriptionStates drives each subscription presence from alice to
// bob (both online, both with their rosters fetched) from a given pair of
// states, and checks both rosters after (RFC 6121 §3 and Appendix A).
func TestSubscriptionStates(t *testing.T) {
	const A, B = "alice@example.lan", "bob@example.lan"
	tests := []struct {
		name         string
		alice, bob   string // alice's item for bob, bob's item for alice, before
		send         string // the type alice sends to bob
		wantA, wantB string
		bobGets      bool // the presence reaches bob
	}{
		{"subscribe from nothing", "-", "-", "subscribe", "none+ask", "none+pending+hidden", true},
		{"subscribe from none", "none", "none", "subscribe", "none+ask", "none+pending", true},
		{"subscribe while from", "from", "to", "subscribe", "from+ask", "to+pending", true},
		{"subscribe when already approved", "none+ask", "from", "subscribe", "to", "from", false},
		{"subscribe when already subscribed", "to", "from", "subscribe", "to", "from", false},
		{"subscribed approves a request", "none+pending", "none+ask", "subscribed", "from", "to", true},
		{"subscribed approves, mutual", "to+pending", "from+ask", "subscribed", "both", "both", true},
		{"subscribed approves a hidden request", "none+pending+hidden", "none+ask", "subscribed", "from", "to", true},
		{"subscribed without a request is ignored", "none", "none", "subscribed", "none", "none", false},
		{"unsubscribe from both", "both", "both", "unsubscribe", "from", "to", true},
		{"unsubscribe from to", "to", "from", "unsubscribe", "none", "none", true},
		{"unsubscribe cancels a pending request", "none+ask", "none+pending", "unsubscribe", "none", "none", true},
		{"unsubscribed from both", "both", "both", "unsubscribed", "to", "from", true},
		{"unsubscribed from from", "from", "to", "unsubscribed", "none", "none", true},
		{"unsubscribed denies a request", "none+pending", "none+ask", "unsubscribed", "none", "none", true},
	}
	f := start(t)
	parent := t
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			defer func() { f.t = parent }()
			// Fresh rosters and sessions for each case, on one engine.
			f.st.ProposeSettled(context.Background(), store.RosterDel{User: A, JID: B})
			f.st.ProposeSettled(context.Background(), store.RosterDel{User: B, JID: A})
			if it, ok := item(B, tc.alice); ok {
				f.putItem(A, it)
			}
			if it, ok := item(A, tc.bob); ok {
				f.putItem(B, it)
			}
			res := fmt.Sprint(i)
			a := f.dial()
			a.login("alice", "alice-password", "a"+res)
			b := f.dial()
			b.login("bob", "bob-password", "b"+res)
			defer func() {
				a.send(`</stream:stream>`)
				b.send(`</stream:stream>`)
				waitFor(t, "the sessions to end", func() bool {
					return !f.bound(A, "a"+res) && !f.bound(B, "b"+res)
				})
			}()
			for _, c := range []*client{a, b} {
				c.rosterGet("-")
				c.send(`<presence/>`)
			}
			// Drain what initial presence brings (probes, pending
			// requests) with a round trip.
			a.ping("sync-a")
			b.ping("sync-b")

			a.send(`<presence type='` + tc.send + `' to='bob@example.lan/b` + res + `' from='mallory@evil.lan'/>`)
			a.ping("after") // alice's stanzas are handled in order
			if got := f.rosterState(A, B); got != tc.wantA {
				t.Errorf("alice's item for bob: %s, want %s", got, tc.wantA)
			}
			if got := f.rosterState(B, A); got != tc.wantB {
				t.Errorf("bob's item for alice: %s, want %s", got, tc.wantB)
			}
			// Bob sees the presence, from alice's bare JID, or not at all.
			b.send(`<message to='bob@example.lan/b` + res + `' id='marker'/>`)
			var got *xml.Element
			b.expect("the marker", func(el *xml.Element) bool {
				if el.Name.Local == "presence" && el.Get("type") == tc.send {
					got = el
				}
				return el.Name.Local == "message" && el.Get("id") == "marker"
			})
			switch {
			case tc.bobGets && got == nil:
				t.Errorf("bob did not get %s", tc.send)
			case !tc.bobGets && got != nil:
				t.Errorf("bob got %s", got)
			case got != nil && (got.Get("from") != A || got.Get("to") != B):
				t.Errorf("addressing: %s", got)
			}
		})
	}
}

// TestSubscriptionFlow runs a whole mutual subscription between two online
// users: the pushes, the presence each gets, and the visible rosters.
func TestSubscriptionFlow(t *testing.T) {
	f := start(t)
	a := f.dial()
	a.login("alice", "alice-password", "a")
	b := f.dial()
	b.login("bob", "bob-password", "b")
	for _, c := range []*client{a, b} {
		c.rosterGet("-")
		c.send(`<presence><priority>1</priority></presence>`)
		c.expect("own presence", func(el *xml.Element) bool { return el.Name.Local == "presence" })
	}
	isPush := func(jid, sub string) func(*xml.Element) bool {
		return func(el *xml.Element) bool {
			if el.Name.Local != "iq" || el.Get("type") != "set" {
				return false
			}
			it := el.Child("jabber:iq:roster", "query").Child("jabber:iq:roster", "item")
			return it != nil && it.Get("jid") == jid && it.Get("subscription") == sub
		}
	}
	a.send(`<presence type='subscribe' to='bob@example.lan'/>`)
	push := a.expect("a push of bob, asked", isPush("bob@example.lan", "none"))
	if push.Child("", "query").Child("", "item").Get("ask") != "subscribe" {
		t.Fatalf("push: %s", push)
	}
	req := b.expect("the request", func(el *xml.Element) bool { return el.Get("type") == "subscribe" })
	if req.Get("from") != "alice@example.lan" {
		t.Fatal(req)
	}
	// Until bob answers, alice is not in his visible roster.
	if items := b.rosterGet("-").Child("", "query").Elements(); len(items) != 0 {
		t.Fatalf("bob's roster shows a pending request: %v", items)
	}
	b.send(`<presence type='subscribed' to='alice@example.lan'/>`)
	b.expect("a push of alice, from", isPush("alice@example.lan", "from"))
	a.expect("a push of bob, to", isPush("bob@example.lan", "to"))
	a.expect("subscribed", func(el *xml.Element) bool {
		return el.Get("type") == "subscribed" && el.Get("from") == "bob@example.lan"
	})
	p := a.expect("bob's presence", func(el *xml.Element) bool { return el.Name.Local == "presence" && el.Get("type") == "" })
	if p.Get("from") != "bob@example.lan/b" {
		t.Fatalf("presence: %s", p)
	}
	// Now bob's presence changes reach alice, and not the other way.
	a.send(`<presence><show>dnd</show></presence>`)
	b.send(`<presence><show>away</show></presence>`)
	p = a.expect("bob's away", func(el *xml.Element) bool {
		return el.Child("", "show") != nil && el.Get("from") != "alice@example.lan/a"
	})
	if p.Get("from") != "bob@example.lan/b" || p.Child("", "show").Text() != "away" {
		t.Fatal(p)
	}
	b.send(`<message to='bob@example.lan/b' id='marker'/>`)
	b.expect("the marker", func(el *xml.Element) bool {
		if el.Name.Local == "presence" && el.Get("from") == "alice@example.lan/a" {
			t.Fatalf("bob is not subscribed to alice, yet got %s", el)
		}
		return el.Get("id") == "marker"
	})
	// Removing the item cancels both ways and pushes a removal.
	a.send(`<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='bob@example.lan' subscription='remove'/></query></iq>`)
	if el := a.reply("rm"); el.Get("type") != "result" {
		t.Fatal(el)
	}
	if got := f.rosterState("alice@example.lan", "bob@example.lan"); got != "-" {
		t.Fatalf("alice's item after remove: %s", got)
	}
	if got := f.rosterState("bob@example.lan", "alice@example.lan"); got != "none" {
		t.Fatalf("bob's item after alice removed him: %s", got)
	}
}

func TestRosterVersioning(t *testing.T) {
	f := start(t)
	a := f.dial()
	a.login("alice", "alice-password", "a")
	r := a.rosterGet("")
	q := r.Child("jabber:iq:roster", "query")
	if q == nil || !q.Has("ver") {
		t.Fatalf("first get: %s", r)
	}
	ver := q.Get("ver")
	// The current version: an empty result (RFC 6121 §2.6.3).
	if r := a.rosterGet(ver); len(r.Elements()) != 0 {
		t.Fatalf("get with the current version: %s", r)
	}
	a.send(`<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='carol@example.lan' name='Carol'><group>Friends</group></item></query></iq>`)
	push, res := a.pushAndResult("s1")
	newVer := push.Child("", "query").Get("ver")
	if newVer == "" || newVer == ver {
		t.Fatalf("push version %q after %q", newVer, ver)
	}
	if res.Get("type") != "result" {
		t.Fatal(res)
	}
	// An old version gets the whole roster with the new version.
	r = a.rosterGet(ver)
	q = r.Child("", "query")
	if q == nil || q.Get("ver") != newVer || len(q.Elements()) != 1 {
		t.Fatalf("get with an old version: %s", r)
	}
	it := q.Elements()[0]
	if it.Get("jid") != "carol@example.lan" || it.Get("name") != "Carol" || it.Child("", "group").Text() != "Friends" || it.Get("subscription") != "none" {
		t.Fatalf("item %s", it)
	}
	if r := a.rosterGet(newVer); len(r.Elements()) != 0 {
		t.Fatalf("get with the new version: %s", r)
	}
	// Bad sets.
	for _, tc := range []struct{ item, want string }{
		{`<item jid='alice@example.lan'/>`, "not-allowed"},
		{`<item jid='x@example.lan/res'/>`, "jid-malformed"},
		{`<item jid='x@example.lan'><group>a</group><group>a</group></item>`, "bad-request"},
		{`<item jid='x@example.lan'><group></group></item>`, "not-acceptable"},
		{`<item jid='nobody@example.lan' subscription='remove'/>`, "item-not-found"},
	} {
		a.send(`<iq type='set' id='bad'><query xmlns='jabber:iq:roster'>` + tc.item + `</query></iq>`)
		if got := stanzaError(a.reply("bad")); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.item, got, tc.want)
		}
	}
}

// TestRosterPushToInterestedResources: pushes go to the resources that
// asked for the roster, and only those.
func TestRosterPushToInterestedResources(t *testing.T) {
	f := start(t)
	a1 := f.dial()
	a1.login("alice", "alice-password", "one")
	a2 := f.dial()
	a2.login("alice", "alice-password", "two")
	a3 := f.dial()
	a3.login("alice", "alice-password", "three")
	a1.rosterGet("-")
	a2.rosterGet("-")
	a1.send(`<iq type='set' id='s'><query xmlns='jabber:iq:roster'><item jid='carol@example.lan'/></query></iq>`)
	push1, _ := a1.pushAndResult("s")
	push2 := a2.expect("the push", func(el *xml.Element) bool { return el.Get("type") == "set" })
	for _, push := range []*xml.Element{push1, push2} {
		if push.Child("", "query").Child("", "item").Get("jid") != "carol@example.lan" || push.Get("to") == "" {
			t.Fatalf("push: %s", push)
		}
	}
	a3.ping("p")
	a3.send(`<message to='alice@example.lan/three' id='marker'/>`)
	a3.expect("the marker", func(el *xml.Element) bool {
		if el.Name.Local == "iq" && el.Get("type") == "set" {
			t.Fatalf("a resource that never asked for the roster got a push: %s", el)
		}
		return el.Get("id") == "marker"
	})
}

// TestOffline: messages to a user with no available resource are stored,
// with a delay stamp, and delivered in order at the next available
// presence with a non-negative priority.
func TestOffline(t *testing.T) {
	f := start(t)
	a := f.dial()
	a.login("alice", "alice-password", "a")
	for i := 1; i <= 3; i++ {
		a.send(fmt.Sprintf(`<message to='bob@example.lan' type='chat' id='m%d'><body>%d — ø</body></message>`, i, i))
	}
	a.send(`<message to='bob@example.lan' type='headline'><body>not kept</body></message>`)
	a.send(`<message to='bob@example.lan' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	a.ping("sync")
	if msgs, _ := f.st.Offline("bob@example.lan"); len(msgs) != 3 {
		for _, m := range msgs {
			t.Log(string(m.Stanza))
		}
		t.Fatalf("%d stored, want 3 (no headline, no bare chat state)", len(msgs))
	}
	b := f.dial()
	b.login("bob", "bob-password", "b")
	// A negative priority does not get them.
	b.send(`<presence><priority>-1</priority></presence>`)
	b.send(`<message to='bob@example.lan/b' id='marker1'/>`)
	b.expect("marker1", func(el *xml.Element) bool {
		if el.Name.Local == "message" && el.Child("", "body") != nil {
			t.Fatalf("offline message at a negative priority: %s", el)
		}
		return el.Get("id") == "marker1"
	})
	b.send(`<presence><priority>0</priority></presence>`)
	for i := 1; i <= 3; i++ {
		m := b.expect("offline message", func(el *xml.Element) bool { return el.Name.Local == "message" && el.Child("", "body") != nil })
		if m.Get("id") != fmt.Sprint("m", i) || m.Child("", "body").Text() != fmt.Sprint(i, " — ø") || m.Get("from") != "alice@example.lan/a" {
			t.Fatalf("message %d: %s", i, m)
		}
		if d := m.Child("urn:xmpp:delay", "delay"); d == nil || d.Get("from") != "example.lan" || d.Get("stamp") == "" {
			t.Fatalf("no delay stamp: %s", m)
		}
	}
	b.ping("sync")
	// They are deleted once written, by the flush, just after.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		msgs, _ := f.st.Offline("bob@example.lan")
		if len(msgs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d left after delivery", len(msgs))
		}
	}
}

// TestOfflineRace: a message sent while its recipient comes online is
// delivered in that session, whichever is handled first.
func TestOfflineRace(t *testing.T) {
	f := start(t)
	a := f.dial()
	a.login("alice", "alice-password", "a")
	for round := 0; round < 10; round++ {
		b := f.dial()
		b.t = t
		res := fmt.Sprint("b", round)
		b.login("bob", "bob-password", res)
		body := fmt.Sprint("round ", round)
		b.send(`<presence/>`)
		a.send(`<message to='bob@example.lan' type='chat'><body>` + body + `</body></message>`)
		b.expect(body, func(el *xml.Element) bool {
			return el.Name.Local == "message" && el.Child("", "body") != nil && el.Child("", "body").Text() == body
		})
		b.send(`</stream:stream>`)
		waitFor(t, "bob to go", func() bool { return !f.bound("bob@example.lan", res) })
	}
}

// TestBareJIDDelivery: a message to a bare JID goes to the available
// resources with the highest non-negative priority (all of them on a tie).
func TestBareJIDDelivery(t *testing.T) {
	f := start(t)
	prios := map[string]int{"high1": 5, "low": 1, "high2": 5, "negative": -1, "unavailable": 9}
	clients := map[string]*client{}
	for res, p := range prios {
		c := f.dial()
		c.login("bob", "bob-password", res)
		if res != "unavailable" {
			c.send(fmt.Sprintf(`<presence><priority>%d</priority></presence>`, p))
		}
		c.ping("sync")
		clients[res] = c
	}
	a := f.dial()
	a.login("alice", "alice-password", "a")
	a.send(`<message to='bob@example.lan' type='chat'><body>to the best</body></message>`)
	a.send(`<message to='bob@example.lan' type='headline'><body>news</body></message>`)
	a.ping("sync")
	for res, c := range clients {
		c.send(`<message to='bob@example.lan/` + res + `' id='marker'/>`)
		var bodies []string
		c.expect("the marker", func(el *xml.Element) bool {
			if b := el.Child("", "body"); el.Name.Local == "message" && b != nil {
				bodies = append(bodies, b.Text())
			}
			return el.Get("id") == "marker"
		})
		want := ""
		switch res {
		case "high1", "high2":
			want = "to the best,news"
		case "low":
			want = "news"
		}
		if got := strings.Join(bodies, ","); got != want {
			t.Errorf("%s (priority %d) got %q, want %q", res, prios[res], got, want)
		}
	}
}
