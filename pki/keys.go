package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// GenerateKey makes a new private key and its PEM encoding (PKCS#8
// "PRIVATE KEY"). An empty KeyType means DefaultKeyType.
func GenerateKey(t KeyType) (crypto.Signer, []byte, error) {
	if t == "" {
		t = DefaultKeyType
	}
	var key crypto.Signer
	var err error
	switch t {
	case KeyRSA2048:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case KeyRSA4096:
		key, err = rsa.GenerateKey(rand.Reader, 4096)
	case KeyECDSAP256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, nil, fmt.Errorf("key:%s: unknown key type: use key:rsa2048 (the default), key:rsa4096 or key:ecdsa-p256", t)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("generating a %s key: %v", t, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the %s key: %v", t, err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// isPrivateKeyBlock reports PEM types that hold a private key, encrypted or
// not: PKCS#1, SEC 1, PKCS#8, OpenSSH and the legacy DSA form.
func isPrivateKeyBlock(b *pem.Block) bool {
	return strings.HasSuffix(b.Type, "PRIVATE KEY")
}

// isEncryptedBlock reports a PKCS#8 "ENCRYPTED PRIVATE KEY" or a legacy
// OpenSSL PEM block with a "Proc-Type: 4,ENCRYPTED" header.
func isEncryptedBlock(b *pem.Block) bool {
	if b.Type == "ENCRYPTED PRIVATE KEY" {
		return true
	}
	return strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED")
}

var errEncryptedKey = errors.New("the private key is encrypted: Parley needs it unencrypted (openssl pkey -in FILE -out FILE.key, then upload FILE.key)")

// parsePrivateKeyBlock decodes one private key block into a crypto.Signer.
func parsePrivateKeyBlock(b *pem.Block) (crypto.Signer, error) {
	if isEncryptedBlock(b) {
		return nil, errEncryptedKey
	}
	var k any
	var err error
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "OPENSSH PRIVATE KEY":
		k, err = ssh.ParseRawPrivateKey(pem.EncodeToMemory(b))
		var pp *ssh.PassphraseMissingError
		if errors.As(err, &pp) {
			return nil, errors.New("the OpenSSH private key is protected by a passphrase: Parley needs it unencrypted")
		}
	default:
		return nil, fmt.Errorf("unsupported private key format %q: convert it to PKCS#8 (openssl pkey -in FILE -out FILE.key)", b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("the %s block cannot be parsed: %v", b.Type, err)
	}
	if p, ok := k.(*ed25519.PrivateKey); ok { // ssh returns a pointer
		k = *p
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", k)
	}
	return s, nil
}

// ParsePrivateKey returns the first private key in PEM data.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	for _, b := range pemBlocks(data) {
		if isPrivateKeyBlock(b) {
			return parsePrivateKeyBlock(b)
		}
	}
	return nil, fmt.Errorf("not a PEM private key (%s)", describeContent(data))
}

// KeyDescription names a public key's algorithm and size the way Parley
// prints it: "RSA 2048", "ECDSA P-256", "Ed25519".
func KeyDescription(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PublicKey:
		if k.Curve == nil {
			return "ECDSA"
		}
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case nil:
		return "unknown"
	}
	return fmt.Sprintf("unsupported (%T)", pub)
}

// PublicKeySHA256 is the SHA-256 of the DER SubjectPublicKeyInfo, as colon
// hex. It is the same for a private key, its CSR and its certificates, so an
// administrator can match them by eye.
func PublicKeySHA256(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return colonHex(sum[:]), nil
}

func colonHex(b []byte) string {
	const digits = "0123456789ABCDEF"
	out := make([]byte, 0, len(b)*3)
	for i, c := range b {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// publicKeyEqual compares two public keys of any supported type.
func publicKeyEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}
