package s2s

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/metrics"
	"github.com/parley-xmpp/parley/server/resolve"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
)

// outLink is the outgoing queue and connection of one domain pair.
type outLink struct {
	s      *Service
	p      pair
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	state    status.LinkState
	pending  []*xml.Element
	bytes    int // of pending, about
	conn     *stream.Conn
	est      *established
	since    time.Time
	lastUsed time.Time
	idle     *time.Timer
	stanzas  uint64
}

func (s *Service) newOutLink(p pair) *outLink {
	ctx, cancel := context.WithCancel(context.Background())
	return &outLink{s: s, p: p, ctx: ctx, cancel: cancel, state: status.Connecting, since: time.Now()}
}

func (s *Service) remove(l *outLink) {
	s.mu.Lock()
	if s.out[l.p] == l {
		delete(s.out, l.p)
	}
	s.mu.Unlock()
}

// send queues or writes a stanza. false: the link is closing, try a new one.
func (l *outLink) send(el *xml.Element) bool {
	l.mu.Lock()
	switch l.state {
	case status.Connecting:
		n := approxSize(el)
		full := ""
		switch {
		case len(l.pending) >= l.s.cfg.MaxQueue || l.bytes+n > l.s.cfg.MaxQueueBytes:
			full = "too many stanzas are waiting for the link to " + l.p.remote
		case !l.s.reserve(n):
			full = "too many stanzas are waiting for links to other servers"
		}
		if full != "" {
			l.mu.Unlock()
			metrics.QueueRejected(metrics.S2SQueue)
			l.s.cfg.Episodes.Printf("s2s: queues full", "s2s: %s → %s: %s: bounced", l.p.local, l.p.remote, full)
			l.s.bounce(el, "resource-constraint", full)
			return true
		}
		l.pending = append(l.pending, el)
		l.bytes += n
		l.mu.Unlock()
		return true
	case status.Up:
		l.lastUsed = time.Now()
		ok := l.conn.Send(stream.Retarget(el, stream.NSClient, stream.NSServer))
		if ok {
			l.stanzas++
		} else {
			l.state = status.Closing
		}
		l.mu.Unlock()
		if !ok {
			l.s.remove(l)
		}
		return ok
	}
	l.mu.Unlock()
	return false
}

// reserve counts n more bytes waiting for links being set up; false if
// that would be over MaxPendingBytes.
func (s *Service) reserve(n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pendingBytes+n > s.cfg.MaxPendingBytes {
		return false
	}
	s.pendingBytes += n
	return true
}

// connected is called once the set-up of a link is over, whatever its
// outcome: it no longer counts against MaxPendingLinks, and its queue
// (bytes, taken by the caller) no longer against MaxPendingBytes.
func (s *Service) connected(bytes int) {
	s.mu.Lock()
	s.connecting--
	s.pendingBytes -= bytes
	s.mu.Unlock()
}

// approxSize is about the size of a stanza as sent, without serializing it:
// names, attributes and text, with some markup per element.
func approxSize(el *xml.Element) int {
	n := 2*len(el.Name.Local) + 5
	for _, a := range el.Attr {
		n += len(a.Name.Local) + len(a.Value) + 4
	}
	for _, c := range el.Children {
		switch c := c.(type) {
		case *xml.Element:
			n += approxSize(c) + len(c.Name.Space)
		case xml.Text:
			n += len(c)
		}
	}
	return n
}

func (l *outLink) verified() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.est != nil && l.est.verified
}

func (l *outLink) link() status.Link {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := status.Link{Local: l.p.local, Remote: l.p.remote, Direction: status.Out, State: l.state, Since: l.since, Queued: len(l.pending), Stanzas: l.stanzas}
	if l.est != nil {
		st.Auth, st.TLS, st.Peer = l.est.auth, true, l.est.peer
	}
	return st
}

// close ends the link: while connecting the set-up is cancelled (what was
// queued bounces), once up the stream ends with e.
func (l *outLink) close(e *stream.Error) {
	l.s.remove(l)
	l.mu.Lock()
	conn := l.conn
	if l.state == status.Up {
		l.state = status.Closing
	}
	l.mu.Unlock()
	l.cancel()
	if conn != nil {
		conn.CloseWith(e.Bytes())
	}
}

func (l *outLink) run() {
	ctx, cancel := context.WithTimeout(l.ctx, l.s.cfg.ConnectTimeout)
	est, err := l.s.connect(ctx, l.p, true)
	cancel()
	if err == nil && l.ctx.Err() != nil {
		est.raw.Close()
		err = &linkError{"remote-server-timeout", "the link to " + l.p.remote + " was closed"}
	}
	if err != nil {
		l.s.remove(l)
		l.mu.Lock()
		l.state = status.Closing
		pending := l.pending
		l.pending = nil
		l.s.connected(l.bytes)
		l.bytes = 0
		l.mu.Unlock()
		cond := "remote-server-not-found"
		var le *linkError
		if errors.As(err, &le) {
			cond = le.condition
		}
		l.s.fail(l.p, err.Error())
		for _, el := range pending {
			l.s.bounce(el, cond, err.Error())
		}
		return
	}
	l.up(est)
}

// up runs the link on an established stream until it ends; what it
// accepted and did not write then bounces.
func (l *outLink) up(est *established) {
	conn := stream.NewConn(est.raw, stream.NSServer)
	l.mu.Lock()
	l.conn, l.est, l.state, l.since, l.lastUsed = conn, est, status.Up, time.Now(), time.Now()
	var refused []*xml.Element
	for _, el := range l.pending {
		if conn.Send(stream.Retarget(el, stream.NSClient, stream.NSServer)) {
			l.stanzas++
		} else {
			refused = append(refused, el)
		}
	}
	l.pending = nil
	if len(refused) > 0 {
		l.state = status.Closing // the queue overflowed: the connection is failing
	}
	l.s.connected(l.bytes)
	l.bytes = 0
	l.idle = time.AfterFunc(l.s.cfg.Federation().IdleTimeout, l.idleCheck)
	l.mu.Unlock()
	est.tag().Major(l.s.cfg.Log, "s2s: %s → %s up (%s)", l.p.local, l.p.remote, est.auth)
	if len(refused) > 0 {
		l.s.remove(l)
		for _, el := range refused {
			l.s.bounce(el, "remote-server-timeout", "the server of "+l.p.remote+" does not read fast enough")
		}
	}

	// The peer sends nothing on our stream but its end or an error.
	for {
		el, err := est.rd.Next()
		if err != nil {
			break
		}
		if el.Name.Space == stream.NSStream && el.Name.Local == "error" {
			est.tag().Problem(l.s.cfg.Log, "s2s: stream error from %s: %s", l.p.remote, streamErrorText(el))
			l.s.fail(l.p, "stream error from the peer: "+streamErrorText(el))
		}
	}
	est.tag().Low(l.s.cfg.Log, "s2s: %s → %s closed", l.p.local, l.p.remote)
	l.s.remove(l)
	l.mu.Lock()
	l.state = status.Closing
	l.idle.Stop()
	l.mu.Unlock()
	conn.CloseWith(stream.Close)
	<-conn.Done()
	// What the link accepted and did not write bounces to its senders.
	back := conn.Unwritten()
	text := "the link to " + l.p.remote + " closed before this was sent"
	if conn.Overflowed() {
		text = "the server of " + l.p.remote + " does not read fast enough"
		l.s.fail(l.p, fmt.Sprintf("closed with policy-violation: it did not read fast enough; %d stanzas bounce", len(back)))
	}
	for _, el := range stream.ParseStanzas(back, stream.NSServer) {
		l.s.bounce(stream.Retarget(el, stream.NSServer, stream.NSClient), "remote-server-timeout", text)
	}
}

// idleCheck closes the link once nothing was sent on it for the idle
// timeout.
func (l *outLink) idleCheck() {
	idle := l.s.cfg.Federation().IdleTimeout
	l.mu.Lock()
	if l.state != status.Up {
		l.mu.Unlock()
		return
	}
	if left := idle - time.Since(l.lastUsed); left > 0 {
		l.idle.Reset(left)
		l.mu.Unlock()
		return
	}
	l.state = status.Closing
	conn, est := l.conn, l.est
	l.mu.Unlock()
	l.s.remove(l)
	est.tag().Low(l.s.cfg.Log, "s2s: %s → %s idle for %s: closing", l.p.local, l.p.remote, idle)
	conn.CloseWith(stream.Close)
}

// retime applies the idle timeout in force now to an open link: one
// shortened since the link came up closes it by the new bound.
func (l *outLink) retime(idle time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state != status.Up || l.idle == nil {
		return
	}
	l.idle.Reset(max(idle-time.Since(l.lastUsed), 0))
}

// linkError is why a link could not be set up, with the stanza error
// condition its queued stanzas bounce with.
type linkError struct {
	condition string
	text      string
}

func (e *linkError) Error() string { return e.text }

// established is an authenticated outgoing stream.
type established struct {
	raw      net.Conn
	rd       *xml.Reader
	auth     status.Auth
	verified bool // the peer's certificate verified for its domain (or relay)
	peer     string
	id       uint64 // the connection's number in the log (XMPPO-id)
}

// tag names the connection in the log.
func (est *established) tag() logging.Conn {
	return logging.Conn{Kind: logging.KindServerOut, ID: est.id, Peer: est.peer}
}

// target is where a remote domain is reached.
type target struct {
	resolve.Target
	relay string // a configured route's host: its certificate name is accepted too
}

func (s *Service) targets(ctx context.Context, remote string) ([]target, error) {
	fed := s.cfg.Federation()
	if r, ok := fed.Routes[remote]; ok {
		host, port := r, 5269
		if h, p, err := net.SplitHostPort(r); err == nil {
			host = h
			if n, err := strconv.Atoi(p); err == nil {
				port = n
			}
		}
		return []target{{Target: resolve.Target{Host: host, Port: uint16(port)}, relay: host}}, nil
	}
	ts, err := s.cfg.Resolver.ServerTargets(ctx, remote)
	if err != nil {
		return nil, err
	}
	out := make([]target, len(ts))
	for i, t := range ts {
		out[i] = target{Target: t}
	}
	return out, nil
}

// connectVerify opens a stream to the server of p.remote for dialback
// verification: TLS, no authentication.
func (s *Service) connectVerify(ctx context.Context, p pair) (*established, error) {
	return s.connect(ctx, p, false)
}

// connect finds, reaches and (if auth) authenticates to the server of
// p.remote, trying each target and address in turn within ctx.
func (s *Service) connect(ctx context.Context, p pair, auth bool) (*established, error) {
	fed := s.cfg.Federation()
	secure := fed.SecureRequired(p.remote)
	targets, err := s.targets(ctx, p.remote)
	if err != nil {
		return nil, lookupFailure(p.remote, err)
	}
	var errs []string
	timedOut := false
	for _, t := range targets {
		addrs, err := s.cfg.Resolver.LookupHost(ctx, t.Host)
		if err != nil {
			errs = append(errs, err.Error())
			timedOut = timedOut || isTimeout(err)
			continue
		}
		for _, a := range addrs {
			if ctx.Err() != nil {
				timedOut = true
				break
			}
			addr := netip.AddrPortFrom(a, t.Port).String()
			d := net.Dialer{Timeout: 10 * time.Second}
			if s.cfg.SourceIP != nil {
				if ip := s.cfg.SourceIP(a); ip.IsValid() {
					d.LocalAddr = &net.TCPAddr{IP: ip.AsSlice()}
				}
			}
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				errs = append(errs, addr+": "+shortNetError(err))
				timedOut = timedOut || isTimeout(err)
				continue
			}
			if s.cfg.Dialed != nil {
				c = s.cfg.Dialed(c, p.local, p.remote)
			}
			est, err := s.negotiateOut(ctx, c, p, t, secure, auth)
			if err == nil {
				est.peer = addr
				return est, nil
			}
			c.Close()
			var le *linkError
			if errors.As(err, &le) {
				return nil, le // a refusal or a policy, not a reachability problem: the next address would say the same
			}
			errs = append(errs, addr+": "+shortNetError(err))
			timedOut = timedOut || isTimeout(err)
		}
	}
	cond := "remote-server-not-found"
	if timedOut || ctx.Err() != nil {
		cond = "remote-server-timeout"
	}
	if len(errs) == 0 {
		errs = append(errs, "no address")
	}
	return nil, &linkError{cond, "cannot reach the server of " + p.remote + ": " + strings.Join(errs, "; ")}
}

func lookupFailure(remote string, err error) error {
	cond := "remote-server-not-found"
	if isTimeout(err) {
		cond = "remote-server-timeout"
	}
	if errors.Is(err, resolve.ErrNoService) {
		return &linkError{cond, remote + " does not accept server-to-server connections (its SRV record is \".\")"}
	}
	return &linkError{cond, "cannot find the server of " + remote + ": " + err.Error()}
}

func isTimeout(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var le *resolve.LookupError
	if errors.As(err, &le) && le.Kind == resolve.Timeout {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}

func shortNetError(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}

func (s *Service) clientTLS(p pair, direct bool) *tls.Config {
	name := p.remote
	if a, err := pki.ASCIIDomain(name); err == nil {
		name = a
	}
	c := &tls.Config{
		ServerName:         name,
		InsecureSkipVerify: true, // verified below against the XMPP rules (RFC 6125), dialback otherwise
		MinVersion:         tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := s.cfg.Cert(p.local); c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil
		},
	}
	if direct {
		c.NextProtos = []string{"xmpp-server"}
	}
	return c
}

// verifyPeer checks a peer's certificate for its domain (or the relay it
// is reached through).
func (s *Service) verifyPeer(chain []*x509.Certificate, remote, relay string) error {
	if len(chain) == 0 {
		return errors.New("no certificate was presented")
	}
	roots, err := s.cfg.Roots()
	if err != nil {
		return fmt.Errorf("the trust bundle cannot be read: %v", err)
	}
	err = pki.VerifyXMPPServer(chain, remote, roots, time.Now())
	if err != nil && relay != "" && pki.VerifyXMPPServer(chain, relay, roots, time.Now()) == nil {
		return nil
	}
	return err
}

// negotiateOut runs the initiating side of a server stream on c: stream
// header, STARTTLS, certificate check, then SASL EXTERNAL or dialback.
func (s *Service) negotiateOut(ctx context.Context, c net.Conn, p pair, t target, secure, auth bool) (*established, error) {
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	var conn net.Conn = c
	isTLS := false
	if t.DirectTLS {
		tc := tls.Client(c, s.clientTLS(p, true))
		err := tc.HandshakeContext(ctx)
		metrics.TLSHandshake(metrics.Out, err)
		if err != nil {
			return nil, fmt.Errorf("TLS handshake: %v", err)
		}
		conn, isTLS = tc, true
	}
	est := &established{id: logging.NextID(), peer: c.RemoteAddr().String()}
	checked, external := false, false
	for round := 0; round < 5; round++ {
		if _, err := conn.Write(serverHeader(p.local, p.remote, "")); err != nil {
			return nil, err
		}
		rd := xml.NewReader(conn, s.cfg.Limits)
		hdr, err := rd.Header()
		if err != nil {
			return nil, fmt.Errorf("reading the stream header: %v", err)
		}
		if ns := defaultNS(hdr); ns != stream.NSServer {
			return nil, &linkError{"remote-server-not-found", fmt.Sprintf("the server of %s answered with a %q stream", p.remote, ns)}
		}
		id := hdr.Get("id")
		feats, err := rd.Next()
		if err != nil {
			return nil, fmt.Errorf("reading the stream features: %v", err)
		}
		if err := streamErr(feats, p.remote); err != nil {
			return nil, err
		}
		if feats.Name.Space != stream.NSStream || feats.Name.Local != "features" {
			return nil, fmt.Errorf("expected stream features, got <%s>", feats.Name.Local)
		}
		if !isTLS {
			if feats.Child(stream.NSTLS, "starttls") == nil {
				return nil, &linkError{"remote-server-not-found", "the server of " + p.remote + " does not offer STARTTLS, and Parley sends nothing over unencrypted server links"}
			}
			if _, err := conn.Write([]byte(`<starttls xmlns='` + stream.NSTLS + `'/>`)); err != nil {
				return nil, err
			}
			el, err := rd.Next()
			if err != nil {
				return nil, fmt.Errorf("STARTTLS: %v", err)
			}
			if el.Name.Local != "proceed" {
				return nil, &linkError{"remote-server-not-found", "the server of " + p.remote + " refused STARTTLS"}
			}
			tc := tls.Client(c, s.clientTLS(p, false))
			err = tc.HandshakeContext(ctx)
			metrics.TLSHandshake(metrics.Out, err)
			if err != nil {
				return nil, fmt.Errorf("TLS handshake: %v", err)
			}
			conn, isTLS = tc, true
			continue
		}
		if !checked {
			checked = true
			verr := s.verifyPeer(conn.(*tls.Conn).ConnectionState().PeerCertificates, p.remote, t.relay)
			est.verified = verr == nil
			if secure && verr != nil {
				return nil, &linkError{"remote-server-not-found", p.remote + " is on the secure list and its certificate does not verify: " + verr.Error()}
			}
		}
		if !auth {
			est.raw, est.rd = conn, rd
			return est, nil
		}
		if external {
			est.raw, est.rd, est.auth = conn, rd, status.External
			c.SetDeadline(time.Time{})
			return est, nil
		}
		if est.verified && offersExternal(feats) {
			auth := `<auth xmlns='` + stream.NSSASL + `' mechanism='EXTERNAL'>` + base64.StdEncoding.EncodeToString([]byte(p.local)) + `</auth>`
			if _, err := conn.Write([]byte(auth)); err != nil {
				return nil, err
			}
			el, err := rd.Next()
			if err != nil {
				return nil, fmt.Errorf("SASL EXTERNAL: %v", err)
			}
			if el.Name.Space == stream.NSSASL && el.Name.Local == "success" {
				external = true
				continue
			}
			est.tag().Low(s.cfg.Log, "s2s: %s refused SASL EXTERNAL for %s; trying dialback", p.remote, p.local)
			// The stream is still usable after a SASL failure: dialback.
		}
		if !offersDialback(hdr, feats) {
			return nil, &linkError{"remote-server-not-found", "the server of " + p.remote + " accepts neither our certificate (SASL EXTERNAL) nor dialback"}
		}
		key := s.dialbackKey(p.remote, p.local, id)
		db := xml.New(NSDialback, "result", "from", p.local, "to", p.remote).AddText(key)
		if _, err := conn.Write(dialbackBytes(db)); err != nil {
			return nil, err
		}
		for i := 0; i < 16; i++ {
			el, err := rd.Next()
			if err != nil {
				return nil, fmt.Errorf("dialback: %v", err)
			}
			if err := streamErr(el, p.remote); err != nil {
				return nil, err
			}
			if el.Name.Space != NSDialback || el.Name.Local != "result" {
				continue
			}
			switch el.Get("type") {
			case "valid":
				est.raw, est.rd, est.auth = conn, rd, status.Dialback
				c.SetDeadline(time.Time{})
				return est, nil
			case "invalid":
				return nil, &linkError{"remote-server-not-found", "the server of " + p.remote + " could not verify " + p.local + " by dialback: it must be able to resolve and reach " + p.local + " on its s2s port"}
			default:
				return nil, &linkError{"remote-server-not-found", "the server of " + p.remote + " refused dialback for " + p.local + ": " + errorCondition(el)}
			}
		}
		return nil, errors.New("dialback: no answer")
	}
	return nil, errors.New("too many stream restarts")
}

func defaultNS(hdr *xml.Element) string {
	for _, a := range hdr.Attr {
		if a.Name.Space == "" && a.Name.Local == "xmlns" {
			return a.Value
		}
	}
	return ""
}

func offersExternal(feats *xml.Element) bool {
	m := feats.Child(stream.NSSASL, "mechanisms")
	if m == nil {
		return false
	}
	for _, c := range m.Elements() {
		if c.Name.Local == "mechanism" && strings.TrimSpace(c.Text()) == "EXTERNAL" {
			return true
		}
	}
	return false
}

// offersDialback: the dialback stream feature, or (older servers) the
// dialback namespace declared on the stream header.
func offersDialback(hdr, feats *xml.Element) bool {
	if feats.Child(NSDialbackFeature, "dialback") != nil {
		return true
	}
	for _, a := range hdr.Attr {
		if a.Name.Space == "xmlns" && a.Value == NSDialback {
			return true
		}
	}
	return false
}

func streamErr(el *xml.Element, remote string) error {
	if el.Name.Space == stream.NSStream && el.Name.Local == "error" {
		return &linkError{"remote-server-not-found", "the server of " + remote + " closed the stream: " + streamErrorText(el)}
	}
	return nil
}

func streamErrorText(el *xml.Element) string {
	cond, text := "", ""
	for _, c := range el.Elements() {
		if c.Name.Local == "text" {
			text = c.Text()
		} else if cond == "" {
			cond = c.Name.Local
		}
	}
	if text != "" {
		return cond + " (" + text + ")"
	}
	return cond
}

// errorCondition is the condition inside a stanza's or dialback's <error/>.
func errorCondition(el *xml.Element) string {
	e := el.Child("", "error")
	if e == nil {
		return "error"
	}
	for _, c := range e.Elements() {
		if c.Name.Local != "text" {
			return c.Name.Local
		}
	}
	return "error"
}
