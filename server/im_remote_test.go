package server

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/im"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// The IM core with users on other servers (RFC 6121 across servers). A
// recording fake stands in for the s2s layer: it collects what the IM core
// routes out, and the tests play the remote server by handing stanzas to
// Service.FromRemote, as the s2s layer does once it has checked them.

// fakeRemote records the stanzas routed to other servers.
type fakeRemote struct {
	mu  sync.Mutex
	got []*xml.Element
}

func (r *fakeRemote) Route(el *xml.Element) {
	r.mu.Lock()
	r.got = append(r.got, el)
	r.mu.Unlock()
}

// take waits for a routed stanza that matches, forgets it and returns it.
func (r *fakeRemote) take(t testing.TB, what string, match func(*xml.Element) bool) *xml.Element {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		for i, el := range r.got {
			if match(el) {
				r.got = append(r.got[:i:i], r.got[i+1:]...)
				r.mu.Unlock()
				return el
			}
		}
		r.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("nothing routed out for %s; routed: %s", what, r.summary())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// drain forgets and returns everything routed so far.
func (r *fakeRemote) drain() []*xml.Element {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

func (r *fakeRemote) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return describe(r.got)
}

// describe lists stanzas compactly, sorted: "presence/probe alice@example.lan/a→romeo@remote.example".
func describe(els []*xml.Element) string {
	var out []string
	for _, el := range els {
		out = append(out, brief(el))
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

func brief(el *xml.Element) string {
	typ := el.Get("type")
	if typ == "" && el.Name.Local == "presence" {
		typ = "available"
	}
	return el.Name.Local + "/" + typ + " " + el.Get("from") + "→" + el.Get("to")
}

// is matches a stanza by kind, type ("available" for presence without
// one), from and to; "*" matches anything.
func is(kind, typ, from, to string) func(*xml.Element) bool {
	return func(el *xml.Element) bool {
		t := el.Get("type")
		if t == "" && el.Name.Local == "presence" {
			t = "available"
		}
		return el.Name.Local == kind && (typ == "*" || t == typ) &&
			(from == "*" || el.Get("from") == from) && (to == "*" || el.Get("to") == to)
	}
}

// withRemote starts an engine whose IM core routes to a fake s2s layer.
// The engine's lock orders the change before any connection's goroutine
// reads it.
func withRemote(t *testing.T) (*fixture, *fakeRemote) {
	t.Helper()
	f := start(t)
	r := &fakeRemote{}
	f.eng.mu.Lock()
	f.eng.router.Remote = r
	f.eng.mu.Unlock()
	return f, r
}

// fromRemote hands a stanza to the IM core as the s2s layer would.
func (f *fixture) fromRemote(s string) {
	f.t.Helper()
	head := `<stream:stream xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams">`
	rd := xml.NewReader(io.MultiReader(strings.NewReader(head), strings.NewReader(s)), xml.DefaultLimits)
	if _, err := rd.Header(); err != nil {
		f.t.Fatal(err)
	}
	el, err := rd.Next()
	if err != nil {
		f.t.Fatalf("test stanza %s: %v", s, err)
	}
	f.eng.im.FromRemote(el)
}

// online logs a user in, sends initial presence, and waits until it is
// handled.
func (f *fixture) online(user, resource string) *client {
	f.t.Helper()
	c := f.dial()
	c.login(user, user+"-password", resource)
	c.rosterGet("-")
	c.send(`<presence/>`)
	c.ping("online")
	return c
}

// leave ends a session after sending unavailable presence (so what that
// routes is done before it returns) and forgets what was routed.
func (f *fixture) leave(c *client, full string, r *fakeRemote) {
	f.t.Helper()
	c.send(`<presence type='unavailable'/>`)
	c.upTo(full)
	c.send(`</stream:stream>`)
	bare, res, _ := strings.Cut(full, "/")
	waitFor(f.t, full+" to go", func() bool { return !f.bound(bare, res) })
	r.drain()
}

// upTo reads until a marker message sent to itself comes back, and returns
// what came before it.
func (c *client) upTo(self string) []*xml.Element {
	c.t.Helper()
	iqSeq++
	id := fmt.Sprint("marker", iqSeq)
	c.send(`<message to='` + self + `' id='` + id + `'/>`)
	var got []*xml.Element
	c.expect("the marker", func(el *xml.Element) bool {
		if el.Name.Local == "message" && el.Get("id") == id {
			return true
		}
		got = append(got, el)
		return false
	})
	return got
}

func find(els []*xml.Element, match func(*xml.Element) bool) *xml.Element {
	for _, el := range els {
		if match(el) {
			return el
		}
	}
	return nil
}

const (
	alice = "alice@example.lan"
	romeo = "romeo@remote.example"
)

// TestRemoteMessages: messages both ways, offline storage of a remote
// sender's message, and errors for remote senders routed back out.
func TestRemoteMessages(t *testing.T) {
	f, r := withRemote(t)
	a := f.online("alice", "a")

	// Out: addressed as the client wrote it (normalized), from stamped.
	a.send(`<message to='Romeo@Remote.Example/Phone' type='chat' id='m1'><body>hi — ø</body></message>`)
	m := r.take(t, "alice's message", is("message", "chat", alice+"/a", romeo+"/Phone"))
	if m.Get("id") != "m1" || m.Child("", "body").Text() != "hi — ø" || m.Name.Space != "jabber:client" {
		t.Fatalf("routed: %s", m)
	}

	// In, to the bare JID and to the full JID.
	for _, to := range []string{alice, alice + "/a"} {
		f.fromRemote(`<message from='romeo@remote.example/phone' to='` + to + `' type='chat' id='in'><body>hello</body></message>`)
		got := a.expect("romeo's message", is("message", "chat", romeo+"/phone", to))
		if got.Child("", "body").Text() != "hello" {
			t.Fatalf("delivered: %s", got)
		}
	}

	// In, to a user who is offline: stored, delivered with a delay at the
	// next login.
	f.fromRemote(`<message from='romeo@remote.example/phone' to='bob@example.lan' type='chat' id='off1'><body>while you were out</body></message>`)
	if msgs, _ := f.st.Offline("bob@example.lan"); len(msgs) != 1 {
		t.Fatalf("%d stored for bob, want 1", len(msgs))
	}
	b := f.dial()
	b.login("bob", "bob-password", "b")
	b.send(`<presence/>`)
	off := b.expect("the offline message", is("message", "chat", romeo+"/phone", "bob@example.lan"))
	if off.Get("id") != "off1" || off.Child("urn:xmpp:delay", "delay") == nil {
		t.Fatalf("offline message: %s", off)
	}

	// Errors go back to the remote sender, not to any local user.
	for _, tc := range []struct {
		name, send, from, want string
	}{
		{"to a user who does not exist", `<message from='romeo@remote.example/phone' to='nobody@example.lan' type='chat' id='e1'><body>x</body></message>`, "nobody@example.lan", "service-unavailable"},
		{"to the server", `<message from='romeo@remote.example/phone' to='example.lan' id='e2'><body>x</body></message>`, "example.lan", "service-unavailable"},
		{"groupchat to a user", `<message from='romeo@remote.example/phone' to='alice@example.lan' type='groupchat' id='e3'><body>x</body></message>`, alice, "service-unavailable"},
		{"a malformed to", `<message from='romeo@remote.example/phone' to='a@b@example.lan' id='e4'><body>x</body></message>`, "a@b@example.lan", "jid-malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.fromRemote(tc.send)
			el := r.take(t, "the error", is("message", "error", tc.from, romeo+"/phone"))
			if got := stanzaError(el); got != tc.want {
				t.Fatalf("got %s, want %s: %s", got, tc.want, el)
			}
			if el.Child("", "body") == nil {
				t.Errorf("the error keeps the payload: %s", el)
			}
		})
	}
	if msgs, _ := f.st.Offline("nobody@example.lan"); len(msgs) != 0 {
		t.Fatalf("stored for a user who does not exist")
	}

	// An error about a message alice sent (the s2s layer's failure reply)
	// reaches her; an error is never answered with an error.
	f.fromRemote(`<message from='romeo@remote.example/Phone' to='alice@example.lan/a' type='error' id='m1'><error type='cancel'><remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`)
	if el := a.expect("the error", is("message", "error", romeo+"/Phone", alice+"/a")); stanzaError(el) != "remote-server-timeout" {
		t.Fatal(el)
	}
	f.fromRemote(`<message from='romeo@remote.example' to='nobody@example.lan' type='error' id='e5'/>`)

	// A remote server cannot speak for a local domain.
	f.fromRemote(`<message from='bob@example.lan/b' to='alice@example.lan/a' type='chat' id='spoof'><body>x</body></message>`)
	for _, el := range a.upTo(alice + "/a") {
		if el.Get("id") == "spoof" {
			t.Fatalf("a stanza from a remote server claiming a local sender was delivered: %s", el)
		}
	}
	if left := r.drain(); len(left) != 0 {
		t.Fatalf("routed besides: %s", describe(left))
	}
}

// TestRemoteIQ: a client's IQs to remote entities go out and their answers
// come back; IQs from remote entities are delivered to resources or
// answered by the server, the answer routed back out.
func TestRemoteIQ(t *testing.T) {
	f, r := withRemote(t)
	a := f.online("alice", "a")
	a.send(`<iq type='set' id='vc'><vCard xmlns='vcard-temp'><FN>Alice A.</FN></vCard></iq>`)
	if el := a.reply("vc"); el.Get("type") != "result" {
		t.Fatal(el)
	}

	// Out, and the answer back in.
	a.send(`<iq type='get' id='q1' to='remote.example'><ping xmlns='urn:xmpp:ping'/></iq>`)
	out := r.take(t, "alice's ping", is("iq", "get", alice+"/a", "remote.example"))
	if out.Get("id") != "q1" || out.Child("urn:xmpp:ping", "ping") == nil {
		t.Fatal(out)
	}
	f.fromRemote(`<iq type='result' id='q1' from='remote.example' to='alice@example.lan/a'/>`)
	if el := a.reply("q1"); el.Get("from") != "remote.example" {
		t.Fatal(el)
	}

	// In, to alice's resource: delivered, and her answer goes out.
	f.fromRemote(`<iq type='get' id='v1' from='romeo@remote.example/phone' to='alice@example.lan/a'><query xmlns='jabber:iq:version'/></iq>`)
	in := a.expect("romeo's iq", is("iq", "get", romeo+"/phone", alice+"/a"))
	if in.Get("id") != "v1" {
		t.Fatal(in)
	}
	a.send(`<iq type='result' id='v1' to='romeo@remote.example/phone'><query xmlns='jabber:iq:version'><name>test</name></query></iq>`)
	r.take(t, "alice's answer", is("iq", "result", alice+"/a", romeo+"/phone"))

	// In, answered by the server.
	f.putItem(alice, store.RosterItem{JID: "juliet@remote.example", Subscription: store.SubFrom})
	tests := []struct {
		name, to, from, payload string
		typ                     string
		want                    string // "result" or an error condition
		check                   func(*xml.Element) bool
	}{
		{"ping the server", "example.lan", romeo + "/phone", `<ping xmlns='urn:xmpp:ping'/>`, "get", "result", nil},
		{"ping a user", alice, romeo + "/phone", `<ping xmlns='urn:xmpp:ping'/>`, "get", "result", nil},
		{"disco#info of the server", "example.lan", romeo + "/phone", `<query xmlns='http://jabber.org/protocol/disco#info'/>`, "get", "result", func(el *xml.Element) bool {
			id := el.Child("", "query").Child("", "identity")
			return id != nil && id.Get("category") == "server" && id.Get("type") == "im"
		}},
		{"disco#info of an account", alice, romeo + "/phone", `<query xmlns='http://jabber.org/protocol/disco#info'/>`, "get", "result", func(el *xml.Element) bool {
			id := el.Child("", "query").Child("", "identity")
			return id != nil && id.Get("category") == "account"
		}},
		{"disco#items of the server", "example.lan", romeo + "/phone", `<query xmlns='http://jabber.org/protocol/disco#items'/>`, "get", "result", nil},
		{"version of the server", "example.lan", romeo + "/phone", `<query xmlns='jabber:iq:version'/>`, "get", "result", func(el *xml.Element) bool {
			return el.Child("", "query").Child("", "name").Text() == "Parley"
		}},
		{"time of the server", "example.lan", romeo + "/phone", `<time xmlns='urn:xmpp:time'/>`, "get", "result", nil},
		{"a user's vCard", alice, romeo + "/phone", `<vCard xmlns='vcard-temp'/>`, "get", "result", func(el *xml.Element) bool {
			v := el.Child("vcard-temp", "vCard")
			return v != nil && v.Child("", "FN").Text() == "Alice A."
		}},
		{"last activity to a subscriber", alice, "juliet@remote.example/x", `<query xmlns='jabber:iq:last'/>`, "get", "result", nil},
		{"last activity to a stranger", alice, romeo + "/phone", `<query xmlns='jabber:iq:last'/>`, "get", "forbidden", nil},
		{"setting a user's vCard", alice, romeo + "/phone", `<vCard xmlns='vcard-temp'><FN>x</FN></vCard>`, "set", "forbidden", nil},
		{"a user's roster", alice, romeo + "/phone", `<query xmlns='jabber:iq:roster'/>`, "get", "forbidden", nil},
		{"an unknown namespace", "example.lan", romeo + "/phone", `<query xmlns='urn:example:unknown'/>`, "get", "service-unavailable", nil},
		{"a user who does not exist", "nobody@example.lan", romeo + "/phone", `<ping xmlns='urn:xmpp:ping'/>`, "get", "service-unavailable", nil},
		{"a resource that is not online", "bob@example.lan/gone", romeo + "/phone", `<ping xmlns='urn:xmpp:ping'/>`, "get", "service-unavailable", nil},
		{"two children", "example.lan", romeo + "/phone", `<ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/>`, "get", "bad-request", nil},
	}
	parent := t
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprint("r", i)
			f.t = t
			defer func() { f.t = parent }()
			f.fromRemote(`<iq type='` + tc.typ + `' id='` + id + `' from='` + tc.from + `' to='` + tc.to + `'>` + tc.payload + `</iq>`)
			want := "result"
			if tc.want != "result" {
				want = "error"
			}
			el := r.take(t, "the answer", is("iq", want, tc.to, tc.from))
			if el.Get("id") != id {
				t.Fatalf("answer: %s", el)
			}
			if tc.want != "result" && stanzaError(el) != tc.want {
				t.Fatalf("got %s, want %s: %s", stanzaError(el), tc.want, el)
			}
			if tc.check != nil && !tc.check(el) {
				t.Fatalf("answer: %s", el)
			}
		})
	}
	if v, _ := f.st.VCard(alice); !strings.Contains(string(v), "Alice A.") {
		t.Fatalf("a remote set changed the vCard: %s", v)
	}

	// Answers to nothing are dropped, not answered.
	f.fromRemote(`<iq type='result' id='x' from='romeo@remote.example/phone' to='example.lan'/>`)
	f.fromRemote(`<iq type='error' id='y' from='romeo@remote.example/phone' to='bob@example.lan/gone'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`)
	if left := r.drain(); len(left) != 0 {
		t.Fatalf("routed besides: %s", describe(left))
	}
}

// TestRemoteSubscriptionsOut: what a local user's subscription presence
// to a remote contact does to the user's roster (and pushes), and what
// goes out to the contact's server.
func TestRemoteSubscriptionsOut(t *testing.T) {
	tests := []struct {
		name   string
		before string // alice's item for romeo
		send   string
		want   string
		push   bool   // alice's resources get a roster push
		out    string // what is routed, in order
	}{
		{"subscribe from nothing", "-", "subscribe", "none+ask", true, "presence/subscribe alice@example.lan→romeo@remote.example"},
		{"subscribe while from", "from", "subscribe", "from+ask", true, "presence/subscribe alice@example.lan→romeo@remote.example"},
		{"subscribed approves a request", "none+pending", "subscribed", "from", true,
			"presence/subscribed alice@example.lan→romeo@remote.example, presence/available alice@example.lan/a→romeo@remote.example"},
		{"subscribed approves a hidden request", "none+pending+hidden", "subscribed", "from", true,
			"presence/subscribed alice@example.lan→romeo@remote.example, presence/available alice@example.lan/a→romeo@remote.example"},
		{"subscribed without a request", "none", "subscribed", "none", false, ""},
		{"unsubscribe from both", "both", "unsubscribe", "from", true, "presence/unsubscribe alice@example.lan→romeo@remote.example"},
		{"unsubscribe cancels our request", "none+ask", "unsubscribe", "none", true, "presence/unsubscribe alice@example.lan→romeo@remote.example"},
		{"unsubscribed from both", "both", "unsubscribed", "to", true,
			"presence/unavailable alice@example.lan/a→romeo@remote.example, presence/unsubscribed alice@example.lan→romeo@remote.example"},
		{"unsubscribed denies a request", "none+pending", "unsubscribed", "none", true, "presence/unsubscribed alice@example.lan→romeo@remote.example"},
	}
	f, r := withRemote(t)
	parent := t
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			defer func() { f.t = parent }()
			f.st.ProposeSettled(context.Background(), store.RosterDel{User: alice, JID: romeo})
			if it, ok := item(romeo, tc.before); ok {
				f.putItem(alice, it)
			}
			a := f.online("alice", "a")
			defer f.leave(a, alice+"/a", r)
			a.upTo(alice + "/a")
			r.drain() // what initial presence sent

			a.send(`<presence type='` + tc.send + `' to='romeo@remote.example/phone'/>`)
			got := a.upTo(alice + "/a")
			if s := f.rosterState(alice, romeo); s != tc.want {
				t.Errorf("alice's item: %s, want %s", s, tc.want)
			}
			push := find(got, func(el *xml.Element) bool { return el.Name.Local == "iq" && el.Get("type") == "set" })
			switch {
			case tc.push && push == nil:
				t.Errorf("no roster push")
			case !tc.push && push != nil:
				t.Errorf("a roster push: %s", push)
			case push != nil:
				it := push.Child("jabber:iq:roster", "query").Child("", "item")
				if it.Get("jid") != romeo || it.Get("subscription") != strings.Split(tc.want, "+")[0] ||
					(it.Get("ask") == "subscribe") != strings.Contains(tc.want, "+ask") {
					t.Errorf("push: %s", it)
				}
			}
			var out []string
			for _, el := range r.drain() {
				out = append(out, brief(el))
			}
			if s := strings.Join(out, ", "); s != tc.out {
				t.Errorf("routed %q\nwant   %q", s, tc.out)
			}
		})
	}
}

// TestRemoteSubscriptionsIn: subscription presence from a remote contact
// (RFC 6121 §3, the receiving server's side): the local user's roster,
// delivery to the user, and the server's automatic answers.
func TestRemoteSubscriptionsIn(t *testing.T) {
	tests := []struct {
		name      string
		before    string // alice's item for romeo
		send      string // what romeo's server sends
		want      string
		aliceGets bool
		out       string // what the server answers for alice
	}{
		{"subscribe from nothing", "-", "subscribe", "none+pending+hidden", true, ""},
		{"subscribe from none", "none", "subscribe", "none+pending", true, ""},
		{"subscribe while to", "to", "subscribe", "to+pending", true, ""},
		{"subscribe when already approved", "from", "subscribe", "from", false,
			"presence/subscribed alice@example.lan→romeo@remote.example, presence/available alice@example.lan/a→romeo@remote.example"},
		{"subscribed approves our request", "none+ask", "subscribed", "to", true, ""},
		{"subscribed approves ours, mutual", "from+ask", "subscribed", "both", true, ""},
		{"subscribed without a request is ignored", "none", "subscribed", "none", false, ""},
		{"subscribed from a stranger is ignored", "-", "subscribed", "-", false, ""},
		{"unsubscribe from both", "both", "unsubscribe", "to", true, "presence/unavailable alice@example.lan/a→romeo@remote.example"},
		{"unsubscribe cancels a request", "none+pending", "unsubscribe", "none", true, ""},
		{"unsubscribed from both", "both", "unsubscribed", "from", true, ""},
		{"unsubscribed denies our request", "none+ask", "unsubscribed", "none", true, ""},
	}
	f, r := withRemote(t)
	parent := t
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			defer func() { f.t = parent }()
			f.st.ProposeSettled(context.Background(), store.RosterDel{User: alice, JID: romeo})
			if it, ok := item(romeo, tc.before); ok {
				f.putItem(alice, it)
			}
			a := f.online("alice", "a")
			defer f.leave(a, alice+"/a", r)
			a.upTo(alice + "/a")
			r.drain()

			// From a full JID: the server keeps bare JIDs.
			f.fromRemote(`<presence type='` + tc.send + `' from='romeo@remote.example/phone' to='alice@example.lan/a'><status>hi</status></presence>`)
			if s := f.rosterState(alice, romeo); s != tc.want {
				t.Errorf("alice's item: %s, want %s", s, tc.want)
			}
			got := find(a.upTo(alice+"/a"), is("presence", tc.send, "*", "*"))
			switch {
			case tc.aliceGets && got == nil:
				t.Errorf("alice did not get %s", tc.send)
			case !tc.aliceGets && got != nil:
				t.Errorf("alice got %s", got)
			case got != nil && (got.Get("from") != romeo || got.Get("to") != alice):
				t.Errorf("addressing: %s", got)
			}
			var out []string
			for _, el := range r.drain() {
				out = append(out, brief(el))
			}
			if s := strings.Join(out, ", "); s != tc.out {
				t.Errorf("routed %q\nwant   %q", s, tc.out)
			}
		})
	}
}

// TestRemoteSubscriptionFlow: a whole mutual subscription with a remote
// contact, a request kept for the next login, and a removal.
func TestRemoteSubscriptionFlow(t *testing.T) {
	f, r := withRemote(t)
	isPush := func(sub string) func(*xml.Element) bool {
		return func(el *xml.Element) bool {
			if el.Name.Local != "iq" || el.Get("type") != "set" {
				return false
			}
			it := el.Child("jabber:iq:roster", "query").Child("jabber:iq:roster", "item")
			return it != nil && it.Get("jid") == romeo && it.Get("subscription") == sub
		}
	}
	// Romeo asks while alice is offline: she gets it at login.
	f.fromRemote(`<presence type='subscribe' from='romeo@remote.example' to='alice@example.lan'><status>it is I</status></presence>`)
	a := f.dial()
	a.login("alice", "alice-password", "a")
	a.rosterGet("-")
	a.send(`<presence/>`)
	req := a.expect("the kept request", is("presence", "subscribe", romeo, alice))
	if req.Child("", "status").Text() != "it is I" {
		t.Fatalf("request: %s", req)
	}
	// Alice approves and asks back.
	a.send(`<presence type='subscribed' to='romeo@remote.example'/>`)
	a.expect("a push of romeo, from", isPush("from"))
	r.take(t, "subscribed", is("presence", "subscribed", alice, romeo))
	r.take(t, "alice's presence", is("presence", "available", alice+"/a", romeo))
	a.send(`<presence type='subscribe' to='romeo@remote.example'/>`)
	a.expect("a push of romeo, from, asked", isPush("from"))
	r.take(t, "subscribe", is("presence", "subscribe", alice, romeo))
	f.fromRemote(`<presence type='subscribed' from='romeo@remote.example' to='alice@example.lan'/>`)
	a.expect("a push of romeo, both", isPush("both"))
	a.expect("subscribed", is("presence", "subscribed", romeo, alice))
	f.fromRemote(`<presence from='romeo@remote.example/phone' to='alice@example.lan'><show>away</show></presence>`)
	if p := a.expect("romeo's presence", is("presence", "available", romeo+"/phone", alice)); p.Child("", "show").Text() != "away" {
		t.Fatal(p)
	}
	// Alice's presence changes go to romeo's server.
	a.send(`<presence><show>dnd</show></presence>`)
	if p := r.take(t, "alice's dnd", is("presence", "available", alice+"/a", romeo)); p.Child("", "show").Text() != "dnd" {
		t.Fatal(p)
	}
	// Removing romeo cancels both ways (RFC 6121 §2.5.2).
	a.send(`<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='romeo@remote.example' subscription='remove'/></query></iq>`)
	if el := a.reply("rm"); el.Get("type") != "result" {
		t.Fatal(el)
	}
	r.take(t, "unsubscribe", is("presence", "unsubscribe", alice, romeo))
	r.take(t, "unavailable", is("presence", "unavailable", alice+"/a", romeo))
	r.take(t, "unsubscribed", is("presence", "unsubscribed", alice, romeo))
	if s := f.rosterState(alice, romeo); s != "-" {
		t.Fatalf("alice's item after remove: %s", s)
	}
	// Romeo's server answers in kind; nothing changes any more.
	f.fromRemote(`<presence type='unsubscribed' from='romeo@remote.example' to='alice@example.lan'/>`)
	f.fromRemote(`<presence type='unsubscribe' from='romeo@remote.example' to='alice@example.lan'/>`)
	if s := f.rosterState(alice, romeo); s != "-" {
		t.Fatalf("alice's item after romeo's answers: %s", s)
	}
	if left := r.drain(); len(left) != 0 {
		t.Fatalf("routed besides: %s", describe(left))
	}
}

// TestRemotePresence: probes at login, broadcast to remote subscribers
// (one stanza per contact), directed presence, inbound presence and
// probes, and unavailable presence when a session ends.
func TestRemotePresence(t *testing.T) {
	f, r := withRemote(t)
	for jid, sub := range map[string]string{
		romeo:                    store.SubBoth,
		"juliet@remote.example":  store.SubFrom,
		"mercutio@other.example": store.SubTo,
		"nurse@remote.example":   store.SubNone,
		"bob@example.lan":        store.SubBoth,
	} {
		f.putItem(alice, store.RosterItem{JID: jid, Subscription: sub})
	}
	f.putItem(alice, store.RosterItem{JID: "tybalt@remote.example", Subscription: store.SubNone, PendingIn: true, Hidden: true})
	f.putItem("bob@example.lan", store.RosterItem{JID: alice, Subscription: store.SubBoth})

	// Login: probes to the contacts alice is subscribed to, her presence
	// to those subscribed to her.
	a := f.online("alice", "a")
	a.upTo(alice + "/a")
	want := "presence/available alice@example.lan/a→juliet@remote.example; presence/available alice@example.lan/a→romeo@remote.example; " +
		"presence/probe alice@example.lan/a→mercutio@other.example; presence/probe alice@example.lan/a→romeo@remote.example"
	if got := describe(r.drain()); got != want {
		t.Fatalf("at login, routed:\n%s\nwant\n%s", got, want)
	}

	// Answers to the probes, and later changes, reach alice.
	f.fromRemote(`<presence from='romeo@remote.example/phone' to='alice@example.lan/a'><show>chat</show></presence>`)
	a.expect("romeo's answer", is("presence", "available", romeo+"/phone", alice+"/a"))
	f.fromRemote(`<presence from='mercutio@other.example/x' to='alice@example.lan'/>`)
	a.expect("mercutio's presence", is("presence", "available", "mercutio@other.example/x", alice))
	f.fromRemote(`<presence type='unavailable' from='romeo@remote.example/phone' to='alice@example.lan'/>`)
	a.expect("romeo leaving", is("presence", "unavailable", romeo+"/phone", alice))
	f.fromRemote(`<presence type='error' from='mercutio@other.example' to='alice@example.lan/a'><error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>`)
	a.expect("a presence error", is("presence", "error", "mercutio@other.example", alice+"/a"))

	// Probes from remote servers.
	bob := f.online("bob", "b")
	bob.upTo("bob@example.lan/b")
	a.upTo(alice + "/a")
	r.drain()
	a.send(`<presence><status>here</status></presence>`)
	a.upTo(alice + "/a")
	r.drain()
	a2 := f.online("alice", "a2")
	a2.upTo(alice + "/a2")
	r.drain()
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"from a subscriber", "juliet@remote.example/x", alice,
			"presence/available alice@example.lan/a2→juliet@remote.example/x; presence/available alice@example.lan/a→juliet@remote.example/x"},
		{"from a subscriber, for one resource", "juliet@remote.example", alice + "/a",
			"presence/available alice@example.lan/a→juliet@remote.example"},
		{"from a contact alice is subscribed to only", "mercutio@other.example", alice,
			"presence/unsubscribed alice@example.lan→mercutio@other.example"},
		{"from a stranger", "paris@remote.example", alice, "presence/unsubscribed alice@example.lan→paris@remote.example"},
		{"from someone waiting for approval", "tybalt@remote.example", alice, ""},
		{"for a user who does not exist", "juliet@remote.example", "nobody@example.lan", ""},
		{"for a user who is offline", "juliet@remote.example", "bob@example.lan", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.to == "bob@example.lan" {
				f.putItem("bob@example.lan", store.RosterItem{JID: "juliet@remote.example", Subscription: store.SubFrom})
				bob.send(`<presence type='unavailable'/>`)
				bob.upTo("bob@example.lan/b")
				r.drain()
			}
			f.fromRemote(`<presence type='probe' from='` + tc.from + `' to='` + tc.to + `'/>`)
			if got := describe(r.drain()); got != tc.want {
				t.Fatalf("routed:\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
	// The answer is the presence alice last sent.
	f.fromRemote(`<presence type='probe' from='romeo@remote.example' to='alice@example.lan/a'/>`)
	if p := r.take(t, "the answer", is("presence", "available", alice+"/a", romeo)); p.Child("", "status").Text() != "here" {
		t.Fatal(p)
	}

	// Directed presence to a remote entity, then unavailable: the
	// subscribers and that entity learn it, once each.
	a2.send(`<presence to='paris@remote.example/balcony'><status>psst</status></presence>`)
	r.take(t, "directed presence", is("presence", "available", alice+"/a2", "paris@remote.example/balcony"))
	a2.send(`<presence to='romeo@remote.example/phone'/>`)
	r.take(t, "directed presence", is("presence", "available", alice+"/a2", romeo+"/phone"))
	a2.send(`<presence type='unavailable'/>`)
	a2.upTo(alice + "/a2")
	want = "presence/unavailable alice@example.lan/a2→juliet@remote.example; presence/unavailable alice@example.lan/a2→paris@remote.example/balcony; " +
		"presence/unavailable alice@example.lan/a2→romeo@remote.example"
	if got := describe(r.drain()); got != want {
		t.Fatalf("unavailable, routed:\n%s\nwant\n%s", got, want)
	}
	// A session that ends does the same.
	a.send(`</stream:stream>`)
	r.take(t, "unavailable to juliet", is("presence", "unavailable", alice+"/a", "juliet@remote.example"))
	r.take(t, "unavailable to romeo", is("presence", "unavailable", alice+"/a", romeo))
	waitFor(t, "alice to go", func() bool { return !f.bound(alice, "a") })
	if left := r.drain(); len(left) != 0 {
		t.Fatalf("routed besides: %s", describe(left))
	}
}

// TestNoFederation: without a Remote, stanzas for other servers bounce as
// before, and presence for them goes nowhere.
func TestNoFederation(t *testing.T) {
	f := start(t)
	f.eng.mu.Lock()
	f.eng.router.Remote = nil
	f.eng.mu.Unlock()
	f.putItem(alice, store.RosterItem{JID: romeo, Subscription: store.SubBoth})
	a := f.online("alice", "a")
	for _, tc := range []struct{ send, kind string }{
		{`<message to='romeo@remote.example' type='chat' id='x'><body>hi</body></message>`, "message"},
		{`<iq to='remote.example' type='get' id='x'><ping xmlns='urn:xmpp:ping'/></iq>`, "iq"},
		{`<presence to='romeo@remote.example' type='subscribe' id='x'/>`, "presence"},
	} {
		a.send(tc.send)
		el := a.expect("the bounce", is(tc.kind, "error", "*", "*"))
		if stanzaError(el) != "remote-server-not-found" || el.Get("id") != "x" {
			t.Fatalf("%s: %s", tc.send, el)
		}
	}
	// Inbound stanzas that would be answered go nowhere (and do not panic).
	f.fromRemote(`<presence type='probe' from='romeo@remote.example' to='alice@example.lan'/>`)
	f.fromRemote(`<presence type='probe' from='paris@remote.example' to='alice@example.lan'/>`)
	f.fromRemote(`<iq type='get' id='p' from='romeo@remote.example' to='example.lan'><ping xmlns='urn:xmpp:ping'/></iq>`)
	f.fromRemote(`<presence type='subscribe' from='romeo@remote.example' to='alice@example.lan'/>`)
	if s := f.rosterState(alice, romeo); s != "both" {
		t.Fatalf("alice's item: %s", s)
	}
}

// TestRemoteRequestBounds: what remote strangers can leave in a user's
// roster is bounded: a large request is kept without its payload, and
// past a number of waiting requests more are dropped (a local user's
// request still gets through).
func TestRemoteRequestBounds(t *testing.T) {
	f, _ := withRemote(t)
	big := strings.Repeat("x", im.MaxRequestBytes)
	f.fromRemote(`<presence type='subscribe' from='romeo@remote.example' to='alice@example.lan'><status>` + big + `</status></presence>`)
	it, ok, _ := f.st.RosterItem(alice, romeo)
	if !ok || !it.PendingIn || len(it.PendingInMsg) != 0 {
		t.Fatalf("large request kept as %v %+v", ok, it)
	}
	a := f.dial()
	a.login("alice", "alice-password", "a")
	a.send(`<presence/>`)
	if req := a.expect("the request", is("presence", "subscribe", romeo, alice)); req.Child("", "status") != nil {
		t.Fatalf("request: %s", req)
	}

	for i := 1; i < im.MaxStrangerRequests; i++ {
		f.putItem(alice, store.RosterItem{JID: fmt.Sprintf("s%d@remote.example", i), Subscription: store.SubNone, PendingIn: true, Hidden: true})
	}
	f.fromRemote(`<presence type='subscribe' from='one-too-many@remote.example' to='alice@example.lan'/>`)
	if s := f.rosterState(alice, "one-too-many@remote.example"); s != "-" {
		t.Fatalf("request past the bound kept: %s", s)
	}
	// Known contacts and local users still get through.
	f.putItem(alice, store.RosterItem{JID: "juliet@remote.example", Subscription: store.SubNone})
	f.fromRemote(`<presence type='subscribe' from='juliet@remote.example' to='alice@example.lan'/>`)
	b := f.online("bob", "b")
	b.send(`<presence type='subscribe' to='alice@example.lan'/>`)
	b.ping("sync")
	got := a.upTo(alice + "/a")
	for _, from := range []string{"juliet@remote.example", "bob@example.lan"} {
		if find(got, is("presence", "subscribe", from, alice)) == nil {
			t.Errorf("alice did not get %s's request", from)
		}
	}
	if find(got, is("presence", "subscribe", "one-too-many@remote.example", "*")) != nil {
		t.Errorf("alice got a request past the bound")
	}
	if s := f.rosterState(alice, "bob@example.lan"); s != "none+pending+hidden" {
		t.Errorf("bob's request: %s", s)
	}
}

// TestRemoteAndComponents: a component's domain is Local; stanzas from
// other servers reach the component, and the component's stanzas to
// remote entities go out.
func TestRemoteAndComponents(t *testing.T) {
	f, r := withRemote(t)
	f.addBridge("cb1")
	comp, got := f.connectComponent("cb1.example.lan", cbSecret)
	if got != "handshake" {
		t.Fatalf("handshake: %s", got)
	}
	if !f.eng.im.Local("cb1.example.lan") || !f.eng.im.Local("example.lan") || f.eng.im.Local("remote.example") {
		t.Fatal("Local: want true for the hosted and the component domain, false for a remote one")
	}
	f.fromRemote(`<message from='romeo@remote.example/phone' to='room@cb1.example.lan' type='chat' id='c1'><body>call</body></message>`)
	if m := comp.next(); m.Get("from") != romeo+"/phone" || m.Get("id") != "c1" || m.Name.Space != "jabber:component:accept" {
		t.Fatalf("component got %s", m)
	}
	comp.send(`<message from='room@cb1.example.lan' to='romeo@remote.example/phone' type='chat' id='c2'><body>ringing</body></message>`)
	if m := r.take(t, "the component's message", is("message", "chat", "room@cb1.example.lan", romeo+"/phone")); m.Name.Space != "jabber:client" {
		t.Fatalf("routed in %s: %s", m.Name.Space, m)
	}
	// A remote server cannot speak for the component's domain either.
	f.fromRemote(`<message from='room@cb1.example.lan' to='alice@example.lan' type='chat' id='spoof'><body>x</body></message>`)
	if msgs, _ := f.st.Offline(alice); len(msgs) != 0 {
		t.Fatalf("a stanza from a remote server claiming a component's sender was stored")
	}
}
