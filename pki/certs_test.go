package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Keys are cached: RSA generation is the slow part of these tests.
var (
	keyMu    sync.Mutex
	keyCache = map[string]crypto.Signer{}
)

func testKey(t *testing.T, kt KeyType, slot string) (crypto.Signer, []byte) {
	t.Helper()
	keyMu.Lock()
	defer keyMu.Unlock()
	id := string(kt) + "/" + slot
	k, ok := keyCache[id]
	if !ok {
		var err error
		if k, _, err = GenerateKey(kt); err != nil {
			t.Fatal(err)
		}
		keyCache[id] = k
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func fullRequest() Request {
	return Request{
		CN: "xmpp.example.com", O: "Example Inc.", OU: "IT", L: "Oslo", ST: "Viken", C: "NO",
		DNSNames: []string{"xmpp.example.com", "conference.example.com"},
		IPs:      []net.IP{net.ParseIP("10.0.0.1").To4(), net.ParseIP("2001:db8::1")},
	}
}

const fullSubject = "CN=xmpp.example.com,OU=IT,O=Example Inc.,L=Oslo,ST=Viken,C=NO"

func mustDecode(t *testing.T, data []byte, typ string) []byte {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil || b.Type != typ {
		t.Fatalf("want one %s PEM block, got %q", typ, data)
	}
	return b.Bytes
}

func TestCreateCSR(t *testing.T) {
	for _, kt := range []KeyType{KeyRSA2048, KeyECDSAP256} {
		t.Run(string(kt), func(t *testing.T) {
			key, _ := testKey(t, kt, "a")
			csrPEM, err := CreateCSR(key, fullRequest())
			if err != nil {
				t.Fatal(err)
			}
			csr, err := x509.ParseCertificateRequest(mustDecode(t, csrPEM, "CERTIFICATE REQUEST"))
			if err != nil {
				t.Fatal(err)
			}
			if err := csr.CheckSignature(); err != nil {
				t.Errorf("signature: %v", err)
			}
			if got := nameString(csr.RawSubject); got != fullSubject {
				t.Errorf("subject %q, want %q", got, fullSubject)
			}
			if !reflect.DeepEqual(csr.DNSNames, fullRequest().DNSNames) {
				t.Errorf("DNS SANs %q", csr.DNSNames)
			}
			if len(csr.IPAddresses) != 2 || !csr.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) || !csr.IPAddresses[1].Equal(net.ParseIP("2001:db8::1")) {
				t.Errorf("IP SANs %v", csr.IPAddresses)
			}
			if !publicKeyEqual(csr.PublicKey, key.Public()) {
				t.Error("CSR holds another public key")
			}
			if Classify(csrPEM) != KindCSR {
				t.Errorf("Classify = %s", Classify(csrPEM))
			}
		})
	}
}

func TestCreateCSRSANFromCN(t *testing.T) {
	key, _ := testKey(t, KeyECDSAP256, "a")
	tests := []struct {
		cn   string
		want []string
	}{
		{"xmpp.example.com", []string{"xmpp.example.com"}},
		{"*.Example.com", []string{"*.example.com"}},
		{"Parley Server", nil},
	}
	for _, tt := range tests {
		csrPEM, err := CreateCSR(key, Request{CN: tt.cn})
		if err != nil {
			t.Fatal(err)
		}
		csr, err := x509.ParseCertificateRequest(mustDecode(t, csrPEM, "CERTIFICATE REQUEST"))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(csr.DNSNames, tt.want) {
			t.Errorf("CN %q: DNS SANs %q, want %q", tt.cn, csr.DNSNames, tt.want)
		}
		if csr.Subject.CommonName != tt.cn {
			t.Errorf("CN %q, want %q", csr.Subject.CommonName, tt.cn)
		}
	}
	if _, err := CreateCSR(key, Request{}); err == nil {
		t.Error("CreateCSR with no CN did not fail")
	}
}

func TestSelfSigned(t *testing.T) {
	for _, kt := range []KeyType{KeyRSA2048, KeyECDSAP256} {
		t.Run(string(kt), func(t *testing.T) {
			key, _ := testKey(t, kt, "a")
			req := fullRequest()
			req.Days = 730
			crtPEM, err := SelfSigned(key, req, testNow)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := x509.ParseCertificate(mustDecode(t, crtPEM, "CERTIFICATE"))
			if err != nil {
				t.Fatal(err)
			}
			if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
				t.Errorf("self-signature: %v", err)
			}
			if got := SubjectString(cert); got != fullSubject {
				t.Errorf("subject %q, want %q", got, fullSubject)
			}
			if !bytes.Equal(cert.RawIssuer, cert.RawSubject) {
				t.Error("issuer differs from subject")
			}
			if !reflect.DeepEqual(cert.DNSNames, req.DNSNames) || len(cert.IPAddresses) != 2 {
				t.Errorf("SANs %q %v", cert.DNSNames, cert.IPAddresses)
			}
			if !cert.NotBefore.Equal(testNow.Add(-5*time.Minute)) || !cert.NotAfter.Equal(testNow.AddDate(0, 0, 730)) {
				t.Errorf("validity %v .. %v", cert.NotBefore, cert.NotAfter)
			}
			if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %v", cert.SerialNumber)
			}
			if !cert.BasicConstraintsValid || cert.IsCA {
				t.Error("want basicConstraints CA:FALSE")
			}
			wantUsage := x509.KeyUsageDigitalSignature
			if kt != KeyECDSAP256 {
				wantUsage |= x509.KeyUsageKeyEncipherment
			}
			if cert.KeyUsage != wantUsage {
				t.Errorf("key usage %v, want %v", cert.KeyUsage, wantUsage)
			}
			if !reflect.DeepEqual(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
				t.Errorf("ext key usage %v", cert.ExtKeyUsage)
			}
			if len(cert.SubjectKeyId) != 20 {
				t.Errorf("subject key id %x", cert.SubjectKeyId)
			}
			if !publicKeyEqual(cert.PublicKey, key.Public()) {
				t.Error("certificate holds another public key")
			}
			if err := cert.VerifyHostname("conference.example.com"); err != nil {
				t.Error(err)
			}
			_, keyPEM := testKey(t, kt, "a")
			if err := Match(keyPEM, crtPEM); err != nil {
				t.Errorf("Match: %v", err)
			}
		})
	}
}

func TestSelfSignedDefaultsAndLimits(t *testing.T) {
	key, _ := testKey(t, KeyECDSAP256, "a")
	crtPEM, err := SelfSigned(key, Request{CN: "xmpp.example.com"}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(mustDecode(t, crtPEM, "CERTIFICATE"))
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotAfter.Equal(testNow.AddDate(0, 0, 365)) {
		t.Errorf("default validity ends %v", cert.NotAfter)
	}
	if !reflect.DeepEqual(cert.DNSNames, []string{"xmpp.example.com"}) {
		t.Errorf("SANs %q", cert.DNSNames)
	}
	a, _ := SelfSigned(key, Request{CN: "xmpp.example.com"}, testNow)
	ca, _ := x509.ParseCertificate(mustDecode(t, a, "CERTIFICATE"))
	if ca.SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Error("two certificates got the same serial")
	}
	for _, days := range []int{-1, 3651} {
		if _, err := SelfSigned(key, Request{CN: "x", Days: days}, testNow); err == nil {
			t.Errorf("days %d accepted", days)
		}
	}
}

func TestMatch(t *testing.T) {
	rsaKey, rsaPEM := testKey(t, KeyRSA2048, "a")
	_, rsaOtherPEM := testKey(t, KeyRSA2048, "b")
	_, ecPEM := testKey(t, KeyECDSAP256, "a")
	crt, err := SelfSigned(rsaKey, Request{CN: "xmpp.example.com"}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	bundle := append(append([]byte{}, crt...), crt...)
	tests := []struct {
		name      string
		key, cert []byte
		want      string // "" for success
		role      string // InputError role, if any
	}{
		{"match", rsaPEM, crt, "", ""},
		{"match first of bundle", rsaPEM, bundle, "", ""},
		{"other RSA key", rsaOtherPEM, crt, "the key does not match the certificate: the certificate's public key is RSA 2048", ""},
		{"ECDSA key", ecPEM, crt, "the key's is ECDSA P-256", ""},
		{"garbage key", []byte("hello"), crt, "key: not a PEM private key (no PEM data found)", "key"},
		{"garbage certificate", rsaPEM, []byte("hello"), "certificate: not a certificate (no PEM data found)", "certificate"},
		{"swapped", crt, rsaPEM, "key: not a PEM private key (it is a certificate)", "key"},
		{"empty certificate", rsaPEM, nil, "certificate: not a certificate (the file is empty)", "certificate"},
		{"corrupt certificate", rsaPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), "certificate: the certificate is not a valid X.509 certificate", "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Match(tt.key, tt.cert)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Match: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Match = %v, want %q", err, tt.want)
			}
			var ie *InputError
			if got := errors.As(err, &ie); got != (tt.role != "") || got && ie.Role != tt.role {
				t.Errorf("InputError %v, want role %q", ie, tt.role)
			}
		})
	}
	err = NameInputs(Match(rsaPEM, []byte("hello")), map[string]string{"key": "server.key", "certificate": "server.crt"})
	if err == nil || !strings.HasPrefix(err.Error(), "server.crt: not a certificate") {
		t.Errorf("named error %v", err)
	}
}

// testCA is a CA (or leaf) made in the test with crypto/x509.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

var serialSeq int64

func issue(t *testing.T, cn string, parent *testCA, isCA bool, notBefore, notAfter time.Time) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serialSeq++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serialSeq),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Test"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		DNSNames:              nil,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{cn}
	}
	return sign(t, tmpl, key, parent)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestVerify(t *testing.T) {
	start, end := testNow.AddDate(-1, 0, 0), testNow.AddDate(5, 0, 0)
	root := issue(t, "Root CA", nil, true, start, end)
	inter := issue(t, "Intermediate CA", root, true, start, end)
	leaf := issue(t, "xmpp.example.com", inter, false, start, testNow.AddDate(1, 0, 0))
	direct := issue(t, "direct.example.com", root, false, start, end)
	other := issue(t, "Other Root", nil, true, start, end)
	shortInter := issue(t, "Short Intermediate", root, true, start, testNow.AddDate(0, 0, -1))
	shortLeaf := issue(t, "short.example.com", shortInter, false, start, end)
	inter2 := issue(t, "Second Intermediate", inter, true, start, end)
	leaf2 := issue(t, "deep.example.com", inter2, false, start, end)

	// A leaf signed with the intermediate's key via a CSR made by this package.
	csrKey, _ := testKey(t, KeyECDSAP256, "a")
	csrPEM, err := CreateCSR(csrKey, Request{CN: "csr.example.com", O: "Example Inc."})
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(mustDecode(t, csrPEM, "CERTIFICATE REQUEST"))
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(999), Subject: csr.Subject, DNSNames: csr.DNSNames,
		NotBefore: start, NotAfter: end, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, inter.cert, csr.PublicKey, inter.key)
	if err != nil {
		t.Fatal(err)
	}
	signedPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})

	const (
		rootS  = "CN=Root CA,O=Test"
		interS = "CN=Intermediate CA,O=Test"
		leafS  = "CN=xmpp.example.com,O=Test"
	)
	tests := []struct {
		name         string
		cert, bundle []byte
		now          time.Time
		chain        []string
		want         string // error substring
	}{
		{name: "good chain", cert: leaf.pem, bundle: cat(inter.pem, root.pem), chain: []string{leafS, interS, rootS}},
		{name: "CSR signed by intermediate", cert: signedPEM, bundle: cat(inter.pem, root.pem), chain: []string{"CN=csr.example.com,O=Example Inc.", interS, rootS}},
		{name: "leaf with its intermediate, bundle root only", cert: cat(leaf.pem, inter.pem), bundle: root.pem, chain: []string{leafS, interS, rootS}},
		{name: "fullchain leaf and full bundle", cert: cat(leaf.pem, inter.pem), bundle: cat(inter.pem, root.pem), chain: []string{leafS, interS, rootS}},
		{name: "signed by root directly", cert: direct.pem, bundle: root.pem, chain: []string{"CN=direct.example.com,O=Test", rootS}},
		{name: "two intermediates", cert: leaf2.pem, bundle: cat(inter2.pem, inter.pem, root.pem), chain: []string{"CN=deep.example.com,O=Test", "CN=Second Intermediate,O=Test", interS, rootS}},
		{name: "wrong order", cert: leaf.pem, bundle: cat(root.pem, inter.pem),
			want: "bundle order is wrong: certificate 1 (CN=Root CA,O=Test) is the root; put intermediates first and the root last"},
		{name: "wrong order of intermediates", cert: leaf2.pem, bundle: cat(inter.pem, inter2.pem, root.pem),
			want: "bundle order is wrong: certificate 2 (CN=Second Intermediate,O=Test) issued CN=deep.example.com,O=Test and must come first"},
		{name: "extra root at the end", cert: leaf.pem, bundle: cat(inter.pem, root.pem, other.pem),
			want: "bundle: certificate 3 (CN=Other Root,O=Test) is not part of the chain of CN=xmpp.example.com,O=Test: remove it"},
		{name: "extra root in the middle", cert: leaf.pem, bundle: cat(inter.pem, other.pem, root.pem),
			want: "bundle: certificate 2 (CN=Other Root,O=Test) is not part of the chain"},
		{name: "unrelated CA", cert: leaf.pem, bundle: other.pem,
			want: "CN=xmpp.example.com,O=Test is not signed by any certificate in the bundle (its issuer is CN=Intermediate CA,O=Test)"},
		{name: "missing intermediate", cert: leaf2.pem, bundle: cat(inter2.pem, root.pem),
			want: "the chain stops at CN=Second Intermediate,O=Test: its issuer CN=Intermediate CA,O=Test is not in the bundle"},
		{name: "missing root", cert: leaf.pem, bundle: inter.pem,
			want: "the chain stops at CN=Intermediate CA,O=Test: its issuer CN=Root CA,O=Test is neither in the bundle nor a trusted root"},
		{name: "expired leaf", cert: leaf.pem, bundle: cat(inter.pem, root.pem), now: testNow.AddDate(50, 0, 0),
			want: "certificate CN=xmpp.example.com,O=Test expired on " + leaf.cert.NotAfter.UTC().Format(time.RFC3339)},
		{name: "leaf not yet valid", cert: leaf.pem, bundle: cat(inter.pem, root.pem), now: testNow.AddDate(-50, 0, 0),
			want: "is not valid before " + start.Format(time.RFC3339)},
		{name: "expired intermediate", cert: shortLeaf.pem, bundle: cat(shortInter.pem, root.pem),
			want: "intermediate CN=Short Intermediate,O=Test expired on " + shortInter.cert.NotAfter.UTC().Format(time.RFC3339)},
		{name: "self-signed without bundle", cert: root.pem, bundle: nil,
			want: "self-signed: give a CA bundle to verify against"},
		{name: "private CA without bundle", cert: leaf.pem, bundle: nil,
			want: "not a trusted root of the system: give a CA bundle"},
		{name: "garbage bundle", cert: leaf.pem, bundle: []byte("nonsense"), want: "bundle: not a certificate"},
		{name: "key as certificate", cert: func() []byte { _, k := testKey(t, KeyECDSAP256, "a"); return k }(), bundle: root.pem,
			want: "certificate: not a certificate (it is a private key)"},
		{name: "self-signed leaf given as its own bundle", cert: root.pem, bundle: root.pem, chain: []string{rootS}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = testNow
			}
			chain, err := Verify(tt.cert, tt.bundle, now)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Verify = %v, want error containing %q", err, tt.want)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("multi-line error %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !reflect.DeepEqual(chain, tt.chain) {
				t.Errorf("chain %q, want %q", chain, tt.chain)
			}
		})
	}
}

func TestVerifyRSASelfSigned(t *testing.T) {
	key, _ := testKey(t, KeyRSA2048, "a")
	crt, err := SelfSigned(key, Request{CN: "xmpp.example.com", O: "Example Inc."}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	// A non-CA self-signed certificate can be its own trust anchor.
	chain, err := Verify(crt, crt, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(chain, []string{"CN=xmpp.example.com,O=Example Inc."}) {
		t.Errorf("chain %q", chain)
	}
	if _, err := Verify(crt, nil, testNow); err == nil || !strings.Contains(err.Error(), "self-signed: give a CA bundle") {
		t.Errorf("no bundle: %v", err)
	}
	if _, err := Verify(crt, crt, testNow.AddDate(2, 0, 0)); err == nil || !strings.Contains(err.Error(), "expired on") {
		t.Errorf("expired: %v", err)
	}
}

// sign issues tmpl for key, signed by parent (self-signed when nil).
func sign(t *testing.T, tmpl *x509.Certificate, key *ecdsa.PrivateKey, parent *testCA) *testCA {
	t.Helper()
	parentCert, parentKey := tmpl, crypto.Signer(key)
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}
