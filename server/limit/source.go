package limit

import "net/netip"

// Source is the key a limit per source address counts under: the IP
// without zone, an IPv4-mapped address as IPv4, an IPv6 address as its /64
// (one host's or one site's usual allocation). addr is an IP or host:port
// (net.Addr's String); anything unparsable is its own key.
func Source(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		if ap, err2 := netip.ParseAddrPort(addr); err2 == nil {
			a = ap.Addr()
		} else {
			return addr
		}
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
