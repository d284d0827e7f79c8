package pki

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOpenSSLInterop checks what Parley writes with the real openssl binary.
func TestOpenSSLInterop(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := exec.Command(openssl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	req, err := ParseAttributes([]string{"CN:xmpp.example.com", "O:Example Inc.", "OU:IT", "L:Oslo", "ST:Viken", "C:no",
		"subjectAltName:xmpp.example.com,conference.example.com,10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, kt := range []KeyType{KeyRSA2048, KeyECDSAP256} {
		t.Run(string(kt), func(t *testing.T) {
			dir := t.TempDir()
			write := func(name string, data []byte) string {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, data, 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			key, keyPEM, err := GenerateKey(kt)
			if err != nil {
				t.Fatal(err)
			}
			csrPEM, err := CreateCSR(key, req)
			if err != nil {
				t.Fatal(err)
			}
			crtPEM, err := SelfSigned(key, req, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			keyFile, csrFile, crtFile := write("x.key", keyPEM), write("x.csr", csrPEM), write("x.crt", crtPEM)

			run(t, "pkey", "-in", keyFile, "-noout")
			if kt == KeyRSA2048 {
				run(t, "rsa", "-in", keyFile, "-check", "-noout")
			} else {
				run(t, "ec", "-in", keyFile, "-check", "-noout")
			}

			out := run(t, "req", "-in", csrFile, "-noout", "-verify", "-subject")
			for _, want := range []string{"verify OK", "CN = xmpp.example.com", "O = Example Inc.", "OU = IT", "L = Oslo", "ST = Viken", "C = NO"} {
				if !strings.Contains(out, want) {
					t.Errorf("openssl req output lacks %q:\n%s", want, out)
				}
			}
			out = run(t, "req", "-in", csrFile, "-noout", "-text")
			if !strings.Contains(out, "DNS:xmpp.example.com, DNS:conference.example.com, IP Address:10.0.0.1") {
				t.Errorf("CSR SANs missing:\n%s", out)
			}

			out = run(t, "x509", "-in", crtFile, "-noout", "-text")
			for _, want := range []string{
				"DNS:xmpp.example.com, DNS:conference.example.com, IP Address:10.0.0.1",
				"Subject: C = NO, ST = Viken, L = Oslo, O = Example Inc., OU = IT, CN = xmpp.example.com",
				"CA:FALSE",
				"TLS Web Server Authentication, TLS Web Client Authentication",
				"Digital Signature",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("openssl x509 output lacks %q:\n%s", want, out)
				}
			}

			// openssl agrees that the key, CSR and certificate share one public key.
			pub := run(t, "pkey", "-in", keyFile, "-pubout")
			if got := run(t, "x509", "-in", crtFile, "-noout", "-pubkey"); got != pub {
				t.Errorf("certificate public key differs from the key's:\n%s\n%s", got, pub)
			}
			if got := run(t, "req", "-in", csrFile, "-noout", "-pubkey"); got != pub {
				t.Errorf("CSR public key differs from the key's:\n%s\n%s", got, pub)
			}
			// The self-signed certificate verifies against itself.
			if out := run(t, "verify", "-CAfile", crtFile, "-purpose", "sslserver", crtFile); !strings.Contains(out, "OK") {
				t.Errorf("openssl verify: %s", out)
			}
		})
	}

	// Keys openssl makes in its legacy and default forms are understood.
	dir := t.TempDir()
	rsaKey := filepath.Join(dir, "rsa.key")
	ecKey := filepath.Join(dir, "ec.key")
	run(t, "genrsa", "-traditional", "-out", rsaKey, "2048")
	run(t, "ecparam", "-name", "prime256v1", "-genkey", "-out", ecKey)
	encKey := filepath.Join(dir, "enc.key")
	run(t, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes256", "-pass", "pass:secret", "-out", encKey)
	for file, want := range map[string]string{rsaKey: "RSA 2048", ecKey: "ECDSA P-256", encKey: "encrypted"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if s := Summarize(data); s.Kind != KindKey || s.Detail != want {
			t.Errorf("%s: %+v, want key %s", filepath.Base(file), s, want)
		}
	}

	// An XMPP certificate from openssl: the id-on-xmppAddr SAN is shown.
	xmppKey, xmppCrt := filepath.Join(dir, "xmpp.key"), filepath.Join(dir, "xmpp.crt")
	run(t, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", xmppKey, "-out", xmppCrt,
		"-days", "30", "-subj", "/C=NO/O=Example Inc./CN=example.com",
		"-addext", "subjectAltName=DNS:example.com,otherName:1.3.6.1.5.5.7.8.5;UTF8:example.com")
	crt, err := os.ReadFile(xmppCrt)
	if err != nil {
		t.Fatal(err)
	}
	k, err := os.ReadFile(xmppKey)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Inspect(crt, time.Now())
	if err != nil || !strings.Contains(out, "SANs:                DNS:example.com, XMPP:example.com") || !strings.Contains(out, "Subject:             CN=example.com,O=Example Inc.,C=NO") {
		t.Errorf("Inspect: %v\n%s", err, out)
	}
	if err := Match(k, crt); err != nil {
		t.Errorf("Match: %v", err)
	}
}
