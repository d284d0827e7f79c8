package server

import (
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// Paper cut 3: xmpp federation idle-timeout applies to links already
// open, not only to those opened afterwards.
func TestFederationIdleTimeoutAppliesToOpenLinks(t *testing.T) {
	fp := federate(t, nil)
	fp.a.set(store.FedIdleTimeout, "3600")
	alice := fp.a.userAt("a.lan", "alice")
	bob := fp.b.userAt("b.lan", "bob")
	alice.send(`<message to='bob@b.lan' type='chat'><body>one</body></message>`)
	bob.expect("the message", isMessageFrom("alice@a.lan/r", "one"))
	if len(fp.a.links("out")) != 1 {
		t.Fatal("no outgoing link")
	}
	start := time.Now()
	fp.a.set(store.FedIdleTimeout, "1")
	waitFor(t, "the open link to close by the new idle timeout", func() bool { return len(fp.a.links("out")) == 0 })
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the link closed %v after the idle timeout was lowered to 1 s", took)
	}
}

// Paper cut 7: "the server's limit of 1 session", not "1 sessions".
func TestMaxSessionsTextSingular(t *testing.T) {
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
			if !strings.Contains(el.String(), "the server&apos;s limit of 1 session is reached") && !strings.Contains(el.String(), "the server's limit of 1 session is reached") {
				t.Errorf("stream error: %s", el)
			}
			return
		}
	}
}
