package pki

import (
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// MaxAuthorizedKeys bounds how many keys one file may authorize.
const MaxAuthorizedKeys = 100

// AuthorizedKeys parses SSH public keys in authorized_keys format (comments
// and blank lines allowed) into normalized lines "type base64 [comment]",
// options dropped. A file with no key, or more than MaxAuthorizedKeys, is an
// error; parsing stops at the first line that is not a key.
func AuthorizedKeys(data []byte) ([]string, error) {
	var lines []string
	for rest := data; len(strings.TrimSpace(string(rest))) > 0; {
		pub, comment, _, r, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			if len(lines) == 0 {
				return nil, fmt.Errorf("no SSH public key (expected a line such as 'ssh-ed25519 AAAA… comment'): %v", err)
			}
			break
		}
		line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
		if comment != "" {
			line += " " + comment
		}
		if len(lines) == MaxAuthorizedKeys {
			return nil, fmt.Errorf("more than %d keys", MaxAuthorizedKeys)
		}
		lines = append(lines, line)
		rest = r
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("no SSH public key (expected a line such as 'ssh-ed25519 AAAA… comment')")
	}
	return lines, nil
}
