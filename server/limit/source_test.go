package limit

import "testing"

// Source: the address, IPv4-mapped as IPv4, IPv6 by its /64, with or
// without a port; anything else is its own key.
func TestSource(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":                   "192.0.2.1",
		"::ffff:192.0.2.1":            "192.0.2.1",
		"2001:db8:1:2:3:4:5:6":        "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1":        "2001:db8:1:2::/64",
		"fe80::1%eth0":                "fe80::/64",
		"192.0.2.1:5222":              "192.0.2.1",
		"pipe":                        "pipe",
		"[2001:db8:1:2:3:4:5:6]:5222": "2001:db8:1:2::/64",
	} {
		if got := Source(in); got != want {
			t.Errorf("Source(%q) = %q, want %q", in, got, want)
		}
	}
}
