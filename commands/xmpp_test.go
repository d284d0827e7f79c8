package commands

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// fakeEngine follows the store like the real engine: it starts when
// xmpp.enabled becomes true and stops when it goes away.
type fakeEngine struct {
	mu    sync.Mutex
	st    status.XMPP
	users map[string]int
	fail  string        // reported as LastError instead of starting
	never bool          // neither starts nor fails
	stop  time.Duration // stops this long after being disabled
}

func (e *fakeEngine) Status() status.XMPP {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.st
}

func (e *fakeEngine) UserSessions(bare string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.users[bare]
}

func (e *fakeEngine) watch(s *store.Store) {
	s.Watch(func(c store.Change) {
		set, _ := c.Op.(store.ConfigSet)
		del, _ := c.Op.(store.ConfigDel)
		if _, reset := c.Op.(store.XMPPReset); !reset && set.Key != store.XMPPEnabled && del.Key != store.XMPPEnabled {
			return
		}
		cfg, _ := s.XMPP()
		e.mu.Lock()
		defer e.mu.Unlock()
		switch {
		case !cfg.Enabled && e.stop > 0:
			time.AfterFunc(e.stop, func() { e.mu.Lock(); e.st.Running = false; e.mu.Unlock() })
		case !cfg.Enabled:
			e.st.Running = false
		case e.fail != "":
			e.st.LastError, e.st.LastErrorAt = e.fail, time.Now()
		case e.never:
		default:
			e.st.Running, e.st.Since = true, time.Now()
			e.st.Listeners = []string{"0.0.0.0:5222 (c2s, STARTTLS)", "0.0.0.0:5223 (c2s, direct TLS)"}
		}
	})
}

// state is everything XMPP commands may change, to check that a refused
// command changed nothing.
type state struct {
	cfg        store.XMPPConfig
	accounts   []string
	files      []string
	components []store.Component
	plain      string
}

func (f *fixture) state() state {
	f.t.Helper()
	cfg, err := f.env.Store.XMPP()
	if err != nil {
		f.t.Fatal(err)
	}
	var st state
	st.cfg = cfg
	accounts, err := f.env.Store.Accounts("")
	if err != nil {
		f.t.Fatal(err)
	}
	for _, a := range accounts {
		st.accounts = append(st.accounts, fmt.Sprintf("%s %x", a.JID, a.SHA256.Salted))
	}
	entries, _ := f.env.Files.List()
	for _, e := range entries {
		st.files = append(st.files, fmt.Sprintf("%s %d", e.Name, e.Size))
	}
	if st.components, err = f.env.Store.Components(); err != nil {
		f.t.Fatal(err)
	}
	st.plain, _ = f.env.Store.Config(store.XMPPComponentPlain)
	return st
}

// refuse runs a line that must fail with one line containing want, and
// checks that nothing changed.
func (f *fixture) refuse(line, want string, answers ...string) {
	f.t.Helper()
	before := f.state()
	_, err := f.run(line, answers...)
	if err == nil {
		f.t.Errorf("%q: accepted, want an error containing %q", line, want)
		return
	}
	if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), want) {
		f.t.Errorf("%q:\n got %q\nwant %q", line, err, want)
	}
	if after := f.state(); !reflect.DeepEqual(before, after) {
		f.t.Errorf("%q was refused but changed something:\nbefore %+v\nafter  %+v", line, before, after)
	}
}

func (f *fixture) config() store.XMPPConfig {
	f.t.Helper()
	cfg, err := f.env.Store.XMPP()
	if err != nil {
		f.t.Fatal(err)
	}
	return cfg
}

// testCert is a key and certificate made with crypto/x509.
type testCert struct {
	key     crypto.Signer
	cert    *x509.Certificate
	keyPEM  []byte
	certPEM []byte
}

var testSerial int64

// makeCert issues a certificate for names (self-signed if parent is nil),
// valid from notBefore to notAfter.
func makeCert(t testing.TB, parent *testCert, cn string, names []string, isCA bool, notBefore, notAfter time.Time) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	testSerial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(testSerial),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		DNSNames:              names,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	parentCert, parentKey := tmpl, crypto.Signer(key)
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	return &testCert{key, cert,
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (f *fixture) put(name string, data []byte) {
	f.t.Helper()
	if err := f.env.Files.WriteFile(name, data, 0o600, false); err != nil {
		f.t.Fatal(err)
	}
}

// certFiles puts a CA (ca.pem), and for each name a key and certificate
// signed by it, into the files area: <name>.key, <name>.crt.
func (f *fixture) certFiles(names ...string) {
	f.t.Helper()
	start, end := fixedNow.AddDate(-1, 0, 0), fixedNow.AddDate(2, 0, 0)
	ca := makeCert(f.t, nil, "Test Root CA", nil, true, start, end.AddDate(5, 0, 0))
	f.put("ca.pem", ca.certPEM)
	for _, n := range names {
		c := makeCert(f.t, ca, n, []string{n}, false, start, end)
		f.put(n+".key", c.keyPEM)
		f.put(n+".crt", c.certPEM)
	}
}

func TestXMPPStatusWithoutEngine(t *testing.T) {
	f := newFixture(t)
	golden(t, "xmpp-status-no-engine", f.ok("xmpp"))
}

func TestXMPPGolden(t *testing.T) {
	f := newFixture(t)
	f.certFiles("example.org")
	f.ok("xmpp domain example.com")
	f.ok("xmpp multi-domain add example.org example.org.key example.org.crt ca.pem")
	f.ok("xmpp multi-domain add chat.example.net")
	f.ok("xmpp listen 127.0.0.1 ::1")
	f.ok("xmpp port c2s-tls 443")
	f.ok("xmpp max-sessions 5000")
	f.ok("xmpp client_auth_timeout 60")
	f.ok("xmpp enable")
	f.env.XMPP = &fakeEngine{
		st: status.XMPP{
			Running:     true,
			Since:       fixedNow.Add(-2*time.Hour - 3*time.Minute),
			Listeners:   []string{"127.0.0.1:5222 (c2s, STARTTLS)", "[::1]:5222 (c2s, STARTTLS)", "127.0.0.1:443 (c2s, direct TLS)", "[::1]:443 (c2s, direct TLS)"},
			Sessions:    3,
			ByDomain:    map[string]int{"example.org": 1, "example.com": 2, "chat.example.net": 0},
			LastError:   "listen tcp 127.0.0.1:5269: bind: address already in use",
			LastErrorAt: fixedNow.Add(-time.Hour),
		},
		users: map[string]int{"alice@example.com": 2},
	}
	golden(t, "xmpp-status", f.ok("xmpp"))
	golden(t, "xmpp-multi-domain-list", f.ok("xmpp multi-domain list"))

	for i, j := range []string{"bob@example.com", "alice@example.com", "carol@example.org"} {
		a, err := store.NewAccount(j, "password-123")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.env.Store.ProposeAt(fixedNow.Add(-time.Duration(i+1)*24*time.Hour), store.AccountCreate{Accounts: []store.Account{a}}); err != nil {
			t.Fatal(err)
		}
	}
	golden(t, "xmpp-user-list", f.ok("xmpp user list"))
	golden(t, "xmpp-user-list-domain", f.ok("xmpp user list Example.COM"))
	f.env.XMPP = nil
	if out := f.ok("xmpp user list example.org"); !strings.Contains(out, "carol@example.org  2026-11-19 12:00  -") {
		t.Errorf("user list without an engine:\n%s", out)
	}
	golden(t, "help-xmpp", f.ok("help xmpp"))
}

func TestXMPPEnableDisable(t *testing.T) {
	engineWait, enginePoll = 300*time.Millisecond, 5*time.Millisecond
	t.Cleanup(func() { engineWait, enginePoll = 3*time.Second, 50*time.Millisecond })

	t.Run("needs a domain", func(t *testing.T) {
		f := newFixture(t)
		f.refuse("xmpp enable", "xmpp enable: set a domain first: xmpp domain <name>")
		if f.config().Enabled {
			t.Error("enabled without a domain")
		}
	})
	t.Run("no engine", func(t *testing.T) {
		f := newFixture(t)
		f.ok("xmpp domain example.com")
		if out := f.ok("xmpp enable"); out != "XMPP enabled\n" {
			t.Errorf("enable: %q", out)
		}
		if !f.config().Enabled {
			t.Error("not enabled")
		}
		if out := f.ok("xmpp"); !strings.Contains(out, "State               : enabled; engine: not running in this process") {
			t.Errorf("status:\n%s", out)
		}
		if out := f.ok("xmpp disable"); out != "XMPP disabled\n" {
			t.Errorf("disable: %q", out)
		}
		if f.config().Enabled {
			t.Error("still enabled")
		}
	})
	t.Run("starts", func(t *testing.T) {
		f := newFixture(t)
		e := &fakeEngine{}
		e.watch(f.env.Store)
		f.env.XMPP = e
		f.ok("xmpp domain example.com")
		if out := f.ok("xmpp enable"); out != "XMPP enabled: listening on 0.0.0.0:5222 (c2s, STARTTLS), 0.0.0.0:5223 (c2s, direct TLS)\n" {
			t.Errorf("enable: %q", out)
		}
		if out := f.ok("xmpp"); !strings.Contains(out, "enabled, running since") {
			t.Errorf("status:\n%s", out)
		}
		if out := f.ok("xmpp disable"); out != "XMPP disabled\n" || e.Status().Running {
			t.Errorf("disable: %q, running %v", out, e.Status().Running)
		}
	})
	t.Run("stops slowly", func(t *testing.T) {
		f := newFixture(t)
		e := &fakeEngine{stop: 30 * time.Millisecond}
		e.watch(f.env.Store)
		f.env.XMPP = e
		f.ok("xmpp domain example.com")
		f.ok("xmpp enable")
		if out := f.ok("xmpp disable"); out != "XMPP disabled\n" {
			t.Errorf("disable: %q", out)
		}
		e.stop = time.Hour
		f.ok("xmpp enable")
		if out := f.ok("xmpp disable"); !strings.Contains(out, "still closing sessions") {
			t.Errorf("disable of an engine that does not stop: %q", out)
		}
	})
	t.Run("cannot start", func(t *testing.T) {
		f := newFixture(t)
		e := &fakeEngine{}
		e.watch(f.env.Store)
		f.env.XMPP = e
		f.ok("xmpp domain example.com")
		// An error from before the command is not this start's error.
		e.st.LastError, e.st.LastErrorAt = "old trouble", time.Now().Add(-time.Minute)
		e.fail = "listen tcp 0.0.0.0:5222: bind: address already in use"
		_, err := f.run("xmpp enable")
		want := "xmpp enable: XMPP is enabled but could not start: listen tcp 0.0.0.0:5222: bind: address already in use; fix it and run xmpp enable again"
		if err == nil || err.Error() != want {
			t.Fatalf("enable with a failing engine: %v", err)
		}
		if !f.config().Enabled {
			t.Error("the setting should stay enabled")
		}
		out := f.ok("xmpp")
		if !strings.Contains(out, "enabled, not running") || !strings.Contains(out, "Last error          : listen tcp 0.0.0.0:5222: bind: address already in use (at ") {
			t.Errorf("status:\n%s", out)
		}
	})
	t.Run("does not report", func(t *testing.T) {
		f := newFixture(t)
		e := &fakeEngine{never: true}
		e.watch(f.env.Store)
		f.env.XMPP = e
		f.ok("xmpp domain example.com")
		if out := f.ok("xmpp enable"); !strings.Contains(out, "has not reported running within 300ms") {
			t.Errorf("enable: %q", out)
		}
	})
}

func TestXMPPReset(t *testing.T) {
	f := newFixture(t)
	e := &fakeEngine{}
	e.watch(f.env.Store)
	f.env.XMPP = e
	f.ok("xmpp domain example.com")
	f.ok("xmpp multi-domain add example.org")
	f.ok("xmpp port s2s 5270")
	f.ok("xmpp listen none")
	f.ok("xmpp enable")
	f.ok("xmpp user add alice@example.com", "password-123")
	f.ok("xmpp callbridge add cb1")
	f.ok("xmpp callbridge plain allow")
	f.ok("xmpp limits pre-auth 300 per-address 7")
	f.ok("xmpp limits stanza-rate 3 burst 9")
	f.env.Store.SetLocal(store.ConfigHostname, "keep.example")

	f.refuse("xmpp reset", "xmpp reset: not confirmed (type reset to confirm); nothing was changed", "yes")
	f.refuse("xmpp reset", "xmpp reset: not confirmed (standard input ended); nothing was changed")

	c := &Ctx{Env: f.env, User: "root", Role: store.RoleAdmin, Out: &f.out, Prompt: &fakePrompt{answers: []string{" reset "}}}
	f.out.Reset()
	if err := f.tree.Run(c, "xmpp reset"); err != nil {
		t.Fatal(err)
	}
	if asked := c.Prompt.(*fakePrompt).asked; len(asked) != 1 || asked[0] != "Type 'reset' to clear the XMPP configuration: " {
		t.Errorf("asked %q", asked)
	}
	if out := f.out.String(); !strings.Contains(out, "2 domains and every xmpp setting removed") || !strings.Contains(out, "accounts and the files in the files area are kept") {
		t.Errorf("reset output %q", out)
	}
	cfg := f.config()
	want := store.XMPPConfig{PortC2S: 5222, PortC2STLS: 5223, PortS2S: 5269, ClientAuthTimeout: 30 * time.Second,
		PreAuthPerAddress: 100, StanzaRate: 100, StanzaBurst: 500}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("after reset: %+v", cfg)
	}
	if e.Status().Running {
		t.Error("the engine still runs after reset")
	}
	if _, err := f.env.Store.Account("alice@example.com"); err != nil {
		t.Errorf("reset deleted an account: %v", err)
	}
	if _, err := f.env.Store.Component("cb1"); err != nil {
		t.Errorf("reset deleted a call bridge: %v", err)
	}
	if v, ok := f.env.Store.Config(store.XMPPComponentPlain); ok {
		t.Errorf("reset kept component plain = %q", v)
	}
	if Hostname(f.env.Store) != "keep.example" {
		t.Error("reset touched a setting outside xmpp")
	}
	if !f.env.Files.Exists("example.com.crt") {
		t.Error("reset removed a file")
	}
	if out := f.ok("audit 1"); !strings.Contains(out, "xmpp reset") {
		t.Errorf("audit:\n%s", out)
	}
}

func TestXMPPDomain(t *testing.T) {
	f := newFixture(t)
	f.refuse("xmpp domain alice@example.com", `"alice@example.com" is an address, not a domain`)
	f.refuse("xmpp domain example.com/res", "is an address, not a domain")
	f.refuse("xmpp domain 192.0.2.1", "xmpp domain: 192.0.2.1 is an IP address: an XMPP domain must be a DNS name")
	f.refuse("xmpp domain [2001:db8::1]", "is an IP address")
	f.refuse("xmpp domain 2001:db8::1", "is an IP address")
	f.refuse("xmpp domain *.example.com", "a wildcard is not a domain")
	f.refuse("xmpp domain exa_mple.com", `"exa_mple.com" is not a valid XMPP domain`)
	f.refuse("xmpp domain bad..example", "not a valid XMPP domain")
	f.refuse(`xmpp domain ""`, "the domain is empty")
	f.refuse("xmpp domain "+strings.Repeat("a", 64)+".example", "not a valid XMPP domain")

	out := f.ok("xmpp domain Example.COM.")
	want := "Generated a self-signed certificate for example.com: example.com.key and example.com.crt. Replace it with a CA-signed one: upload the files, then xmpp certs <key> <crt> [<bundle>]\n" +
		"example.com is now the primary XMPP domain\n"
	if out != want {
		t.Errorf("domain output:\n%s\nwant\n%s", out, want)
	}
	cfg := f.config()
	d, ok := cfg.Primary()
	if !ok || d != (store.Domain{Name: "example.com", Primary: true, Key: "example.com.key", Cert: "example.com.crt"}) {
		t.Fatalf("primary = %+v", d)
	}
	key, _ := f.env.Files.ReadFile("example.com.key")
	crt, _ := f.env.Files.ReadFile("example.com.crt")
	if err := pki.CheckServerCertificate(key, crt, nil, "example.com", fixedNow); err != nil {
		t.Errorf("generated certificate: %v", err)
	}
	if out := f.ok("xmpp domain example.com"); out != "example.com is already the primary XMPP domain\n" {
		t.Errorf("again: %q", out)
	}

	// A new primary replaces the old one; an existing usable pair is reused.
	other := makeCert(t, nil, "other.example", []string{"other.example"}, false, fixedNow.AddDate(0, -1, 0), fixedNow.AddDate(1, 0, 0))
	f.put("other.example.key", other.keyPEM)
	f.put("other.example.crt", other.certPEM)
	out = f.ok("xmpp domain other.example")
	if out != "Using other.example.key and other.example.crt from the files area for other.example\nother.example is now the primary XMPP domain; example.com is no longer hosted (its accounts are kept)\n" {
		t.Errorf("replace: %q", out)
	}
	if cfg := f.config(); len(cfg.Domains) != 1 || cfg.Domains[0].Name != "other.example" {
		t.Errorf("domains after replace: %+v", cfg.Domains)
	}

	// An unusable or half pair under the generated names is not overwritten.
	f.put("mismatch.example.key", other.keyPEM)
	f.put("mismatch.example.crt", crt)
	f.refuse("xmpp domain mismatch.example", "xmpp domain: mismatch.example.key and mismatch.example.crt are in the files area but cannot serve mismatch.example (")
	f.put("half.example.crt", crt)
	f.refuse("xmpp domain half.example", "xmpp domain: half.example.crt is in the files area but half.example.key is not")
	expired := makeCert(t, nil, "old.example", []string{"old.example"}, false, fixedNow.AddDate(-2, 0, 0), fixedNow.AddDate(0, 0, -1))
	f.put("old.example.key", expired.keyPEM)
	f.put("old.example.crt", expired.certPEM)
	f.refuse("xmpp domain old.example", "old.example.crt: CN=old.example expired on")

	// A multi-domain made primary keeps its certificate.
	f.certFiles("multi.example")
	f.ok("xmpp multi-domain add multi.example multi.example.key multi.example.crt")
	if out := f.ok("xmpp domain multi.example"); !strings.Contains(out, "multi.example keeps its certificate multi.example.crt") {
		t.Errorf("promote: %q", out)
	}

	// Internationalized: stored in U-labels, files and certificate in A-labels.
	f.ok("xmpp domain BÜCHER.example")
	if cfg := f.config(); cfg.Domains[0].Name != "bücher.example" || cfg.Domains[0].Cert != "xn--bcher-kva.example.crt" {
		t.Errorf("IDN primary = %+v", cfg.Domains[0])
	}
}

func TestXMPPCerts(t *testing.T) {
	f := newFixture(t)
	f.certFiles("example.com", "example.org")
	f.refuse("xmpp certs example.com.key example.com.crt", "xmpp certs: set a domain first: xmpp domain <name>")
	f.ok("xmpp domain example.com")

	start := fixedNow.AddDate(-1, 0, 0)
	expired := makeCert(t, nil, "example.com", []string{"example.com"}, false, start, fixedNow.AddDate(0, 0, -1))
	f.put("expired.key", expired.keyPEM)
	f.put("expired.crt", expired.certPEM)
	future := makeCert(t, nil, "example.com", []string{"example.com"}, false, fixedNow.AddDate(0, 0, 1), fixedNow.AddDate(1, 0, 0))
	f.put("future.key", future.keyPEM)
	f.put("future.crt", future.certPEM)
	wild := makeCert(t, nil, "*.example.com", []string{"*.example.com"}, false, start, fixedNow.AddDate(1, 0, 0))
	f.put("wild.key", wild.keyPEM)
	f.put("wild.crt", wild.certPEM)
	otherCA := makeCert(t, nil, "Other CA", nil, true, start, fixedNow.AddDate(5, 0, 0))
	f.put("other-ca.pem", otherCA.certPEM)
	f.put("junk.txt", []byte("hello\n"))

	tests := []struct{ line, want string }{
		{"xmpp certs missing.key example.com.crt", "xmpp certs: missing.key: no such file in the files area (upload it with sftp, see 'pki list')"},
		{"xmpp certs example.com.key missing.crt", "xmpp certs: missing.crt: no such file in the files area"},
		{"xmpp certs example.com.key example.com.crt missing.pem", "xmpp certs: missing.pem: no such file in the files area"},
		{"xmpp certs ../etc/key example.com.crt", "give a bare file name"},
		{"xmpp certs junk.txt example.com.crt", "xmpp certs: junk.txt: not a PEM private key"},
		{"xmpp certs example.com.key junk.txt", "xmpp certs: junk.txt: not a certificate"},
		{"xmpp certs example.org.key example.com.crt", "xmpp certs: example.org.key and example.com.crt: the key does not match the certificate"},
		{"xmpp certs expired.key expired.crt", "xmpp certs: expired.crt: CN=example.com expired on 2026-11-21T12:00:00Z: renew it"},
		{"xmpp certs future.key future.crt", "xmpp certs: future.crt: CN=example.com is not valid before 2026-11-23T12:00:00Z"},
		{"xmpp certs example.org.key example.org.crt", "xmpp certs: example.org.crt: does not cover example.com: its names are DNS:example.org; get a certificate whose subjectAltName includes example.com"},
		{"xmpp certs wild.key wild.crt", "xmpp certs: wild.crt: does not cover example.com"},
		{"xmpp certs example.com.key example.com.crt other-ca.pem", "xmpp certs: other-ca.pem: CN=example.com is not signed by any certificate in the bundle"},
		{"xmpp certs example.com.key example.com.crt junk.txt", "xmpp certs: junk.txt: not a certificate"},
		{"xmpp certs example.com.key", "xmpp certs: missing <crt>"},
	}
	for _, tc := range tests {
		f.refuse(tc.line, tc.want)
	}

	out := f.ok("xmpp certs example.com.key example.com.crt ca.pem")
	if out != "example.com now uses key example.com.key, certificate example.com.crt (expires 2028-11-22), bundle ca.pem\n" {
		t.Errorf("certs: %q", out)
	}
	if d := f.config().Domains[0]; d != (store.Domain{Name: "example.com", Primary: true, Key: "example.com.key", Cert: "example.com.crt", Bundle: "ca.pem"}) {
		t.Errorf("primary = %+v", d)
	}
	f.ok("xmpp certs example.com.key example.com.crt")
	if d := f.config().Domains[0]; d.Bundle != "" {
		t.Errorf("bundle kept: %+v", d)
	}

	// certs none: the self-signed pair is generated (the old one under the
	// domain's name was replaced by the CA-signed files, which are usable).
	f.env.Files.Remove("example.com.key")
	f.env.Files.Remove("example.com.crt")
	out = f.ok("xmpp certs none")
	if !strings.HasPrefix(out, "Generated a self-signed certificate for example.com: example.com.key and example.com.crt.") {
		t.Errorf("certs none: %q", out)
	}
	if out := f.ok("xmpp certs none"); out != "example.com already uses the self-signed example.com.key and example.com.crt\n" {
		t.Errorf("certs none again: %q", out)
	}
}

func TestXMPPMultiDomain(t *testing.T) {
	f := newFixture(t)
	f.certFiles("example.org", "example.net")
	if out := f.ok("xmpp multi-domain list"); out != "No domains: set one with xmpp domain <name>\n" {
		t.Errorf("empty list: %q", out)
	}
	f.ok("xmpp domain example.com")
	f.refuse("xmpp multi-domain add example.com", "xmpp multi-domain add: example.com is the primary domain; change its certificate with xmpp certs")
	f.refuse("xmpp multi-domain add EXAMPLE.com", "is the primary domain")
	f.refuse("xmpp multi-domain add example.org example.org.key", "xmpp multi-domain add: give both <key> and <crt> (or neither, for a self-signed certificate); usage: xmpp multi-domain add <domain> [<key> <crt> [<bundle>]]")
	f.refuse("xmpp multi-domain add example.org example.net.key example.net.crt", "xmpp multi-domain add: example.net.crt: does not cover example.org")
	f.refuse("xmpp multi-domain add example.org example.net.key example.org.crt", "the key does not match the certificate")
	f.refuse("xmpp multi-domain add example.org nope.key example.org.crt", "nope.key: no such file")
	f.refuse("xmpp multi-domain add 10.0.0.1", "is an IP address")
	f.refuse("xmpp multi-domain add example.org a b c d", `unexpected argument "d"`)

	if out := f.ok("xmpp multi-domain add example.org example.org.key example.org.crt ca.pem"); out != "example.org is now hosted\n" {
		t.Errorf("add: %q", out)
	}
	f.refuse("xmpp multi-domain add example.org example.org.key example.org.crt", "xmpp multi-domain add: example.org is already hosted (see xmpp multi-domain list)")
	out := f.ok("xmpp multi-domain add test.example")
	if !strings.Contains(out, "Generated a self-signed certificate for test.example") || !strings.HasSuffix(out, "test.example is now hosted\n") {
		t.Errorf("add self-signed: %q", out)
	}
	cfg := f.config()
	if len(cfg.Domains) != 3 || cfg.Domains[2] != (store.Domain{Name: "test.example", Key: "test.example.key", Cert: "test.example.crt"}) ||
		cfg.Domains[1] != (store.Domain{Name: "example.org", Key: "example.org.key", Cert: "example.org.crt", Bundle: "ca.pem"}) {
		t.Errorf("domains: %+v", cfg.Domains)
	}

	f.refuse("xmpp multi-domain del example.com", "xmpp multi-domain del: example.com is the primary domain: make another domain primary with xmpp domain <name>, or clear everything with xmpp reset")
	f.refuse("xmpp multi-domain del nowhere.example", "xmpp multi-domain del: nowhere.example is not a hosted domain (see xmpp multi-domain list)")
	f.ok("xmpp user add bob@example.org", "password-123")
	if out := f.ok("xmpp multi-domain del Example.ORG"); out != "example.org is no longer hosted; its 1 account is kept and works again if it is added back (delete it with xmpp user del)\n" {
		t.Errorf("del: %q", out)
	}
	if out := f.ok("xmpp multi-domain del test.example"); out != "test.example is no longer hosted\n" {
		t.Errorf("del: %q", out)
	}
	if cfg := f.config(); len(cfg.Domains) != 1 {
		t.Errorf("domains after del: %+v", cfg.Domains)
	}
	if _, err := f.env.Store.Account("bob@example.org"); err != nil {
		t.Errorf("del removed an account: %v", err)
	}
	// A missing certificate file shows in the list.
	f.env.Files.Remove("example.com.crt")
	if out := f.ok("xmpp multi-domain list"); !strings.Contains(out, "missing from the files area") {
		t.Errorf("list with a missing file:\n%s", out)
	}
}

func TestXMPPSettings(t *testing.T) {
	f := newFixture(t)
	get := func(key string) string {
		v, ok := f.env.Store.Config(key)
		if !ok {
			return "(unset)"
		}
		return v
	}
	tests := []struct {
		line, key, want string
	}{
		{"xmpp listen 127.0.0.1", store.XMPPListen, "127.0.0.1"},
		{"xmpp listen 0:0::1 192.0.2.1 lo", store.XMPPListen, "::1 192.0.2.1 lo"},
		{"xmpp listen none", store.XMPPListen, "none"},
		{"xmpp listen all", store.XMPPListen, "(unset)"},
		{"xmpp port c2s 15222", store.XMPPPortC2S, "15222"},
		{"xmpp port c2s-tls 443", store.XMPPPortC2STLS, "443"},
		{"xmpp port s2s 5269", store.XMPPPortS2S, "5269"},
		{"xmpp port c2s 5222", store.XMPPPortC2S, "5222"},
		{"xmpp max-sessions 1", store.XMPPMaxSessions, "1"},
		{"xmpp max-sessions 10000000", store.XMPPMaxSessions, "10000000"},
		{"xmpp max-sessions none", store.XMPPMaxSessions, "(unset)"},
		{"xmpp client_auth_timeout 5", store.XMPPClientAuthTimeout, "5"},
		{"xmpp client_auth_timeout 300", store.XMPPClientAuthTimeout, "300"},
	}
	for _, tc := range tests {
		if out := f.ok(tc.line); out != "" {
			t.Errorf("%s printed %q", tc.line, out)
		}
		if got := get(tc.key); got != tc.want {
			t.Errorf("%s: %s = %q, want %q", tc.line, tc.key, got, tc.want)
		}
	}
	f.ok("xmpp listen 127.0.0.1 lo")
	f.ok("xmpp max-sessions 100")
	f.ok("xmpp client_auth_timeout 60")
	bad := []struct{ line, want string }{
		{"xmpp listen", "xmpp listen: missing <address|interface>…; usage: xmpp listen <address|interface>…|all|none"},
		{"xmpp listen none 127.0.0.1", "xmpp listen: 'none' stands alone: xmpp listen none"},
		{"xmpp listen 127.0.0.1 all", "'all' stands alone"},
		{"xmpp listen 300.1.1.1", `xmpp listen: "300.1.1.1" is neither an IP address nor a network interface of this appliance (interfaces: `},
		{"xmpp listen nosuchif0", "is neither an IP address nor a network interface"},
		{"xmpp listen 127.0.0.1 127.0.0.1", "xmpp listen: 127.0.0.1 is given twice"},
		{"xmpp listen ::1 0::1", "::1 is given twice"},
		{"xmpp port c2s 0", "xmpp port: 0 is not a TCP port: give 1 to 65535"},
		{"xmpp port c2s 65536", "65536 is not a TCP port"},
		{"xmpp port c2s -1", "<port> must be a whole number"},
		{"xmpp port c2s 5269", "xmpp port: 5269 is already the s2s port: the three ports must differ"},
		{"xmpp port s2s 443", "443 is already the c2s-tls port"},
		{"xmpp port c2s-tls 5222", "5222 is already the c2s port"},
		{"xmpp port http 80", `"http" is not one of c2s, c2s-tls, s2s`},
		{"xmpp port c2s", "missing <port>"},
		{"xmpp max-sessions 0", "xmpp max-sessions: 0 would refuse every session: give 1 to 10000000, or none for no limit"},
		{"xmpp max-sessions 10000001", "is more than 10000000"},
		{"xmpp max-sessions lots", `xmpp max-sessions: give a number of sessions (1 to 10000000) or none, not "lots"`},
		{"xmpp max-sessions -5", "give a number of sessions"},
		{"xmpp client_auth_timeout 4", "xmpp client_auth_timeout: 4 seconds is out of range: give 5 to 300"},
		{"xmpp client_auth_timeout 301", "out of range"},
		{"xmpp client_auth_timeout soon", "must be a whole number"},
	}
	for _, tc := range bad {
		f.refuse(tc.line, tc.want)
	}
	cfg := f.config()
	if strings.Join(cfg.Listen, " ") != "127.0.0.1 lo" || cfg.MaxSessions != 100 || cfg.ClientAuthTimeout != time.Minute || cfg.PortC2S != 5222 || cfg.PortC2STLS != 443 || cfg.PortS2S != 5269 {
		t.Errorf("config after refusals: %+v", cfg)
	}
}

func TestXMPPUsers(t *testing.T) {
	f := newFixture(t)
	f.refuse("xmpp user add alice@example.com", "xmpp user add: example.com is not a hosted domain: no domain is set yet (xmpp domain <name>)", "password-123")
	f.ok("xmpp domain example.com")
	f.ok("xmpp multi-domain add example.org")

	if out := f.ok("xmpp user add Alice@Example.COM", "password-123"); out != "Created alice@example.com\n" {
		t.Errorf("add: %q", out)
	}
	a, err := f.env.Store.Account("alice@example.com")
	if err != nil || !a.CheckPassword("password-123") || a.CheckPassword("password-124") {
		t.Fatalf("account: %+v %v", a, err)
	}
	bad := []struct {
		line, want string
		answers    []string
	}{
		{"xmpp user add alice@example.com", "xmpp user add: alice@example.com already exists (to change its password: xmpp user passwd alice@example.com)", []string{"password-123"}},
		{"xmpp user add ALICE@example.com", "already exists", []string{"password-123"}},
		{"xmpp user add bob@example.net", "xmpp user add: example.net is not a hosted domain (hosted: example.com, example.org; add it with xmpp multi-domain add)", []string{"password-123"}},
		{"xmpp user add example.com", `xmpp user add: "example.com" has no user part: give an address like alice@example.com`, []string{"password-123"}},
		{"xmpp user add bob@example.com/phone", `xmpp user add: "bob@example.com/phone" has a resource (/phone): give the bare JID bob@example.com`, []string{"password-123"}},
		{"xmpp user add @example.com", `xmpp user add: "@example.com" is not a valid JID`, []string{"password-123"}},
		{"xmpp user add b<o>b@example.com", "is not a valid JID", []string{"password-123"}},
		{"xmpp user add bob@example.com", "xmpp user add: the password is too short: use at least 8 characters (xmpp user rule min_length)", []string{"short"}},
		{"xmpp user add bob@example.com", "the password must not be the user name", []string{"bob@example.com"}},
		{"xmpp user add bobbybob@example.com", "the password must not be the user name", []string{"bobbybob"}},
		{"xmpp user add bob@example.com", "the password is too long", []string{strings.Repeat("x", 1025)}},
		{"xmpp user add bob@example.com", "characters that are not allowed in XMPP passwords", []string{"pass\x01word-123"}},
		{"xmpp user add bob@example.com", "xmpp user add: no password given: standard input ended", nil},
		{"xmpp user del bob@example.com", "xmpp user del: no account bob@example.com (see xmpp user list)", nil},
		{"xmpp user del bob@example.com/x", "has a resource", nil},
		{"xmpp user passwd bob@example.com", "xmpp user passwd: no account bob@example.com", []string{"password-123"}},
		{"xmpp user passwd alice@example.com", "xmpp user passwd: the password is too short", []string{"short"}},
		{"xmpp user list 10.0.0.1", "xmpp user list: 10.0.0.1 is an IP address", nil},
	}
	for _, tc := range bad {
		f.refuse(tc.line, tc.want, tc.answers...)
	}

	// At a terminal the password is asked twice and must match.
	f.out.Reset()
	c := &Ctx{Env: f.env, User: "root", Role: store.RoleAdmin, Out: &f.out,
		Prompt: &fakePrompt{answers: []string{"password-123", "password-124"}, interactive: true}}
	if err := f.tree.Run(c, "xmpp user add bob@example.com"); err == nil || !strings.Contains(err.Error(), "do not match") {
		t.Fatalf("mismatch: %v", err)
	}
	c.Prompt = &fakePrompt{answers: []string{"pässwörd-1", "pässwörd-1"}, interactive: true}
	if err := f.tree.Run(c, "xmpp user add bob@example.com"); err != nil {
		t.Fatal(err)
	}
	if asked := c.Prompt.(*fakePrompt).asked; strings.Join(asked, "|") != "Password for bob@example.com: |Retype password: " {
		t.Errorf("asked %q", asked)
	}

	if out := f.ok("xmpp user passwd alice@example.com", "new-password-1"); out != "Password changed for alice@example.com\n" {
		t.Errorf("passwd: %q", out)
	}
	a2, _ := f.env.Store.Account("alice@example.com")
	if !a2.CheckPassword("new-password-1") || a2.CheckPassword("password-123") || !a2.Created.Equal(a.Created) {
		t.Errorf("after passwd: %+v", a2)
	}

	f.ok("xmpp user add carol@example.org", "password-123")
	if out := f.ok("xmpp user list example.org"); !strings.Contains(out, "carol@example.org") || strings.Contains(out, "alice") {
		t.Errorf("list example.org:\n%s", out)
	}
	f.refuse("xmpp user list example.net", "xmpp user list: example.net is not a hosted domain (hosted: example.com, example.org; add it with xmpp multi-domain add)")
	if out := f.ok("xmpp user del Carol@example.org"); out != "Deleted carol@example.org\n" {
		t.Errorf("del: %q", out)
	}
	if _, err := f.env.Store.Account("carol@example.org"); err == nil {
		t.Error("carol not deleted")
	}
	// An account of a domain no longer hosted can still be deleted.
	f.ok("xmpp user add dave@example.org", "password-123")
	f.ok("xmpp multi-domain del example.org")
	f.ok("xmpp user del dave@example.org")

	out := f.ok("audit 50")
	for _, want := range []string{"xmpp user add Alice@Example.COM", "xmpp user passwd alice@example.com", "xmpp user del Carol@example.org"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit lacks %q", want)
		}
	}
	if strings.Contains(out, "password-123") {
		t.Error("the audit trail holds a password")
	}
	// XMPP accounts have their own rule; the admin users' does not apply.
	f.ok("user rule min_length 12")
	f.ok("xmpp user add erin@example.com", "password-12")
	f.ok("xmpp user rule min_length 12")
	f.refuse("xmpp user add frank@example.com", "at least 12 characters (xmpp user rule min_length)", "password-12")
}

func TestXMPPUserImport(t *testing.T) {
	f := newFixture(t)
	f.ok("xmpp domain example.com")
	f.ok("xmpp user add old@example.com", "old-password-1")
	old, _ := f.env.Store.Account("old@example.com")

	csv := "\uFEFFjid,password\r\n" +
		"alice@example.com,password-1\r\n" +
		"\r\n" +
		"Bob@Example.com,pass,word with, commas\r\n" +
		"old@example.com,a-new-password\r\n" +
		`"co,mma@example.com","quoted ""pw"" 1"` + "\r\n" +
		"alice@example.com,password-2\r\n" +
		"eve@example.net,password-1\r\n" +
		"nocomma@example.com\r\n" +
		"short@example.com,short\r\n" +
		"empty@example.com,\r\n" +
		"x@example.com/res,password-1\r\n" +
		"@example.com,password-1\r\n" +
		`"bad"quote@example.com",password-1` + "\r\n" +
		"long@example.com," + strings.Repeat("p", 1025) + "\r\n" +
		"name@example.com,name@example.com\r\n" +
		"short@example.com,now-long-enough\r\n" +
		"   \r\n"
	f.put("users.csv", []byte(csv))
	out := f.ok("xmpp user import users.csv")
	want := "created 4, skipped 1 (already exist), rejected 10\n" +
		"line 7: alice@example.com is also on line 2 (the first one is used)\n" +
		"line 8: example.net is not a hosted domain (hosted: example.com; add it with xmpp multi-domain add)\n" +
		"line 9: no comma: give jid,password\n" +
		"line 10: short@example.com: the password is too short: use at least 8 characters (xmpp user rule min_length)\n" +
		"line 11: empty@example.com has no password\n" +
		`line 12: "x@example.com/res" has a resource (/res): give the bare JID x@example.com` + "\n" +
		`line 13: "@example.com" is not a valid JID: the localpart must be larger than 0 bytes` + "\n" +
		`line 14: bad CSV quoting: extraneous or missing " in quoted-field` + "\n" +
		"line 15: long@example.com: the password is too long: use at most 1024 bytes\n" +
		"line 16: name@example.com: the password must not be the user name\n"
	if out != want {
		t.Errorf("import output:\n%s\nwant:\n%s", out, want)
	}
	for j, pw := range map[string]string{"alice@example.com": "password-1", "bob@example.com": "pass,word with, commas", "co,mma@example.com": `quoted "pw" 1`,
		"short@example.com": "now-long-enough"} {
		a, err := f.env.Store.Account(j)
		if err != nil || !a.CheckPassword(pw) {
			t.Errorf("%s: %v, password ok %v", j, err, err == nil && a.CheckPassword(pw))
		}
	}
	if a, _ := f.env.Store.Account("old@example.com"); !reflect.DeepEqual(a, old) {
		t.Error("import changed an existing account")
	}

	// Resumable: the same file again creates nothing new.
	if out := f.ok("xmpp user import users.csv"); !strings.HasPrefix(out, "created 0, skipped 5 (already exist), rejected 10\n") {
		t.Errorf("second import: %q", out)
	}

	f.put("bad.csv", []byte("jid,password\nnobody@example.net,password-1\nfoo,bar\n"))
	before := f.state()
	out, err := f.run("xmpp user import bad.csv")
	if err == nil || err.Error() != "xmpp user import: every line of bad.csv was rejected; nothing was imported (reasons above)" {
		t.Errorf("all rejected: %v", err)
	}
	if !strings.HasPrefix(out, "created 0, skipped 0 (already exist), rejected 2\nline 2: ") {
		t.Errorf("all rejected output: %q", out)
	}
	if !reflect.DeepEqual(before, f.state()) {
		t.Error("a rejected import changed something")
	}
	f.put("empty.csv", []byte("jid,password\n\n"))
	f.refuse("xmpp user import empty.csv", "xmpp user import: empty.csv has no accounts: give one jid,password a line")
	f.put("latin1.csv", []byte("j\xf8rn@example.com,password-1\n"))
	f.refuse("xmpp user import latin1.csv", "xmpp user import: latin1.csv is not UTF-8 text")
	f.refuse("xmpp user import nothere.csv", "xmpp user import: nothere.csv: no such file in the files area")

	// Many rejected lines: the first 20 are listed.
	var b strings.Builder
	for i := 0; i < 25; i++ {
		fmt.Fprintf(&b, "u%d@nowhere.example,password-1\n", i)
	}
	fmt.Fprintf(&b, "ok@example.com,password-1\n")
	f.put("many.csv", []byte(b.String()))
	out = f.ok("xmpp user import many.csv")
	if !strings.HasPrefix(out, "created 1, skipped 0 (already exist), rejected 25\n") || !strings.HasSuffix(out, "line 20: nowhere.example is not a hosted domain (hosted: example.com; add it with xmpp multi-domain add)\n… and 5 more\n") {
		t.Errorf("many rejected:\n%s", out)
	}
}

func TestXMPPUserImportProgress(t *testing.T) {
	importBatch, importProgressOver = 40, 50
	t.Cleanup(func() { importBatch, importProgressOver = 500, 1000 })
	f := newFixture(t)
	f.ok("xmpp domain example.com")
	f.ok("xmpp multi-domain add example.org")
	var b strings.Builder
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&b, "user%03d@example.%s,password-%03d\n", i, []string{"com", "org"}[i%2], i)
	}
	f.put("big.csv", []byte(b.String()))
	// Resuming after an interruption: the first 30 exist already.
	lines := strings.SplitAfter(b.String(), "\n")
	f.put("first.csv", []byte(strings.Join(lines[:30], "")))
	f.ok("xmpp user import first.csv")

	out := f.ok("xmpp user import big.csv")
	wantPrefix := "imported 40 of 70…\nimported 70 of 70…\ncreated 70, skipped 30 (already exist), rejected 0\n(70 accounts in "
	if !strings.HasPrefix(out, wantPrefix) {
		t.Errorf("progress:\n%s\nwant prefix:\n%s", out, wantPrefix)
	}
	accounts, _ := f.env.Store.Accounts("")
	if len(accounts) != 100 {
		t.Fatalf("%d accounts", len(accounts))
	}
	a, _ := f.env.Store.Account("user077@example.org")
	if !a.CheckPassword("password-077") {
		t.Error("wrong password derived for user077")
	}
}

// BenchmarkXMPPUserImport10k imports 10000 accounts (each two PBKDF2 runs
// of 4096 iterations) per iteration:
// go test ./commands -run '^$' -bench XMPPUserImport10k -benchtime 1x
func BenchmarkXMPPUserImport10k(b *testing.B) {
	var csv strings.Builder
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&csv, "user%05d@example.com,password-%05d\n", i, i)
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		f := newFixture(b)
		f.ok("xmpp domain example.com")
		f.put("10k.csv", []byte(csv.String()))
		b.StartTimer()
		start := time.Now()
		out, err := f.run("xmpp user import 10k.csv")
		if err != nil || !strings.Contains(out, "created 10000, skipped 0") {
			b.Fatalf("import: %v\n%s", err, out)
		}
		b.Logf("10000 accounts imported in %s", time.Since(start).Round(time.Millisecond))
	}
}

func TestXMPPRoles(t *testing.T) {
	f := newFixture(t)
	f.ok("xmpp domain example.com")
	tests := []struct {
		role string
		line string
		ok   bool
	}{
		{store.RoleAppAdmin, "xmpp multi-domain add example.org", true},
		{store.RoleAppAdmin, "xmpp user add a@example.com", true},
		{store.RoleAppAdmin, "xmpp port s2s 5270", true},
		{store.RoleAudit, "xmpp", true},
		{store.RoleAudit, "xmpp multi-domain list", true},
		{store.RoleAudit, "xmpp user list", true},
		{store.RoleAudit, "xmpp enable", false},
		{store.RoleAudit, "xmpp user add b@example.com", false},
		{store.RoleCrypto, "xmpp certs example.com.key example.com.crt", false},
		{store.RoleCrypto, "xmpp domain example.net", false},
		{store.RoleCrypto, "xmpp reset", false},
		{store.RoleAudit, "xmpp user import x.csv", false},
	}
	for _, tc := range tests {
		_, err := f.runAs("someone", tc.role, tc.line, "password-123")
		if tc.ok && err != nil {
			t.Errorf("%s: %q refused: %v", tc.role, tc.line, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "permission denied")) {
			t.Errorf("%s: %q: want permission denied, got %v", tc.role, tc.line, err)
		}
	}
}

func TestXMPPComplete(t *testing.T) {
	f := newFixture(t)
	tests := []struct{ line, role, want string }{
		{"xmpp ", store.RoleAdmin, "callbridge certs client_auth_timeout cluster connections directory disable domain enable federation limits listen log max-sessions multi-domain port reset sessions user"},
		{"xmpp ", store.RoleAudit, "cluster connections directory federation limits log multi-domain sessions user"},
		{"xmpp port ", store.RoleAdmin, "c2s c2s-tls s2s"},
		{"xmpp multi-domain ", store.RoleAdmin, "add certs del list"},
		{"xmpp user ", store.RoleAdmin, "add del import list passwd rule"},
		{"xmpp certs n", store.RoleAdmin, "none"},
	}
	for _, tc := range tests {
		got := strings.Join(f.tree.Complete(tc.line, tc.role, nil), " ")
		if got != tc.want {
			t.Errorf("Complete(%q, %s) = %q, want %q", tc.line, tc.role, got, tc.want)
		}
	}
}

// Words that are not a subcommand of a command that takes no arguments
// get the list of subcommands, not "unexpected argument".
func TestSubcommandErrors(t *testing.T) {
	f := newFixture(t)
	tests := []struct{ line, want string }{
		{"xmpp frob", `xmpp: unknown subcommand "frob"; use one of: callbridge, certs, client_auth_timeout, cluster, connections, directory, disable, domain, enable, federation, limits, listen, log, max-sessions, multi-domain, port, reset, sessions, user (see 'help xmpp')`},
		{"xmpp user", "xmpp user: incomplete command; it needs one of: add, del, import, list, passwd, rule (see 'help xmpp user')"},
		{"xmpp multi-domain", "xmpp multi-domain: incomplete command; it needs one of: add, certs, del, list (see 'help xmpp multi-domain')"},
		{"xmpp user frob x", `xmpp user: unknown subcommand "frob"; use one of: add, del, import, list, passwd, rule`},
		{"user rule frob", `user rule: unknown subcommand "frob"; use one of: login_grace_time, max_failed_logins, max_startups, min_length, password_age, per_source_max_startups, per_source_penalty (see 'help user rule')`},
		{"xmpp certs none extra", `xmpp certs none: unexpected argument "extra"; usage: xmpp certs none`},
		{"version x", `version: unexpected argument "x"; usage: version`},
		{"xmpp enable now", `xmpp enable: unexpected argument "now"; usage: xmpp enable`},
		{"help xmpp frob", `help: no command "xmpp frob"`},
	}
	for _, tc := range tests {
		f.refuse(tc.line, tc.want)
	}
	out := f.ok("help xmpp multi-domain")
	if !strings.HasPrefix(out, "  xmpp multi-domain add <domain> [<key> <crt> [<bundle>]]") || strings.Count(out, "\n") != 4 {
		t.Errorf("help xmpp multi-domain:\n%s", out)
	}
	out = f.ok("help user rule")
	if !strings.HasPrefix(out, "usage: user rule\n") || !strings.Contains(out, "\n  user rule min_length <n>") {
		t.Errorf("help user rule:\n%s", out)
	}
}

// The commands that name a domain's files put their contents into the
// replicated store (every cluster node writes them into its files area),
// replaced when a command names them again; refused changes store nothing.
func TestXMPPCertsReplicateFiles(t *testing.T) {
	f := newFixture(t)
	f.certFiles("example.com", "example.org")
	stored := func(name string) []byte {
		t.Helper()
		sf, err := f.env.Store.StoredFile(name)
		if err != nil {
			return nil
		}
		return sf.Data
	}
	f.ok("xmpp domain example.com")
	selfKey, _ := f.env.Files.ReadFile("example.com.key")
	if got := stored("example.com.key"); got == nil || !bytes.Equal(got, selfKey) {
		t.Fatalf("xmpp domain: the generated key is not in the store (%d bytes)", len(got))
	}
	f.refuse("xmpp multi-domain add example.org example.com.key example.org.crt", "the key does not match")
	if stored("example.org.crt") != nil {
		t.Fatal("a refused multi-domain add stored its files")
	}
	f.ok("xmpp multi-domain add example.org example.org.key example.org.crt ca.pem")
	for _, name := range []string{"example.org.key", "example.org.crt", "ca.pem"} {
		data, _ := f.env.Files.ReadFile(name)
		if got := stored(name); got == nil || !bytes.Equal(got, data) {
			t.Errorf("%s is not in the store as in the files area", name)
		}
	}
	if sf, _ := f.env.Store.StoredFile("example.org.key"); sf.Mode != 0o600 {
		t.Errorf("the key is stored with mode %o", sf.Mode)
	}
	// Replaced when a command names it again.
	f.env.Files.Remove("example.com.key")
	f.env.Files.Remove("example.com.crt")
	f.ok("xmpp certs none")
	newKey, _ := f.env.Files.ReadFile("example.com.key")
	if got := stored("example.com.key"); bytes.Equal(got, selfKey) || !bytes.Equal(got, newKey) {
		t.Error("xmpp certs none did not replace the stored key by the new one")
	}
}
