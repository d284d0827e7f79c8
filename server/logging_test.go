package server

import (
	"encoding/base64"
	"regexp"
	"strings"
	"testing"

	"mellium.im/sasl"

	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/xml"
)

// TestLogRecordsAndSecrets drives real client streams through an engine
// logging to a Hub: logins (good and bad) are logged with the account,
// the mechanism and the connection's XMPPI tag; the password and a message
// body never reach the log at the default level, bodies appear only at
// level all after bodies on, and passwords never at any level.
func TestLogRecordsAndSecrets(t *testing.T) {
	hub := logging.New(logging.Config{})
	f := startWith(t, func(c *Config) { c.Log = hub.Logger() })
	const (
		body     = "the-body-nobody-may-read"
		wrong    = "Wrong-Pa55word!"
		password = "alice-password"
	)
	plainB64 := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00" + password))
	secrets := []string{password, wrong, plainB64, base64.StdEncoding.EncodeToString([]byte("\x00alice\x00" + wrong))}

	message := func(a, b *client, id, text string) {
		t.Helper()
		a.send(`<message to='bob@example.lan/phone' type='chat' id='` + id + `'><body>` + text + `</body></message>`)
		b.expect("message "+id, func(el *xml.Element) bool { return el.Name.Local == "message" && el.Get("id") == id })
	}
	logText := func() string { return strings.Join(hub.Lines(0), "\n") }

	// Default level (problems): a successful login (major), a failed one
	// (problems), a message.
	a := f.dial()
	a.login("alice", password, "pc")
	b := f.online("bob", "phone")
	message(a, b, "m1", body)
	bad := f.dial()
	bad.preauth("example.lan")
	if el := bad.auth(sasl.Plain, "alice", wrong, ""); el.Name.Local != "failure" {
		t.Fatalf("a wrong password: %s", el)
	}
	badScram := f.dial()
	badScram.preauth("example.lan")
	if el := badScram.auth(sasl.ScramSha256, "carol", wrong, ""); el.Name.Local != "failure" {
		t.Fatalf("an unknown user: %s", el)
	}
	var got string
	waitFor(t, "the failed logins in the log", func() bool {
		got = logText()
		return strings.Contains(got, "login failed for carol@example.lan")
	})
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`MAJOR XMPPI-\d+ 127\.0\.0\.1:\d+ c2s: alice@example\.lan logged in with PLAIN`),
		regexp.MustCompile(`MAJOR XMPPI-\d+ 127\.0\.0\.1:\d+ c2s: bob@example\.lan logged in with PLAIN`),
		regexp.MustCompile(`PROBLEM XMPPI-\d+ 127\.0\.0\.1:\d+ c2s: login failed for alice@example\.lan with PLAIN: not-authorized`),
		regexp.MustCompile(`PROBLEM XMPPI-\d+ 127\.0\.0\.1:\d+ c2s: login failed for carol@example\.lan with SCRAM-SHA-256: not-authorized`),
	} {
		if !want.MatchString(got) {
			t.Errorf("the log has no line matching %s:\n%s", want, got)
		}
	}
	if strings.Contains(got, "LOW ") || strings.Contains(got, "stanza in") {
		t.Errorf("records below the default level were written:\n%s", got)
	}
	for _, s := range append(secrets, body) {
		if strings.Contains(got, s) {
			t.Errorf("the log at the default level holds %q:\n%s", s, got)
		}
	}

	// Level all, bodies off: every stanza is logged, its text hidden.
	hub.SetLevel(logging.LevelAll)
	message(a, b, "m2", body)
	got = logText()
	if !regexp.MustCompile(`ALL XMPPI-\d+ 127\.0\.0\.1:\d+ stanza in: <message xmlns="jabber:client" to="bob@example\.lan/phone" type="chat" id="m2" from="alice@example\.lan/pc"><body>\[hidden\]</body></message>`).MatchString(got) {
		t.Errorf("no stanza line with its body hidden:\n%s", got)
	}
	if strings.Contains(got, body) {
		t.Errorf("a body was logged with bodies off:\n%s", got)
	}

	// One conversation can be followed: the stanza line and the login
	// line of alice's connection carry the same tag.
	login := regexp.MustCompile(`(XMPPI-\d+) \S+ c2s: alice@example\.lan logged in`).FindStringSubmatch(got)
	if login == nil || !strings.Contains(got, login[1]+" 127.0.0.1") || !regexp.MustCompile(login[1]+` \S+ stanza in: <message[^>]* id="m2"`).MatchString(got) {
		t.Errorf("alice's stanza is not tagged as her login was (%v):\n%s", login, got)
	}

	// Bodies on: the body is written; a login at this level still never
	// writes the password (SASL data is not a stanza, and is hidden in
	// any case).
	hub.SetBodies(true)
	message(a, b, "m3", body)
	c := f.dial()
	c.login("alice", password, "laptop")
	c.send(`<iq type='set' id='r1'><query xmlns='jabber:iq:register'><username>alice</username><password>` + wrong + `</password></query></iq>`)
	c.expect("register answer", func(el *xml.Element) bool { return el.Get("id") == "r1" })
	got = logText()
	if !strings.Contains(got, "<body>"+body+"</body>") {
		t.Errorf("bodies on at level all: the body is not in the log:\n%s", got)
	}
	if !strings.Contains(got, "<password>[hidden]</password>") {
		t.Errorf("the registration's password is not shown hidden:\n%s", got)
	}
	for _, s := range secrets {
		if strings.Contains(got, s) {
			t.Errorf("the log at level all with bodies holds the secret %q:\n%s", s, got)
		}
	}
	if !regexp.MustCompile(`LOW XMPPI-\d+ \S+ c2s: bound alice@example\.lan/laptop`).MatchString(got) {
		t.Errorf("protocol steps are missing at level all:\n%s", got)
	}

	// None: nothing more.
	hub.SetLevel(logging.LevelNone)
	n := len(hub.Lines(0))
	message(a, b, "m4", body)
	bad2 := f.dial()
	bad2.preauth("example.lan")
	bad2.auth(sasl.Plain, "alice", wrong, "")
	if m := len(hub.Lines(0)); m != n {
		t.Errorf("level none wrote %d lines: %q", m-n, hub.Lines(m-n))
	}
}

// TestLogComponentTags: a component's records are tagged XMPPC with its
// connection's number and peer: a refused handshake (problems), the
// connection (major), its stanzas at level all with their text hidden,
// and its end; the secret never appears.
func TestLogComponentTags(t *testing.T) {
	hub := logging.New(logging.Config{})
	f := startWith(t, func(c *Config) { c.Log = hub.Logger() })
	f.addBridge("cb1")
	if _, got := f.connectComponent("cb1.example.lan", "not-the-secret"); got != "not-authorized" {
		t.Fatalf("a wrong secret: %s", got)
	}
	hub.SetLevel(logging.LevelAll)
	comp, got := f.connectComponent("cb1.example.lan", cbSecret)
	if got != "handshake" {
		t.Fatalf("handshake: %s", got)
	}
	a := f.dial()
	a.login("alice", "alice-password", "phone")
	comp.send(`<message from='room@cb1.example.lan' to='alice@example.lan/phone' type='chat'><body>ringing</body></message>`)
	a.expect("the component's message", func(el *xml.Element) bool { return el.Name.Local == "message" })
	comp.conn.Close()
	var text string
	waitFor(t, "the component's end in the log", func() bool {
		text = strings.Join(hub.Lines(0), "\n")
		return strings.Contains(text, "component: cb1.example.lan disconnected")
	})
	for _, re := range []string{
		`PROBLEM XMPPC-\d+ 127\.0\.0\.1:\d+ component: authentication failure for cb1\.example\.lan`,
		`MAJOR (XMPPC-\d+) 127\.0\.0\.1:\d+ component: cb1\.example\.lan connected`,
		`ALL XMPPC-\d+ 127\.0\.0\.1:\d+ stanza in: <message xmlns="jabber:component:accept" from="room@cb1\.example\.lan" to="alice@example\.lan/phone" type="chat"><body>\[hidden\]</body></message>`,
		`MAJOR XMPPC-\d+ 127\.0\.0\.1:\d+ component: cb1\.example\.lan disconnected`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("no line matching %s:\n%s", re, text)
		}
	}
	connected := regexp.MustCompile(`MAJOR (XMPPC-\d+) \S+ component: cb1\.example\.lan connected`).FindStringSubmatch(text)
	if connected == nil || !strings.Contains(text, connected[1]+" 127.0.0.1") || !regexp.MustCompile(connected[1]+` \S+ component: cb1\.example\.lan disconnected`).MatchString(text) {
		t.Errorf("the connection and its end do not share a tag:\n%s", text)
	}
	if strings.Contains(text, cbSecret) || strings.Contains(text, "ringing") {
		t.Errorf("the secret or a body is in the log:\n%s", text)
	}
}

// TestLogServerTags: a federated message is followed through both
// servers' logs: a.lan's outgoing link is XMPPO (up, at major), b.lan's
// incoming one XMPPS (authenticated, at major), and at level all b.lan
// logs the stanza under the XMPPS tag, its body hidden.
func TestLogServerTags(t *testing.T) {
	hubs := map[string]*logging.Hub{}
	fp := federate(t, func(c *Config) {
		h := logging.New(logging.Config{})
		h.SetLevel(logging.LevelAll)
		hubs[c.Files.Dir()] = h
		c.Log = h.Logger()
	})
	ha, hb := hubs[fp.a.files.Dir()], hubs[fp.b.files.Dir()]
	alice := fp.a.userAt("a.lan", "alice")
	bob := fp.b.userAt("b.lan", "bob")
	alice.send(`<message to='bob@b.lan' type='chat' id='m1'><body>hi bob</body></message>`)
	bob.expect("alice's message", isMessageFrom("alice@a.lan/r", "hi bob"))
	a, b := strings.Join(ha.Lines(0), "\n"), strings.Join(hb.Lines(0), "\n")
	if !regexp.MustCompile(`MAJOR XMPPO-\d+ 127\.0\.0\.1:\d+ s2s: a\.lan → b\.lan up \(dialback\)`).MatchString(a) {
		t.Errorf("a.lan's log has no XMPPO link up:\n%s", a)
	}
	in := regexp.MustCompile(`MAJOR (XMPPS-\d+) 127\.0\.0\.1:\d+ s2s: b\.lan ← a\.lan authenticated \(dialback\)`).FindStringSubmatch(b)
	if in == nil {
		t.Fatalf("b.lan's log has no XMPPS link authenticated:\n%s", b)
	}
	if !regexp.MustCompile(in[1] + ` 127\.0\.0\.1:\d+ stanza in: <message xmlns="jabber:server" [^\n]*id="m1"[^\n]*<body>\[hidden\]</body>`).MatchString(b) {
		t.Errorf("b.lan did not log the stanza under %s:\n%s", in[1], b)
	}
	if strings.Contains(a+b, "hi bob") {
		t.Error("a body is in the log")
	}
}
