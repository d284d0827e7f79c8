package commands

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// The other fake engines have no sessions and no connections.
func (e *fakeEngine) Sessions(string) []status.Session           { return nil }
func (e *fakeEngine) Kick(string, string) (status.Kicked, error) { return status.Kicked{}, nil }
func (e *fakeEngine) Connections() []status.Connection           { return nil }
func (e *portEngine) Sessions(string) []status.Session           { return nil }
func (e *portEngine) Kick(string, string) (status.Kicked, error) { return status.Kicked{}, nil }
func (e *portEngine) Connections() []status.Connection           { return nil }
func (e *componentEngine) Sessions(string) []status.Session      { return nil }
func (e *componentEngine) Kick(string, string) (status.Kicked, error) {
	return status.Kicked{}, nil
}
func (e *componentEngine) Connections() []status.Connection { return nil }

// monitorEngine has sessions (some on another node) and connections; it
// filters and kicks as the engine does.
type monitorEngine struct {
	fakeEngine
	sessions []status.Session
	conns    []status.Connection
	kicks    []string        // "jid|reason"
	silent   map[string]bool // nodes that do not close what they are asked to
}

func (e *monitorEngine) Sessions(filter string) []status.Session {
	var out []status.Session
	for _, s := range e.sessions {
		bare, _, _ := strings.Cut(s.JID, "/")
		_, domain, _ := strings.Cut(bare, "@")
		if filter == "" || filter == s.JID || filter == bare || filter == domain {
			out = append(out, s)
		}
	}
	status.SortSessions(out)
	return out
}

func (e *monitorEngine) Kick(jid, reason string) (status.Kicked, error) {
	var k status.Kicked
	for _, s := range e.Sessions(jid) {
		switch {
		case s.Node == "":
			k.Here++
		case e.silent[s.Node]:
			k.Unanswered = append(k.Unanswered, s.Node)
		default:
			if k.Nodes == nil {
				k.Nodes = map[string]int{}
			}
			k.Nodes[s.Node]++
		}
	}
	if k.Here == 0 && len(k.Nodes) == 0 && len(k.Unanswered) == 0 {
		return k, fmt.Errorf("no session of %s", jid)
	}
	e.kicks = append(e.kicks, jid+"|"+reason)
	return k, nil
}

func (e *monitorEngine) Connections() []status.Connection { return e.conns }

func sessionsFixture(t *testing.T) (*fixture, *monitorEngine) {
	f := newFixture(t)
	f.ok("xmpp domain example.com")
	f.ok("xmpp multi-domain add example.org")
	e := &monitorEngine{
		sessions: []status.Session{
			{JID: "alice@example.com/phone", Remote: "192.0.2.10:50122", TLS: "TLS 1.3", Mechanism: "SCRAM-SHA-256",
				Since: fixedNow.Add(-2*time.Hour - 5*time.Minute), LastRead: fixedNow.Add(-42 * time.Second), StanzasIn: 120, StanzasOut: 348,
				Available: true, Priority: 5},
			{JID: "alice@example.com/laptop", Remote: "[2001:db8::7]:41022", TLS: "TLS 1.2", Mechanism: "PLAIN",
				Since: fixedNow.Add(-3 * time.Minute), LastRead: fixedNow.Add(-3 * time.Minute), StanzasIn: 4, StanzasOut: 9},
			{JID: "bob@example.org/desk", Remote: "198.51.100.4:60001", TLS: "TLS 1.3", Mechanism: "SCRAM-SHA-1",
				Since: fixedNow.Add(-50 * time.Hour), LastRead: fixedNow.Add(-2 * time.Hour), StanzasIn: 10021, StanzasOut: 52310,
				Available: true, Priority: -1},
			{JID: "carol@example.com/tablet", Node: "node-2", Available: true, Priority: 0},
			{JID: "alice@example.com/car", Node: "node-3"},
		},
		conns: []status.Connection{
			{Kind: status.ConnPreLogin, Peer: "203.0.113.9:51000", Since: fixedNow.Add(-4 * time.Second), BytesIn: 310, BytesOut: 1250},
			{Kind: status.ConnClient, Peer: "192.0.2.10:50122", Name: "alice@example.com/phone", Since: fixedNow.Add(-2*time.Hour - 5*time.Minute), BytesIn: 48213, BytesOut: 210344},
			{Kind: status.ConnServerIn, Peer: "198.51.100.20:44001", Name: "jabber.example.net → example.com", Since: fixedNow.Add(-10 * time.Minute), BytesIn: 3 << 20, BytesOut: 4096},
			{Kind: status.ConnServerOut, Peer: "198.51.100.20:5269", Name: "example.com → jabber.example.net", Since: fixedNow.Add(-9 * time.Minute), BytesIn: 2048, BytesOut: 5 << 30},
			{Kind: status.ConnComponent, Peer: "127.0.0.1:39000", Name: "cb1.example.com", Since: fixedNow.Add(-26 * time.Hour), BytesIn: 900, BytesOut: 1800},
		},
	}
	f.env.XMPP = e
	return f, e
}

func TestXMPPSessionsGolden(t *testing.T) {
	f, _ := sessionsFixture(t)
	golden(t, "xmpp-sessions", f.ok("xmpp sessions"))
	golden(t, "xmpp-sessions-user", f.ok("xmpp sessions Alice@Example.com"))
	golden(t, "xmpp-connections", f.ok("xmpp connections"))
	if out := f.ok("xmpp sessions example.org"); !strings.Contains(out, "bob@example.org/desk") || strings.Contains(out, "alice") ||
		!strings.HasSuffix(out, "\n1 session on this node\n") {
		t.Errorf("xmpp sessions example.org:\n%s", out)
	}
	if out := f.ok("xmpp sessions alice@example.com/phone"); strings.Count(out, "\n") != 3 || !strings.Contains(out, "presence(prio 5)") {
		t.Errorf("xmpp sessions of a full JID:\n%s", out)
	}
	if out := f.ok("xmpp sessions dave@example.com"); out != "No client sessions of dave@example.com\n" {
		t.Errorf("no sessions: %q", out)
	}
}

func TestXMPPSessionsBadArguments(t *testing.T) {
	f, _ := sessionsFixture(t)
	for _, tc := range []struct{ line, want string }{
		{"xmpp sessions bogus.test", "xmpp sessions: bogus.test is not a hosted domain (hosted: example.com, example.org; add it with xmpp multi-domain add)"},
		{"xmpp sessions alice@bogus.test", "xmpp sessions: bogus.test is not a hosted domain"},
		{"xmpp sessions @example.com", "xmpp sessions: \"@example.com\" is not a valid JID"},
		{"xmpp sessions example.com/res", "xmpp sessions: \"example.com/res\" has no user part: give an address like alice@example.com"},
		{"xmpp sessions kick example.com", "xmpp sessions kick: \"example.com\" is not a JID: give alice@example.com (all her sessions) or alice@example.com/phone (one)"},
		{"xmpp sessions kick dave@example.com", "xmpp sessions kick: dave@example.com has no session: see xmpp sessions"},
		{"xmpp sessions kick", "xmpp sessions kick: missing <full-or-bare-jid>"},
	} {
		_, err := f.run(tc.line)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, want %q", tc.line, err, tc.want)
		}
	}
}

func TestXMPPSessionsKick(t *testing.T) {
	f, e := sessionsFixture(t)
	// On this node and on another (which closed its session).
	if out := f.ok("xmpp sessions kick alice@example.com maintenance until 10:00"); out != "Closed 3 sessions of alice@example.com (policy-violation: maintenance until 10:00): 2 on this node, 1 on node node-3\n" {
		t.Errorf("kick of a bare JID: %q", out)
	}
	if out := f.ok("xmpp sessions kick bob@example.org/desk"); out != "Closed 1 session of bob@example.org/desk (policy-violation)\n" {
		t.Errorf("kick of a full JID: %q", out)
	}
	// Only on another node, which does not answer: one line, the fix.
	e.silent = map[string]bool{"node-2": true}
	if _, err := f.run("xmpp sessions kick carol@example.com"); err == nil || err.Error() != "xmpp sessions kick: node node-2 did not close the sessions of carol@example.com within 3s: run the kick there" {
		t.Errorf("kick on a silent node: %v", err)
	}
	if _, err := f.run("xmpp sessions kick nobody@example.com"); err == nil || err.Error() != "xmpp sessions kick: nobody@example.com has no session: see xmpp sessions" {
		t.Errorf("kick of nobody: %v", err)
	}
	if want := []string{"alice@example.com|maintenance until 10:00", "bob@example.org/desk|", "carol@example.com|"}; strings.Join(e.kicks, ",") != strings.Join(want, ",") {
		t.Errorf("kicks %q, want %q", e.kicks, want)
	}
	// Audited, refused to read-only roles.
	entries, _ := f.env.Store.Audit(100)
	found := false
	for _, a := range entries {
		if a.Action == `xmpp sessions kick alice@example.com maintenance until 10:00` && a.Result == "ok" {
			found = true
		}
	}
	if !found {
		t.Errorf("the kick is not in the audit trail: %+v", entries)
	}
	if _, err := f.runAs("viewer", store.RoleAudit, "xmpp sessions kick bob@example.org"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("an auditor kicked: %v", err)
	}
	if _, err := f.runAs("viewer", store.RoleAudit, "xmpp sessions"); err != nil {
		t.Errorf("an auditor cannot list sessions: %v", err)
	}
}

func TestXMPPSessionsNoEngine(t *testing.T) {
	f := newFixture(t)
	for _, line := range []string{"xmpp sessions", "xmpp sessions kick a@b.c", "xmpp connections"} {
		if _, err := f.run(line); err == nil || !strings.HasSuffix(err.Error(), "not available: no XMPP engine in this process") {
			t.Errorf("%s: %v", line, err)
		}
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{-time.Second: "0s", 42 * time.Second: "42s", 185 * time.Second: "3m05s",
		2*time.Hour + 10*time.Minute: "2h10m", 99 * time.Hour: "4d3h"} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
