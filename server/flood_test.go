package server

import (
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/xml"
)

// TestNotXMLClosedAtOnce: a TLS ClientHello or an HTTP request on the
// STARTTLS port gets a stream header and not-well-formed at once, not
// after the authentication timeout.
func TestNotXMLClosedAtOnce(t *testing.T) {
	f := start(t)
	for name, send := range map[string]string{
		"TLS ClientHello": string([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}),
		"HTTP request":    "GET / HTTP/1.1\r\nHost: example.lan\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			begin := time.Now()
			if got := f.rawError(t, send); got != "not-well-formed" {
				t.Fatalf("got %s", got)
			}
			if d := time.Since(begin); d > 2*time.Second {
				t.Fatalf("closed after %v, want at once", d)
			}
		})
	}
}

// TestSecondStreamHeaderInSession: a stream header in a bound session is a
// stream error; the stanzas after it are not silently swallowed.
func TestSecondStreamHeaderInSession(t *testing.T) {
	f := start(t)
	c := f.dial()
	c.login("alice", "alice-password", "twice")
	// Without an XML declaration (a processing instruction, refused
	// anyway inside a stream).
	c.send(strings.TrimPrefix(header("example.lan"), "<?xml version='1.0'?>") + `<iq type='get' id='p' to='example.lan'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if got := c.streamError(); got != "unsupported-stanza-type" {
		t.Fatalf("got %s", got)
	}
}

// TestIdleClosedAtTwice: a client silent after sending something is
// pinged after the idle timeout and closed after twice the idle timeout,
// both counted from its last bytes (it was closed at up to 3x).
func TestIdleClosedAtTwice(t *testing.T) {
	const idle = 400 * time.Millisecond
	f := startWith(t, func(c *Config) { c.IdleTimeout = idle })
	c := f.dial()
	c.login("alice", "alice-password", "quiet")
	time.Sleep(idle / 4)
	c.send(" ")
	last := time.Now()
	ping := c.next()
	if ping.Child("urn:xmpp:ping", "ping") == nil {
		t.Fatalf("expected a ping, got %s", ping)
	}
	if d := time.Since(last); d < idle-50*time.Millisecond || d > idle+300*time.Millisecond {
		t.Errorf("pinged %v after the last data, want about %v", d, idle)
	}
	if got := c.streamError(); got != "connection-timeout" {
		t.Fatalf("got %s", got)
	}
	if d := time.Since(last); d < 2*idle-50*time.Millisecond || d > 2*idle+200*time.Millisecond {
		t.Fatalf("closed %v after the last data, want about %v (twice the idle timeout)", d, 2*idle)
	}
}

// TestErrorTextsQuoteABoundedPrefix: what a peer sent is quoted in part.
func TestErrorTextsQuoteABoundedPrefix(t *testing.T) {
	f := start(t)
	long := strings.Repeat("x", 5000)
	for name, send := range map[string]string{
		"host":      `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='` + long + `.lan' version='1.0'>`,
		"namespace": `<stream:stream xmlns='urn:` + long + `' xmlns:stream='http://etherx.jabber.org/streams' to='example.lan' version='1.0'>`,
		"element":   header("example.lan") + `<` + long + `></b>`,
	} {
		t.Run(name, func(t *testing.T) {
			c := f.dial()
			c.t = t
			c.send(send)
			c.rd = xml.NewReader(c.conn, xml.DefaultLimits)
			if _, err := c.rd.Header(); err != nil {
				t.Fatal(err)
			}
			for {
				el, err := c.rd.Next()
				if err != nil {
					t.Fatalf("no stream error: %v", err)
				}
				if el.Name.Local == "error" {
					if n := len(string(el.Bytes(xml.NSStream))); n > 600 {
						t.Fatalf("a stream error of %d bytes: %.300s", n, el.Bytes(xml.NSStream))
					}
					return
				}
			}
		})
	}
}
