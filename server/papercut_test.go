package server

import (
	"testing"
	"time"

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
