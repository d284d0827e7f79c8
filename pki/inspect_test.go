package pki

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// fixtures makes one file of every kind.
type fixtures struct {
	keyPEM, ecKeyPEM, crt, csr, bundle, pubPEM, authKeys, encrypted []byte
	leaf                                                            *testCA
}

func makeFixtures(t *testing.T) fixtures {
	t.Helper()
	var f fixtures
	key, keyPEM := testKey(t, KeyRSA2048, "a")
	_, f.ecKeyPEM = testKey(t, KeyECDSAP256, "a")
	f.keyPEM = keyPEM
	var err error
	if f.crt, err = SelfSigned(key, fullRequest(), testNow); err != nil {
		t.Fatal(err)
	}
	if f.csr, err = CreateCSR(key, fullRequest()); err != nil {
		t.Fatal(err)
	}
	root := issue(t, "Root CA", nil, true, testNow.AddDate(-1, 0, 0), testNow.AddDate(5, 0, 0))
	inter := issue(t, "Intermediate CA", root, true, testNow.AddDate(-1, 0, 0), testNow.AddDate(5, 0, 0))
	f.leaf = issue(t, "xmpp.example.com", inter, false, testNow.AddDate(-1, 0, 0), testNow.AddDate(0, 0, 90))
	f.bundle = cat(f.leaf.pem, inter.pem, root.pem)
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	f.pubPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	pub1, _, _ := ed25519.GenerateKey(rand.Reader)
	pub2, _, _ := ed25519.GenerateKey(rand.Reader)
	s1, _ := ssh.NewPublicKey(pub1)
	s2, _ := ssh.NewPublicKey(pub2)
	f.authKeys = []byte("# admins\n" +
		strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s1))) + " alice@laptop\n\n" +
		`from="10.0.0.0/8" ` + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s2))) + " bob@desk\n")
	f.encrypted = pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("opaque")})
	return f
}

func TestClassifyAndSummarize(t *testing.T) {
	f := makeFixtures(t)
	tests := []struct {
		name string
		data []byte
		want Summary
	}{
		{"key", f.keyPEM, Summary{Kind: KindKey, Detail: "RSA 2048"}},
		{"EC key", f.ecKeyPEM, Summary{Kind: KindKey, Detail: "ECDSA P-256"}},
		{"encrypted key", f.encrypted, Summary{Kind: KindKey, Detail: "encrypted"}},
		{"legacy encrypted key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte("x")}),
			Summary{Kind: KindKey, Detail: "encrypted"}},
		{"certificate", f.crt, Summary{Kind: KindCertificate, Subject: fullSubject,
			SANs:     []string{"xmpp.example.com", "conference.example.com", "10.0.0.1", "2001:db8::1"},
			NotAfter: testNow.AddDate(0, 0, 365), Count: 1, Detail: "RSA 2048, self-signed"}},
		{"certificate after text", append([]byte("Bag Attributes\n  friendlyName: x\n"), f.crt...), Summary{Kind: KindCertificate, Subject: fullSubject,
			SANs:     []string{"xmpp.example.com", "conference.example.com", "10.0.0.1", "2001:db8::1"},
			NotAfter: testNow.AddDate(0, 0, 365), Count: 1, Detail: "RSA 2048, self-signed"}},
		{"bundle", f.bundle, Summary{Kind: KindBundle, Subject: "CN=xmpp.example.com,O=Test", SANs: []string{"xmpp.example.com"},
			NotAfter: f.leaf.cert.NotAfter, Count: 3, Detail: "ECDSA P-256"}},
		{"csr", f.csr, Summary{Kind: KindCSR, Subject: fullSubject,
			SANs: []string{"xmpp.example.com", "conference.example.com", "10.0.0.1", "2001:db8::1"}, Detail: "RSA 2048"}},
		{"PEM public key", f.pubPEM, Summary{Kind: KindPublicKey, Detail: "RSA 2048"}},
		{"authorized_keys", f.authKeys, Summary{Kind: KindPublicKey, Detail: "ssh-ed25519 (2 keys)"}},
		{"key and certificate", cat(f.keyPEM, f.crt), Summary{Kind: KindKey, Subject: fullSubject,
			SANs:     []string{"xmpp.example.com", "conference.example.com", "10.0.0.1", "2001:db8::1"},
			NotAfter: testNow.AddDate(0, 0, 365), Count: 1, Detail: "RSA 2048, with a certificate"}},
		{"text", []byte("hello world\n"), Summary{Kind: KindOther}},
		{"empty", nil, Summary{Kind: KindOther}},
		{"CSV", []byte("jid,password\nalice@example.com,secret\n"), Summary{Kind: KindOther}},
		{"authorized_keys with junk line", append(append([]byte{}, f.authKeys...), "not a key\n"...), Summary{Kind: KindOther}},
		{"DER certificate", f.leaf.cert.Raw, Summary{Kind: KindOther, Detail: "DER certificate: convert it to PEM"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.data); got != tt.want.Kind {
				t.Errorf("Classify = %q, want %q", got, tt.want.Kind)
			}
			got := Summarize(tt.data)
			if !got.NotAfter.Equal(tt.want.NotAfter) {
				t.Errorf("NotAfter %v, want %v", got.NotAfter, tt.want.NotAfter)
			}
			got.NotAfter = tt.want.NotAfter
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Summarize\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestInspectCertificate(t *testing.T) {
	f := makeFixtures(t)
	out, err := Inspect(f.crt, testNow.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Subject:             " + fullSubject,
		"Issuer:              " + fullSubject,
		"Serial:              ",
		"Not before:          2026-03-01T11:55:00Z",
		"Not after:           2027-03-01T12:00:00Z (expires in 364 days)",
		"SANs:                DNS:xmpp.example.com, DNS:conference.example.com, IP:10.0.0.1, IP:2001:db8::1",
		"Key:                 RSA 2048",
		"Signature algorithm: SHA256-RSA",
		"CA:                  no, self-signed",
		"SHA-256 fingerprint: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Inspect output lacks %q:\n%s", want, out)
		}
	}
	if strings.HasSuffix(out, "\n") || strings.Contains(out, "Certificate 1") {
		t.Errorf("unexpected layout:\n%s", out)
	}
	cert, _ := x509.ParseCertificate(mustDecode(t, f.crt, "CERTIFICATE"))
	if !strings.Contains(out, "Serial:              "+strings.ToUpper(cert.SerialNumber.Text(16))+"\n") {
		t.Errorf("serial missing:\n%s", out)
	}
	// The key's and the certificate's public key fingerprints agree.
	keyOut, err := Inspect(f.keyPEM, testNow)
	if err != nil {
		t.Fatal(err)
	}
	fp, _ := PublicKeySHA256(cert.PublicKey)
	for _, o := range []string{out, keyOut} {
		if !strings.Contains(o, "Public key SHA-256:  "+fp) {
			t.Errorf("public key fingerprint %s missing:\n%s", fp, o)
		}
	}
	if !strings.Contains(keyOut, "Type:                private key (PKCS#8)") || !strings.Contains(keyOut, "Key:                 RSA 2048") {
		t.Errorf("key output:\n%s", keyOut)
	}

	expired, _ := Inspect(f.crt, testNow.AddDate(3, 0, 0))
	if !strings.Contains(expired, "(expired)") {
		t.Errorf("no (expired):\n%s", expired)
	}
	early, _ := Inspect(f.crt, testNow.AddDate(-1, 0, 0))
	if !strings.Contains(early, "(not yet valid)") {
		t.Errorf("no (not yet valid):\n%s", early)
	}
}

func TestInspectBundle(t *testing.T) {
	f := makeFixtures(t)
	out, err := Inspect(f.bundle, testNow)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Certificate 1 of 3\n  Subject:             CN=xmpp.example.com,O=Test",
		"(expires in 90 days)",
		"\n\nCertificate 2 of 3\n  Subject:             CN=Intermediate CA,O=Test\n  Issuer:              CN=Root CA,O=Test",
		"Certificate 3 of 3\n  Subject:             CN=Root CA,O=Test",
		"  CA:                  yes, self-signed",
		"  Key:                 ECDSA P-256",
		"  Signature algorithm: ECDSA-SHA256",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Inspect output lacks %q:\n%s", want, out)
		}
	}
}

func TestInspectCSRKeyAndPublicKeys(t *testing.T) {
	f := makeFixtures(t)
	out, err := Inspect(f.csr, testNow)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Subject:             " + fullSubject, "Signature:           valid", "Key:                 RSA 2048",
		"SANs:                DNS:xmpp.example.com, DNS:conference.example.com, IP:10.0.0.1, IP:2001:db8::1"} {
		if !strings.Contains(out, want) {
			t.Errorf("CSR output lacks %q:\n%s", want, out)
		}
	}
	// Flip a byte of the signature: still parses, no longer verifies.
	der := mustDecode(t, f.csr, "CERTIFICATE REQUEST")
	bad := bytes.Clone(der)
	bad[len(bad)-1] ^= 0xff
	out, err = Inspect(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: bad}), testNow)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Signature:           INVALID") {
		t.Errorf("tampered CSR:\n%s", out)
	}

	out, err = Inspect(f.ecKeyPEM, testNow)
	if err != nil || !strings.Contains(out, "Key:                 ECDSA P-256") || !strings.Contains(out, "Public key SHA-256:  ") {
		t.Errorf("EC key: %v\n%s", err, out)
	}
	out, err = Inspect(f.encrypted, testNow)
	if err != nil || !strings.Contains(out, "encrypted private key") {
		t.Errorf("encrypted key: %v\n%s", err, out)
	}

	out, err = Inspect(f.authKeys, testNow)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	if len(lines) != 2 {
		t.Fatalf("want one line per key:\n%s", out)
	}
	for i, comment := range []string{"alice@laptop", "bob@desk"} {
		if !strings.HasPrefix(lines[i], "Key "+string(rune('1'+i))+":") || !strings.Contains(lines[i], "ssh-ed25519 SHA256:") || !strings.HasSuffix(lines[i], " "+comment) {
			t.Errorf("line %d: %q", i+1, lines[i])
		}
	}
	out, err = Inspect(f.pubPEM, testNow)
	if err != nil || !strings.Contains(out, "Key:                 RSA 2048") || !strings.Contains(out, "SSH fingerprint:     SHA256:") {
		t.Errorf("PEM public key: %v\n%s", err, out)
	}

	out, err = Inspect(cat(f.keyPEM, f.crt), testNow)
	if err != nil || !strings.Contains(out, "Private key\n  Type:") || !strings.Contains(out, "\n\nCertificate\n  Subject:") {
		t.Errorf("key and certificate: %v\n%s", err, out)
	}
}

func TestInspectErrors(t *testing.T) {
	f := makeFixtures(t)
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"text", []byte("hello"), "not a PEM key, certificate, CSR or bundle: no PEM data found"},
		{"empty", nil, "not a PEM key, certificate, CSR or bundle: the file is empty"},
		{"DER", f.leaf.cert.Raw, "binary DER certificate; convert it to PEM"},
		{"other PEM", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: []byte("x")}), `unsupported PEM "X509 CRL" block`},
		{"corrupt certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), "the certificate is not a valid X.509 certificate"},
		{"corrupt bundle", cat(f.crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})), "certificate 2 of 2 is not a valid X.509 certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Inspect(tt.data, testNow)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Inspect = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestNameStringEscapes(t *testing.T) {
	key, _ := testKey(t, KeyECDSAP256, "a")
	crt, err := SelfSigned(key, Request{CN: "a,b+c", O: "Evil\x1b[2J Corp"}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(mustDecode(t, crt, "CERTIFICATE"))
	if got, want := SubjectString(cert), `CN=a\,b\+c,O=Evil\1B[2J Corp`; got != want {
		t.Errorf("SubjectString = %q, want %q", got, want)
	}
}

func TestOtherNameSANs(t *testing.T) {
	// subjectAltName with id-on-xmppAddr "example.com" and SRVName
	// "_xmpp-server.example.com", as issued for XMPP servers.
	san := []byte{0x30, 0x3f,
		0xa0, 0x19, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x05, 0xa0, 0x0d, 0x0c, 0x0b, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm',
		0xa0, 0x22, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x07, 0xa0, 0x16, 0x16, 0x14, '_', 'x', 'm', 'p', 'p', '.', 's', 'e', 'r', 'v', 'e', 'r', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e',
	}
	got := otherNames(san)
	want := []string{"XMPP:example.com", "SRV:_xmpp.server.example"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("otherNames = %q, want %q", got, want)
	}
}
