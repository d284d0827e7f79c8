package im

import (
	"crypto/sha1"
	"encoding/base64"
	"sort"
	"strings"
	"testing"

	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
)

const nsTest = "urn:parley:test"

// marked answers with a result that names the handler.
func marked(name string) func(*Stanza) {
	return func(st *Stanza) { st.Reply(st.Result().Add(xml.New(nsTest, "ok", "by", name))) }
}

// TestIQDispatch: an IQ goes to the handler registered for its type,
// namespace, target and origin, whichever layer it came from; nothing
// registered is service-unavailable.
func TestIQDispatch(t *testing.T) {
	h := newHarness(t, func(s *Service, m *Module) {
		m.IQ(Get, nsTest, ToServer, FromClient, marked("server"))
		m.IQ(Get, nsTest, ToSelf, FromClient, marked("self"))
		m.IQ(Get, nsTest, ToAccount, FromClient|FromRemote, marked("account"))
		m.IQ(Set, nsTest, ToServer, FromRemote|FromComponent, marked("link-set"))
		m.IQ(Set, nsTest, ToFull, FromClient, marked("full"))
	})
	alice := h.login("alice@example.lan", "phone", true, 0)
	bob := h.login("bob@example.lan", "desk", true, 0)
	q := `<query xmlns='` + nsTest + `'/>`
	tests := []struct {
		name   string
		origin Origin
		iq     string
		want   string // the handler, "routed" (to bob/desk), or an error condition
	}{
		{"client to the server", FromClient, `<iq type='get' id='1' to='example.lan'>` + q + `</iq>`, "server"},
		{"client without to", FromClient, `<iq type='get' id='1'>` + q + `</iq>`, "self"},
		{"client to its own bare JID", FromClient, `<iq type='get' id='1' to='alice@example.lan'>` + q + `</iq>`, "self"},
		{"client to another account", FromClient, `<iq type='get' id='1' to='bob@example.lan'>` + q + `</iq>`, "account"},
		{"client to an unknown account", FromClient, `<iq type='get' id='1' to='nobody@example.lan'>` + q + `</iq>`, "service-unavailable"},
		{"client set: not registered", FromClient, `<iq type='set' id='1' to='example.lan'>` + q + `</iq>`, "service-unavailable"},
		{"client set to a full JID: a handler answers for it", FromClient, `<iq type='set' id='1' to='bob@example.lan/desk'>` + q + `</iq>`, "full"},
		{"client to a full JID is routed", FromClient, `<iq type='get' id='1' to='bob@example.lan/desk'>` + q + `</iq>`, "routed"},
		{"client with two children", FromClient, `<iq type='get' id='1' to='example.lan'>` + q + q + `</iq>`, "bad-request"},
		{"client without an id", FromClient, `<iq type='get' to='example.lan'>` + q + `</iq>`, "bad-request"},
		{"client, an unknown namespace", FromClient, `<iq type='get' id='1' to='example.lan'><x xmlns='urn:other'/></iq>`, "service-unavailable"},
		{"server to an account", FromRemote, `<iq type='get' id='1' to='bob@example.lan'>` + q + `</iq>`, "account"},
		{"server get to the server: not registered", FromRemote, `<iq type='get' id='1' to='example.lan'>` + q + `</iq>`, "service-unavailable"},
		{"server set to the server", FromRemote, `<iq type='set' id='1' to='example.lan'>` + q + `</iq>`, "link-set"},
		{"server to a full JID is routed", FromRemote, `<iq type='get' id='1' to='bob@example.lan/desk'>` + q + `</iq>`, "routed"},
		{"component set to the server", FromComponent, `<iq type='set' id='1' to='example.lan'>` + q + `</iq>`, "link-set"},
		{"component to an account: not registered", FromComponent, `<iq type='get' id='1' to='bob@example.lan'>` + q + `</iq>`, "service-unavailable"},
		{"component ping to the server", FromComponent, `<iq type='get' id='1' to='example.lan'><ping xmlns='urn:xmpp:ping'/></iq>`, "result"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			el := parse(t, tc.iq)
			switch tc.origin {
			case FromClient:
				el.Set("from", alice.Full())
				h.s.Handle(alice, el)
			case FromRemote:
				el.Set("from", "romeo@remote.example/phone")
				h.s.FromRemote(el)
			case FromComponent:
				el.Set("from", "cb1.example.lan")
				h.s.FromComponent("cb1.example.lan", el)
			}
			var back []*xml.Element
			switch tc.origin {
			case FromClient:
				back = alice.take()
			case FromRemote:
				back, h.fed.got = h.fed.got, nil
			case FromComponent:
				back, h.comps.got = h.comps.got, nil
			}
			routed := bob.take()
			if tc.want == "routed" {
				if len(routed) != 1 || len(back) != 0 {
					t.Fatalf("bob got %s; the sender %s", describe(routed), describe(back))
				}
				return
			}
			if len(back) != 1 || len(routed) != 0 {
				t.Fatalf("the sender got %s; bob %s", describe(back), describe(routed))
			}
			r := back[0]
			var got string
			if r.Get("type") == "error" {
				got = errorOf(r)
			} else if ok := r.Child(nsTest, "ok"); ok != nil {
				got = ok.Get("by")
			} else {
				got = r.Get("type")
			}
			if got != tc.want || r.Get("id") != el.Get("id") {
				t.Fatalf("answer %s, want %s", r, tc.want)
			}
		})
	}
}

// oldCapsVer is the caps hash as it was computed before the modules, from
// the hand-kept list of the server's features.
func oldCapsVer() string {
	f := []string{NSDiscoInfo, NSDiscoItems, NSPing, NSVersion, NSTime, NSLast, NSVCard, NSPrivate, NSRoster,
		"msgoffline", "urn:xmpp:delay", NSCaps}
	sort.Strings(f)
	b := "server/im//Parley<" + strings.Join(f, "<") + "<"
	sum := sha1.Sum([]byte(b))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// features lists a disco#info result's features.
func features(info *xml.Element) []string {
	var out []string
	for _, f := range info.Elements() {
		if f.Name.Local == "feature" {
			out = append(out, f.Get("var"))
		}
	}
	return out
}

// TestDiscoFromRegistrations: the server's and accounts' disco#info and
// the caps hash are what the modules registered; the built-in modules give
// what the hand-kept lists gave, and a module that registers a feature
// appears in disco and changes the caps hash.
func TestDiscoFromRegistrations(t *testing.T) {
	h := newHarness(t)
	if got, want := h.s.CapsVer(), oldCapsVer(); got != want {
		t.Fatalf("caps hash %s, want %s", got, want)
	}
	wantServer := []string{NSDiscoInfo, NSDiscoItems, NSPing, NSVersion, NSTime, NSLast, NSVCard, NSPrivate, NSRoster,
		"msgoffline", "urn:xmpp:delay", NSCaps}
	if got := features(h.s.serverInfo("")); strings.Join(got, " ") != strings.Join(wantServer, " ") {
		t.Fatalf("server features %v", got)
	}
	wantAccount := []string{NSDiscoInfo, NSDiscoItems, NSPing, NSLast, NSVCard}
	if got := features(h.s.info(Account, "")); strings.Join(got, " ") != strings.Join(wantAccount, " ") {
		t.Fatalf("account features %v", got)
	}
	if h.s.serverInfo(CapsNode+"#"+h.s.CapsVer()) == nil || h.s.serverInfo("urn:other") != nil {
		t.Fatal("the caps node is known, another node is not")
	}
	wantStream := `<session xmlns="urn:ietf:params:xml:ns:xmpp-session"><optional/></session><ver xmlns="urn:xmpp:features:rosterver"/>` +
		string(h.s.CapsFeature())
	if got := string(h.s.StreamFeatures()); got != wantStream {
		t.Fatalf("stream features %s", got)
	}

	x := newHarness(t, func(s *Service, m *Module) {
		m.Feature(Server, "urn:parley:test:feature")
		m.Feature(Account, "urn:parley:test:account")
		m.StreamFeature(func() []byte { return []byte(`<test xmlns="urn:parley:test"/>`) })
	})
	if x.s.CapsVer() == h.s.CapsVer() {
		t.Fatal("a new server feature did not change the caps hash")
	}
	if !strings.Contains(string(x.s.CapsFeature()), x.s.CapsVer()) {
		t.Fatalf("the caps stream feature %s has not the new hash", x.s.CapsFeature())
	}
	if got := features(x.s.serverInfo("")); got[len(got)-1] != "urn:parley:test:feature" {
		t.Fatalf("server features %v", got)
	}
	if got := features(x.s.info(Account, "")); got[len(got)-1] != "urn:parley:test:account" {
		t.Fatalf("account features %v", got)
	}
	if x.s.serverInfo(CapsNode+"#"+h.s.CapsVer()) != nil {
		t.Fatal("the old hash's node is still known")
	}
	if !strings.HasSuffix(string(x.s.StreamFeatures()), `<test xmlns="urn:parley:test"/>`) {
		t.Fatalf("stream features %s", x.s.StreamFeatures())
	}

	// Asked over the protocol, too.
	a := x.login("alice@example.lan", "phone", true, 0)
	el := parse(t, `<iq type='get' id='d' to='example.lan'><query xmlns='`+NSDiscoInfo+`'/></iq>`)
	el.Set("from", a.Full())
	x.s.Handle(a, el)
	back := a.take()
	if len(back) != 1 || !strings.Contains(back[0].String(), "urn:parley:test:feature") {
		t.Fatalf("disco#info: %s", describe(back))
	}
}

type hookKey struct{}

// TestHooks: the session event hooks run where they should, and a
// module's session state lives in the session's value store.
func TestHooks(t *testing.T) {
	var events []string
	h := newHarness(t, func(s *Service, m *Module) {
		m.OnBound(func(sess router.Session) {
			sess.SetValue(hookKey{}, "state of "+sess.Full())
			events = append(events, "bound "+sess.Full())
		})
		m.OnUnbound(func(sess router.Session) { events = append(events, "unbound "+sess.Value(hookKey{}).(string)) })
		m.OnStanza(func(st *Stanza) bool {
			if st.El.Name.Local == "message" && st.El.Get("id") == "swallow" {
				events = append(events, "swallowed")
				return true
			}
			return false
		})
		m.BeforeDeliver(func(sess router.Session, el *xml.Element) bool {
			if el.Get("id") == "take" {
				events = append(events, "taken for "+sess.Full())
				return true
			}
			return false
		})
		m.OnPresence(func(sess router.Session, p *xml.Element, available bool) {
			if available {
				events = append(events, "available "+sess.Full())
			}
		})
	})
	alice := h.login("alice@example.lan", "phone", false, 0)
	bob := h.login("bob@example.lan", "desk", true, 0)
	send := func(s string) {
		el := parse(t, s)
		el.Set("from", alice.Full())
		h.s.Handle(alice, el)
	}
	send(`<presence/>`)
	send(`<message to='bob@example.lan' id='swallow'><body>x</body></message>`)
	send(`<message to='bob@example.lan' id='take'><body>x</body></message>`)
	send(`<message to='bob@example.lan' id='pass'><body>x</body></message>`)
	if got := bob.take(); len(got) != 1 || got[0].Get("id") != "pass" {
		t.Fatalf("bob got %s", describe(got))
	}
	h.s.Router.Unbind(alice)
	h.s.Offline(alice)
	want := "bound alice@example.lan/phone|bound bob@example.lan/desk|available alice@example.lan/phone|swallowed|taken for bob@example.lan/desk|unbound state of alice@example.lan/phone"
	if got := strings.Join(events, "|"); got != want {
		t.Fatalf("events\n%s\nwant\n%s", got, want)
	}
}

// TestPresenceState: presence and priority are the presence module's
// state in the session's value store, mirrored in the router's table
// for choosing message targets; roster interest is the roster module's.
func TestPresenceState(t *testing.T) {
	h := newHarness(t)
	a := h.login("alice@example.lan", "phone", false, 0)
	send := func(s string) {
		el := parse(t, s)
		el.Set("from", a.Full())
		h.s.Handle(a, el)
	}
	if h.s.Router.HasAvailable("alice@example.lan") {
		t.Fatal("available before presence")
	}
	send(`<presence><priority>7</priority></presence>`)
	if p, prio := presenceOf(a).last(); p == nil || prio != 7 {
		t.Fatalf("presence %v, priority %d", p, prio)
	}
	if ts := h.s.Router.Targets("alice@example.lan", "chat"); len(ts) != 1 || ts[0] != router.Session(a) {
		t.Fatalf("targets %v", ts)
	}
	send(`<presence type='unavailable'/>`)
	if p, _ := presenceOf(a).last(); p != nil || h.s.Router.HasAvailable("alice@example.lan") {
		t.Fatal("still available")
	}
	if interested(a) {
		t.Fatal("interested before asking for the roster")
	}
	send(`<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>`)
	if !interested(a) {
		t.Fatal("not interested after asking for the roster")
	}
	if back := a.take(); len(back) == 0 || back[len(back)-1].Get("type") != "result" {
		t.Fatalf("roster get: %s", describe(back))
	}
	_ = stream.NSClient
}

// TestStanzaJIDs: a handler sees the sender and the addressee as router
// JIDs whatever the origin (what a module in a package beside im uses).
func TestStanzaJIDs(t *testing.T) {
	var from, to router.JID
	h := newHarness(t, func(s *Service, m *Module) {
		m.IQ(Get, nsTest, ToBare, FromAnyone, func(st *Stanza) {
			from, to = st.FromJID(), st.ToJID()
			st.Reply(st.Result())
		})
	})
	alice := h.login("alice@example.lan", "phone", true, 0)
	h.login("bob@example.lan", "desk", true, 0)
	q := `<query xmlns='` + nsTest + `'/>`

	el := parse(t, `<iq type='get' id='1' to='bob@example.lan'>`+q+`</iq>`)
	el.Set("from", alice.Full())
	h.s.Handle(alice, el)
	want := router.JID{Local: "alice", Domain: "example.lan", Resource: "phone", Bare: "alice@example.lan"}
	if from != want || to != (router.JID{Local: "bob", Domain: "example.lan", Bare: "bob@example.lan"}) {
		t.Errorf("client: from %+v to %+v", from, to)
	}

	el = parse(t, `<iq type='get' id='2' to='example.lan'>`+q+`</iq>`)
	el.Set("from", "romeo@remote.example/balcony")
	h.s.FromRemote(el)
	want = router.JID{Local: "romeo", Domain: "remote.example", Resource: "balcony", Bare: "romeo@remote.example"}
	if from != want || to != (router.JID{Domain: "example.lan", Bare: "example.lan"}) {
		t.Errorf("remote: from %+v to %+v", from, to)
	}
}
