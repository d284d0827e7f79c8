package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/net/idna"
)

// Server certificates for XMPP domains: the checks `xmpp certs` and `xmpp
// multi-domain add` run before a key and certificate are used, and the
// self-signed certificate a domain gets until a real one is configured.

// SelfSignedServerDays is the validity of a generated server certificate.
const SelfSignedServerDays = MaxDays

// ASCIIDomain returns the A-label (punycode) form of a domain name, lower
// case, as it appears in certificates and DNS.
func ASCIIDomain(domain string) (string, error) {
	a, err := idna.Lookup.ToASCII(strings.TrimSuffix(domain, "."))
	if err != nil {
		return "", fmt.Errorf("%q is not a valid domain name: %v", domain, err)
	}
	return strings.ToLower(a), nil
}

// unicodeDomain is the U-label form (how XMPP addresses carry it).
func unicodeDomain(domain string) string {
	u, err := idna.Display.ToUnicode(domain)
	if err != nil {
		return strings.ToLower(domain)
	}
	return u
}

// ServerNames returns the names a certificate identifies, for matching an
// XMPP domain (RFC 6120 §13.7.1.2, RFC 6125): DNS names, id-on-xmppAddr and
// SRVName values.
func ServerNames(cert *x509.Certificate) (dns, xmppAddrs, srvNames []string) {
	dns = cert.DNSNames
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidSAN) {
			continue
		}
		for _, n := range parseOtherNames(ext.Value) {
			switch {
			case n.oid.Equal(oidXMPPAddr):
				xmppAddrs = append(xmppAddrs, n.value)
			case n.oid.Equal(oidSRVName):
				srvNames = append(srvNames, n.value)
			}
		}
	}
	return dns, xmppAddrs, srvNames
}

// matchDNS matches a DNS-ID of a certificate against a domain in A-label
// form, case-insensitively. A wildcard is only the whole left-most label and
// stands for exactly one label (RFC 6125 §6.4.3): *.example.com covers
// chat.example.com, not example.com nor a.b.example.com. A wildcard needs at
// least two labels after it.
func matchDNS(pattern, domain string) bool {
	pattern = strings.ToLower(strings.TrimSuffix(pattern, "."))
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		if !strings.Contains(rest, ".") {
			return false
		}
		label, parent, ok := strings.Cut(domain, ".")
		return ok && label != "" && parent == rest
	}
	if strings.Contains(pattern, "*") {
		return false // partial wildcards (f*.example.com) are not honoured
	}
	if a, err := ASCIIDomain(pattern); err == nil {
		pattern = a // a U-label DNS name, wrongly encoded, still names the domain
	}
	return pattern == domain
}

// CertificateCovers reports whether cert identifies the XMPP domain: a DNS
// name (wildcards as in matchDNS), an id-on-xmppAddr equal to the domain, or
// an SRVName _xmpp-client.<domain> or _xmpp-server.<domain>. The subject CN
// is not consulted (RFC 6125 §6.4.4: not when SANs are present, and TLS
// clients no longer do it at all).
func CertificateCovers(cert *x509.Certificate, domain string) bool {
	ascii, err := ASCIIDomain(domain)
	if err != nil {
		return false
	}
	uni := unicodeDomain(ascii)
	dns, addrs, srvs := ServerNames(cert)
	for _, d := range dns {
		if matchDNS(d, ascii) {
			return true
		}
	}
	for _, a := range addrs {
		if strings.EqualFold(a, uni) || strings.EqualFold(a, ascii) {
			return true
		}
	}
	for _, s := range srvs {
		s = strings.ToLower(s)
		if s == "_xmpp-client."+ascii || s == "_xmpp-server."+ascii {
			return true
		}
	}
	return false
}

// CheckServerCertificate checks what an XMPP domain is about to be served
// with, before anything is changed: the key parses and belongs to the
// certificate (the first one in certPEM), the certificate is valid at now,
// may be used by a TLS server, and names domain in its subjectAltName; and,
// when a bundle is given, the certificate verifies against it (see Verify).
// Problems with one input are *InputError values naming its role ("key",
// "certificate", "bundle"; a chain that does not verify is the bundle's), so
// callers can put the file name in with NameInputs. A key that does not
// match the certificate is a plain error (it is about both).
func CheckServerCertificate(keyPEM, certPEM, bundlePEM []byte, domain string, now time.Time) error {
	if err := Match(keyPEM, certPEM); err != nil {
		return err
	}
	certs, err := parseCertificates("certificate", certPEM)
	if err != nil {
		return err
	}
	leaf := certs[0]
	if now.After(leaf.NotAfter) {
		return &InputError{Role: "certificate", Reason: fmt.Sprintf("%s expired on %s: renew it, or go back to a self-signed one with xmpp certs none",
			SubjectString(leaf), leaf.NotAfter.UTC().Format(time.RFC3339))}
	}
	if now.Before(leaf.NotBefore) {
		return &InputError{Role: "certificate", Reason: fmt.Sprintf("%s is not valid before %s: check the clock (date), or wait until then",
			SubjectString(leaf), leaf.NotBefore.UTC().Format(time.RFC3339))}
	}
	if len(leaf.ExtKeyUsage) > 0 && !hasServerAuth(leaf.ExtKeyUsage) {
		return &InputError{Role: "certificate", Reason: fmt.Sprintf("%s is not a TLS server certificate (its extended key usage lacks serverAuth): ask the CA for a server certificate",
			SubjectString(leaf))}
	}
	if !CertificateCovers(leaf, domain) {
		names := allSANs(leaf)
		if names == "(none)" {
			return &InputError{Role: "certificate", Reason: fmt.Sprintf("%s has no subjectAltName, so it does not cover %s (the CN alone is not enough, RFC 6125): get one with subjectAltName %s",
				SubjectString(leaf), domain, domain)}
		}
		return &InputError{Role: "certificate", Reason: fmt.Sprintf("does not cover %s: its names are %s; get a certificate whose subjectAltName includes %s",
			domain, names, domain)}
	}
	if bundlePEM != nil {
		if _, err := Verify(certPEM, bundlePEM, now); err != nil {
			var ie *InputError
			if errors.As(err, &ie) {
				return err
			}
			// The chain does not verify: the bundle is what to fix.
			return &InputError{Role: "bundle", Reason: err.Error()}
		}
	}
	return nil
}

func hasServerAuth(usages []x509.ExtKeyUsage) bool {
	for _, u := range usages {
		if u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

// SelfSignedServer makes an ECDSA P-256 key and a self-signed certificate
// for an XMPP domain: CN and subjectAltName the domain (A-label form), plus
// the wildcard *.<domain> when the domain has a dot (for its subdomains,
// e.g. conference.<domain> and call bridges), valid SelfSignedServerDays
// days from now.
func SelfSignedServer(domain string, now time.Time) (keyPEM, certPEM []byte, err error) {
	ascii, err := ASCIIDomain(domain)
	if err != nil {
		return nil, nil, err
	}
	if err := CheckDNSName(ascii); err != nil {
		return nil, nil, err
	}
	names := []string{ascii}
	if strings.Contains(ascii, ".") {
		names = append(names, "*."+ascii)
	}
	req := Request{CN: ascii, DNSNames: names, Key: KeyECDSAP256, Days: SelfSignedServerDays}
	key, keyPEM, err := GenerateKey(req.Key)
	if err != nil {
		return nil, nil, err
	}
	certPEM, err = SelfSigned(key, req, now)
	if err != nil {
		return nil, nil, err
	}
	return keyPEM, certPEM, nil
}

// KeyPair is what an XMPP domain is served with over TLS: the key, the
// certificate(s) of certPEM, then the certificates of the bundle, if any,
// but for its self-issued ones (the root: a peer that trusts it has it
// already). A bundle that holds no certificate, or one that does not
// parse, is an error.
func KeyPair(keyPEM, certPEM, bundlePEM []byte) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if bundlePEM != nil {
		bundle, err := ParseCertificates(bundlePEM)
		if err != nil {
			return nil, fmt.Errorf("bundle: %v", err)
		}
		for _, b := range bundle {
			if !bytes.Equal(b.RawSubject, b.RawIssuer) {
				c.Certificate = append(c.Certificate, b.Raw)
			}
		}
	}
	return &c, nil
}

// Certificate returns the first certificate in PEM data (for its dates and
// names); the error is an *InputError with role "certificate".
func Certificate(certPEM []byte) (*x509.Certificate, error) {
	certs, err := parseCertificates("certificate", certPEM)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}
