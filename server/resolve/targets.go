package resolve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// ServerTargets returns where the XMPP server of domain listens for other
// servers: the SRV records _xmpps-server._tcp (direct TLS, XEP-0368) and
// _xmpp-server._tcp merged, ordered by priority, then direct TLS first, then
// by RFC 2782 weighted random choice. When the domain has neither record
// (NXDOMAIN or no SRV data) the result is the fallback {domain, 5269}. When
// it publishes the target "." (and nothing usable) the error matches
// ErrNoService. A failure to ask about _xmpp-server._tcp is returned as is;
// one about _xmpps-server._tcp alone is ignored (many servers lack it).
func (r *Resolver) ServerTargets(ctx context.Context, domain string) ([]Target, error) {
	return r.targets(ctx, domain, "_xmpps-server._tcp.", "_xmpp-server._tcp.", 5269)
}

// ClientTargets is ServerTargets for clients: _xmpps-client._tcp and
// _xmpp-client._tcp, fallback port 5222.
func (r *Resolver) ClientTargets(ctx context.Context, domain string) ([]Target, error) {
	return r.targets(ctx, domain, "_xmpps-client._tcp.", "_xmpp-client._tcp.", 5222)
}

type srvAnswer struct {
	rrs []dns.RR
	err error
}

func (r *Resolver) targets(ctx context.Context, domain, tlsService, service string, fallback uint16) ([]Target, error) {
	if a, err := netip.ParseAddr(strings.Trim(domain, "[]")); err == nil {
		// An IP address is its own host: there is nothing to look up.
		return []Target{{Host: a.String(), Port: fallback}}, nil
	}
	fqdn, err := asciiName(domain)
	if err != nil {
		return nil, &LookupError{Name: domain, Type: "SRV", Kind: BadName, Err: err}
	}
	if strings.HasPrefix(fqdn, "_") {
		return nil, &LookupError{Name: domain, Type: "SRV", Kind: BadName, Err: errors.New("a domain cannot start with \"_\"")}
	}
	var answers [2]srvAnswer // 0: direct TLS, 1: STARTTLS
	var wg sync.WaitGroup
	for i, svc := range []string{tlsService, service} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i].rrs, answers[i].err = r.query(ctx, svc+fqdn, dns.TypeSRV)
		}()
	}
	wg.Wait()

	// The STARTTLS service decides: a failure to ask about it is the error.
	if err := answers[1].err; err != nil && !isDefinitive(err) {
		return nil, err
	}
	var out []Target
	noService := false
	for i, a := range answers {
		if a.err != nil {
			continue
		}
		if len(a.rrs) == 1 && a.rrs[0].(*dns.SRV).Target == "." {
			noService = true
			continue
		}
		for _, rr := range a.rrs {
			s := rr.(*dns.SRV)
			if s.Target == "." || s.Port == 0 {
				continue
			}
			t := Target{Host: strings.ToLower(trimDot(s.Target)), Port: s.Port, DirectTLS: i == 0, Priority: s.Priority, Weight: s.Weight}
			if !slices.ContainsFunc(out, func(o Target) bool {
				return o.Host == t.Host && o.Port == t.Port && o.DirectTLS == t.DirectTLS
			}) && len(out) < MaxRecords {
				out = append(out, t)
			}
		}
	}
	if len(out) > 0 {
		return order(out), nil
	}
	if noService {
		return nil, &LookupError{Name: service + trimDot(fqdn), Type: "SRV", Kind: NoService, Err: ErrNoService}
	}
	return []Target{{Host: trimDot(fqdn), Port: fallback}}, nil
}

func isDefinitive(err error) bool {
	var le *LookupError
	return errors.As(err, &le) && le.definitive()
}

// order sorts targets by priority, direct TLS first within a priority, and
// orders each such group by RFC 2782's weighted random selection.
func order(ts []Target) []Target {
	slices.SortStableFunc(ts, func(a, b Target) int {
		if c := cmp.Compare(a.Priority, b.Priority); c != 0 {
			return c
		}
		if a.DirectTLS != b.DirectTLS {
			if a.DirectTLS {
				return -1
			}
			return 1
		}
		return 0
	})
	out := make([]Target, 0, len(ts))
	for start := 0; start < len(ts); {
		end := start + 1
		for end < len(ts) && ts[end].Priority == ts[start].Priority && ts[end].DirectTLS == ts[start].DirectTLS {
			end++
		}
		out = append(out, weighted(ts[start:end])...)
		start = end
	}
	return out
}

// weighted orders one group as RFC 2782 says: zero-weight records first in
// the list to draw from, then repeatedly draw a record with probability
// proportional to its weight.
func weighted(group []Target) []Target {
	rest := slices.Clone(group)
	slices.SortStableFunc(rest, func(a, b Target) int {
		return cmp.Compare(min(a.Weight, 1), min(b.Weight, 1))
	})
	out := make([]Target, 0, len(rest))
	for len(rest) > 0 {
		sum := 0
		for _, t := range rest {
			sum += int(t.Weight)
		}
		pick := 0
		if sum > 0 {
			n := rand.IntN(sum + 1)
			run := 0
			for i, t := range rest {
				run += int(t.Weight)
				if run >= n {
					pick = i
					break
				}
			}
		}
		out = append(out, rest[pick])
		rest = slices.Delete(rest, pick, pick+1)
	}
	return out
}

// LookupHost returns the addresses of host, IPv4 first, then IPv6 (at most
// MaxRecords of each). An IP address returns itself.
func (r *Resolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a.WithZone("")}, nil
	}
	fqdn, err := asciiName(host)
	if err != nil {
		return nil, &LookupError{Name: host, Type: "A or AAAA", Kind: BadName, Err: err}
	}
	var answers [2]srvAnswer
	var wg sync.WaitGroup
	for i, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i].rrs, answers[i].err = r.query(ctx, fqdn, qt)
		}()
	}
	wg.Wait()
	var out []netip.Addr
	for _, a := range answers {
		for _, rr := range a.rrs {
			var ip netip.Addr
			switch rr := rr.(type) {
			case *dns.A:
				ip, _ = netip.AddrFromSlice(rr.A.To4())
			case *dns.AAAA:
				ip, _ = netip.AddrFromSlice(rr.AAAA.To16())
			}
			if ip.IsValid() && !slices.Contains(out, ip) {
				out = append(out, ip)
			}
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	// No address: a failure to ask comes first, then NXDOMAIN, then NODATA.
	var errA, errAAAA *LookupError
	errors.As(answers[0].err, &errA)
	errors.As(answers[1].err, &errAAAA)
	for _, e := range []*LookupError{errA, errAAAA} {
		if e != nil && !e.definitive() {
			return nil, e
		}
	}
	if errA == nil || errAAAA == nil {
		return nil, &LookupError{Name: trimDot(fqdn), Type: "A or AAAA", Kind: NoData}
	}
	e := *errA
	e.Type = "A or AAAA"
	if errAAAA.Kind == NotFound {
		e.Kind = NotFound
		e.Server = errAAAA.Server
	}
	return nil, &e
}

// lookupTypes are the record types Lookup knows.
var lookupTypes = []string{"A", "AAAA", "SRV", "CNAME", "MX", "NS", "TXT", "PTR"}

// Lookup asks for the records of one type (A, AAAA, SRV, CNAME, MX, NS, TXT
// or PTR; for PTR an IP address may be given) and returns one human line per
// record: "10.0.0.1", "0 5 5269 xmpp.b.lan", "10 mail.b.lan".
func (r *Resolver) Lookup(ctx context.Context, qtype, name string) ([]string, error) {
	qt := strings.ToUpper(strings.TrimSpace(qtype))
	if !slices.Contains(lookupTypes, qt) {
		return nil, fmt.Errorf("unknown record type %q: use one of %s", qtype, strings.Join(lookupTypes, ", "))
	}
	var fqdn string
	if a, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
		if qt != "PTR" {
			return nil, &LookupError{Name: name, Type: qt, Kind: BadName, Err: errors.New("an IP address has only PTR records")}
		}
		fqdn, _ = dns.ReverseAddr(a.WithZone("").String())
	} else if fqdn, err = asciiName(name); err != nil {
		return nil, &LookupError{Name: name, Type: qt, Kind: BadName, Err: err}
	}
	rrs, err := r.query(ctx, fqdn, dns.StringToType[qt])
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		var line string
		switch rr := rr.(type) {
		case *dns.A:
			line = rr.A.String()
		case *dns.AAAA:
			line = rr.AAAA.String()
		case *dns.SRV:
			line = fmt.Sprintf("%d %d %d %s", rr.Priority, rr.Weight, rr.Port, hostOf(rr.Target))
		case *dns.CNAME:
			line = hostOf(rr.Target)
		case *dns.MX:
			line = fmt.Sprintf("%d %s", rr.Preference, hostOf(rr.Mx))
		case *dns.NS:
			line = hostOf(rr.Ns)
		case *dns.PTR:
			line = hostOf(rr.Ptr)
		case *dns.TXT:
			line = sanitize(strings.Join(rr.Txt, ""))
		}
		out = append(out, line)
	}
	return out, nil
}

// hostOf is a target name for display: no trailing dot, except "." itself.
func hostOf(s string) string {
	if s == "." {
		return s
	}
	return sanitize(trimDot(s))
}

// sanitize keeps a line from the network printable and bounded.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 512 {
			b.WriteString("…")
			break
		}
		if r < 0x20 || r == 0x7f {
			b.WriteRune('?')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
