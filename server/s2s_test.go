package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/resolve/dnstest"
	"github.com/parley-xmpp/parley/server/s2s"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// Federation between two engines in this process, through a DNS server of
// the test's own (SRV and A records), over real TCP and TLS: dialback with
// self-signed certificates, SASL EXTERNAL once each trusts the other's,
// the secure list, spoofed from, unreachable domains and idle links. The
// same against Prosody and ejabberd runs in e2e/.

type fedPair struct {
	dns  *dnstest.Server
	a, b *fixture
}

func srvRecords(domain string, port int) []string {
	return []string{
		fmt.Sprintf("_xmpp-server._tcp.%s. 60 IN SRV 0 5 %d %s.", domain, port, domain),
		fmt.Sprintf("%s. 60 IN A 127.0.0.1", domain),
	}
}

// federate starts a.lan and b.lan, both federating, both resolving through
// the test's DNS server.
func federate(t testing.TB, tweak func(*Config)) *fedPair {
	t.Helper()
	fp := &fedPair{}
	if os.Getenv("PARLEY_TEST_LOG") != "" {
		inner := tweak
		tweak = func(c *Config) {
			c.Log = logging.NewWriter(os.Stderr, logging.LevelLow)
			if inner != nil {
				inner(c)
			}
		}
	}
	fp.a = startDomain(t, "a.lan", tweak)
	fp.b = startDomain(t, "b.lan", tweak)
	recs := append(srvRecords("a.lan", fp.a.s2sPort), srvRecords("b.lan", fp.b.s2sPort)...)
	d, err := dnstest.Start("127.0.0.1:0", recs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	fp.dns = d
	for _, f := range []*fixture{fp.a, fp.b} {
		f.set(store.DNSResolvers, d.Addr())
		f.set(store.FedEnabled, "true")
	}
	return fp
}

func (f *fixture) set(key, value string) {
	f.t.Helper()
	if _, err := f.st.ProposeSettled(context.Background(), store.ConfigSet{Key: key, Value: value}); err != nil {
		f.t.Fatal(err)
	}
}

// userAt logs a user in at the fixture's domain with initial presence.
func (f *fixture) userAt(domain, user string) *client {
	f.t.Helper()
	c := f.dial()
	c.conn.SetDeadline(time.Now().Add(60 * time.Second))
	c.loginAt(domain, user, user+"-password", "r")
	c.send(`<presence/>`)
	return c
}

// answer waits for the stanza (of any kind) answering or bouncing id.
func (c *client) answer(id string) *xml.Element {
	c.t.Helper()
	return c.expect("the answer to "+id, func(el *xml.Element) bool {
		return el.Get("id") == id && (el.Get("type") == "result" || el.Get("type") == "error")
	})
}

func (f *fixture) links(dir status.Direction) []status.Link {
	var out []status.Link
	for _, l := range f.eng.Status().Federation {
		if dir == "" || l.Direction == dir {
			out = append(out, l)
		}
	}
	return out
}

func isMessageFrom(from, body string) func(*xml.Element) bool {
	return func(el *xml.Element) bool {
		return el.Name.Local == "message" && strings.HasPrefix(el.Get("from"), from) && el.Child("", "body") != nil && el.Child("", "body").Text() == body
	}
}

func TestFederationDialbackBothWays(t *testing.T) {
	fp := federate(t, nil)
	alice := fp.a.userAt("a.lan", "alice")
	bob := fp.b.userAt("b.lan", "bob")
	alice.send(`<message to='bob@b.lan' type='chat' id='m1'><body>hi bob</body></message>`)
	bob.expect("alice's message", isMessageFrom("alice@a.lan/r", "hi bob"))
	bob.send(`<message to='alice@a.lan/r' type='chat' id='m2'><body>hi alice</body></message>`)
	alice.expect("bob's message", isMessageFrom("bob@b.lan/r", "hi alice"))

	out := fp.a.links("out")
	if len(out) != 1 || out[0].Remote != "b.lan" || out[0].Auth != "dialback" || out[0].State != "up" || !out[0].TLS || out[0].Stanzas != 1 {
		t.Fatalf("a.lan outgoing links: %+v", out)
	}
	in := fp.a.links("in")
	if len(in) != 1 || in[0].Remote != "b.lan" || in[0].Auth != "dialback" || in[0].Stanzas != 1 {
		t.Fatalf("a.lan incoming links: %+v", in)
	}
	// An IQ to a remote server is answered across the link.
	alice.send(`<iq type='get' id='p1' to='b.lan'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if r := alice.reply("p1"); r.Get("type") != "result" || r.Get("from") != "b.lan" {
		t.Fatalf("ping b.lan: %s", r)
	}
}

func TestFederationExternalWithTrustedCertificates(t *testing.T) {
	fp := federate(t, nil)
	// One private CA signs both servers' certificates; both trust it.
	caPEM, issue := testCA(t)
	for _, x := range []struct {
		f    *fixture
		name string
	}{{fp.a, "a.lan"}, {fp.b, "b.lan"}} {
		keyPEM, crtPEM := issue(x.name)
		x.f.files.WriteFile("ca.pem", caPEM, 0o644, false)
		x.f.files.WriteFile(x.name+"-ca.key", keyPEM, 0o600, false)
		x.f.files.WriteFile(x.name+"-ca.crt", crtPEM, 0o644, false)
		if _, err := x.f.st.ProposeSettled(context.Background(), store.DomainPut{Domain: store.Domain{Name: x.name, Key: x.name + "-ca.key", Cert: x.name + "-ca.crt"}}); err != nil {
			t.Fatal(err)
		}
		x.f.set(store.FedTrust, "ca.pem")
	}
	alice := fp.a.userAt("a.lan", "alice")
	bob := fp.b.userAt("b.lan", "bob")
	alice.send(`<message to='bob@b.lan' type='chat'><body>over EXTERNAL</body></message>`)
	bob.expect("the message", isMessageFrom("alice@a.lan/r", "over EXTERNAL"))
	out := fp.a.links("out")
	if len(out) != 1 || out[0].Auth != "EXTERNAL" {
		t.Fatalf("a.lan outgoing links: %+v", out)
	}
	if in := fp.b.links("in"); len(in) != 1 || in[0].Auth != "EXTERNAL" || in[0].Remote != "a.lan" {
		t.Fatalf("b.lan incoming links: %+v", in)
	}
	// With verified certificates, the secure list lets the traffic through
	// both ways.
	fp.a.set(store.FedSecure+"*.lan", "1")
	fp.b.set(store.FedSecure+"a.lan", "1")
	bob.send(`<message to='alice@a.lan' type='chat'><body>securely back</body></message>`)
	alice.expect("bob's answer", isMessageFrom("bob@b.lan/r", "securely back"))
}

// testCA makes a CA certificate and a function issuing server
// certificates for a domain under it (PEM).
func testCA(t *testing.T) (caPEM []byte, issue func(domain string) (keyPEM, certPEM []byte)) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	serial := int64(1)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), func(domain string) ([]byte, []byte) {
		serial++
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tm := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: domain}, DNSNames: []string{domain},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		d, err := x509.CreateCertificate(rand.Reader, tm, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalPKCS8PrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})
	}
}

func TestFederationSecureListRefusesUnverifiedPeer(t *testing.T) {
	fp := federate(t, nil)
	fp.a.set(store.FedSecure+"*.lan", "1")
	alice := fp.a.userAt("a.lan", "alice")
	bob := fp.b.userAt("b.lan", "bob")
	alice.send(`<message to='bob@b.lan' type='chat' id='s1'><body>secret</body></message>`)
	el := alice.expect("a bounce", func(el *xml.Element) bool { return el.Name.Local == "message" && el.Get("type") == "error" })
	if cond := stanzaError(el); cond != "remote-server-not-found" {
		t.Fatalf("bounce condition %q: %s", cond, el)
	}
	if txt := el.String(); !strings.Contains(txt, "secure list") {
		t.Fatalf("the bounce does not say why: %s", txt)
	}
	// Nothing arrived; b.lan cannot reach a.lan either (it has no verified
	// certificate for a.lan's secure list).
	bob.send(`<message to='alice@a.lan' type='chat' id='s2'><body>back</body></message>`)
	el = bob.expect("a bounce", func(el *xml.Element) bool { return el.Name.Local == "message" && el.Get("type") == "error" })
	if cond := stanzaError(el); cond != "remote-server-not-found" {
		t.Fatalf("bob's bounce: %s", el)
	}
	if _, fails := fp.a.eng.s2s.Status(); len(fails) == 0 {
		t.Fatal("no failure recorded for the shell")
	}
}

func TestFederationUnreachableDomainsBounce(t *testing.T) {
	fp := federate(t, nil)
	closed := freePort(t)
	fp.dns.Set(append(append(srvRecords("a.lan", fp.a.s2sPort), srvRecords("b.lan", fp.b.s2sPort)...),
		srvRecords("closed.lan", closed)...)...)
	alice := fp.a.userAt("a.lan", "alice")
	for i, to := range []string{"nobody.lan", "closed.lan"} {
		id := fmt.Sprint("u", i)
		alice.send(`<message to='x@` + to + `' type='chat' id='` + id + `'><body>anyone?</body></message>`)
		el := alice.expect("a bounce from "+to, func(el *xml.Element) bool { return el.Get("id") == id })
		if el.Get("type") != "error" || stanzaError(el) != "remote-server-not-found" || el.Get("from") != "x@"+to {
			t.Fatalf("bounce for %s: %s", to, el)
		}
	}
	// Several stanzas queued while a link is set up all come back.
	for i := 0; i < 3; i++ {
		alice.send(fmt.Sprintf(`<iq type='get' id='q%d' to='closed.lan'><ping xmlns='urn:xmpp:ping'/></iq>`, i))
	}
	for i := 0; i < 3; i++ {
		if r := alice.reply(fmt.Sprint("q", i)); stanzaError(r) != "remote-server-not-found" {
			t.Fatalf("iq %d: %s", i, r)
		}
	}
}

func TestFederationPolicy(t *testing.T) {
	fp := federate(t, nil)
	alice := fp.a.userAt("a.lan", "alice")
	fp.a.set(store.FedPolicy+"b.lan", store.PolicyBlock)
	alice.send(`<message to='bob@b.lan' type='chat' id='b1'><body>blocked</body></message>`)
	if el := alice.answer("b1"); stanzaError(el) != "not-allowed" {
		t.Fatalf("blocked: %s", el)
	}
	fp.a.set(store.FedPolicy+"b.lan", store.PolicyAllow)
	fp.a.set(store.FedEnabled, "false")
	alice.send(`<message to='bob@b.lan' type='chat' id='b2'><body>disabled</body></message>`)
	if el := alice.answer("b2"); stanzaError(el) != "remote-server-not-found" || !strings.Contains(el.String(), "disabled") {
		t.Fatalf("disabled: %s", el)
	}
	// b.lan cannot reach a.lan while a.lan's federation is off: the
	// incoming stream is refused.
	bob := fp.b.userAt("b.lan", "bob")
	bob.send(`<message to='alice@a.lan' type='chat' id='b3'><body>hello?</body></message>`)
	if el := bob.answer("b3"); stanzaError(el) != "remote-server-not-found" {
		t.Fatalf("to a disabled server: %s", el)
	}
}

// An idle link closes; a shorter idle timeout applies to the links
// already open too (paper cut 3: it used to wait for the old timeout).
func TestFederationIdleLinkCloses(t *testing.T) {
	fp := federate(t, nil)
	fp.a.set(store.FedIdleTimeout, "3600")
	alice := fp.a.userAt("a.lan", "alice")
	bob := fp.b.userAt("b.lan", "bob")
	alice.send(`<message to='bob@b.lan' type='chat'><body>one</body></message>`)
	bob.expect("the message", isMessageFrom("alice@a.lan/r", "one"))
	if len(fp.a.links("out")) != 1 {
		t.Fatal("no outgoing link")
	}
	lowered := time.Now()
	fp.a.set(store.FedIdleTimeout, "1")
	waitFor(t, "the open link to close by the new idle timeout", func() bool { return len(fp.a.links("out")) == 0 })
	if took := time.Since(lowered); took > 5*time.Second {
		t.Errorf("the link closed %v after the idle timeout was lowered to 1 s", took)
	}
	waitFor(t, "b.lan to see the incoming link end", func() bool { return len(fp.b.links("in")) == 0 })
	// The next message sets up a new link, which closes when idle.
	alice.send(`<message to='bob@b.lan' type='chat'><body>two</body></message>`)
	bob.expect("the second message", isMessageFrom("alice@a.lan/r", "two"))
	waitFor(t, "the new idle link to close", func() bool { return len(fp.a.links("out")) == 0 })
}

// A raw peer: opens a server stream to a.lan, does STARTTLS, and sends a
// stanza from a domain it never authenticated.
func TestFederationSpoofedFromIsRefused(t *testing.T) {
	fp := federate(t, nil)
	alice := fp.a.userAt("a.lan", "alice")
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", fp.a.s2sPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	p := &client{t: t, conn: c}
	open := func() *xml.Element {
		p.send(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='evil.lan' to='a.lan' version='1.0'>`)
		p.rd = xml.NewReader(p.conn, xml.DefaultLimits)
		if _, err := p.rd.Header(); err != nil {
			t.Fatalf("header: %v", err)
		}
		return p.next()
	}
	if f := open(); f.Child("", "starttls") == nil {
		t.Fatalf("no STARTTLS offered: %s", f)
	}
	p.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	if el := p.next(); el.Name.Local != "proceed" {
		t.Fatalf("starttls: %s", el)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "a.lan", InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	p.conn = tc
	if f := open(); f.Child(s2s.NSDialbackFeature, "dialback") == nil {
		t.Fatalf("no dialback offered: %s", f)
	}
	p.send(`<message from='bob@b.lan' to='alice@a.lan' type='chat'><body>I am bob</body></message>`)
	if cond := p.streamError(); cond != "invalid-from" {
		t.Fatalf("stream error %q, want invalid-from", cond)
	}
	// And dialback with a made-up key for b.lan is refused: a.lan asks
	// b.lan, which never made that key.
	c2, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", fp.a.s2sPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(20 * time.Second))
	p = &client{t: t, conn: c2}
	open()
	p.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	p.next()
	tc = tls.Client(c2, &tls.Config{ServerName: "a.lan", InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	p.conn = tc
	open()
	p.send(`<db:result from='b.lan' to='a.lan'>0123456789abcdef</db:result>`)
	el := p.expect("the dialback verdict", func(el *xml.Element) bool { return el.Name.Local == "result" })
	if el.Get("type") != "invalid" {
		t.Fatalf("forged dialback: %s", el)
	}
	p.send(`<message from='bob@b.lan' to='alice@a.lan' type='chat'><body>I am bob</body></message>`)
	if cond := p.streamError(); cond != "invalid-from" {
		t.Fatalf("after a refused dialback: stream error %q", cond)
	}
	// Alice received nothing from the spoofer.
	alice.send(`<iq type='get' id='after'><ping xmlns='urn:xmpp:ping'/></iq>`)
	el = alice.expect("the ping result", func(el *xml.Element) bool { return el.Name.Local != "presence" })
	if el.Get("id") != "after" {
		t.Fatalf("alice received %s", el)
	}
}

// XEP-0368: a server reached through _xmpps-server SRV records talks TLS
// from the first byte; the direct TLS port accepts server streams too.
func TestFederationDirectTLS(t *testing.T) {
	fp := federate(t, nil)
	fp.dns.Set(append(srvRecords("a.lan", fp.a.s2sPort),
		fmt.Sprintf("_xmpps-server._tcp.b.lan. 60 IN SRV 0 5 %d b.lan.", fp.b.tlsPort),
		"b.lan. 60 IN A 127.0.0.1")...)
	alice := fp.a.userAt("a.lan", "alice")
	bob := fp.b.userAt("b.lan", "bob")
	alice.send(`<message to='bob@b.lan' type='chat'><body>direct</body></message>`)
	bob.expect("the message", isMessageFrom("alice@a.lan/r", "direct"))
	out := fp.a.links("out")
	if len(out) != 1 || out[0].Peer != fmt.Sprintf("127.0.0.1:%d", fp.b.tlsPort) || out[0].Auth != "dialback" {
		t.Fatalf("a.lan outgoing links: %+v", out)
	}
}

// An authenticated incoming link stays open while quiet, past the
// negotiation bound (the client auth timeout, 5 s here).
func TestFederationQuietIncomingLinkStays(t *testing.T) {
	fp := federate(t, nil)
	fp.b.set(store.XMPPClientAuthTimeout, "5")
	alice := fp.a.userAt("a.lan", "alice")
	bob := fp.b.userAt("b.lan", "bob")
	alice.send(`<message to='bob@b.lan' type='chat'><body>first</body></message>`)
	bob.expect("the first message", isMessageFrom("alice@a.lan/r", "first"))
	time.Sleep(7 * time.Second)
	if in := fp.b.links("in"); len(in) != 1 {
		t.Fatalf("b.lan's incoming link closed while quiet: %+v", in)
	}
	alice.send(`<message to='bob@b.lan' type='chat'><body>second</body></message>`)
	bob.expect("the second message", isMessageFrom("alice@a.lan/r", "second"))
}

// A route replaces DNS for one domain: b.lan has no records at all.
func TestFederationRoute(t *testing.T) {
	fp := federate(t, nil)
	fp.dns.Set(srvRecords("a.lan", fp.a.s2sPort)...) // b.lan unknown to DNS
	alice := fp.a.userAt("a.lan", "alice")
	bob := fp.b.userAt("b.lan", "bob")
	alice.send(`<message to='bob@b.lan' type='chat' id='r1'><body>no route</body></message>`)
	if el := alice.answer("r1"); stanzaError(el) != "remote-server-not-found" {
		t.Fatalf("without a route: %s", el)
	}
	fp.a.set(store.FedRoute+"b.lan", fmt.Sprintf("127.0.0.1:%d", fp.b.s2sPort))
	alice.send(`<message to='bob@b.lan' type='chat'><body>routed</body></message>`)
	bob.expect("the routed message", isMessageFrom("alice@a.lan/r", "routed"))
}

// Allow-list mode: only domains with an allow entry federate.
func TestFederationAllowList(t *testing.T) {
	fp := federate(t, nil)
	alice := fp.a.userAt("a.lan", "alice")
	bob := fp.b.userAt("b.lan", "bob")
	fp.a.set(store.FedAllowList, "true")
	alice.send(`<message to='bob@b.lan' type='chat' id='l1'><body>not yet</body></message>`)
	if el := alice.answer("l1"); stanzaError(el) != "not-allowed" {
		t.Fatalf("not on the allow list: %s", el)
	}
	bob.send(`<message to='alice@a.lan' type='chat' id='l2'><body>let me in</body></message>`)
	if el := bob.answer("l2"); stanzaError(el) != "remote-server-not-found" {
		t.Fatalf("b.lan to a.lan, refused by a.lan: %s", el)
	}
	fp.a.set(store.FedPolicy+"b.lan", store.PolicyAllow)
	alice.send(`<message to='bob@b.lan' type='chat'><body>allowed</body></message>`)
	bob.expect("the allowed message", isMessageFrom("alice@a.lan/r", "allowed"))
}

// A call bridge's domain (cb1.a.lan) federates too: b.lan verifies it by
// dialback through its own DNS records, and answers reach the component.
func TestFederationComponentDomain(t *testing.T) {
	fp := federate(t, nil)
	fp.dns.Set(append(append(srvRecords("a.lan", fp.a.s2sPort), srvRecords("b.lan", fp.b.s2sPort)...),
		fmt.Sprintf("_xmpp-server._tcp.cb1.a.lan. 60 IN SRV 0 5 %d a.lan.", fp.a.s2sPort))...)
	if _, err := fp.a.st.ProposeSettled(context.Background(), store.ComponentAdd{Component: store.Component{Name: "cb1", Domain: "a.lan", Secret: cbSecret}}); err != nil {
		t.Fatal(err)
	}
	comp, got := fp.a.connectComponent("cb1.a.lan", cbSecret)
	if got != "handshake" {
		t.Fatalf("handshake: %s", got)
	}
	bob := fp.b.userAt("b.lan", "bob")
	comp.send(`<message from='room@cb1.a.lan' to='bob@b.lan' type='chat'><body>join the call</body></message>`)
	bob.expect("the component's message", isMessageFrom("room@cb1.a.lan", "join the call"))
	bob.send(`<message to='room@cb1.a.lan' type='chat'><body>on my way</body></message>`)
	m := comp.expect("bob's answer", func(el *xml.Element) bool { return el.Name.Local == "message" })
	if m.Get("from") != "bob@b.lan/r" || m.Child("", "body").Text() != "on my way" {
		t.Fatalf("component got %s", m)
	}
}
