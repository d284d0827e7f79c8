package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/parley-xmpp/parley/server/logging"
)

// The cluster listener carries three kinds of connection, told apart by
// a header the dialing node writes after the mutual-TLS handshake:
// magic, kind, and for a Mesh connection the sender's node id. The
// listener answers the header with one byte (ack) before anything else,
// so a dialer learns at once whether its certificate was accepted.
const (
	magic       = "PRLC"
	connRaft    = 'T' // raft's stream layer
	connMesh    = 'M' // Mesh messages from one node, one way
	connRPC     = 'R' // one request and its answer (join, remove)
	headerAck   = 0x01
	maxIDLength = 64
)

// Time and size bounds of the transport.
const (
	HandshakeTimeout = 5 * time.Second // TLS handshake and header
	dialTimeout      = 2 * time.Second
	maxHandshakes    = 64       // concurrent unauthenticated connections
	MaxFrame         = 16 << 20 // largest Mesh message or RPC
)

// listener is the node's cluster listener.
type listener struct {
	c    *Cluster
	ln   net.Listener
	addr string
	sem  chan struct{}

	mu      sync.Mutex
	stream  *streamLayer // the raft instance's, nil when none
	conns   map[net.Conn]struct{}
	refused map[string]time.Time // when a refusal from a host was last logged
	closed  bool
	done    chan struct{}
}

func (c *Cluster) startListener() error {
	c.mu.Lock()
	running := c.ln != nil
	c.mu.Unlock()
	if running {
		c.mu.Lock()
		c.enabled = true
		c.mu.Unlock()
		return nil
	}
	addr := c.configListen()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cluster: cannot listen on %s: %w (choose another address or port for the cluster listener)", addr, err)
	}
	l := &listener{c: c, ln: ln, addr: ln.Addr().String(), sem: make(chan struct{}, maxHandshakes), conns: map[net.Conn]struct{}{}, refused: map[string]time.Time{}, done: make(chan struct{})}
	go l.serve()
	c.mu.Lock()
	c.ln, c.listen, c.enabled = l, addr, true
	c.mu.Unlock()
	c.mesh.start()
	return nil
}

func (c *Cluster) stopListener() {
	c.mesh.stop()
	c.mu.Lock()
	l := c.ln
	c.ln, c.listen, c.enabled = nil, "", false
	c.mu.Unlock()
	if l != nil {
		l.close()
	}
}

func (l *listener) serve() {
	defer close(l.done)
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if l.isClosed() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			logging.Problem(l.c.log, "cluster: accept: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		select {
		case l.sem <- struct{}{}:
		default:
			conn.Close() // too many handshakes at once
			continue
		}
		if !l.track(conn, true) {
			<-l.sem
			conn.Close()
			return
		}
		go l.handle(conn)
	}
}

// logRefusal says whether to log a refused connection: one line per
// source address and minute (a remote party must not fill the log).
func (l *listener) logRefusal(addr net.Addr) bool {
	host, _, _ := net.SplitHostPort(addr.String())
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if last, ok := l.refused[host]; ok && now.Sub(last) < time.Minute {
		return false
	}
	if len(l.refused) >= 1024 {
		clear(l.refused)
	}
	l.refused[host] = now
	return true
}

// closeConns closes the connections accepted so far, raft's included.
func (l *listener) closeConns() {
	l.mu.Lock()
	conns := l.conns
	l.conns = map[net.Conn]struct{}{}
	s := l.stream
	l.mu.Unlock()
	for conn := range conns {
		conn.Close()
	}
	if s != nil {
		s.closeConns()
	}
}

func (l *listener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// track adds or removes a connection the listener closes when it closes.
func (l *listener) track(conn net.Conn, add bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if add {
		if l.closed {
			return false
		}
		l.conns[conn] = struct{}{}
	} else {
		delete(l.conns, conn)
	}
	return true
}

func (l *listener) close() {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = map[net.Conn]struct{}{}
	s := l.stream
	l.mu.Unlock()
	l.ln.Close()
	<-l.done
	for conn := range conns {
		conn.Close()
	}
	if s != nil {
		s.Close()
	}
}

// handle authenticates a connection and hands it to raft, the Mesh or
// the RPC server.
func (l *listener) handle(raw net.Conn) {
	conn, kind, id, err := l.accept(raw)
	<-l.sem
	if err != nil {
		if l.logRefusal(raw.RemoteAddr()) {
			logging.Problem(l.c.log, "cluster: refused a connection from %s: %v", raw.RemoteAddr(), err)
		}
		raw.Close()
		l.track(raw, false)
		return
	}
	switch kind {
	case connRaft:
		l.mu.Lock()
		s := l.stream
		l.mu.Unlock()
		l.track(raw, false) // raft owns it now
		if s == nil || !s.give(conn) {
			conn.Close()
		}
	case connMesh:
		l.c.mesh.serveIncoming(conn, id)
		conn.Close()
		l.track(raw, false)
	case connRPC:
		l.c.serveRPC(conn)
		conn.Close()
		l.track(raw, false)
	}
}

func (l *listener) accept(raw net.Conn) (*tls.Conn, byte, string, error) {
	raw.SetDeadline(time.Now().Add(HandshakeTimeout))
	conn := tls.Server(raw, l.c.serverTLS())
	if err := conn.Handshake(); err != nil {
		return nil, 0, "", explainTLS(err)
	}
	var h [len(magic) + 2]byte
	if _, err := io.ReadFull(conn, h[:]); err != nil {
		return nil, 0, "", fmt.Errorf("no cluster header: %w", err)
	}
	if string(h[:len(magic)]) != magic {
		return nil, 0, "", errors.New("not a parley cluster connection")
	}
	kind, n := h[len(magic)], int(h[len(magic)+1])
	if kind != connRaft && kind != connMesh && kind != connRPC || n > maxIDLength {
		return nil, 0, "", errors.New("bad cluster header")
	}
	id := make([]byte, n)
	if _, err := io.ReadFull(conn, id); err != nil {
		return nil, 0, "", fmt.Errorf("no cluster header: %w", err)
	}
	if _, err := conn.Write([]byte{headerAck}); err != nil {
		return nil, 0, "", err
	}
	raw.SetDeadline(time.Time{})
	return conn, kind, string(id), nil
}

// dial connects to a node's cluster listener and sends the header.
func (c *Cluster) dial(ctx context.Context, addr string, kind byte) (*tls.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	raw.SetDeadline(time.Now().Add(HandshakeTimeout))
	conn := tls.Client(raw, c.clientTLS())
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, explainTLS(err)
	}
	id := c.ID()
	h := append([]byte(magic), kind, byte(len(id)))
	h = append(h, id...)
	if _, err := conn.Write(h); err != nil {
		raw.Close()
		return nil, explainTLS(err)
	}
	var ack [1]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil || ack[0] != headerAck {
		raw.Close()
		if err == nil {
			err = errors.New("bad answer to the cluster header")
		}
		return nil, explainTLS(err)
	}
	raw.SetDeadline(time.Time{})
	return conn, nil
}

var errNoTrust = errors.New("this node has no cluster trust bundle: xmpp cluster trust <bundle> first")

// errUntrusted is a peer certificate the trust bundle does not cover.
var errUntrusted = errors.New("certificate not covered by the cluster trust bundle")

// explainTLS turns TLS failures into what the admin must do.
func explainTLS(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, errUntrusted) {
		return err
	}
	s := err.Error()
	switch {
	case strings.Contains(s, "tls: bad certificate"), strings.Contains(s, "tls: unknown certificate authority"),
		strings.Contains(s, "tls: certificate required"):
		return fmt.Errorf("the other node refused this node's certificate: its cluster trust bundle does not cover it (%v)", err)
	}
	return err
}

func (c *Cluster) certificate() (*tls.Certificate, error) {
	if c.cfg.Certificate == nil {
		return nil, errors.New("this node has no certificate for the cluster: xmpp certs first")
	}
	cert, err := c.cfg.Certificate()
	if err != nil {
		return nil, err
	}
	if cert == nil {
		return nil, errors.New("this node has no certificate for the cluster: xmpp certs first")
	}
	return cert, nil
}

func (c *Cluster) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,                     // every connection verified in full
		ClientAuth:             tls.RequireAnyClientCert, // verified against the bundle below
		GetCertificate:         func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.certificate() },
		VerifyPeerCertificate:  c.verifyPeer,
	}
}

func (c *Cluster) clientTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Nodes are known by their certificates' chain to the bundle, not
		// by host names: verified in VerifyPeerCertificate.
		InsecureSkipVerify:    true,
		GetClientCertificate:  func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c.certificate() },
		VerifyPeerCertificate: c.verifyPeer,
	}
}

// verifyPeer checks that the peer's certificate chains to the trust
// bundle (both directions).
func (c *Cluster) verifyPeer(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	if len(rawCerts) == 0 {
		return fmt.Errorf("no certificate presented: %w", errUntrusted)
	}
	var pool *x509.CertPool
	if c.cfg.Trust != nil {
		p, err := c.cfg.Trust()
		if err != nil {
			return fmt.Errorf("reading the cluster trust bundle: %w", err)
		}
		pool = p
	}
	if pool == nil {
		return errNoTrust
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		cert, err := x509.ParseCertificate(raw)
		if err != nil {
			return fmt.Errorf("bad peer certificate: %w", err)
		}
		certs[i] = cert
	}
	inter := x509.NewCertPool()
	for _, cert := range certs[1:] {
		inter.AddCert(cert)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("%w: %q issued by %q (%v)", errUntrusted, certs[0].Subject.String(), certs[0].Issuer.String(), err)
	}
	return nil
}

// streamLayer is raft's network stream over the cluster listener.
type streamLayer struct {
	c     *Cluster
	addr  net.Addr
	conns chan net.Conn

	mu     sync.Mutex
	open   map[*streamConn]struct{} // closed with the stream
	once   sync.Once
	closed chan struct{}
}

// streamConn is a raft connection the stream closes when it closes (raft
// leaves accepted connections to their readers).
type streamConn struct {
	net.Conn
	s    *streamLayer
	once sync.Once
}

func (sc *streamConn) Close() error {
	sc.once.Do(func() {
		sc.s.mu.Lock()
		delete(sc.s.open, sc)
		sc.s.mu.Unlock()
	})
	return sc.Conn.Close()
}

func (s *streamLayer) track(conn net.Conn) (net.Conn, bool) {
	sc := &streamConn{Conn: conn, s: s}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closed:
		return nil, false
	default:
	}
	s.open[sc] = struct{}{}
	return sc, true
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func (l *listener) newStream() *streamLayer {
	s := &streamLayer{c: l.c, addr: advertiseAddr(l.c.advertise()), conns: make(chan net.Conn, 16), open: map[*streamConn]struct{}{}, closed: make(chan struct{})}
	l.mu.Lock()
	old := l.stream
	l.stream = s
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return s
}

// give hands an accepted raft connection to raft.
func (s *streamLayer) give(conn net.Conn) bool {
	conn, ok := s.track(conn)
	if !ok {
		return false
	}
	t := time.NewTimer(HandshakeTimeout)
	defer t.Stop()
	select {
	case s.conns <- conn:
		return true
	case <-s.closed:
	case <-t.C:
	}
	return false
}

func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case conn := <-s.conns:
		return conn, nil
	case <-s.closed:
		return nil, errors.New("cluster: raft's stream is closed")
	}
}

// closeConns closes raft's connections (raft makes them again).
func (s *streamLayer) closeConns() {
	s.mu.Lock()
	open := s.open
	s.open = map[*streamConn]struct{}{}
	s.mu.Unlock()
	for sc := range open {
		sc.Conn.Close()
	}
}

func (s *streamLayer) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		close(s.closed)
		open := s.open
		s.open = map[*streamConn]struct{}{}
		s.mu.Unlock()
		for sc := range open {
			sc.Conn.Close()
		}
	})
	return nil
}

func (s *streamLayer) Addr() net.Addr { return s.addr }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), max(timeout, time.Second))
	defer cancel()
	conn, err := s.c.dial(ctx, string(address), connRaft)
	if err != nil {
		return nil, err
	}
	tc, ok := s.track(conn)
	if !ok {
		conn.Close()
		return nil, errors.New("cluster: raft's stream is closed")
	}
	return tc, nil
}

// advertiseAddr is a net.Addr for the advertised address (raft only
// prints it and uses its String).
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }
