// Package resolve is Parley's DNS client for federation: SRV discovery of
// XMPP servers and clients (RFC 6120 §3.2, XEP-0368 direct TLS), A/AAAA
// lookups of the targets, and one-off lookups for the shell's `dns lookup`.
//
// It asks the configured DNS servers (or those of /etc/resolv.conf) itself,
// over UDP and then TCP when an answer is truncated, so that every failure
// can be told apart and explained: the name does not exist (NXDOMAIN), it
// exists without that record (NODATA), the server failed, refused or did not
// answer in time. Every query is bounded in time and size, and no more than
// MaxRecords records of an answer are used.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"
)

// DefaultTimeout bounds one query to one server when Resolver.Timeout is 0.
const DefaultTimeout = 3 * time.Second

// MaxRecords is the most records of one kind used from an answer (targets of
// a service, addresses of a host, lines of a lookup).
const MaxRecords = 32

// udpSize is the EDNS0 buffer size we advertise and read (the DNS flag day
// 2020 value, safe from fragmentation).
const udpSize = 1232

// resolvConf is the system's resolver configuration (a variable for tests).
var resolvConf = "/etc/resolv.conf"

// Resolver asks DNS servers directly. The zero value uses /etc/resolv.conf
// and DefaultTimeout. It is safe for concurrent use.
type Resolver struct {
	// Servers returns the DNS servers to ask, "ip" or "ip:port" (port 53 by
	// default), tried in turn. nil, or an empty result, means the servers
	// of /etc/resolv.conf.
	Servers func() []string
	// Timeout bounds each query to each server (DefaultTimeout when 0).
	Timeout time.Duration
	// MaxInFlight bounds the queries sent and not yet answered at once
	// (DefaultMaxInFlight when 0); more wait for their turn within their
	// context, and no more than MaxWaiting wait: beyond, a lookup fails at
	// once (Kind Busy).
	MaxInFlight int

	semOnce sync.Once
	sem     chan struct{}
	waiting atomic.Int32
}

// Bounds of the lookups in flight.
const (
	DefaultMaxInFlight = 64
	MaxWaiting         = 1024
)

// acquire takes a turn to send a query, or returns why not (a
// *LookupError); release gives it back.
func (r *Resolver) acquire(ctx context.Context, server, fqdn, tname string) *LookupError {
	if r == nil {
		return nil
	}
	r.semOnce.Do(func() {
		n := r.MaxInFlight
		if n <= 0 {
			n = DefaultMaxInFlight
		}
		r.sem = make(chan struct{}, n)
	})
	select {
	case r.sem <- struct{}{}:
		return nil
	default:
	}
	if r.waiting.Add(1) > MaxWaiting {
		r.waiting.Add(-1)
		return &LookupError{Name: trimDot(fqdn), Type: tname, Kind: Busy, Server: server}
	}
	defer r.waiting.Add(-1)
	select {
	case r.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return &LookupError{Name: trimDot(fqdn), Type: tname, Kind: Timeout, Server: server, Err: ctx.Err()}
	}
}

func (r *Resolver) release() {
	if r != nil {
		<-r.sem
	}
}

// Target is one place a service is offered at.
type Target struct {
	Host      string // A-label form, no trailing dot
	Port      uint16
	DirectTLS bool // an _xmpps-* record (XEP-0368): TLS from the first byte
	Priority  uint16
	Weight    uint16
}

// String is "host:port", with " (direct TLS)" for XEP-0368 targets.
func (t Target) String() string {
	s := net.JoinHostPort(t.Host, fmt.Sprint(t.Port))
	if t.DirectTLS {
		s += " (direct TLS)"
	}
	return s
}

// ErrKind says what went wrong with a lookup.
type ErrKind int

// The kinds of lookup failure.
const (
	NotFound      ErrKind = iota + 1 // NXDOMAIN: the name does not exist
	NoData                           // the name exists, without a record of that type
	ServerFailure                    // SERVFAIL
	Refused                          // REFUSED
	Timeout                          // no answer in time
	Unreachable                      // the server could not be reached (network error)
	BadResponse                      // a malformed or unexpected answer, or another RCODE
	BadName                          // the name asked is not a valid domain name
	NoServer                         // no DNS server is configured
	NoService                        // the SRV record "." : the service is decidedly not offered
	Busy                             // too many lookups in flight here: not asked
)

var kindNames = map[ErrKind]string{
	NotFound: "not found", NoData: "no data", ServerFailure: "server failure",
	Refused: "refused", Timeout: "timeout", Unreachable: "unreachable",
	BadResponse: "bad response", BadName: "bad name", NoServer: "no server",
	NoService: "no service", Busy: "busy",
}

func (k ErrKind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("ErrKind(%d)", int(k))
}

// ErrNoService is matched (errors.Is) by the error of ServerTargets or
// ClientTargets when the domain publishes the SRV record "." : it does not
// offer the service at all (RFC 2782, RFC 6120 §3.2.1).
var ErrNoService = errors.New("the domain says it offers no XMPP service here")

// LookupError is every error of this package.
type LookupError struct {
	Name    string // the name asked (A-label form)
	Type    string // "A", "AAAA", "A or AAAA", "SRV", …
	Kind    ErrKind
	Server  string        // the DNS server that answered, or was asked last
	Timeout time.Duration // for Kind Timeout
	Err     error         // the underlying error, if any
}

// Error is one line saying what happened and where.
func (e *LookupError) Error() string {
	switch e.Kind {
	case NotFound:
		return fmt.Sprintf("no %s record for %s (NXDOMAIN from %s)", e.Type, e.Name, e.Server)
	case NoData:
		return fmt.Sprintf("no %s record for %s (the name exists without one, says %s)", e.Type, e.Name, e.Server)
	case ServerFailure:
		return fmt.Sprintf("DNS server %s failed to answer the %s query for %s (SERVFAIL)", e.Server, e.Type, e.Name)
	case Refused:
		return fmt.Sprintf("DNS server %s refused the %s query for %s (REFUSED): it does not serve us", e.Server, e.Type, e.Name)
	case Timeout:
		if e.Timeout > 0 {
			return fmt.Sprintf("DNS server %s did not answer within %s", e.Server, e.Timeout)
		}
		return fmt.Sprintf("DNS server %s did not answer in time (%s query for %s)", e.Server, e.Type, e.Name)
	case Unreachable:
		return fmt.Sprintf("DNS server %s cannot be reached: %v", e.Server, e.Err)
	case BadResponse:
		return fmt.Sprintf("DNS server %s gave a bad answer to the %s query for %s: %v", e.Server, e.Type, e.Name, e.Err)
	case BadName:
		return fmt.Sprintf("%q is not a valid domain name: %v", e.Name, e.Err)
	case NoServer:
		return fmt.Sprintf("no DNS server to ask: %v", e.Err)
	case NoService:
		return fmt.Sprintf("%s: the SRV record \".\" says no XMPP service is offered there", e.Name)
	case Busy:
		return fmt.Sprintf("%s query for %s not sent: too many DNS lookups are waiting here (%d)", e.Type, e.Name, MaxWaiting)
	}
	return fmt.Sprintf("%s lookup of %s failed: %v", e.Type, e.Name, e.Err)
}

// Unwrap gives the underlying error (ErrNoService for Kind NoService).
func (e *LookupError) Unwrap() error { return e.Err }

// definitive reports whether the error is an answer about the name itself
// (it does not exist, or has no such record), rather than a failure to ask.
func (e *LookupError) definitive() bool { return e.Kind == NotFound || e.Kind == NoData }

func (r *Resolver) timeout() time.Duration {
	if r == nil || r.Timeout <= 0 {
		return DefaultTimeout
	}
	return r.Timeout
}

// ServersInUse returns the DNS servers queries go to, as "ip:port", and
// where they come from: "configured" or "/etc/resolv.conf".
func (r *Resolver) ServersInUse() (servers []string, source string) {
	servers, source, _ = r.servers()
	return servers, source
}

func (r *Resolver) servers() ([]string, string, error) {
	if r != nil && r.Servers != nil {
		var out []string
		for _, s := range r.Servers() {
			if hp, ok := normalizeServer(s); ok {
				out = append(out, hp)
			}
			if len(out) == MaxRecords {
				break
			}
		}
		if len(out) > 0 {
			return out, "configured", nil
		}
	}
	cfg, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return nil, resolvConf, err
	}
	var out []string
	for _, s := range cfg.Servers {
		if hp, ok := normalizeServer(net.JoinHostPort(s, cfg.Port)); ok {
			out = append(out, hp)
		}
		if len(out) == MaxRecords {
			break
		}
	}
	if len(out) == 0 {
		return nil, resolvConf, fmt.Errorf("%s names no nameserver", resolvConf)
	}
	return out, resolvConf, nil
}

// normalizeServer turns "ip", "ip:port", "[v6]:port" or a bare v6 address
// into "ip:port".
func normalizeServer(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", false
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String(), true
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a.WithZone(""), 53).String(), true
	}
	return "", false
}

// asciiName turns a name into the A-label, lower-case, dot-terminated form
// DNS is asked with. Labels starting with "_" (service labels) stay as they
// are.
func asciiName(name string) (string, error) {
	name = strings.TrimSuffix(strings.TrimSpace(name), ".")
	if name == "" {
		return "", errors.New("empty name")
	}
	if len(name) > 253 {
		return "", errors.New("longer than 253 characters")
	}
	labels := strings.Split(name, ".")
	for i, l := range labels {
		if l == "" {
			return "", errors.New("empty label")
		}
		ascii := true
		for j := 0; j < len(l); j++ {
			if c := l[j]; c >= 0x80 {
				ascii = false
			} else if c <= ' ' || c == 0x7f || c == '\\' || c == '"' || c == '(' || c == ')' || c == ';' || c == '@' || c == '$' {
				return "", fmt.Errorf("label %q has a character not allowed in a host name", l)
			}
		}
		if !ascii {
			a, err := idna.Lookup.ToASCII(l)
			if err != nil {
				return "", err
			}
			l = a
		}
		if len(l) > 63 {
			return "", fmt.Errorf("label %q is longer than 63 characters", l)
		}
		labels[i] = strings.ToLower(l)
	}
	out := strings.Join(labels, ".") + "."
	if len(out) > 254 {
		return "", errors.New("longer than 253 characters")
	}
	if _, ok := dns.IsDomainName(out); !ok {
		return "", errors.New("not a domain name")
	}
	return out, nil
}

// query asks each server in turn until one gives a definitive answer: the
// records of type qtype for name (following CNAMEs in the answer), or a
// *LookupError.
func (r *Resolver) query(ctx context.Context, fqdn string, qtype uint16) ([]dns.RR, error) {
	tname := dns.TypeToString[qtype]
	servers, source, err := r.servers()
	if err != nil {
		return nil, &LookupError{Name: trimDot(fqdn), Type: tname, Kind: NoServer, Server: source, Err: err}
	}
	var last *LookupError
	for _, srv := range servers {
		if err := ctx.Err(); err != nil {
			if last != nil {
				return nil, last
			}
			return nil, &LookupError{Name: trimDot(fqdn), Type: tname, Kind: Timeout, Server: srv, Err: err}
		}
		rrs, lerr := r.ask(ctx, srv, fqdn, qtype)
		if lerr == nil {
			return rrs, nil
		}
		if lerr.definitive() {
			return nil, lerr
		}
		last = lerr
	}
	return nil, last
}

// ask sends one question to one server: UDP, then TCP if truncated.
func (r *Resolver) ask(ctx context.Context, server, fqdn string, qtype uint16) ([]dns.RR, *LookupError) {
	tname := dns.TypeToString[qtype]
	lerr := func(kind ErrKind, err error) *LookupError {
		return &LookupError{Name: trimDot(fqdn), Type: tname, Kind: kind, Server: server, Err: err}
	}
	m := new(dns.Msg)
	m.SetQuestion(fqdn, qtype)
	m.RecursionDesired = true
	m.SetEdns0(udpSize, false)

	timeout := r.timeout()
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if e := r.acquire(qctx, server, fqdn, tname); e != nil {
		if e.Kind == Timeout && ctx.Err() == nil {
			e.Timeout = timeout
		}
		return nil, e
	}
	defer r.release()

	var resp *dns.Msg
	for _, netw := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: netw, Timeout: timeout, UDPSize: udpSize}
		var err error
		resp, _, err = c.ExchangeContext(qctx, m, server)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				e := lerr(Timeout, err)
				if ctx.Err() == nil {
					e.Timeout = timeout
				}
				return nil, e
			}
			var oe *net.OpError
			if errors.As(err, &oe) {
				cause := oe.Err
				var se *os.SyscallError
				if errors.As(cause, &se) {
					cause = se.Err
				}
				return nil, lerr(Unreachable, cause)
			}
			return nil, lerr(BadResponse, err)
		}
		if !resp.Truncated {
			break
		}
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, fqdn) || resp.Question[0].Qtype != qtype {
		return nil, lerr(BadResponse, errors.New("the answer is for another question"))
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, lerr(NotFound, nil)
	case dns.RcodeServerFailure:
		return nil, lerr(ServerFailure, nil)
	case dns.RcodeRefused:
		return nil, lerr(Refused, nil)
	default:
		return nil, lerr(BadResponse, fmt.Errorf("response code %s", dns.RcodeToString[resp.Rcode]))
	}

	// Follow the CNAME chain the answer carries, then take the records of
	// the type asked owned by the last name of the chain.
	owner := strings.ToLower(fqdn)
	for hops := 0; hops < 8; hops++ {
		next := ""
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && qtype != dns.TypeCNAME && strings.EqualFold(c.Hdr.Name, owner) {
				next = strings.ToLower(c.Target)
				break
			}
		}
		if next == "" {
			break
		}
		owner = next
	}
	var out []dns.RR
	for _, rr := range resp.Answer {
		if rr.Header().Rrtype == qtype && strings.EqualFold(rr.Header().Name, owner) {
			out = append(out, rr)
			if len(out) == MaxRecords {
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, lerr(NoData, nil)
	}
	return out, nil
}

func trimDot(s string) string { return strings.TrimSuffix(s, ".") }
