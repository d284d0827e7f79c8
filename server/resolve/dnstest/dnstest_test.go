package dnstest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func query(t *testing.T, net, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: net}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s query %s: %v", net, name, err)
	}
	return r
}

func TestAnswers(t *testing.T) {
	s, err := Start("127.0.0.1:0",
		"_xmpp-server._tcp.b.lan. 60 IN SRV 0 5 5269 b.lan.",
		"b.lan. 60 IN A 127.0.0.12",
		"B.lan. 60 IN AAAA ::1",
		"alias.b.lan. 60 IN CNAME b.lan.",
	)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	tests := []struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string
	}{
		{"_xmpp-server._tcp.b.lan", dns.TypeSRV, dns.RcodeSuccess, []string{"0 5 5269 b.lan."}},
		{"b.lan", dns.TypeA, dns.RcodeSuccess, []string{"127.0.0.12"}},
		{"b.LAN", dns.TypeAAAA, dns.RcodeSuccess, []string{"::1"}},
		{"b.lan", dns.TypeSRV, dns.RcodeSuccess, nil},
		{"c.lan", dns.TypeA, dns.RcodeNameError, nil},
		{"alias.b.lan", dns.TypeA, dns.RcodeSuccess, []string{"b.lan.", "127.0.0.12"}},
	}
	for _, netw := range []string{"udp", "tcp"} {
		for _, tc := range tests {
			r := query(t, netw, s.Addr(), tc.name, tc.qtype)
			if r.Rcode != tc.rcode || !r.Authoritative {
				t.Errorf("%s %s %s: rcode %s aa=%v, want %s", netw, tc.name, dns.TypeToString[tc.qtype], dns.RcodeToString[r.Rcode], r.Authoritative, dns.RcodeToString[tc.rcode])
			}
			var got []string
			for _, rr := range r.Answer {
				f := strings.Fields(rr.String())
				got = append(got, strings.Join(f[4:], " "))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.answer) {
				t.Errorf("%s %s: answer %q, want %q", netw, tc.name, got, tc.answer)
			}
		}
	}
}

func TestSetAndTruncation(t *testing.T) {
	s, err := Start("127.0.0.1:0", "a.lan. 60 IN A 127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var many []string
	for i := range 60 {
		many = append(many, fmt.Sprintf("big.lan. 60 IN A 10.0.%d.%d", i/250, i%250+1))
	}
	if err := s.Set(many...); err != nil {
		t.Fatal(err)
	}
	if r := query(t, "udp", s.Addr(), "a.lan", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("after Set, a.lan: %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
	r := query(t, "udp", s.Addr(), "big.lan", dns.TypeA)
	if !r.Truncated {
		t.Errorf("60 A records over UDP: not truncated (%d answers)", len(r.Answer))
	}
	if r := query(t, "tcp", s.Addr(), "big.lan", dns.TypeA); len(r.Answer) != 60 || r.Truncated {
		t.Errorf("over TCP: %d answers, truncated %v; want 60", len(r.Answer), r.Truncated)
	}
	if err := s.Set("not a record"); err == nil {
		t.Error("Set with a bad record: no error")
	}
	if r := query(t, "udp", s.Addr(), "big.lan", dns.TypeA); r.Rcode != dns.RcodeSuccess {
		t.Error("a failed Set changed the data")
	}
}

func TestBadStart(t *testing.T) {
	if _, err := Start("127.0.0.1:0", "b.lan. IN BOGUS 1"); err == nil {
		t.Error("bad record: no error")
	}
	if _, err := Start("nonsense"); err == nil {
		t.Error("bad address: no error")
	}
	s, err := Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(s.Addr()); err == nil {
		t.Error("address in use: no error")
	}
	s.Close()
	s.Close()
}
