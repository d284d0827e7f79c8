package commands

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// portEngine fails to listen on busy ports, as the engine reconciles, and
// clears its last error when a reconcile succeeds.
type portEngine struct {
	mu   sync.Mutex
	st   status.XMPP
	busy map[string]bool
}

func (e *portEngine) Status() status.XMPP     { e.mu.Lock(); defer e.mu.Unlock(); return e.st }
func (e *portEngine) UserSessions(string) int { return 0 }

func (e *portEngine) watch(s *store.Store) {
	s.Watch(func(c store.Change) {
		cfg, _ := s.XMPP()
		e.mu.Lock()
		defer e.mu.Unlock()
		if p := cfg.PortC2S; e.busy[strconv.Itoa(p)] {
			e.st.LastError, e.st.LastErrorAt = "listen tcp :"+strconv.Itoa(p)+": bind: address already in use", time.Now()
			return
		}
		e.st.LastError, e.st.LastErrorAt = "", time.Time{}
	})
}

// Paper cut 1: a change the engine cannot apply fails the command with
// the engine's reason, in one line, and the previous setting is kept.
func TestPaperCutEngineRefusalFailsTheCommand(t *testing.T) {
	f := newFixture(t)
	eng := &portEngine{busy: map[string]bool{"2222": true}}
	eng.watch(f.env.Store)
	f.env.XMPP = eng
	f.ok("xmpp domain example.com")
	_, err := f.run("xmpp port c2s 2222")
	if err == nil || strings.Contains(err.Error(), "\n") ||
		err.Error() != "xmpp port: the server cannot apply it: listen tcp :2222: bind: address already in use; the previous setting is kept" {
		t.Fatalf("xmpp port c2s 2222 on a busy port: %v", err)
	}
	cfg, _ := f.env.Store.XMPP()
	if cfg.PortC2S != 5222 {
		t.Errorf("c2s port %d after a refused change, want 5222 kept", cfg.PortC2S)
	}
	if st := eng.Status(); st.LastError != "" {
		t.Errorf("last error %q after the previous setting came back", st.LastError)
	}
	if out := f.ok("xmpp"); !strings.Contains(out, "Last error          : none") {
		t.Errorf("xmpp after the refusal:\n%s", out)
	}
	f.ok("xmpp port c2s 2223")
}

// Paper cut 2: a secondary domain's certificate changes in place; the
// domain stays hosted and keeps its accounts.
func TestPaperCutMultiDomainCerts(t *testing.T) {
	f := newFixture(t)
	f.ok("xmpp domain example.com")
	f.ok("xmpp multi-domain add example.org")
	f.ok("xmpp user add carol@example.org", "carol-password")
	f.ok("pki selfsigned org2027 CN:example.org subjectAltName:example.org")
	f.ok("pki selfsigned other CN:other.test subjectAltName:other.test")

	f.refuse("xmpp multi-domain certs example.org other.key other.crt", "example.org")
	f.refuse("xmpp multi-domain certs nothosted.test org2027.key org2027.crt", "nothosted.test is not a hosted domain")
	_, err := f.run("xmpp multi-domain add example.org")
	if err == nil || !strings.Contains(err.Error(), "use xmpp multi-domain certs example.org <key> <crt> [<bundle>]") {
		t.Errorf("multi-domain add of a hosted domain: %v", err)
	}

	out := f.ok("xmpp multi-domain certs example.org org2027.key org2027.crt")
	if !strings.HasPrefix(out, "example.org now uses key org2027.key, certificate org2027.crt (expires ") {
		t.Errorf("multi-domain certs: %q", out)
	}
	cfg, _ := f.env.Store.XMPP()
	if d, ok := cfg.Domain("example.org"); !ok || d.Key != "org2027.key" || d.Cert != "org2027.crt" || d.Primary {
		t.Errorf("example.org after multi-domain certs: %+v", d)
	}
	if _, err := f.env.Store.Account("carol@example.org"); err != nil {
		t.Errorf("carol after multi-domain certs: %v", err)
	}
	// The primary domain: as xmpp certs.
	f.ok("pki selfsigned com2027 CN:example.com subjectAltName:example.com")
	f.ok("xmpp multi-domain certs example.com com2027.key com2027.crt")
	cfg, _ = f.env.Store.XMPP()
	if p, _ := cfg.Primary(); p.Name != "example.com" || p.Cert != "com2027.crt" {
		t.Errorf("primary after multi-domain certs: %+v", p)
	}
}

// Paper cut 4: after xmpp reset (or a new primary domain) the call
// bridges are kept under their old domain; the commands say so, and xmpp
// and xmpp callbridge list show the same component address.
func TestPaperCutBridgesAfterReset(t *testing.T) {
	f := newFixture(t)
	f.ok("xmpp domain example.com")
	f.ok("xmpp callbridge add cb1")
	out := f.ok("xmpp reset", "reset")
	if !strings.Contains(out, "1 call bridge kept with its secret, under a domain no longer hosted: cb1.example.com.") ||
		!strings.Contains(out, "xmpp callbridge del <name>, then xmpp callbridge add <name>") {
		t.Errorf("xmpp reset does not say what happens to the call bridge:\n%s", out)
	}
	f.ok("xmpp domain new.test")
	if out := f.ok("xmpp callbridge list"); out != "***\nCallbridge : cb1\nDomain     : example.com\nSecret     : "+bridgeSecret(t, f, "cb1")+"\n" {
		t.Errorf("callbridge list:\n%s", out)
	}
	if out := f.ok("xmpp"); !strings.Contains(out, "cb1.example.com: example.com is not hosted") {
		t.Errorf("xmpp does not show the bridge under its domain, marked not hosted:\n%s", out)
	}
	f.env.XMPP = &fakeEngine{}
	if out := f.ok("xmpp"); !strings.Contains(out, "cb1.example.com: not connected; example.com is not hosted (to move it: xmpp callbridge del cb1, then add it again)") {
		t.Errorf("xmpp with an engine:\n%s", out)
	}
	out = f.ok("xmpp domain other.test")
	if !strings.Contains(out, "under a domain no longer hosted: cb1.example.com") {
		t.Errorf("xmpp domain (new primary) does not mention the call bridge:\n%s", out)
	}
	f.ok("xmpp callbridge del cb1")
	f.ok("xmpp callbridge add cb1")
	if out := f.ok("xmpp"); strings.Contains(out, "not hosted") || !strings.Contains(out, "cb1.other.test: not connected") {
		t.Errorf("xmpp after moving the bridge:\n%s", out)
	}
}

func bridgeSecret(t *testing.T, f *fixture, name string) string {
	c, err := f.env.Store.Component(name)
	if err != nil {
		t.Fatal(err)
	}
	return c.Secret
}

// Paper cut 6: at a terminal, a password the rules refuse is refused
// before it is asked again; XMPP accounts have their own min_length rule,
// and a refusal names the rule.
func TestPaperCutPasswordRulesFirst(t *testing.T) {
	f := newFixture(t)
	f.ok("xmpp domain example.com")
	interactive := func(line string, answers ...string) (*fakePrompt, error) {
		p := &fakePrompt{answers: answers, interactive: true}
		f.out.Reset()
		c := &Ctx{Env: f.env, User: "root", Role: store.RoleAdmin, Out: &f.out, Prompt: p}
		return p, f.tree.Run(c, line)
	}
	for _, tc := range []struct{ line, rule string }{
		{"user add bob audit", "(user rule min_length)"},
		{"xmpp user add bob@example.com", "(xmpp user rule min_length)"},
	} {
		p, err := interactive(tc.line, "short", "short")
		if err == nil || !strings.Contains(err.Error(), "the password is too short: use at least 8 characters "+tc.rule) {
			t.Errorf("%s with a short password: %v", tc.line, err)
		}
		if len(p.asked) != 1 {
			t.Errorf("%s: asked %q; a refused password must not be asked again", tc.line, p.asked)
		}
	}
	// A good one is still asked twice.
	if p, err := interactive("xmpp user add bob@example.com", "long-enough-1", "long-enough-1"); err != nil || len(p.asked) != 2 || p.asked[1] != "Retype password: " {
		t.Errorf("xmpp user add at a terminal: %v, asked %q", err, p.asked)
	}
	// Separate rules.
	f.ok("xmpp user rule min_length 4")
	f.ok("user rule min_length 14")
	if out := f.ok("xmpp user rule"); out != "min_length  4\n" {
		t.Errorf("xmpp user rule: %q", out)
	}
	f.ok("xmpp user add carol@example.com", "abcd1")
	f.refuse("user add carol audit", "use at least 14 characters (user rule min_length)", "abcdefgh12345")
	f.refuse("xmpp user passwd carol@example.com", "use at least 4 characters (xmpp user rule min_length)", "abc")
	f.refuse("xmpp user rule min_length 0", "out of range")
}

// Paper cut 7: messages an admin reads.
func TestPaperCutMessages(t *testing.T) {
	f := newFixture(t)
	f.refuse("xmpp user add alice", `"alice" is not an address: give user@domain, e.g. alice@example.com`)
	f.ok("xmpp domain chat.example.org")
	f.refuse("xmpp user add alice", `"alice" is not an address: give user@domain, e.g. alice@chat.example.org`)
	f.refuse("xmpp user passwd alice", `"alice" is not an address: give user@domain, e.g. alice@chat.example.org`)
	f.refuse("xmpp user list bogus.test", "xmpp user list: bogus.test is not a hosted domain (hosted: chat.example.org; add it with xmpp multi-domain add)")
	if out := f.ok("xmpp user list chat.example.org"); out != "No XMPP accounts in chat.example.org: add one with xmpp user add <jid>\n" {
		t.Errorf("list of a hosted domain without accounts: %q", out)
	}
	f.ok("xmpp multi-domain add old.test")
	f.ok("xmpp user add bob@old.test", "password-123")
	if out := f.ok("xmpp multi-domain del old.test"); !strings.Contains(out, "its 1 account is kept and works again") {
		t.Errorf("multi-domain del: %q", out)
	}
	// Accounts of a domain no longer hosted are still listed, with a note.
	if out := f.ok("xmpp user list old.test"); !strings.Contains(out, "bob@old.test") || !strings.Contains(out, "old.test is not hosted: these accounts cannot log in") {
		t.Errorf("list of a domain no longer hosted:\n%s", out)
	}
	f.env.Sessions = func() map[string]int { return map[string]int{"root": 1} }
	if out := f.ok("user info root"); !strings.Contains(out, "Logged in        : 1 session\n") {
		t.Errorf("user info:\n%s", out)
	}
}

// Paper cut 8: help prints the families, one line each; help <family>
// narrows; help <command> is as it was (golden help-user-add).
func TestPaperCutHelpFamilies(t *testing.T) {
	f := newFixture(t)
	out := f.ok("help")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) > 25 || !strings.HasPrefix(lines[0], "Command families") {
		t.Errorf("help prints %d lines:\n%s", len(lines), out)
	}
	for _, fam := range []string{"backup", "pki", "user", "xmpp", "xmpp federation", "xmpp user"} {
		if !strings.Contains(out, "\n  "+fam+" ") {
			t.Errorf("help lacks the family %q:\n%s", fam, out)
		}
	}
	if strings.Contains(out, "pki csr") || strings.Contains(out, "xmpp federation secure add") {
		t.Errorf("help lists single commands:\n%s", out)
	}
	pki := f.ok("help pki")
	if strings.Count(pki, "\n") != 6 || !strings.Contains(pki, "  pki verify <crt> [<bundle>]") {
		t.Errorf("help pki:\n%s", pki)
	}
	x := f.ok("help xmpp")
	if !strings.Contains(x, "  xmpp federation …") || strings.Contains(x, "xmpp federation secure add") || !strings.Contains(x, "  xmpp port <c2s|c2s-tls|s2s> <port>") {
		t.Errorf("help xmpp does not narrow to the service's own commands and its families:\n%s", x)
	}
	// The audit role sees only families it has commands in.
	out, _ = f.runAs("auditor", store.RoleAudit, "help")
	if strings.Contains(out, "xmpp callbridge") {
		t.Errorf("help for the audit role lists call bridges (it can run none of them):\n%s", out)
	}
}
