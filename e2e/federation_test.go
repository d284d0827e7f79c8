package e2e

// Issue 5: federation (server-to-server XMPP) between a Parley appliance,
// configured over SSH as an administrator would, and real peers: Prosody
// and ejabberd from Debian's packages, a second Parley, and raw s2s streams
// written here where the point is what a server hides (a spoofed from).
// Every server has a loopback address of its own with the default ports and
// finds the others through a dnsmasq the test starts (peers_test.go); the
// users are slixmpp clients.

import (
	"crypto/tls"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startParley boots an appliance serving domain on ip with the default
// ports (the client ports only if free: see defaultPort), using dns as its
// only resolver, with federation enabled, then creates the accounts (jid,
// password, …).
func startParley(t *testing.T, ip, domain string, dns *dnsServer, accounts ...string) *xmppAppliance {
	t.Helper()
	needPeers(t)
	mustBind(t, ip, "5269")
	x := &xmppAppliance{appliance: start(t, options{}), domain: domain, host: ip, s2sPort: "5269"}
	x.c2s, x.c2sTLS = defaultPort(t, ip, "5222"), defaultPort(t, ip, "5223")
	script := strings.Join([]string{
		"xmpp domain " + domain,
		"xmpp listen " + ip,
		"xmpp port c2s " + x.c2s,
		"xmpp port c2s-tls " + x.c2sTLS,
		"xmpp port s2s 5269",
		"dns resolver add " + dns.ip,
		"xmpp federation enable",
		"xmpp enable",
	}, "\n") + "\n"
	out := mustOK(t, x.ssh(x.asAdmin(), script, ""), "XMPP and federation set-up script")
	for _, want := range []string{"XMPP enabled: listening on ", "Federation enabled"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the set-up did not say %q:\n%s", want, out)
		}
	}
	x.addAccounts(t, accounts...)
	return x
}

func (x *xmppAppliance) logs() string {
	return fmt.Sprintf("--- parley %s stderr:\n%s--- parley %s stdout:\n%s", x.domain, tail(x.stderr.String(), 80), x.domain, tail(x.stdout.String(), 20))
}

// dumpOnFailure prints the servers' logs when t has failed; registered
// after the servers start, it runs before they stop.
func dumpOnFailure(t *testing.T, servers ...interface{ logs() string }) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, s := range servers {
			t.Log("\n" + s.logs())
		}
	})
}

// labels parses "Label : value" output with continuation lines into label
// → values.
func labels(out string) map[string][]string {
	m := map[string][]string{}
	last := ""
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if strings.HasPrefix(l, " ") && last != "" {
			m[last] = append(m[last], strings.TrimSpace(l))
			continue
		}
		label, value, ok := strings.Cut(l, " : ")
		if !ok {
			continue
		}
		last = strings.TrimSpace(label)
		m[last] = append(m[last], strings.TrimSpace(value))
	}
	return m
}

// fedLinks is the Links of xmpp federation, one a line ("none" aside).
func (x *xmppAppliance) fedLinks(t *testing.T) []string {
	t.Helper()
	var links []string
	for _, l := range labels(x.mustAdmin(t, "xmpp federation"))["Links"] {
		if !strings.HasPrefix(l, "none") {
			links = append(links, l)
		}
	}
	return links
}

// link returns the link line that starts with prefix (e.g.
// "par.lan → pros.lan (out)"), or "".
func findLink(links []string, prefix string) string {
	for _, l := range links {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// waitLink waits until xmpp federation lists a link starting with prefix
// whose line holds every one of want.
func (x *xmppAppliance) waitLink(t *testing.T, prefix string, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(xmppWait)
	for {
		links := x.fedLinks(t)
		l := findLink(links, prefix)
		ok := l != ""
		for _, w := range want {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("xmpp federation on %s lists no link %q with %q within %v; links:\n%s", x.domain, prefix, want, xmppWait, strings.Join(links, "\n"))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// exchange checks a message each way between a and b.
func exchange(t *testing.T, a *xclient, aJID string, b *xclient, bJID string) {
	t.Helper()
	a.send(t, bJID, "hello from "+aJID)
	b.message(t, aJID, "hello from "+aJID)
	b.send(t, aJID, "hello back from "+bJID)
	a.message(t, bJID, "hello back from "+bJID)
}

// inOrder fails unless c received messages with these bodies in this
// order.
func inOrder(t *testing.T, c *xclient, bodies ...string) {
	t.Helper()
	c.mu.Lock()
	var got []string
	for _, e := range c.events {
		for _, b := range bodies {
			if e.Ev == "message" && e.Body == b {
				got = append(got, b)
			}
		}
	}
	c.mu.Unlock()
	if strings.Join(got, "|") != strings.Join(bodies, "|") {
		t.Fatalf("%s: messages arrived as %q, want %q", c.name, got, bodies)
	}
}

// subscribeBothWays has a subscribe to b's presence and b approve, then
// the other way round; each sees the other online and both rosters say
// both.
func subscribeBothWays(t *testing.T, a *xclient, aJID string, b *xclient, bJID string) {
	t.Helper()
	for _, p := range []struct {
		from, to       *xclient
		fromJID, toJID string
	}{{a, b, aJID, bJID}, {b, a, bJID, aJID}} {
		p.from.do(t, map[string]any{"op": "subscribe", "to": p.toJID})
		p.to.presence(t, p.fromJID, "subscribe")
		p.to.do(t, map[string]any{"op": "subscribed", "to": p.fromJID})
		p.from.presence(t, p.toJID, "subscribed")
		p.from.presence(t, p.toJID, "available")
	}
	for _, p := range []struct {
		c     *xclient
		other string
	}{{a, bJID}, {b, aJID}} {
		if item, ok := p.c.roster(t)[p.other]; !ok || item.Subscription != "both" {
			t.Fatalf("%s: roster item of %s is %+v (present: %v), want subscription both\n%s", p.c.name, p.other, item, ok, p.c.transcript())
		}
	}
}

// TestFederationWithProsody: a Parley user and a Prosody user exchange
// messages both ways and subscribe to each other's presence both ways;
// Prosody's self-signed certificate means dialback, over TLS.
func TestFederationWithProsody(t *testing.T) {
	t.Parallel()
	testFederationWithPeer(t, "prosody")
}

// TestFederationWithEjabberd: the same with ejabberd.
func TestFederationWithEjabberd(t *testing.T) {
	t.Parallel()
	testFederationWithPeer(t, "ejabberd")
}

func testFederationWithPeer(t *testing.T, kind string) {
	needPeers(t)
	n := newFedNet(t)
	peerDomain, peerIP, startPeer := "pros.lan", n.ip(hostProsody), startProsody
	if kind == "ejabberd" {
		peerDomain, peerIP, startPeer = "ejab.lan", n.ip(hostEjab), startEjabberd
	}
	dns := startDNS(t, n.ip(hostDNS), append(xmppDomainRecs("par.lan", n.ip(hostParley)), xmppDomainRecs(peerDomain, peerIP)...)...)
	x := startParley(t, n.ip(hostParley), "par.lan", dns, "alice@par.lan", "pw-alice")
	peer := startPeer(t, peerConfig{ip: peerIP, domain: peerDomain, dns: dns, users: []string{"bob", "pw-bob-42"}})
	dumpOnFailure(t, x, peer)
	bobJID := "bob@" + peerDomain
	alice := x.login(t, "alice@par.lan", "pw-alice", clientOpts{})
	bob := peer.login(t, bobJID, "pw-bob-42")

	// Stanzas sent before the link is up wait for it: all arrive, in order.
	queued := []string{"queued 1", "queued 2", "queued 3"}
	for _, body := range queued {
		alice.send(t, bobJID, body)
	}
	for _, body := range queued {
		waitPeerMessage(t, bob, "alice@par.lan", body, x, peer)
	}
	inOrder(t, bob, queued...)
	exchange(t, alice, "alice@par.lan", bob, bobJID)
	subscribeBothWays(t, alice, "alice@par.lan", bob, bobJID)

	// The links as the administrator sees them: ours to the peer, and the
	// peer's to us, both up over TLS, authenticated by dialback (the
	// certificates are self-signed).
	out := x.waitLink(t, "par.lan → "+peerDomain+" (out)", "up", "TLS", "dialback")
	if strings.Contains(out, "EXTERNAL") {
		t.Errorf("outgoing link to %s with a self-signed certificate says EXTERNAL: %s", peerDomain, out)
	}
	x.waitLink(t, "par.lan → "+peerDomain+" (in)", "up", "TLS", "dialback")
	if st := x.status(t)["Federation"]; !strings.Contains(st, "enabled") || !strings.Contains(st, peerDomain) {
		t.Errorf("xmpp says Federation: %q, want it enabled with the links to %s", st, peerDomain)
	}
	// Parley's own DNS client, as the admin sees it.
	if r := x.admin("dns lookup SRV _xmpp-server._tcp." + peerDomain); r.code != 0 || !strings.Contains(r.stdout, "5269 "+peerDomain) {
		t.Errorf("dns lookup SRV _xmpp-server._tcp.%s: %v", peerDomain, r)
	}
	if r := x.admin("dns lookup A nowhere.lan"); r.code != 1 || !strings.Contains(r.stderr, "NXDOMAIN") {
		t.Errorf("dns lookup A nowhere.lan: want a one-line NXDOMAIN error, got %v", r)
	}
	// The troubleshooting command against the real peer: every step from
	// its SRV record to a real dialback works.
	r := x.admin("xmpp federation check " + peerDomain)
	if r.code != 0 || !strings.Contains(r.stdout, peerDomain+": federation works (dialback)") {
		t.Fatalf("xmpp federation check %s: want success by dialback, got %v", peerDomain, r)
	}
	for _, want := range []string{"ok    SRV _xmpp-server._tcp." + peerDomain, "ok    STARTTLS", "ok    dialback"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("xmpp federation check %s does not say %q:\n%s", peerDomain, want, r.stdout)
		}
	}
}

// fedCA makes a private CA and, signed by it, a key and certificate for
// each domain (DNS SAN, server and client use, as s2s certificates need
// both): ca.crt, DOMAIN.key, DOMAIN.crt in dir.
func fedCA(t *testing.T, dir string, domains ...string) {
	t.Helper()
	ec := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"}
	run(t, dir, opensslBin, append(append([]string{"req", "-x509"}, ec...), "-keyout", "ca.key", "-out", "ca.crt",
		"-subj", "/CN=Federation Test CA", "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE",
		"-addext", "keyUsage=critical,keyCertSign,cRLSign")...)
	for i, d := range domains {
		writeFile(t, dir, d+".ext", []byte("subjectAltName=DNS:"+d+"\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n"))
		run(t, dir, opensslBin, append(append([]string{"req", "-new"}, ec...), "-keyout", d+".key", "-out", d+".csr", "-subj", "/CN="+d)...)
		run(t, dir, opensslBin, "x509", "-req", "-in", d+".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
			"-set_serial", fmt.Sprint(100+i), "-days", "30", "-extfile", d+".ext", "-out", d+".crt")
	}
}

// TestFederationParleyToParley: two appliances federate; with the CA of
// each other's certificates trusted (xmpp federation trust) they
// authenticate by SASL EXTERNAL, and xmpp federation check says it works.
func TestFederationParleyToParley(t *testing.T) {
	t.Parallel()
	needPeers(t)
	n := newFedNet(t)
	dns := startDNS(t, n.ip(hostDNS), append(xmppDomainRecs("par.lan", n.ip(hostParley)), xmppDomainRecs("par2.lan", n.ip(hostParley2))...)...)
	x := startParley(t, n.ip(hostParley), "par.lan", dns, "alice@par.lan", "pw-alice")
	y := startParley(t, n.ip(hostParley2), "par2.lan", dns, "bob@par2.lan", "pw-bob-42")
	dumpOnFailure(t, x, y)

	local := t.TempDir()
	fedCA(t, local, "par.lan", "par2.lan")
	for _, a := range []*xmppAppliance{x, y} {
		d := a.domain
		a.put(t, a.asAdmin(), filepath.Join(local, d+".key"), filepath.Join(local, d+".crt"), filepath.Join(local, "ca.crt"))
		a.mustAdmin(t, "xmpp certs "+d+".key "+d+".crt")
		if out := a.mustAdmin(t, "xmpp federation trust ca.crt"); !strings.Contains(out, "Federation Test CA") {
			t.Fatalf("xmpp federation trust ca.crt on %s does not name the CA:\n%s", d, out)
		}
	}

	alice := x.login(t, "alice@par.lan", "pw-alice", clientOpts{})
	bob := y.login(t, "bob@par2.lan", "pw-bob-42", clientOpts{})
	exchange(t, alice, "alice@par.lan", bob, "bob@par2.lan")
	subscribeBothWays(t, alice, "alice@par.lan", bob, "bob@par2.lan")

	x.waitLink(t, "par.lan → par2.lan (out)", "up", "EXTERNAL", "TLS")
	// Outgoing links leave from the appliance's XMPP address (xmpp
	// listen), the one its peers and their firewalls know.
	x.waitLink(t, "par.lan → par2.lan (in)", "up", "EXTERNAL", "TLS", "from "+n.ip(hostParley2)+":")
	y.waitLink(t, "par2.lan → par.lan (out)", "up", "EXTERNAL", "TLS")
	y.waitLink(t, "par2.lan → par.lan (in)", "from "+n.ip(hostParley)+":")

	r := x.admin("xmpp federation check par2.lan")
	if r.code != 0 || !strings.Contains(r.stdout, "par2.lan: federation works") {
		t.Fatalf("xmpp federation check par2.lan: want success saying federation works, got %v", r)
	}
	for _, want := range []string{"ok    SRV _xmpp-server._tcp.par2.lan: par2.lan:5269", "ok    A/AAAA par2.lan: " + n.ip(hostParley2), "EXTERNAL"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("xmpp federation check par2.lan does not say %q:\n%s", want, r.stdout)
		}
	}

	// The block list, through the shell: a blocked domain's links close and
	// what is sent to it bounces with not-allowed; removing the entry
	// lets the traffic through again.
	x.mustAdmin(t, "xmpp federation block par2.lan")
	alice.send(t, "bob@par2.lan", "while blocked")
	if e := alice.wait(t, "the bounce from the blocked domain", func(e *xev) bool { return e.Ev == "message_error" && bareOf(e.From) == "bob@par2.lan" }); e.Condition != "not-allowed" {
		t.Errorf("message to a blocked domain: condition %q (%q), want not-allowed", e.Condition, e.Text)
	}
	x.mustAdmin(t, "xmpp federation policy del par2.lan")
	exchange(t, alice, "alice@par.lan", bob, "bob@par2.lan")

	// Disabled, federation bounces; a route replaces DNS (here to an
	// address where nothing listens, so it bounces too); without it, DNS
	// again and the traffic flows.
	bounce := func(body, want string) {
		t.Helper()
		alice.send(t, "bob@par2.lan", body)
		e := alice.wait(t, "the bounce of "+body, func(e *xev) bool { return e.Ev == "message_error" && bareOf(e.From) == "bob@par2.lan" })
		if e.Condition != want || e.Text == "" {
			t.Errorf("%s: condition %q (%q), want %s with a reason", body, e.Condition, e.Text, want)
		}
	}
	x.mustAdmin(t, "xmpp federation disable")
	bounce("while disabled", "remote-server-not-found")
	x.mustAdmin(t, "xmpp federation enable")
	x.mustAdmin(t, "xmpp federation route add par2.lan "+n.ip(99)+":5269")
	bounce("via a dead route", "remote-server-not-found")
	x.mustAdmin(t, "xmpp federation route del par2.lan")
	exchange(t, alice, "alice@par.lan", bob, "bob@par2.lan")

	// Allow-list mode: only domains with an allow entry federate.
	x.mustAdmin(t, "xmpp federation allow-list on")
	bounce("not on the allow list", "not-allowed")
	x.mustAdmin(t, "xmpp federation allow par2.lan")
	exchange(t, alice, "alice@par.lan", bob, "bob@par2.lan")
	x.mustAdmin(t, "xmpp federation allow-list off")
	bob.mu.Lock()
	for _, e := range bob.events {
		if e.Ev == "message" && (e.Body == "while blocked" || e.Body == "while disabled" || e.Body == "via a dead route" || e.Body == "not on the allow list") {
			t.Errorf("bob received %q, sent while it could not be delivered", e.Body)
		}
	}
	bob.mu.Unlock()
}

// TestFederationSecureListRefusesWrongCertificate: a peer (Prosody) whose
// certificate names another domain, while its domain is on the secure
// list: the Parley user's message bounces with an error saying why,
// nothing is delivered either way, and xmpp federation check fails with a
// fix.
func TestFederationSecureListRefusesWrongCertificate(t *testing.T) {
	t.Parallel()
	needPeers(t)
	n := newFedNet(t)
	dns := startDNS(t, n.ip(hostDNS), append(xmppDomainRecs("par.lan", n.ip(hostParley)), xmppDomainRecs("pros.lan", n.ip(hostProsody))...)...)
	x := startParley(t, n.ip(hostParley), "par.lan", dns, "alice@par.lan", "pw-alice")
	pros := startProsody(t, peerConfig{ip: n.ip(hostProsody), domain: "pros.lan", dns: dns, certName: "wrong.lan", users: []string{"bob", "pw-bob-42"}})
	dumpOnFailure(t, x, pros)
	if out := x.mustAdmin(t, "xmpp federation secure add pros.lan"); !strings.Contains(out, "pros.lan added to the secure list") {
		t.Fatalf("xmpp federation secure add pros.lan said:\n%s", out)
	}
	alice := x.login(t, "alice@par.lan", "pw-alice", clientOpts{})
	bob := pros.login(t, "bob@pros.lan", "pw-bob-42")

	alice.send(t, "bob@pros.lan", "for a verified server only")
	e := alice.wait(t, "a bounce from bob@pros.lan", func(e *xev) bool { return e.Ev == "message_error" && bareOf(e.From) == "bob@pros.lan" })
	if e.Text == "" || !strings.Contains(strings.ToLower(e.Text), "certificate") {
		t.Errorf("the bounce (%s) does not say why: text %q, want it to name the certificate problem", e.Condition, e.Text)
	}
	// Prosody's own attempt the other way is refused too (no dialback for a
	// secure domain): bob gets an error, alice nothing.
	bob.send(t, "alice@par.lan", "from an unverified server")
	bob.wait(t, "a bounce from alice@par.lan", func(e *xev) bool { return e.Ev == "message_error" && bareOf(e.From) == "alice@par.lan" })
	alice.ping(t, "")
	bob.ping(t, "")
	alice.none(t, "message from an unverified server", func(e *xev) bool { return e.Ev == "message" && e.Type != "error" })
	bob.none(t, "message over an unverified link", func(e *xev) bool { return e.Ev == "message" && e.Type != "error" })

	r := x.admin("xmpp federation check pros.lan")
	if r.code == 0 || r.code == 255 || r.code == -1 {
		t.Fatalf("xmpp federation check pros.lan: want failure, got %v", r)
	}
	if !strings.Contains(r.stdout, "fix:") || !strings.Contains(r.stdout, "wrong.lan") {
		t.Errorf("xmpp federation check pros.lan does not name the certificate's name (wrong.lan) with a fix:\n%s", r)
	}
}

// TestFederationUnreachableDomainBounces: a domain whose server DNS names
// but that does not listen, a domain DNS does not know, and a server that
// accepts the connection but never says a word: the sender gets
// remote-server-not-found or remote-server-timeout back within a bound
// (the silent one after Parley's connect timeout), and xmpp federation
// lists the failures.
func TestFederationUnreachableDomainBounces(t *testing.T) {
	t.Parallel()
	needPeers(t)
	n := newFedNet(t)
	recs := append(xmppDomainRecs("par.lan", n.ip(hostParley)), xmppDomainRecs("gone.lan", n.ip(41))...)
	dns := startDNS(t, n.ip(hostDNS), append(recs, xmppDomainRecs("silent.lan", n.ip(42))...)...)
	x := startParley(t, n.ip(hostParley), "par.lan", dns, "alice@par.lan", "pw-alice")
	dumpOnFailure(t, x)
	silentServer(t, n.ip(42))
	alice := x.login(t, "alice@par.lan", "pw-alice", clientOpts{})
	for _, c := range []struct {
		to    string
		bound time.Duration
	}{
		{"bob@gone.lan", xmppWait},
		{"carol@nowhere.lan", xmppWait},
		{"dave@silent.lan", silentBound},
	} {
		start := time.Now()
		alice.send(t, c.to, "is anyone there?")
		e := alice.waitWithin(t, "a bounce from "+c.to, c.bound, func(e *xev) bool { return e.Ev == "message_error" && bareOf(e.From) == c.to })
		if e.Condition != "remote-server-not-found" && e.Condition != "remote-server-timeout" {
			t.Errorf("bounce from %s: condition %q, want remote-server-not-found or remote-server-timeout", c.to, e.Condition)
		}
		if e.Text == "" {
			t.Errorf("bounce from %s (%s) has no text saying why", c.to, e.Condition)
		}
		t.Logf("%s bounced with %s (%q) after %v", c.to, e.Condition, e.Text, time.Since(start).Round(time.Millisecond))
	}
	fails := strings.Join(labels(x.mustAdmin(t, "xmpp federation"))["Recent failures"], "\n")
	for _, d := range []string{"gone.lan", "nowhere.lan", "silent.lan"} {
		if !strings.Contains(fails, "par.lan → "+d) {
			t.Errorf("xmpp federation lists no recent failure for %s:\n%s", d, fails)
		}
	}
}

// silentBound is how long a stanza for a server that accepts connections
// and never answers may wait for its bounce: Parley's connect timeout (30
// s) and some slack.
const silentBound = 45 * time.Second

// silentServer accepts connections on ip:5269, reads them and never
// answers, until the test ends.
func silentServer(t *testing.T, ip string) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "5269"))
	if err != nil {
		t.Fatalf("the silent server: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * silentBound))
				io.Copy(io.Discard, c)
			}()
		}
	}()
}

// TestFederationIdleLinkClosed: with an idle timeout of 5 s, the link to
// Prosody that one message opened is listed, then gone once idle.
func TestFederationIdleLinkClosed(t *testing.T) {
	t.Parallel()
	needPeers(t)
	n := newFedNet(t)
	dns := startDNS(t, n.ip(hostDNS), append(xmppDomainRecs("par.lan", n.ip(hostParley)), xmppDomainRecs("pros.lan", n.ip(hostProsody))...)...)
	x := startParley(t, n.ip(hostParley), "par.lan", dns, "alice@par.lan", "pw-alice")
	pros := startProsody(t, peerConfig{ip: n.ip(hostProsody), domain: "pros.lan", dns: dns, users: []string{"bob", "pw-bob-42"}})
	dumpOnFailure(t, x, pros)
	x.mustAdmin(t, "xmpp federation idle-timeout 5")
	alice := x.login(t, "alice@par.lan", "pw-alice", clientOpts{})
	bob := pros.login(t, "bob@pros.lan", "pw-bob-42")
	alice.send(t, "bob@pros.lan", "one message")
	bob.message(t, "alice@par.lan", "one message")
	x.waitLink(t, "par.lan → pros.lan (out)", "up")
	sent := time.Now()
	const bound = 5*time.Second + 15*time.Second
	for {
		links := x.fedLinks(t)
		if findLink(links, "par.lan → pros.lan (out)") == "" {
			if idle := time.Since(sent); idle < 4*time.Second {
				t.Fatalf("the link closed after %v, before its 5 s idle timeout", idle)
			}
			break
		}
		if time.Since(sent) > bound {
			t.Fatalf("the idle link to pros.lan is still listed %v after the last message (idle timeout 5 s):\n%s", bound, strings.Join(links, "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The link opens again when needed.
	alice.send(t, "bob@pros.lan", "another message")
	bob.message(t, "alice@par.lan", "another message")
}

// --- a raw server-to-server peer --------------------------------------------

const (
	nsStreams  = "http://etherx.jabber.org/streams"
	nsTLS      = "urn:ietf:params:xml:ns:xmpp-tls"
	nsDialback = "jabber:server:dialback"
)

// xmlElem is any element, its attributes and content kept.
type xmlElem struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Inner   []byte     `xml:",innerxml"`
}

func (e *xmlElem) attr(name string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// s2sConn is one side of a jabber:server stream written by hand.
type s2sConn struct {
	t    *testing.T
	name string
	c    net.Conn
	dec  *xml.Decoder
	log  strings.Builder // what was read, for failure messages
}

type teeLog struct {
	r io.Reader
	b *strings.Builder
}

func (l teeLog) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.b.Write(p[:n])
	return n, err
}

func newS2SConn(t *testing.T, name string, c net.Conn) *s2sConn {
	s := &s2sConn{t: t, name: name, c: c}
	s.reset(c)
	t.Cleanup(func() { s.c.Close() })
	return s
}

// reset reads from c with a new decoder (after STARTTLS).
func (s *s2sConn) reset(c net.Conn) {
	s.c = c
	s.dec = xml.NewDecoder(teeLog{c, &s.log})
	s.dec.Strict = false
}

func (s *s2sConn) write(format string, args ...any) error {
	s.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := fmt.Fprintf(s.c, format, args...)
	return err
}

// next reads the stream header or the next top-level element: header is
// set for <stream:stream>, else el.
func (s *s2sConn) next() (header *xml.StartElement, el *xmlElem, err error) {
	s.c.SetReadDeadline(time.Now().Add(xmppWait))
	for {
		tok, err := s.dec.Token()
		if err != nil {
			return nil, nil, err
		}
		switch tt := tok.(type) {
		case xml.StartElement:
			if tt.Name.Space == nsStreams && tt.Name.Local == "stream" {
				h := tt.Copy()
				return &h, nil, nil
			}
			e := &xmlElem{}
			if err := s.dec.DecodeElement(e, &tt); err != nil {
				return nil, nil, err
			}
			return nil, e, nil
		case xml.EndElement:
			return nil, nil, io.EOF // </stream:stream>
		}
	}
}

// expect reads the next element and fails unless it is local in space.
func (s *s2sConn) expect(space, local string) *xmlElem {
	s.t.Helper()
	for {
		h, e, err := s.next()
		if err != nil {
			s.t.Fatalf("%s: want <%s xmlns=%q>, got %v; read:\n%s", s.name, local, space, err, s.log.String())
		}
		if h != nil {
			continue
		}
		if e.XMLName.Space == space && e.XMLName.Local == local {
			return e
		}
		s.t.Fatalf("%s: want <%s xmlns=%q>, got <%s xmlns=%q>; read:\n%s", s.name, local, space, e.XMLName.Local, e.XMLName.Space, s.log.String())
	}
}

// streamError reads until the stream ends and returns the condition of the
// stream error; the test fails if there is none.
func (s *s2sConn) streamError() string {
	s.t.Helper()
	for {
		h, e, err := s.next()
		if err != nil {
			s.t.Fatalf("%s: the stream ended (%v) without a stream error; read:\n%s", s.name, err, s.log.String())
		}
		if h != nil || e.XMLName.Space != nsStreams || e.XMLName.Local != "error" {
			continue
		}
		var cond struct {
			Children []xmlElem `xml:",any"`
		}
		xml.Unmarshal(append(append([]byte("<e>"), e.Inner...), "</e>"...), &cond)
		for _, c := range cond.Children {
			if c.XMLName.Local != "text" {
				return c.XMLName.Local
			}
		}
		s.t.Fatalf("%s: a stream error without a condition; read:\n%s", s.name, s.log.String())
	}
}

// dialS2S opens a jabber:server stream from one domain to another at addr
// and negotiates STARTTLS; it returns the stream after the restart, with
// the features read.
func dialS2S(t *testing.T, addr, from, to string) (*s2sConn, *xmlElem) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect to %s: %v", addr, err)
	}
	s := newS2SConn(t, "s2s stream "+from+" → "+to, c)
	open := func() *xmlElem {
		if err := s.write(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='%s' xmlns:db='%s' from='%s' to='%s' version='1.0'>`, nsStreams, nsDialback, from, to); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		return s.expect(nsStreams, "features")
	}
	f := open()
	if !strings.Contains(string(f.Inner), "starttls") {
		t.Fatalf("%s: no STARTTLS offered: %s", s.name, s.log.String())
	}
	s.write(`<starttls xmlns='%s'/>`, nsTLS)
	s.expect(nsTLS, "proceed")
	tc := tls.Client(c, &tls.Config{ServerName: to, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("%s: TLS: %v", s.name, err)
	}
	tc.SetDeadline(time.Time{})
	s.reset(tc)
	return s, open()
}

// authoritativeServer plays the server of domain at ip:5269 for dialback
// (XEP-0220): it accepts streams, offers STARTTLS with a self-signed
// certificate and dialback, and answers every <db:verify/> valid (and any
// <db:result/>, should the verifier authenticate itself there too).
func authoritativeServer(t *testing.T, ip, domain string) {
	t.Helper()
	key, crt := selfSigned(t, t.TempDir(), domain, domain)
	cert, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "5269"))
	if err != nil {
		t.Fatalf("the authoritative server of %s: %v", domain, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serveDialback(c, domain, &tls.Config{Certificates: []tls.Certificate{cert}})
		}
	}()
}

func serveDialback(c net.Conn, domain string, cfg *tls.Config) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var log strings.Builder
	dec := xml.NewDecoder(teeLog{c, &log})
	secure := false
	header := func(peer string) {
		fmt.Fprintf(c, `<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='%s' xmlns:db='%s' from='%s' to='%s' id='auth%d' version='1.0'>`,
			nsStreams, nsDialback, domain, peer, time.Now().UnixNano())
		if secure {
			fmt.Fprintf(c, `<stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>`)
		} else {
			fmt.Fprintf(c, `<stream:features><starttls xmlns='%s'><required/></starttls></stream:features>`, nsTLS)
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		st, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if st.Name.Local == "stream" {
			peer := ""
			for _, a := range st.Attr {
				if a.Name.Local == "from" {
					peer = a.Value
				}
			}
			header(peer)
			continue
		}
		e := &xmlElem{}
		if dec.DecodeElement(e, &st) != nil {
			return
		}
		switch {
		case e.XMLName.Space == nsTLS && e.XMLName.Local == "starttls":
			fmt.Fprintf(c, `<proceed xmlns='%s'/>`, nsTLS)
			tc := tls.Server(c, cfg)
			if tc.Handshake() != nil {
				return
			}
			c, secure = tc, true
			dec = xml.NewDecoder(teeLog{c, &log})
		case e.XMLName.Space == nsDialback && (e.XMLName.Local == "verify" || e.XMLName.Local == "result"):
			id := ""
			if v := e.attr("id"); v != "" {
				id = fmt.Sprintf(" id='%s'", v)
			}
			fmt.Fprintf(c, `<db:%s from='%s' to='%s'%s type='valid'/>`, e.XMLName.Local, e.attr("to"), e.attr("from"), id)
		}
	}
}

// TestFederationSpoofedFromRefused: stanzas on an s2s stream from a domain
// that stream has not authenticated are refused with a stream error, and
// the local user receives nothing of them. First without any
// authentication (not-authorized, or invalid-from), then after evil.lan
// authenticated by dialback (its authoritative server here says valid):
// a stanza from evil.lan is delivered, one from another domain ends the
// stream with invalid-from.
func TestFederationSpoofedFromRefused(t *testing.T) {
	t.Parallel()
	needPeers(t)
	n := newFedNet(t)
	dns := startDNS(t, n.ip(hostDNS), append(xmppDomainRecs("par.lan", n.ip(hostParley)), xmppDomainRecs("evil.lan", n.ip(41))...)...)
	x := startParley(t, n.ip(hostParley), "par.lan", dns, "alice@par.lan", "pw-alice")
	dumpOnFailure(t, x)
	authoritativeServer(t, n.ip(41), "evil.lan")
	alice := x.login(t, "alice@par.lan", "pw-alice", clientOpts{})
	addr := net.JoinHostPort(n.ip(hostParley), "5269")

	// Not authenticated at all.
	s, _ := dialS2S(t, addr, "evil.lan", "par.lan")
	s.write(`<message from='mallory@evil.lan' to='alice@par.lan' type='chat' id='u1'><body>unauthenticated</body></message>`)
	if cond := s.streamError(); cond != "not-authorized" && cond != "invalid-from" {
		t.Errorf("a stanza before authentication: stream error %q, want not-authorized or invalid-from", cond)
	}

	// Authenticated as evil.lan by dialback, then a stanza from other.lan.
	s, f := dialS2S(t, addr, "evil.lan", "par.lan")
	if !strings.Contains(string(f.Inner), "dialback") {
		t.Errorf("the features after TLS offer no dialback: %s", f.Inner)
	}
	s.write(`<db:result from='evil.lan' to='par.lan'>0123456789abcdef0123456789abcdef</db:result>`)
	r := s.expect(nsDialback, "result")
	if r.attr("type") != "valid" {
		t.Fatalf("dialback for evil.lan: type %q, want valid (the authoritative server said valid); read:\n%s", r.attr("type"), s.log.String())
	}
	s.write(`<message from='mallory@evil.lan' to='alice@par.lan' type='chat' id='a1'><body>authenticated</body></message>`)
	alice.message(t, "mallory@evil.lan", "authenticated")
	s.write(`<message from='mallory@other.lan' to='alice@par.lan' type='chat' id='s1'><body>spoofed</body></message>`)
	if cond := s.streamError(); cond != "invalid-from" {
		t.Errorf("a stanza from other.lan on evil.lan's stream: stream error %q, want invalid-from", cond)
	}
	alice.ping(t, "")
	alice.none(t, "message from an unauthenticated domain", func(e *xev) bool {
		return e.Ev == "message" && (e.Body == "spoofed" || e.Body == "unauthenticated")
	})
}
