package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

func TestBind(t *testing.T) {
	f := start(t)
	t.Run("empty resource is generated", func(t *testing.T) {
		c := f.dial()
		c.t = t
		c.preauth("example.lan")
		c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + b64([]byte("\x00alice\x00alice-password")) + `</auth>`)
		c.next()
		c.open("example.lan")
		got := c.bind("")
		if !strings.HasPrefix(got, "alice@example.lan/") || len(got) <= len("alice@example.lan/") {
			t.Fatalf("bound %q", got)
		}
		res := strings.TrimPrefix(got, "alice@example.lan/")
		if !f.bound("alice@example.lan", res) {
			t.Fatal("not in the router")
		}
	})
	t.Run("stream from is ignored", func(t *testing.T) {
		c := f.dial()
		c.t = t
		c.send(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.lan' from='bob@example.lan' version='1.0'>`)
		c.rd = xml.NewReader(c.conn, xml.DefaultLimits)
		c.rd.Header()
		c.next()
		c.starttls("example.lan")
		c.open("example.lan")
		c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + b64([]byte("\x00alice\x00alice-password")) + `</auth>`)
		c.next()
		c.send(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.lan' from='bob@example.lan' version='1.0'>`)
		c.rd = xml.NewReader(c.conn, xml.DefaultLimits)
		c.rd.Header()
		c.next()
		if got := c.bind("x"); got != "alice@example.lan/x" {
			t.Fatalf("bound %q", got)
		}
	})
	t.Run("invalid resource", func(t *testing.T) {
		c := f.dial()
		c.t = t
		c.preauth("example.lan")
		c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + b64([]byte("\x00alice\x00alice-password")) + `</auth>`)
		c.next()
		c.open("example.lan")
		c.send(`<iq type='set' id='bad'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>` + strings.Repeat("r", 2000) + `</resource></bind></iq>`)
		if el := c.reply("bad"); stanzaError(el) != "bad-request" {
			t.Fatalf("long resource: %s", el)
		}
		// The client may try again.
		if got := c.bind("ok"); got != "alice@example.lan/ok" {
			t.Fatalf("bound %q", got)
		}
	})
}

// TestResourceConflict: binding a resource that is in use ends the older
// session with a conflict stream error; the newer one works.
func TestResourceConflict(t *testing.T) {
	f := start(t)
	first := f.dial()
	first.login("alice", "alice-password", "phone")
	first.send(`<presence/>`)
	first.expect("own presence", func(el *xml.Element) bool { return el.Name.Local == "presence" })
	second := f.dial()
	if got := second.login("alice", "alice-password", "phone"); got != "alice@example.lan/phone" {
		t.Fatalf("second bound %q", got)
	}
	if got := first.streamError(); got != "conflict" {
		t.Fatalf("first got %s", got)
	}
	if el := second.ping("p"); el.Get("type") != "result" {
		t.Fatal(el)
	}
	// Messages to the full JID reach the new session.
	b := f.dial()
	b.login("bob", "bob-password", "desk")
	b.send(`<message to='alice@example.lan/phone' type='chat'><body>to the new one</body></message>`)
	m := second.expect("the message", func(el *xml.Element) bool { return el.Name.Local == "message" })
	if m.Child("", "body").Text() != "to the new one" {
		t.Fatal(m)
	}
	if total, _ := f.eng.router.Count(); total != 2 {
		t.Fatalf("%d sessions", total)
	}
}

func TestStanzaErrors(t *testing.T) {
	f := start(t)
	a := f.dial()
	a.login("alice", "alice-password", "err")
	tests := []struct {
		name   string
		send   string
		id     string // the reply's id (messages: the message's id)
		want   string // condition
		wantTo string
	}{
		{"iq to an unknown namespace on the server", `<iq type='get' id='i1' to='example.lan'><query xmlns='urn:example:unknown'/></iq>`, "i1", "service-unavailable", "alice@example.lan/err"},
		{"iq to an unknown namespace, no to", `<iq type='set' id='i2'><query xmlns='urn:example:unknown'/></iq>`, "i2", "service-unavailable", "alice@example.lan/err"},
		{"iq to an unknown user", `<iq type='get' id='i3' to='nobody@example.lan'><vCard xmlns='vcard-temp'/></iq>`, "i3", "service-unavailable", ""},
		{"iq to an offline full JID", `<iq type='get' id='i4' to='bob@example.lan/gone'><ping xmlns='urn:xmpp:ping'/></iq>`, "i4", "service-unavailable", ""},
		{"iq without id", `<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>`, "", "bad-request", ""},
		{"iq without type", `<iq id='i5'><ping xmlns='urn:xmpp:ping'/></iq>`, "i5", "bad-request", ""},
		{"iq get with two children", `<iq type='get' id='i6'><ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/></iq>`, "i6", "bad-request", ""},
		{"iq to a remote domain", `<iq type='get' id='i7' to='remote.example'><ping xmlns='urn:xmpp:ping'/></iq>`, "i7", "remote-server-not-found", ""},
		{"malformed to", `<iq type='get' id='i8' to='a@b@c'><ping xmlns='urn:xmpp:ping'/></iq>`, "i8", "jid-malformed", ""},
		{"message to an unknown local user", `<message id='m1' to='nobody@example.lan' type='chat'><body>hi</body></message>`, "m1", "service-unavailable", "alice@example.lan/err"},
		{"message to a non-hosted domain", `<message id='m2' to='someone@remote.example' type='chat'><body>hi</body></message>`, "m2", "remote-server-not-found", "alice@example.lan/err"},
		{"message to the server", `<message id='m3' to='example.lan' type='chat'><body>hi</body></message>`, "m3", "service-unavailable", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a.t = t
			a.send(tc.send)
			kind := tc.send[1:strings.IndexAny(tc.send, " >")]
			el := a.expect("the error", func(el *xml.Element) bool {
				return el.Name.Local == kind && el.Get("type") == "error" && el.Get("id") == tc.id
			})
			if got := stanzaError(el); got != tc.want {
				t.Fatalf("got %s, want %s: %s", got, tc.want, el)
			}
			if tc.wantTo != "" && el.Get("to") != tc.wantTo {
				t.Fatalf("error addressed to %q: %s", el.Get("to"), el)
			}
			if kind == "message" && el.Child("", "body") == nil {
				t.Errorf("a message error keeps the payload: %s", el)
			}
		})
	}
	// Nothing was stored offline for the unknown user, and the session is
	// still fine.
	if msgs, _ := f.st.Offline("nobody@example.lan"); len(msgs) != 0 {
		t.Fatalf("offline for an unknown user: %d", len(msgs))
	}
	a.t = t
	if el := a.ping("after"); el.Get("type") != "result" {
		t.Fatal(el)
	}
}

// TestFromIsStamped: whatever from a client writes, the server replaces it
// with the session's full JID, on every kind of stanza.
func TestFromIsStamped(t *testing.T) {
	f := start(t)
	a := f.dial()
	a.login("alice", "alice-password", "a")
	b := f.dial()
	b.login("bob", "bob-password", "b")
	b.send(`<presence/>`)
	b.expect("own presence", func(el *xml.Element) bool { return el.Name.Local == "presence" })

	a.send(`<iq type='get' id='forged' to='example.lan' from='bob@example.lan/b'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if el := a.reply("forged"); el.Get("type") != "result" || el.Get("to") != "alice@example.lan/a" {
		t.Fatalf("reply to a forged from: %s", el)
	}
	a.send(`<message to='bob@example.lan/b' from='admin@example.lan' type='chat'><body>1</body></message>`)
	a.send(`<message to='bob@example.lan/b' from='' type='chat'><body>2</body></message>`)
	a.send(`<iq type='get' id='q' to='bob@example.lan/b' from='example.lan'><query xmlns='urn:example:x'/></iq>`)
	for i := 0; i < 3; i++ {
		el := b.expect("a stanza from alice", func(el *xml.Element) bool { return el.Name.Local != "presence" })
		if el.Get("from") != "alice@example.lan/a" {
			t.Fatalf("from not stamped: %s", el)
		}
	}
}

// TestSlowReader: a client that never reads is dropped once its outbound
// queue overflows; whoever floods it is not blocked meanwhile.
func TestSlowReader(t *testing.T) {
	t.Parallel()
	f := start(t)
	b := f.dial()
	b.conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	b.login("bob", "bob-password", "slow")
	a := f.dial()
	a.login("alice", "alice-password", "flood")

	body := strings.Repeat("z", 16<<10)
	msg := `<message to='bob@example.lan/slow' type='chat'><body>` + body + `</body></message>`
	const maxMessages = 4000 // 64 MiB: far more than the queue and the socket buffers
	deadline := time.Now().Add(20 * time.Second)
	sent, worstPing := 0, time.Duration(0)
	for sent < maxMessages && f.bound("bob@example.lan", "slow") {
		if time.Now().After(deadline) {
			t.Fatalf("bob still bound after %d messages", sent)
		}
		for i := 0; i < 50; i++ {
			a.send(msg)
			sent++
		}
		begin := time.Now()
		a.ping(fmt.Sprint("p", sent))
		if d := time.Since(begin); d > worstPing {
			worstPing = d
		}
	}
	if f.bound("bob@example.lan", "slow") {
		t.Fatalf("bob still bound after %d messages (%d MiB)", sent, sent*len(msg)>>20)
	}
	min := stream.MaxQueueBytes / len(msg)
	if sent < min {
		t.Fatalf("bob dropped after %d messages, before his queue could fill (%d)", sent, min)
	}
	t.Logf("bob dropped after %d messages (%d MiB); slowest ping while flooding: %v", sent, sent*len(msg)>>20, worstPing)
	if worstPing > 2*time.Second {
		t.Fatalf("the sender was held up: a ping took %v", worstPing)
	}
	begin := time.Now()
	a.ping("after")
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("ping after the drop took %v", d)
	}
}

// TestDisable: turning the service off ends every session with
// system-shutdown and closes the listeners; turning it on again works.
func TestDisable(t *testing.T) {
	f := start(t)
	a := f.dial()
	a.login("alice", "alice-password", "a")
	if err := f.st.SetLocal(store.XMPPEnabled, "false"); err != nil { // node-local
		t.Fatal(err)
	}
	if got := a.streamError(); got != "system-shutdown" {
		t.Fatalf("got %s", got)
	}
	waitFor(t, "the listeners to close", func() bool { return !f.eng.Status().Running })
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", f.port), time.Second); err == nil {
		c.Close()
		t.Fatal("the listener still accepts")
	}
	if err := f.st.SetLocal(store.XMPPEnabled, "true"); err != nil { // node-local
		t.Fatal(err)
	}
	waitFor(t, "the listeners to open", func() bool { return f.eng.Status().Running })
	c := f.dial()
	if got := c.login("alice", "alice-password", "again"); got != "alice@example.lan/again" {
		t.Fatal(got)
	}
}

// TestDomainAddedLive: a domain added while sessions run is served at once
// (its own certificate by SNI) and nobody is disconnected.
func TestDomainAddedLive(t *testing.T) {
	f := start(t)
	a := f.dial()
	a.login("alice", "alice-password", "stays")
	selfSigned(t, f.files, "second.lan")
	f.addAccount("carol@second.lan", "carol-password")
	if _, err := f.st.ProposeSettled(context.Background(), store.DomainPut{Domain: store.Domain{Name: "second.lan", Key: "second.lan.key", Cert: "second.lan.crt"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second.lan to be hosted", func() bool { return f.eng.Hosted("second.lan") })
	c := f.dial()
	if got := c.loginAt("second.lan", "carol", "carol-password", "r"); got != "carol@second.lan/r" {
		t.Fatalf("bound %q", got)
	}
	if st := c.conn.(*tls.Conn).ConnectionState(); st.PeerCertificates[0].Subject.CommonName != "second.lan" {
		t.Fatalf("certificate for second.lan: %v", st.PeerCertificates[0].Subject)
	}
	if el := a.ping("p"); el.Get("type") != "result" {
		t.Fatalf("the first domain's session: %s", el)
	}
	// Across domains on the same server.
	c.send(`<presence/>`)
	c.expect("own presence", func(el *xml.Element) bool { return el.Name.Local == "presence" })
	a.send(`<message to='carol@second.lan' type='chat'><body>hej</body></message>`)
	m := c.expect("alice's message", func(el *xml.Element) bool { t.Log(el); return el.Name.Local == "message" })
	if m.Get("from") != "alice@example.lan/stays" {
		t.Fatal(m)
	}
	// Removing the domain ends its sessions only.
	if _, err := f.st.ProposeSettled(context.Background(), store.DomainDel{Name: "second.lan"}); err != nil {
		t.Fatal(err)
	}
	if got := c.streamError(); got != "host-gone" {
		t.Fatalf("removed domain's session: %s", got)
	}
	if el := a.ping("p2"); el.Get("type") != "result" {
		t.Fatalf("the first domain's session: %s", el)
	}
}
