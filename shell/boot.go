package shell

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/store"
)

// FirstAdmin is the user created on first boot.
const FirstAdmin = "admin"

// Bootstrap creates the first admin user when the store has none. Its
// password comes from passwordFile or, without one, is generated, returned
// (to be printed once) and marked expired so it must be changed at the first
// interactive login. keyFile, if given, authorizes the SSH public keys in it
// for that user on every boot (keys already there are left alone).
func Bootstrap(s *store.Store, passwordFile, keyFile string) (generated string, err error) {
	admins, err := s.Admins()
	if err != nil {
		return "", err
	}
	if len(admins) == 0 {
		var pw string
		expired := false
		if passwordFile != "" {
			data, err := os.ReadFile(passwordFile)
			if err != nil {
				return "", fmt.Errorf("--admin-password-file: %w", err)
			}
			pw = strings.TrimRight(string(data), "\r\n")
			if len(pw) < store.DefaultMinPasswordLength {
				return "", fmt.Errorf("--admin-password-file: the password must have at least %d characters", store.DefaultMinPasswordLength)
			}
		} else {
			pw, expired = randomPassword(20), true
			generated = pw
		}
		hash, err := store.HashPassword(pw)
		if err != nil {
			return "", err
		}
		if _, err := s.Propose(store.AdminCreate{Admin: store.Admin{
			Name: FirstAdmin, Role: store.RoleAdmin, PasswordHash: hash, Expired: expired,
		}}); err != nil {
			return "", err
		}
	}
	if keyFile != "" {
		if _, err := s.Admin(FirstAdmin); err != nil {
			return generated, fmt.Errorf("--admin-key: there is no user %s to authorize the key for", FirstAdmin)
		}
		data, err := os.ReadFile(keyFile)
		if err != nil {
			return generated, fmt.Errorf("--admin-key: %w", err)
		}
		lines, err := pki.AuthorizedKeys(data)
		if err != nil {
			return generated, fmt.Errorf("--admin-key %s: %v", keyFile, err)
		}
		for _, line := range lines {
			if _, err := s.Propose(store.AdminKeyAdd{Name: FirstAdmin, Line: line}); err != nil && !errors.Is(err, store.ErrExists) {
				return generated, err
			}
		}
	}
	return generated, nil
}

func randomPassword(n int) string {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, n)
	for i := range b {
		k, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b[i] = alphabet[k.Int64()]
	}
	return string(b)
}
