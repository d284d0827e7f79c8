package main

import (
	"strings"
	"testing"
)

// TestPprofLoopbackOnly: the profiles are served on a loopback address and
// refused anywhere else, with the reason.
func TestPprofLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:6060", "192.0.2.1:6060", "localhost:6060", "6060"} {
		if err := servePprof(addr); err == nil {
			t.Errorf("%s: served", addr)
		} else if addr != "6060" && !strings.Contains(err.Error(), "loopback") {
			t.Errorf("%s: %v", addr, err)
		}
	}
	if err := servePprof("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
}
