package server

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"mellium.im/sasl"

	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// More of the test client: SASL with mellium's client, matching reads,
// and stanza helpers.

// setConfig applies a setting and waits until the engine has reconciled.
func (f *fixture) setConfig(key, value string, applied func(store.XMPPConfig) bool) {
	f.t.Helper()
	if _, err := f.st.ProposeSettled(context.Background(), store.ConfigSet{Key: key, Value: value}); err != nil {
		f.t.Fatal(err)
	}
	waitFor(f.t, "the engine to apply "+key, func() bool {
		f.eng.mu.Lock()
		defer f.eng.mu.Unlock()
		return applied(f.eng.xmpp)
	})
}

func (f *fixture) addAccount(jid, password string) {
	f.t.Helper()
	a, err := store.NewAccount(jid, password)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.st.ProposeSettled(context.Background(), store.AccountCreate{Accounts: []store.Account{a}}); err != nil {
		f.t.Fatal(err)
	}
}

// bound reports whether a full JID has a session in the router.
func (f *fixture) bound(bare, resource string) bool {
	return f.eng.router.Session(bare, resource) != nil
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expect reads elements until one satisfies match, skipping others (e.g.
// presence echoes); it fails the test at a read error.
func (c *client) expect(what string, match func(*xml.Element) bool) *xml.Element {
	c.t.Helper()
	for {
		el, err := c.rd.Next()
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", what, err)
		}
		if match(el) {
			return el
		}
	}
}

// reply waits for the iq result or error with that id.
func (c *client) reply(id string) *xml.Element {
	c.t.Helper()
	return c.expect("the reply to "+id, func(el *xml.Element) bool {
		return el.Name.Local == "iq" && el.Get("id") == id && (el.Get("type") == "result" || el.Get("type") == "error")
	})
}

// stanzaError returns the condition of a stanza error, "" if none.
func stanzaError(el *xml.Element) string {
	if el.Get("type") != "error" {
		return ""
	}
	e := el.Child("", "error")
	if e == nil {
		return "?no error child"
	}
	for _, c := range e.Elements() {
		if c.Name.Space == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.Name.Local != "text" {
			return c.Name.Local
		}
	}
	return "?no condition"
}

// ping sends a ping to the server and waits for the answer.
func (c *client) ping(id string) *xml.Element {
	c.t.Helper()
	c.send(`<iq type='get' id='` + id + `' to='example.lan'><ping xmlns='urn:xmpp:ping'/></iq>`)
	return c.reply(id)
}

// preauth opens a stream and negotiates TLS, stopping at the SASL
// features.
func (c *client) preauth(domain string) *xml.Element {
	c.t.Helper()
	c.open(domain)
	c.starttls(domain)
	return c.open(domain)
}

// auth runs one SASL exchange with mellium's client and returns the final
// element (<success/> or <failure/>). A success's additional data is
// verified (the server's signature, for SCRAM).
func (c *client) auth(mech sasl.Mechanism, user, password, authzid string) *xml.Element {
	c.t.Helper()
	neg := sasl.NewClient(mech, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte(user), []byte(password), []byte(authzid)
	}))
	_, resp, err := neg.Step(nil)
	if err != nil {
		c.t.Fatal(err)
	}
	c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='` + mech.Name + `'>` + b64(resp) + `</auth>`)
	for {
		el := c.next()
		switch el.Name.Local {
		case "challenge":
			data, err := base64.StdEncoding.DecodeString(el.Text())
			if err != nil {
				c.t.Fatalf("challenge: %v", err)
			}
			_, resp, err := neg.Step(data)
			if err != nil {
				c.t.Fatalf("client step: %v", err)
			}
			c.send(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>` + b64(resp) + `</response>`)
		case "success":
			if t := el.Text(); t != "" {
				data, err := base64.StdEncoding.DecodeString(t)
				if err != nil {
					c.t.Fatalf("success data: %v", err)
				}
				if _, _, err := neg.Step(data); err != nil {
					c.t.Fatalf("the server's final message does not verify: %v", err)
				}
			}
			return el
		default:
			return el
		}
	}
}

func b64(b []byte) string {
	if len(b) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(b)
}

// bind binds a resource ("" lets the server choose) and returns the JID.
func (c *client) bind(resource string) string {
	c.t.Helper()
	r := ""
	if resource != "" {
		r = "<resource>" + resource + "</resource>"
	}
	c.send(`<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>` + r + `</bind></iq>`)
	el := c.reply("bind1")
	if el.Get("type") != "result" {
		c.t.Fatalf("bind: %s", el)
	}
	return el.Child("", "bind").Child("", "jid").Text()
}

// closed reports whether the connection ends (EOF, reset, or a stream
// error followed by the end) within d, skipping anything else.
func (c *client) closedWithin(d time.Duration) (streamErr string, err error) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	defer c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		el, err := c.rd.Next()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return streamErr, err
			}
			return streamErr, nil
		}
		if el.Name.Local == "error" && el.Name.Space == xml.NSStream {
			streamErr = el.Elements()[0].Name.Local
		}
	}
}

// header is a client stream header for domain.
func header(domain string) string {
	return `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='` + domain + `' version='1.0'>`
}

// rawError sends bytes on a fresh connection and returns the stream error.
func (f *fixture) rawError(t *testing.T, send string) string {
	t.Helper()
	c := f.dial()
	c.t = t
	c.send(send)
	c.rd = xml.NewReader(c.conn, xml.DefaultLimits)
	if _, err := c.rd.Header(); err != nil {
		t.Fatal(err)
	}
	return c.streamError()
}

// writeAsync writes a large payload without blocking the test (the server
// may stop reading, and close, half way).
func (c *client) writeAsync(s string) <-chan error {
	done := make(chan error, 1)
	conn := c.conn
	go func() {
		_, err := io.WriteString(conn, s)
		done <- err
	}()
	return done
}
