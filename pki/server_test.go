package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestASCIIDomain(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: "example.com", want: "example.com"},
		{in: "Example.COM.", want: "example.com"},
		{in: "bücher.example", want: "xn--bcher-kva.example"},
		{in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{in: "bad_name..example", err: "not a valid domain name"},
	}
	for _, tc := range tests {
		got, err := ASCIIDomain(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ASCIIDomain(%q) = %q, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ASCIIDomain(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestMatchDNS(t *testing.T) {
	tests := []struct {
		pattern, domain string
		want            bool
	}{
		{"example.com", "example.com", true},
		{"EXAMPLE.com", "example.com", true},
		{"example.com.", "example.com", true},
		{"example.com", "chat.example.com", false},
		{"*.example.com", "chat.example.com", true},
		{"*.Example.com", "chat.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", "chat.example.org", false},
		{"*.com", "example.com", false},
		{"c*.example.com", "chat.example.com", false},
		{"chat.*.com", "chat.example.com", false},
		{"bücher.example", "xn--bcher-kva.example", true},
		{"", "example.com", false},
	}
	for _, tc := range tests {
		if got := matchDNS(tc.pattern, tc.domain); got != tc.want {
			t.Errorf("matchDNS(%q, %q) = %v, want %v", tc.pattern, tc.domain, got, tc.want)
		}
	}
}

// otherNameSAN builds a subjectAltName extension of otherName entries
// (oid, UTF8String value), as CAs issue them for XMPP servers.
func otherNameSAN(t *testing.T, dns []string, names ...any) pkix.Extension {
	t.Helper()
	var raw []asn1.RawValue
	for _, d := range dns {
		raw = append(raw, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(d)})
	}
	for i := 0; i+1 < len(names); i += 2 {
		oid := names[i].(asn1.ObjectIdentifier)
		value := names[i+1].(string)
		tag := asn1.TagUTF8String
		if oid.Equal(oidSRVName) {
			tag = asn1.TagIA5String
		}
		inner, err := asn1.Marshal(asn1.RawValue{Tag: tag, Bytes: []byte(value)})
		if err != nil {
			t.Fatal(err)
		}
		explicit, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner})
		if err != nil {
			t.Fatal(err)
		}
		oidDER, err := asn1.Marshal(oid)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(oidDER, explicit...)})
	}
	der, err := asn1.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidSAN, Value: der}
}

// leafCert issues a server certificate (self-signed when parent is nil),
// valid for a year around testNow unless edit changes the template.
func leafCert(t *testing.T, parent *testCA, edit func(*x509.Certificate)) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serialSeq++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serialSeq),
		Subject:      pkix.Name{CommonName: "example.com"},
		NotBefore:    testNow.AddDate(0, -1, 0),
		NotAfter:     testNow.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"example.com"},
	}
	if edit != nil {
		edit(tmpl)
	}
	return sign(t, tmpl, key, parent)
}

func keyPEMOf(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestCertificateCovers(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*x509.Certificate)
		domain string
		want   bool
	}{
		{"dns", nil, "example.com", true},
		{"dns upper-case domain", nil, "EXAMPLE.com", true},
		{"dns other", nil, "example.org", false},
		{"wildcard", func(c *x509.Certificate) { c.DNSNames = []string{"*.example.com"} }, "chat.example.com", true},
		{"wildcard not the parent", func(c *x509.Certificate) { c.DNSNames = []string{"*.example.com"} }, "example.com", false},
		{"cn only", func(c *x509.Certificate) { c.DNSNames = nil }, "example.com", false},
		{"idn", func(c *x509.Certificate) { c.DNSNames = []string{"xn--bcher-kva.example"} }, "bücher.example", true},
		{"xmppAddr", func(c *x509.Certificate) {
			c.DNSNames = nil
			c.ExtraExtensions = []pkix.Extension{otherNameSAN(t, nil, oidXMPPAddr, "example.com")}
		}, "example.com", true},
		{"xmppAddr idn", func(c *x509.Certificate) {
			c.DNSNames = nil
			c.ExtraExtensions = []pkix.Extension{otherNameSAN(t, nil, oidXMPPAddr, "bücher.example")}
		}, "xn--bcher-kva.example", true},
		{"srvName client", func(c *x509.Certificate) {
			c.DNSNames = nil
			c.ExtraExtensions = []pkix.Extension{otherNameSAN(t, nil, oidSRVName, "_xmpp-client.example.com")}
		}, "example.com", true},
		{"srvName server", func(c *x509.Certificate) {
			c.DNSNames = nil
			c.ExtraExtensions = []pkix.Extension{otherNameSAN(t, []string{"other.example"}, oidSRVName, "_xmpp-server.example.com")}
		}, "example.com", true},
		{"srvName other service", func(c *x509.Certificate) {
			c.DNSNames = nil
			c.ExtraExtensions = []pkix.Extension{otherNameSAN(t, nil, oidSRVName, "_imap.example.com")}
		}, "example.com", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := leafCert(t, nil, tc.edit)
			if got := CertificateCovers(c.cert, tc.domain); got != tc.want {
				t.Errorf("CertificateCovers(%s) = %v, want %v (SANs %s)", tc.domain, got, tc.want, allSANs(c.cert))
			}
		})
	}
}

func TestCheckServerCertificate(t *testing.T) {
	start, end := testNow.AddDate(-1, 0, 0), testNow.AddDate(5, 0, 0)
	root := issue(t, "Root CA", nil, true, start, end)
	inter := issue(t, "Intermediate CA", root, true, start, end)
	otherRoot := issue(t, "Other Root", nil, true, start, end)

	good := leafCert(t, nil, nil)
	signed := leafCert(t, inter, nil)
	other := leafCert(t, nil, nil)
	expired := leafCert(t, nil, func(c *x509.Certificate) { c.NotAfter = testNow.AddDate(0, 0, -1) })
	future := leafCert(t, nil, func(c *x509.Certificate) { c.NotBefore = testNow.AddDate(0, 0, 1) })
	clientOnly := leafCert(t, nil, func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} })
	noEKU := leafCert(t, nil, func(c *x509.Certificate) { c.ExtKeyUsage = nil })
	noSAN := leafCert(t, nil, func(c *x509.Certificate) { c.DNSNames = nil })
	wild := leafCert(t, nil, func(c *x509.Certificate) { c.DNSNames = []string{"*.example.com"} })

	tests := []struct {
		name        string
		key, cert   []byte
		bundle      []byte
		domain      string
		role, error string // expected InputError role (if any) and text
	}{
		{name: "self-signed", key: keyPEMOf(t, good.key), cert: good.pem, domain: "example.com"},
		{name: "no extended key usage", key: keyPEMOf(t, noEKU.key), cert: noEKU.pem, domain: "example.com"},
		{name: "wildcard", key: keyPEMOf(t, wild.key), cert: wild.pem, domain: "chat.example.com"},
		{name: "with bundle", key: keyPEMOf(t, signed.key), cert: signed.pem, bundle: cat(inter.pem, root.pem), domain: "example.com"},
		{name: "chain in the certificate file", key: keyPEMOf(t, signed.key), cert: cat(signed.pem, inter.pem), bundle: root.pem, domain: "example.com"},
		{name: "key mismatch", key: keyPEMOf(t, other.key), cert: good.pem, domain: "example.com", error: "the key does not match the certificate"},
		{name: "not a key", key: good.pem, cert: good.pem, domain: "example.com", role: "key", error: "not a PEM private key"},
		{name: "not a certificate", key: keyPEMOf(t, good.key), cert: []byte("hello\n"), domain: "example.com", role: "certificate", error: "not a certificate"},
		{name: "expired", key: keyPEMOf(t, expired.key), cert: expired.pem, domain: "example.com", role: "certificate", error: "expired on"},
		{name: "not yet valid", key: keyPEMOf(t, future.key), cert: future.pem, domain: "example.com", role: "certificate", error: "is not valid before"},
		{name: "client certificate", key: keyPEMOf(t, clientOnly.key), cert: clientOnly.pem, domain: "example.com", role: "certificate", error: "lacks serverAuth"},
		{name: "other domain", key: keyPEMOf(t, good.key), cert: good.pem, domain: "example.org", role: "certificate", error: "does not cover example.org: its names are DNS:example.com"},
		{name: "wildcard parent", key: keyPEMOf(t, wild.key), cert: wild.pem, domain: "example.com", role: "certificate", error: "does not cover example.com"},
		{name: "no SAN", key: keyPEMOf(t, noSAN.key), cert: noSAN.pem, domain: "example.com", role: "certificate", error: "has no subjectAltName"},
		{name: "wrong bundle", key: keyPEMOf(t, signed.key), cert: signed.pem, bundle: otherRoot.pem, domain: "example.com", role: "bundle", error: "not signed by any certificate in the bundle"},
		{name: "bundle without the intermediate", key: keyPEMOf(t, signed.key), cert: signed.pem, bundle: root.pem, domain: "example.com", role: "bundle", error: "is not signed by any certificate in the bundle"},
		{name: "bundle without the root", key: keyPEMOf(t, signed.key), cert: signed.pem, bundle: inter.pem, domain: "example.com", role: "bundle", error: "the chain stops at"},
		{name: "bundle not certificates", key: keyPEMOf(t, signed.key), cert: signed.pem, bundle: []byte("junk"), domain: "example.com", role: "bundle", error: "not a certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckServerCertificate(tc.key, tc.cert, tc.bundle, tc.domain, testNow)
			if tc.error == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.error) {
				t.Fatalf("error = %v, want %q", err, tc.error)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is more than one line: %q", err)
			}
			var ie *InputError
			if tc.role != "" {
				if !errors.As(err, &ie) || ie.Role != tc.role {
					t.Fatalf("error %v is not an InputError for %s", err, tc.role)
				}
				named := NameInputs(err, map[string]string{tc.role: "file.pem"})
				if !strings.HasPrefix(named.Error(), "file.pem: ") {
					t.Errorf("named error = %q", named)
				}
			}
		})
	}
}

func TestKeyPair(t *testing.T) {
	start, end := testNow.AddDate(-1, 0, 0), testNow.AddDate(5, 0, 0)
	root := issue(t, "Root CA", nil, true, start, end)
	inter := issue(t, "Intermediate CA", root, true, start, end)
	leaf := leafCert(t, inter, nil)
	key := keyPEMOf(t, leaf.key)

	c, err := KeyPair(key, leaf.pem, cat(inter.pem, root.pem))
	if err != nil {
		t.Fatal(err)
	}
	// The leaf, then the intermediate; the root is not sent.
	if len(c.Certificate) != 2 || !bytes.Equal(c.Certificate[0], leaf.cert.Raw) || !bytes.Equal(c.Certificate[1], inter.cert.Raw) {
		t.Errorf("chain of %d certificates, want the leaf and the intermediate", len(c.Certificate))
	}
	if c, err := KeyPair(key, leaf.pem, nil); err != nil || len(c.Certificate) != 1 {
		t.Errorf("without a bundle: %v", err)
	}
	if _, err := KeyPair(key, leaf.pem, []byte("not PEM")); err == nil || !strings.HasPrefix(err.Error(), "bundle: not a certificate") {
		t.Errorf("a bundle without certificates: %v", err)
	}
	broken := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})
	if _, err := KeyPair(key, leaf.pem, cat(inter.pem, broken)); err == nil || !strings.HasPrefix(err.Error(), "bundle: certificate 2 of 2 is not a valid X.509 certificate") {
		t.Errorf("a bundle with a broken certificate: %v", err)
	}
	if _, err := KeyPair(keyPEMOf(t, root.key), leaf.pem, nil); err == nil {
		t.Error("a key of another certificate was accepted")
	}
}

func TestSelfSignedServer(t *testing.T) {
	tests := []struct {
		domain string
		names  []string
	}{
		{"example.com", []string{"example.com", "*.example.com"}},
		{"localhost", []string{"localhost"}},
		{"bücher.example", []string{"xn--bcher-kva.example", "*.xn--bcher-kva.example"}},
	}
	for _, tc := range tests {
		keyPEM, certPEM, err := SelfSignedServer(tc.domain, testNow)
		if err != nil {
			t.Fatalf("%s: %v", tc.domain, err)
		}
		cert, err := Certificate(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(cert.DNSNames, ",") != strings.Join(tc.names, ",") || cert.Subject.CommonName != tc.names[0] {
			t.Errorf("%s: CN %q SANs %q, want %q", tc.domain, cert.Subject.CommonName, cert.DNSNames, tc.names)
		}
		if got := KeyDescription(cert.PublicKey); got != "ECDSA P-256" {
			t.Errorf("%s: key %s", tc.domain, got)
		}
		if d := cert.NotAfter.Sub(testNow); d < time.Duration(SelfSignedServerDays-1)*24*time.Hour {
			t.Errorf("%s: valid only %v", tc.domain, d)
		}
		if err := CheckServerCertificate(keyPEM, certPEM, nil, tc.domain, testNow); err != nil {
			t.Errorf("%s: the generated certificate does not pass the check: %v", tc.domain, err)
		}
	}
	if _, _, err := SelfSignedServer("bad..name", testNow); err == nil {
		t.Error("SelfSignedServer accepted a bad name")
	}
}
