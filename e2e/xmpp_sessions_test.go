package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestXMPPSessions: a slixmpp client logged in over STARTTLS with
// SCRAM-SHA-256 shows in xmpp sessions with its JID, address, TLS version
// and mechanism, and in xmpp connections as a client; xmpp sessions kick
// disconnects it with policy-violation and the reason, says so, and is in
// the audit trail; bad arguments are one line with the fix.
func TestXMPPSessions(t *testing.T) {
	x := startXMPP(t, "ops.lan", "alice@ops.lan", "alice-password-1")
	prio := 5
	alice := x.login(t, "alice@ops.lan/desk", "alice-password-1", clientOpts{mech: "SCRAM-SHA-256", priority: &prio})
	tlsVersion := strings.Replace(alice.session.TLS, "TLSv", "TLS ", 1) // Python's "TLSv1.3"

	var row string
	waitUntil(t, "alice's presence in xmpp sessions", func() bool {
		out := x.mustAdmin(t, "xmpp sessions")
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "alice@ops.lan/desk ") && strings.Contains(l, "presence(prio 5)") {
				row = l
				return true
			}
		}
		return false
	})
	fields := strings.Fields(row)
	// JID ADDRESS TLS(2 words) SASL SINCE(2) IDLE IN OUT FEATURES(2)
	if len(fields) != 12 || !strings.HasPrefix(fields[1], x.host+":") && !strings.HasPrefix(fields[1], "127.0.0.1:") ||
		fields[2]+" "+fields[3] != tlsVersion || fields[4] != "SCRAM-SHA-256" {
		t.Fatalf("xmpp sessions row for alice (TLS %s):\n%s", tlsVersion, row)
	}
	if in := fields[8]; in == "0" {
		t.Errorf("no stanzas counted from alice (roster get, presence): %s", row)
	}
	if out := x.mustAdmin(t, "xmpp sessions ops.lan"); !strings.Contains(out, "alice@ops.lan/desk") || !strings.HasSuffix(out, "1 session on this node\n") {
		t.Errorf("xmpp sessions ops.lan:\n%s", out)
	}
	if out := x.mustAdmin(t, "xmpp sessions bob@ops.lan"); out != "No client sessions of bob@ops.lan\n" {
		t.Errorf("xmpp sessions bob@ops.lan: %q", out)
	}

	conns := x.mustAdmin(t, "xmpp connections")
	t.Logf("xmpp sessions:\n%s\nxmpp connections:\n%s", row, conns)
	found := false
	for _, l := range strings.Split(conns, "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && f[0] == "client" && f[2] == "alice@ops.lan/desk" && f[1] == fields[1] {
			found = true
		}
	}
	if !found || !strings.Contains(conns, "1 client") {
		t.Fatalf("xmpp connections does not list alice's client connection from %s:\n%s", fields[1], conns)
	}

	for _, tc := range []struct{ cmd, want string }{
		{"xmpp sessions bogus.lan", "xmpp sessions: bogus.lan is not a hosted domain (hosted: ops.lan; add it with xmpp multi-domain add)\n"},
		{"xmpp sessions kick ops.lan", "xmpp sessions kick: \"ops.lan\" is not a JID: give alice@ops.lan (all her sessions) or alice@ops.lan/phone (one)\n"},
		{"xmpp sessions kick bob@ops.lan", "xmpp sessions kick: bob@ops.lan has no session: see xmpp sessions\n"},
	} {
		r := x.admin(tc.cmd)
		if r.code == 0 || r.stderr != tc.want {
			t.Errorf("%s: %v\nwant on stderr: %s", tc.cmd, r, tc.want)
		}
	}

	out := x.mustAdmin(t, "xmpp sessions kick alice@ops.lan maintenance")
	if out != "Closed 1 session of alice@ops.lan (policy-violation: maintenance)\n" {
		t.Errorf("xmpp sessions kick: %q", out)
	}
	e := alice.wait(t, "a stream error", func(e *xev) bool { return e.Ev == "stream_error" })
	if e.Condition != "policy-violation" || e.Text != "maintenance" {
		t.Fatalf("alice got stream error %q (%q), want policy-violation (maintenance)\n%s", e.Condition, e.Text, alice.transcript())
	}
	alice.wait(t, "the disconnection", func(e *xev) bool { return e.Ev == "disconnected" })
	waitUntil(t, "alice's session to end", func() bool {
		return x.mustAdmin(t, "xmpp sessions") == "No client sessions\n"
	})
	if audit := x.mustAdmin(t, "audit"); !strings.Contains(audit, "xmpp sessions kick alice@ops.lan maintenance  ok") {
		t.Errorf("the kick is not in the audit trail:\n%s", audit)
	}
}

// waitUntil polls cond (an SSH command each time) for up to 15 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
