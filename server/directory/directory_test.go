package directory

import (
	"context"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/directory/ldaptest"
	"github.com/parley-xmpp/parley/server/status"
)

// The unit tests' loopback address (127.0.21.0/24 is this branch's).
const testIP = "127.0.21.10"

func TestUserFilterEscapes(t *testing.T) {
	for _, c := range []struct{ attr, local, want string }{
		{"mail", "alice", `(&(objectClass=inetOrgPerson)(mail=alice@example.lan))`},
		{"uid", "alice", `(&(objectClass=inetOrgPerson)(uid=alice))`},
		{"uid", "*", `(&(objectClass=inetOrgPerson)(uid=\2a))`},
		{"uid", "x)(uid=*", `(&(objectClass=inetOrgPerson)(uid=x\29\28uid=\2a))`},
		{"mail", `a\b`, `(&(objectClass=inetOrgPerson)(mail=a\5cb@example.lan))`},
		{"uid", "é", `(&(objectClass=inetOrgPerson)(uid=\c3\a9))`},
	} {
		if got := userFilter("(objectClass=inetOrgPerson)", c.attr, c.local, "example.lan"); got != c.want {
			t.Errorf("userFilter(%s, %q) = %s, want %s", c.attr, c.local, got, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	good := Config{URL: "ldap://127.0.0.1:389", Base: "dc=example,dc=lan"}
	if err := Validate(good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Config{
		{URL: "http://x", Base: "dc=x"},
		{URL: "ldap://", Base: "dc=x"},
		{URL: "ldap://x/dc=y?cn", Base: "dc=x"},
		{URL: "ldap://x", Base: "not a dn"},
		{URL: "ldap://x", Base: "dc=x", BindDN: "junk"},
		{URL: "ldaps://x", Base: "dc=x", StartTLS: true},
		{URL: "ldap://x", Base: "dc=x", UserFilter: "objectClass=person"},
		{URL: "ldap://x", Base: "dc=x", UserFilter: "(&(objectClass=person)"},
		{URL: "ldap://x", Base: "dc=x", JIDFrom: "mail)(x"},
	} {
		if err := Validate(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func pool(t *testing.T, pem []byte) *x509.CertPool {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		t.Fatal("bad CA")
	}
	return p
}

func client(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestAuthenticateAgainstSlapd(t *testing.T) {
	srv := ldaptest.Start(t, testIP)
	ctx := context.Background()
	users := ldaptest.Users()
	alice, odd := users[0], users[2]

	c := client(t, Config{URL: srv.URL(), Base: ldaptest.People, BindDN: ldaptest.ReaderDN, BindPassword: ldaptest.ReaderPW,
		StartTLS: true, Roots: pool(t, srv.CAPEM)})
	e, err := c.Authenticate(ctx, "alice", "example.lan", alice.Password)
	if err != nil {
		t.Fatalf("alice with her password: %v", err)
	}
	if e.DN != ldaptest.UserDN("alice") || e.Get("cn") != "Alice Liddell" {
		t.Fatalf("entry %s cn %q", e.DN, e.Get("cn"))
	}
	if h := c.Health(); !h.Known || !h.OK {
		t.Fatalf("health after a good login: %+v", h)
	}
	for _, bad := range []struct{ local, pw string }{
		{"alice", "wrong"},
		{"alice", ""},          // an empty password would be an anonymous bind
		{"nobody", "whatever"}, // unknown
		{"*", alice.Password},  // a wildcard matches nothing once escaped
		{"alice)(uid=*", alice.Password},
		{"o)(k", odd.Password},
		{"o)(k\\2a", odd.Password}, // an escape sequence typed by the user stays literal
	} {
		if _, err := c.Authenticate(ctx, bad.local, "example.lan", bad.pw); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("Authenticate(%q, %q) = %v, want ErrBadCredentials", bad.local, bad.pw, err)
		}
	}
	// The user whose address holds filter characters logs in as such.
	if _, err := c.Authenticate(ctx, "o)(k*", "example.lan", odd.Password); err != nil {
		t.Errorf("the user o)(k*: %v", err)
	}
	// Searching again after a user's bind: the connection is the reader's again.
	if e, err := c.Lookup(ctx, "bob", "example.lan"); err != nil || e.Get("sn") != "Builder" {
		t.Fatalf("Lookup bob: %v %v", e, err)
	}
	// A wrong domain is another mail address: nobody.
	if _, err := c.Authenticate(ctx, "alice", "other.lan", alice.Password); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("alice@other.lan: %v", err)
	}

	// jid-from uid, anonymous search over ldaps.
	u := client(t, Config{URL: srv.LDAPS(), Base: ldaptest.People, Roots: pool(t, srv.CAPEM), JIDFrom: "uid"})
	if _, err := u.Authenticate(ctx, "alice", "whatever.lan", alice.Password); err != nil {
		t.Fatalf("ldaps, uid: %v", err)
	}

	// Concurrent logins share the bounded pool.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			pw := alice.Password
			if i%2 == 1 {
				pw = "wrong"
			}
			_, err := c.Authenticate(ctx, "alice", "example.lan", pw)
			if (i%2 == 0) != (err == nil) {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent: %v", err)
	}

	// The directory restarts: the pooled connections are dead, the next
	// request gets a new one.
	srv.Stop()
	start := time.Now()
	if _, err := c.Authenticate(ctx, "alice", "example.lan", alice.Password); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("directory down: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a login with the directory down took %s", d)
	}
	if h := c.Health(); h.OK || h.Error == "" {
		t.Fatalf("health with the directory down: %+v", h)
	}
	srv.Start(t)
	time.Sleep(DefaultBackoff + 100*time.Millisecond)
	if _, err := c.Authenticate(ctx, "alice", "example.lan", alice.Password); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if h := c.Health(); !h.OK {
		t.Fatalf("health after the restart: %+v", h)
	}
	// Probe: the base entry is read; a base that does not exist is the directory's set-up failing.
	if err := c.Probe(ctx); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	bad := client(t, Config{URL: srv.URL(), Base: "ou=gone," + ldaptest.Base})
	if err := bad.Probe(ctx); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "does not exist") || bad.Health().OK {
		t.Fatalf("Probe of a missing base: %v, health %+v", err, bad.Health())
	}
}

func TestTLSNeedsTheCA(t *testing.T) {
	srv := ldaptest.Start(t, testIP)
	ctx := context.Background()
	for _, cfg := range []Config{
		{URL: srv.URL(), Base: ldaptest.People, StartTLS: true},
		{URL: srv.LDAPS(), Base: ldaptest.People},
	} {
		c := client(t, cfg) // the system roots do not know the private CA
		_, err := c.Authenticate(ctx, "alice", "example.lan", ldaptest.Users()[0].Password)
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s without the CA: %v", cfg.URL, err)
		}
	}
	// A wrong bind password is the directory's set-up: unavailable, not the user's fault.
	c := client(t, Config{URL: srv.URL(), Base: ldaptest.People, BindDN: ldaptest.ReaderDN, BindPassword: "nope"})
	if _, err := c.Authenticate(ctx, "alice", "example.lan", ldaptest.Users()[0].Password); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "bind") {
		t.Errorf("wrong bind password: %v", err)
	}
}

// A directory that accepts connections and never answers: requests end at
// their timeouts.
func TestSilentDirectoryTimesOut(t *testing.T) {
	l, err := net.Listen("tcp", testIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	c := client(t, Config{URL: "ldap://" + l.Addr().String(), Base: "dc=x", DialTimeout: 300 * time.Millisecond, OpTimeout: 300 * time.Millisecond})
	start := time.Now()
	_, err = c.Authenticate(context.Background(), "alice", "x", "pw")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s", d)
	}
	// Within the back-off, the next one fails at once.
	start = time.Now()
	if _, err := c.Authenticate(context.Background(), "alice", "x", "pw"); !errors.Is(err, ErrUnavailable) || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("second attempt: %v after %s", err, time.Since(start))
	}
}

func TestVCardFromEntry(t *testing.T) {
	srv := ldaptest.Start(t, testIP)
	c := client(t, Config{URL: srv.URL(), Base: ldaptest.Base})
	e, err := c.Lookup(context.Background(), "alice", "example.lan")
	if err != nil {
		t.Fatal(err)
	}
	v := string(VCard(e).Bytes(""))
	for _, want := range []string{"<FN>Alice Liddell</FN>", "<N><FAMILY>Liddell</FAMILY><GIVEN>Alice</GIVEN></N>",
		"<EMAIL><INTERNET/><USERID>alice@example.lan</USERID></EMAIL>", "<NUMBER>+44 1865 270000</NUMBER>",
		"<TITLE>Explorer</TITLE>", "<ORG><ORGNAME>Wonderland Ltd</ORGNAME><ORGUNIT>Research</ORGUNIT></ORG>",
		"<PHOTO><TYPE>image/jpeg</TYPE><BINVAL>"} {
		if !strings.Contains(v, want) {
			t.Errorf("vCard lacks %s:\n%s", want, v)
		}
	}
	sum := sha1.Sum(ldaptest.Photo())
	if PhotoHash(e) != hex.EncodeToString(sum[:]) {
		t.Errorf("photo hash %s", PhotoHash(e))
	}
	b, _ := c.Lookup(context.Background(), "bob", "example.lan")
	if PhotoHash(b) != "" || strings.Contains(string(VCard(b).Bytes("")), "PHOTO") {
		t.Errorf("bob has no photo")
	}
}

func TestCheckSteps(t *testing.T) {
	srv := ldaptest.Start(t, testIP)
	run := func(cfg Config, user string) (bool, string) {
		var b strings.Builder
		ok := Check(context.Background(), cfg, "example.lan", user, "xmpp directory example.lan", func(s status.Step) {
			b.WriteString(string(s.Verdict) + " " + s.Name + ": " + s.Detail + " | " + s.Fix + "\n")
		})
		return ok, b.String()
	}
	ok, out := run(Config{URL: srv.URL(), Base: ldaptest.People, StartTLS: true, Roots: pool(t, srv.CAPEM), BindDN: ldaptest.ReaderDN, BindPassword: ldaptest.ReaderPW}, "alice")
	for _, want := range []string{"ok connect", "ok TLS: StartTLS: TLS 1.3", "ok bind as " + ldaptest.ReaderDN, "ok search " + ldaptest.People + ": 3 users match",
		"ok user alice@example.lan: found " + ldaptest.UserDN("alice"), "info vCard: FN: Alice Liddell", "info vCard: PHOTO: image/jpeg"} {
		if !strings.Contains(out, want) {
			t.Errorf("check lacks %q:\n%s", want, out)
		}
	}
	if !ok {
		t.Errorf("check failed:\n%s", out)
	}
	for _, c := range []struct {
		cfg  Config
		user string
		want string
	}{
		{Config{URL: srv.URL(), Base: ldaptest.People, StartTLS: true}, "", "fail TLS: "},
		{Config{URL: srv.URL(), Base: ldaptest.People, BindDN: ldaptest.ReaderDN, BindPassword: "nope"}, "", "fail bind as " + ldaptest.ReaderDN},
		{Config{URL: srv.URL(), Base: "ou=nowhere," + ldaptest.Base}, "", "fail search ou=nowhere"},
		{Config{URL: srv.URL(), Base: ldaptest.People}, "carol", "fail user carol@example.lan: no entry"},
		{Config{URL: "ldap://" + testIP + ":1", Base: ldaptest.People}, "", "fail connect " + testIP + ":1"},
	} {
		ok, out := run(c.cfg, c.user)
		if ok || !strings.Contains(out, c.want) {
			t.Errorf("%+v: ok %v, lacks %q:\n%s", c.cfg, ok, c.want, out)
		}
	}
	// Plain ldap without StartTLS works, with a warning.
	_, out = run(Config{URL: srv.URL(), Base: ldaptest.People}, "")
	if !strings.Contains(out, "warn TLS: none") {
		t.Errorf("no TLS warning:\n%s", out)
	}
}

func TestColleagues(t *testing.T) {
	srv := ldaptest.Start(t, testIP)
	ctx := context.Background()
	c := client(t, Config{URL: srv.URL(), Base: ldaptest.People, GroupsBase: ldaptest.Groups})
	alice, err := c.Lookup(ctx, "alice", "example.lan")
	if err != nil {
		t.Fatal(err)
	}
	cols, err := c.Colleagues(ctx, alice, "example.lan")
	if err != nil {
		t.Fatal(err)
	}
	if len(cols) != 1 || cols[0].JID != "bob@example.lan" || cols[0].Name != "Bob Builder" || strings.Join(cols[0].Groups, ",") != "staff" {
		t.Fatalf("alice's colleagues: %+v", cols)
	}
	// Another domain's users are nobody's colleagues here.
	if cols, _ := c.Colleagues(ctx, alice, "other.lan"); len(cols) != 0 {
		t.Fatalf("colleagues in other.lan: %+v", cols)
	}
	odd, err := c.Lookup(ctx, "o)(k*", "example.lan")
	if err != nil {
		t.Fatal(err)
	}
	if cols, err := c.Colleagues(ctx, odd, "example.lan"); err != nil || len(cols) != 0 {
		t.Fatalf("the odd user is in no group: %+v %v", cols, err)
	}
	// No groups base: no colleagues, no search.
	n := client(t, Config{URL: srv.URL(), Base: ldaptest.People})
	if cols, err := n.Colleagues(ctx, alice, "example.lan"); cols != nil || err != nil {
		t.Fatalf("without a groups base: %+v %v", cols, err)
	}
}

func TestUsers(t *testing.T) {
	srv := ldaptest.Start(t, testIP)
	ctx := context.Background()
	c := client(t, Config{URL: srv.URL(), Base: ldaptest.People, BindDN: ldaptest.ReaderDN, BindPassword: ldaptest.ReaderPW})
	jids, truncated, err := c.Users(ctx, "example.lan", 0)
	if err != nil || truncated || strings.Join(jids, " ") != "alice@example.lan bob@example.lan o)(k*@example.lan" {
		t.Fatalf("Users = %q, %v, %v", jids, truncated, err)
	}
	if jids, truncated, _ := c.Users(ctx, "example.lan", 2); len(jids) != 2 || !truncated {
		t.Fatalf("Users(max 2) = %q, truncated %v", jids, truncated)
	}
	if jids, _, _ := c.Users(ctx, "other.lan", 0); len(jids) != 0 {
		t.Fatalf("users of other.lan: %q", jids)
	}
	u := client(t, Config{URL: srv.URL(), Base: ldaptest.People, JIDFrom: "uid"})
	if jids, _, err := u.Users(ctx, "x.lan", 0); err != nil || strings.Join(jids, " ") != "alice@x.lan bob@x.lan o)(k*@x.lan" {
		t.Fatalf("Users by uid = %q, %v", jids, err)
	}
}
