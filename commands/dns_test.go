package commands

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/store"
)

// fakeDNS answers from a table: "SRV _xmpp-server._tcp.b.lan" → lines.
type fakeDNS struct {
	servers []string
	source  string
	records map[string][]string
	err     error
	hang    bool
	asked   []string
}

func (d *fakeDNS) ServersInUse() ([]string, string) { return d.servers, d.source }

func (d *fakeDNS) Lookup(ctx context.Context, qtype, name string) ([]string, error) {
	d.asked = append(d.asked, qtype+" "+name)
	if d.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if d.err != nil {
		return nil, d.err
	}
	return d.records[qtype+" "+name], nil
}

func TestDNSResolvers(t *testing.T) {
	f := newFixture(t)
	golden(t, "dns-no-engine", f.transcript("dns"))
	got := f.transcript(
		"dns resolver add 127.0.0.53",
		"dns resolver add [::1]:5353",
		"dns resolver add ::ffff:192.0.2.53",
		"dns resolver add 2001:db8::53",
		"dns resolver del 127.0.0.53:53",
		"dns",
		"dns resolver del [2001:db8::53]:53",
		"dns resolver del 192.0.2.53",
		"dns resolver del ::1:5353",
		"dns resolver del [::1]:5353",
		"dns",
	)
	golden(t, "dns-resolvers", got)
	f.ok("dns resolver add 127.0.0.53")
	f.ok("dns resolver add [::1]:5353")
	if v, _ := f.env.Store.Config(store.DNSResolvers); v != "127.0.0.53:53 [::1]:5353" {
		t.Errorf("stored %q", v)
	}
	if got := f.env.Store.Resolvers(); strings.Join(got, " ") != "127.0.0.53:53 [::1]:5353" {
		t.Errorf("Resolvers() = %q", got)
	}

	f.env.DNS = &fakeDNS{servers: []string{"127.0.0.53:53", "[::1]:5353"}, source: "configured"}
	golden(t, "dns", f.ok("dns"))
	f.ok("dns resolver del 127.0.0.53")
	f.ok("dns resolver del [::1]:5353")
	f.env.DNS = &fakeDNS{servers: []string{"192.168.1.1:53"}, source: "/etc/resolv.conf"}
	golden(t, "dns-system", f.ok("dns"))
	if _, ok := f.env.Store.Config(store.DNSResolvers); ok {
		t.Error("the last del left the key behind")
	}
}

func TestDNSLookup(t *testing.T) {
	f := newFixture(t)
	d := &fakeDNS{records: map[string][]string{
		"SRV _xmpp-server._tcp.b.lan": {"0 5 5269 b.lan", "10 0 5269 b2.lan"},
		"A b.lan":                     {"127.0.0.12"},
		"AAAA xn--bcher-kva.example":  {"2001:db8::12"},
		"A evil.lan":                  {"127.0.0.1\x1b[2J"},
	}}
	f.env.DNS = d
	golden(t, "dns-lookup", f.transcript(
		"dns lookup SRV _xmpp-server._tcp.b.lan",
		"dns lookup A B.LAN.",
		"dns lookup AAAA bücher.example",
		"dns lookup A evil.lan",
	))
	if strings.Join(d.asked, ",") != "SRV _xmpp-server._tcp.b.lan,A b.lan,AAAA xn--bcher-kva.example,A evil.lan" {
		t.Errorf("asked %q", d.asked)
	}

	many := make([]string, 60)
	for i := range many {
		many[i] = "127.0.0.1"
	}
	d.records["A many.lan"] = many
	if out := f.ok("dns lookup A many.lan"); strings.Count(out, "\n") != 51 || !strings.HasSuffix(out, "… and 10 more\n") {
		t.Errorf("long answer not cut:\n%s", out)
	}

	lookupTimeout = 30 * time.Millisecond
	t.Cleanup(func() { lookupTimeout = 10 * time.Second })
	tests := []struct {
		dns  DNSResolver
		line string
		want string
	}{
		{d, "dns lookup A nothing.lan", "dns lookup: A nothing.lan: no records"},
		{&fakeDNS{err: errors.New("lookup c.lan on 127.0.0.53:53: no such host")}, "dns lookup A c.lan", "dns lookup: A c.lan: lookup c.lan on 127.0.0.53:53: no such host"},
		{&fakeDNS{err: errors.New("server misbehaving\nsecond line")}, "dns lookup A c.lan", "dns lookup: A c.lan: server misbehaving?second line"},
		{&fakeDNS{hang: true}, "dns lookup A c.lan", "dns lookup: A c.lan: no answer within 30ms (check the resolvers with dns)"},
		{nil, "dns lookup A c.lan", "dns lookup: the XMPP service's resolver is not available in this process (no XMPP engine runs here)"},
		{d, "dns lookup MX b.lan", `dns lookup: "MX" is not one of A, AAAA, SRV`},
		{d, "dns lookup srv _xmpp-server._tcp.b.lan", `"srv" is not one of A, AAAA, SRV`},
		{d, "dns lookup SRV b.lan", "dns lookup: SRV records are named _service._protocol.domain: try dns lookup SRV _xmpp-server._tcp.b.lan"},
		{d, "dns lookup A 192.0.2.1", "dns lookup: 192.0.2.1 is an IP address: give a name (reverse lookups are not supported)"},
		{d, "dns lookup A a..b", `dns lookup: "a..b" is not a valid DNS name: empty label`},
		{d, "dns lookup A " + strings.Repeat("a", 64) + ".lan", "a label is longer than 63 characters"},
		{d, "dns lookup A " + strings.Repeat("abcdefghi.", 26) + "lan", "at most 253 are allowed"},
		{d, "dns lookup A b.lan;rm", `character ';' is not allowed`},
		{d, `dns lookup A ""`, "dns lookup: the name is empty"},
		{d, "dns lookup A", "dns lookup: missing <name>"},
	}
	for _, tc := range tests {
		f.env.DNS = tc.dns
		_, err := f.run(tc.line)
		if err == nil || strings.Contains(err.Error(), "\n") || err.Error() != tc.want && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %q", tc.line, err, tc.want)
		}
	}
}

func TestDNSBadInput(t *testing.T) {
	f := newFixture(t)
	f.ok("dns resolver add 127.0.0.53")
	tests := []struct{ line, want string }{
		{"dns frob", `dns: unknown subcommand "frob"; use one of: lookup, resolver`},
		{"dns resolver", "dns resolver: incomplete command; it needs one of: add, del"},
		{"dns resolver add", "dns resolver add: missing <ip[:port]>"},
		{"dns resolver add ns1.example.net", `dns resolver add: "ns1.example.net" is not an IP address: give an IP address with an optional port, e.g. 192.0.2.53, 192.0.2.53:5353 or [2001:db8::53]:53 (host names cannot be used: they would need a resolver)`},
		{"dns resolver add 127.0.0.53", "dns resolver add: 127.0.0.53:53 is already configured (see dns)"},
		{"dns resolver add 127.0.0.53:53", "127.0.0.53:53 is already configured"},
		{"dns resolver add 127.0.0.53:0", `port 0 in "127.0.0.53:0" is not a UDP port`},
		{"dns resolver add 127.0.0.53:65536", `"127.0.0.53:65536" is not an IP address`},
		{"dns resolver add 0.0.0.0", "0.0.0.0 is not the address of a DNS server"},
		{"dns resolver add ::", ":: is not the address of a DNS server"},
		{"dns resolver add 224.0.0.251", "224.0.0.251 is not the address of a DNS server"},
		{"dns resolver add 256.1.1.1", `"256.1.1.1" is not an IP address`},
		{"dns resolver add 127.0.0.53 127.0.0.54", `unexpected argument "127.0.0.54"`},
		{"dns resolver del 192.0.2.1", "dns resolver del: 192.0.2.1:53 is not configured (see dns)"},
		{"dns resolver del 127.0.0.53:5353", "127.0.0.53:5353 is not configured"},
		{"dns resolver del bogus", `"bogus" is not an IP address`},
	}
	for _, tc := range tests {
		f.refuseFed(tc.line, tc.want)
	}
	for i := 2; i <= maxResolvers; i++ {
		f.ok("dns resolver add 127.0.0." + string(rune('0'+i)))
	}
	f.refuseFed("dns resolver add 127.0.1.1", "dns resolver add: 8 resolvers are configured, the most allowed: remove one with dns resolver del <ip[:port]>")
}

func TestDNSHelp(t *testing.T) {
	f := newFixture(t)
	golden(t, "help-dns", f.ok("help dns"))
	golden(t, "help-dns-resolver-add", f.ok("help dns resolver add"))
}
