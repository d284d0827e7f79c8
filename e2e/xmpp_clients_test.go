package e2e

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"image"
	"image/color"
	"image/png"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Bodies with what XML and encodings make hard: markup characters,
// accents, CJK, an emoji outside the BMP.
const (
	aliceSays = `Grüße, Bob! <b>&amp; 你好 🎉 "quoted" & 'single'`
	bobSays   = "Ответ: ça va très bien ✓ — ½ ∑ 😀"
)

// Issue 3, Tests: real clients log in over STARTTLS and direct TLS with
// every SASL mechanism, fail with a wrong password, exchange messages with
// non-ASCII bodies, subscribe to each other's presence, set and fetch a
// vCard with an avatar, and query the server (ping, disco, version, time,
// last activity) and private storage.
func TestXMPPClients(t *testing.T) {
	t.Parallel()
	x := startXMPP(t, "example.lan", "alice@example.lan", "Alice-pass-1", "bob@example.lan", "Bob-pass-22")
	cert := x.certFingerprint(t, "example.lan.crt")

	alice := x.login(t, "alice@example.lan", "Alice-pass-1", clientOpts{})
	bob := x.login(t, "bob@example.lan", "Bob-pass-22", clientOpts{direct: true})
	for _, c := range []*xclient{alice, bob} {
		if c.session.Cert != cert {
			t.Fatalf("%s: the server presented certificate %s, want example.lan.crt (%s)", c.name, c.session.Cert, cert)
		}
		if c.session.TLS != "TLSv1.3" && c.session.TLS != "TLSv1.2" {
			t.Fatalf("%s: TLS version %q, want 1.2 or later", c.name, c.session.TLS)
		}
		if len(c.session.Items) != 0 {
			t.Fatalf("%s: a new account's roster is not empty: %v", c.name, c.session.Items)
		}
	}

	t.Run("mechanisms", func(t *testing.T) {
		for _, o := range []clientOpts{
			{mech: "SCRAM-SHA-256"},
			{mech: "SCRAM-SHA-1", direct: true},
			{mech: "PLAIN"},
		} {
			c := x.login(t, "bob@example.lan", "Bob-pass-22", clientOpts{mech: o.mech, direct: o.direct, noPresence: true})
			c.ping(t, "")
			c.logout(t)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		x.loginFails(t, "alice@example.lan", "Alice-pass-2", clientOpts{})
		x.loginFails(t, "alice@example.lan", "alice-pass-1", clientOpts{direct: true, mech: "SCRAM-SHA-1"})
		// The right password still works after failures (they are within
		// the address's burst; a success takes nothing off them, see
		// xmpp_bruteforce_test.go), and an unknown user fails like a
		// wrong password.
		x.login(t, "alice@example.lan", "Alice-pass-1", clientOpts{noPresence: true}).logout(t)
		x.loginFails(t, "nobody@example.lan", "Alice-pass-1", clientOpts{mech: "SCRAM-SHA-256"})
	})

	t.Run("messages", func(t *testing.T) {
		alice.send(t, "bob@example.lan", aliceSays)
		m := bob.message(t, "alice@example.lan", aliceSays)
		if m.From != alice.session.JID || m.Type != "chat" || m.Delay != nil {
			t.Fatalf("bob got %s: want from %s, type chat, no delay", m.line, alice.session.JID)
		}
		bob.send(t, alice.session.JID, bobSays) // to the full JID
		m = alice.message(t, "bob@example.lan", bobSays)
		if m.From != bob.session.JID || m.To != alice.session.JID || m.Delay != nil {
			t.Fatalf("alice got %s: want from %s to %s, no delay", m.line, bob.session.JID, alice.session.JID)
		}
	})

	t.Run("subscription", func(t *testing.T) {
		alice.do(t, map[string]any{"op": "subscribe", "to": "bob@example.lan"})
		req := bob.presence(t, "alice@example.lan", "subscribe")
		if req.From != "alice@example.lan" {
			t.Fatalf("the subscription request comes from %q, want the bare JID alice@example.lan", req.From)
		}
		if it := alice.roster(t)["bob@example.lan"]; it.Subscription != "none" || it.Ask != "subscribe" {
			t.Fatalf("alice's roster item for bob while asking: %+v, want subscription none, ask subscribe", it)
		}
		bob.do(t, map[string]any{"op": "subscribed", "to": "alice@example.lan"})
		alice.presence(t, "bob@example.lan", "subscribed")
		p := alice.presence(t, "bob@example.lan", "available")
		if p.From != bob.session.JID {
			t.Fatalf("alice got bob's presence from %q, want %q", p.From, bob.session.JID)
		}
		if it := alice.roster(t)["bob@example.lan"]; it.Subscription != "to" || it.Ask != "" {
			t.Fatalf("alice's roster item for bob after approval: %+v, want subscription to", it)
		}

		bob.do(t, map[string]any{"op": "subscribe", "to": "alice@example.lan"})
		alice.presence(t, "bob@example.lan", "subscribe")
		alice.do(t, map[string]any{"op": "subscribed", "to": "bob@example.lan"})
		bob.presence(t, "alice@example.lan", "subscribed")
		bob.presence(t, "alice@example.lan", "available")
		checkBoth(t, alice, "bob@example.lan")
		checkBoth(t, bob, "alice@example.lan")

		// Presence changes reach the contact.
		alice.do(t, map[string]any{"op": "presence", "status": "in a meeting ☕"})
		bob.wait(t, "alice's new status", func(e *xev) bool {
			return e.Ev == "presence" && e.From == alice.session.JID && e.Type == "available" && e.Status == "in a meeting ☕"
		})
	})

	t.Run("vcard and avatar", func(t *testing.T) {
		photo, hash := tinyPNG(t)
		bob.do(t, map[string]any{"op": "vcard_set", "fn": "Bob Bäcker", "nickname": "bobby",
			"photo": base64.StdEncoding.EncodeToString(photo), "photo_type": "image/png"})
		// XEP-0153: the avatar hash is in bob's presence as alice sees it.
		alice.wait(t, "bob's presence with the avatar hash "+hash, func(e *xev) bool {
			return e.Ev == "presence" && e.From == bob.session.JID && e.Type == "available" && e.Photo != nil && *e.Photo == hash
		})
		// And in every later presence bob sends (slixmpp without XEP-0153
		// sends none: the server stamps it).
		bob.do(t, map[string]any{"op": "presence", "status": "avatar set"})
		alice.wait(t, "bob's next presence with the avatar hash "+hash, func(e *xev) bool {
			return e.Ev == "presence" && e.From == bob.session.JID && e.Status == "avatar set" && e.Photo != nil && *e.Photo == hash
		})
		v := alice.do(t, map[string]any{"op": "vcard_get", "to": "bob@example.lan"})
		if v.FN != "Bob Bäcker" || v.PhotoType != "image/png" || v.PhotoSHA1 != hash {
			t.Fatalf("bob's vCard as alice fetched it: %s; want FN Bob Bäcker, an image/png photo with SHA-1 %s", v.line, hash)
		}
		v = bob.do(t, map[string]any{"op": "vcard_get", "to": ""}) // own vCard: no 'to'
		if v.FN != "Bob Bäcker" || v.PhotoSHA1 != hash {
			t.Fatalf("bob's own vCard: %s", v.line)
		}
	})

	t.Run("server queries", func(t *testing.T) {
		alice.ping(t, "example.lan")
		d := alice.do(t, map[string]any{"op": "disco_info", "to": "example.lan"})
		server := false
		for _, id := range d.Identities {
			if len(id) >= 2 && id[0] == "server" && id[1] == "im" {
				server = true
			}
		}
		if !server {
			t.Fatalf("disco#info of the server has no identity server/im: %s", d.line)
		}
		for _, f := range []string{"urn:xmpp:ping", "vcard-temp", "http://jabber.org/protocol/disco#info", "jabber:iq:version", "urn:xmpp:time", "jabber:iq:last", "jabber:iq:private"} {
			if !contains(d.Features, f) {
				t.Fatalf("disco#info of the server lacks the feature %s: %s", f, d.line)
			}
		}
		ver := alice.do(t, map[string]any{"op": "version", "to": "example.lan"})
		if ver.Name != "Parley" || ver.Version == "" || !strings.Contains(x.mustAdmin(t, "version"), ver.Version) {
			t.Fatalf("software version %s: want Parley and the version the shell shows", ver.line)
		}
		tm := alice.do(t, map[string]any{"op": "time", "to": "example.lan"})
		utc, err := time.Parse(time.RFC3339, tm.UTC)
		if err != nil || time.Since(utc).Abs() > time.Minute || !regexp.MustCompile(`^[+-]\d\d:\d\d$|^Z$`).MatchString(tm.TZO) {
			t.Fatalf("entity time %s: want now in UTC and a time zone offset (err %v)", tm.line, err)
		}
		last := alice.do(t, map[string]any{"op": "last", "to": "example.lan"})
		if last.Seconds < 0 || last.Seconds > 600 {
			t.Fatalf("last activity of the server (its uptime): %s", last.line)
		}
		// What is not served gets the stanza error RFC 6120 and 6121 name.
		for _, q := range []struct{ to, ns, want string }{
			{"example.lan", "urn:parley:e2e:unknown", "service-unavailable"},
			{"nobody@example.lan", "jabber:iq:version", "service-unavailable"},
			{"bob@example.lan/no-such-resource", "jabber:iq:version", "service-unavailable"},
			{"elsewhere.lan", "jabber:iq:version", "remote-server-not-found"},
		} {
			r := alice.request(t, map[string]any{"op": "query", "to": q.to, "ns": q.ns, "name": "query"})
			if r.Error != q.want {
				t.Fatalf("iq get %s to %s: want the error %s, got %s", q.ns, q.to, q.want, r.line)
			}
		}
	})

	t.Run("private storage", func(t *testing.T) {
		const ns = "urn:parley:e2e:prefs"
		alice.do(t, map[string]any{"op": "private_set", "ns": ns, "name": "prefs", "text": "thème=sombre ✓"})
		got := alice.do(t, map[string]any{"op": "private_get", "ns": ns, "name": "prefs"})
		if !got.Found || got.Text != "thème=sombre ✓" {
			t.Fatalf("private storage get: %s", got.line)
		}
		other := bob.do(t, map[string]any{"op": "private_get", "ns": ns, "name": "prefs"})
		if other.Text != "" {
			t.Fatalf("bob reads alice's private data: %s", other.line)
		}
	})

	t.Run("relogin", func(t *testing.T) {
		_, hash := tinyPNG(t)
		alice.logout(t)
		bob.wait(t, "alice going offline", func(e *xev) bool {
			return e.Ev == "presence" && e.From == alice.session.JID && e.Type == "unavailable"
		})
		la := bob.do(t, map[string]any{"op": "last", "to": "alice@example.lan"})
		if la.Seconds < 0 || la.Seconds > 60 {
			t.Fatalf("last activity of alice, offline a moment ago, as her contact bob asks: %s", la.line)
		}
		again := x.login(t, "alice@example.lan", "Alice-pass-1", clientOpts{direct: true})
		if it := again.session.Items["bob@example.lan"]; it.Subscription != "both" || it.Ask != "" {
			t.Fatalf("alice's roster at the next login: %v, want bob with subscription both", again.session.Items)
		}
		p := again.presence(t, "bob@example.lan", "available")
		if p.From != bob.session.JID || p.Photo == nil || *p.Photo != hash {
			t.Fatalf("bob's presence at alice's next login: %s, want from %s with the avatar hash %s", p.line, bob.session.JID, hash)
		}
		bob.wait(t, "alice back online", func(e *xev) bool {
			return e.Ev == "presence" && e.From == again.session.JID && e.Type == "available"
		})
		got := again.do(t, map[string]any{"op": "private_get", "ns": "urn:parley:e2e:prefs", "name": "prefs"})
		if got.Text != "thème=sombre ✓" {
			t.Fatalf("private storage at the next login: %s", got.line)
		}
	})
}

// Issue 3, Tests: offline messages (XEP-0160) arrive at the next login with
// a delay stamp (XEP-0203), in order, once.
func TestXMPPOfflineMessages(t *testing.T) {
	t.Parallel()
	x := startXMPP(t, "example.lan", "alice@example.lan", "Alice-pass-1", "bob@example.lan", "Bob-pass-22")
	alice := x.login(t, "alice@example.lan", "Alice-pass-1", clientOpts{})
	sent := time.Now()
	bodies := []string{aliceSays, "second: " + bobSays, "third ✓"}
	for _, b := range bodies {
		alice.send(t, "bob@example.lan", b)
	}
	alice.ping(t, "") // the server has handled the messages
	alice.none(t, "an error for a message to an offline user", func(e *xev) bool { return e.Ev == "message_error" })

	bob := x.login(t, "bob@example.lan", "Bob-pass-22", clientOpts{direct: true})
	for _, b := range bodies {
		m := bob.wait(t, "the next offline message", func(e *xev) bool { return e.Ev == "message" })
		if m.Body != b || m.From != alice.session.JID {
			t.Fatalf("offline message %s: want %q from %s, in the order sent", m.line, b, alice.session.JID)
		}
		if m.Delay == nil || m.DelayFrom == nil || *m.DelayFrom != "example.lan" {
			t.Fatalf("offline message %s: want a delay stamp from example.lan", m.line)
		}
		stamp, err := time.Parse(time.RFC3339, *m.Delay)
		if err != nil || stamp.Before(sent.Add(-2*time.Second)) || stamp.After(time.Now().Add(2*time.Second)) {
			t.Fatalf("offline message %s: the delay stamp is not the time it was sent (%v): %v", m.line, sent.UTC(), err)
		}
	}
	bob.ping(t, "")
	bob.none(t, "message", func(e *xev) bool { return e.Ev == "message" })
	bob.logout(t)

	// Not delivered twice.
	bob = x.login(t, "bob@example.lan", "Bob-pass-22", clientOpts{})
	bob.ping(t, "")
	bob.none(t, "offline message delivered a second time", func(e *xev) bool { return e.Ev == "message" })

	// Online again: delivered at once, no delay stamp.
	alice.send(t, "bob@example.lan", "live ✓")
	if m := bob.message(t, "alice@example.lan", "live ✓"); m.Delay != nil {
		t.Fatalf("a message to an online user has a delay stamp: %s", m.line)
	}
}

// Issue 3, Tests: another real client, go-sendxmpp (Debian), sends over
// STARTTLS and over direct TLS to a slixmpp client; a wrong password fails.
func TestXMPPGoSendxmpp(t *testing.T) {
	t.Parallel()
	x := startXMPP(t, "example.lan", "alice@example.lan", "Alice-pass-1", "bob@example.lan", "Bob-pass-22")
	bob := x.login(t, "bob@example.lan", "Bob-pass-22", clientOpts{})

	for _, direct := range []bool{false, true} {
		body := "go-sendxmpp über STARTTLS ✓"
		if direct {
			body = "go-sendxmpp über direct TLS 🎉"
		}
		r := x.sendxmpp(t, "alice@example.lan", "Alice-pass-1", "bob@example.lan", body+"\n", direct)
		if r.code != 0 {
			t.Fatalf("go-sendxmpp (direct TLS %v): %v", direct, r)
		}
		m := bob.message(t, "alice@example.lan", body)
		if m.Delay != nil {
			t.Fatalf("go-sendxmpp's message was stored offline, not delivered: %s", m.line)
		}
	}

	r := x.sendxmpp(t, "alice@example.lan", "Wrong-pass-1", "bob@example.lan", "must not arrive\n", false)
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "not-authorized") {
		t.Fatalf("go-sendxmpp with a wrong password: want a failure saying not-authorized, got %v", r)
	}
	bob.ping(t, "")
	bob.none(t, "message sent with a wrong password", func(e *xev) bool { return e.Ev == "message" })
}

// Issue 3: rosters and offline messages survive a restart of the appliance,
// and the service comes back enabled on its own.
func TestXMPPPersistenceAcrossRestart(t *testing.T) {
	t.Parallel()
	x := startXMPP(t, "example.lan", "alice@example.lan", "Alice-pass-1", "bob@example.lan", "Bob-pass-22")
	alice := x.login(t, "alice@example.lan", "Alice-pass-1", clientOpts{})
	bob := x.login(t, "bob@example.lan", "Bob-pass-22", clientOpts{})
	subscribeBoth(t, alice, bob)
	bob.logout(t)
	alice.send(t, "bob@example.lan", "kept across a restart ✓")
	alice.ping(t, "")
	alice.logout(t)

	x.restart()

	bob = x.login(t, "bob@example.lan", "Bob-pass-22", clientOpts{direct: true})
	if it := bob.session.Items["alice@example.lan"]; it.Subscription != "both" {
		t.Fatalf("bob's roster after the restart: %v, want alice with subscription both", bob.session.Items)
	}
	m := bob.message(t, "alice@example.lan", "kept across a restart ✓")
	if m.Delay == nil {
		t.Fatalf("the offline message after the restart has no delay stamp: %s", m.line)
	}
	alice = x.login(t, "alice@example.lan", "Alice-pass-1", clientOpts{})
	checkBoth(t, alice, "bob@example.lan")
	alice.presence(t, "bob@example.lan", "available")
	bob.presence(t, "alice@example.lan", "available")
}

// subscribeBoth makes a and b subscribe to each other's presence.
func subscribeBoth(t *testing.T, a, b *xclient) {
	t.Helper()
	ab, bb := bareOf(a.session.JID), bareOf(b.session.JID)
	for _, p := range [][2]*xclient{{a, b}, {b, a}} {
		from, to := p[0], p[1]
		fb, tb := bareOf(from.session.JID), bareOf(to.session.JID)
		from.do(t, map[string]any{"op": "subscribe", "to": tb})
		to.presence(t, fb, "subscribe")
		to.do(t, map[string]any{"op": "subscribed", "to": fb})
		from.presence(t, tb, "subscribed")
		from.presence(t, tb, "available")
	}
	checkBoth(t, a, bb)
	checkBoth(t, b, ab)
}

// checkBoth fails unless c's roster has contact with subscription both and
// no pending request.
func checkBoth(t *testing.T, c *xclient, contact string) {
	t.Helper()
	it, ok := c.roster(t)[contact]
	if !ok || it.Subscription != "both" || it.Ask != "" {
		t.Fatalf("%s: roster item for %s: %+v (present %v), want subscription both", c.name, contact, it, ok)
	}
}

// tinyPNG is a small PNG image and the hex SHA-1 of its bytes (the
// XEP-0153 avatar hash).
func tinyPNG(t *testing.T) ([]byte, string) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	for i := 0; i < 8; i++ {
		img.Set(i, i, color.RGBA{R: 200, G: uint8(20 * i), B: 40, A: 255})
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(b.Bytes())
	return b.Bytes(), hex.EncodeToString(sum[:])
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Issue 3, Protocol: a message to a bare JID goes to the available
// resources of highest priority; to a full JID, to that resource; when
// every resource has a negative priority it is stored offline; a second
// login with a resource already bound replaces the first (conflict).
func TestXMPPRouting(t *testing.T) {
	t.Parallel()
	x := startXMPP(t, "example.lan", "alice@example.lan", "Alice-pass-1", "bob@example.lan", "Bob-pass-22")
	alice := x.login(t, "alice@example.lan", "Alice-pass-1", clientOpts{})
	five, one, minus := 5, 1, -1
	desk := x.login(t, "bob@example.lan/desk", "Bob-pass-22", clientOpts{priority: &five})
	phone := x.login(t, "bob@example.lan/phone", "Bob-pass-22", clientOpts{priority: &one, direct: true})
	// Each resource sees the other's presence.
	desk.wait(t, "the phone's presence", func(e *xev) bool { return e.Ev == "presence" && e.From == phone.session.JID })
	phone.wait(t, "the desk's presence", func(e *xev) bool { return e.Ev == "presence" && e.From == desk.session.JID })

	alice.send(t, "bob@example.lan", "to the bare JID")
	desk.message(t, "alice@example.lan", "to the bare JID")
	phone.ping(t, "")
	phone.none(t, "message for the higher-priority resource", func(e *xev) bool { return e.Ev == "message" })

	alice.send(t, "bob@example.lan/phone", "to the phone")
	phone.message(t, "alice@example.lan", "to the phone")
	desk.ping(t, "")
	desk.none(t, "message for the phone", func(e *xev) bool { return e.Ev == "message" })

	// Both resources at a negative priority: stored for later.
	desk.do(t, map[string]any{"op": "presence", "priority": minus})
	phone.do(t, map[string]any{"op": "presence", "priority": minus})
	desk.ping(t, "")
	phone.ping(t, "")
	alice.send(t, "bob@example.lan", "while bob is away")
	alice.ping(t, "")
	desk.ping(t, "")
	phone.ping(t, "")
	for _, c := range []*xclient{desk, phone} {
		c.none(t, "message while every resource has a negative priority", func(e *xev) bool { return e.Ev == "message" })
	}

	// A new login as bob/desk replaces the old desk session; at priority 0
	// it gets the stored message.
	again := x.login(t, "bob@example.lan/desk", "Bob-pass-22", clientOpts{})
	desk.disconnected(t, "conflict")
	if m := again.message(t, "alice@example.lan", "while bob is away"); m.Delay == nil {
		t.Fatalf("the message stored while every resource had a negative priority has no delay stamp: %s", m.line)
	}
	phone.ping(t, "")
	phone.none(t, "message meant for the new desk session", func(e *xev) bool { return e.Ev == "message" })
}
