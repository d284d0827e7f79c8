package fedcheck

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/resolve"
	"github.com/parley-xmpp/parley/server/resolve/dnstest"
	"github.com/parley-xmpp/parley/server/status"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// t0 is the clock of these tests: certificates are judged at it.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestMain(m *testing.M) {
	now = func() time.Time { return t0 }
	os.Exit(m.Run())
}

// --- certificates -------------------------------------------------------

type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	tls  tls.Certificate
}

var serial int64
var serialMu sync.Mutex

func makeCert(t *testing.T, cn string, names []string, parent *testCert, isCA bool, notAfter time.Time) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serialMu.Lock()
	serial++
	sn := serial
	serialMu.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(sn),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             t0.AddDate(0, -1, 0),
		NotAfter:              notAfter,
		DNSNames:              names,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	parentCert, parentKey := tmpl, key
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	chain := [][]byte{der}
	if parent != nil {
		chain = append(chain, parent.cert.Raw)
	}
	return &testCert{cert: cert, key: key, tls: tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: cert}}
}

// --- a scripted jabber:server peer --------------------------------------

type peerOpts struct {
	cert        *testCert
	from        string
	namespace   string // default jabber:server
	noStartTLS  bool
	directTLS   bool
	external    bool
	dialback    bool
	streamError string
	silent      bool
}

// startPeer listens on 127.0.0.1 and speaks just enough jabber:server.
func startPeer(t *testing.T, o peerOpts) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				servePeer(conn, o)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func servePeer(conn net.Conn, o peerOpts) {
	defer func() { conn.Close() }()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if o.silent {
		io.Copy(io.Discard, conn)
		return
	}
	tlsCfg := &tls.Config{ClientAuth: tls.RequestClientCert}
	if o.cert != nil {
		tlsCfg.Certificates = []tls.Certificate{o.cert.tls}
	}
	if o.directTLS {
		tc := tls.Server(conn, tlsCfg)
		if tc.Handshake() != nil {
			return
		}
		conn = tc
	}
	ns := o.namespace
	if ns == "" {
		ns = "jabber:server"
	}
	from := o.from
	if from == "" {
		from = "b.lan"
	}
	db := ""
	if o.dialback {
		db = "xmlns:db='jabber:server:dialback' " // XEP-0220: a server that does dialback declares it
	}
	header := "<?xml version='1.0'?><stream:stream xmlns='" + ns + "' xmlns:stream='http://etherx.jabber.org/streams' " +
		db + "id='s1' from='" + from + "' version='1.0'>"
	dec := xml.NewDecoder(conn)
	next := func() (xml.StartElement, bool) {
		for {
			tok, err := dec.Token()
			if err != nil {
				return xml.StartElement{}, false
			}
			switch t := tok.(type) {
			case xml.StartElement:
				return t, true
			case xml.EndElement:
				return xml.StartElement{}, false
			}
		}
	}
	if _, ok := next(); !ok {
		return
	}
	io.WriteString(conn, header)
	if o.streamError != "" {
		io.WriteString(conn, "<stream:error><"+o.streamError+" xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"+
			"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>no such \u202ehost</text></stream:error></stream:stream>")
		return
	}
	secure := o.directTLS
	for {
		if !secure && !o.noStartTLS {
			io.WriteString(conn, "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>")
		} else {
			f := "<stream:features>"
			if o.external {
				f += "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>"
			} else if secure {
				f += "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
			}
			if o.dialback {
				f += "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
			}
			io.WriteString(conn, f+"</stream:features>")
		}
		el, ok := next()
		if !ok {
			io.WriteString(conn, "</stream:stream>")
			return
		}
		if el.Name.Local != "starttls" {
			return
		}
		io.WriteString(conn, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
		tc := tls.Server(conn, tlsCfg)
		if tc.Handshake() != nil {
			return
		}
		conn, secure = tc, true
		dec = xml.NewDecoder(conn)
		if _, ok := next(); !ok {
			return
		}
		io.WriteString(conn, header)
	}
}

// closedPort is a TCP port on 127.0.0.1 nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// --- the check ----------------------------------------------------------

func format(steps []status.Step) string {
	var b strings.Builder
	for _, s := range steps {
		fmt.Fprintf(&b, "%-4s %s: %s\n", s.Verdict, s.Name, s.Detail)
		if s.Fix != "" {
			fmt.Fprintf(&b, "     fix: %s\n", s.Fix)
		}
	}
	return b.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s: output differs from %s\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}

func TestCheck(t *testing.T) {
	ca := makeCA(t, "Partner CA")
	otherCA := makeCA(t, "Unknown CA")
	good := makeCert(t, "b.lan", []string{"b.lan"}, ca, false, t0.AddDate(1, 0, 0))
	untrusted := makeCert(t, "b.lan", []string{"b.lan"}, otherCA, false, t0.AddDate(1, 0, 0))
	wrongName := makeCert(t, "a.lan", []string{"a.lan", "*.a.lan"}, ca, false, t0.AddDate(1, 0, 0))
	expiring := makeCert(t, "b.lan", []string{"b.lan"}, ca, false, t0.AddDate(0, 0, 10))
	ours := makeCert(t, "a.lan", []string{"a.lan"}, ca, false, t0.AddDate(1, 0, 0))
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)

	full := peerOpts{cert: good, external: true, dialback: true}
	type scenario struct {
		name     string
		peer     *peerOpts // the peer at peer.b.lan:PORT
		records  func(port, closed int) []string
		route    func(port int) string
		secure   bool
		noCert   bool
		auth     func() (status.Auth, error)
		rootsErr bool
		wantOK   bool
	}
	srv := func(port, _ int) []string {
		return []string{
			"_xmpp-client._tcp.b.lan. 60 IN SRV 0 5 5222 peer.b.lan.",
			fmt.Sprintf("_xmpp-server._tcp.b.lan. 60 IN SRV 0 5 %d peer.b.lan.", port),
			"peer.b.lan. 60 IN A 127.0.0.1",
		}
	}
	scenarios := []scenario{
		{name: "ok", peer: &full, records: srv, auth: func() (status.Auth, error) { return status.External, nil }, wantOK: true},
		{name: "untrusted", peer: &peerOpts{cert: untrusted, dialback: true}, records: srv,
			auth: func() (status.Auth, error) { return status.Dialback, nil }, wantOK: true},
		{name: "untrusted-secure", peer: &peerOpts{cert: untrusted, dialback: true}, records: srv, secure: true,
			auth: func() (status.Auth, error) {
				return "", errors.New("b.lan is on the secure list and its certificate does not verify")
			}},
		{name: "wrong-name", peer: &peerOpts{cert: wrongName, dialback: true}, records: srv,
			auth: func() (status.Auth, error) { return status.Dialback, nil }, wantOK: true},
		{name: "expiring", peer: &peerOpts{cert: expiring, external: true}, records: srv, wantOK: true},
		{name: "no-client-cert", peer: &peerOpts{cert: good, dialback: true}, records: srv, noCert: true, rootsErr: true, wantOK: true},
		{name: "no-starttls", peer: &peerOpts{noStartTLS: true, dialback: true}, records: srv, wantOK: true},
		{name: "no-auth-method", peer: &peerOpts{cert: good}, records: srv},
		{name: "direct-tls", peer: &peerOpts{cert: good, directTLS: true, external: true}, wantOK: true,
			records: func(port, _ int) []string {
				return []string{
					fmt.Sprintf("_xmpps-server._tcp.b.lan. 60 IN SRV 0 5 %d peer.b.lan.", port),
					"peer.b.lan. 60 IN A 127.0.0.1",
				}
			}},
		{name: "route", peer: &full, route: func(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) },
			records: func(int, int) []string { return nil }, auth: func() (status.Auth, error) { return status.External, nil }, wantOK: true},
		{name: "stream-error", peer: &peerOpts{streamError: "host-unknown"}, records: srv,
			auth: func() (status.Auth, error) { return "", errors.New("b.lan answered host-unknown") }},
		{name: "client-port", peer: &peerOpts{namespace: "jabber:client"}, records: srv},
		{name: "wrong-host", peer: &peerOpts{cert: good, from: "c.lan", external: true}, records: srv, wantOK: true},
		{name: "no-service", records: func(int, int) []string {
			return []string{"_xmpp-server._tcp.b.lan. 60 IN SRV 0 0 0 ."}
		}},
		{name: "no-address", records: func(int, int) []string {
			return []string{"_xmpp-server._tcp.b.lan. 60 IN SRV 0 5 5269 missing.b.lan."}
		}},
		{name: "refused-then-ok", peer: &full, wantOK: true, records: func(port, closed int) []string {
			// the first target refuses: a warning, and the second one is used.
			return []string{
				"_xmpp-server._tcp.b.lan. 60 IN SRV 0 5 " + strconv.Itoa(closed) + " dead.b.lan.",
				fmt.Sprintf("_xmpp-server._tcp.b.lan. 60 IN SRV 10 5 %d peer.b.lan.", port),
				"dead.b.lan. 60 IN A 127.0.0.1",
				"peer.b.lan. 60 IN A 127.0.0.1",
			}
		}},
		{name: "refused", records: func(_, closed int) []string {
			return []string{
				"_xmpp-server._tcp.b.lan. 60 IN SRV 0 5 " + strconv.Itoa(closed) + " dead.b.lan.",
				"dead.b.lan. 60 IN A 127.0.0.1",
			}
		}},
	}
	// No SRV at all: the domain itself on 5269, at an address where nothing
	// listens (checked below).
	scenarios = append(scenarios, scenario{name: "fallback", records: func(int, int) []string {
		return []string{"b.lan. 60 IN A 127.0.0.254"}
	}})
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			if sc.name == "fallback" {
				if c, err := net.DialTimeout("tcp", "127.0.0.254:5269", time.Second); err == nil {
					c.Close()
					t.Skip("something listens on 127.0.0.254:5269")
				}
			}
			port := 0
			if sc.peer != nil {
				port = startPeer(t, *sc.peer)
			}
			closed := closedPort(t)
			records := sc.records(port, closed)
			dns, err := dnstest.Start("127.0.0.1:0", records...)
			if err != nil {
				t.Fatal(err)
			}
			defer dns.Close()
			cfg := Config{
				Resolver:    &resolve.Resolver{Servers: func() []string { return []string{dns.Addr()} }, Timeout: time.Second},
				Roots:       func() (*x509.CertPool, error) { return roots, nil },
				ClientCert:  func(string) *tls.Certificate { return &ours.tls },
				Secure:      sc.secure,
				DialTimeout: 2 * time.Second,
			}
			if sc.noCert {
				cfg.ClientCert = func(string) *tls.Certificate { return nil }
			}
			if sc.rootsErr {
				cfg.Roots = func() (*x509.CertPool, error) {
					return nil, errors.New("partner.pem: no such file in the files area")
				}
			}
			if sc.route != nil {
				cfg.Route = func(d string) (string, bool) { return sc.route(port), d == "b.lan" }
			}
			if sc.auth != nil {
				cfg.Authenticate = func(ctx context.Context, local, remote string) (status.Auth, error) {
					if local != "a.lan" || remote != "b.lan" {
						t.Errorf("Authenticate(%q, %q)", local, remote)
					}
					return sc.auth()
				}
			}
			var steps []status.Step
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			ok := Run(ctx, cfg, "a.lan", "b.lan", func(s status.Step) { steps = append(steps, s) })
			out := format(steps)
			out = strings.ReplaceAll(out, dns.Addr(), "DNS")
			out = strings.ReplaceAll(out, strconv.Itoa(closed), "CLOSED")
			// Go picks the TLS 1.3 suite by the CPU's AES support.
			for _, suite := range []string{"TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_256_GCM_SHA384"} {
				out = strings.ReplaceAll(out, suite, "SUITE")
			}
			if port != 0 {
				out = strings.ReplaceAll(out, strconv.Itoa(port), "PORT")
			}
			golden(t, "check-"+sc.name, out)
			if ok != sc.wantOK {
				t.Errorf("Run = %v, want %v\n%s", ok, sc.wantOK, out)
			}
			for _, s := range steps {
				if (s.Verdict == status.Fail || s.Verdict == status.Warn) && s.Fix == "" {
					t.Errorf("%s step %q has no fix", s.Verdict, s.Name)
				}
				if (s.Verdict == status.OK || s.Verdict == status.Info) && s.Fix != "" {
					t.Errorf("%s step %q has a fix", s.Verdict, s.Name)
				}
				if strings.ContainsAny(s.Detail+s.Fix, "\x1b\n\r") {
					t.Errorf("step %q carries control characters: %q", s.Name, s.Detail)
				}
				if s.Auth != "" && s.Verdict != status.OK {
					t.Errorf("%s step %q names a way to authenticate, %s", s.Verdict, s.Name, s.Auth)
				}
			}
			// The link set-up's method is the last word on how we authenticate.
			if sc.auth != nil {
				if method, err := sc.auth(); err == nil && steps[len(steps)-1].Auth != method {
					t.Errorf("last step %+v, want Auth %s", steps[len(steps)-1], method)
				}
			}
		})
	}
}

func makeCA(t *testing.T, cn string) *testCert {
	return makeCert(t, cn, nil, nil, true, t0.AddDate(5, 0, 0))
}

func TestCheckBounded(t *testing.T) {
	// A peer that accepts but never speaks, and DNS that never answers:
	// each wait ends within DialTimeout or the context.
	port := startPeer(t, peerOpts{silent: true})
	dns, err := dnstest.Start("127.0.0.1:0",
		fmt.Sprintf("_xmpp-server._tcp.b.lan. 60 IN SRV 0 5 %d peer.b.lan.", port),
		"peer.b.lan. 60 IN A 127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	cfg := Config{
		Resolver:    &resolve.Resolver{Servers: func() []string { return []string{dns.Addr()} }, Timeout: time.Second},
		DialTimeout: 300 * time.Millisecond,
	}
	var steps []status.Step
	start := time.Now()
	ok := Run(context.Background(), cfg, "a.lan", "b.lan", func(s status.Step) { steps = append(steps, s) })
	if took := time.Since(start); ok || took > 3*time.Second {
		t.Errorf("silent peer: ok=%v after %v", ok, took)
	}
	last := steps[len(steps)-1]
	if last.Verdict != status.Fail || !strings.Contains(last.Detail, "no answer within 300ms waiting for the stream header: is this an XMPP server?") {
		t.Errorf("silent peer: last step %+v", last)
	}

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	cfg.Resolver = &resolve.Resolver{Servers: func() []string { return []string{pc.LocalAddr().String()} }, Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	steps = nil
	start = time.Now()
	ok = Run(ctx, cfg, "a.lan", "b.lan", func(s status.Step) { steps = append(steps, s) })
	if took := time.Since(start); ok || took > 3*time.Second {
		t.Errorf("silent DNS: ok=%v after %v", ok, took)
	}
	out := format(steps)
	if !strings.Contains(out, "fail SRV _xmpp-server._tcp.b.lan: DNS server "+pc.LocalAddr().String()+" did not answer") ||
		!strings.Contains(out, "fix: check the DNS servers Parley asks (dns), or use others: dns resolver add <ip[:port]>") {
		t.Errorf("silent DNS:\n%s", out)
	}
}

func TestCheckBadDomain(t *testing.T) {
	var steps []status.Step
	ok := Run(context.Background(), Config{}, "a.lan", "b..lan", func(s status.Step) { steps = append(steps, s) })
	if ok || len(steps) != 1 || steps[0].Name != "domain" || !strings.Contains(steps[0].Detail, "is not a valid domain name") {
		t.Errorf("b..lan: %v %+v", ok, steps)
	}
}

func TestParseRoute(t *testing.T) {
	for in, want := range map[string]string{
		"relay.lan": "relay.lan:5269", "relay.lan:5270": "relay.lan:5270", "10.0.0.1": "10.0.0.1:5269",
		"[2001:db8::1]:5270": "[2001:db8::1]:5270", "2001:db8::1": "[2001:db8::1]:5269",
		"relay.lan:0": "error", "relay.lan:x": "error", ":5269": "error",
	} {
		tg, err := parseRoute(in)
		got := tg.String()
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("parseRoute(%q) = %s (%v), want %s", in, got, err, want)
		}
	}
}

func TestClean(t *testing.T) {
	if got := clean("a\x1b[31mb\nc\u202ed"); got != "a?[31mb c?d" {
		t.Errorf("clean = %q", got)
	}
	if got := clean(strings.Repeat("x", 1000)); len([]rune(got)) != maxText+1 {
		t.Errorf("clean did not bound: %d", len(got))
	}
}
