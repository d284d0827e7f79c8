package pki

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

// Kind is what a file in the files area holds.
type Kind string

// Kinds reported by Classify.
const (
	KindKey         Kind = "key"
	KindCertificate Kind = "certificate"
	KindBundle      Kind = "bundle"
	KindCSR         Kind = "csr"
	KindPublicKey   Kind = "public key"
	KindOther       Kind = "other"
)

// pemBlocks returns every PEM block in data, skipping text around them.
func pemBlocks(data []byte) []*pem.Block {
	var out []*pem.Block
	for len(data) > 0 {
		b, rest := pem.Decode(data)
		if b == nil {
			break
		}
		out = append(out, b)
		data = rest
	}
	return out
}

func isCertificateBlock(b *pem.Block) bool {
	return b.Type == "CERTIFICATE" || b.Type == "X509 CERTIFICATE"
}

func isCSRBlock(b *pem.Block) bool {
	return b.Type == "CERTIFICATE REQUEST" || b.Type == "NEW CERTIFICATE REQUEST"
}

func isPublicKeyBlock(b *pem.Block) bool {
	return b.Type == "PUBLIC KEY" || b.Type == "RSA PUBLIC KEY"
}

// sshKey is one line of an authorized_keys file.
type sshKey struct {
	key     ssh.PublicKey
	comment string
}

// parseAuthorizedKeys returns the keys of an OpenSSH authorized_keys (or
// .pub) file, or nil unless every line that is not blank or a comment is a
// key.
func parseAuthorizedKeys(data []byte) []sshKey {
	if !utf8.Valid(data) {
		return nil
	}
	var out []sshKey
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil
		}
		out = append(out, sshKey{k, comment})
	}
	return out
}

// contents sorts the PEM blocks of a file by what they hold.
type contents struct {
	keys, certs, csrs, pubs []*pem.Block
	ssh                     []sshKey
}

func scan(data []byte) contents {
	var c contents
	for _, b := range pemBlocks(data) {
		switch {
		case isPrivateKeyBlock(b):
			c.keys = append(c.keys, b)
		case isCertificateBlock(b):
			c.certs = append(c.certs, b)
		case isCSRBlock(b):
			c.csrs = append(c.csrs, b)
		case isPublicKeyBlock(b):
			c.pubs = append(c.pubs, b)
		}
	}
	if len(c.keys)+len(c.certs)+len(c.csrs)+len(c.pubs) == 0 {
		c.ssh = parseAuthorizedKeys(data)
	}
	return c
}

func (c contents) kind() Kind {
	switch {
	case len(c.keys) > 0:
		return KindKey
	case len(c.certs) == 1:
		return KindCertificate
	case len(c.certs) > 1:
		return KindBundle
	case len(c.csrs) > 0:
		return KindCSR
	case len(c.pubs) > 0 || len(c.ssh) > 0:
		return KindPublicKey
	}
	return KindOther
}

// Classify looks at content: PEM private keys (PKCS#1, SEC 1, PKCS#8,
// encrypted or not, OpenSSH) are a key; one CERTIFICATE is a certificate and
// more than one a bundle; a CERTIFICATE REQUEST is a csr; a PEM PUBLIC KEY or
// OpenSSH authorized_keys lines are a public key; anything else is other. A
// file holding a private key and certificates is a key.
func Classify(data []byte) Kind { return scan(data).kind() }

// describeContent says in a few words what data is, for error messages.
func describeContent(data []byte) string {
	c := scan(data)
	switch c.kind() {
	case KindKey:
		return "it is a private key"
	case KindCertificate:
		return "it is a certificate"
	case KindBundle:
		return fmt.Sprintf("it is a bundle of %d certificates", len(c.certs))
	case KindCSR:
		return "it is a certificate signing request; have it signed by a CA first"
	case KindPublicKey:
		return "it is a public key"
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return "the file is empty"
	}
	if _, err := x509.ParseCertificate(data); err == nil {
		return "it is a binary DER certificate; convert it to PEM with openssl x509 -inform der -in FILE -out FILE.crt"
	}
	if bs := pemBlocks(data); len(bs) > 0 {
		return fmt.Sprintf("it holds an unsupported PEM %q block", bs[0].Type)
	}
	return "no PEM data found"
}

// Summary is one row of `pki list`.
type Summary struct {
	Kind     Kind
	Subject  string    // certificates and CSRs: "CN=xmpp.example.com,O=Example Inc."; bundles: of the first certificate
	SANs     []string  // DNS names then IPs
	NotAfter time.Time // certificates and bundles (first certificate); zero otherwise
	Count    int       // number of certificates in a certificate or bundle
	Detail   string    // keys: "RSA 2048"; public keys: "ssh-ed25519 (2 keys)"; may be empty
}

// Summarize describes data in one row. It never fails: what cannot be
// parsed is noted in Detail.
func Summarize(data []byte) Summary {
	c := scan(data)
	s := Summary{Kind: c.kind(), Count: len(c.certs)}
	var details []string
	if len(c.certs) > 0 {
		cert, err := x509.ParseCertificate(c.certs[0].Bytes)
		if err != nil {
			details = append(details, "unparsable certificate")
		} else {
			s.Subject = SubjectString(cert)
			s.SANs = sanStrings(cert.DNSNames, cert.IPAddresses)
			s.NotAfter = cert.NotAfter
			if s.Kind != KindKey {
				d := KeyDescription(cert.PublicKey)
				if selfSigned(cert) {
					d += ", self-signed"
				}
				details = append(details, d)
			}
		}
	}
	switch s.Kind {
	case KindKey:
		key, err := parsePrivateKeyBlock(c.keys[0])
		switch {
		case isEncryptedBlock(c.keys[0]):
			details = append(details, "encrypted")
		case err != nil:
			details = append(details, "unparsable")
		default:
			details = append(details, KeyDescription(key.Public()))
		}
		if n := len(c.certs); n == 1 {
			details = append(details, "with a certificate")
		} else if n > 1 {
			details = append(details, fmt.Sprintf("with %d certificates", n))
		}
	case KindCSR:
		csr, err := x509.ParseCertificateRequest(c.csrs[0].Bytes)
		if err != nil {
			details = append(details, "unparsable")
			break
		}
		s.Subject = nameString(csr.RawSubject)
		s.SANs = sanStrings(csr.DNSNames, csr.IPAddresses)
		details = append(details, KeyDescription(csr.PublicKey))
	case KindPublicKey:
		var types []string
		n := 0
		for _, b := range c.pubs {
			n++
			if pub, err := parsePublicKeyBlock(b); err == nil {
				types = appendUnique(types, KeyDescription(pub))
			} else {
				types = appendUnique(types, "unparsable")
			}
		}
		for _, k := range c.ssh {
			n++
			types = appendUnique(types, k.key.Type())
		}
		d := strings.Join(types, ", ")
		if n > 1 {
			d += fmt.Sprintf(" (%d keys)", n)
		}
		details = append(details, d)
	case KindOther:
		if len(bytes.TrimSpace(data)) > 0 {
			if _, err := x509.ParseCertificate(data); err == nil {
				details = append(details, "DER certificate: convert it to PEM")
			}
		}
	}
	s.Detail = strings.Join(details, ", ")
	return s
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func parsePublicKeyBlock(b *pem.Block) (crypto.PublicKey, error) {
	if b.Type == "RSA PUBLIC KEY" {
		return x509.ParsePKCS1PublicKey(b.Bytes)
	}
	return x509.ParsePKIXPublicKey(b.Bytes)
}

// Inspect returns a human-readable, multi-line description of data: the
// fields of each certificate (numbered in a bundle), of a CSR, of a private
// key or of public keys. now is used to say how long a certificate has left.
func Inspect(data []byte, now time.Time) (string, error) {
	c := scan(data)
	if c.kind() == KindOther {
		return "", fmt.Errorf("not a PEM key, certificate, CSR or bundle: %s", describeContent(data))
	}
	var sections [][]string
	for _, b := range c.keys {
		sections = append(sections, inspectKey(b))
	}
	certs, err := parseCertificateBlocks(c.certs)
	if err != nil {
		return "", err
	}
	for _, cert := range certs {
		sections = append(sections, inspectCert(cert, now))
	}
	for _, b := range c.csrs {
		lines, err := inspectCSR(b)
		if err != nil {
			return "", err
		}
		sections = append(sections, lines)
	}
	for _, b := range c.pubs {
		lines, err := inspectPublicKey(b)
		if err != nil {
			return "", err
		}
		sections = append(sections, lines)
	}
	if len(c.ssh) > 0 {
		sections = append(sections, inspectSSHKeys(c.ssh))
	}

	if len(sections) == 1 {
		return strings.Join(sections[0], "\n"), nil
	}
	var out []string
	certN, csrN, keyN, pubN := 0, 0, 0, 0
	for i, sec := range sections {
		if i > 0 {
			out = append(out, "")
		}
		var head string
		switch {
		case i < len(c.keys):
			keyN++
			head = numbered("Private key", keyN, len(c.keys))
		case i < len(c.keys)+len(c.certs):
			certN++
			head = numbered("Certificate", certN, len(c.certs))
		case i < len(c.keys)+len(c.certs)+len(c.csrs):
			csrN++
			head = numbered("Certificate request", csrN, len(c.csrs))
		default:
			pubN++
			head = numbered("Public key", pubN, len(c.pubs))
		}
		out = append(out, head)
		for _, l := range sec {
			out = append(out, "  "+l)
		}
	}
	return strings.Join(out, "\n"), nil
}

func numbered(what string, i, n int) string {
	if n <= 1 {
		return what
	}
	return fmt.Sprintf("%s %d of %d", what, i, n)
}

// field formats one "Label: value" line with the values aligned.
func field(label, value string) string {
	return fmt.Sprintf("%-21s%s", label+":", value)
}

func inspectCert(cert *x509.Certificate, now time.Time) []string {
	notBefore := cert.NotBefore.UTC().Format(time.RFC3339)
	if now.Before(cert.NotBefore) {
		notBefore += " (not yet valid)"
	}
	notAfter := cert.NotAfter.UTC().Format(time.RFC3339)
	switch left := cert.NotAfter.Sub(now); {
	case left < 0:
		notAfter += " (expired)"
	case left < 24*time.Hour:
		notAfter += " (expires in less than a day)"
	default:
		// Rounded, so that a certificate made with days:30 reads "30 days".
		days := int((left + 12*time.Hour) / (24 * time.Hour))
		if days == 1 {
			notAfter += " (expires in 1 day)"
		} else {
			notAfter += fmt.Sprintf(" (expires in %d days)", days)
		}
	}
	ca := "no"
	if cert.BasicConstraintsValid && cert.IsCA {
		ca = "yes"
		if cert.MaxPathLen > 0 || cert.MaxPathLenZero {
			ca += fmt.Sprintf(" (path length %d)", cert.MaxPathLen)
		}
	}
	if selfSigned(cert) {
		ca += ", self-signed"
	}
	fp := sha256.Sum256(cert.Raw)
	pubFP, _ := PublicKeySHA256(cert.PublicKey)
	return []string{
		field("Subject", SubjectString(cert)),
		field("Issuer", issuerString(cert)),
		field("Serial", serialHex(cert)),
		field("Not before", notBefore),
		field("Not after", notAfter),
		field("SANs", allSANs(cert)),
		field("Key", KeyDescription(cert.PublicKey)),
		field("Public key SHA-256", orNone(pubFP)),
		field("Signature algorithm", cert.SignatureAlgorithm.String()),
		field("CA", ca),
		field("SHA-256 fingerprint", colonHex(fp[:])),
	}
}

func serialHex(cert *x509.Certificate) string {
	if cert.SerialNumber == nil {
		return "(none)"
	}
	return strings.ToUpper(cert.SerialNumber.Text(16))
}

func inspectCSR(b *pem.Block) ([]string, error) {
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the certificate request is not valid: %v", err)
	}
	sig := "valid"
	if csr.CheckSignature() != nil {
		sig = "INVALID (the request was altered, or not signed by its own key)"
	}
	pubFP, _ := PublicKeySHA256(csr.PublicKey)
	return []string{
		field("Subject", orNone(nameString(csr.RawSubject))),
		field("SANs", prefixedSANs(csr.DNSNames, csr.IPAddresses)),
		field("Key", KeyDescription(csr.PublicKey)),
		field("Public key SHA-256", orNone(pubFP)),
		field("Signature algorithm", csr.SignatureAlgorithm.String()),
		field("Signature", sig),
	}, nil
}

func inspectKey(b *pem.Block) []string {
	format := map[string]string{
		"PRIVATE KEY":           "PKCS#8",
		"ENCRYPTED PRIVATE KEY": "PKCS#8",
		"RSA PRIVATE KEY":       "PKCS#1",
		"EC PRIVATE KEY":        "SEC 1",
		"OPENSSH PRIVATE KEY":   "OpenSSH",
	}[b.Type]
	if format == "" {
		format = b.Type
	}
	if isEncryptedBlock(b) {
		return []string{
			field("Type", "encrypted private key ("+format+")"),
			field("Note", "Parley needs it unencrypted: openssl pkey -in FILE -out FILE.key"),
		}
	}
	key, err := parsePrivateKeyBlock(b)
	if err != nil {
		return []string{
			field("Type", "private key ("+format+")"),
			field("Error", err.Error()),
		}
	}
	pubFP, _ := PublicKeySHA256(key.Public())
	return []string{
		field("Type", "private key ("+format+")"),
		field("Key", KeyDescription(key.Public())),
		field("Public key SHA-256", orNone(pubFP)),
	}
}

func inspectPublicKey(b *pem.Block) ([]string, error) {
	pub, err := parsePublicKeyBlock(b)
	if err != nil {
		return nil, fmt.Errorf("the %s block is not valid: %v", b.Type, err)
	}
	pubFP, _ := PublicKeySHA256(pub)
	lines := []string{
		field("Type", "public key"),
		field("Key", KeyDescription(pub)),
		field("Public key SHA-256", orNone(pubFP)),
	}
	if sk, err := ssh.NewPublicKey(pub); err == nil {
		lines = append(lines, field("SSH fingerprint", ssh.FingerprintSHA256(sk)))
	}
	return lines, nil
}

func inspectSSHKeys(keys []sshKey) []string {
	var lines []string
	for i, k := range keys {
		desc := k.key.Type()
		if ck, ok := k.key.(ssh.CryptoPublicKey); ok && k.key.Type() == ssh.KeyAlgoRSA {
			desc += " (" + KeyDescription(ck.CryptoPublicKey()) + ")" // the size
		}
		comment := printable(k.comment)
		if comment == "" {
			comment = "(no comment)"
		}
		lines = append(lines, field(fmt.Sprintf("Key %d", i+1), desc+" "+ssh.FingerprintSHA256(k.key)+" "+comment))
	}
	return lines
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// sanStrings lists DNS names then IP addresses.
func sanStrings(dns []string, ips []net.IP) []string {
	var out []string
	for _, d := range dns {
		out = append(out, printable(d))
	}
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

// prefixedSANs lists "DNS:a, IP:10.0.0.1", or "(none)".
func prefixedSANs(dns []string, ips []net.IP) string {
	var parts []string
	for _, d := range dns {
		parts = append(parts, "DNS:"+printable(d))
	}
	for _, ip := range ips {
		parts = append(parts, "IP:"+ip.String())
	}
	if len(parts) == 0 {
		return "(none)"
	}
	return strings.Join(parts, ", ")
}

var (
	oidSAN      = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidXMPPAddr = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 5}
	oidSRVName  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 7}
)

// allSANs lists every subjectAltName of a certificate, including the XMPP
// ones (id-on-xmppAddr, SRVName) that crypto/x509 does not decode.
func allSANs(cert *x509.Certificate) string {
	var parts []string
	for _, d := range cert.DNSNames {
		parts = append(parts, "DNS:"+printable(d))
	}
	for _, ip := range cert.IPAddresses {
		parts = append(parts, "IP:"+ip.String())
	}
	for _, e := range cert.EmailAddresses {
		parts = append(parts, "email:"+printable(e))
	}
	for _, u := range cert.URIs {
		parts = append(parts, "URI:"+printable(u.String()))
	}
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(oidSAN) {
			parts = append(parts, otherNames(ext.Value)...)
		}
	}
	if len(parts) == 0 {
		return "(none)"
	}
	return strings.Join(parts, ", ")
}

// otherName is one otherName entry of a subjectAltName extension.
type otherName struct {
	oid   asn1.ObjectIdentifier
	value string // the string inside, for the XMPP types
}

// parseOtherNames decodes the otherName entries of a subjectAltName
// extension; what cannot be decoded is skipped.
func parseOtherNames(der []byte) []otherName {
	var seq asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &seq); err != nil || len(rest) > 0 {
		return nil
	}
	var out []otherName
	for rest := seq.Bytes; len(rest) > 0; {
		var gn asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &gn); err != nil {
			return out
		}
		if gn.Class != asn1.ClassContextSpecific || gn.Tag != 0 {
			continue
		}
		var oid asn1.ObjectIdentifier
		inner, err := asn1.Unmarshal(gn.Bytes, &oid)
		if err != nil {
			continue
		}
		var explicit, value asn1.RawValue
		if _, err := asn1.Unmarshal(inner, &explicit); err != nil {
			continue
		}
		if _, err := asn1.Unmarshal(explicit.Bytes, &value); err != nil {
			continue
		}
		out = append(out, otherName{oid: oid, value: string(value.Bytes)})
	}
	return out
}

// otherNames lists the otherName entries of a subjectAltName extension as
// "XMPP:…", "SRV:…" or "otherName:<oid>".
func otherNames(der []byte) []string {
	var out []string
	for _, n := range parseOtherNames(der) {
		switch {
		case n.oid.Equal(oidXMPPAddr):
			out = append(out, "XMPP:"+printable(n.value))
		case n.oid.Equal(oidSRVName):
			out = append(out, "SRV:"+printable(n.value))
		default:
			out = append(out, "otherName:"+n.oid.String())
		}
	}
	return out
}

// SubjectString is the certificate's subject as an RFC 4514 string, most
// specific first: "CN=xmpp.example.com,O=Example Inc.,C=NO".
func SubjectString(c *x509.Certificate) string {
	if s := nameString(c.RawSubject); s != "" {
		return s
	}
	if len(c.DNSNames) > 0 {
		return "(no subject, DNS:" + printable(c.DNSNames[0]) + ")"
	}
	return "(no subject)"
}

func issuerString(c *x509.Certificate) string { return orNone(nameString(c.RawIssuer)) }

var attrNames = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.4":                    "SN",
	"2.5.4.5":                    "serialNumber",
	"2.5.4.6":                    "C",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.9":                    "STREET",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"2.5.4.12":                   "title",
	"2.5.4.17":                   "postalCode",
	"2.5.4.42":                   "GN",
	"2.5.4.46":                   "dnQualifier",
	"2.5.4.65":                   "pseudonym",
	"2.5.4.97":                   "organizationIdentifier",
	"0.9.2342.19200300.100.1.1":  "UID",
	"0.9.2342.19200300.100.1.25": "DC",
	"1.2.840.113549.1.9.1":       "emailAddress",
}

// nameString renders a DER Name as RFC 4514 (last RDN first). Attributes
// without a short name are shown as the dotted OID; values that are not
// strings as #hex.
func nameString(raw []byte) string {
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(raw, &seq); err != nil || len(rest) > 0 {
		return "(unparsable name)"
	}
	var rdns []string
	for i := len(seq) - 1; i >= 0; i-- {
		var atvs []string
		for _, atv := range seq[i] {
			t := atv.Type.String()
			if n, ok := attrNames[t]; ok {
				t = n
			}
			var v string
			if s, ok := atv.Value.(string); ok {
				v = escapeDN(s)
			} else if der, err := asn1.Marshal(atv.Value); err == nil {
				v = "#" + hex.EncodeToString(der)
			}
			atvs = append(atvs, t+"="+v)
		}
		rdns = append(rdns, strings.Join(atvs, "+"))
	}
	return strings.Join(rdns, ",")
}

// escapeDN escapes an attribute value per RFC 4514, and control characters
// as \XX so that no certificate can send escapes to the admin's terminal.
func escapeDN(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == ',' || r == '+' || r == '"' || r == '\\' || r == '<' || r == '>' || r == ';':
			b.WriteByte('\\')
			b.WriteRune(r)
		case (r == '#' || r == ' ') && i == 0, r == ' ' && i == len(s)-1:
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == utf8.RuneError || unicode.IsControl(r):
			var buf [utf8.UTFMax]byte
			n := utf8.EncodeRune(buf[:], r)
			for _, c := range buf[:n] {
				fmt.Fprintf(&b, "\\%02X", c)
			}
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// printable replaces control characters and invalid UTF-8 in text taken from
// a certificate or key file.
func printable(s string) string {
	if utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	q := fmt.Sprintf("%+q", s)
	return q[1 : len(q)-1]
}
