package address

import "testing"

func TestDomain(t *testing.T) {
	for in, want := range map[string]string{
		"alice@a.lan/phone": "a.lan", "alice@a.lan": "a.lan", "a.lan": "a.lan", "a.lan/res": "a.lan",
		"room@cb1.a.lan/nick/with/slashes": "cb1.a.lan", "a.lan/res@odd": "a.lan", "alice@a.lan/r@b.lan": "a.lan", "": "",
	} {
		if got := Domain(in); got != want {
			t.Errorf("Domain(%q) = %q, want %q", in, got, want)
		}
	}
}
