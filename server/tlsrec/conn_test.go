package tlsrec

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func testConfig(t testing.TB) *tls.Config {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "example.lan"},
		DNSNames: []string{"example.lan"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	Prepare(cfg)
	return cfg
}

// pair accepts one connection on loopback and hands the server side to
// srv (after Server) while the client side is dialed with ccfg.
func pair(t *testing.T, cfg *tls.Config, ccfg *tls.Config) (net.Conn, *tls.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			ch <- res{nil, err}
			return
		}
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		c, _, err := Server(raw, cfg)
		if err == nil {
			raw.SetDeadline(time.Time{})
		}
		ch <- res{c, err}
	}()
	if ccfg == nil {
		ccfg = &tls.Config{InsecureSkipVerify: true}
	}
	cc, err := tls.Dial("tcp", ln.Addr().String(), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { cc.Close(); r.c.Close() })
	return r.c, cc
}

// echo reads lines from c and writes each back with "echo: " before it,
// until it has echoed max lines (0: until the end).
func echo(c net.Conn, max int) {
	br := bufio.NewReader(c)
	for i := 1; ; i++ {
		l, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := c.Write([]byte("echo: " + l)); err != nil || i == max {
			return
		}
	}
}

func TestTakeoverWithGoClient(t *testing.T) {
	for _, tickets := range []bool{true, false} {
		cfg := testConfig(t)
		cfg.SessionTicketsDisabled = !tickets
		sc, cc := pair(t, cfg, nil)
		c, ok := sc.(*Conn)
		if !ok {
			t.Fatalf("tickets %v: a TLS 1.3 connection came back as %T", tickets, sc)
		}
		if cc.ConnectionState().Version != tls.VersionTLS13 {
			t.Fatal("not TLS 1.3")
		}
		echoed := make(chan bool)
		go func() { echo(c, 51); echoed <- true }()
		br := bufio.NewReader(cc)
		// Small lines both ways, then data larger than a record each way.
		for i := 0; i < 50; i++ {
			cc.Write([]byte("line\n"))
			l, err := br.ReadString('\n')
			if err != nil || l != "echo: line\n" {
				t.Fatalf("tickets %v, round %d: %q, %v", tickets, i, l, err)
			}
		}
		big := bytes.Repeat([]byte("0123456789abcdef"), 10000) // 160 kB: ten records
		cc.Write(append(big, '\n'))
		l, err := br.ReadString('\n')
		if err != nil || l != "echo: "+string(big)+"\n" {
			t.Fatalf("tickets %v: the large line came back as %d bytes, %v", tickets, len(l), err)
		}
		// Quiet: the buffer went back, and comes again with the next record.
		<-echoed
		if c.Buffered() || c.rbuf != nil {
			t.Fatal("input is still buffered after everything was read")
		}
	}
}

func TestCloseNotifyBothWays(t *testing.T) {
	cfg := testConfig(t)
	sc, cc := pair(t, cfg, nil)
	// The client closes: the server reads EOF.
	cc.Write([]byte("bye"))
	cc.Close()
	b, err := io.ReadAll(sc)
	if err != nil || string(b) != "bye" {
		t.Fatalf("server read %q, %v; want bye and a clean EOF", b, err)
	}
	// The server closes: the client reads a clean EOF (close_notify).
	sc2, cc2 := pair(t, cfg, nil)
	sc2.Write([]byte("hello"))
	sc2.Close()
	b, err = io.ReadAll(cc2)
	if err != nil || string(b) != "hello" {
		t.Fatalf("client read %q, %v; want hello and a clean EOF", b, err)
	}
}

func TestTLS12StaysCryptoTLS(t *testing.T) {
	cfg := testConfig(t)
	sc, cc := pair(t, cfg, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if _, ok := sc.(*tls.Conn); !ok {
		t.Fatalf("a TLS 1.2 connection came back as %T, want *tls.Conn", sc)
	}
	go echo(sc, 0)
	cc.Write([]byte("x\n"))
	l, err := bufio.NewReader(cc).ReadString('\n')
	if err != nil || l != "echo: x\n" {
		t.Fatalf("%q %v", l, err)
	}
}

// mangler lets a test rewrite what the client sends once the handshake is
// done: after skip bytes written, f sees every write.
type mangler struct {
	net.Conn
	on bool
	f  func([]byte) []byte
}

func (m *mangler) Write(b []byte) (int, error) {
	if m.on {
		if _, err := m.Conn.Write(m.f(bytes.Clone(b))); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return m.Conn.Write(b)
}

// serveOne accepts one connection on loopback and runs Server on it; it
// returns the client's raw connection and where the server's comes (nil
// if the handshake failed).
func serveOne(t *testing.T) (net.Conn, <-chan net.Conn) {
	t.Helper()
	cfg := testConfig(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan net.Conn, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			ch <- nil
			return
		}
		c, _, err := Server(raw, cfg)
		if err != nil {
			ch <- nil
			return
		}
		ch <- c
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return raw, ch
}

// badClient makes a TLS 1.3 client whose records after the handshake f
// rewrites, and returns the server's Conn.
func badClient(t *testing.T, f func([]byte) []byte) (*Conn, *tls.Conn, *mangler) {
	t.Helper()
	raw, ch := serveOne(t)
	m := &mangler{Conn: raw, f: f}
	cc := tls.Client(m, &tls.Config{InsecureSkipVerify: true})
	if err := cc.Handshake(); err != nil {
		t.Fatal(err)
	}
	sc := <-ch
	if sc == nil {
		t.Fatal("server handshake failed")
	}
	t.Cleanup(func() { cc.Close(); sc.Close() })
	m.on = true
	return sc.(*Conn), cc, m
}

func TestBadRecords(t *testing.T) {
	cases := []struct {
		name  string
		f     func([]byte) []byte
		alert uint8
	}{
		{"a flipped bit", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }, alertBadRecordMAC},
		{"a plaintext record type", func(b []byte) []byte { b[0] = 22; return b }, alertUnexpectedMessage},
		{"an oversized length", func(b []byte) []byte { b[3], b[4] = 0x48, 0x01; return b }, alertRecordOverflow},
	}
	for _, tc := range cases {
		sc, cc, _ := badClient(t, tc.f)
		cc.Write([]byte("hello"))
		sc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := sc.Read(make([]byte, 100))
		var ae *AlertError
		if !errors.As(err, &ae) || ae.Alert != tc.alert || ae.Remote {
			t.Errorf("%s: %v, want alert %d", tc.name, err, tc.alert)
		}
		// The client is told: its next read fails with that alert.
		cc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := cc.Read(make([]byte, 10)); err == nil || !strings.Contains(err.Error(), "remote error") {
			t.Errorf("%s: the client read %v, want the alert", tc.name, err)
		}
		// And the error sticks.
		if _, err2 := sc.Read(make([]byte, 10)); err2 == nil {
			t.Errorf("%s: a second read succeeded", tc.name)
		}
	}
}

// forger is a client record layer of the test's own, on the raw
// connection under a crypto/tls client that did the handshake: it sends
// what crypto/tls never would.
type forger struct {
	raw     net.Conn
	in, out half
	br      *bufio.Reader
}

func forge(t *testing.T) (*Conn, *forger) {
	t.Helper()
	raw, ch := serveOne(t)
	var kl keyLog
	cc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, KeyLogWriter: &kl})
	if err := cc.Handshake(); err != nil {
		t.Fatal(err)
	}
	sc, _ := (<-ch).(*Conn)
	if sc == nil {
		t.Fatal("no takeover")
	}
	t.Cleanup(func() { raw.Close(); sc.Close() })
	f := &forger{raw: raw, br: bufio.NewReader(raw)}
	su := suiteByID(cc.ConnectionState().CipherSuite)
	f.out.set(su, kl.client)
	f.in.set(su, kl.server)
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	sc.SetDeadline(time.Now().Add(10 * time.Second))
	return sc, f
}

// send seals inner (the content and its type byte, padding included).
func (f *forger) send(t *testing.T, inner []byte) {
	a, _ := f.out.cipher()
	nonce := f.out.nonce()
	hdr := []byte{typeData, 3, 3, 0, 0}
	hdr[3], hdr[4] = byte((len(inner)+16)>>8), byte(len(inner)+16)
	rec := a.Seal(append([]byte(nil), hdr...), nonce, inner, hdr)
	f.out.seq++
	if _, err := f.raw.Write(rec); err != nil {
		t.Fatal(err)
	}
}

// recv opens the server's next record: its content and type.
func (f *forger) recv(t *testing.T) ([]byte, byte) {
	hdr := make([]byte, headerLen)
	if _, err := io.ReadFull(f.br, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(f.br, body); err != nil {
		t.Fatal(err)
	}
	a, _ := f.in.cipher()
	nonce := f.in.nonce()
	p, err := a.Open(nil, nonce, body, hdr)
	if err != nil {
		t.Fatalf("a server record does not open: %v", err)
	}
	f.in.seq++
	i := len(p) - 1
	for p[i] == 0 {
		i--
	}
	return p[:i], p[i]
}

// recvData skips the session ticket and returns the next record.
func (f *forger) recvData(t *testing.T) ([]byte, byte) {
	for {
		p, typ := f.recv(t)
		if typ == typeHandshake && p[0] == msgNewSessionTicket {
			continue
		}
		return p, typ
	}
}

func readErr(c *Conn) error {
	_, err := c.Read(make([]byte, 100))
	return err
}

func wantAlert(t *testing.T, what string, err error, a uint8) {
	t.Helper()
	var ae *AlertError
	if !errors.As(err, &ae) || ae.Alert != a {
		t.Fatalf("%s: %v, want alert %d", what, err, a)
	}
}

func TestKeyUpdateFromClient(t *testing.T) {
	sc, f := forge(t)
	f.send(t, []byte{msgKeyUpdate, 0, 0, 1, 1, typeHandshake}) // update_requested
	f.out.update()
	f.send(t, []byte("after\x17"))
	b := make([]byte, 100)
	n, err := sc.Read(b)
	if err != nil || string(b[:n]) != "after" {
		t.Fatalf("data after a KeyUpdate: %q %v", b[:n], err)
	}
	// The server answered with a KeyUpdate of its own before its data.
	sc.Write([]byte("reply"))
	p, typ := f.recvData(t)
	if typ != typeHandshake || !bytes.Equal(p, []byte{msgKeyUpdate, 0, 0, 1, 0}) {
		t.Fatalf("the server's answer: type %d %x, want its KeyUpdate", typ, p)
	}
	f.in.update()
	p, typ = f.recv(t)
	if typ != typeData || string(p) != "reply" {
		t.Fatalf("after the server's KeyUpdate: type %d %q", typ, p)
	}
}

func TestForgedRecords(t *testing.T) {
	cases := []struct {
		name  string
		send  func(t *testing.T, f *forger)
		alert uint8
	}{
		{"17 empty records", func(t *testing.T, f *forger) {
			for i := 0; i < 17; i++ {
				f.send(t, []byte{typeData})
			}
		}, alertUnexpectedMessage},
		{"17 user_canceled alerts", func(t *testing.T, f *forger) {
			for i := 0; i < 17; i++ {
				f.send(t, []byte{1, alertUserCanceled, typeAlert})
			}
		}, alertUnexpectedMessage},
		{"only padding", func(t *testing.T, f *forger) { f.send(t, []byte{0, 0, 0}) }, alertUnexpectedMessage},
		{"a KeyUpdate with data after it", func(t *testing.T, f *forger) {
			f.send(t, []byte{msgKeyUpdate, 0, 0, 1, 0, msgKeyUpdate, 0, 0, 1, 0, typeHandshake})
		}, alertUnexpectedMessage},
		{"a bad KeyUpdate value", func(t *testing.T, f *forger) {
			f.send(t, []byte{msgKeyUpdate, 0, 0, 1, 7, typeHandshake})
		}, alertDecodeError},
		{"a session ticket from the client", func(t *testing.T, f *forger) {
			f.send(t, []byte{msgNewSessionTicket, 0, 0, 1, 0, typeHandshake})
		}, alertUnexpectedMessage},
		{"a handshake message cut short", func(t *testing.T, f *forger) {
			f.send(t, []byte{msgKeyUpdate, 0, 0, 9, 0, typeHandshake})
		}, alertUnexpectedMessage},
		{"an unknown content type", func(t *testing.T, f *forger) { f.send(t, []byte{'x', 99}) }, alertUnexpectedMessage},
		{"more than 16 KiB of data", func(t *testing.T, f *forger) {
			f.send(t, append(make([]byte, maxPlaintext+1), typeData))
		}, alertRecordOverflow},
	}
	for _, tc := range cases {
		sc, f := forge(t)
		tc.send(t, f)
		wantAlert(t, tc.name, readErr(sc), tc.alert)
		// The client is told which.
		p, typ := f.recvData(t)
		if typ != typeAlert || len(p) != 2 || p[1] != tc.alert {
			t.Fatalf("%s: the client got type %d %x, want alert %d", tc.name, typ, p, tc.alert)
		}
	}
}

func TestAlertsFromClient(t *testing.T) {
	sc, f := forge(t)
	f.send(t, []byte("data\x17"))
	f.send(t, []byte{1, alertUserCanceled, typeAlert}) // ignored
	f.send(t, []byte{1, alertCloseNotify, typeAlert})
	b, err := io.ReadAll(sc)
	if err != nil || string(b) != "data" {
		t.Fatalf("%q %v: want the data and a clean EOF", b, err)
	}
	sc, f = forge(t)
	f.send(t, []byte{2, 40, typeAlert}) // handshake_failure
	var ae *AlertError
	if err := readErr(sc); !errors.As(err, &ae) || !ae.Remote || ae.Alert != 40 {
		t.Fatalf("%v, want the peer's alert 40", err)
	}
}

// Against OpenSSL's client: every TLS 1.3 cipher suite, and KeyUpdate
// both ways (s_client sends one for "k" and asks for ours with "K").
func TestOpenSSLClient(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed")
	}
	for _, suite := range []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"} {
		t.Run(suite, func(t *testing.T) {
			cfg := testConfig(t)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan string, 1)
			go func() {
				raw, err := ln.Accept()
				if err != nil {
					got <- err.Error()
					return
				}
				raw.SetDeadline(time.Now().Add(20 * time.Second))
				c, _, err := Server(raw, cfg)
				if err != nil {
					got <- err.Error()
					return
				}
				if _, ok := c.(*Conn); !ok {
					got <- "not taken over"
					return
				}
				br := bufio.NewReader(c)
				var lines []string
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						break
					}
					lines = append(lines, strings.TrimSpace(l))
					c.Write([]byte("echo:" + l))
				}
				c.Close()
				got <- strings.Join(lines, ",")
			}()
			dir := t.TempDir()
			in := filepath.Join(dir, "in")
			// s_client reads its commands and lines from stdin; a pause
			// between them lets each be a record of its own.
			script := "one\nk\ntwo\nK\nthree\n"
			os.WriteFile(in, []byte(script), 0o600)
			cmd := exec.Command("sh", "-c", `(for l in one k two K three; do echo $l; sleep 0.3; done; sleep 0.5) | `+openssl+
				` s_client -connect `+ln.Addr().String()+` -tls1_3 -ciphersuites `+suite+` -servername example.lan 2>&1`)
			out, _ := cmd.CombinedOutput()
			s := <-got
			if s != "one,two,three" {
				t.Fatalf("server read %q\nopenssl said:\n%s", s, out)
			}
			for _, w := range []string{"echo:one", "echo:two", "echo:three", "KEYUPDATE", suite} {
				if !strings.Contains(string(out), w) {
					t.Fatalf("openssl output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestPark(t *testing.T) {
	cfg := testConfig(t)
	sc, cc := pair(t, cfg, nil)
	c := sc.(*Conn)
	woke := make(chan error, 1)
	fn := func(err error) { woke <- err }

	// Input already there: not parked, fn not called.
	cc.Write([]byte("early"))
	time.Sleep(50 * time.Millisecond)
	if parked, err := c.Park(fn); parked || err != nil {
		t.Fatalf("parked with input waiting: %v %v", parked, err)
	}
	b := make([]byte, 10)
	if n, _ := c.Read(b); string(b[:n]) != "early" {
		t.Fatalf("read %q", b[:n])
	}

	// Parked: no goroutine of its own; input wakes it once.
	if parked, err := c.Park(fn); !parked || err != nil {
		t.Fatalf("not parked: %v", err)
	}
	if Parked() != 1 || c.rbuf != nil || c.in.aead != nil {
		t.Fatalf("parked: %d in the poller, buffer %v, cipher %v", Parked(), c.rbuf != nil, c.in.aead != nil)
	}
	cc.Write([]byte("late"))
	if err := <-woke; err != nil {
		t.Fatalf("woken with %v", err)
	}
	if n, _ := c.Read(b); string(b[:n]) != "late" {
		t.Fatalf("read %q", b[:n])
	}
	select {
	case err := <-woke:
		t.Fatalf("woken twice (%v)", err)
	case <-time.After(100 * time.Millisecond):
	}

	// The read deadline wakes it with os.ErrDeadlineExceeded.
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if parked, _ := c.Park(fn); !parked {
		t.Fatal("not parked")
	}
	if err := <-woke; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("deadline: woken with %v", err)
	}
	c.SetReadDeadline(time.Time{})

	// Parked again (the socket is re-armed), then closed: woken with
	// net.ErrClosed, and the client gets close_notify.
	if parked, _ := c.Park(fn); !parked {
		t.Fatal("not parked again")
	}
	c.Close()
	if err := <-woke; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("close: woken with %v", err)
	}
	if _, err := cc.Read(b); err != io.EOF {
		t.Fatalf("the client read %v, want EOF", err)
	}
	if Parked() != 0 {
		t.Fatalf("%d still in the poller", Parked())
	}
}

func TestParkPeerGone(t *testing.T) {
	cfg := testConfig(t)
	sc, cc := pair(t, cfg, nil)
	c := sc.(*Conn)
	woke := make(chan error, 1)
	if parked, _ := c.Park(func(err error) { woke <- err }); !parked {
		t.Fatal("not parked")
	}
	cc.NetConn().Close() // no close_notify: a hang-up
	select {
	case err := <-woke:
		if err != nil {
			t.Fatalf("woken with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a hang-up did not wake the parked connection")
	}
	if _, err := c.Read(make([]byte, 10)); err == nil {
		t.Fatal("read after a hang-up succeeded")
	}
}

// Many parked connections cost no goroutine each, and every one wakes.
func TestParkMany(t *testing.T) {
	cfg := testConfig(t)
	const n = 200
	var servers []*Conn
	var clients []*tls.Conn
	for i := 0; i < n; i++ {
		sc, cc := pair(t, cfg, nil)
		servers = append(servers, sc.(*Conn))
		clients = append(clients, cc)
	}
	woke := make(chan int, n)
	before := runtime.NumGoroutine()
	for i, c := range servers {
		i := i
		if parked, err := c.Park(func(error) { woke <- i }); !parked {
			t.Fatalf("%d not parked: %v", i, err)
		}
	}
	if g := runtime.NumGoroutine(); g > before+2 {
		t.Fatalf("%d goroutines for %d parked connections (%d before)", g, n, before)
	}
	for _, cc := range clients {
		cc.Write([]byte("x"))
	}
	seen := map[int]bool{}
	for len(seen) < n {
		select {
		case i := <-woke:
			seen[i] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d woke", len(seen), n)
		}
	}
}

// A client that resumes with the ticket it got is taken over as well.
func TestResumption(t *testing.T) {
	cfg := testConfig(t)
	ccfg := &tls.Config{InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	for i := 0; i < 2; i++ {
		sc, cc := pair(t, cfg, ccfg)
		if _, ok := sc.(*Conn); !ok {
			t.Fatalf("connection %d: %T", i, sc)
		}
		go echo(sc, 1)
		cc.Write([]byte("hi\n"))
		l, err := bufio.NewReader(cc).ReadString('\n')
		if err != nil || l != "echo: hi\n" {
			t.Fatalf("connection %d: %q %v", i, l, err)
		}
		if resumed := cc.ConnectionState().DidResume; resumed != (i == 1) {
			t.Fatalf("connection %d: resumed %v", i, resumed)
		}
	}
}

// Deadlines of parked connections fire in their order, once each; a
// connection woken by input before its deadline is not woken again by it.
func TestParkDeadlines(t *testing.T) {
	cfg := testConfig(t)
	type woke struct {
		i   int
		err error
	}
	ch := make(chan woke, 10)
	var clients []*tls.Conn
	start := time.Now()
	for i, d := range []time.Duration{300, 100, 200, 150} {
		sc, cc := pair(t, cfg, nil)
		clients = append(clients, cc)
		c := sc.(*Conn)
		c.SetReadDeadline(start.Add(d * time.Millisecond))
		if parked, err := c.Park(func(err error) { ch <- woke{i, err} }); !parked {
			t.Fatalf("%d not parked: %v", i, err)
		}
	}
	clients[3].Write([]byte("x")) // before its deadline at 150 ms
	var order []int
	for len(order) < 4 {
		select {
		case w := <-ch:
			if w.i == 3 {
				if w.err != nil {
					t.Fatalf("the connection with input woke with %v", w.err)
				}
			} else if !errors.Is(w.err, os.ErrDeadlineExceeded) {
				t.Fatalf("%d woke with %v", w.i, w.err)
			}
			order = append(order, w.i)
		case <-time.After(5 * time.Second):
			t.Fatalf("woken: %v", order)
		}
	}
	if fmt.Sprint(order) != "[3 1 2 0]" {
		t.Fatalf("woken in the order %v, want [3 1 2 0]", order)
	}
	select {
	case w := <-ch:
		t.Fatalf("%d woken twice (%v)", w.i, w.err)
	case <-time.After(300 * time.Millisecond):
	}
}

// Writing and reading a record allocates nothing once the connection is
// busy (its cipher built, its record buffer taken): the routing path
// pays no garbage for TLS.
func TestNoAllocsPerRecord(t *testing.T) {
	cfg := testConfig(t)
	sc, cc := pair(t, cfg, nil)
	c := sc.(*Conn)
	go io.Copy(io.Discard, cc)
	msg := bytes.Repeat([]byte("x"), 200)
	c.Write(msg) // builds the cipher
	if n := testing.AllocsPerRun(200, func() { c.Write(msg) }); n != 0 {
		t.Errorf("Write: %v allocations per record", n)
	}
	go func() {
		for i := 0; i < 400; i++ {
			cc.Write(msg)
		}
	}()
	buf := make([]byte, 100)
	c.Read(buf)
	if n := testing.AllocsPerRun(200, func() { c.Read(buf) }); n != 0 {
		t.Errorf("Read: %v allocations per call", n)
	}
}
