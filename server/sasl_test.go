package server

import (
	"testing"
	"time"

	"mellium.im/sasl"

	"github.com/parley-xmpp/parley/server/authlimit"
	"github.com/parley-xmpp/parley/server/xml"
)

func saslCondition(el *xml.Element) string {
	if el.Name.Local != "failure" {
		return "<" + el.Name.Local + ">"
	}
	for _, c := range el.Elements() {
		if c.Name.Local != "text" {
			return c.Name.Local
		}
	}
	return "?"
}

func TestSASLSCRAM(t *testing.T) {
	f := start(t)
	for _, mech := range []sasl.Mechanism{sasl.ScramSha256, sasl.ScramSha1} {
		t.Run(mech.Name, func(t *testing.T) {
			c := f.dial()
			c.t = t
			c.preauth("example.lan")
			if el := c.auth(mech, "alice", "alice-password", ""); el.Name.Local != "success" {
				t.Fatalf("auth: %s", el)
			}
			c.open("example.lan")
			if got := c.bind("scram"); got != "alice@example.lan/scram" {
				t.Fatalf("bound %q", got)
			}
		})
	}
	t.Run("authzid of the same user", func(t *testing.T) {
		c := f.dial()
		c.t = t
		c.preauth("example.lan")
		if el := c.auth(sasl.ScramSha256, "alice", "alice-password", "alice@example.lan"); el.Name.Local != "success" {
			t.Fatalf("auth: %s", el)
		}
	})
	t.Run("username is normalized", func(t *testing.T) {
		c := f.dial()
		c.t = t
		c.preauth("example.lan")
		if el := c.auth(sasl.ScramSha256, "ALICE", "alice-password", ""); el.Name.Local != "success" {
			t.Fatalf("auth: %s", el)
		}
		c.open("example.lan")
		if got := c.bind("upper"); got != "alice@example.lan/upper" {
			t.Fatalf("bound %q", got)
		}
	})
}

func TestSASLFailures(t *testing.T) {
	f := start(t)
	tests := []struct {
		name string
		run  func(c *client) *xml.Element
		want string
	}{
		{"wrong password SCRAM-SHA-256", func(c *client) *xml.Element { return c.auth(sasl.ScramSha256, "alice", "wrong", "") }, "not-authorized"},
		{"wrong password SCRAM-SHA-1", func(c *client) *xml.Element { return c.auth(sasl.ScramSha1, "alice", "wrong", "") }, "not-authorized"},
		{"wrong password PLAIN", func(c *client) *xml.Element { return c.auth(sasl.Plain, "alice", "wrong", "") }, "not-authorized"},
		{"unknown user SCRAM", func(c *client) *xml.Element { return c.auth(sasl.ScramSha256, "nobody", "x", "") }, "not-authorized"},
		{"unknown user PLAIN", func(c *client) *xml.Element { return c.auth(sasl.Plain, "nobody", "x", "") }, "not-authorized"},
		{"authzid of another user SCRAM", func(c *client) *xml.Element {
			return c.auth(sasl.ScramSha256, "alice", "alice-password", "bob@example.lan")
		}, "invalid-authzid"},
		{"authzid of another user PLAIN", func(c *client) *xml.Element {
			return c.auth(sasl.Plain, "alice", "alice-password", "bob@example.lan")
		}, "invalid-authzid"},
		{"SCRAM-SHA-256-PLUS is not offered", func(c *client) *xml.Element {
			c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256-PLUS'>` + b64([]byte("p=tls-exporter,,n=alice,r=abcdefgh")) + `</auth>`)
			return c.next()
		}, "invalid-mechanism"},
		{"SCRAM-SHA-1-PLUS is not offered", func(c *client) *xml.Element {
			c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1-PLUS'>` + b64([]byte("p=tls-unique,,n=alice,r=abcdefgh")) + `</auth>`)
			return c.next()
		}, "invalid-mechanism"},
		{"channel binding asked of a plain SCRAM", func(c *client) *xml.Element {
			c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>` + b64([]byte("p=tls-exporter,,n=alice,r=abcdefgh")) + `</auth>`)
			return c.next()
		}, "not-authorized"},
		{"unknown mechanism", func(c *client) *xml.Element {
			c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'/>`)
			return c.next()
		}, "invalid-mechanism"},
		{"bad base64", func(c *client) *xml.Element {
			c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!!not base64***</auth>`)
			return c.next()
		}, "incorrect-encoding"},
		{"bad base64 in a response", func(c *client) *xml.Element {
			c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>` + b64([]byte("n,,n=alice,r=abcdefghijkl")) + `</auth>`)
			if el := c.next(); el.Name.Local != "challenge" {
				return el
			}
			c.send(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%%%</response>`)
			return c.next()
		}, "incorrect-encoding"},
		{"garbage SCRAM message", func(c *client) *xml.Element {
			c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>` + b64([]byte("garbage")) + `</auth>`)
			return c.next()
		}, "not-authorized"},
		{"abort", func(c *client) *xml.Element {
			c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>` + b64([]byte("n,,n=alice,r=abcdefghijkl")) + `</auth>`)
			if el := c.next(); el.Name.Local != "challenge" {
				return el
			}
			c.send(`<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`)
			return c.next()
		}, "aborted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := f.dial()
			c.t = t
			c.preauth("example.lan")
			if got := saslCondition(tc.run(c)); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			// A failure may be retried on the same stream.
			if el := c.auth(sasl.ScramSha256, "alice", "alice-password", ""); el.Name.Local != "success" {
				t.Fatalf("retry: %s", el)
			}
			c.open("example.lan")
			c.bind("")
		})
	}
}

// TestSASLTooManyFailures: the fifth failure on a stream ends it with
// policy-violation. That spends the address's burst: the next attempt from
// it waits for a token even for another account that then logs in, and the
// success takes nothing off the failures (the guess after it gets the token
// that refilled meanwhile, the next one waits again).
func TestSASLTooManyFailures(t *testing.T) {
	f := start(t)
	c := f.dial()
	c.preauth("example.lan")
	for i := 1; i <= 5; i++ {
		if el := c.auth(sasl.ScramSha256, "alice", "wrong", ""); saslCondition(el) != "not-authorized" {
			t.Fatalf("attempt %d: %s", i, el)
		}
	}
	if got := c.streamError(); got != "policy-violation" {
		t.Fatalf("got %s", got)
	}
	slept := func() []time.Duration {
		f.mu.Lock()
		defer f.mu.Unlock()
		return append([]time.Duration(nil), f.slept...)
	}
	if d := slept(); len(d) != 0 {
		t.Fatalf("throttle delays %v within the burst", d)
	}
	iv := authlimit.Default.Address.Interval
	near := func(d, want time.Duration) bool { return d > want-time.Second && d <= want }
	c = f.dial()
	c.preauth("example.lan")
	if el := c.auth(sasl.ScramSha256, "bob", "bob-password", ""); el.Name.Local != "success" {
		t.Fatal(el)
	}
	if d := slept(); len(d) != 1 || !near(d[0], iv) {
		t.Fatalf("bob's login after 5 failures from his address: delays %v, want one of about %v", d, iv)
	}
	c = f.dial()
	c.preauth("example.lan")
	for i := 0; i < 2; i++ {
		if el := c.auth(sasl.Plain, "alice", "wrong", ""); saslCondition(el) != "not-authorized" {
			t.Fatal(el)
		}
	}
	if d := slept(); len(d) != 2 || !near(d[1], iv) {
		t.Fatalf("two guesses after bob's success: delays %v, want a second one of about %v (not reset)", d, iv)
	}
}

// TestPlainNeedsTLS: no mechanism is offered, and none accepted, before
// STARTTLS.
func TestPlainNeedsTLS(t *testing.T) {
	f := start(t)
	c := f.dial()
	feats := c.open("example.lan")
	if feats.Child("", "mechanisms") != nil || feats.Child("urn:ietf:params:xml:ns:xmpp-tls", "starttls") == nil {
		t.Fatalf("features before TLS: %s", feats)
	}
	c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + b64([]byte("\x00alice\x00alice-password")) + `</auth>`)
	if got := c.streamError(); got == "" {
		t.Fatal("no error")
	}
}
