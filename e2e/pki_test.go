package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Issue item 6: `pki csr` writes a key and a CSR that the real openssl
// accepts, with the subject and SANs asked for.
func TestPKICSR(t *testing.T) {
	t.Parallel()
	a := start(t, options{})
	out := a.mustAdmin(t, `pki csr xmpp CN:example.com O:"Example Inc." C:NO subjectAltName:example.com,10.0.0.1`)
	if out != "Wrote xmpp.key and xmpp.csr\n" {
		t.Fatalf("pki csr printed %q", out)
	}
	if st, err := os.Stat(filepath.Join(a.filesDir(), "xmpp.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("xmpp.key on disk: %v, mode %v; want 0600", err, st.Mode().Perm())
	}

	local := t.TempDir()
	a.get(t, a.asAdmin(), local, "xmpp.key", "xmpp.csr")
	verify := run(t, local, opensslBin, "req", "-in", "xmpp.csr", "-noout", "-verify", "-subject")
	for _, want := range []string{"verify OK", "CN = example.com", "O = Example Inc.", "C = NO"} {
		if !strings.Contains(verify, want) {
			t.Fatalf("openssl req -verify -subject does not show %q:\n%s", want, verify)
		}
	}
	text := run(t, local, opensslBin, "req", "-in", "xmpp.csr", "-noout", "-text")
	for _, want := range []string{"DNS:example.com, IP Address:10.0.0.1", "Public-Key: (2048 bit)", "rsaEncryption"} {
		if !strings.Contains(text, want) {
			t.Fatalf("openssl req -text does not show %q:\n%s", want, text)
		}
	}
	if got := run(t, local, opensslBin, "rsa", "-in", "xmpp.key", "-check", "-noout"); !strings.Contains(got, "RSA key ok") {
		t.Fatalf("openssl rsa -check: %s", got)
	}
	// The key is the CSR's.
	keyPub := run(t, local, opensslBin, "pkey", "-in", "xmpp.key", "-pubout")
	csrPub := run(t, local, opensslBin, "req", "-in", "xmpp.csr", "-noout", "-pubkey")
	if keyPub != csrPub {
		t.Fatalf("the CSR's public key is not xmpp.key's:\n%s\n%s", keyPub, csrPub)
	}

	rows := table(t, a.mustAdmin(t, "pki list"), "FILE", "KIND", "SUBJECT", "SANS", "EXPIRES")
	if got := rows["xmpp.csr"]; len(got) < 2 || got[1] != "csr" {
		t.Fatalf("pki list row of xmpp.csr: %v, want kind csr", got)
	}
	if got := rows["xmpp.key"]; len(got) < 2 || got[1] != "key" {
		t.Fatalf("pki list row of xmpp.key: %v, want kind key", got)
	}
	inspect := a.mustAdmin(t, "pki inspect xmpp.csr")
	for _, want := range []string{"Example Inc.", "example.com", "10.0.0.1"} {
		if !strings.Contains(inspect, want) {
			t.Fatalf("pki inspect xmpp.csr does not show %q:\n%s", want, inspect)
		}
	}

	mustFail(t, a.admin("pki csr xmpp CN:other.example.com"), "pki csr over existing files", "xmpp.key already exists")
}

// Issue item 6: self-signed certificates, pki list, inspect and match, and
// the ECDSA P-256 option.
func TestPKISelfSignedListInspectMatch(t *testing.T) {
	t.Parallel()
	a := start(t, options{})
	if out := a.mustAdmin(t, "pki list"); !strings.Contains(out, "The files area is empty") {
		t.Fatalf("pki list of an empty area: %q", out)
	}
	a.mustAdmin(t, "pki selfsigned site CN:site.example.com O:Site subjectAltName:site.example.com,www.example.com,10.0.0.2 days:90")
	a.mustAdmin(t, "pki selfsigned other CN:other.example.com")
	a.mustAdmin(t, "pki selfsigned ec CN:ec.example.com key:ecdsa-p256")
	expiry := time.Now().UTC().Add(90 * 24 * time.Hour)

	local := t.TempDir()
	a.get(t, a.asAdmin(), local, "site.crt", "ec.crt", "ec.key")
	text := run(t, local, opensslBin, "x509", "-in", "site.crt", "-noout", "-text")
	for _, want := range []string{"DNS:site.example.com, DNS:www.example.com, IP Address:10.0.0.2", "CN = site.example.com", "O = Site", "Public-Key: (2048 bit)"} {
		if !strings.Contains(text, want) {
			t.Fatalf("openssl x509 -text of site.crt does not show %q:\n%s", want, text)
		}
	}
	ecText := run(t, local, opensslBin, "x509", "-in", "ec.crt", "-noout", "-text")
	for _, want := range []string{"id-ecPublicKey", "prime256v1", "Public-Key: (256 bit)"} {
		if !strings.Contains(ecText, want) {
			t.Fatalf("openssl x509 -text of the key:ecdsa-p256 certificate does not show %q:\n%s", want, ecText)
		}
	}
	if got := run(t, local, opensslBin, "ec", "-in", "ec.key", "-check", "-noout"); !strings.Contains(got, "EC Key valid") {
		t.Fatalf("openssl ec -check of ec.key: %s", got)
	}

	list := a.mustAdmin(t, "pki list")
	rows := table(t, list, "FILE", "KIND", "SUBJECT", "SANS", "EXPIRES")
	for _, name := range []string{"site.crt", "site.key", "other.crt", "other.key", "ec.crt", "ec.key"} {
		if _, ok := rows[name]; !ok {
			t.Fatalf("pki list does not show %s:\n%s", name, list)
		}
	}
	site := rows["site.crt"]
	if site[1] != "certificate" || !strings.Contains(strings.Join(site, " "), "site.example.com,www.example.com,10.0.0.2") {
		t.Fatalf("pki list row of site.crt: %v, want kind certificate and the SANs", site)
	}
	if exp := site[len(site)-1]; exp != expiry.Format("2006-01-02") && exp != expiry.Add(-24*time.Hour).Format("2006-01-02") {
		t.Fatalf("pki list: site.crt expires %s, want about %s", exp, expiry.Format("2006-01-02"))
	}
	if !strings.Contains(strings.Join(site, " "), "CN=site.example.com") {
		t.Fatalf("pki list row of site.crt does not show its subject: %v", site)
	}
	if rows["site.key"][1] != "key" {
		t.Fatalf("pki list row of site.key: %v", rows["site.key"])
	}

	inspect := a.mustAdmin(t, "pki inspect site.crt")
	for _, want := range []string{"Subject:", "CN=site.example.com", "SANs:", "site.example.com", "10.0.0.2", "Not after:", "self-signed"} {
		if !strings.Contains(inspect, want) {
			t.Fatalf("pki inspect site.crt does not show %q:\n%s", want, inspect)
		}
	}
	mustFail(t, a.admin("pki inspect nosuch.crt"), "pki inspect of a missing file", "no such file")

	if out := a.mustAdmin(t, "pki match site.key site.crt"); out != "site.key matches site.crt\n" {
		t.Fatalf("pki match printed %q", out)
	}
	mustOK(t, a.admin("pki match ec.key ec.crt"), "pki match of the ECDSA pair")
	mustFail(t, a.admin("pki match other.key site.crt"), "pki match of a key that is not the certificate's",
		"pki match: other.key and site.crt")
	mustFail(t, a.admin("pki match ec.key site.crt"), "pki match of an ECDSA key with an RSA certificate", "pki match: ec.key and site.crt")
}

// Issue item 6: pki verify of a chain built with openssl: root CA,
// intermediate, leaf; the bundle is the intermediate then the root.
func TestPKIVerifyChain(t *testing.T) {
	t.Parallel()
	a := start(t, options{})
	d := t.TempDir()
	ec := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"}
	writeFile(t, d, "ca.ext", []byte("basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"))
	writeFile(t, d, "leaf.ext", []byte("basicConstraints=CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:leaf.example.com\n"))
	run(t, d, opensslBin, append(append([]string{"req", "-x509"}, ec...), "-keyout", "root.key", "-out", "root.crt", "-subj", "/CN=Test Root CA", "-days", "30",
		"-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,keyCertSign,cRLSign")...)
	run(t, d, opensslBin, append(append([]string{"req", "-new"}, ec...), "-keyout", "int.key", "-out", "int.csr", "-subj", "/CN=Test Intermediate CA")...)
	run(t, d, opensslBin, "x509", "-req", "-in", "int.csr", "-CA", "root.crt", "-CAkey", "root.key", "-set_serial", "2", "-days", "30", "-extfile", "ca.ext", "-out", "int.crt")
	run(t, d, opensslBin, append(append([]string{"req", "-new"}, ec...), "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=leaf.example.com")...)
	run(t, d, opensslBin, "x509", "-req", "-in", "leaf.csr", "-CA", "int.crt", "-CAkey", "int.key", "-set_serial", "3", "-days", "30", "-extfile", "leaf.ext", "-out", "leaf.crt")
	// The chain itself is good: openssl says so.
	run(t, d, opensslBin, "verify", "-CAfile", "root.crt", "-untrusted", "int.crt", "leaf.crt")

	read := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join(d, n))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	join := func(names ...string) []byte {
		var b []byte
		for _, n := range names {
			b = append(b, read(n)...)
		}
		return b
	}
	writeFile(t, d, "bundle.pem", join("int.crt", "root.crt"))
	writeFile(t, d, "wrong-order.pem", join("root.crt", "int.crt"))
	writeFile(t, d, "root-only.pem", read("root.crt"))
	a.put(t, a.asAdmin(), filepath.Join(d, "leaf.crt"), filepath.Join(d, "leaf.key"), filepath.Join(d, "bundle.pem"),
		filepath.Join(d, "wrong-order.pem"), filepath.Join(d, "root-only.pem"))

	out := a.mustAdmin(t, "pki verify leaf.crt bundle.pem")
	if !strings.HasPrefix(out, "leaf.crt: verified\n") {
		t.Fatalf("pki verify of a good chain printed:\n%s", out)
	}
	for i, want := range []string{"leaf.example.com", "Test Intermediate CA", "Test Root CA"} {
		if !strings.Contains(out, want) {
			t.Fatalf("pki verify does not show chain element %d %q:\n%s", i+1, want, out)
		}
	}
	mustFail(t, a.admin("pki verify leaf.crt wrong-order.pem"), "pki verify with the root first", "pki verify: ", "bundle order is wrong", "root last")
	mustFail(t, a.admin("pki verify leaf.crt root-only.pem"), "pki verify without the intermediate", "pki verify: ", "Test Intermediate CA")
	mustOK(t, a.admin("pki match leaf.key leaf.crt"), "pki match of the openssl-made pair")

	rows := table(t, a.mustAdmin(t, "pki list"), "FILE", "KIND", "SUBJECT", "SANS", "EXPIRES")
	if got := strings.Join(rows["bundle.pem"], " "); !strings.HasPrefix(got, "bundle.pem bundle (2)") {
		t.Fatalf("pki list row of bundle.pem: %q, want kind bundle (2)", got)
	}
	if got := strings.Join(rows["leaf.crt"], " "); !strings.Contains(got, "certificate") || !strings.Contains(got, "leaf.example.com") {
		t.Fatalf("pki list row of leaf.crt: %q", got)
	}
}

// Issue item 6: bad CSR attributes are refused with one clear line, and
// nothing is written.
func TestPKIMalformedAttributes(t *testing.T) {
	t.Parallel()
	a := start(t, options{})
	cases := []struct {
		name, command string
		want          []string
	}{
		{"CountryOfThreeLetters", "pki csr bad CN:example.com C:NOR", []string{"C:NOR", "two-letter"}},
		{"UnknownAttribute", "pki csr bad CN:example.com XX:1", []string{`unknown attribute "XX"`}},
		{"MissingCN", `pki csr bad O:"Example Inc." C:NO`, []string{"CN is required"}},
		{"NoColon", "pki csr bad CNexample.com", []string{"attributes are NAME:VALUE"}},
		{"EmptyValue", "pki csr bad CN:", []string{"CN: empty value"}},
		{"DuplicateAttribute", "pki csr bad CN:a.example.com CN:b.example.com", []string{"given twice"}},
		{"BadSAN", "pki csr bad CN:example.com subjectAltName:ex_ample..com", []string{"subjectAltName"}},
		{"EmptySANEntry", "pki csr bad CN:example.com subjectAltName:a.example.com,,b.example.com", []string{"empty entry"}},
		{"UnknownKeyType", "pki csr bad CN:example.com key:dsa", []string{"unknown key type"}},
		{"BadDays", "pki selfsigned bad CN:example.com days:0", []string{"days:0"}},
		{"TooManyDays", "pki selfsigned bad CN:example.com days:99999", []string{"days:99999"}},
		{"BaseWithPath", "pki csr ../bad CN:example.com", []string{"bad base name"}},
		{"NoAttributes", "pki csr bad", []string{"missing <attribute>"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			line := mustFail(t, a.admin(c.command), c.command, c.want...)
			if !strings.HasPrefix(line, "pki csr") && !strings.HasPrefix(line, "pki selfsigned") {
				t.Fatalf("%s: the error does not name the command: %q", c.command, line)
			}
			if got := a.filesOnDisk(t); len(got) != 0 {
				t.Fatalf("%s: files written: %q", c.command, got)
			}
		})
	}
}
