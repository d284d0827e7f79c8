package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/parley-xmpp/parley/server/resolve/dnstest"
)

func startDNS(t *testing.T, records ...string) *dnstest.Server {
	t.Helper()
	s, err := dnstest.Start("127.0.0.1:0", records...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func resolverFor(servers ...string) *Resolver {
	return &Resolver{Servers: func() []string { return servers }, Timeout: 500 * time.Millisecond}
}

func targetsString(ts []Target) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.String())
	}
	return strings.Join(s, ", ")
}

func TestServerTargets(t *testing.T) {
	s := startDNS(t,
		// b.lan: both services, the direct TLS one first at equal priority.
		"_xmpp-server._tcp.b.lan. 60 IN SRV 10 5 5269 xmpp.b.lan.",
		"_xmpps-server._tcp.b.lan. 60 IN SRV 10 5 5270 xmpp.b.lan.",
		"_xmpp-server._tcp.b.lan. 60 IN SRV 5 5 5269 first.b.lan.",
		"b.lan. 60 IN A 127.0.0.12",
		// c.lan: no SRV at all (the name exists).
		"c.lan. 60 IN A 127.0.0.13",
		// d.lan: service decidedly not offered.
		"_xmpp-server._tcp.d.lan. 60 IN SRV 0 0 0 .",
		// e.lan: "." for STARTTLS but a direct TLS record: that one is used.
		"_xmpp-server._tcp.e.lan. 60 IN SRV 0 0 0 .",
		"_xmpps-server._tcp.e.lan. 60 IN SRV 0 0 5223 tls.e.lan.",
		// IDN: bücher.lan as its A-label.
		"_xmpp-server._tcp.xn--bcher-kva.lan. 60 IN SRV 0 0 5269 XMPP.xn--bcher-kva.lan.",
		// duplicate records are used once.
		"_xmpp-server._tcp.f.lan. 60 IN SRV 0 0 5269 f.lan.",
		"_xmpp-server._tcp.f.lan. 60 IN SRV 0 1 5269 f.lan.",
		// the client service of b.lan.
		"_xmpp-client._tcp.b.lan. 60 IN SRV 0 0 5222 c2s.b.lan.",
	)
	r := resolverFor(s.Addr())
	ctx := context.Background()
	tests := []struct {
		domain string
		client bool
		want   string
		err    string
	}{
		{domain: "b.lan", want: "first.b.lan:5269, xmpp.b.lan:5270 (direct TLS), xmpp.b.lan:5269"},
		{domain: "B.Lan.", want: "first.b.lan:5269, xmpp.b.lan:5270 (direct TLS), xmpp.b.lan:5269"},
		{domain: "c.lan", want: "c.lan:5269"},
		{domain: "nowhere.lan", want: "nowhere.lan:5269"},
		{domain: "d.lan", err: `_xmpp-server._tcp.d.lan: the SRV record "." says no XMPP service is offered there`},
		{domain: "e.lan", want: "tls.e.lan:5223 (direct TLS)"},
		{domain: "bücher.lan", want: "xmpp.xn--bcher-kva.lan:5269"},
		{domain: "f.lan", want: "f.lan:5269"},
		{domain: "127.0.0.9", want: "127.0.0.9:5269"},
		{domain: "[::1]", want: "[::1]:5269"},
		{domain: "b.lan", client: true, want: "c2s.b.lan:5222"},
		{domain: "c.lan", client: true, want: "c.lan:5222"},
		{domain: "a..lan", err: `"a..lan" is not a valid domain name: empty label`},
		{domain: "_x.lan", err: `"_x.lan" is not a valid domain name: a domain cannot start with "_"`},
		{domain: "a b.lan", err: `"a b.lan" is not a valid domain name: label "a b" has a character not allowed in a host name`},
		{domain: strings.Repeat("a", 64) + ".lan", err: "longer than 63 characters"},
	}
	for _, tc := range tests {
		var ts []Target
		var err error
		if tc.client {
			ts, err = r.ClientTargets(ctx, tc.domain)
		} else {
			ts, err = r.ServerTargets(ctx, tc.domain)
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.domain, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.domain, err)
			continue
		}
		if got := targetsString(ts); got != tc.want {
			t.Errorf("%s: %s\nwant %s", tc.domain, got, tc.want)
		}
	}
	_, err := r.ServerTargets(ctx, "d.lan")
	var le *LookupError
	if !errors.Is(err, ErrNoService) || !errors.As(err, &le) || le.Kind != NoService {
		t.Errorf("d.lan: %v is not ErrNoService", err)
	}
}

func TestWeightedOrder(t *testing.T) {
	s := startDNS(t,
		"_xmpp-server._tcp.w.lan. 60 IN SRV 0 90 5269 heavy.w.lan.",
		"_xmpp-server._tcp.w.lan. 60 IN SRV 0 10 5269 light.w.lan.",
		"_xmpp-server._tcp.w.lan. 60 IN SRV 0 0 5269 zero.w.lan.",
		"_xmpp-server._tcp.w.lan. 60 IN SRV 1 100 5269 backup.w.lan.",
	)
	r := resolverFor(s.Addr())
	first := map[string]int{}
	const n = 400
	for range n {
		ts, err := r.ServerTargets(context.Background(), "w.lan")
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != 4 || ts[3].Host != "backup.w.lan" {
			t.Fatalf("order %s: the priority 1 target must come last", targetsString(ts))
		}
		first[ts[0].Host]++
	}
	// heavy is drawn first about 90% of the time, zero almost never.
	if first["heavy.w.lan"] < n*75/100 || first["light.w.lan"] == 0 || first["zero.w.lan"] > n*5/100 {
		t.Errorf("first picks %v: not weighted 90/10/0", first)
	}
}

func TestWeightedAllZero(t *testing.T) {
	ts := weighted([]Target{{Host: "a"}, {Host: "b"}, {Host: "c"}})
	if len(ts) != 3 {
		t.Fatalf("%v", ts)
	}
}

func TestTargetsBounded(t *testing.T) {
	var recs []string
	for i := range 100 {
		recs = append(recs, fmt.Sprintf("_xmpp-server._tcp.many.lan. 60 IN SRV 0 1 5269 h%d.many.lan.", i))
	}
	s := startDNS(t, recs...)
	ts, err := resolverFor(s.Addr()).ServerTargets(context.Background(), "many.lan")
	if err != nil {
		t.Fatal(err) // 100 SRV records: truncated over UDP, read over TCP
	}
	if len(ts) != MaxRecords {
		t.Errorf("%d targets, want at most %d", len(ts), MaxRecords)
	}
}

func TestLookupHost(t *testing.T) {
	s := startDNS(t,
		"b.lan. 60 IN AAAA ::12",
		"b.lan. 60 IN A 127.0.0.12",
		"b.lan. 60 IN A 127.0.0.13",
		"v6.lan. 60 IN AAAA ::1",
		"srvonly.lan. 60 IN SRV 0 0 1 x.lan.",
		"www.lan. 60 IN CNAME b.lan.",
	)
	r := resolverFor(s.Addr())
	tests := []struct{ host, want, err string }{
		{host: "b.lan", want: "[127.0.0.12 127.0.0.13 ::12]"},
		{host: "www.lan", want: "[127.0.0.12 127.0.0.13 ::12]"},
		{host: "v6.lan", want: "[::1]"},
		{host: "127.0.0.5", want: "[127.0.0.5]"},
		{host: "[::1]", want: "[::1]"},
		{host: "none.lan", err: "no A or AAAA record for none.lan (NXDOMAIN from " + s.Addr() + ")"},
		{host: "srvonly.lan", err: "no A or AAAA record for srvonly.lan (the name exists without one, says " + s.Addr() + ")"},
		{host: "", err: `"" is not a valid domain name: empty name`},
	}
	for _, tc := range tests {
		addrs, err := r.LookupHost(context.Background(), tc.host)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%s: error %v\nwant %s", tc.host, err, tc.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(addrs) != tc.want {
			t.Errorf("%s: %v %v, want %s", tc.host, addrs, err, tc.want)
		}
	}
	_, err := r.LookupHost(context.Background(), "none.lan")
	var le *LookupError
	if !errors.As(err, &le) || le.Kind != NotFound || le.Server != s.Addr() {
		t.Errorf("none.lan: %#v", err)
	}
}

func TestLookup(t *testing.T) {
	s := startDNS(t,
		"b.lan. 60 IN A 10.0.0.1",
		"b.lan. 60 IN AAAA 2001:db8::1",
		"b.lan. 60 IN MX 10 mail.b.lan.",
		"b.lan. 60 IN TXT \"v=1\" \"two\"",
		"_xmpp-server._tcp.b.lan. 60 IN SRV 0 5 5269 xmpp.b.lan.",
		"1.0.0.10.in-addr.arpa. 60 IN PTR b.lan.",
	)
	r := resolverFor(s.Addr())
	tests := []struct{ qtype, name, want, err string }{
		{qtype: "A", name: "b.lan", want: "10.0.0.1"},
		{qtype: "aaaa", name: "b.lan", want: "2001:db8::1"},
		{qtype: "SRV", name: "_xmpp-server._tcp.b.lan", want: "0 5 5269 xmpp.b.lan"},
		{qtype: "MX", name: "b.lan", want: "10 mail.b.lan"},
		{qtype: "TXT", name: "b.lan", want: "v=1two"},
		{qtype: "PTR", name: "10.0.0.1", want: "b.lan"},
		{qtype: "SRV", name: "_xmpp-client._tcp.b.lan", err: "no SRV record for _xmpp-client._tcp.b.lan (NXDOMAIN from " + s.Addr() + ")"},
		{qtype: "SRV", name: "b.lan", err: "no SRV record for b.lan (the name exists without one, says " + s.Addr() + ")"},
		{qtype: "HINFO", name: "b.lan", err: `unknown record type "HINFO": use one of A, AAAA, SRV, CNAME, MX, NS, TXT, PTR`},
		{qtype: "A", name: "10.0.0.1", err: `"10.0.0.1" is not a valid domain name: an IP address has only PTR records`},
	}
	for _, tc := range tests {
		lines, err := r.Lookup(context.Background(), tc.qtype, tc.name)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%s %s: error %v\nwant %s", tc.qtype, tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || strings.Join(lines, "|") != tc.want {
			t.Errorf("%s %s: %q %v, want %q", tc.qtype, tc.name, lines, err, tc.want)
		}
	}
}

// silentServer is a UDP socket that never answers (and nothing on TCP).
func silentServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// rcodeServer answers every query with rcode.
func rcodeServer(t *testing.T, rcode int) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, m *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetRcode(m, rcode)
		w.WriteMsg(resp)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

func TestServerFailures(t *testing.T) {
	good := startDNS(t, "b.lan. 60 IN A 127.0.0.12")
	silent := silentServer(t)
	servfail := rcodeServer(t, dns.RcodeServerFailure)
	refused := rcodeServer(t, dns.RcodeRefused)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := pc.LocalAddr().String() // nothing listens there any more
	pc.Close()
	tests := []struct {
		servers []string
		want    string
		kind    ErrKind
	}{
		{servers: []string{silent}, kind: Timeout, want: "DNS server " + silent + " did not answer within 500ms"},
		{servers: []string{servfail}, kind: ServerFailure, want: "DNS server " + servfail + " failed to answer the A query for b.lan (SERVFAIL)"},
		{servers: []string{refused}, kind: Refused, want: "DNS server " + refused + " refused the A query for b.lan (REFUSED): it does not serve us"},
		{servers: []string{closed}, kind: Unreachable, want: "DNS server " + closed + " cannot be reached: connection refused"},
		// each server in turn: the first that answers wins.
		{servers: []string{servfail, silent, good.Addr()}, want: "[127.0.0.12]"},
		{servers: []string{"", "bogus", good.Addr()}, want: "[127.0.0.12]"},
	}
	for _, tc := range tests {
		r := resolverFor(tc.servers...)
		addrs, err := r.LookupHost(context.Background(), "b.lan")
		if tc.kind == 0 {
			if err != nil || fmt.Sprint(addrs) != tc.want {
				t.Errorf("%v: %v %v, want %s", tc.servers, addrs, err, tc.want)
			}
			continue
		}
		var le *LookupError
		if !errors.As(err, &le) || le.Kind != tc.kind || err.Error() != tc.want {
			t.Errorf("%v: %v\nwant %s", tc.servers, err, tc.want)
		}
		// A failure to ask is never a fallback to the domain itself.
		if ts, err := r.ServerTargets(context.Background(), "b.lan"); err == nil {
			t.Errorf("%v: ServerTargets %v with a failing DNS server", tc.servers, ts)
		}
	}
}

func TestContextBoundsEverything(t *testing.T) {
	silent := silentServer(t)
	r := &Resolver{Servers: func() []string { return []string{silent, silent} }, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.ServerTargets(ctx, "b.lan")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v past a 200ms context", took)
	}
	var le *LookupError
	if !errors.As(err, &le) || le.Kind != Timeout {
		t.Errorf("error %v, want a timeout", err)
	}
}

func TestServersInUse(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("# test\nnameserver 127.0.0.53\nnameserver ::1\noptions edns0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := resolvConf
	resolvConf = conf
	defer func() { resolvConf = old }()

	tests := []struct {
		servers      func() []string
		want, source string
	}{
		{nil, "[127.0.0.53:53 [::1]:53]", conf},
		{func() []string { return nil }, "[127.0.0.53:53 [::1]:53]", conf},
		{func() []string { return []string{"10.1.1.1", "10.1.1.2:5353", "::2", "[::3]:54", "junk"} }, "[10.1.1.1:53 10.1.1.2:5353 [::2]:53 [::3]:54]", "configured"},
	}
	for _, tc := range tests {
		got, src := (&Resolver{Servers: tc.servers}).ServersInUse()
		if fmt.Sprint(got) != tc.want || src != tc.source {
			t.Errorf("servers %v from %s, want %s from %s", got, src, tc.want, tc.source)
		}
	}
	var zero *Resolver
	if got, _ := zero.ServersInUse(); len(got) != 2 {
		t.Errorf("nil resolver: %v", got)
	}

	resolvConf = filepath.Join(dir, "missing")
	_, err := (&Resolver{}).LookupHost(context.Background(), "b.lan")
	var le *LookupError
	if !errors.As(err, &le) || le.Kind != NoServer || !strings.HasPrefix(err.Error(), "no DNS server to ask: open ") {
		t.Errorf("no resolv.conf: %v", err)
	}
}

func TestNormalizeServer(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1": "127.0.0.1:53", " 10.0.0.1:5353 ": "10.0.0.1:5353", "fe80::1%eth0": "[fe80::1]:53",
		"[::1]": "[::1]:53", "host.lan": "", "1.2.3.4:99999": "",
	} {
		got, ok := normalizeServer(in)
		if got != want || ok != (want != "") {
			t.Errorf("%q → %q %v, want %q", in, got, ok, want)
		}
	}
}
