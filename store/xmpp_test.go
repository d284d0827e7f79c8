package store

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"
)

// fast turns off fsync: for tests that apply many ops.
func fast(s *Store) *Store {
	s.db.NoSync = true
	return s
}

func TestXMPPConfigDefaultsAndSettings(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	cfg, err := s.XMPP()
	if err != nil {
		t.Fatal(err)
	}
	want := XMPPConfig{PortC2S: 5222, PortC2STLS: 5223, PortS2S: 5269, ClientAuthTimeout: 30 * time.Second,
		PreAuthPerAddress: 100, StanzaRate: 100, StanzaBurst: 500}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("defaults = %+v", cfg)
	}
	if cfg.Listen != nil {
		t.Error("default Listen must be nil (all addresses)")
	}
	if _, ok := cfg.Primary(); ok {
		t.Error("a primary domain with none set")
	}

	set := func(k, v string) { mustApply(t, s, ConfigSet{Key: k, Value: v}) }
	if err := s.SetLocal(XMPPEnabled, "true"); err != nil { // node-local
		t.Fatal(err)
	}
	if err := s.SetLocal(XMPPListen, "127.0.0.1  ::1 eth0"); err != nil { // node-local
		t.Fatal(err)
	}
	set(XMPPPortC2S, "15222")
	set(XMPPPortC2STLS, "443")
	set(XMPPPortS2S, "not-a-number") // unreadable: the default
	set(XMPPMaxSessions, "100")
	set(XMPPClientAuthTimeout, "60")
	set(XMPPPreAuth, "2000")
	set(XMPPPreAuthPerAddress, "20")
	set(XMPPStanzaRate, "2.5")
	set(XMPPStanzaBurst, "10")
	cfg, _ = s.XMPP()
	want = XMPPConfig{Enabled: true, Listen: []string{"127.0.0.1", "::1", "eth0"}, PortC2S: 15222, PortC2STLS: 443, PortS2S: 5269,
		MaxSessions: 100, ClientAuthTimeout: time.Minute, PreAuth: 2000, PreAuthPerAddress: 20, StanzaRate: 2.5, StanzaBurst: 10}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("settings = %+v", cfg)
	}
	s.SetLocal(XMPPListen, ListenNone)
	s.SetLocal(XMPPEnabled, "false")
	cfg, _ = s.XMPP()
	if cfg.Listen == nil || len(cfg.Listen) != 0 || cfg.Enabled {
		t.Errorf("listen none / disabled: %+v", cfg)
	}
}

func TestDomains(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	domains := func() []Domain {
		t.Helper()
		cfg, err := s.XMPP()
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Domains
	}

	mustApply(t, s, DomainPrimary{Name: "b.example", Certs: &Domain{Name: "b.example", Key: "b.key", Cert: "b.crt"}})
	mustApply(t, s, DomainPut{Domain: Domain{Name: "z.example", Key: "z.key", Cert: "z.crt", Bundle: "ca.pem"}})
	mustApply(t, s, DomainPut{Domain: Domain{Name: "a.example", Key: "a.key", Cert: "a.crt"}})
	want := []Domain{
		{Name: "b.example", Primary: true, Key: "b.key", Cert: "b.crt"},
		{Name: "a.example", Key: "a.key", Cert: "a.crt"},
		{Name: "z.example", Key: "z.key", Cert: "z.crt", Bundle: "ca.pem"},
	}
	if got := domains(); !reflect.DeepEqual(got, want) {
		t.Errorf("domains (primary first, then by name):\n got %+v\nwant %+v", got, want)
	}
	cfg, _ := s.XMPP()
	if d, ok := cfg.Domain("z.example"); !ok || d.Bundle != "ca.pem" {
		t.Errorf("Domain(z.example) = %+v, %v", d, ok)
	}
	if _, ok := cfg.Domain("nowhere.example"); ok {
		t.Error("Domain found an unknown domain")
	}

	// Put on the primary keeps it primary.
	mustApply(t, s, DomainPut{Domain: Domain{Name: "b.example", Key: "b2.key", Cert: "b2.crt"}})
	if got := domains()[0]; got != (Domain{Name: "b.example", Primary: true, Key: "b2.key", Cert: "b2.crt"}) {
		t.Errorf("put on the primary: %+v", got)
	}
	// Primary without certificates keeps the ones it had.
	mustApply(t, s, DomainPrimary{Name: "b.example"})
	if got := domains()[0]; got.Cert != "b2.crt" {
		t.Errorf("primary without certificates: %+v", got)
	}

	// A multi-domain promoted to primary keeps its certificates; the old
	// primary is no longer hosted.
	mustApply(t, s, DomainPrimary{Name: "z.example"})
	want = []Domain{
		{Name: "z.example", Primary: true, Key: "z.key", Cert: "z.crt", Bundle: "ca.pem"},
		{Name: "a.example", Key: "a.key", Cert: "a.crt"},
	}
	if got := domains(); !reflect.DeepEqual(got, want) {
		t.Errorf("after promoting z.example:\n got %+v\nwant %+v", got, want)
	}
	// A brand-new primary with certificates.
	mustApply(t, s, DomainPrimary{Name: "new.example", Certs: &Domain{Key: "n.key", Cert: "n.crt"}})
	if got := domains(); len(got) != 2 || got[0] != (Domain{Name: "new.example", Primary: true, Key: "n.key", Cert: "n.crt"}) {
		t.Errorf("new primary: %+v", got)
	}

	mustApply(t, s, DomainDel{Name: "a.example"})
	if err := prop(s, DomainDel{Name: "a.example"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting an unknown domain: %v", err)
	}
	if err := prop(s, DomainPut{}); err == nil {
		t.Error("domain.put without a domain accepted")
	}
	if got := domains(); len(got) != 1 || got[0].Name != "new.example" {
		t.Errorf("after del: %+v", got)
	}
}

func TestXMPPReset(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	mustApply(t, s, DomainPrimary{Name: "example.com", Certs: &Domain{Key: "k", Cert: "c"}})
	mustApply(t, s, DomainPut{Domain: Domain{Name: "example.org", Key: "k", Cert: "c"}})
	for _, k := range []string{XMPPPortC2S, XMPPPortC2STLS, XMPPPortS2S, XMPPMaxSessions, XMPPClientAuthTimeout} {
		mustApply(t, s, ConfigSet{Key: k, Value: "1"})
	}
	s.SetLocal(XMPPEnabled, "true")
	s.SetLocal(ConfigHostname, "keep")
	a, err := NewAccount("alice@example.com", "password-1")
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, AccountCreate{Accounts: []Account{a}})
	mustApply(t, s, RosterPut{User: a.JID, Item: RosterItem{JID: "bob@example.org", Subscription: SubBoth}})

	mustApply(t, s, XMPPReset{})
	// The op clears the replicated settings; the node-local xmpp.enabled
	// goes with DelLocal (xmpp reset does both).
	if cfg, _ := s.XMPP(); !cfg.Enabled {
		t.Error("the replicated reset cleared the node-local xmpp.enabled")
	}
	s.DelLocal(XMPPEnabled)
	cfg, _ := s.XMPP()
	want := XMPPConfig{PortC2S: 5222, PortC2STLS: 5223, PortS2S: 5269, ClientAuthTimeout: 30 * time.Second,
		PreAuthPerAddress: 100, StanzaRate: 100, StanzaBurst: 500}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("after reset: %+v", cfg)
	}
	if h, _ := s.Config(ConfigHostname); h != "keep" {
		t.Error("reset removed a setting outside xmpp")
	}
	if _, err := s.Account(a.JID); err != nil {
		t.Errorf("reset removed an account: %v", err)
	}
	if _, items, _ := s.Roster(a.JID); len(items) != 1 {
		t.Error("reset removed a roster")
	}
	mustApply(t, s, XMPPReset{}) // nothing to clear: fine
}

func TestPreparePassword(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: "password-1", want: "password-1"},
		{in: "pass word", want: "pass word"},
		{in: "pass\u00a0word", want: "pass word"},      // non-ASCII space → ASCII space
		{in: "caf\u0065\u0301-1", want: "caf\u00e9-1"}, // NFC
		{in: "Case-Kept", want: "Case-Kept"},
		{in: "", err: "not allowed"},
		{in: "tab\tpassword", err: "not allowed"},
		{in: strings.Repeat("x", MaxPasswordLength+1), err: "longer than 1024 bytes"},
	}
	for _, tc := range tests {
		got, err := PreparePassword(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("PreparePassword(%q) = %q, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("PreparePassword(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestNewAccount(t *testing.T) {
	a, err := NewAccount("alice@example.com", "pass\u00a0word-1")
	if err != nil {
		t.Fatal(err)
	}
	if a.JID != "alice@example.com" || a.Domain() != "example.com" {
		t.Errorf("account %q domain %q", a.JID, a.Domain())
	}
	for name, k := range map[string]SCRAMKey{"SHA-1": a.SHA1, "SHA-256": a.SHA256} {
		if len(k.Salt) != 16 || k.Iter != SCRAMIterations {
			t.Errorf("%s: salt %d bytes, %d iterations", name, len(k.Salt), k.Iter)
		}
	}
	if bytes.Equal(a.SHA1.Salt, a.SHA256.Salt) {
		t.Error("the two credentials share a salt")
	}
	// The salted passwords are those of the prepared password (RFC 5802).
	if want := sasl.SCRAMSaltPassword(sha1.New, []byte("pass word-1"), a.SHA1.Salt, SCRAMIterations); !bytes.Equal(a.SHA1.Salted, want) {
		t.Error("SCRAM-SHA-1 salted password is not PBKDF2 of the prepared password")
	}
	if want := sasl.SCRAMSaltPassword(sha256.New, []byte("pass word-1"), a.SHA256.Salt, SCRAMIterations); !bytes.Equal(a.SHA256.Salted, want) {
		t.Error("SCRAM-SHA-256 salted password is not PBKDF2 of the prepared password")
	}
	for pw, want := range map[string]bool{"pass\u00a0word-1": true, "pass word-1": true, "pass  word-1": false, "password-1": false, "": false} {
		if got := a.CheckPassword(pw); got != want {
			t.Errorf("CheckPassword(%q) = %v", pw, got)
		}
	}
	b, _ := NewAccount("bob@example.com", "pass\u00a0word-1")
	if bytes.Equal(a.SHA256.Salt, b.SHA256.Salt) || bytes.Equal(a.SHA256.Salted, b.SHA256.Salted) {
		t.Error("two accounts with the same password share salt or key")
	}
	if _, err := NewAccount("x@example.com", strings.Repeat("x", MaxPasswordLength+1)); err == nil {
		t.Error("an over-long password was accepted")
	}
	var zero Account
	if zero.CheckPassword("") {
		t.Error("an account without credentials accepted a password")
	}
	if raw, _ := json.Marshal(a); bytes.Contains(raw, []byte("word-1")) {
		t.Error("the stored account holds the password")
	}
}

func TestAccounts(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	mk := func(j string) Account {
		a, err := NewAccount(j, "password-1")
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	alice, bob, carol := mk("alice@example.com"), mk("bob@example.com"), mk("carol@sub.example.com")
	mustApplyAt(t, s, t0, AccountCreate{Accounts: []Account{alice, bob, carol}})
	if err := prop(s, AccountCreate{Accounts: []Account{mk("dave@example.com"), alice}}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate create: %v", err)
	}
	if _, err := s.Account("dave@example.com"); !errors.Is(err, ErrNotFound) {
		t.Error("a failed create left an account behind (not one transaction)")
	}
	alice2 := mk("alice@example.com")
	mustApply(t, s, AccountCreate{Accounts: []Account{mk("dave@example.com"), alice2, mk("dave@example.com")}, SkipExisting: true})
	if a, _ := s.Account("alice@example.com"); !bytes.Equal(a.SHA256.Salted, alice.SHA256.Salted) {
		t.Error("SkipExisting replaced an existing account")
	}
	if err := prop(s, AccountCreate{Accounts: []Account{{}}}); err == nil {
		t.Error("an account without a JID was accepted")
	}

	a, err := s.Account("alice@example.com")
	if err != nil || !a.Created.Equal(t0) || !a.CheckPassword("password-1") {
		t.Errorf("alice = %+v, %v", a, err)
	}
	list := func(domain string) string {
		accs, err := s.Accounts(domain)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range accs {
			out = append(out, a.JID)
		}
		return strings.Join(out, " ")
	}
	if got := list(""); got != "alice@example.com bob@example.com carol@sub.example.com dave@example.com" {
		t.Errorf("Accounts() = %s", got)
	}
	if got := list("example.com"); got != "alice@example.com bob@example.com dave@example.com" {
		t.Errorf("Accounts(example.com) = %s", got)
	}
	if got := list("sub.example.com"); got != "carol@sub.example.com" {
		t.Errorf("Accounts(sub.example.com) = %s", got)
	}

	// A new password keeps the creation time.
	np, _ := NewAccount("alice@example.com", "password-2")
	mustApply(t, s, AccountPassword{Account: np})
	a, _ = s.Account("alice@example.com")
	if !a.CheckPassword("password-2") || a.CheckPassword("password-1") || !a.Created.Equal(t0) {
		t.Errorf("after password change: %+v", a)
	}
	if err := prop(s, AccountPassword{Account: mk("nobody@example.com")}); !errors.Is(err, ErrNotFound) {
		t.Errorf("password of an unknown account: %v", err)
	}
	if err := prop(s, AccountPassword{}); err == nil {
		t.Error("account.password without an account accepted")
	}

	// Deleting an account deletes what it owns, and nobody else's.
	for _, u := range []string{"alice@example.com", "bob@example.com"} {
		mustApply(t, s, RosterPut{User: u, Item: RosterItem{JID: "x@example.org", Subscription: SubTo}})
		mustApply(t, s, OfflinePush{User: u, Stanza: []byte("<message/>")})
		mustApply(t, s, VCardSet{User: u, VCard: []byte("<vCard/>")})
		mustApply(t, s, PrivateSet{User: u, Key: "storage:bookmarks", XML: []byte("<storage/>")})
		mustApply(t, s, LastSet{User: u, Status: "gone"})
	}
	mustApply(t, s, AccountDelete{JID: "alice@example.com"})
	if err := prop(s, AccountDelete{JID: "alice@example.com"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting twice: %v", err)
	}
	check := func(u string, want bool) {
		t.Helper()
		_, items, _ := s.Roster(u)
		off, _ := s.Offline(u)
		vc, _ := s.VCard(u)
		pr, _ := s.Private(u, "storage:bookmarks")
		_, last, _ := s.Last(u)
		got := []bool{len(items) > 0, len(off) > 0, vc != nil, pr != nil, last}
		for i, g := range got {
			if g != want {
				t.Errorf("%s: data %d present = %v, want %v", u, i, g, want)
			}
		}
	}
	check("alice@example.com", false)
	check("bob@example.com", true)
	s.Close()

	// Everything survives a restart.
	s = open(t, dir)
	defer s.Close()
	if got := list(""); got != "bob@example.com carol@sub.example.com dave@example.com" {
		t.Errorf("after reopen: %s", got)
	}
	check("bob@example.com", true)
}

func TestRoster(t *testing.T) {
	s := fast(open(t, t.TempDir()))
	defer s.Close()
	const u = "alice@example.com"
	ver, items, err := s.Roster(u)
	if err != nil || ver != 0 || items != nil {
		t.Errorf("empty roster: %d %v %v", ver, items, err)
	}
	bob := RosterItem{JID: "bob@example.org", Name: "Bob", Subscription: SubNone, Ask: true, Groups: []string{"Friends"}}
	mustApply(t, s, RosterPut{User: u, Item: bob})
	v1, _, _ := s.Roster(u)
	bob.Subscription, bob.Ask = SubTo, false
	mustApply(t, s, RosterPut{User: u, Item: bob})
	mustApply(t, s, RosterPut{User: u, Item: RosterItem{JID: "carol@example.net", Subscription: SubFrom, PendingIn: true, PendingInMsg: []byte("<presence/>")}})
	v3, items, _ := s.Roster(u)
	if !(v1 > 0 && v3 > v1) || len(items) != 2 {
		t.Errorf("versions %d %d, %d items", v1, v3, len(items))
	}
	it, ok, err := s.RosterItem(u, "bob@example.org")
	if err != nil || !ok || !reflect.DeepEqual(it, bob) {
		t.Errorf("RosterItem = %+v %v %v", it, ok, err)
	}
	if _, ok, _ := s.RosterItem(u, "nobody@example.org"); ok {
		t.Error("RosterItem found an unknown contact")
	}
	if _, ok, _ := s.RosterItem("nobody@example.com", "bob@example.org"); ok {
		t.Error("RosterItem found a contact of a user without a roster")
	}
	mustApply(t, s, RosterDel{User: u, JID: "bob@example.org"})
	v4, items, _ := s.Roster(u)
	if v4 <= v3 || len(items) != 1 || items[0].JID != "carol@example.net" {
		t.Errorf("after del: version %d, %+v", v4, items)
	}
	if err := prop(s, RosterDel{User: u, JID: "bob@example.org"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting twice: %v", err)
	}
	if err := prop(s, RosterDel{User: "nobody@example.com", JID: "bob@example.org"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting from no roster: %v", err)
	}
	if err := prop(s, RosterPut{User: u}); err == nil {
		t.Error("roster.put without an item accepted")
	}

	// The roster is bounded; updating an item of a full roster is fine.
	for i := len(items); i < MaxRosterItems; i++ {
		mustApply(t, s, RosterPut{User: u, Item: RosterItem{JID: fmt.Sprintf("c%04d@example.org", i), Subscription: SubNone}})
	}
	if err := prop(s, RosterPut{User: u, Item: RosterItem{JID: "one-more@example.org"}}); !errors.Is(err, ErrFull) {
		t.Errorf("roster over the limit: %v", err)
	}
	mustApply(t, s, RosterPut{User: u, Item: RosterItem{JID: "c0500@example.org", Subscription: SubBoth}})
	if _, items, _ := s.Roster(u); len(items) != MaxRosterItems {
		t.Errorf("%d items", len(items))
	}
}

func TestOffline(t *testing.T) {
	s := fast(open(t, t.TempDir()))
	defer s.Close()
	const u = "alice@example.com"
	if out, err := s.Offline(u); err != nil || out != nil {
		t.Errorf("empty queue: %v %v", out, err)
	}
	for i := 1; i <= 3; i++ {
		mustApply(t, s, OfflinePush{User: u, Stanza: []byte(fmt.Sprintf("<message id='%d'/>", i))})
	}
	out, _ := s.Offline(u)
	if len(out) != 3 || out[0].Seq != 1 || out[2].Seq != 3 || string(out[1].Stanza) != "<message id='2'/>" {
		t.Fatalf("queue = %+v", out)
	}
	if page, err := s.OfflineAfter(u, 1, 1); err != nil || len(page) != 1 || page[0].Seq != 2 {
		t.Fatalf("page after 1: %+v %v", page, err)
	}
	if page, _ := s.OfflineAfter(u, 0, 10); len(page) != 3 {
		t.Fatalf("page after 0: %+v", page)
	}
	if page, err := s.OfflineAfter("nobody@example.com", 0, 10); err != nil || len(page) != 0 {
		t.Fatalf("page of nobody: %+v %v", page, err)
	}
	mustApply(t, s, OfflineDel{User: u, Through: uint64(2)})
	out, _ = s.Offline(u)
	if len(out) != 1 || out[0].Seq != 3 {
		t.Errorf("after deleting up to 2: %+v", out)
	}
	mustApply(t, s, OfflineDel{User: "nobody@example.com", Through: uint64(10)}) // nothing stored: fine
	mustApply(t, s, OfflineDel{User: u, Through: uint64(3)})
	if out, _ := s.Offline(u); len(out) != 0 {
		t.Errorf("after deleting all: %+v", out)
	}
	// Sequence numbers keep growing, so a delivery never deletes newer ones.
	mustApply(t, s, OfflinePush{User: u, Stanza: []byte("<message id='4'/>")})
	if out, _ := s.Offline(u); len(out) != 1 || out[0].Seq != 4 {
		t.Errorf("after a new push: %+v", out)
	}
	for i := 1; i < MaxOfflineQueue; i++ {
		mustApply(t, s, OfflinePush{User: u, Stanza: []byte("<message/>")})
	}
	if err := prop(s, OfflinePush{User: u, Stanza: []byte("<message/>")}); !errors.Is(err, ErrFull) {
		t.Errorf("queue over the limit: %v", err)
	}
}

func TestVCardPrivateLast(t *testing.T) {
	s := fast(open(t, t.TempDir()))
	defer s.Close()
	const u = "alice@example.com"
	if v, err := s.VCard(u); v != nil || err != nil {
		t.Errorf("no vCard: %q %v", v, err)
	}
	mustApply(t, s, VCardSet{User: u, VCard: []byte("<vCard xmlns='vcard-temp'/>")})
	if v, _ := s.VCard(u); string(v) != "<vCard xmlns='vcard-temp'/>" {
		t.Errorf("vCard = %q", v)
	}
	if err := prop(s, VCardSet{User: u, VCard: make([]byte, MaxStoredXML+1)}); !errors.Is(err, ErrFull) {
		t.Errorf("big vCard: %v", err)
	}
	mustApply(t, s, VCardSet{User: u})
	if v, _ := s.VCard(u); v != nil {
		t.Errorf("vCard after delete = %q", v)
	}

	if v, err := s.Private(u, "k"); v != nil || err != nil {
		t.Errorf("no private data: %q %v", v, err)
	}
	mustApply(t, s, PrivateSet{User: u, Key: "storage:bookmarks", XML: []byte("<storage/>")})
	mustApply(t, s, PrivateSet{User: u, Key: "storage:bookmarks", XML: []byte("<storage><x/></storage>")})
	if v, _ := s.Private(u, "storage:bookmarks"); string(v) != "<storage><x/></storage>" {
		t.Errorf("private = %q", v)
	}
	if v, _ := s.Private(u, "other"); v != nil {
		t.Errorf("other private key = %q", v)
	}
	if err := prop(s, PrivateSet{User: u, Key: "big", XML: make([]byte, MaxStoredXML+1)}); !errors.Is(err, ErrFull) {
		t.Errorf("big private XML: %v", err)
	}
	for i := 1; i < MaxPrivateEntries; i++ {
		mustApply(t, s, PrivateSet{User: u, Key: fmt.Sprintf("ns:%d", i), XML: []byte("<x/>")})
	}
	if err := prop(s, PrivateSet{User: u, Key: "ns:one-more", XML: []byte("<x/>")}); !errors.Is(err, ErrFull) {
		t.Errorf("private storage over the limit: %v", err)
	}
	mustApply(t, s, PrivateSet{User: u, Key: "ns:1", XML: []byte("<y/>")}) // replacing is fine

	if _, ok, err := s.Last(u); ok || err != nil {
		t.Errorf("no last activity: %v %v", ok, err)
	}
	t0 := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	mustApplyAt(t, s, t0, LastSet{User: u, Status: "Gone fishing"})
	if l, ok, _ := s.Last(u); !ok || !l.Time.Equal(t0) || l.Status != "Gone fishing" {
		t.Errorf("last = %+v %v", l, ok)
	}
}
