package commands

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/store"
)

// DNSResolver is the resolver the XMPP engine uses for federation.
type DNSResolver interface {
	// ServersInUse returns the DNS servers in use (ip:port) and where they
	// come from, e.g. "configured" or "/etc/resolv.conf".
	ServersInUse() (servers []string, source string)
	// Lookup returns the records of one type ("A", "AAAA" or "SRV") for a
	// name, one line per record.
	Lookup(ctx context.Context, qtype, name string) ([]string, error)
}

// DNS limits.
const (
	maxResolvers   = 8  // configured DNS servers
	maxLookupLines = 50 // records printed by dns lookup
	defaultDNSPort = 53
)

// lookupTimeout bounds dns lookup.
var lookupTimeout = 10 * time.Second

func dnsCommands() []*Command {
	addr := Arg{Name: "ip[:port]"}
	const roleWhy = "The resolvers are Parley's own and are used only by the XMPP service (finding remote servers for\n" +
		"federation); the system's /etc/resolv.conf is not changed. So, like the other federation settings,\n" +
		"this needs the role admin or appadmin, not admin alone as system settings do."
	return []*Command{
		{
			Words:   []string{"dns"},
			Summary: "Show the DNS servers the XMPP service uses to find remote servers, and where they come from",
			Help: "Either the servers configured with dns resolver add, or, when none is configured, those of the\n" +
				"system's /etc/resolv.conf.",
			Perm: PermRead,
			Run:  runDNS,
		},
		{
			Words:   []string{"dns", "resolver", "add"},
			Args:    []Arg{addr},
			Summary: "Use this DNS server (IPv4 or IPv6 address, port default 53) instead of /etc/resolv.conf",
			Help: fmt.Sprintf("Servers are asked in the order they were added; at most %d. An IPv6 address with a port goes in\n", maxResolvers) +
				"brackets: [2001:db8::53]:53. The engine uses the new list at once.\n" + roleWhy,
			Example: "dns resolver add 192.0.2.53\ndns resolver add [2001:db8::53]:5353",
			Perm:    PermXMPP,
			Run:     runDNSResolverAdd,
		},
		{
			Words:   []string{"dns", "resolver", "del"},
			Args:    []Arg{addr},
			Summary: "Stop using a DNS server; with none left, /etc/resolv.conf applies again",
			Help:    roleWhy,
			Example: "dns resolver del 192.0.2.53",
			Perm:    PermXMPP,
			Run:     runDNSResolverDel,
		},
		{
			Words:   []string{"dns", "lookup"},
			Args:    []Arg{{Name: "type", Kind: ArgEnum, Values: []string{"A", "AAAA", "SRV"}}, {Name: "name"}},
			Summary: "Look a name up with the XMPP service's resolvers: A, AAAA or SRV records, one a line",
			Help: "SRV names start with the service and protocol, e.g. _xmpp-server._tcp.example.com (servers),\n" +
				"_xmpps-server._tcp.example.com (servers, direct TLS), _xmpp-client._tcp.example.com (clients).\n" +
				"The command fails when the lookup fails or finds no records; it gives up after 10 seconds.",
			Example: "dns lookup SRV _xmpp-server._tcp.example.com\ndns lookup A xmpp1.example.com",
			Perm:    PermRead,
			Run:     runDNSLookup,
		},
	}
}

func runDNS(c *Ctx, args []string) error {
	configured := c.Store.Resolvers()
	var rows [][]string
	if c.DNS == nil {
		rows = append(rows, []string{"Resolvers", "not available: no XMPP engine in this process"})
		if len(configured) == 0 {
			rows = append(rows, []string{"Configured", "none: the system's /etc/resolv.conf applies"})
		} else {
			rows = append(rows, []string{"Configured", strings.Join(configured, ", ")})
		}
		printRows(c, rows)
		return nil
	}
	servers, source := c.DNS.ServersInUse()
	list := "none"
	if len(servers) > 0 {
		cleaned := make([]string, len(servers))
		for i, s := range servers {
			cleaned[i] = clean(s)
		}
		list = strings.Join(cleaned, ", ")
	}
	source = clean(source)
	if len(configured) > 0 {
		source += " (dns resolver add|del)"
	} else {
		source += " (none configured: dns resolver add <ip[:port]> to use others)"
	}
	rows = append(rows, []string{"Resolvers", list}, []string{"Source", source})
	printRows(c, rows)
	return nil
}

// parseResolver validates ip[:port] and returns ip:port (port 53 when
// none is given).
func parseResolver(s string) (string, error) {
	const hint = "give an IP address with an optional port, e.g. 192.0.2.53, 192.0.2.53:5353 or [2001:db8::53]:53"
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		a, err2 := netip.ParseAddr(s)
		if err2 != nil {
			return "", fmt.Errorf("%q is not an IP address: %s (host names cannot be used: they would need a resolver)", s, hint)
		}
		ap = netip.AddrPortFrom(a, defaultDNSPort)
	}
	a := ap.Addr().Unmap()
	switch {
	case ap.Port() == 0:
		return "", fmt.Errorf("port 0 in %q is not a UDP port: give 1 to 65535", s)
	case a.IsUnspecified() || a.IsMulticast():
		return "", fmt.Errorf("%s is not the address of a DNS server: %s", s, hint)
	}
	return netip.AddrPortFrom(a, ap.Port()).String(), nil
}

func runDNSResolverAdd(c *Ctx, args []string) error {
	const what = "dns resolver add"
	r, err := parseResolver(args[0])
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	list := c.Store.Resolvers()
	for _, x := range list {
		if x == r {
			return errorf("%s: %s is already configured (see dns)", what, r)
		}
	}
	if len(list) >= maxResolvers {
		return errorf("%s: %d resolvers are configured, the most allowed: remove one with dns resolver del <ip[:port]>", what, len(list))
	}
	list = append(list, r)
	if err := applySetting(c, what, store.ConfigSet{Key: store.DNSResolvers, Value: strings.Join(list, " ")}); err != nil {
		return err
	}
	c.printf("DNS resolvers: %s (used instead of /etc/resolv.conf)\n", strings.Join(list, ", "))
	return nil
}

func runDNSResolverDel(c *Ctx, args []string) error {
	const what = "dns resolver del"
	r, err := parseResolver(args[0])
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	var rest []string
	found := false
	for _, x := range c.Store.Resolvers() {
		if x == r {
			found = true
			continue
		}
		rest = append(rest, x)
	}
	if !found {
		return errorf("%s: %s is not configured (see dns)", what, r)
	}
	var op store.Op = store.ConfigSet{Key: store.DNSResolvers, Value: strings.Join(rest, " ")}
	if len(rest) == 0 {
		op = store.ConfigDel{Key: store.DNSResolvers}
	}
	if err := applySetting(c, what, op); err != nil {
		return err
	}
	if len(rest) == 0 {
		c.printf("No DNS resolvers configured: the system's /etc/resolv.conf applies again\n")
	} else {
		c.printf("DNS resolvers: %s\n", strings.Join(rest, ", "))
	}
	return nil
}

// parseLookupName validates a DNS name to look up: labels of letters,
// digits, hyphens and underscores (for _service._proto), internationalized
// names in their punycode form.
func parseLookupName(qtype, s string) (string, error) {
	name := strings.TrimSuffix(s, ".")
	if name == "" {
		return "", fmt.Errorf("the name is empty")
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return "", fmt.Errorf("%s is an IP address: give a name (reverse lookups are not supported)", s)
	}
	ascii := true
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if !ascii {
		a, err := pki.ASCIIDomain(name)
		if err != nil {
			return "", fmt.Errorf("%q is not a valid DNS name", s)
		}
		name = a
	}
	name = strings.ToLower(name)
	if len(name) > 253 {
		return "", fmt.Errorf("the name is %d characters long, at most 253 are allowed", len(name))
	}
	for _, l := range strings.Split(name, ".") {
		switch {
		case l == "":
			return "", fmt.Errorf("%q is not a valid DNS name: empty label (two dots in a row, or a leading dot)", s)
		case len(l) > 63:
			return "", fmt.Errorf("%q is not a valid DNS name: a label is longer than 63 characters", s)
		}
		for j := 0; j < len(l); j++ {
			b := l[j]
			if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
				return "", fmt.Errorf("%q is not a valid DNS name: character %q is not allowed (letters, digits, hyphens, underscores and dots)", s, b)
			}
		}
	}
	if qtype == "SRV" && !strings.HasPrefix(name, "_") {
		return "", fmt.Errorf("SRV records are named _service._protocol.domain: try dns lookup SRV _xmpp-server._tcp.%s", name)
	}
	return name, nil
}

func runDNSLookup(c *Ctx, args []string) error {
	const what = "dns lookup"
	qtype := args[0]
	name, err := parseLookupName(qtype, args[1])
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	if c.DNS == nil {
		return errorf("%s: the XMPP service's resolver is not available in this process (no XMPP engine runs here)", what)
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	records, err := c.DNS.Lookup(ctx, qtype, name)
	switch {
	case err != nil && ctx.Err() != nil:
		return errorf("%s: %s %s: no answer within %s (check the resolvers with dns)", what, qtype, name, lookupTimeout)
	case err != nil:
		return errorf("%s: %s %s: %s", what, qtype, name, clean(err.Error()))
	case len(records) == 0:
		return errorf("%s: %s %s: no records", what, qtype, name)
	}
	for i, r := range records {
		if i == maxLookupLines {
			c.printf("… and %d more\n", len(records)-maxLookupLines)
			break
		}
		c.printf("%s\n", clean(r))
	}
	return nil
}
