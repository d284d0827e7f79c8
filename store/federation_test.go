package store

import (
	"testing"
	"time"
)

func TestMatchDomainPattern(t *testing.T) {
	for _, c := range []struct {
		p, d string
		want bool
	}{
		{"example.com", "example.com", true},
		{"example.com", "EXAMPLE.com.", true},
		{"example.com", "a.example.com", false},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "a.b.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "badexample.com", false},
		{"*", "anything.lan", true},
		{"*", "", false},
	} {
		if got := MatchDomainPattern(c.p, c.d); got != c.want {
			t.Errorf("MatchDomainPattern(%q, %q) = %v, want %v", c.p, c.d, got, c.want)
		}
	}
}

func TestFederationConfig(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	c, err := s.Federation()
	if err != nil || c.Enabled || c.IdleTimeout != DefaultFedIdleTimeout || len(c.Secure) != 0 {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	for k, v := range map[string]string{
		FedEnabled: "true", FedIdleTimeout: "42", FedAllowList: "true", FedTrust: "ca.pem",
		FedSecure + "*.b.lan": "1", FedSecure + "a.lan": "1",
		FedRoute + "c.lan": "10.0.0.1:5270", FedPolicy + "d.lan": PolicyBlock, FedPolicy + "e.lan": PolicyAllow,
		XMPPPortS2S: "5270",
	} {
		if err := prop(s, ConfigSet{Key: k, Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	c, err = s.Federation()
	if err != nil {
		t.Fatal(err)
	}
	if !c.Enabled || c.IdleTimeout != 42*time.Second || !c.AllowList || c.Trust != "ca.pem" {
		t.Fatalf("got %+v", c)
	}
	if len(c.Secure) != 2 || c.Secure[0] != "*.b.lan" || c.Secure[1] != "a.lan" {
		t.Fatalf("secure %v", c.Secure)
	}
	if c.Routes["c.lan"] != "10.0.0.1:5270" || len(c.Routes) != 1 {
		t.Fatalf("routes %v", c.Routes)
	}
	if !c.SecureRequired("x.b.lan") || c.SecureRequired("b.lan") || !c.SecureRequired("a.lan") {
		t.Fatal("secure matching")
	}
	if c.Permitted("d.lan") || !c.Permitted("e.lan") || c.Permitted("f.lan") {
		t.Fatal("allow-list mode")
	}
	c.AllowList = false
	if c.Permitted("d.lan") || !c.Permitted("f.lan") {
		t.Fatal("block-list mode")
	}
}
