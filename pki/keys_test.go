package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"
)

func TestGenerateKey(t *testing.T) {
	tests := []struct {
		kt   KeyType
		desc string
	}{
		{"", "RSA 2048"},
		{KeyRSA2048, "RSA 2048"},
		{KeyRSA4096, "RSA 4096"},
		{KeyECDSAP256, "ECDSA P-256"},
	}
	for _, tt := range tests {
		t.Run(string(tt.kt), func(t *testing.T) {
			if tt.kt == KeyRSA4096 && testing.Short() {
				t.Skip("RSA 4096 generation is slow")
			}
			key, pemBytes, err := GenerateKey(tt.kt)
			if err != nil {
				t.Fatal(err)
			}
			if got := KeyDescription(key.Public()); got != tt.desc {
				t.Errorf("key is %s, want %s", got, tt.desc)
			}
			b, rest := pem.Decode(pemBytes)
			if b == nil || b.Type != "PRIVATE KEY" || len(rest) != 0 {
				t.Fatalf("PEM is not one PRIVATE KEY block: %q", pemBytes)
			}
			parsed, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			switch k := parsed.(type) {
			case *rsa.PrivateKey:
				if !k.PublicKey.Equal(key.Public()) {
					t.Error("PEM holds a different RSA key")
				}
			case *ecdsa.PrivateKey:
				if k.Curve != elliptic.P256() || !k.PublicKey.Equal(key.Public()) {
					t.Error("PEM holds a different ECDSA key")
				}
			default:
				t.Errorf("PEM holds a %T", parsed)
			}
			again, err := ParsePrivateKey(pemBytes)
			if err != nil || !publicKeyEqual(again.Public(), key.Public()) {
				t.Errorf("ParsePrivateKey: %v", err)
			}
			if Classify(pemBytes) != KindKey {
				t.Errorf("Classify = %s, want key", Classify(pemBytes))
			}
		})
	}
	if _, _, err := GenerateKey("dsa"); err == nil {
		t.Error("GenerateKey(dsa) did not fail")
	}
}

func TestParsePrivateKeyFormats(t *testing.T) {
	rsaKey, _, err := GenerateKey(KeyRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _, err := GenerateKey(KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ecKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey.(*rsa.PrivateKey))})
	sec1 := append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})...)
	for name, tc := range map[string]struct {
		data []byte
		desc string
	}{
		"PKCS#1": {pkcs1, "RSA 2048"},
		"SEC 1":  {sec1, "ECDSA P-256"},
	} {
		k, err := ParsePrivateKey(tc.data)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := KeyDescription(k.Public()); got != tc.desc {
			t.Errorf("%s: %s, want %s", name, got, tc.desc)
		}
		if Classify(tc.data) != KindKey {
			t.Errorf("%s: Classify = %s", name, Classify(tc.data))
		}
	}
	enc := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00112233445566778899AABBCCDDEEFF"}, Bytes: []byte("junk")})
	if _, err := ParsePrivateKey(enc); err == nil || err != errEncryptedKey {
		t.Errorf("encrypted key: %v, want %v", err, errEncryptedKey)
	}
}
