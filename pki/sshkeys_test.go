package pki

import (
	"strings"
	"testing"
)

func TestAuthorizedKeys(t *testing.T) {
	const k1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop"
	tests := []struct {
		in    string
		want  int
		err   string
		first string
	}{
		{in: k1 + "\n", want: 1, first: k1},
		{in: "# keys\n\n" + `from="10.0.0.1" ` + k1 + "\n" + k1 + "\n", want: 2, first: k1},
		{in: "", err: "no SSH public key"},
		{in: "not a key\n", err: "no SSH public key"},
		{in: strings.Repeat(k1+"\n", MaxAuthorizedKeys+1), err: "more than"},
	}
	for _, tc := range tests {
		got, err := AuthorizedKeys([]byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%.30q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || len(got) != tc.want || got[0] != tc.first {
			t.Errorf("%.30q: %q %v", tc.in, got, err)
		}
	}
}
