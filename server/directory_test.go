package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"

	"github.com/parley-xmpp/parley/server/directory/ldaptest"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// The engine tests' slapd address (127.0.21.0/24 is this branch's).
const dirTestIP = "127.0.21.12"

func mechanisms(features *xml.Element) []string {
	var out []string
	if m := features.Child("urn:ietf:params:xml:ns:xmpp-sasl", "mechanisms"); m != nil {
		for _, c := range m.Elements() {
			out = append(out, c.Text())
		}
	}
	return out
}

func TestDirectoryLogin(t *testing.T) {
	srv := ldaptest.Start(t, dirTestIP)
	f := start(t)
	alice := ldaptest.Users()[0]
	if _, err := f.st.ProposeSettled(context.Background(), store.DirectorySet{Directory: store.Directory{
		Domain: "example.lan", URL: srv.URL(), Base: ldaptest.People, BindDN: ldaptest.ReaderDN, BindPassword: ldaptest.ReaderPW}}); err != nil {
		t.Fatal(err)
	}

	// A directory domain offers PLAIN only; SCRAM is refused.
	c := f.dial()
	if m := mechanisms(c.preauth("example.lan")); strings.Join(m, " ") != "PLAIN" {
		t.Fatalf("mechanisms %v, want PLAIN only", m)
	}
	if el := c.auth(sasl.ScramSha256, "alice", alice.Password, ""); saslCondition(el) != "invalid-mechanism" {
		t.Fatalf("SCRAM on a directory domain: %s", el)
	}
	// The local password of the account made by startDomain is not the directory's.
	if el := c.auth(sasl.Plain, "alice", "alice-password", ""); saslCondition(el) != "not-authorized" {
		t.Fatalf("local password: %s", el)
	}
	if el := c.auth(sasl.Plain, "*", alice.Password, ""); saslCondition(el) != "not-authorized" {
		t.Fatalf("a wildcard user: %s", el)
	}

	// carol has no account here yet: her first login makes it.
	srv.Add(t, ldaptest.UserLDIF(ldaptest.User{UID: "carol", Mail: "carol@example.lan", Password: "carol-pw-1", CN: "Carol Singer", SN: "Singer", Photo: ldaptest.Photo()}))
	c = f.dial()
	c.preauth("example.lan")
	if el := c.auth(sasl.Plain, "carol", "carol-pw-1", ""); el.Name.Local != "success" {
		t.Fatalf("carol with her directory password: %s", el)
	}
	c.open("example.lan")
	if got := c.bind("dir"); got != "carol@example.lan/dir" {
		t.Fatalf("bound %q", got)
	}
	a, err := f.st.Account("carol@example.lan")
	if err != nil || !a.Directory {
		t.Fatalf("carol's account: %+v %v", a, err)
	}
	// Her vCard comes from the directory, with the avatar hash in her presence.
	c.send(`<iq type='get' id='v1'><vCard xmlns='vcard-temp'/></iq>`)
	v := c.reply("v1").String()
	if !strings.Contains(v, "<FN>Carol Singer</FN>") || !strings.Contains(v, "<USERID>carol@example.lan</USERID>") || !strings.Contains(v, "<BINVAL>") {
		t.Fatalf("carol's vCard: %s", v)
	}
	sum := sha1.Sum(ldaptest.Photo())
	c.send(`<presence/>`)
	p := c.expect("own presence", func(el *xml.Element) bool { return el.Name.Local == "presence" })
	if x := p.Child("vcard-temp:x:update", "x"); x == nil || x.Child("vcard-temp:x:update", "photo") == nil ||
		x.Child("vcard-temp:x:update", "photo").Text() != hex.EncodeToString(sum[:]) {
		t.Fatalf("presence without the avatar hash %x: %s", sum, p)
	}
	// She may not change a directory field; her other fields are hers.
	c.send(`<iq type='set' id='v2'><vCard xmlns='vcard-temp'><FN>Someone Else</FN></vCard></iq>`)
	if e := stanzaError(c.reply("v2")); e != "not-allowed" {
		t.Fatalf("changing FN: %q", e)
	}
	c.send(`<iq type='set' id='v3'><vCard xmlns='vcard-temp'><FN>Carol Singer</FN><NICKNAME>caz</NICKNAME></vCard></iq>`)
	if el := c.reply("v3"); el.Get("type") != "result" {
		t.Fatalf("setting NICKNAME: %s", el)
	}
	stored, _ := f.st.VCard("carol@example.lan")
	if s := string(stored); !strings.Contains(s, "<NICKNAME>caz</NICKNAME>") || !strings.Contains(s, "<BINVAL>") || !strings.Contains(s, "<EMAIL>") {
		t.Fatalf("stored vCard lost fields: %s", s)
	}

	if st := f.eng.Status(); len(st.Directories) != 1 || !st.Directories[0].OK {
		t.Fatalf("status: %+v", st.Directories)
	}

	// The directory goes down: logins fail at once with temporary-auth-failure.
	srv.Stop()
	c = f.dial()
	c.preauth("example.lan")
	start := time.Now()
	if el := c.auth(sasl.Plain, "carol", "carol-pw-1", ""); saslCondition(el) != "temporary-auth-failure" {
		t.Fatalf("directory down: %s", el)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the failed login took %s", d)
	}
	if st := f.eng.Status(); len(st.Directories) != 1 || st.Directories[0].OK || st.Directories[0].Error == "" {
		t.Fatalf("status with the directory down: %+v", st.Directories)
	}

	// No directory: local accounts and SCRAM again.
	if _, err := f.st.ProposeSettled(context.Background(), store.DirectoryDel{Domain: "example.lan"}); err != nil {
		t.Fatal(err)
	}
	c = f.dial()
	if m := mechanisms(c.preauth("example.lan")); len(m) != 3 {
		t.Fatalf("mechanisms after directory none: %v", m)
	}
	if el := c.auth(sasl.ScramSha256, "alice", "alice-password", ""); el.Name.Local != "success" {
		t.Fatalf("local alice: %s", el)
	}
	// The forged proof: SCRAM's client key from an empty salted password.
	c = f.dial()
	c.preauth("example.lan")
	if el := scramWithSalted(c, "carol", nil); saslCondition(el) != "not-authorized" {
		t.Fatalf("a proof from an empty salted password: %s", el)
	}
	// carol's account, made from the directory, has no keys: no password
	// (not even a proof computed from an empty salted password) opens it.
	for _, mech := range []sasl.Mechanism{sasl.ScramSha256, sasl.ScramSha1, sasl.Plain} {
		c := f.dial()
		c.preauth("example.lan")
		if el := c.auth(mech, "carol", "", ""); saslCondition(el) != "not-authorized" {
			t.Fatalf("%s as carol without a password: %s", mech.Name, el)
		}
		if el := c.auth(mech, "carol", "carol-pw-1", ""); saslCondition(el) != "not-authorized" {
			t.Fatalf("%s as carol with her directory password, no directory: %s", mech.Name, el)
		}
	}
}

func rosterOf(t *testing.T, f *fixture, user string) map[string]store.RosterItem {
	t.Helper()
	_, items, err := f.st.Roster(user)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]store.RosterItem{}
	for _, it := range items {
		m[it.JID] = it
	}
	return m
}

func TestDirectoryRosterGroups(t *testing.T) {
	srv := ldaptest.Start(t, dirTestIP)
	f := start(t)
	users := ldaptest.Users()
	if _, err := f.st.ProposeSettled(context.Background(), store.DirectorySet{Directory: store.Directory{
		Domain: "example.lan", URL: srv.URL(), Base: ldaptest.People, GroupsBase: ldaptest.Groups}}); err != nil {
		t.Fatal(err)
	}
	login := func(user, pw string) *client {
		c := f.dial()
		c.preauth("example.lan")
		if el := c.auth(sasl.Plain, user, pw, ""); el.Name.Local != "success" {
			t.Fatalf("%s: %s", user, el)
		}
		c.open("example.lan")
		c.bind("r")
		return c
	}
	a := login("alice", users[0].Password)
	for user, other := range map[string]string{"alice@example.lan": "bob@example.lan", "bob@example.lan": "alice@example.lan"} {
		it, ok := rosterOf(t, f, user)[other]
		if !ok || it.Subscription != store.SubBoth || strings.Join(it.Groups, ",") != "staff" || !it.Directory {
			t.Fatalf("%s's item for %s: %+v (%v)", user, other, it, ok)
		}
	}
	if it := rosterOf(t, f, "bob@example.lan")["alice@example.lan"]; it.Name != "Alice Liddell" {
		t.Fatalf("bob's alice is named %q", it.Name)
	}
	// The roster alice gets shows bob in staff.
	a.send(`<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`)
	if r := a.reply("r1").String(); !strings.Contains(r, `jid="bob@example.lan"`) || !strings.Contains(r, "<group>staff</group>") {
		t.Fatalf("alice's roster: %s", r)
	}
	// bob leaves the group: at alice's next login he is gone from both
	// rosters, and alice's open session is told.
	srv.Modify(t, "dn: cn=staff,"+ldaptest.Groups+"\nchangetype: modify\ndelete: member\nmember: "+ldaptest.UserDN("bob")+"\n")
	login("alice", users[0].Password)
	if _, ok := rosterOf(t, f, "alice@example.lan")["bob@example.lan"]; ok {
		t.Fatal("alice still has bob")
	}
	if _, ok := rosterOf(t, f, "bob@example.lan")["alice@example.lan"]; ok {
		t.Fatal("bob still has alice")
	}
	push := a.expect("a roster push removing bob", func(el *xml.Element) bool {
		return el.Name.Local == "iq" && strings.Contains(el.String(), `subscription="remove"`)
	})
	if !strings.Contains(push.String(), "bob@example.lan") {
		t.Fatalf("push: %s", push)
	}
}

// scramWithSalted runs SCRAM-SHA-256 as user with a given salted password
// (what an attacker knows if the stored one is empty) and returns the
// server's final element.
func scramWithSalted(c *client, user string, salted []byte) *xml.Element {
	c.t.Helper()
	nonce := "fyko+d2lbbFgONRv9qkxdawL"
	first := "n=" + user + ",r=" + nonce
	c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>` + b64([]byte("n,,"+first)) + `</auth>`)
	ch := c.next()
	if ch.Name.Local != "challenge" {
		return ch
	}
	serverFirst, err := base64.StdEncoding.DecodeString(ch.Text())
	if err != nil {
		c.t.Fatal(err)
	}
	var combined string
	for _, part := range strings.Split(string(serverFirst), ",") {
		if strings.HasPrefix(part, "r=") {
			combined = part[2:]
		}
	}
	final := "c=biws,r=" + combined
	auth := first + "," + string(serverFirst) + "," + final
	mac := func(key []byte, s string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(s))
		return m.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	sig := mac(stored[:], auth)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ sig[i]
	}
	c.send(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>` + b64([]byte(final+",p="+base64.StdEncoding.EncodeToString(proof))) + `</response>`)
	return c.next()
}

// The scheduled refresh brings an online user's vCard and shared roster in
// step with the directory, without a new login.
func TestDirectoryRefresh(t *testing.T) {
	old := directoryRefreshEvery
	directoryRefreshEvery = 200 * time.Millisecond
	defer func() { directoryRefreshEvery = old }()
	srv := ldaptest.Start(t, dirTestIP)
	f := start(t)
	if _, err := f.st.ProposeSettled(context.Background(), store.DirectorySet{Directory: store.Directory{
		Domain: "example.lan", URL: srv.URL(), Base: ldaptest.People, GroupsBase: ldaptest.Groups}}); err != nil {
		t.Fatal(err)
	}
	c := f.dial()
	c.preauth("example.lan")
	if el := c.auth(sasl.Plain, "alice", ldaptest.Users()[0].Password, ""); el.Name.Local != "success" {
		t.Fatalf("alice: %s", el)
	}
	c.open("example.lan")
	c.bind("r")
	if _, ok := rosterOf(t, f, "alice@example.lan")["bob@example.lan"]; !ok {
		t.Fatal("alice's roster has no bob after her login")
	}
	srv.Modify(t, "dn: "+ldaptest.UserDN("alice")+"\nchangetype: modify\nreplace: title\ntitle: Queen\n")
	srv.Modify(t, "dn: cn=staff,"+ldaptest.Groups+"\nchangetype: modify\ndelete: member\nmember: "+ldaptest.UserDN("bob")+"\n")
	waitFor(t, "the refreshed vCard and roster", func() bool {
		v, _ := f.st.VCard("alice@example.lan")
		_, bob := rosterOf(t, f, "alice@example.lan")["bob@example.lan"]
		return strings.Contains(string(v), "<TITLE>Queen</TITLE>") && !bob
	})
}
