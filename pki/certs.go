package pki

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// subject builds the X.509 name of a Request; empty attributes are left out.
func (r Request) subject() pkix.Name {
	n := pkix.Name{CommonName: r.CN}
	one := func(v string) []string {
		if v == "" {
			return nil
		}
		return []string{v}
	}
	n.Organization = one(r.O)
	n.OrganizationalUnit = one(r.OU)
	n.Locality = one(r.L)
	n.Province = one(r.ST)
	n.Country = one(r.C)
	return n
}

// CreateCSR returns a PEM "CERTIFICATE REQUEST" signed by key, with the
// subject from req and SANs from req.DNSNames and req.IPs. With no SANs, a CN
// that is a valid DNS name becomes the one DNS SAN.
func CreateCSR(key crypto.Signer, req Request) ([]byte, error) {
	req, err := req.normalize()
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     req.subject(),
		DNSNames:    req.DNSNames,
		IPAddresses: req.IPs,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("creating the CSR: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// SelfSigned returns a PEM "CERTIFICATE" signed by key itself: a random
// 128-bit serial, valid from now-5min to now+req.Days, key usage
// digitalSignature (plus keyEncipherment for RSA), extended key usage
// serverAuth and clientAuth (XMPP servers are both), SANs as for CreateCSR,
// and not a CA.
func SelfSigned(key crypto.Signer, req Request, now time.Time) ([]byte, error) {
	req, err := req.normalize()
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, err
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := key.Public().(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	now = now.UTC()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               req.subject(),
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(time.Duration(req.Days) * 24 * time.Hour),
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          ski,
		DNSNames:              req.DNSNames,
		IPAddresses:           req.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating the certificate: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// randomSerial returns a positive, non-zero random serial of up to 128 bits.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %v", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// subjectKeyID is the SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2,
// method 1), as OpenSSL computes it.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("subject key identifier: %v", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("subject key identifier: %v", err)
	}
	sum := sha1.Sum(spki.PublicKey.Bytes)
	return sum[:], nil
}

// InputError says which input of Match or Verify is unusable. Role is "key",
// "certificate" or "bundle"; a caller that knows the file name sets Name (with
// errors.As) so the message reads "server.crt: not a certificate ...".
type InputError struct {
	Role   string
	Name   string
	Reason string
}

func (e *InputError) Error() string {
	n := e.Name
	if n == "" {
		n = e.Role
	}
	return n + ": " + e.Reason
}

// NameInputs sets the file names of the inputs of Match or Verify in err, if
// it is an InputError, and returns err. names maps a role ("key",
// "certificate", "bundle") to a file name.
func NameInputs(err error, names map[string]string) error {
	var ie *InputError
	if errors.As(err, &ie) && names[ie.Role] != "" {
		ie.Name = names[ie.Role]
	}
	return err
}

// ParseCertificates returns every certificate in PEM data, in order: one
// certificate, a chain or a bundle (text around the PEM blocks and blocks
// of other kinds are skipped). It fails when there is none, or when one
// does not parse, saying which. It is the one place PEM certificates are
// decoded: checks, inspection, trust bundles and the chain a domain is
// served with all read them here.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var blocks []*pem.Block
	for _, b := range pemBlocks(data) {
		if isCertificateBlock(b) {
			blocks = append(blocks, b)
		}
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("not a certificate (%s)", describeContent(data))
	}
	return parseCertificateBlocks(blocks)
}

// parseCertificateBlocks parses certificate blocks; the error says which
// one does not parse.
func parseCertificateBlocks(blocks []*pem.Block) ([]*x509.Certificate, error) {
	out := make([]*x509.Certificate, 0, len(blocks))
	for i, b := range blocks {
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			where := "the certificate"
			if len(blocks) > 1 {
				where = fmt.Sprintf("certificate %d of %d", i+1, len(blocks))
			}
			return nil, fmt.Errorf("%s is not a valid X.509 certificate: %v", where, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// parseCertificates is ParseCertificates with the error an *InputError
// of role.
func parseCertificates(role string, data []byte) ([]*x509.Certificate, error) {
	certs, err := ParseCertificates(data)
	if err != nil {
		return nil, &InputError{Role: role, Reason: err.Error()}
	}
	return certs, nil
}

// Match reports nil if the private key (PEM) belongs to the certificate (PEM,
// the first one if a bundle), otherwise an error saying how they differ.
// Unusable inputs give an *InputError naming the input.
func Match(keyPEM, certPEM []byte) error {
	key, err := ParsePrivateKey(keyPEM)
	if err != nil {
		return &InputError{Role: "key", Reason: err.Error()}
	}
	certs, err := parseCertificates("certificate", certPEM)
	if err != nil {
		return err
	}
	cert := certs[0]
	if publicKeyEqual(key.Public(), cert.PublicKey) {
		return nil
	}
	certFP, _ := PublicKeySHA256(cert.PublicKey)
	keyFP, _ := PublicKeySHA256(key.Public())
	return fmt.Errorf("the key does not match the certificate: the certificate's public key is %s (SHA-256 %s…), the key's is %s (SHA-256 %s…); use the key the CSR was made with",
		KeyDescription(cert.PublicKey), shortFP(certFP), KeyDescription(key.Public()), shortFP(keyFP))
}

// shortFP keeps the first 8 bytes of a colon-hex fingerprint.
func shortFP(fp string) string {
	if len(fp) > 23 {
		return fp[:23]
	}
	return fp
}

// signedBy reports whether parent's key made child's signature, ignoring
// validity dates and constraints: enough to find the shape of a chain.
func signedBy(child, parent *x509.Certificate) bool {
	if !bytes.Equal(child.RawIssuer, parent.RawSubject) {
		return false
	}
	return parent.CheckSignature(child.SignatureAlgorithm, child.RawTBSCertificate, child.Signature) == nil
}

func selfSigned(c *x509.Certificate) bool { return signedBy(c, c) }

// Verify checks certPEM (the first certificate; any others in it are
// intermediates) against bundlePEM (intermediates first, the root last). With
// a nil bundle it uses the system roots. On success it returns the chain as
// subject strings, leaf first. Errors say what is expired or not yet valid,
// which certificate has no issuer, and when the bundle is in the wrong order.
func Verify(certPEM, bundlePEM []byte, now time.Time) ([]string, error) {
	certs, err := parseCertificates("certificate", certPEM)
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	var bundle []*x509.Certificate
	if bundlePEM != nil {
		if bundle, err = parseCertificates("bundle", bundlePEM); err != nil {
			return nil, err
		}
	}
	// Intermediates shipped with the leaf that the bundle also has are the
	// bundle's: count them once.
	var extras []*x509.Certificate
	for _, c := range certs[1:] {
		if !containsCert(bundle, c) && !containsCert(extras, c) {
			extras = append(extras, c)
		}
	}

	roots := x509.NewCertPool()
	inters := x509.NewCertPool()
	for _, c := range extras {
		inters.AddCert(c)
	}
	haveRoot := false
	for _, c := range bundle {
		if selfSigned(c) {
			roots.AddCert(c)
			haveRoot = true
		} else {
			inters.AddCert(c)
		}
	}
	if bundlePEM == nil && selfSigned(leaf) {
		return nil, fmt.Errorf("%s is self-signed: give a CA bundle to verify against (pki verify <crt> <bundle>)", SubjectString(leaf))
	}
	if !haveRoot {
		sys, err := x509.SystemCertPool()
		if err != nil || sys == nil {
			if bundlePEM == nil {
				return nil, errors.New("no system CA certificates are available: give a CA bundle to verify against (pki verify <crt> <bundle>)")
			}
			sys = x509.NewCertPool()
		}
		roots = sys
	}

	if err := checkDates("certificate", leaf, now); err != nil {
		return nil, err
	}
	chains, verr := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inters,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if verr != nil {
		return nil, explainVerify(leaf, extras, bundle, bundlePEM != nil, haveRoot, now, verr)
	}
	if bundlePEM != nil {
		last := leaf
		if len(extras) > 0 {
			last = extras[len(extras)-1]
		}
		if err := checkOrder(chains[0], last, bundle); err != nil {
			return nil, err
		}
	}
	chain := chains[0]
	out := make([]string, len(chain))
	for i, c := range chain {
		out[i] = SubjectString(c)
	}
	return out, nil
}

func containsCert(list []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range list {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

// checkDates reports a certificate outside its validity period at now.
func checkDates(what string, c *x509.Certificate, now time.Time) error {
	if now.After(c.NotAfter) {
		return fmt.Errorf("%s %s expired on %s: renew it", what, SubjectString(c), c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("%s %s is not valid before %s: check the clock, or wait until then", what, SubjectString(c), c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// explainVerify turns a failed x509 verification into one actionable line by
// following the chain by signatures alone.
func explainVerify(leaf *x509.Certificate, extras, bundle []*x509.Certificate, haveBundle, haveRoot bool, now time.Time, verr error) error {
	pool := append(append([]*x509.Certificate{}, extras...), bundle...)
	path := []*x509.Certificate{leaf}
	for cur := leaf; !selfSigned(cur); {
		var next *x509.Certificate
		for _, c := range pool {
			if !containsCert(path, c) && signedBy(cur, c) {
				next = c
				break
			}
		}
		if next == nil {
			break
		}
		path = append(path, next)
		cur = next
	}
	for _, c := range path[1:] {
		what := "intermediate"
		if selfSigned(c) {
			what = "root"
		}
		if err := checkDates(what, c, now); err != nil {
			return err
		}
	}
	top := path[len(path)-1]
	if !selfSigned(top) {
		issuer := issuerString(top)
		switch {
		case !haveBundle:
			return fmt.Errorf("%s is signed by %s, which is not a trusted root of the system: give a CA bundle to verify against (pki verify <crt> <bundle>)", SubjectString(top), issuer)
		case top == leaf:
			return fmt.Errorf("%s is not signed by any certificate in the bundle (its issuer is %s): give the bundle of the CA that issued it", SubjectString(leaf), issuer)
		case !haveRoot:
			return fmt.Errorf("the chain stops at %s: its issuer %s is neither in the bundle nor a trusted root of the system; add it to the bundle (the root last)", SubjectString(top), issuer)
		default:
			return fmt.Errorf("the chain stops at %s: its issuer %s is not in the bundle; add it (intermediates first, the root last)", SubjectString(top), issuer)
		}
	}
	if !containsCert(bundle, top) {
		if !haveBundle {
			return fmt.Errorf("the chain ends at the root %s, which is not a trusted root of the system: give a CA bundle to verify against (pki verify <crt> <bundle>)", SubjectString(top))
		}
		return fmt.Errorf("the chain ends at the root %s, which is not in the bundle: add it as the bundle's last certificate", SubjectString(top))
	}
	var ie x509.CertificateInvalidError
	if errors.As(verr, &ie) {
		return fmt.Errorf("%s: %s", SubjectString(ie.Cert), certInvalidReason(ie))
	}
	return fmt.Errorf("the chain does not verify: %v", verr)
}

func certInvalidReason(e x509.CertificateInvalidError) string {
	switch e.Reason {
	case x509.NotAuthorizedToSign:
		return "is used as a CA but is not a CA certificate (basicConstraints CA:TRUE and keyCertSign are needed)"
	case x509.TooManyIntermediates:
		return "the chain is longer than its CA's path length constraint allows"
	case x509.CANotAuthorizedForThisName:
		return "a CA in the chain is not authorized (name constraints) for this name"
	case x509.CANotAuthorizedForExtKeyUsage:
		return "a CA in the chain is not authorized for the certificate's extended key usage"
	}
	return e.Error()
}

// checkOrder checks that the bundle is the verified chain and nothing else:
// first the issuer of last (the leaf or the last intermediate shipped with
// it), each certificate followed by its issuer, the root last.
func checkOrder(chain []*x509.Certificate, last *x509.Certificate, bundle []*x509.Certificate) error {
	n := len(bundle)
	for i, c := range bundle {
		if !containsCert(chain, c) {
			return fmt.Errorf("bundle: certificate %d (%s) is not part of the chain of %s: remove it (the bundle is the intermediates first, then the root)", i+1, SubjectString(c), SubjectString(chain[0]))
		}
	}
	for i, c := range bundle {
		if selfSigned(c) && i != n-1 {
			return fmt.Errorf("bundle order is wrong: certificate %d (%s) is the root; put intermediates first and the root last", i+1, SubjectString(c))
		}
	}
	issuerAt := func(child *x509.Certificate) int {
		for j, c := range bundle {
			if c != child && signedBy(child, c) {
				return j
			}
		}
		return -1
	}
	if n > 0 && !signedBy(last, bundle[0]) {
		if j := issuerAt(last); j > 0 {
			return fmt.Errorf("bundle order is wrong: certificate %d (%s) issued %s and must come first; each certificate must be followed by its issuer, the root last", j+1, SubjectString(bundle[j]), SubjectString(last))
		}
	}
	for i := 0; i+1 < n; i++ {
		if signedBy(bundle[i], bundle[i+1]) {
			continue
		}
		if j := issuerAt(bundle[i]); j >= 0 {
			return fmt.Errorf("bundle order is wrong: certificate %d (%s) must be followed by its issuer, certificate %d (%s); put intermediates first and the root last", i+1, SubjectString(bundle[i]), j+1, SubjectString(bundle[j]))
		}
		return fmt.Errorf("bundle: certificate %d (%s) is not followed by its issuer %s, which is not in the bundle; add it, or remove certificates that are not part of this chain", i+1, SubjectString(bundle[i]), issuerString(bundle[i]))
	}
	return nil
}
