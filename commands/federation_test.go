package commands

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// fakeChecker reports canned steps.
type fakeChecker struct {
	steps []status.Step
	ok    bool
	hang  bool // wait for the context to end instead of returning
	late  bool // report one more step after returning
	wg    sync.WaitGroup

	local, remote string
}

func (k *fakeChecker) FederationCheck(ctx context.Context, local, remote string, report func(status.Step)) bool {
	k.local, k.remote = local, remote
	for _, s := range k.steps {
		report(s)
	}
	if k.hang {
		<-ctx.Done()
		return false
	}
	if k.late {
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			time.Sleep(20 * time.Millisecond)
			report(status.Step{Verdict: status.Fail, Name: "late step", Detail: "reported after the check returned"})
		}()
	}
	return k.ok
}

// transcript runs lines as root and returns each line with its output and
// error, as an admin would see them.
func (f *fixture) transcript(lines ...string) string {
	f.t.Helper()
	var b strings.Builder
	for _, l := range lines {
		out, err := f.run(l)
		b.WriteString("> " + l + "\n" + out)
		if err != nil {
			b.WriteString("error: " + err.Error() + "\n")
		}
	}
	return b.String()
}

// fedState is everything federation and dns commands may change.
type fedState struct {
	fed       store.FederationConfig
	resolvers string
	xmpp      store.XMPPConfig
	files     []string
}

func (f *fixture) fedState() fedState {
	f.t.Helper()
	fed, err := f.env.Store.Federation()
	if err != nil {
		f.t.Fatal(err)
	}
	r, _ := f.env.Store.Config(store.DNSResolvers)
	return fedState{fed: fed, resolvers: r, xmpp: f.config(), files: f.state().files}
}

// refuseFed runs a line that must fail with one line containing want, and
// checks that no setting changed.
func (f *fixture) refuseFed(line, want string) {
	f.t.Helper()
	before := f.fedState()
	out, err := f.run(line)
	switch {
	case err == nil:
		f.t.Errorf("%q: accepted (output %q), want an error containing %q", line, out, want)
	case strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), want):
		f.t.Errorf("%q:\n got %q\nwant %q", line, err, want)
	}
	if after := f.fedState(); !reflect.DeepEqual(before, after) {
		f.t.Errorf("%q was refused but changed something:\nbefore %+v\nafter  %+v", line, before, after)
	}
}

// fedFixture has a primary domain example.com, a second hosted domain
// example.org, and files: partner-ca.pem (a CA), b.lan.crt/.key (a leaf
// signed by it), expired-ca.pem.
func fedFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.ok("xmpp domain example.com")
	f.ok("xmpp multi-domain add example.org")
	start := fixedNow.AddDate(-1, 0, 0)
	ca := makeCert(t, nil, "Partner Root CA", nil, true, start, fixedNow.AddDate(7, 0, 0))
	leaf := makeCert(t, ca, "b.lan", []string{"b.lan"}, false, start, fixedNow.AddDate(1, 0, 0))
	old := makeCert(t, nil, "Old Root CA", nil, true, start, fixedNow.AddDate(0, 0, -1))
	f.put("partner-ca.pem", ca.certPEM)
	f.put("b.lan.crt", leaf.certPEM)
	f.put("b.lan.key", leaf.keyPEM)
	f.put("expired-ca.pem", old.certPEM)
	f.put("both.pem", append(append([]byte(nil), old.certPEM...), ca.certPEM...))
	f.put("key-and-ca.pem", append(append([]byte(nil), leaf.keyPEM...), ca.certPEM...))
	f.put("notes.txt", []byte("hello\n"))
	f.put("empty.pem", nil)
	return f
}

// TestFederationChanges runs every changing command once and records what
// the admin sees (golden), then checks what the store holds.
func TestFederationChanges(t *testing.T) {
	f := fedFixture(t)
	got := f.transcript(
		"xmpp federation enable",
		"xmpp federation enable",
		"xmpp federation idle-timeout 600",
		"xmpp federation secure add B.LAN",
		"xmpp federation secure add *.partner.example",
		"xmpp federation secure add *",
		"xmpp federation secure add b.lan",
		"xmpp federation secure del *",
		"xmpp federation secure list",
		"xmpp federation trust partner-ca.pem",
		"xmpp federation trust both.pem",
		"xmpp federation trust partner-ca.pem",
		"xmpp federation route add c.lan relay.example.net",
		"xmpp federation route add c.lan relay.example.net:5270",
		"xmpp federation route add d.lan 192.0.2.20",
		"xmpp federation route add e.lan [2001:db8::20]:5269",
		"xmpp federation route add f.lan 2001:db8::21",
		"xmpp federation route add g.lan Relay.Example.NET.",
		"xmpp federation route del g.lan",
		"xmpp federation route list",
		"xmpp federation block spam.example",
		"xmpp federation allow partner.example",
		"xmpp federation allow spam.example",
		"xmpp federation block spam.example",
		"xmpp federation allow c.lan",
		"xmpp federation allow-list on",
		"xmpp federation policy del c.lan",
		"xmpp federation policy list",
		"xmpp federation allow-list off",
		"xmpp federation disable",
		"xmpp federation disable",
	)
	golden(t, "xmpp-federation-changes", got)

	fed, err := f.env.Store.Federation()
	if err != nil {
		t.Fatal(err)
	}
	want := store.FederationConfig{
		Enabled:     false,
		IdleTimeout: 600 * time.Second,
		Trust:       "partner-ca.pem",
		Secure:      []string{"*.partner.example", "b.lan"},
		Routes: map[string]string{
			"c.lan": "relay.example.net:5270",
			"d.lan": "192.0.2.20:5269",
			"e.lan": "[2001:db8::20]:5269",
			"f.lan": "[2001:db8::21]:5269",
		},
		Policy: map[string]string{"spam.example": "block", "partner.example": "allow"},
	}
	if !reflect.DeepEqual(fed, want) {
		t.Errorf("store holds\n%+v\nwant\n%+v", fed, want)
	}
	if !fed.SecureRequired("x.partner.example") || fed.SecureRequired("partner.example") || !fed.SecureRequired("B.lan") {
		t.Error("the secure patterns stored do not match as documented")
	}

	// Every change is in the audit trail.
	out := f.ok("audit 100")
	for _, w := range []string{"xmpp federation secure add B.LAN", "xmpp federation route add c.lan relay.example.net:5270", "xmpp federation allow-list on"} {
		if !strings.Contains(out, w) {
			t.Errorf("audit lacks %q", w)
		}
	}
}

func TestFederationStatus(t *testing.T) {
	f := fedFixture(t)
	golden(t, "xmpp-federation-defaults", f.ok("xmpp federation"))

	for _, l := range []string{
		"xmpp federation enable",
		"xmpp federation trust partner-ca.pem",
		"xmpp federation secure add *.partner.example",
		"xmpp federation secure add b.lan",
		"xmpp federation route add c.lan relay.example.net",
		"xmpp federation block spam.example",
		"xmpp federation allow b.lan",
		"xmpp enable",
	} {
		f.ok(l)
	}
	up := fixedNow.Add(-10 * time.Minute)
	f.env.XMPP = &fakeEngine{st: status.XMPP{
		Running: true,
		Since:   fixedNow.Add(-time.Hour),
		Federation: []status.Link{
			{Local: "example.com", Remote: "b.lan", Direction: "in", State: "up", Auth: "dialback", TLS: true, Peer: "127.0.0.12:40312", Since: up, Stanzas: 1},
			{Local: "example.com", Remote: "b.lan", Direction: "out", State: "up", Auth: "EXTERNAL", TLS: true, Peer: "127.0.0.12:5269", Since: up, Queued: 2, Stanzas: 1234},
			{Local: "example.org", Remote: "c.lan", Direction: "out", State: "connecting", Peer: "relay.example.net:5269", Since: fixedNow, Queued: 5},
		},
		FederationFailures: []status.Failure{
			{Local: "example.com", Remote: "d.lan", Error: "remote-server-not-found: no SRV or A/AAAA records for d.lan", At: fixedNow.Add(-30 * time.Minute)},
			{Local: "example.com", Remote: "e.lan", Error: "remote-server-timeout: 127.0.0.15:5269: connection timed out\x1b[31m", At: fixedNow.Add(-5 * time.Minute)},
		},
	}}
	golden(t, "xmpp-federation", f.ok("xmpp federation"))
	golden(t, "xmpp-status-federation", f.ok("xmpp"))

	// The trust bundle vanished from the files area: the status says so.
	if err := f.env.Files.Remove("partner-ca.pem"); err != nil {
		t.Fatal(err)
	}
	if out := f.ok("xmpp federation"); !strings.Contains(out, "partner-ca.pem (missing from the files area: upload it or run xmpp federation trust none)") {
		t.Errorf("missing bundle not reported:\n%s", out)
	}
}

func TestFederationSummary(t *testing.T) {
	f := fedFixture(t)
	line := func() string {
		t.Helper()
		for _, l := range strings.Split(f.ok("xmpp"), "\n") {
			if strings.HasPrefix(l, "Federation ") {
				return strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
			}
		}
		t.Fatal("xmpp has no Federation line")
		return ""
	}
	if got := line(); got != "disabled" {
		t.Errorf("no engine, disabled: %q", got)
	}
	f.ok("xmpp federation enable")
	if got := line(); got != "enabled" {
		t.Errorf("no engine, enabled: %q", got)
	}
	e := &fakeEngine{}
	f.env.XMPP = e
	if got := line(); got != "enabled, no links up" {
		t.Errorf("no links: %q", got)
	}
	e.st.Federation = []status.Link{
		{Local: "example.com", Remote: "b.lan", Direction: "in", State: "up"},
		{Local: "example.com", Remote: "b.lan", Direction: "out", State: "up"},
	}
	if got, want := line(), "enabled, 2 links up (b.lan out, b.lan in)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	for i := 0; i < 7; i++ {
		e.st.Federation = append(e.st.Federation, status.Link{Local: "example.com", Remote: string(rune('c'+i)) + ".lan", Direction: "out", State: "up"})
	}
	e.st.Federation = append(e.st.Federation, status.Link{Local: "example.com", Remote: "z.lan", Direction: "out", State: "connecting"})
	e.st.FederationFailures = []status.Failure{{Local: "example.com", Remote: "y.lan", Error: "remote-server-not-found", At: fixedNow}}
	if got, want := line(), "enabled, 9 links up (b.lan out, b.lan in, c.lan out, d.lan out, e.lan out, 4 more), 1 connecting (z.lan out), 1 recent failure (xmpp federation)"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestFederationDisableWaitsForLinks(t *testing.T) {
	engineWait, enginePoll = 300*time.Millisecond, 5*time.Millisecond
	t.Cleanup(func() { engineWait, enginePoll = 3*time.Second, 50*time.Millisecond })

	t.Run("closed", func(t *testing.T) {
		f := fedFixture(t)
		f.ok("xmpp federation enable")
		e := &fakeEngine{st: status.XMPP{Federation: []status.Link{
			{Local: "example.com", Remote: "b.lan", Direction: "out", State: "up"},
			{Local: "example.com", Remote: "b.lan", Direction: "in", State: "up"},
		}}}
		f.env.Store.Watch(func(c store.Change) {
			if op, ok := c.Op.(store.ConfigSet); ok && op.Key == store.FedEnabled && op.Value == "false" {
				time.AfterFunc(20*time.Millisecond, func() { e.mu.Lock(); e.st.Federation = nil; e.mu.Unlock() })
			}
		})
		f.env.XMPP = e
		out := f.ok("xmpp federation disable")
		if want := "Federation disabled: server-to-server links close, remote servers cannot connect, and stanzas for remote domains bounce back to their senders; 2 links closed\n"; out != want {
			t.Errorf("got  %q\nwant %q", out, want)
		}
	})
	t.Run("still open", func(t *testing.T) {
		f := fedFixture(t)
		f.ok("xmpp federation enable")
		f.env.XMPP = &fakeEngine{st: status.XMPP{Federation: []status.Link{{Local: "example.com", Remote: "b.lan", Direction: "out", State: "closing"}}}}
		out := f.ok("xmpp federation disable")
		if !strings.Contains(out, "1 link is still open: the engine has not reported closing them within 300ms (see xmpp federation)") {
			t.Errorf("got %q", out)
		}
		if fed, _ := f.env.Store.Federation(); fed.Enabled {
			t.Error("still enabled in the store")
		}
	})
}

// Bad input: one clear line, a failure, nothing changed.
func TestFederationBadInput(t *testing.T) {
	f := fedFixture(t)
	f.ok("xmpp federation secure add b.lan")
	f.ok("xmpp federation route add c.lan relay.example.net")
	f.ok("xmpp federation block spam.example")
	f.ok("xmpp federation trust partner-ca.pem")
	tests := []struct{ line, want string }{
		{"xmpp federation frob", `xmpp federation: unknown subcommand "frob"; use one of: allow, allow-list, block, check, disable, enable, idle-timeout, policy, route, secure, trust`},
		{"xmpp federation secure", "xmpp federation secure: incomplete command; it needs one of: add, del, list"},
		{"xmpp federation idle-timeout", "xmpp federation idle-timeout: missing <seconds>"},
		{"xmpp federation idle-timeout 4", "xmpp federation idle-timeout: 4 seconds is out of range: give 5 to 86400 (24 hours)"},
		{"xmpp federation idle-timeout 86401", "86401 seconds is out of range"},
		{"xmpp federation idle-timeout -1", `<seconds> must be a whole number, not "-1"`},
		{"xmpp federation idle-timeout 1e3", `<seconds> must be a whole number, not "1e3"`},
		{"xmpp federation secure add", "xmpp federation secure add: missing <pattern>"},
		{"xmpp federation secure add **", `"**" is not a pattern: use a domain (example.com), *. and a domain for every name below it (*.example.com), or * for every domain`},
		{"xmpp federation secure add *example.com", `"*example.com" is not a pattern`},
		{"xmpp federation secure add a.*.example.com", `"a.*.example.com" is not a pattern`},
		{"xmpp federation secure add *.", `"*." is not a pattern`},
		{"xmpp federation secure add *.*.example.com", `"*.*.example.com" is not a pattern`},
		{"xmpp federation secure add user@b.lan", `"user@b.lan" is an address, not a domain`},
		{"xmpp federation secure add 192.0.2.1", "192.0.2.1 is an IP address"},
		{"xmpp federation secure add bad_name.lan", "is not a valid XMPP domain"},
		{"xmpp federation secure add " + strings.Repeat("a", 300) + ".lan", "is not a valid XMPP domain"},
		{"xmpp federation secure del c.lan", "xmpp federation secure del: c.lan is not on the secure list (see xmpp federation secure list)"},
		{"xmpp federation secure del *.b.lan", "*.b.lan is not on the secure list"},
		{"xmpp federation trust", "xmpp federation trust: missing <bundle>"},
		{"xmpp federation trust missing.pem", "missing.pem: no such file in the files area"},
		{"xmpp federation trust ../etc/ssl/ca.pem", "give a bare file name"},
		{"xmpp federation trust b.lan.crt", "xmpp federation trust: b.lan.crt cannot be a trust bundle: none of its 1 certificate is a CA certificate (basic constraints CA:TRUE)"},
		{"xmpp federation trust b.lan.key", "b.lan.key cannot be a trust bundle: it holds a private key"},
		{"xmpp federation trust key-and-ca.pem", "key-and-ca.pem cannot be a trust bundle: it holds a private key"},
		{"xmpp federation trust notes.txt", "notes.txt cannot be a trust bundle: it holds no certificate: no PEM data found"},
		{"xmpp federation trust empty.pem", "empty.pem cannot be a trust bundle: it holds no certificate: the file is empty"},
		{"xmpp federation trust expired-ca.pem", "expired-ca.pem cannot be a trust bundle: every CA certificate in it has expired (CN=Old Root CA)"},
		{"xmpp federation route add c.lan", "xmpp federation route add: missing <host[:port]>"},
		{"xmpp federation route add example.com relay.example.net", "xmpp federation route add: example.com is hosted on this appliance: federation settings are for remote domains"},
		{"xmpp federation route add d.lan relay.example.net:0", `"0" in "relay.example.net:0" is not a TCP port: give 1 to 65535`},
		{"xmpp federation route add d.lan relay.example.net:65536", `"65536" in "relay.example.net:65536" is not a TCP port`},
		{"xmpp federation route add d.lan relay.example.net:http", `"http" in "relay.example.net:http" is not a TCP port`},
		{"xmpp federation route add d.lan 192.0.2.20:0", `port 0 in "192.0.2.20:0" is not a TCP port`},
		{"xmpp federation route add d.lan 192.0.2.20:99999", `"99999" in "192.0.2.20:99999" is not a TCP port`},
		{"xmpp federation route add d.lan 0.0.0.0", "0.0.0.0 is not the address of a host"},
		{"xmpp federation route add d.lan [relay.example.net]:5269", `"[relay.example.net]:5269" is not host[:port]`},
		{"xmpp federation route add d.lan relay_1.example.net", `"relay_1.example.net" is not a host name`},
		{"xmpp federation route add d.lan *.example.net", "a relay is one host, not a wildcard"},
		{"xmpp federation route add d.lan :5269", `is not a host name`},
		{"xmpp federation route add d.lan 2001:db8::1:5269:x", `is not host[:port]`},
		{"xmpp federation route add *.lan relay.example.net", "a wildcard is not a domain"},
		{"xmpp federation route del d.lan", "xmpp federation route del: d.lan has no route (see xmpp federation route list)"},
		{"xmpp federation block example.org", "example.org is hosted on this appliance"},
		{"xmpp federation block", "xmpp federation block: missing <domain>"},
		{"xmpp federation allow a@b.lan", "is an address, not a domain"},
		{"xmpp federation policy del b.lan", "xmpp federation policy del: b.lan is neither blocked nor allowed (see xmpp federation policy list)"},
		{"xmpp federation allow-list maybe", `xmpp federation allow-list: "maybe" is not one of on, off`},
		{"xmpp federation check", "xmpp federation check: missing <domain>"},
		{"xmpp federation check example.com", "example.com is hosted on this appliance"},
		{"xmpp federation check b.lan other.example", "xmpp federation check: other.example is not hosted on this appliance"},
		{"xmpp federation check b.lan example.com extra", `unexpected argument "extra"`},
		{"xmpp federation check b.lan", "xmpp federation check: the federation check is not available in this process (no XMPP engine runs here)"},
		{"xmpp federation enable now", `unexpected argument "now"`},
	}
	for _, tc := range tests {
		f.refuseFed(tc.line, tc.want)
	}
}

func TestFederationRoles(t *testing.T) {
	f := fedFixture(t)
	f.ok("xmpp federation secure add b.lan")
	f.ok("xmpp federation route add c.lan relay.example.net")
	f.ok("xmpp federation block spam.example")
	f.env.Federation = &fakeChecker{ok: true}
	f.env.DNS = &fakeDNS{records: map[string][]string{"A b.lan": {"127.0.0.12"}}}
	changes := []string{
		"xmpp federation enable",
		"xmpp federation disable",
		"xmpp federation idle-timeout 60",
		"xmpp federation secure add d.lan",
		"xmpp federation secure del b.lan",
		"xmpp federation trust partner-ca.pem",
		"xmpp federation trust none",
		"xmpp federation route add d.lan relay.example.net",
		"xmpp federation route del c.lan",
		"xmpp federation block e.lan",
		"xmpp federation allow e.lan",
		"xmpp federation policy del spam.example",
		"xmpp federation allow-list on",
		"dns resolver add 192.0.2.53",
		"dns resolver del 192.0.2.53",
	}
	reads := []string{
		"xmpp federation",
		"xmpp federation secure list",
		"xmpp federation route list",
		"xmpp federation policy list",
		"xmpp federation check b.lan",
		"dns",
		"dns lookup A b.lan",
		"xmpp",
	}
	for _, role := range []string{store.RoleAudit, store.RoleCrypto} {
		for _, l := range changes {
			before := f.fedState()
			if _, err := f.runAs("someone", role, l); err == nil || !strings.Contains(err.Error(), "permission denied: needs role admin, appadmin") {
				t.Errorf("%s: %q: want permission denied, got %v", role, l, err)
			}
			if !reflect.DeepEqual(before, f.fedState()) {
				t.Errorf("%s: refused %q changed something", role, l)
			}
		}
		for _, l := range reads {
			if _, err := f.runAs("someone", role, l); err != nil {
				t.Errorf("%s: %q refused: %v", role, l, err)
			}
		}
	}
	for _, l := range append(reads, changes...) {
		if _, err := f.runAs("someone", store.RoleAppAdmin, l); err != nil {
			t.Errorf("appadmin: %q refused: %v", l, err)
		}
	}
}

func TestFederationCheck(t *testing.T) {
	works := []status.Step{
		{Verdict: status.OK, Name: "SRV _xmpp-server._tcp.b.lan", Detail: "b.lan:5269 (priority 0, weight 5)"},
		{Verdict: status.Info, Name: "SRV _xmpps-server._tcp.b.lan", Detail: "no records"},
		{Verdict: status.OK, Name: "A b.lan", Detail: "127.0.0.12"},
		{Verdict: status.OK, Name: "TCP 127.0.0.12:5269", Detail: "connected in 1ms"},
		{Verdict: status.OK, Name: "STARTTLS", Detail: "TLS 1.3"},
		{Verdict: status.Warn, Name: "certificate", Detail: "self-signed, names b.lan", Fix: "install a CA-signed certificate on b.lan, or trust its CA with xmpp federation trust <bundle>"},
		{Verdict: status.OK, Name: "dialback", Detail: "b.lan verified example.com", Auth: status.Dialback},
	}
	t.Run("works", func(t *testing.T) {
		f := fedFixture(t)
		f.ok("xmpp federation enable")
		k := &fakeChecker{steps: works, ok: true}
		f.env.Federation = k
		golden(t, "xmpp-federation-check-ok", f.ok("xmpp federation check B.lan"))
		if k.local != "example.com" || k.remote != "b.lan" {
			t.Errorf("checked %s → %s, want example.com → b.lan", k.local, k.remote)
		}
		f.ok("xmpp federation check b.lan Example.ORG")
		if k.local != "example.org" {
			t.Errorf("local domain %q, want example.org", k.local)
		}
	})
	t.Run("external", func(t *testing.T) {
		f := fedFixture(t)
		f.ok("xmpp federation enable")
		f.env.Federation = &fakeChecker{steps: []status.Step{{Verdict: status.OK, Name: "SASL EXTERNAL", Detail: "certificate of b.lan verified", Auth: status.External}}, ok: true}
		if out := f.ok("xmpp federation check b.lan"); !strings.HasSuffix(out, "b.lan: federation works (SASL EXTERNAL)\n") {
			t.Errorf("got %q", out)
		}
	})
	t.Run("auth from the steps' Auth, not their text", func(t *testing.T) {
		f := fedFixture(t)
		f.ok("xmpp federation enable")
		f.env.Federation = &fakeChecker{steps: []status.Step{
			{Verdict: status.OK, Name: "SASL EXTERNAL", Detail: "offered", Auth: status.External},
			{Verdict: status.OK, Name: "certificate name", Detail: "names dialback.external.lan"},
			{Verdict: status.OK, Name: "authentication", Detail: "authenticated with dialback", Auth: status.Dialback},
			{Verdict: status.OK, Name: "note", Detail: "SASL EXTERNAL would work too"},
		}, ok: true}
		if out := f.ok("xmpp federation check b.lan"); !strings.HasSuffix(out, "b.lan: federation works (dialback)\n") {
			t.Errorf("got %q", out)
		}
		f.env.Federation = &fakeChecker{steps: []status.Step{{Verdict: status.OK, Name: "dialback", Detail: "offered"}}, ok: true}
		if out := f.ok("xmpp federation check b.lan"); !strings.HasSuffix(out, "b.lan: federation works\n") {
			t.Errorf("a step without Auth named a way to authenticate: %q", out)
		}
	})
	t.Run("fails", func(t *testing.T) {
		f := fedFixture(t)
		f.ok("xmpp federation secure add *.lan")
		f.ok("xmpp federation route add b.lan 127.0.0.12")
		f.env.Federation = &fakeChecker{steps: []status.Step{
			{Verdict: status.OK, Name: "A b.lan", Detail: "127.0.0.12"},
			{Verdict: status.Fail, Name: "TCP 127.0.0.12:5269", Detail: "connection refused\r\n\x1b]0;owned\x07", Fix: "start the server of b.lan, or open port 5269 in its firewall"},
			{Verdict: status.Fail, Name: "dialback", Detail: "not attempted"},
			{Verdict: "weird", Name: "note", Detail: "unknown verdicts are shown as info"},
		}}
		out, err := f.run("xmpp federation check b.lan")
		golden(t, "xmpp-federation-check-fail", out+"error: "+err.Error()+"\n")
		if err == nil || err.Error() != "b.lan: federation does not work: TCP 127.0.0.12:5269: connection refused???]0;owned?" {
			t.Errorf("verdict %v", err)
		}
	})
	t.Run("blocked", func(t *testing.T) {
		f := fedFixture(t)
		f.ok("xmpp federation enable")
		f.ok("xmpp federation block b.lan")
		f.env.Federation = &fakeChecker{steps: works, ok: true}
		out, err := f.run("xmpp federation check b.lan")
		if !strings.Contains(out, "fail  policy: b.lan is blocked here\n      fix: xmpp federation policy del b.lan\n") {
			t.Errorf("no policy failure:\n%s", out)
		}
		if err == nil || err.Error() != "b.lan: federation does not work: policy: b.lan is blocked here" {
			t.Errorf("verdict %v", err)
		}
		f.ok("xmpp federation policy del b.lan")
		f.ok("xmpp federation allow-list on")
		if _, err := f.run("xmpp federation check b.lan"); err == nil || !strings.Contains(err.Error(), "policy: allow-list mode is on and b.lan is not allowed") {
			t.Errorf("allow-list verdict %v", err)
		}
		f.ok("xmpp federation allow b.lan")
		f.ok("xmpp federation check b.lan")
	})
	t.Run("timeout", func(t *testing.T) {
		checkTimeout = 50 * time.Millisecond
		t.Cleanup(func() { checkTimeout = 60 * time.Second })
		f := fedFixture(t)
		f.ok("xmpp federation enable")
		f.env.Federation = &fakeChecker{steps: works[:1], hang: true}
		out, err := f.run("xmpp federation check b.lan")
		if err == nil || err.Error() != "b.lan: federation does not work: the check did not finish within 50ms" {
			t.Errorf("verdict %v\n%s", err, out)
		}
	})
	t.Run("false without a failed step", func(t *testing.T) {
		f := fedFixture(t)
		f.ok("xmpp federation enable")
		f.env.Federation = &fakeChecker{steps: works[:2], ok: false}
		if _, err := f.run("xmpp federation check b.lan"); err == nil || err.Error() != "b.lan: federation does not work: the check failed without saying why" {
			t.Errorf("verdict %v", err)
		}
	})
	t.Run("late reports are dropped", func(t *testing.T) {
		f := fedFixture(t)
		f.ok("xmpp federation enable")
		k := &fakeChecker{steps: works[:1], ok: true, late: true}
		f.env.Federation = k
		out := f.ok("xmpp federation check b.lan")
		k.wg.Wait()
		if strings.Contains(f.out.String(), "late step") || strings.Contains(out, "late step") {
			t.Errorf("a step reported after the check returned was printed:\n%s", f.out.String())
		}
	})
	t.Run("no domain", func(t *testing.T) {
		f := newFixture(t)
		f.env.Federation = &fakeChecker{ok: true}
		if _, err := f.run("xmpp federation check b.lan"); err == nil || err.Error() != "xmpp federation check: set a domain first: xmpp domain <name>" {
			t.Errorf("got %v", err)
		}
	})
}

func TestFederationHelp(t *testing.T) {
	f := newFixture(t)
	golden(t, "help-xmpp-federation", f.ok("help xmpp federation"))
	golden(t, "help-xmpp-federation-check", f.ok("help xmpp federation check"))
	if got := strings.Join(f.tree.Complete("xmpp federation ", store.RoleAudit, nil), " "); got != "check policy route secure" {
		t.Errorf("audit completes %q", got)
	}
	if got := strings.Join(f.tree.Complete("xmpp federation allow-list ", store.RoleAdmin, nil), " "); got != "off on" {
		t.Errorf("allow-list completes %q", got)
	}
}

func TestParsePattern(t *testing.T) {
	for in, want := range map[string]string{
		"*":                       "*",
		"Example.COM":             "example.com",
		"*.Example.com":           "*.example.com",
		"*.lan":                   "*.lan",
		"bücher.example":          "bücher.example",
		"*.XN--bcher-kva.example": "*.bücher.example",
	} {
		got, err := parsePattern(in)
		if err != nil || got != want {
			t.Errorf("parsePattern(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestFederationTrustReplicated: the federation trust bundle's contents go
// into the replicated store with the setting, so every cluster node gets
// the file.
func TestFederationTrustReplicated(t *testing.T) {
	f := fedFixture(t)
	f.ok("xmpp federation trust partner-ca.pem")
	stored, err := f.env.Store.StoredFile("partner-ca.pem")
	if err != nil {
		t.Fatalf("the trust bundle is not in the replicated store: %v", err)
	}
	want, _ := f.env.Files.ReadFile("partner-ca.pem")
	if string(stored.Data) != string(want) {
		t.Errorf("stored %d bytes, the file has %d", len(stored.Data), len(want))
	}
}
