package commands

import (
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// The printable ASCII characters other than space, every one allowed in a
// typed secret.
const printableASCII = "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"

func TestCallbridgeAdd(t *testing.T) {
	f := newFixture(t)
	f.refuse("xmpp callbridge add cb1", "xmpp callbridge add: set a domain first: xmpp domain <name>")
	f.refuse("xmpp callbridge add-secret cb1", "xmpp callbridge add-secret: set a domain first: xmpp domain <name>", "kvgP1SRzWVabhiPVAb1x")
	f.ok("xmpp domain example.com")
	f.ok("xmpp multi-domain add chat.example.com")

	out := f.ok("xmpp callbridge add CB1")
	m := regexp.MustCompile(`^Callbridge cb1 added: component cb1\.example\.com, secret ([A-Za-z0-9]{20})\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("add output %q", out)
	}
	comp, err := f.env.Store.Component("cb1")
	if err != nil {
		t.Fatal(err)
	}
	if comp.Name != "cb1" || comp.Domain != "example.com" || comp.Secret != m[1] || comp.JID() != "cb1.example.com" {
		t.Errorf("stored %+v, printed secret %s", comp, m[1])
	}

	long := strings.Repeat("a", 63)
	if out := f.ok("xmpp callbridge add " + long); !strings.HasPrefix(out, "Callbridge "+long+" added: component "+long+".example.com, secret ") {
		t.Errorf("63-character name: %q", out)
	}
	f.ok("xmpp callbridge add cms-2")
	if c2, _ := f.env.Store.Component("cms-2"); c2.Secret == comp.Secret {
		t.Error("two call bridges got the same secret")
	}

	badName := "is not a valid call bridge name: use 1 to 63 letters, digits and hyphens, not starting or ending with a hyphen, e.g. cb1"
	tests := []struct{ line, want string }{
		{"xmpp callbridge add cb1", "xmpp callbridge add: call bridge cb1 already exists (component cb1.example.com): to change its secret, xmpp callbridge del cb1 and add it again"},
		{"xmpp callbridge add Cb1", "call bridge cb1 already exists"},
		{"xmpp callbridge add chat", "xmpp callbridge add: chat.example.com is a hosted XMPP domain, so it cannot also be a component: choose another name"},
		{"xmpp callbridge add cb_1", `xmpp callbridge add: "cb_1" ` + badName},
		{"xmpp callbridge add -cb", `"-cb" ` + badName},
		{"xmpp callbridge add cb-", `"cb-" ` + badName},
		{"xmpp callbridge add cb1.example.com", `"cb1.example.com" ` + badName},
		{"xmpp callbridge add cb1@example.com", badName},
		{"xmpp callbridge add brücke", badName},
		{`xmpp callbridge add ""`, `"" ` + badName},
		{"xmpp callbridge add " + strings.Repeat("a", 64), badName},
		{"xmpp callbridge add", "xmpp callbridge add: missing <name>; usage: xmpp callbridge add <name>"},
		{"xmpp callbridge add cb2 cb3", `xmpp callbridge add: unexpected argument "cb3"; usage: xmpp callbridge add <name>`},
	}
	for _, tc := range tests {
		f.refuse(tc.line, tc.want)
	}
	// The secret is printed, never written to the audit trail.
	if audit := f.ok("audit 20"); !strings.Contains(audit, "xmpp callbridge add CB1") || strings.Contains(audit, comp.Secret) {
		t.Errorf("audit:\n%s", audit)
	}
}

func TestGenerateSecret(t *testing.T) {
	seen := map[string]bool{}
	chars := map[rune]int{}
	for i := 0; i < 300; i++ {
		s, err := generateSecret()
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != secretLength || strings.Trim(s, secretAlphabet) != "" {
			t.Fatalf("secret %q", s)
		}
		if seen[s] {
			t.Fatalf("secret %q generated twice", s)
		}
		seen[s] = true
		for _, r := range s {
			chars[r]++
		}
	}
	// 6000 characters: each of the 62 is expected about 97 times.
	for _, r := range secretAlphabet {
		if chars[r] < 40 || chars[r] > 180 {
			t.Errorf("%c drawn %d times in 6000", r, chars[r])
		}
	}
}

func TestCallbridgeAddSecret(t *testing.T) {
	f := newFixture(t)
	f.ok("xmpp domain example.com")

	// Exec or script mode: the secret is the next line of standard input,
	// read once.
	f.out.Reset()
	p := &fakePrompt{answers: []string{"kvgP1SRzWVabhiPVAb1x"}}
	c := &Ctx{Env: f.env, User: "root", Role: store.RoleAdmin, Out: &f.out, Prompt: p}
	if err := f.tree.Run(c, "xmpp callbridge add-secret Cb1"); err != nil {
		t.Fatal(err)
	}
	if out := f.out.String(); out != "Callbridge cb1 added: component cb1.example.com, with the secret given\n" {
		t.Errorf("add-secret output %q", out)
	}
	if strings.Join(p.asked, "|") != "Secret for cb1: " {
		t.Errorf("asked %q", p.asked)
	}
	if comp, _ := f.env.Store.Component("cb1"); comp.Secret != "kvgP1SRzWVabhiPVAb1x" || comp.Domain != "example.com" {
		t.Errorf("stored %+v", comp)
	}

	for _, secret := range []string{"12345678", strings.Repeat("z", 256), printableASCII} {
		f.ok("xmpp callbridge add-secret ok", secret)
		if comp, _ := f.env.Store.Component("ok"); comp.Secret != secret {
			t.Errorf("secret %q stored as %q", secret, comp.Secret)
		}
		f.ok("xmpp callbridge del ok")
	}

	tests := []struct {
		line, want string
		answers    []string
	}{
		{"xmpp callbridge add-secret cb2", "xmpp callbridge add-secret: the secret is too short: use at least 8 characters", []string{"1234567"}},
		{"xmpp callbridge add-secret cb2", "xmpp callbridge add-secret: the secret is too long: use at most 256 characters", []string{strings.Repeat("z", 257)}},
		{"xmpp callbridge add-secret cb2", "xmpp callbridge add-secret: the secret may hold only printable ASCII characters without spaces: character 5 is a space", []string{"with space"}},
		{"xmpp callbridge add-secret cb2", "character 4 is not printable ASCII", []string{"tab\there-123"}},
		{"xmpp callbridge add-secret cb2", "character 2 is not printable ASCII", []string{"pässwörd-123"}},
		{"xmpp callbridge add-secret cb2", "character 9 is not printable ASCII", []string{"secret-1\x7f"}},
		{"xmpp callbridge add-secret cb2", "xmpp callbridge add-secret: the secret is empty: give 8 to 256 printable ASCII characters without spaces", []string{""}},
		{"xmpp callbridge add-secret cb2", "xmpp callbridge add-secret: no secret given: standard input ended", nil},
		{"xmpp callbridge add-secret cb1", "xmpp callbridge add-secret: call bridge cb1 already exists (component cb1.example.com)", []string{"another-secret"}},
		{"xmpp callbridge add-secret cb_2", `xmpp callbridge add-secret: "cb_2" is not a valid call bridge name`, []string{"another-secret"}},
	}
	for _, tc := range tests {
		f.refuse(tc.line, tc.want, tc.answers...)
	}

	// At a terminal the secret is asked twice, and both must match.
	interactive := func(answers ...string) (*fakePrompt, error) {
		p := &fakePrompt{answers: answers, interactive: true}
		f.out.Reset()
		return p, f.tree.Run(&Ctx{Env: f.env, User: "root", Role: store.RoleAdmin, Out: &f.out, Prompt: p}, "xmpp callbridge add-secret cb3")
	}
	before := f.state()
	if _, err := interactive("secret-one", "secret-two"); err == nil || err.Error() != "xmpp callbridge add-secret: the secrets do not match; nothing was changed" {
		t.Errorf("mismatch: %v", err)
	}
	if _, err := interactive("secret-one"); err == nil || !strings.Contains(err.Error(), "no secret given") {
		t.Errorf("no second secret: %v", err)
	}
	if after := f.state(); len(after.components) != len(before.components) {
		t.Error("a refused add-secret added a call bridge")
	}
	p, err := interactive("secret-one", "secret-one")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p.asked, "|") != "Secret for cb3: |Retype secret: " {
		t.Errorf("asked %q", p.asked)
	}
	if comp, _ := f.env.Store.Component("cb3"); comp.Secret != "secret-one" {
		t.Errorf("cb3 = %+v", comp)
	}

	audit := f.ok("audit 50")
	if !strings.Contains(audit, "xmpp callbridge add-secret Cb1") {
		t.Errorf("audit:\n%s", audit)
	}
	for _, secret := range []string{"kvgP1SRzWVabhiPVAb1x", "secret-one", "1234567", "with space"} {
		if strings.Contains(audit, secret) {
			t.Errorf("the audit trail holds the secret %q", secret)
		}
	}
}

func TestCallbridgeList(t *testing.T) {
	f := newFixture(t)
	if out := f.ok("xmpp callbridge list"); out != "" {
		t.Errorf("empty list: %q", out)
	}
	f.ok("xmpp domain example.com")
	f.ok("xmpp callbridge add-secret cb2", "Zb3mQ8rTn4LpW1xYc7Vd")
	f.ok("xmpp callbridge add-secret cb1", "kvgP1SRzWVabhiPVAb1")
	// A call bridge keeps the domain it was added under.
	f.ok("xmpp domain example.org")
	f.ok("xmpp callbridge add-secret cms3", "s3cret-for-cms3")
	out := f.ok("xmpp callbridge list")
	golden(t, "xmpp-callbridge-list", out)
	if !strings.HasPrefix(out, "***\nCallbridge : cb1\nDomain     : example.com\nSecret     : kvgP1SRzWVabhiPVAb1\n***\n") {
		t.Errorf("list:\n%s", out)
	}
	if strings.Count(out, "***\n") != 3 || strings.Count(out, "\n") != 12 {
		t.Errorf("list has lines other than the blocks:\n%s", out)
	}
	golden(t, "help-xmpp-callbridge", f.ok("help xmpp callbridge"))
}

// componentEngine is a fake engine whose components disconnect when the
// store deletes them (unless sticky).
type componentEngine struct {
	mu     sync.Mutex
	st     status.XMPP
	sticky bool
}

func (e *componentEngine) Status() status.XMPP {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.st
	st.Components = append([]status.Component(nil), e.st.Components...)
	return st
}

func (e *componentEngine) UserSessions(string) int { return 0 }

func (e *componentEngine) watch(s *store.Store) {
	s.Watch(func(c store.Change) {
		op, ok := c.Op.(store.ComponentDel)
		if !ok || e.sticky {
			return
		}
		// Disconnect a little later, as a real engine would.
		time.AfterFunc(20*time.Millisecond, func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			for i, cs := range e.st.Components {
				if strings.HasPrefix(cs.JID, op.Name+".") {
					e.st.Components[i].Connected = false
				}
			}
		})
	})
}

func TestCallbridgeDel(t *testing.T) {
	engineWait, enginePoll = 300*time.Millisecond, 5*time.Millisecond
	t.Cleanup(func() { engineWait, enginePoll = 3*time.Second, 50*time.Millisecond })
	f := newFixture(t)
	f.ok("xmpp domain example.com")
	f.ok("xmpp callbridge add cb1")
	f.ok("xmpp callbridge add cb2")
	f.ok("xmpp callbridge add cb3")

	f.refuse("xmpp callbridge del cb9", "xmpp callbridge del: no call bridge cb9 (see xmpp callbridge list)")
	f.refuse("xmpp callbridge del cb_1", `xmpp callbridge del: "cb_1" is not a valid call bridge name`)
	f.refuse("xmpp callbridge del", "xmpp callbridge del: missing <name>")

	// Without an engine in this process.
	if out := f.ok("xmpp callbridge del CB1"); out != "Callbridge cb1 deleted: cb1.example.com can no longer connect\n" {
		t.Errorf("del: %q", out)
	}
	if _, err := f.env.Store.Component("cb1"); err == nil {
		t.Error("cb1 not deleted")
	}
	f.refuse("xmpp callbridge del cb1", "no call bridge cb1")

	e := &componentEngine{st: status.XMPP{Running: true, Components: []status.Component{
		{JID: "cb2.example.com", Connected: true, Since: fixedNow, From: "10.0.0.5:41234"},
		{JID: "cb3.example.com", Connected: true, Since: fixedNow, From: "10.0.0.6:5000"},
	}}}
	e.watch(f.env.Store)
	f.env.XMPP = e
	if out := f.ok("xmpp callbridge del cb2"); out != "Callbridge cb2 deleted: cb2.example.com was connected from 10.0.0.5:41234 and has been disconnected\n" {
		t.Errorf("del of a connected bridge: %q", out)
	}
	e.sticky = true
	if out := f.ok("xmpp callbridge del cb3"); out != "Callbridge cb3 deleted: cb3.example.com is still connected; the engine has not reported closing it within 300ms (see 'xmpp')\n" {
		t.Errorf("del of a bridge the engine does not disconnect: %q", out)
	}
	if comps, _ := f.env.Store.Components(); len(comps) != 0 {
		t.Errorf("left: %+v", comps)
	}
	if audit := f.ok("audit 5"); !strings.Contains(audit, "xmpp callbridge del cb3") {
		t.Errorf("audit:\n%s", audit)
	}
}

func TestCallbridgePlain(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		line, out, value string
	}{
		{"xmpp callbridge plain allow", "Component plain: allowed from any address; TLS on the c2s-tls port 5223 is always allowed\n", "allow"},
		{"xmpp callbridge plain allow", "Component plain: allowed from any address; TLS on the c2s-tls port 5223 is always allowed\n", "allow"},
		{"xmpp callbridge plain deny", "Component plain: loopback only; TLS on the c2s-tls port 5223 is always allowed\n", ""},
		{"xmpp callbridge plain deny", "Component plain: loopback only; TLS on the c2s-tls port 5223 is always allowed\n", ""},
	}
	for _, tc := range tests {
		if out := f.ok(tc.line); out != tc.out {
			t.Errorf("%s: %q, want %q", tc.line, out, tc.out)
		}
		if v, _ := f.env.Store.Config(store.XMPPComponentPlain); v != tc.value {
			t.Errorf("%s: stored %q", tc.line, v)
		}
		want := "Component plain     : loopback only\n"
		if tc.value == "allow" {
			want = "Component plain     : allowed from any address\n"
		}
		if status := f.ok("xmpp"); !strings.Contains(status, want) {
			t.Errorf("%s: status:\n%s", tc.line, status)
		}
	}
	f.ok("xmpp callbridge plain allow")
	f.refuse("xmpp callbridge plain maybe", `xmpp callbridge plain: "maybe" is not one of allow, deny; usage: xmpp callbridge plain <allow|deny>`)
	f.refuse("xmpp callbridge plain", "xmpp callbridge plain: missing <allow|deny>")
	f.ok("xmpp port c2s-tls 443")
	if out := f.ok("xmpp callbridge plain deny"); !strings.Contains(out, "port 443") {
		t.Errorf("deny: %q", out)
	}
}

func TestCallbridgeStatus(t *testing.T) {
	f := newFixture(t)
	if out := f.ok("xmpp"); !strings.Contains(out, "Components          : none: add a call bridge with xmpp callbridge add <name>\nComponent plain     : loopback only\n") {
		t.Errorf("status without call bridges:\n%s", out)
	}
	f.ok("xmpp domain example.com")
	f.ok("xmpp callbridge add-secret cb1", "kvgP1SRzWVabhiPVAb1")
	f.ok("xmpp callbridge add-secret cb2", "Zb3mQ8rTn4LpW1xYc7Vd")
	f.ok("xmpp callbridge add-secret cb3", "never-connected")
	f.ok("xmpp enable")

	// No engine in this process: the configured components only.
	if out := f.ok("xmpp"); !strings.Contains(out, "Components          : cb1.example.com\n                      cb2.example.com\n                      cb3.example.com\nComponent plain     : loopback only\n") {
		t.Errorf("status without an engine:\n%s", out)
	}

	f.env.XMPP = &fakeEngine{st: status.XMPP{
		Running:   true,
		Since:     fixedNow.Add(-3 * time.Hour),
		Listeners: []string{"0.0.0.0:5222 (c2s, STARTTLS)", "0.0.0.0:5223 (c2s, direct TLS)", "0.0.0.0:5269 (s2s)"},
		Components: []status.Component{
			{JID: "cb9.example.com", LastFailure: "unknown component", LastFailureAt: fixedNow.Add(-5 * time.Minute)},
			{JID: "bridge.example.com", Connected: true, Since: fixedNow.Add(-time.Minute), From: "10.0.0.7:5000"},
			{JID: "idle.example.com"},
			{JID: "cb2.example.com", LastFailure: "authentication failure", LastFailureAt: fixedNow.Add(-10 * time.Minute)},
			{JID: "cb1.example.com", Connected: true, Since: fixedNow.Add(-2 * time.Hour), From: "10.0.0.5:41234"},
		},
	}}
	out := f.ok("xmpp")
	golden(t, "xmpp-status-callbridges", out)
	for _, want := range []string{
		"Components          : cb1.example.com: connected since 2026-11-22T10:00:00Z from 10.0.0.5:41234\n",
		"                      cb2.example.com: not connected (last failure: authentication failure at 2026-11-22T11:50:00Z)\n",
		"                      cb3.example.com: not connected\n",
		"                      bridge.example.com: not configured, connected since 2026-11-22T11:59:00Z from 10.0.0.7:5000\n",
		"                      cb9.example.com: not configured, not connected (last failure: unknown component at 2026-11-22T11:55:00Z)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "idle.example.com") {
		t.Errorf("status shows a component that is neither configured, connected nor failed:\n%s", out)
	}
}

func TestComponentState(t *testing.T) {
	since := fixedNow.Add(-time.Hour)
	tests := []struct {
		cs   status.Component
		want string
	}{
		{status.Component{}, "not connected"},
		{status.Component{Connected: true, Since: since, From: "[2001:db8::5]:5000"}, "connected since 2026-11-22T11:00:00Z from [2001:db8::5]:5000"},
		{status.Component{Connected: true}, "connected"},
		// A failure since it connected (e.g. another node's bridge with a
		// wrong secret) is shown; an older one is not.
		{status.Component{Connected: true, Since: since, From: "10.0.0.5:1", LastFailure: "authentication failure", LastFailureAt: fixedNow},
			"connected since 2026-11-22T11:00:00Z from 10.0.0.5:1 (last failure: authentication failure at 2026-11-22T12:00:00Z)"},
		{status.Component{Connected: true, Since: since, From: "10.0.0.5:1", LastFailure: "authentication failure", LastFailureAt: since.Add(-time.Minute)},
			"connected since 2026-11-22T11:00:00Z from 10.0.0.5:1"},
		{status.Component{LastFailure: "authentication failure"}, "not connected (last failure: authentication failure)"},
		// On a cluster, connected to another node (no cluster here to
		// name it by its address: its id).
		{status.Component{Connected: true, Node: "4f2a"}, "connected to node 4f2a"},
	}
	for _, tc := range tests {
		if got := componentState(&Ctx{Env: &Env{}}, tc.cs); got != tc.want {
			t.Errorf("%+v:\n got %q\nwant %q", tc.cs, got, tc.want)
		}
	}
}

func TestCallbridgeRoles(t *testing.T) {
	f := newFixture(t)
	f.ok("xmpp domain example.com")
	f.ok("xmpp callbridge add cb0")
	tests := []struct {
		role, line string
		ok         bool
	}{
		{store.RoleAppAdmin, "xmpp callbridge add cb1", true},
		{store.RoleAppAdmin, "xmpp callbridge add-secret cb2", true},
		{store.RoleAppAdmin, "xmpp callbridge list", true},
		{store.RoleAppAdmin, "xmpp callbridge plain allow", true},
		{store.RoleAppAdmin, "xmpp callbridge del cb1", true},
		{store.RoleAudit, "xmpp", true},
		{store.RoleAudit, "xmpp callbridge list", false},
		{store.RoleAudit, "xmpp callbridge add cb3", false},
		{store.RoleAudit, "xmpp callbridge del cb0", false},
		{store.RoleCrypto, "xmpp callbridge list", false},
		{store.RoleCrypto, "xmpp callbridge add-secret cb3", false},
		{store.RoleCrypto, "xmpp callbridge plain deny", false},
	}
	for _, tc := range tests {
		out, err := f.runAs("someone", tc.role, tc.line, "secret-for-cb2")
		if tc.ok && err != nil {
			t.Errorf("%s: %q refused: %v", tc.role, tc.line, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "permission denied") || out != "") {
			t.Errorf("%s: %q: want permission denied and no output, got %v %q", tc.role, tc.line, err, out)
		}
	}
	// Reading the secrets is recorded.
	if audit := f.ok("audit 20"); !strings.Contains(audit, "xmpp callbridge list") {
		t.Errorf("audit:\n%s", audit)
	}
	if got := strings.Join(f.tree.Complete("xmpp callbridge ", store.RoleAppAdmin, nil), " "); got != "add add-secret del list plain" {
		t.Errorf("completion: %q", got)
	}
	if got := strings.Join(f.tree.Complete("xmpp callbridge plain ", store.RoleAdmin, nil), " "); got != "allow deny" {
		t.Errorf("completion: %q", got)
	}
	f.refuse("xmpp callbridge", "xmpp callbridge: incomplete command; it needs one of: add, add-secret, del, list, plain (see 'help xmpp callbridge')")
	f.refuse("xmpp callbridge frob", `xmpp callbridge: unknown subcommand "frob"; use one of: add, add-secret, del, list, plain`)
}
