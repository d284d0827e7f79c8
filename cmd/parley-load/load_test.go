package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/store"
)

// loadServer starts an in-process engine hosting domain with users
// user0..user{n-1} (password load-password-1) on a free port of
// 127.0.0.1, as `parley serve` wires it, and returns its address.
func loadServer(t *testing.T, domain string, n int) string {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	area, err := pki.OpenArea(filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, crtPEM, err := pki.SelfSignedServer(domain, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	area.WriteFile(domain+".key", keyPEM, 0o600, false)
	area.WriteFile(domain+".crt", crtPEM, 0o644, false)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	var accounts []store.Account
	for i := 0; i < n; i++ {
		a, err := store.NewAccount(fmt.Sprintf("user%d@%s", i, domain), "load-password-1")
		if err != nil {
			t.Fatal(err)
		}
		accounts = append(accounts, a)
	}
	if err := st.SetLocal(store.XMPPListen, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if err := st.SetLocal(store.XMPPEnabled, "true"); err != nil { // node-local
		t.Fatal(err)
	}
	ops := []store.Op{
		store.DomainPrimary{Name: domain, Certs: &store.Domain{Name: domain, Key: domain + ".key", Cert: domain + ".crt"}},
		store.ConfigSet{Key: store.XMPPPortC2S, Value: port},
		store.ConfigSet{Key: store.XMPPPortC2STLS, Value: "0"},
		store.ConfigSet{Key: store.XMPPPortS2S, Value: "0"},
		store.AccountCreate{Accounts: accounts},
	}
	for _, op := range ops {
		if _, err := st.ProposeSettled(context.Background(), op); err != nil {
			t.Fatalf("%s: %v", op.Kind(), err)
		}
	}
	eng := server.New(server.Config{Store: st, Files: area, Version: "test", Log: logging.Discard()})
	eng.Start()
	t.Cleanup(func() { eng.Stop(); area.Close(); st.Close() })
	addr := net.JoinHostPort("127.0.0.1", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("the engine does not listen on %s: %+v", addr, eng.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLoadRun(t *testing.T) {
	const users, messages = 20, 20
	addr := loadServer(t, "load.lan", users)
	for _, tc := range []struct {
		mech   string
		window int
	}{
		{"PLAIN", 32},
		{"SCRAM-SHA-1", 1},
		{"SCRAM-SHA-256", 7},
	} {
		t.Run(tc.mech, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := []string{"--addr", addr, "--domain", "load.lan", "--users", fmt.Sprint(users), "--messages", fmt.Sprint(messages),
				"--sasl", tc.mech, "--window", fmt.Sprint(tc.window), "--server-pid", fmt.Sprint(os.Getpid()), "--settle", "0", "--timeout", "30s"}
			if err := loadCmd(args, &stdout, &stderr); err != nil {
				t.Fatalf("load: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
			}
			out := stdout.String()
			for _, want := range []string{
				"sessions:           20 logged in (STARTTLS, " + tc.mech + ")",
				"messages:           400/400 delivered\n",
				" msgs/s\n", " µs per message (TLS included)\n", " KiB per idle session\n", "anonymous memory:   ", "generator CPU:",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("report lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "first error") {
				t.Errorf("report shows an error:\n%s", out)
			}
		})
	}

	// The numbers themselves, from runLoad.
	cfg := loadConfig{Addr: addr, Domain: "load.lan", Users: users, Messages: messages, UserFormat: "user%d", Password: "load-password-1",
		StartTLS: true, Mechanism: "PLAIN", ServerPID: os.Getpid(), Window: 4, Timeout: 30 * time.Second, Concurrency: 5, Resource: "r"}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	rep, err := runLoad(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sessions != users || rep.Delivered != users*messages || rep.Expected != users*messages || rep.Errors != 0 {
		t.Errorf("sessions %d, delivered %d/%d, errors %d", rep.Sessions, rep.Delivered, rep.Expected, rep.Errors)
	}
	if rep.Wall <= 0 || rep.MsgsPerSec <= 0 || rep.MsgsPerSec > 1e8 {
		t.Errorf("wall %v, %v msgs/s", rep.Wall, rep.MsgsPerSec)
	}
	// The "server" is this process: its RSS is tens of MiB, its CPU per
	// message a few µs to a few ms (ticks of 10 ms over a short run).
	if rep.ServerRSSBefore < 1<<20 || rep.ServerRSSIdle < 1<<20 || rep.ServerRSSBefore > 8<<30 {
		t.Errorf("RSS before %d, idle %d", rep.ServerRSSBefore, rep.ServerRSSIdle)
	}
	if rep.ServerAnonBefore < 1<<20 || rep.ServerAnonBefore >= rep.ServerRSSBefore || rep.ServerAnonIdle < 1<<20 || rep.ServerAnonIdle >= rep.ServerRSSIdle {
		t.Errorf("anonymous memory before %d, idle %d (RSS %d, %d)", rep.ServerAnonBefore, rep.ServerAnonIdle, rep.ServerRSSBefore, rep.ServerRSSIdle)
	}
	if rep.ServerCPU < 0 || rep.CPUPerMsg() > 10*time.Millisecond || rep.GeneratorCPU <= 0 {
		t.Errorf("server CPU %v (%v per message), generator CPU %v", rep.ServerCPU, rep.CPUPerMsg(), rep.GeneratorCPU)
	}
	if rep.ServerCPULogins <= 0 {
		t.Errorf("server CPU for logins %v, want > 0 (20 TLS handshakes and SASL)", rep.ServerCPULogins)
	}
}

// Failures are reported clearly, in bounded time.
func TestLoadErrors(t *testing.T) {
	addr := loadServer(t, "load.lan", 3)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	// A server that accepts and says nothing.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	base := []string{"--domain", "load.lan", "--users", "3", "--messages", "2", "--settle", "0"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no domain", []string{"--users", "3"}, "--domain is required (the XMPP domain of the accounts)"},
		{"one user", []string{"--domain", "d", "--users", "1"}, "--users must be between 2 and 100000, not 1"},
		{"too many", []string{"--domain", "d", "--users", "100001"}, "--users must be between 2 and 100000, not 100001"},
		{"messages", []string{"--domain", "d", "--messages", "0"}, "--messages must be between 1 and 1000000, not 0"},
		{"window", []string{"--domain", "d", "--window", "0"}, "--window must be between 1 and 10000, not 0"},
		{"format", []string{"--domain", "d", "--user-format", "user"}, `--user-format "user" must contain exactly one %d`},
		{"format 2", []string{"--domain", "d", "--user-format", "u%d%s"}, `--user-format "u%d%s" must contain exactly one %d`},
		{"mechanism", []string{"--domain", "d", "--sasl", "DIGEST-MD5"}, `--sasl "DIGEST-MD5": give PLAIN, SCRAM-SHA-1 or SCRAM-SHA-256`},
		{"pid", []string{"--domain", "d", "--server-pid", "999999999"}, "--server-pid 999999999: no such process to measure"},
		{"argument", []string{"--domain", "d", "extra"}, `unexpected argument "extra"`},
		{"refused", append([]string{"--addr", closedAddr}, base...), "connecting to " + closedAddr + ": "},
		{"bad password", append([]string{"--addr", addr, "--password", "wrong-password"}, base...), "@load.lan: authentication failed: <failure xmlns="},
		{"no account", append(append([]string{"--addr", addr}, base...), "--users", "4"), "authentication failed"},
		{"wrong domain", append([]string{"--addr", addr, "--domain", "other.lan"}, base[2:]...), `@other.lan: waiting for stream features: stream error: <stream:error><host-unknown`},
		{"silent server", append([]string{"--addr", mute.Addr().String(), "--timeout", "300ms"}, base...), "waiting for the stream header: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			start := time.Now()
			err := loadCmd(tc.args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q\nstdout:\n%s", err, tc.want, &stdout)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if time.Since(start) > 10*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
		})
	}
}

func TestLoadMakeCSV(t *testing.T) {
	var stdout bytes.Buffer
	if err := loadCmd([]string{"--domain", "load.lan", "--users", "3", "--password", "pw-123456", "--make-csv", "-"}, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := "user0@load.lan,pw-123456\nuser1@load.lan,pw-123456\nuser2@load.lan,pw-123456\n"; stdout.String() != want {
		t.Errorf("CSV:\n%s\nwant:\n%s", &stdout, want)
	}
	file := filepath.Join(t.TempDir(), "users.csv")
	if err := loadCmd([]string{"--domain", "x.lan", "--users", "2", "--user-format", "u-%d", "--make-csv", file}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(file); string(b) != "u-0@x.lan,load-password-1\nu-1@x.lan,load-password-1\n" {
		t.Errorf("CSV file:\n%s", b)
	}
}

// The stream splitter finds the same items however the bytes arrive.
func TestStanzaReader(t *testing.T) {
	stream := `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='a>b' version='1.0'>` +
		`<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>` +
		" \n " +
		`<message to="b@x/r" type='chat' id="q&apos;1"><body a='</body>'>x &lt; y <![CDATA[</message> <b>]]></body><!-- </message> --><x/></message>` +
		`<presence/>` +
		`<message type = "error" id='e'><error type='cancel'/></message>` +
		`</stream:stream>`
	type item struct {
		kind itemKind
		name string
	}
	want := []item{{itemHeader, "stream"}, {itemElement, "features"}, {itemElement, "message"}, {itemElement, "presence"}, {itemElement, "message"}, {itemStreamEnd, ""}}
	for _, rd := range []struct {
		name string
		r    func() io.Reader
	}{
		{"whole", func() io.Reader { return strings.NewReader(stream) }},
		{"byte by byte", func() io.Reader { return iotest.OneByteReader(strings.NewReader(stream)) }},
		{"halves", func() io.Reader { return iotest.HalfReader(strings.NewReader(stream)) }},
	} {
		t.Run(rd.name, func(t *testing.T) {
			s := newStanzaReader(rd.r())
			var got []item
			var els [][]byte
			for {
				k, b, err := s.next()
				if err != nil {
					if err.Error() != "connection closed" {
						t.Fatalf("after %v: %v", got, err)
					}
					break
				}
				got = append(got, item{k, string(elemName(b))})
				els = append(els, bytes.Clone(b))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("items %v, want %v", got, want)
			}
			if m := mechanisms(els[1]); fmt.Sprint(m) != "[PLAIN SCRAM-SHA-1]" {
				t.Errorf("mechanisms %v", m)
			}
			msg := els[2]
			if !bytes.HasSuffix(msg, []byte("<x/></message>")) || attr(msg, "id") != "q'1" || attr(msg, "to") != "b@x/r" || attr(msg, "type") != "chat" {
				t.Errorf("message %s: id %q to %q", msg, attr(msg, "id"), attr(msg, "to"))
			}
			if attr(els[4], "type") != "error" || attr(els[4], "id") != "e" {
				t.Errorf("error message %s: type %q", els[4], attr(els[4], "type"))
			}
		})
	}
	for _, bad := range []struct{ in, want string }{
		{"</stream:stream>", "end tag </stream:stream> before the stream header"},
		{"<stream:stream/>", "empty stream header <stream:stream/>"},
		{"<s><!DOCTYPE x>", "unexpected markup <!DOCTYPE x>"},
		{"<s><a>", "connection closed in the middle of an element"},
	} {
		s := newStanzaReader(strings.NewReader(bad.in))
		var err error
		for err == nil {
			_, _, err = s.next()
		}
		if err.Error() != bad.want {
			t.Errorf("%q: %v, want %s", bad.in, err, bad.want)
		}
	}
	// An element larger than the bound ends the session.
	big := "<s><message><body>" + strings.Repeat("a", maxElementSize+10)
	s := newStanzaReader(strings.NewReader(big))
	if _, _, err := s.next(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.next(); err == nil || !strings.Contains(err.Error(), "an element larger than") {
		t.Errorf("big element: %v", err)
	}
	if got := innerText([]byte("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>dj1h</success>")); got != "dj1h" {
		t.Errorf("innerText %q", got)
	}
}
