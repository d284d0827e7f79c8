package server

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/store"
)

// A restore (backup rollback) reloads the engine from the restored store:
// sessions of accounts and components that are not in it are closed, the
// others stay, and settings come back as they were.
func TestRestoreClosesWhatIsGone(t *testing.T) {
	f := start(t)
	var snap bytes.Buffer
	if err := f.st.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	f.addAccount("carol@example.lan", "carol-password")
	f.addBridge("cb1")
	f.setConfig(store.XMPPMaxSessions, "7", func(c store.XMPPConfig) bool { return c.MaxSessions == 7 })
	alice := f.dial()
	alice.login("alice", "alice-password", "a")
	carol := f.dial()
	carol.login("carol", "carol-password", "c")
	comp, got := f.connectComponent("cb1.example.lan", cbSecret)
	if got != "handshake" {
		t.Fatalf("handshake: %s", got)
	}
	if err := f.st.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	if err := f.st.Settle(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if e, err := carol.closedWithin(5 * time.Second); err != nil || e != "not-authorized" {
		t.Errorf("carol (not in the snapshot): stream error %q, %v", e, err)
	}
	if e, err := comp.closedWithin(5 * time.Second); err != nil || e != "not-authorized" {
		t.Errorf("cb1 (not in the snapshot): stream error %q, %v", e, err)
	}
	if !f.bound("alice@example.lan", "a") {
		t.Error("alice's session (in the snapshot) was closed")
	}
	f.eng.mu.Lock()
	maxSessions := f.eng.xmpp.MaxSessions
	f.eng.mu.Unlock()
	if maxSessions != 0 {
		t.Errorf("max sessions %d after restore, want the snapshot's (none)", maxSessions)
	}
	if f.eng.router.Components.Known("cb1.example.lan") {
		t.Error("cb1 still known to the router after restore")
	}
}

// The last error goes once a reconcile succeeds: a port in use, then the
// previous port again.
func TestLastErrorClearedWhenTheProblemIsGone(t *testing.T) {
	f := start(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, p, _ := net.SplitHostPort(busy.Addr().String())
	f.setConfig(store.XMPPPortC2S, p, func(c store.XMPPConfig) bool { return fmt.Sprint(c.PortC2S) == p })
	if st := f.eng.Status(); !strings.Contains(st.LastError, "address already in use") {
		t.Fatalf("last error %q with the c2s port in use", st.LastError)
	}
	f.setConfig(store.XMPPPortC2S, fmt.Sprint(f.port), func(c store.XMPPConfig) bool { return c.PortC2S == f.port })
	if st := f.eng.Status(); st.LastError != "" || !st.LastErrorAt.IsZero() {
		t.Errorf("last error %q (at %v) after the port was changed back", st.LastError, st.LastErrorAt)
	}
}
