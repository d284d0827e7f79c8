package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestXMPPServerNames(t *testing.T) {
	ca := issue(t, "Name CA", nil, true, testNow.AddDate(-1, 0, 0), testNow.AddDate(5, 0, 0))
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)

	dnsOnly := func(names ...string) func(*x509.Certificate) {
		return func(c *x509.Certificate) { c.DNSNames = names }
	}
	other := func(dns []string, names ...any) func(*x509.Certificate) {
		return func(c *x509.Certificate) {
			c.DNSNames = nil
			c.ExtraExtensions = []pkix.Extension{otherNameSAN(t, dns, names...)}
		}
	}
	cnOnly := func(cn string) func(*x509.Certificate) {
		return func(c *x509.Certificate) { c.DNSNames = nil; c.Subject = pkix.Name{CommonName: cn} }
	}
	tests := []struct {
		name   string
		edit   func(*x509.Certificate)
		domain string
		names  string // XMPPNames
		err    string // "" when it matches
	}{
		{"DNS exact", dnsOnly("b.lan"), "b.lan", "DNS:b.lan", ""},
		{"DNS case", dnsOnly("B.Lan"), "b.LAN.", "DNS:B.Lan", ""},
		{"wildcard one label", dnsOnly("*.b.lan"), "x.b.lan", "DNS:*.b.lan", ""},
		{"wildcard not the parent", dnsOnly("a.lan", "*.a.lan"), "a.lan", "DNS:a.lan, DNS:*.a.lan", ""},
		{"wildcard not bare", dnsOnly("a.lan", "*.a.lan"), "b.lan", "DNS:a.lan, DNS:*.a.lan",
			"the certificate names DNS:a.lan, DNS:*.a.lan, not b.lan: the b.lan admin needs a certificate whose subjectAltName includes DNS:b.lan"},
		{"wildcard not the base", dnsOnly("*.b.lan"), "b.lan", "DNS:*.b.lan", "not b.lan"},
		{"wildcard not two labels", dnsOnly("*.b.lan"), "y.x.b.lan", "DNS:*.b.lan", "not y.x.b.lan"},
		{"partial wildcard", dnsOnly("x*.b.lan"), "xy.b.lan", "DNS:x*.b.lan", "not xy.b.lan"},
		{"wildcard on a TLD", dnsOnly("*.lan"), "b.lan", "DNS:*.lan", "not b.lan"},
		{"IDN DNS-ID", dnsOnly("xn--bcher-kva.lan"), "BÜCHER.lan", "DNS:xn--bcher-kva.lan", ""},
		{"XmppAddr", other(nil, oidXMPPAddr, "b.lan"), "b.lan", "XmppAddr:b.lan", ""},
		{"XmppAddr U-label", other(nil, oidXMPPAddr, "bücher.lan"), "xn--bcher-kva.lan", "XmppAddr:bücher.lan", ""},
		{"XmppAddr of a user", other(nil, oidXMPPAddr, "admin@b.lan"), "b.lan", "XmppAddr:admin@b.lan", "not b.lan"},
		{"SRV-ID server", other(nil, oidSRVName, "_xmpp-server.b.lan"), "b.lan", "SRV:_xmpp-server.b.lan", ""},
		{"SRV-ID case", other(nil, oidSRVName, "_XMPP-Server.B.lan"), "b.lan", "SRV:_XMPP-Server.B.lan", ""},
		{"SRV-ID client only", other(nil, oidSRVName, "_xmpp-client.b.lan"), "b.lan", "SRV:_xmpp-client.b.lan",
			"the certificate names SRV:_xmpp-client.b.lan, not b.lan"},
		{"mixed", other([]string{"a.lan"}, oidXMPPAddr, "c.lan", oidSRVName, "_xmpp-server.b.lan"), "b.lan",
			"DNS:a.lan, XmppAddr:c.lan, SRV:_xmpp-server.b.lan", ""},
		{"CN without SAN", cnOnly("b.lan"), "b.lan", "CN:b.lan", ""},
		{"CN ignored with SAN", func(c *x509.Certificate) { c.DNSNames = []string{"other.lan"}; c.Subject.CommonName = "b.lan" },
			"b.lan", "DNS:other.lan", "the certificate names DNS:other.lan, not b.lan"},
		{"nothing", cnOnly(""), "b.lan", "",
			"the certificate names nothing (no subjectAltName, no CN), not b.lan: it has no subjectAltName (a CN is only used without one): the b.lan admin needs a certificate whose subjectAltName includes DNS:b.lan"},
		{"bad domain", dnsOnly("b.lan"), "b..lan", "DNS:b.lan", "is not a valid domain name"},
	}
	for _, tc := range tests {
		leaf := leafCert(t, ca, tc.edit)
		if got := strings.Join(XMPPNames(leaf.cert), ", "); got != tc.names {
			t.Errorf("%s: XMPPNames %q, want %q", tc.name, got, tc.names)
		}
		err := VerifyXMPPServer([]*x509.Certificate{leaf.cert}, tc.domain, roots, testNow)
		if tc.err == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var pe *PeerCertError
		if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &pe) || pe.Problem != NameMismatch || pe.Problem.ChainProblem() {
			t.Errorf("%s: error %v\nwant name mismatch %q", tc.name, err, tc.err)
		}
		if err2 := CheckXMPPServerName(leaf.cert, tc.domain); fmt.Sprint(err2) != fmt.Sprint(err) {
			t.Errorf("%s: CheckXMPPServerName %v differs from %v", tc.name, err2, err)
		}
	}
}

func TestXMPPNamesBounded(t *testing.T) {
	var names []string
	for i := range 15 {
		names = append(names, fmt.Sprintf("h%d.a.lan", i))
	}
	leaf := leafCert(t, nil, func(c *x509.Certificate) { c.DNSNames = names })
	err := CheckXMPPServerName(leaf.cert, "b.lan")
	if err == nil || !strings.Contains(err.Error(), "DNS:h9.a.lan and 5 more, not b.lan") {
		t.Errorf("15 names: %v", err)
	}
	if XMPPNames(nil) != nil {
		t.Error("XMPPNames(nil) is not empty")
	}
}

func TestVerifyXMPPServerChain(t *testing.T) {
	root := issue(t, "Peer Root", nil, true, testNow.AddDate(-2, 0, 0), testNow.AddDate(5, 0, 0))
	inter := issue(t, "Peer Intermediate", root, true, testNow.AddDate(-1, 0, 0), testNow.AddDate(3, 0, 0))
	oldInter := issue(t, "Old Intermediate", root, true, testNow.AddDate(-3, 0, 0), testNow.AddDate(0, 0, -10))
	other := issue(t, "Other Root", nil, true, testNow.AddDate(-2, 0, 0), testNow.AddDate(5, 0, 0))
	notCA := issue(t, "notca.lan", root, false, testNow.AddDate(-1, 0, 0), testNow.AddDate(3, 0, 0))

	leaf := leafCert(t, inter, func(c *x509.Certificate) { c.DNSNames = []string{"b.lan"}; c.Subject.CommonName = "b.lan" })
	expired := leafCert(t, root, func(c *x509.Certificate) {
		c.DNSNames = []string{"b.lan"}
		c.Subject.CommonName = "b.lan"
		c.NotAfter = testNow.AddDate(0, 0, -3)
	})
	future := leafCert(t, root, func(c *x509.Certificate) {
		c.DNSNames = []string{"b.lan"}
		c.Subject.CommonName = "b.lan"
		c.NotBefore = testNow.AddDate(0, 0, 2)
	})
	underOld := leafCert(t, oldInter, func(c *x509.Certificate) { c.DNSNames = []string{"b.lan"}; c.Subject.CommonName = "b.lan" })
	selfSigned := leafCert(t, nil, func(c *x509.Certificate) { c.DNSNames = []string{"b.lan"}; c.Subject.CommonName = "b.lan" })
	byNotCA := leafCert(t, notCA, func(c *x509.Certificate) { c.DNSNames = []string{"b.lan"}; c.Subject.CommonName = "b.lan" })
	wrongName := leafCert(t, inter, func(c *x509.Certificate) { c.DNSNames = []string{"a.lan"}; c.Subject.CommonName = "a.lan" })

	pool := func(cas ...*testCA) *x509.CertPool {
		p := x509.NewCertPool()
		for _, c := range cas {
			p.AddCert(c.cert)
		}
		return p
	}
	tests := []struct {
		name    string
		chain   []*testCA
		roots   *x509.CertPool
		problem CertProblem
		err     string
	}{
		{"good chain", []*testCA{leaf, inter}, pool(root), 0, ""},
		{"intermediate already trusted", []*testCA{leaf}, pool(root, inter), 0, ""},
		{"self-signed pinned", []*testCA{selfSigned}, pool(selfSigned), 0, ""},
		{"no certificate", nil, pool(root), NoCertificate, "b.lan presented no certificate"},
		{"unknown root", []*testCA{leaf, inter}, pool(other), UntrustedChain,
			"the certificate of b.lan (CN=b.lan) is signed by an unknown authority (CN=Peer Root,O=Test): add its CA with xmpp federation trust <bundle>"},
		{"intermediate missing", []*testCA{leaf}, pool(root), UntrustedChain, "signed by an unknown authority"},
		{"self-signed", []*testCA{selfSigned}, pool(root), UntrustedChain,
			"the certificate of b.lan (CN=b.lan) is self-signed and not trusted: add it, or the CA that should sign it, with xmpp federation trust <bundle>"},
		{"expired", []*testCA{expired}, pool(root), CertExpired,
			"the certificate of b.lan (CN=b.lan) expired on 2026-02-26: the b.lan admin must renew it"},
		{"not yet valid", []*testCA{future}, pool(root), CertNotYetValid,
			"the certificate of b.lan (CN=b.lan) is not valid before 2026-03-03T12:00:00Z: check our clock (date) and theirs"},
		{"expired intermediate", []*testCA{underOld, oldInter}, pool(root), CertExpired,
			"the CA certificate of b.lan (CN=Old Intermediate,O=Test) expired on 2026-02-19"},
		{"issuer not a CA", []*testCA{byNotCA, notCA}, pool(root), InvalidChain,
			"the certificate chain of b.lan does not verify: CN=b.lan (certificate 1) is signed by CN=notca.lan,O=Test, which is not a CA certificate"},
		{"trusted but wrong name", []*testCA{wrongName, inter}, pool(root), NameMismatch,
			"the certificate names DNS:a.lan, not b.lan"},
	}
	for _, tc := range tests {
		var chain []*x509.Certificate
		for _, c := range tc.chain {
			chain = append(chain, c.cert)
		}
		err := VerifyXMPPServer(chain, "b.lan", tc.roots, testNow)
		if tc.problem == 0 {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var pe *PeerCertError
		if !errors.As(err, &pe) {
			t.Errorf("%s: error %v is not a *PeerCertError", tc.name, err)
			continue
		}
		if pe.Problem != tc.problem || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %s %q\nwant %s %q", tc.name, pe.Problem, err, tc.problem, tc.err)
		}
		if pe.Problem.ChainProblem() != (tc.problem != NameMismatch) {
			t.Errorf("%s: ChainProblem %v", tc.name, pe.Problem.ChainProblem())
		}
	}
}

func TestTrustPool(t *testing.T) {
	area, err := OpenArea(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer area.Close()
	root := issue(t, "Bundle Root", nil, true, testNow.AddDate(-2, 0, 0), testNow.AddDate(5, 0, 0))
	inter := issue(t, "Bundle Intermediate", root, true, testNow.AddDate(-1, 0, 0), testNow.AddDate(3, 0, 0))
	leaf := leafCert(t, inter, func(c *x509.Certificate) { c.DNSNames = []string{"b.lan"} })
	pinned := leafCert(t, nil, func(c *x509.Certificate) {
		c.DNSNames = []string{"p.lan"}
		c.BasicConstraintsValid, c.IsCA = true, true
	})
	notCA := leafCert(t, nil, func(c *x509.Certificate) { c.DNSNames = []string{"p.lan"} })
	for name, data := range map[string][]byte{
		"peers.pem":  cat(inter.pem, root.pem),
		"pinned.pem": pinned.pem,
		"leaf.pem":   leaf.pem,
		"notca.pem":  notCA.pem,
		"junk.txt":   []byte("hello\n"),
	} {
		if err := area.WriteFile(name, data, 0o600, false); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		bundle string
		verify *testCA
		domain string
		err    string
	}{
		{"peers.pem", leaf, "b.lan", ""},
		{"pinned.pem", pinned, "p.lan", ""},
		{"", leaf, "b.lan", "signed by an unknown authority"},
		{"missing.pem", nil, "", "missing.pem: no such file in the files area"},
		{"junk.txt", nil, "", "junk.txt: not a certificate"},
		{"leaf.pem", nil, "", "leaf.pem: has no CA certificate (only CN=example.com)"},
		{"notca.pem", nil, "", "notca.pem: has no CA certificate (only CN=example.com)"},
		{"../x", nil, "", "without a path"},
	}
	for _, tc := range tests {
		p, err := TrustPool(area, tc.bundle)
		if tc.verify == nil {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.bundle, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.bundle, err)
		}
		verr := VerifyXMPPServer([]*x509.Certificate{tc.verify.cert}, tc.domain, p, testNow)
		if tc.err == "" && verr != nil || tc.err != "" && (verr == nil || !strings.Contains(verr.Error(), tc.err)) {
			t.Errorf("%q: verify %v, want %q", tc.bundle, verr, tc.err)
		}
	}
	if _, err := TrustPool(nil, "x.pem"); err == nil {
		t.Error("nil area: no error")
	}
}
