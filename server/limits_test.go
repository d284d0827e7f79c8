package server

import (
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// Each limit of a client stream, on a raw socket, with the stream error
// RFC 6120 §4.9.3 names for it.

// TestLimitsBeforeAuthentication covers what can go wrong on the plain
// socket, before STARTTLS.
func TestLimitsBeforeAuthentication(t *testing.T) {
	f := start(t)
	h := header("example.lan")
	tests := []struct {
		name string
		send string
		want string
	}{
		{"DTD", h + `<!DOCTYPE foo [<!ENTITY x "lol">]>`, "restricted-xml"},
		{"DTD before the header", `<?xml version='1.0'?><!DOCTYPE stream:stream><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.lan' version='1.0'>`, "restricted-xml"},
		{"comment", h + `<!-- hello -->`, "restricted-xml"},
		{"processing instruction", h + `<?foo bar?>`, "restricted-xml"},
		{"entity reference", h + `<message>&x;</message>`, "restricted-xml"},
		{"invalid UTF-8 in text", h + "<message><body>\xc3\x28</body></message>", "unsupported-encoding"},
		{"invalid UTF-8 in the header", "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.lan\xff' version='1.0'>", "unsupported-encoding"},
		{"non-UTF-8 encoding", `<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.lan' version='1.0'>`, "unsupported-encoding"},
		{"unknown content namespace", `<stream:stream xmlns='urn:example:nope' xmlns:stream='http://etherx.jabber.org/streams' to='example.lan' version='1.0'>`, "invalid-namespace"},
		{"wrong stream namespace", `<stream:stream xmlns='jabber:client' xmlns:stream='urn:not-streams' to='example.lan' version='1.0'>`, "invalid-namespace"},
		{"wrong to", `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='elsewhere.lan' version='1.0'>`, "host-unknown"},
		{"no to", `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`, "host-unknown"},
		{"to with a localpart", `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='alice@example.lan' version='1.0'>`, "host-unknown"},
		{"stanza before TLS", h + `<message to='bob@example.lan'><body>hi</body></message>`, "not-authorized"},
		{"iq before TLS", h + `<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>`, "not-authorized"},
		{"duplicate attribute", h + `<message to='a@example.lan' to='b@example.lan'/>`, "not-well-formed"},
		{"depth before TLS", h + strings.Repeat("<a>", 40), "policy-violation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := f.rawError(t, tc.send); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// TestStanzaBeforeAuthentication: after TLS, before SASL, and after SASL
// before binding, a stanza is not-authorized.
func TestStanzaBeforeAuthentication(t *testing.T) {
	f := start(t)
	c := f.dial()
	c.preauth("example.lan")
	c.send(`<message to='bob@example.lan'><body>hi</body></message>`)
	if got := c.streamError(); got != "not-authorized" {
		t.Fatalf("before SASL: %s", got)
	}

	c = f.dial()
	c.preauth("example.lan")
	c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + b64([]byte("\x00alice\x00alice-password")) + `</auth>`)
	if el := c.next(); el.Name.Local != "success" {
		t.Fatal(el)
	}
	c.open("example.lan")
	c.send(`<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`)
	if got := c.streamError(); got != "not-authorized" {
		t.Fatalf("before bind: %s", got)
	}
}

// TestLimitsInSession covers the limits on a bound session (over TLS).
func TestLimitsInSession(t *testing.T) {
	f := start(t)
	tests := []struct {
		name string
		send string
		want string
	}{
		{"stanza over 256 KiB", `<message to='bob@example.lan'><body>` + strings.Repeat("x", 300<<10) + `</body></message>`, "policy-violation"},
		{"many small elements over 256 KiB", `<message to='bob@example.lan'>` + strings.Repeat("<x/>", 70000) + `</message>`, "policy-violation"},
		{"element depth", `<message to='bob@example.lan'>` + strings.Repeat("<x>", 40) + strings.Repeat("</x>", 40) + `</message>`, "policy-violation"},
		{"comment", `<message><!-- no --></message>`, "restricted-xml"},
		{"processing instruction", `<message><?x y?></message>`, "restricted-xml"},
		{"DTD", `<!DOCTYPE x>`, "restricted-xml"},
		{"invalid UTF-8", "<message to='bob@example.lan'><body>\xff</body></message>", "unsupported-encoding"},
		{"not a stanza", `<foo xmlns='urn:example:foo'/>`, "unsupported-stanza-type"},
		{"text at stream level", `hello<presence/>`, "not-well-formed"},
		{"bad XML", `<message></presence>`, "not-well-formed"},
		{"forged duplicate from", `<message to='bob@example.lan' from='x@y' from='admin@example.lan'><body>hi</body></message>`, "not-well-formed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := f.dial()
			c.t = t
			c.login("alice", "alice-password", "limits")
			done := c.writeAsync(tc.send)
			if got := c.streamError(); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			<-done // the write may fail once the server closes; it must end
			waitFor(t, "the session to be unbound", func() bool { return !f.bound("alice@example.lan", "limits") })
		})
	}
}

// TestStanzaLimitEnforcedWhileReading: the server stops reading an
// oversized stanza at the limit instead of buffering all of it: the error
// comes back while the client is still sending.
func TestStanzaLimitEnforcedWhileReading(t *testing.T) {
	f := start(t)
	c := f.dial()
	c.login("alice", "alice-password", "big")
	// 64 MiB that the server must not wait for.
	chunk := strings.Repeat("y", 64<<10)
	stop := make(chan struct{})
	defer close(stop)
	sent := make(chan int, 1)
	go func() {
		n := 0
		defer func() { sent <- n }()
		if _, err := c.conn.Write([]byte(`<message to='bob@example.lan'><body>`)); err != nil {
			return
		}
		for i := 0; i < 1024; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := c.conn.Write([]byte(chunk)); err != nil {
				return
			}
			n += len(chunk)
		}
	}()
	start := time.Now()
	if got := c.streamError(); got != "policy-violation" {
		t.Fatalf("got %s", got)
	}
	if n := <-sent; n >= 1024*len(chunk) {
		t.Fatalf("the whole 64 MiB was accepted before the error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the error took %v", d)
	}
}

func TestAuthTimeout(t *testing.T) {
	t.Parallel()
	f := start(t)
	// 5 s is the smallest value `xmpp client_auth_timeout` accepts.
	f.setConfig(store.XMPPClientAuthTimeout, "5", func(c store.XMPPConfig) bool { return c.ClientAuthTimeout == 5*time.Second })
	for _, stage := range []string{"after the header", "after TLS"} {
		t.Run(stage, func(t *testing.T) {
			t.Parallel()
			c := f.dial()
			c.t = t
			begin := time.Now()
			if stage == "after the header" {
				c.open("example.lan")
			} else {
				c.preauth("example.lan")
			}
			if got := c.streamError(); got != "connection-timeout" {
				t.Fatalf("got %s", got)
			}
			if d := time.Since(begin); d < 4500*time.Millisecond || d > 8*time.Second {
				t.Fatalf("timed out after %v, want about 5 s", d)
			}
		})
	}
	t.Run("authenticated sessions are not timed out", func(t *testing.T) {
		t.Parallel()
		c := f.dial()
		c.t = t
		c.login("alice", "alice-password", "stays")
		time.Sleep(5500 * time.Millisecond)
		if el := c.ping("p1"); el.Get("type") != "result" {
			t.Fatal(el)
		}
	})
}

// TestIdleTimeout: the idle handling with the session on its goroutine
// (parked only after a second, past the close at 600 ms) and parked
// after 50 ms (the ping and the close then come from the parked wait).
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	t.Run("on its goroutine", func(t *testing.T) {
		t.Parallel()
		testIdleTimeout(t, startWith(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond }))
	})
	t.Run("parked", func(t *testing.T) {
		t.Parallel()
		testIdleTimeout(t, startWith(t, func(c *Config) {
			c.IdleTimeout = 300 * time.Millisecond
			c.ParkAfter = 50 * time.Millisecond
		}))
	})
}

func testIdleTimeout(t *testing.T, f *fixture) {
	t.Run("silent client", func(t *testing.T) {
		t.Parallel()
		c := f.dial()
		c.t = t
		c.login("alice", "alice-password", "idle")
		begin := time.Now()
		ping := c.next()
		if ping.Name.Local != "iq" || ping.Get("type") != "get" || ping.Child("urn:xmpp:ping", "ping") == nil {
			t.Fatalf("expected a ping, got %s", ping)
		}
		if ping.Get("to") != "alice@example.lan/idle" || ping.Get("from") != "example.lan" {
			t.Fatalf("ping addressing: %s", ping)
		}
		if d := time.Since(begin); d < 200*time.Millisecond {
			t.Fatalf("pinged after %v", d)
		}
		if got := c.streamError(); got != "connection-timeout" {
			t.Fatalf("got %s", got)
		}
		if d := time.Since(begin); d < 500*time.Millisecond || d > 3*time.Second {
			t.Fatalf("closed after %v, want about 600 ms", d)
		}
	})

	t.Run("answering the ping keeps the session", func(t *testing.T) {
		t.Parallel()
		c := f.dial()
		c.t = t
		c.login("alice", "alice-password", "answers")
		for i := 0; i < 3; i++ {
			ping := c.expect("a ping", func(el *xml.Element) bool { return el.Child("urn:xmpp:ping", "ping") != nil })
			c.send(`<iq type='result' id='` + ping.Get("id") + `' to='example.lan'/>`)
		}
		if el := c.ping("alive"); el.Get("type") != "result" {
			t.Fatal(el)
		}
	})

	t.Run("whitespace keepalives keep the session", func(t *testing.T) {
		t.Parallel()
		c := f.dial()
		c.t = t
		c.login("alice", "alice-password", "spaces")
		stop := time.Now().Add(1200 * time.Millisecond)
		for time.Now().Before(stop) {
			c.send(" ")
			time.Sleep(100 * time.Millisecond)
		}
		if !f.bound("alice@example.lan", "spaces") {
			t.Fatal("a client sending whitespace every 100 ms was dropped")
		}
		if el := c.ping("alive"); el.Get("type") != "result" {
			t.Fatal(el)
		}
	})
}

func TestMaxSessions(t *testing.T) {
	f := start(t)
	f.setConfig(store.XMPPMaxSessions, "1", func(c store.XMPPConfig) bool { return c.MaxSessions == 1 })
	a := f.dial()
	a.login("alice", "alice-password", "one")
	b := f.dial()
	b.send(header("example.lan"))
	b.rd = xml.NewReader(b.conn, xml.DefaultLimits)
	if _, err := b.rd.Header(); err != nil {
		t.Fatal(err)
	}
	for {
		el := b.next()
		if el.Name.Local == "error" && el.Name.Space == xml.NSStream {
			// "1 session", not "1 sessions" (paper cut 7).
			if el.Elements()[0].Name.Local != "resource-constraint" || !strings.Contains(el.String(), "limit of 1 session is reached") {
				t.Fatalf("second session: %s", el)
			}
			break
		}
	}
	// The first session is unaffected; once it ends, a new one fits.
	if el := a.ping("p"); el.Get("type") != "result" {
		t.Fatal(el)
	}
	a.send(`</stream:stream>`)
	waitFor(t, "the first session to end", func() bool { return !f.bound("alice@example.lan", "one") })
	c := f.dial()
	if got := c.login("bob", "bob-password", "two"); got != "bob@example.lan/two" {
		t.Fatalf("after the first ended: %q", got)
	}
}
