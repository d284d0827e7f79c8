// Package fedcheck is `xmpp federation check <domain>`: the steps a support
// engineer takes by hand when two XMPP servers do not federate, done in one
// command and reported one step a line. DNS (servers in use, client and
// server SRV records, addresses of each target), TCP reach of each
// address, then on the first reachable target a jabber:server stream:
// features, STARTTLS, the TLS handshake, the certificate (names, issuer,
// chain, expiry, name match), SASL EXTERNAL and dialback after TLS, and
// finally the real link set-up. Every failing step says what to change.
// Steps are status.Step values: a typed verdict, and on a step that found
// a way to authenticate, that way (status.Step.Auth).
package fedcheck

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server/resolve"
	"github.com/parley-xmpp/parley/server/status"
)

// Config is what the check needs from the engine.
type Config struct {
	Resolver *resolve.Resolver // nil: /etc/resolv.conf
	// Roots returns what peer certificates are verified against (the system
	// roots plus the trust bundle); nil means the system roots.
	Roots func() (*x509.CertPool, error)
	// Route returns the configured relay for a domain: it replaces DNS.
	Route func(domain string) (hostport string, ok bool)
	// ClientCert returns our certificate for a local domain, or nil.
	ClientCert func(local string) *tls.Certificate
	// Authenticate sets up the real s2s link from local to remote and says
	// how it authenticated; nil skips that step.
	Authenticate func(ctx context.Context, local, remote string) (status.Auth, error)
	// Secure: the domain is on the secure list, so a certificate problem is
	// a failure (else a warning: dialback will be used).
	Secure bool
	// DialTimeout bounds each network wait: a TCP connect, each answer of
	// the stream, the TLS handshake (default 5 s).
	DialTimeout time.Duration
}

// Bounds.
const (
	DefaultDialTimeout = 5 * time.Second
	maxTargets         = 8        // SRV targets looked at
	maxEndpoints       = 16       // address:port pairs connected to
	maxStreamBytes     = 64 << 10 // read from the peer per stream
	maxText            = 300      // characters of peer-supplied text shown
	expiryWarnDays     = 30
	defaultS2SPort     = 5269
)

// now is the clock certificates are judged by (a variable for tests).
var now = time.Now

// XML namespaces.
const (
	nsStreams   = "http://etherx.jabber.org/streams"
	nsServer    = "jabber:server"
	nsDialback  = "jabber:server:dialback"
	nsTLS       = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL      = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsDBFeature = "urn:xmpp:features:dialback"
	nsStreamErr = "urn:ietf:params:xml:ns:xmpp-streams"
)

type checker struct {
	cfg      Config
	res      *resolve.Resolver
	local    string
	remote   string // as given, for messages
	ascii    string // A-label form, for DNS, SNI and certificates
	report   func(status.Step)
	failed   bool
	timeout  time.Duration
	fromSRV  bool // the targets come from SRV records
	viaRoute string
}

// step reports one step. Fix, for warn and fail, says what to change.
func (c *checker) step(verdict status.Verdict, name, detail, fix string) {
	if verdict == status.Fail {
		c.failed = true
	}
	if verdict == status.OK || verdict == status.Info {
		fix = ""
	}
	c.report(status.Step{Verdict: verdict, Name: name, Detail: detail, Fix: fix})
}

// authOK reports a step that found a way to authenticate to the remote
// server.
func (c *checker) authOK(name, detail string, auth status.Auth) {
	c.report(status.Step{Verdict: status.OK, Name: name, Detail: detail, Auth: auth})
}

// Run checks federation from local to remote, calling report for each step
// as it completes. It returns false when a step failed. ctx bounds it all.
func Run(ctx context.Context, cfg Config, local, remote string, report func(status.Step)) (ok bool) {
	if report == nil {
		report = func(status.Step) {}
	}
	c := &checker{cfg: cfg, res: cfg.Resolver, local: local, remote: clean(remote), report: report, timeout: cfg.DialTimeout}
	if c.res == nil {
		c.res = &resolve.Resolver{}
	}
	if c.timeout <= 0 {
		c.timeout = DefaultDialTimeout
	}
	c.run(ctx)
	return !c.failed
}

// endpoint is one address of one target.
type endpoint struct {
	target resolve.Target
	addr   netip.AddrPort
	conn   net.Conn
}

func (ep endpoint) String() string {
	s := ep.addr.String()
	if ep.target.Host != ep.addr.Addr().String() {
		s += " (" + ep.target.Host + ")"
	}
	return s
}

func (c *checker) run(ctx context.Context) {
	ascii, err := pki.ASCIIDomain(c.remote)
	if err == nil && (ascii == "" || strings.Contains(ascii, "..")) {
		err = fmt.Errorf("%q is not a valid domain name", c.remote)
	}
	if err != nil {
		c.step(status.Fail, "domain", err.Error(), "give the remote server's domain, e.g. xmpp federation check example.com")
		return
	}
	c.ascii = ascii

	servers, source := c.res.ServersInUse()
	if len(servers) == 0 {
		c.step(status.Warn, "DNS servers", "none ("+source+" names none)", "add one: dns resolver add <ip[:port]>")
	} else {
		c.step(status.Info, "DNS servers", strings.Join(servers, ", ")+" (from "+source+")", "")
	}

	targets := c.discover(ctx)
	if len(targets) == 0 {
		return
	}
	endpoints := c.addresses(ctx, targets)
	if len(endpoints) == 0 {
		return
	}
	ep, ok := c.connect(ctx, endpoints)
	if ok {
		c.stream(ctx, ep)
	}
	if ok && c.cfg.Authenticate != nil {
		c.authenticate(ctx)
	}
}

// --- DNS --------------------------------------------------------------

// discover finds the targets: the route, or SRV, or the fallback.
func (c *checker) discover(ctx context.Context) []resolve.Target {
	if c.cfg.Route != nil {
		hp, ok := c.cfg.Route(c.remote)
		if !ok && c.ascii != c.remote {
			hp, ok = c.cfg.Route(c.ascii)
		}
		if ok {
			t, err := parseRoute(hp)
			if err != nil {
				c.step(status.Fail, "route", fmt.Sprintf("the route of %s, %q, is unusable: %v", c.remote, clean(hp), err),
					"correct it: xmpp federation route add "+c.remote+" <host[:port]>")
				return nil
			}
			c.viaRoute = hp
			c.step(status.Info, "route", fmt.Sprintf("%s is reached via %s (xmpp federation route): DNS SRV is not used", c.remote, t), "")
			return []resolve.Target{t}
		}
	}
	if _, err := netip.ParseAddr(strings.Trim(c.ascii, "[]")); err == nil {
		t := resolve.Target{Host: strings.Trim(c.ascii, "[]"), Port: defaultS2SPort}
		c.step(status.Info, "SRV", c.remote+" is an IP address: no DNS lookup, port "+strconv.Itoa(defaultS2SPort), "")
		return []resolve.Target{t}
	}

	c.clientSRV(ctx)

	name := "SRV _xmpp-server._tcp." + c.ascii
	plain, errPlain := c.res.Lookup(ctx, "SRV", "_xmpp-server._tcp."+c.ascii)
	direct, errDirect := c.res.Lookup(ctx, "SRV", "_xmpps-server._tcp."+c.ascii)
	targets, err := c.res.ServerTargets(ctx, c.ascii)
	if err != nil {
		if errors.Is(err, resolve.ErrNoService) {
			c.step(status.Fail, name, fmt.Sprintf("the record \".\" says %s does not federate (no XMPP server-to-server service)", c.remote),
				fmt.Sprintf("ask the %s admin to publish a real _xmpp-server._tcp.%s record, or relay: xmpp federation route add %s <host[:port]>", c.remote, c.ascii, c.remote))
			return nil
		}
		c.step(status.Fail, name, err.Error(), dnsFix(err, c.remote))
		return nil
	}
	if len(plain) == 0 && len(direct) == 0 && definitive(errPlain) && definitive(errDirect) {
		c.step(status.Info, name, fmt.Sprintf("no _xmpp-server._tcp or _xmpps-server._tcp record: falling back to %s:%d", c.ascii, defaultS2SPort), "")
		return targets
	}
	c.fromSRV = true
	var parts []string
	for i, t := range targets {
		if i == maxTargets {
			parts = append(parts, fmt.Sprintf("and %d more", len(targets)-maxTargets))
			break
		}
		s := fmt.Sprintf("%s:%d", t.Host, t.Port)
		if t.DirectTLS {
			s += " direct TLS"
		}
		parts = append(parts, fmt.Sprintf("%s (priority %d, weight %d)", s, t.Priority, t.Weight))
	}
	if len(targets) > maxTargets {
		targets = targets[:maxTargets]
	}
	verdict := status.OK
	fix := ""
	if errPlain != nil && !definitive(errPlain) || errDirect != nil && !definitive(errDirect) {
		verdict = status.Warn
		e := errPlain
		if e == nil || definitive(e) {
			e = errDirect
		}
		parts = append(parts, "but "+e.Error())
		fix = dnsFix(e, c.remote)
	}
	c.step(verdict, name, strings.Join(parts, ", "), fix)
	return targets
}

// clientSRV reports the client SRV records: only a warning when missing.
func (c *checker) clientSRV(ctx context.Context) {
	name := "SRV _xmpp-client._tcp." + c.ascii
	plain, errPlain := c.res.Lookup(ctx, "SRV", "_xmpp-client._tcp."+c.ascii)
	direct, _ := c.res.Lookup(ctx, "SRV", "_xmpps-client._tcp."+c.ascii) // optional: its failure alone says nothing
	parts := append([]string(nil), limit(plain, maxTargets)...)
	for _, l := range limit(direct, maxTargets) {
		parts = append(parts, l+" (direct TLS)")
	}
	if len(parts) > 0 {
		c.step(status.Info, name, strings.Join(parts, ", "), "")
		return
	}
	if errPlain != nil && !definitive(errPlain) {
		c.step(status.Warn, name, errPlain.Error(), dnsFix(errPlain, c.remote))
		return
	}
	c.step(status.Warn, name, "no _xmpp-client._tcp or _xmpps-client._tcp record: clients of "+c.remote+" cannot find their server (federation does not need it)",
		fmt.Sprintf("for %s's clients: publish _xmpp-client._tcp.%s. SRV 0 5 5222 <its XMPP server's host>.", c.remote, c.ascii))
}

func limit(lines []string, n int) []string {
	if len(lines) > n {
		return lines[:n]
	}
	return lines
}

func definitive(err error) bool {
	var le *resolve.LookupError
	return errors.As(err, &le) && (le.Kind == resolve.NotFound || le.Kind == resolve.NoData)
}

// dnsFix is what to do about a failed lookup.
func dnsFix(err error, remote string) string {
	var le *resolve.LookupError
	if errors.As(err, &le) {
		switch le.Kind {
		case resolve.Timeout, resolve.Unreachable, resolve.Refused, resolve.NoServer:
			return "check the DNS servers Parley asks (dns), or use others: dns resolver add <ip[:port]>"
		case resolve.ServerFailure:
			return "the DNS of " + remote + " is broken (SERVFAIL): tell its admin, or relay: xmpp federation route add " + remote + " <host[:port]>"
		}
	}
	return "check the DNS records of " + remote + ", or relay: xmpp federation route add " + remote + " <host[:port]>"
}

// parseRoute reads a route's "host[:port]".
func parseRoute(hp string) (resolve.Target, error) {
	hp = strings.TrimSpace(hp)
	if ap, err := netip.ParseAddrPort(hp); err == nil {
		return resolve.Target{Host: ap.Addr().String(), Port: ap.Port()}, nil
	}
	if a, err := netip.ParseAddr(strings.Trim(hp, "[]")); err == nil {
		return resolve.Target{Host: a.String(), Port: defaultS2SPort}, nil
	}
	host, port := hp, uint64(defaultS2SPort)
	if h, p, err := net.SplitHostPort(hp); err == nil {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return resolve.Target{}, fmt.Errorf("port %q is not a number from 1 to 65535", p)
		}
		host, port = h, n
	}
	if host == "" {
		return resolve.Target{}, errors.New("no host")
	}
	return resolve.Target{Host: host, Port: uint16(port)}, nil
}

// addresses looks up each target's addresses.
func (c *checker) addresses(ctx context.Context, targets []resolve.Target) []endpoint {
	var eps []endpoint
	verdict := status.Fail
	if len(targets) > 1 {
		verdict = status.Warn // another target may do
	}
	for _, t := range targets {
		addrs, err := c.res.LookupHost(ctx, t.Host)
		name := "A/AAAA " + t.Host
		if err != nil {
			var fix string
			switch {
			case c.viaRoute != "":
				fix = "correct the route: xmpp federation route add " + c.remote + " <host[:port]>"
			case c.fromSRV:
				fix = fmt.Sprintf("add an A (or AAAA) record for %s, or correct the SRV record _xmpp-server._tcp.%s", t.Host, c.ascii)
			default:
				fix = fmt.Sprintf("publish _xmpp-server._tcp.%s SRV records naming its XMPP server, or an A record for %s; or relay: xmpp federation route add %s <host[:port]>", c.ascii, t.Host, c.remote)
			}
			if !definitive(err) {
				fix = dnsFix(err, c.remote)
			}
			c.step(verdict, name, err.Error(), fix)
			continue
		}
		_, literal := netip.ParseAddr(t.Host)
		var list []string
		for _, a := range addrs {
			list = append(list, a.String())
			if len(eps) < maxEndpoints {
				eps = append(eps, endpoint{target: t, addr: netip.AddrPortFrom(a, t.Port)})
			}
		}
		if literal != nil {
			c.step(status.OK, name, strings.Join(list, ", "), "")
		}
	}
	if len(eps) == 0 && !c.failed {
		c.step(status.Fail, "addresses", "no target of "+c.remote+" has an address", "fix the DNS records above")
	}
	return eps
}

// --- TCP --------------------------------------------------------------

// connect dials every endpoint at once, reports each in order, and returns
// the first reachable one (its connection open).
func (c *checker) connect(ctx context.Context, eps []endpoint) (endpoint, bool) {
	type result struct {
		conn net.Conn
		err  error
	}
	results := make([]chan result, len(eps))
	for i, ep := range eps {
		results[i] = make(chan result, 1)
		go func() {
			d := net.Dialer{Timeout: c.timeout}
			conn, err := d.DialContext(ctx, "tcp", ep.addr.String())
			results[i] <- result{conn, err}
		}()
	}
	verdict := status.Fail
	if len(eps) > 1 {
		verdict = status.Warn
	}
	first := -1
	for i, ep := range eps {
		r := <-results[i]
		name := "TCP " + ep.String()
		if r.err != nil {
			detail, fix := c.dialProblem(ep, r.err)
			c.step(verdict, name, detail, fix)
			continue
		}
		if first < 0 {
			first = i
			eps[i].conn = r.conn
		} else {
			r.conn.Close()
		}
		c.step(status.OK, name, "connected", "")
	}
	if first < 0 {
		if len(eps) > 1 {
			c.step(status.Fail, "reach", fmt.Sprintf("none of the %d addresses of %s's servers accepts a connection", len(eps), c.remote),
				"see the TCP steps above: open the ports on the firewalls, or start the servers")
		}
		return endpoint{}, false
	}
	return eps[first], true
}

func (c *checker) dialProblem(ep endpoint, err error) (detail, fix string) {
	port := strconv.Itoa(int(ep.addr.Port()))
	where := ep.target.Host
	if where != ep.addr.Addr().String() {
		where += " (" + ep.addr.Addr().String() + ")"
	}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused: nothing listens on port " + port,
			fmt.Sprintf("start %s's XMPP server on %s, make it listen on %s, or open TCP %s on the firewall of %s", c.remote, where, port, port, where)
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer within %s (a firewall drops the packets?)", c.timeout),
			fmt.Sprintf("open TCP %s on the firewall of %s", port, where)
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return "no route to " + ep.addr.Addr().String(), "check the network route to " + where + " (ip route), or the firewall"
	}
	return clean(err.Error()), fmt.Sprintf("open TCP %s on the firewall of %s", port, where)
}

// --- XMPP -------------------------------------------------------------

// features are the stream features the check looks at.
type features struct {
	StartTLS *struct {
		Required *struct{} `xml:"required"`
	} `xml:"urn:ietf:params:xml:ns:xmpp-tls starttls"`
	Mechanisms *struct {
		Mechanism []string `xml:"mechanism"`
	} `xml:"urn:ietf:params:xml:ns:xmpp-sasl mechanisms"`
	Dialback *struct{} `xml:"urn:xmpp:features:dialback dialback"`
}

func (f *features) mechanisms() []string {
	if f == nil || f.Mechanisms == nil {
		return nil
	}
	var out []string
	for _, m := range f.Mechanisms.Mechanism {
		out = append(out, strings.TrimSpace(m))
	}
	return out
}

// xmppConn is one side of the check's stream.
type xmppConn struct {
	c       *checker
	conn    net.Conn
	dec     *xml.Decoder
	header  xml.StartElement
	dbInHdr bool // xmlns:db declared in the header
}

func (x *xmppConn) deadline(ctx context.Context) {
	d := time.Now().Add(x.c.timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	x.conn.SetDeadline(d)
}

// open sends our stream header and reads the peer's header and what follows
// it (features, or a stream error).
func (x *xmppConn) open(ctx context.Context) (*features, error) {
	x.dec = xml.NewDecoder(bufio.NewReader(io.LimitReader(x.conn, maxStreamBytes)))
	x.dec.Strict = true
	from := ""
	if x.c.local != "" {
		if a, err := pki.ASCIIDomain(x.c.local); err == nil {
			from = " from='" + xmlEscape(a) + "'"
		}
	}
	hdr := "<?xml version='1.0'?><stream:stream xmlns='" + nsServer + "' xmlns:stream='" + nsStreams +
		"' xmlns:db='" + nsDialback + "'" + from + " to='" + xmlEscape(x.c.ascii) + "' version='1.0'>"
	x.deadline(ctx)
	if _, err := io.WriteString(x.conn, hdr); err != nil {
		return nil, x.netErr("sending the stream header", err)
	}
	start, err := x.nextStart()
	if err != nil {
		return nil, x.netErr("waiting for the stream header", err)
	}
	if start.Name.Space != nsStreams || start.Name.Local != "stream" {
		return nil, fmt.Errorf("not an XMPP server: it answered with <%s>, not <stream:stream>", clean(start.Name.Local))
	}
	x.header = start
	ns := ""
	for _, a := range start.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			ns = a.Value
		case a.Name.Space == "xmlns" && a.Value == nsDialback:
			x.dbInHdr = true
		}
	}
	if ns != nsServer {
		return nil, fmt.Errorf("the stream is %q, not jabber:server: the port is for clients, not servers", clean(ns))
	}
	el, err := x.nextStart()
	if err != nil {
		return nil, x.netErr("waiting for the stream features", err)
	}
	switch {
	case el.Name.Space == nsStreams && el.Name.Local == "features":
		var f features
		if err := x.dec.DecodeElement(&f, &el); err != nil {
			return nil, x.netErr("reading the stream features", err)
		}
		return &f, nil
	case el.Name.Space == nsStreams && el.Name.Local == "error":
		return nil, x.streamError(el)
	}
	return nil, fmt.Errorf("the server sent <%s> where stream features were due", clean(el.Name.Local))
}

func (x *xmppConn) attr(name string) string {
	for _, a := range x.header.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			return clean(a.Value)
		}
	}
	return ""
}

// nextStart returns the next start element, skipping the XML declaration,
// whitespace and comments.
func (x *xmppConn) nextStart() (xml.StartElement, error) {
	for {
		tok, err := x.dec.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.EndElement:
			return xml.StartElement{}, errors.New("the server closed the stream")
		case xml.CharData:
			if strings.TrimSpace(string(t)) != "" {
				return xml.StartElement{}, errors.New("the server sent text, not XML elements")
			}
		}
	}
}

// streamErr is a peer's <stream:error/>.
type streamErr struct {
	Condition, Text string
}

func (e *streamErr) Error() string {
	s := "the server closed the stream with the error " + e.Condition
	if e.Text != "" {
		s += " (" + e.Text + ")"
	}
	return s
}

func (x *xmppConn) streamError(el xml.StartElement) error {
	var v struct {
		Children []struct {
			XMLName xml.Name
			Text    string `xml:",chardata"`
		} `xml:",any"`
	}
	if err := x.dec.DecodeElement(&v, &el); err != nil {
		return x.netErr("reading the stream error", err)
	}
	e := &streamErr{Condition: "undefined-condition"}
	for _, ch := range v.Children {
		if ch.XMLName.Space != nsStreamErr {
			continue
		}
		if ch.XMLName.Local == "text" {
			e.Text = clean(ch.Text)
		} else {
			e.Condition = clean(ch.XMLName.Local)
		}
	}
	return e
}

// netErr explains a failed read or write.
func (x *xmppConn) netErr(doing string, err error) error {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("no answer within %s %s: is this an XMPP server?", x.c.timeout, doing)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("the server closed the connection %s", doing)
	}
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("not XMPP: bad XML %s: %s", doing, clean(se.Msg))
	}
	return fmt.Errorf("%s: %s", doing, clean(err.Error()))
}

func (x *xmppConn) close() {
	x.conn.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(x.conn, "</stream:stream>")
	x.conn.Close()
}

// stream runs the XMPP part on the first reachable endpoint.
func (c *checker) stream(ctx context.Context, ep endpoint) {
	conn := ep.conn
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	x := &xmppConn{c: c, conn: conn}
	defer func() { x.close() }()

	if ep.target.DirectTLS {
		tc, ok := c.handshake(ctx, x, true)
		if !ok {
			return
		}
		x.conn = tc
	}
	name := "stream " + ep.addr.String()
	f, err := x.open(ctx)
	if err != nil {
		c.step(status.Fail, name, err.Error(), c.streamFix(err, ep))
		return
	}
	detail := "jabber:server stream"
	if v := x.attr("version"); v != "" {
		detail += ", version " + v
	} else {
		detail += ", no version (a pre-1.0 server: no TLS, no SASL)"
	}
	from := x.attr("from")
	if from != "" && !strings.EqualFold(from, c.ascii) && !strings.EqualFold(from, c.remote) {
		c.step(status.Warn, name, detail+fmt.Sprintf(", but it answers as %s, not %s", from, c.remote),
			fmt.Sprintf("the server at %s does not host %s: correct the SRV record, or the route", ep, c.remote))
	} else {
		c.step(status.OK, name, detail, "")
	}

	if !ep.target.DirectTLS {
		if f.StartTLS == nil {
			v := status.Warn
			if c.cfg.Secure {
				v = status.Fail
			}
			c.step(v, "STARTTLS", "not offered: the link would not be encrypted (most servers refuse that)",
				"enable TLS for server-to-server links on "+c.remote+"'s server")
			c.authMethods(f, x.dbInHdr, false)
			return
		}
		detail := "offered"
		if f.StartTLS.Required != nil {
			detail += " (required)"
		}
		c.step(status.OK, "STARTTLS", detail, "")
		tc, ok := c.startTLS(ctx, x)
		if !ok {
			return
		}
		x.conn = tc
		if f, err = x.open(ctx); err != nil {
			c.step(status.Fail, "stream after TLS", err.Error(), c.streamFix(err, ep))
			return
		}
	}
	c.authMethods(f, x.dbInHdr, true)
}

func (c *checker) streamFix(err error, ep endpoint) string {
	var se *streamErr
	if errors.As(err, &se) {
		switch se.Condition {
		case "host-unknown", "host-gone", "improper-addressing":
			return fmt.Sprintf("the server at %s does not host %s: correct the SRV record, or the route", ep, c.remote)
		case "policy-violation", "not-authorized", "remote-connection-failed":
			return fmt.Sprintf("%s's server refuses federation with %s: ask its admin to allow it", c.remote, c.local)
		case "see-other-host":
			return "the server sends us elsewhere: correct the SRV record, or the route"
		}
		return "ask the " + c.remote + " admin what its server logged"
	}
	return fmt.Sprintf("check that %s is %s's XMPP server-to-server port (5269), not another service", ep.addr, c.remote)
}

// startTLS negotiates STARTTLS on x and hands over to handshake.
func (c *checker) startTLS(ctx context.Context, x *xmppConn) (net.Conn, bool) {
	x.deadline(ctx)
	if _, err := io.WriteString(x.conn, "<starttls xmlns='"+nsTLS+"'/>"); err != nil {
		c.step(status.Fail, "TLS", x.netErr("sending <starttls/>", err).Error(), "")
		return nil, false
	}
	el, err := x.nextStart()
	if err != nil {
		c.step(status.Fail, "TLS", x.netErr("waiting for <proceed/>", err).Error(), "ask the "+c.remote+" admin what its server logged")
		return nil, false
	}
	if el.Name.Space != nsTLS || el.Name.Local != "proceed" {
		c.step(status.Fail, "TLS", fmt.Sprintf("the server answered <starttls/> with <%s>, not <proceed/>", clean(el.Name.Local)),
			"ask the "+c.remote+" admin to check its TLS certificate and key")
		return nil, false
	}
	return c.handshake(ctx, x, false)
}

// handshake runs TLS over x.conn and reports the TLS and certificate steps.
func (c *checker) handshake(ctx context.Context, x *xmppConn, direct bool) (net.Conn, bool) {
	cfg := &tls.Config{
		ServerName:         c.ascii,
		InsecureSkipVerify: true, // verified below, step by step, to say what is wrong
		MinVersion:         tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c.cfg.ClientCert != nil {
				if cert := c.cfg.ClientCert(c.local); cert != nil {
					return cert, nil
				}
			}
			return &tls.Certificate{}, nil
		},
	}
	if direct {
		cfg.NextProtos = []string{"xmpp-server"}
	}
	tc := tls.Client(x.conn, cfg)
	x.deadline(ctx)
	hctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	name := "TLS"
	if direct {
		name = "direct TLS"
	}
	if err := tc.HandshakeContext(hctx); err != nil {
		c.step(status.Fail, name, "handshake failed: "+clean(err.Error()),
			"check the TLS set-up of "+c.remote+"'s server (certificate and key, TLS 1.2 or later)")
		return nil, false
	}
	st := tc.ConnectionState()
	detail := tls.VersionName(st.Version) + ", " + tls.CipherSuiteName(st.CipherSuite)
	if direct {
		if st.NegotiatedProtocol != "" {
			detail += ", ALPN " + clean(st.NegotiatedProtocol)
		} else {
			detail += ", no ALPN"
		}
	}
	c.step(status.OK, name, detail, "")
	c.certificate(st.PeerCertificates)
	return tc, true
}

// certificate reports the peer's certificate: what it is, its chain, its
// expiry and whether it names the remote domain.
func (c *checker) certificate(chain []*x509.Certificate) {
	if len(chain) == 0 {
		v := status.Warn
		if c.cfg.Secure {
			v = status.Fail
		}
		c.step(v, "certificate", "the server presented none", "the "+c.remote+" admin must configure a certificate")
		return
	}
	leaf := chain[0]
	names := pki.XMPPNames(leaf)
	shown := names
	if len(shown) > 10 {
		shown = append(shown[:10:10], fmt.Sprintf("and %d more", len(names)-10))
	}
	nameList := strings.Join(shown, ", ")
	if nameList == "" {
		nameList = "nothing"
	}
	c.step(status.Info, "certificate", fmt.Sprintf("names %s; subject %s; issuer %s; valid until %s",
		nameList, pki.SubjectString(leaf), issuer(leaf), leaf.NotAfter.UTC().Format(time.DateOnly)), "")

	problem := status.Warn
	consequence := "; dialback will be used to authenticate " + c.remote
	if c.cfg.Secure {
		problem = status.Fail
		consequence = "; " + c.remote + " is on the secure list, so its traffic is refused"
	}
	var roots *x509.CertPool
	trust := "the system roots"
	if c.cfg.Roots != nil {
		p, err := c.cfg.Roots()
		if err != nil {
			c.step(status.Warn, "trust bundle", "cannot be read: "+clean(err.Error())+"; using the system roots only",
				"upload the bundle again, or xmpp federation trust none")
		} else {
			roots = p
			trust = "the system roots and the trust bundle"
		}
	}
	t := now()
	err := pki.VerifyXMPPServer(chain, c.ascii, roots, t)
	var pe *pki.PeerCertError
	chainOK := err == nil || errors.As(err, &pe) && !pe.Problem.ChainProblem()
	if chainOK {
		c.step(status.OK, "certificate chain", "verified against "+trust, "")
	} else {
		fix := "the " + c.remote + " admin must fix the certificate chain (send the intermediates, in order)"
		if errors.As(err, &pe) {
			switch pe.Problem {
			case pki.UntrustedChain:
				fix = "upload the CA certificate that signs " + c.remote + "'s certificate and run xmpp federation trust <bundle>, or ask " + c.remote + " for a certificate from a public CA"
			case pki.CertExpired:
				fix = "the " + c.remote + " admin must renew the certificate"
			case pki.CertNotYetValid:
				fix = "check the clock here (date) and on " + c.remote + "'s server"
			}
		}
		c.step(problem, "certificate chain", err.Error()+consequence, fix)
	}

	days := int(leaf.NotAfter.Sub(t).Hours() / 24)
	switch {
	case t.After(leaf.NotAfter):
		// reported by the chain step
	case days < expiryWarnDays:
		c.step(status.Warn, "certificate expiry", fmt.Sprintf("expires in %d days (%s)", days, leaf.NotAfter.UTC().Format(time.DateOnly)),
			"the "+c.remote+" admin should renew it now")
	default:
		c.step(status.OK, "certificate expiry", fmt.Sprintf("%d days left", days), "")
	}

	if nerr := pki.CheckXMPPServerName(leaf, c.ascii); nerr != nil {
		fix := "until then dialback authenticates " + c.remote
		if c.cfg.Secure {
			fix = "until then, traffic with it needs: xmpp federation secure del " + c.remote
		}
		c.step(problem, "certificate name", nerr.Error()+consequence,
			"the "+c.remote+" admin needs a certificate that names "+c.ascii+" (subjectAltName DNS:"+c.ascii+" or SRV _xmpp-server."+c.ascii+"); "+fix)
	} else {
		c.step(status.OK, "certificate name", "names "+c.remote, "")
	}
}

func issuer(cert *x509.Certificate) string {
	s := cert.Issuer.String()
	if s == "" {
		return "(none)"
	}
	return clean(s)
}

// authMethods reports what the peer offers to authenticate us.
func (c *checker) authMethods(f *features, dbInHdr, afterTLS bool) {
	external := false
	mechs := f.mechanisms()
	for _, m := range mechs {
		if strings.EqualFold(m, "EXTERNAL") {
			external = true
		}
	}
	dialback := f != nil && f.Dialback != nil
	haveCert := c.cfg.ClientCert != nil && c.cfg.ClientCert(c.local) != nil

	switch {
	case external:
		c.authOK("SASL EXTERNAL", "offered: "+c.remote+" accepts our certificate for "+c.local, status.External)
	case !afterTLS:
		c.step(status.Info, "SASL EXTERNAL", "not offered (no TLS)", "")
	default:
		detail := "not offered"
		if len(mechs) > 0 {
			detail += " (mechanisms: " + clean(strings.Join(mechs, " ")) + ")"
		}
		fix := "give the " + c.remote + " admin the CA of our certificate for " + c.local + " to trust, or rely on dialback"
		if !haveCert {
			detail += ": we have no certificate for " + c.local
			fix = "configure a certificate for " + c.local + ": xmpp certs, or xmpp multi-domain add"
		} else {
			detail += ": " + c.remote + " does not accept our certificate for " + c.local
		}
		v := status.Info
		if !dialback && !dbInHdr {
			v = status.Warn
		}
		c.step(v, "SASL EXTERNAL", detail, fix)
	}
	switch {
	case dialback:
		c.authOK("dialback", "offered (urn:xmpp:features:dialback)", status.Dialback)
	case dbInHdr:
		c.authOK("dialback", "declared in the stream header (xmlns:db), not as a feature", status.Dialback)
	case external:
		c.step(status.Info, "dialback", "not offered (SASL EXTERNAL is)", "")
	default:
		v := status.Fail
		if c.cfg.Authenticate != nil {
			v = status.Warn // the real link set-up has the last word
		}
		c.step(v, "dialback", "not offered, nor SASL EXTERNAL: "+c.remote+" offers no way for "+c.local+" to authenticate",
			"ask the "+c.remote+" admin to enable dialback, or to trust our certificate")
	}
}

// authenticate runs the real link set-up.
func (c *checker) authenticate(ctx context.Context) {
	method, err := c.cfg.Authenticate(ctx, c.local, c.remote)
	if err != nil {
		c.step(status.Fail, "authentication", clean(err.Error()), "see the steps above, and xmpp federation for recent failures")
		return
	}
	c.authOK("authentication", "authenticated with "+clean(string(method)), method)
}

// --- text -------------------------------------------------------------

// clean makes peer-supplied text one printable, bounded line.
func clean(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == maxText {
			b.WriteString("…")
			break
		}
		n++
		switch {
		case r == utf8.RuneError, r == '\n', r == '\r', r == '\t':
			b.WriteByte(' ')
		case unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r):
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return strings.ReplaceAll(b.String(), "'", "&#39;")
}
