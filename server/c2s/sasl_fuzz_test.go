package c2s

import (
	"bytes"
	"encoding/base64"
	stdxml "encoding/xml"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/authlimit"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// fuzzConn is a client connection that sends what the test gives and
// swallows what the server writes.
type fuzzConn struct {
	r   io.Reader
	out bytes.Buffer
}

func (c *fuzzConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error) {
	if c.out.Len() < 1<<16 {
		c.out.Write(p)
	}
	return len(p), nil
}
func (c *fuzzConn) Close() error        { return nil }
func (c *fuzzConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5222} }
func (c *fuzzConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(198, 51, 100, 9), Port: 40000}
}
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

type fuzzAccounts map[string]store.Account

func (a fuzzAccounts) Account(j string) (store.Account, error) {
	if acc, ok := a[j]; ok {
		return acc, nil
	}
	return store.Account{}, errors.New("no such account")
}

var (
	fuzzOnce     sync.Once
	fuzzAccount  store.Account
	fuzzPassword = "alice-password"
)

func xmlText(b []byte) string {
	var s strings.Builder
	stdxml.EscapeText(&s, b)
	return s.String()
}

// FuzzSASL: the server side of a SASL negotiation (after STARTTLS) fed an
// <auth/> with any mechanism name and initial response, then any
// <response/>s: it never panics, never authenticates anyone but alice, and
// alice only with her password (PLAIN; no SCRAM proof can be right, the
// server's nonce is fresh), and it answers every <auth/> with success,
// failure, a challenge or a stream error.
func FuzzSASL(f *testing.F) {
	for _, s := range []struct {
		mech          string
		first, second string
		raw           bool
	}{
		{"PLAIN", "\x00alice\x00alice-password", "", false},
		{"PLAIN", "alice@example.lan\x00alice\x00alice-password", "", false},
		{"PLAIN", "\x00ALICE\x00alice-password", "", false},
		{"PLAIN", "\x00alice\x00wrong", "", false},
		{"PLAIN", "\x00\x00", "", false},
		{"PLAIN", "", "\x00alice\x00alice-password", false},
		{"PLAIN", "not base64!", "", true},
		{"SCRAM-SHA-256", "n,,n=alice,r=rOprNGfwEbeRWgbNEkqO", "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", false},
		{"SCRAM-SHA-1", "n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL", "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", false},
		{"SCRAM-SHA-256", "n,a=bob@example.lan,n=alice,r=abc", "", false},
		{"SCRAM-SHA-256", "p=tls-unique,,n=alice,r=abc", "", false},
		{"SCRAM-SHA-256", "y,,n=al=2Cice,r=abc", "c=eSws,r=abc,p=", false},
		{"SCRAM-SHA-256", "n,,n=,r=", "", false},
		{"SCRAM-SHA-256", "n,,m=ext,n=alice,r=abc", "", false},
		{"SCRAM-SHA-1-PLUS", "p=tls-unique,,n=alice,r=abc", "", false},
		{"DIGEST-MD5", "", "", false},
		{"", "=", "", true},
	} {
		f.Add(s.mech, []byte(s.first), []byte(s.second), s.raw)
	}
	f.Fuzz(fuzzSASL)
}

// fuzzSASL is one run of FuzzSASL; it returns whether alice logged in and
// what the server wrote.
func fuzzSASL(t *testing.T, mech string, first, second []byte, raw bool) {
	saslRun(t, mech, first, second, raw)
}

func saslRun(t *testing.T, mech string, first, second []byte, raw bool) (bool, string) {
	fuzzOnce.Do(func() {
		a, err := store.NewAccount("alice@example.lan", fuzzPassword)
		if err != nil {
			panic(err)
		}
		fuzzAccount = a
	})
	enc := func(b []byte) string {
		if raw {
			return xmlText(b)
		}
		return base64.StdEncoding.EncodeToString(b)
	}
	var in strings.Builder
	in.WriteString(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.lan' version='1.0'>`)
	in.WriteString(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='`)
	stdxml.EscapeText(&in, []byte(mech))
	in.WriteString(`'>` + enc(first) + `</auth>`)
	in.WriteString(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>` + enc(second) + `</response>`)
	in.WriteString(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`)
	conn := &fuzzConn{r: strings.NewReader(in.String())}
	th := authlimit.New(authlimit.Default, "fuzz", nil)
	th.Wait = func(time.Duration, <-chan struct{}) bool { return false }
	cfg := &Config{
		Hosted:      func(d string) bool { return d == "example.lan" },
		Accounts:    fuzzAccounts{"alice@example.lan": fuzzAccount},
		AuthTimeout: func() time.Duration { return 30 * time.Second },
		Limits:      xml.Limits{MaxStanza: 8192, MaxDepth: 8},
		Throttle:    th,
		Log:         logging.Discard(),
	}
	rd := xml.NewReader(conn, cfg.Limits)
	if _, err := rd.Header(); err != nil {
		t.Fatalf("header: %v", err)
	}
	n := &negotiation{cfg: cfg, raw: conn, rd: rd, tls: true, deadline: time.Now().Add(30 * time.Second), domain: "example.lan", headerSent: true}
	auth, err := rd.Next()
	if err != nil {
		return false, "" // the data broke the XML: the reader's business
	}
	ok, err := n.authenticate(auth)
	out := conn.out.String()
	if ok {
		if err != nil {
			t.Fatalf("success with an error: %v", err)
		}
		if n.local != "alice" || !n.authed {
			t.Fatalf("authenticated %q (authed %v)", n.local, n.authed)
		}
		if mech != "PLAIN" || !bytes.Contains(append(append([]byte{}, first...), second...), []byte(fuzzPassword)) {
			t.Fatalf("authenticated alice with %s %q %q", mech, first, second)
		}
		if !strings.Contains(out, "<success") {
			t.Fatalf("authenticated without telling: %q", out)
		}
		return true, out
	}
	if n.authed {
		t.Fatal("authed without success")
	}
	// Ended by the server: a SASL failure, or a stream error. Ended by the
	// input: its end, or XML the reader refused.
	var (
		se *stream.Error
		xe *xml.Error
	)
	switch {
	case err == nil:
		if !strings.Contains(out, "<failure") {
			t.Fatalf("an attempt ended without a SASL failure: %q", out)
		}
	case errors.As(err, &se), errors.Is(err, io.EOF), errors.As(err, &xe):
	default:
		t.Fatalf("ended with an error of an unexpected kind: %T %v", err, err)
	}
	return false, out
}

// The harness itself: alice's password logs her in, anything else fails
// with the RFC's condition.
func TestSASLHarness(t *testing.T) {
	for _, c := range []struct {
		mech          string
		first, second string
		raw           bool
		ok            bool
		want          string
	}{
		{"PLAIN", "\x00alice\x00alice-password", "", false, true, "<success"},
		{"PLAIN", "", "\x00alice\x00alice-password", false, true, "<success"},
		{"PLAIN", "\x00alice\x00wrong", "", false, false, "<not-authorized/>"},
		{"PLAIN", "\x00bob\x00alice-password", "", false, false, "<not-authorized/>"},
		{"PLAIN", "bob@example.lan\x00alice\x00alice-password", "", false, false, "<invalid-authzid/>"},
		{"PLAIN", "%%%", "", true, false, "<incorrect-encoding/>"},
		{"X-NONE", "", "", false, false, "<invalid-mechanism/>"},
		{"SCRAM-SHA-256", "n,,n=alice,r=abcdefgh", "c=biws,r=abcdefgh,p=AAAA", false, false, "<not-authorized/>"},
	} {
		ok, out := saslRun(t, c.mech, []byte(c.first), []byte(c.second), c.raw)
		if ok != c.ok || !strings.Contains(out, c.want) {
			t.Errorf("%s %q %q: ok %v, wrote %q; want %v and %s", c.mech, c.first, c.second, ok, out, c.ok, c.want)
		}
	}
}
