package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Peer server certificates (federation): is the certificate a remote XMPP
// server presents trusted, in date, and does it name the domain it claims?
// RFC 6120 §13.7.2, RFC 6125, RFC 7590 and XEP-0178.

// CertProblem tells what is wrong with a peer's certificate, so that the
// s2s code can tell an untrusted chain (dialback may still authenticate the
// peer) from a certificate that does not name the peer.
type CertProblem int

// The problems VerifyXMPPServer reports.
const (
	NoCertificate   CertProblem = iota + 1 // the peer presented none
	UntrustedChain                         // signed by an unknown authority, or self-signed and not trusted
	CertExpired                            // the leaf or a CA of its chain is past notAfter
	CertNotYetValid                        // the leaf or a CA of its chain is before notBefore
	InvalidChain                           // any other chain fault (not a CA, constraints, bad signature)
	NameMismatch                           // the chain is fine, but the certificate does not name the domain
)

var certProblemNames = map[CertProblem]string{
	NoCertificate: "no certificate", UntrustedChain: "untrusted", CertExpired: "expired",
	CertNotYetValid: "not yet valid", InvalidChain: "invalid chain", NameMismatch: "name mismatch",
}

func (p CertProblem) String() string {
	if s, ok := certProblemNames[p]; ok {
		return s
	}
	return fmt.Sprintf("CertProblem(%d)", int(p))
}

// ChainProblem reports whether the problem is with trust or dates (the
// chain), as opposed to the name.
func (p CertProblem) ChainProblem() bool { return p != NameMismatch }

// PeerCertError is the error of VerifyXMPPServer: one line saying what is
// wrong and what to change.
type PeerCertError struct {
	Problem CertProblem
	Domain  string            // the domain the peer claims
	Cert    *x509.Certificate // the certificate at fault (the leaf, or a CA of its chain); nil for NoCertificate
	Reason  string            // the line shown
	Err     error             // the crypto/x509 error, if any
}

func (e *PeerCertError) Error() string { return e.Reason }

// Unwrap gives the crypto/x509 error, if any.
func (e *PeerCertError) Unwrap() error { return e.Err }

// maxNamesShown bounds the names listed in a message.
const maxNamesShown = 10

// maxChain bounds the certificates of a presented chain that are used.
const maxChain = 10

// VerifyXMPPServer checks chain (leaf first, as presented) against roots
// (nil: the system's; the rest of chain serves as intermediates) at time now,
// then that the leaf names domain: an SRV-ID "_xmpp-server.<domain>"
// (otherName id-on-dnsSRV), an XmppAddr equal to the domain (otherName
// id-on-xmppAddr), a DNS-ID equal to it, or a DNS-ID wildcard that is the
// whole left-most label ("*.b.lan" covers "x.b.lan", not "b.lan" nor
// "y.x.b.lan"); the subject CN only when the certificate has no
// subjectAltName at all. Names compare case-insensitively, IDNs as A-labels.
// The error is a *PeerCertError.
func VerifyXMPPServer(chain []*x509.Certificate, domain string, roots *x509.CertPool, now time.Time) error {
	if len(chain) == 0 || chain[0] == nil {
		return &PeerCertError{Problem: NoCertificate, Domain: domain,
			Reason: fmt.Sprintf("%s presented no certificate", printable(domain))}
	}
	leaf := chain[0]
	if err := checkPeerDates(domain, leaf, "certificate", now); err != nil {
		return err
	}
	inters := x509.NewCertPool()
	for i, c := range chain[1:] {
		if i == maxChain || c == nil {
			break
		}
		inters.AddCert(c)
	}
	_, verr := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inters,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if verr != nil {
		return explainPeerChain(domain, chain, verr, now)
	}
	return CheckXMPPServerName(leaf, domain)
}

// CheckXMPPServerName is the name half of VerifyXMPPServer alone: nil when
// the certificate names domain, else a *PeerCertError with NameMismatch.
func CheckXMPPServerName(cert *x509.Certificate, domain string) error {
	if cert == nil {
		return &PeerCertError{Problem: NoCertificate, Domain: domain,
			Reason: fmt.Sprintf("%s presented no certificate", printable(domain))}
	}
	ascii, err := ASCIIDomain(domain)
	if err == nil && (ascii == "" || strings.HasPrefix(ascii, ".") || strings.Contains(ascii, "..")) {
		err = fmt.Errorf("%q is not a valid domain name: empty label", printable(domain))
	}
	if err != nil {
		return &PeerCertError{Problem: NameMismatch, Domain: domain, Cert: cert, Reason: err.Error()}
	}
	if namesXMPPServer(cert, ascii) {
		return nil
	}
	names := XMPPNames(cert)
	var list string
	switch {
	case len(names) == 0:
		list = "nothing (no subjectAltName, no CN)"
	case len(names) > maxNamesShown:
		list = strings.Join(names[:maxNamesShown], ", ") + fmt.Sprintf(" and %d more", len(names)-maxNamesShown)
	default:
		list = strings.Join(names, ", ")
	}
	fix := "the " + printable(domain) + " admin needs a certificate whose subjectAltName includes DNS:" + ascii
	if !hasSAN(cert) {
		fix = "it has no subjectAltName (a CN is only used without one): " + fix
	}
	return &PeerCertError{Problem: NameMismatch, Domain: domain, Cert: cert,
		Reason: fmt.Sprintf("the certificate names %s, not %s: %s", list, printable(domain), fix)}
}

// namesXMPPServer reports whether cert names the A-label domain ascii.
func namesXMPPServer(cert *x509.Certificate, ascii string) bool {
	if !hasSAN(cert) {
		return cert.Subject.CommonName != "" && matchDNS(cert.Subject.CommonName, ascii)
	}
	dns, addrs, srvs := ServerNames(cert)
	for _, s := range srvs {
		if name, ok := cutPrefixFold(s, "_xmpp-server."); ok && sameDomain(name, ascii) {
			return true
		}
	}
	for _, a := range addrs {
		if !strings.ContainsAny(a, "@/") && sameDomain(a, ascii) {
			return true
		}
	}
	for _, d := range dns {
		if matchDNS(d, ascii) {
			return true
		}
	}
	return false
}

// sameDomain compares a name from a certificate with an A-label domain.
func sameDomain(name, ascii string) bool {
	if strings.EqualFold(strings.TrimSuffix(name, "."), ascii) {
		return true
	}
	a, err := ASCIIDomain(name)
	return err == nil && a == ascii
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return "", false
}

func hasSAN(cert *x509.Certificate) bool {
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(oidSAN) {
			return true
		}
	}
	return false
}

// XMPPNames lists what a certificate names, for messages: "DNS:b.lan",
// "XmppAddr:b.lan", "SRV:_xmpp-server.b.lan", and "CN:b.lan" only when the
// certificate has no subjectAltName (the only case the CN counts).
func XMPPNames(cert *x509.Certificate) []string {
	if cert == nil {
		return nil
	}
	if !hasSAN(cert) {
		if cn := cert.Subject.CommonName; cn != "" {
			return []string{"CN:" + printable(cn)}
		}
		return nil
	}
	dns, addrs, srvs := ServerNames(cert)
	out := make([]string, 0, len(dns)+len(addrs)+len(srvs))
	for _, d := range dns {
		out = append(out, "DNS:"+printable(d))
	}
	for _, a := range addrs {
		out = append(out, "XmppAddr:"+printable(a))
	}
	for _, s := range srvs {
		out = append(out, "SRV:"+printable(s))
	}
	return out
}

// checkPeerDates reports a certificate of domain's chain outside its
// validity period.
func checkPeerDates(domain string, c *x509.Certificate, what string, now time.Time) *PeerCertError {
	d := printable(domain)
	switch {
	case now.After(c.NotAfter):
		return &PeerCertError{Problem: CertExpired, Domain: domain, Cert: c,
			Reason: fmt.Sprintf("the %s of %s (%s) expired on %s: the %s admin must renew it", what, d, SubjectString(c), c.NotAfter.UTC().Format(time.DateOnly), d)}
	case now.Before(c.NotBefore):
		return &PeerCertError{Problem: CertNotYetValid, Domain: domain, Cert: c,
			Reason: fmt.Sprintf("the %s of %s (%s) is not valid before %s: check our clock (date) and theirs", what, d, SubjectString(c), c.NotBefore.UTC().Format(time.RFC3339))}
	}
	return nil
}

// explainPeerChain turns a failed verification into a *PeerCertError.
func explainPeerChain(domain string, chain []*x509.Certificate, verr error, now time.Time) error {
	d := printable(domain)
	leaf := chain[0]
	var ie x509.CertificateInvalidError
	if errors.As(verr, &ie) && ie.Reason == x509.Expired && ie.Cert != nil {
		if e := checkPeerDates(domain, ie.Cert, "CA certificate", now); e != nil {
			e.Err = verr
			return e
		}
	}
	var ua x509.UnknownAuthorityError
	if errors.As(verr, &ua) {
		// A presented issuer that is not a CA makes the chain stop short.
		for i, child := range chain[:min(len(chain), maxChain)] {
			for _, parent := range chain[1:min(len(chain), maxChain)] {
				if parent != child && child != nil && parent != nil && !parent.IsCA && signedBy(child, parent) {
					return &PeerCertError{Problem: InvalidChain, Domain: domain, Cert: parent, Err: verr,
						Reason: fmt.Sprintf("the certificate chain of %s does not verify: %s (certificate %d) is signed by %s, which is not a CA certificate: the %s admin must get a certificate from a real CA",
							d, SubjectString(child), i+1, SubjectString(parent), d)}
				}
			}
		}
		// Name the authority the presented chain ends at.
		top := leaf
		for range maxChain {
			var next *x509.Certificate
			for _, c := range chain[1:min(len(chain), maxChain)] {
				if c != nil && c != top && !selfSigned(top) && signedBy(top, c) {
					next = c
					break
				}
			}
			if next == nil {
				break
			}
			top = next
		}
		reason := fmt.Sprintf("the certificate of %s (%s) is signed by an unknown authority (%s): add its CA with xmpp federation trust <bundle>",
			d, SubjectString(leaf), issuerString(top))
		if selfSigned(leaf) {
			reason = fmt.Sprintf("the certificate of %s (%s) is self-signed and not trusted: add it, or the CA that should sign it, with xmpp federation trust <bundle>",
				d, SubjectString(leaf))
		}
		return &PeerCertError{Problem: UntrustedChain, Domain: domain, Cert: leaf, Reason: reason, Err: verr}
	}
	if errors.As(verr, &ie) {
		return &PeerCertError{Problem: InvalidChain, Domain: domain, Cert: ie.Cert, Err: verr,
			Reason: fmt.Sprintf("the certificate chain of %s does not verify: %s: %s", d, SubjectString(ie.Cert), certInvalidReason(ie))}
	}
	return &PeerCertError{Problem: InvalidChain, Domain: domain, Cert: leaf, Err: verr,
		Reason: fmt.Sprintf("the certificate chain of %s does not verify: %v", d, verr)}
}

// TrustPool is what peer servers' certificates are verified against: the
// system's roots plus the CA certificates (basicConstraints CA:TRUE) of
// bundle in the files area, as xmpp federation trust accepts them; a peer's
// self-signed certificate with CA:TRUE is trusted that way too. bundle ""
// gives the system roots alone.
func TrustPool(a *Area, bundle string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	} else {
		pool = pool.Clone()
	}
	if bundle == "" {
		return pool, nil
	}
	if a == nil {
		return nil, errors.New("no files area to read the trust bundle from")
	}
	data, err := a.ReadFile(bundle)
	if err != nil {
		return nil, err
	}
	cas, certs, err := BundleCAs(data)
	if err != nil {
		return nil, NameInputs(err, map[string]string{"bundle": bundle})
	}
	if len(cas) == 0 {
		return nil, fmt.Errorf("%s: has no CA certificate (only %s): give the bundle of the CA that signs the peer's certificate", bundle, SubjectString(certs[0]))
	}
	for _, c := range cas {
		pool.AddCert(c)
	}
	return pool, nil
}

// BundleCAs reads a trust bundle: its CA certificates (basicConstraints
// CA:TRUE), which are what is trusted, and all of its certificates. It
// fails when the data holds no certificate or one does not parse.
func BundleCAs(data []byte) (cas, all []*x509.Certificate, err error) {
	all, err = parseCertificates("bundle", data)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range all {
		if c.BasicConstraintsValid && c.IsCA {
			cas = append(cas, c)
		}
	}
	return cas, all, nil
}
