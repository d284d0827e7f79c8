package shell

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	gossh "golang.org/x/crypto/ssh"

	"github.com/parley-xmpp/parley/commands"
	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/store"
)

// These tests drive the server in-process with Go's SSH and SFTP clients so
// the race detector sees the server's concurrency; e2e/ drives the built
// binary with the real OpenSSH clients.

const adminPassword = "admin-password-1"

type testServer struct {
	addr string
	dir  string
	st   *store.Store
	srv  *Server
}

func start(t *testing.T, maxUpload int64) *testServer {
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
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte(adminPassword+"\n"), 0o600)
	if _, err := Bootstrap(st, pw, ""); err != nil {
		t.Fatal(err)
	}
	key, err := LoadOrCreateHostKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	env := &commands.Env{Store: st, Files: area, Version: "test", Started: time.Now()}
	srv := New(Config{Env: env, Tree: commands.NewTree(), HostKey: key, Log: logging.Discard(), MaxUpload: maxUpload})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() {
		srv.Close()
		area.Close()
		st.Close()
	})
	return &testServer{addr: l.Addr().String(), dir: dir, st: st, srv: srv}
}

func (ts *testServer) dial(t *testing.T, user, password string) (*gossh.Client, error) {
	t.Helper()
	return gossh.Dial("tcp", ts.addr, &gossh.ClientConfig{
		User:            user,
		Auth:            []gossh.AuthMethod{gossh.Password(password)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		Timeout:         10 * time.Second,
	})
}

func (ts *testServer) client(t *testing.T, user, password string) *gossh.Client {
	t.Helper()
	c, err := ts.dial(t, user, password)
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exec runs a command with stdin; it returns stdout, stderr and the exit status.
func exec(t *testing.T, c *gossh.Client, cmd, stdin string) (string, string, int) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr, s.Stdin = &out, &errb, strings.NewReader(stdin)
	if cmd == "" {
		err = s.Shell()
		if err == nil {
			err = s.Wait()
		}
	} else {
		err = s.Run(cmd)
	}
	code := 0
	var ee *gossh.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitStatus()
	} else if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return out.String(), errb.String(), code
}

func TestExecAndScript(t *testing.T) {
	ts := start(t, pki.MaxFileSize)
	c := ts.client(t, "admin", adminPassword)

	out, errs, code := exec(t, c, "version", "")
	if code != 0 || out != "Parley test\n" || errs != "" {
		t.Fatalf("version: %q %q %d", out, errs, code)
	}
	_, errs, code = exec(t, c, "user add", "")
	if code != 1 || !strings.HasPrefix(errs, "user add: missing <name>") || strings.Count(errs, "\n") != 1 {
		t.Fatalf("bad exec: %q %d", errs, code)
	}
	// A secret from the next stdin line.
	if _, errs, code = exec(t, c, "user add bob audit", "bob-password-1\n"); code != 0 {
		t.Fatalf("user add: %q", errs)
	}
	if _, err := ts.dial(t, "bob", "bob-password-1"); err != nil {
		t.Fatalf("bob cannot log in: %v", err)
	}
	// Script mode stops at the first failure.
	out, errs, code = exec(t, c, "", "hostname one\nbogus\nhostname two\n")
	if code != 1 || !strings.Contains(errs, `line 2: unknown command "bogus"`) {
		t.Fatalf("script: %q %q %d", out, errs, code)
	}
	if h := commands.Hostname(ts.st); h != "one" {
		t.Fatalf("hostname = %q: the script went on after the failure", h)
	}
	if out, _, code = exec(t, c, "", "# comment\n\nhostname\n"); code != 0 || out != "one\n" {
		t.Fatalf("script: %q %d", out, code)
	}
}

// dialFrom logs in from a loopback source address with the given methods.
func (ts *testServer) dialFrom(t *testing.T, from, user string, auth ...gossh.AuthMethod) (*gossh.Client, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	conn, err := d.Dial("tcp", ts.addr)
	if err != nil {
		return nil, err
	}
	cc, chans, reqs, err := gossh.NewClientConn(conn, ts.addr, &gossh.ClientConfig{
		User: user, Auth: auth, HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	c := gossh.NewClient(cc, chans, reqs)
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// Failed passwords lock a user's password logins from that address only:
// the same user logs in from elsewhere, and with a key from there.
func TestLoginFailuresAndLockout(t *testing.T) {
	ts := start(t, pki.MaxFileSize)
	if _, err := ts.dial(t, "admin", "wrong"); err == nil {
		t.Fatal("wrong password accepted")
	}
	if _, err := ts.dial(t, "nobody", adminPassword); err == nil {
		t.Fatal("unknown user accepted")
	}
	signer := authorizeKey(t, ts, "admin")
	ts.st.ProposeSettled(context.Background(), store.ConfigSet{Key: store.RuleMaxFailedLogins, Value: "2"})
	for i := 0; i < 2; i++ {
		ts.dialFrom(t, "127.0.0.3", "admin", gossh.Password("wrong"))
	}
	if _, err := ts.dialFrom(t, "127.0.0.3", "admin", gossh.Password(adminPassword)); err == nil {
		t.Fatal("locked password logins from 127.0.0.3 accepted the right password")
	}
	if _, err := ts.dialFrom(t, "127.0.0.1", "admin", gossh.Password(adminPassword)); err != nil {
		t.Fatalf("failures from 127.0.0.3 locked admin out of 127.0.0.1: %v", err)
	}
	if _, err := ts.dialFrom(t, "127.0.0.3", "admin", gossh.PublicKeys(signer)); err != nil {
		t.Fatalf("failed passwords locked admin's key out: %v", err)
	}
	ts.st.ProposeSettled(context.Background(), store.AdminUnlock{Name: "admin"})
	ts.srv.guard.unlock("admin")
	if _, err := ts.dialFrom(t, "127.0.0.3", "admin", gossh.Password(adminPassword)); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
}

// authorizeKey makes a key pair and authorizes it for user.
func authorizeKey(t *testing.T, ts *testServer, user string) gossh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey())))
	if _, err := ts.st.ProposeSettled(context.Background(), store.AdminKeyAdd{Name: user, Line: line}); err != nil {
		t.Fatal(err)
	}
	return signer
}

// Idle unauthenticated connections from one address do not keep others
// out, and are closed at the login grace time.
func TestIdleHoldersAndGraceTime(t *testing.T) {
	ts := start(t, pki.MaxFileSize)
	ts.st.ProposeSettled(context.Background(), store.ConfigSet{Key: store.RuleLoginGraceTime, Value: "2"})
	var holders []net.Conn
	t.Cleanup(func() {
		for _, c := range holders {
			c.Close()
		}
	})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	for i := 0; i < 70; i++ {
		c, err := d.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		holders = append(holders, c)
	}
	// The server reads what is refused and closes it; the admitted ones wait.
	time.Sleep(200 * time.Millisecond)
	if u, _, _ := ts.srv.guard.counts(); u != 5 {
		t.Fatalf("%d unauthenticated connections held, want 5 (per_source_max_startups)", u)
	}
	start := time.Now()
	c, err := ts.dialFrom(t, "127.0.0.1", "admin", gossh.Password(adminPassword))
	if err != nil {
		t.Fatalf("admin kept out by 70 idle connections from another address: %v", err)
	}
	c.Close()
	// The held ones are closed at the grace time (2 s).
	buf := make([]byte, 256)
	h := holders[0]
	h.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, err := h.Read(buf); err != nil {
			break
		}
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("an idle unauthenticated connection stayed %v, grace time 2 s", el)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if u, _, _ := ts.srv.guard.counts(); u == 0 {
			break
		}
		if time.Now().After(deadline) {
			u, s, _ := ts.srv.guard.counts()
			t.Fatalf("after the grace time %d unauthenticated connections from %d sources remain", u, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestExpiredPasswordRefusedInExecMode(t *testing.T) {
	ts := start(t, pki.MaxFileSize)
	ts.st.ProposeSettled(context.Background(), store.AdminExpire{Name: "admin"})
	c := ts.client(t, "admin", adminPassword)
	_, errs, code := exec(t, c, "version", "")
	if code != 1 || !strings.Contains(errs, "password has expired") {
		t.Fatalf("expired password in exec mode: %q %d", errs, code)
	}
}

// Two admins writing at once: every change lands.
func TestConcurrentSessions(t *testing.T) {
	ts := start(t, pki.MaxFileSize)
	c := ts.client(t, "admin", adminPassword)
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var script strings.Builder
			for i := 0; i < 4; i++ {
				fmt.Fprintf(&script, "user add u%d-%d audit\npassword-%d-%d\n", w, i, w, i)
			}
			s, err := c.NewSession()
			if err != nil {
				t.Error(err)
				return
			}
			defer s.Close()
			s.Stdin = strings.NewReader(script.String())
			if out, err := s.CombinedOutput(""); err != nil {
				t.Errorf("script %d: %v %s", w, err, out)
			}
		}(w)
	}
	wg.Wait()
	all, _ := ts.st.Admins()
	if len(all) != 13 {
		t.Fatalf("%d users, want 13", len(all))
	}
}

func TestInteractive(t *testing.T) {
	ts := start(t, pki.MaxFileSize)
	c := ts.client(t, "admin", adminPassword)
	s, in, expect, screen := ptyShell(t, c)
	expect("parley> ")
	io.WriteString(in, "hostname alpha\r")
	expect("alpha> ")
	io.WriteString(in, "user add carol crypto\r")
	expect("Password for carol: ")
	io.WriteString(in, "carol-secret-1\r")
	expect("Retype password: ")
	io.WriteString(in, "carol-secret-1\r")
	io.WriteString(in, "user list\r")
	expect("carol     crypto")
	if strings.Contains(screen(), "carol-secret-1") {
		t.Fatal("the password was echoed")
	}
	io.WriteString(in, "\x04") // Ctrl-D
	if err := s.Wait(); err != nil {
		t.Fatalf("Ctrl-D: %v", err)
	}
	if h, _ := ts.st.History("admin"); len(h) != 3 || h[1] != "user add carol crypto" {
		t.Fatalf("history = %q", h)
	}
}

// A confirmation (commands.Prompter.Ask) is the next stdin line in exec and
// script mode, and a line typed with echo in the interactive shell.
func TestAsk(t *testing.T) {
	ts := start(t, pki.MaxFileSize)
	c := ts.client(t, "admin", adminPassword)
	domain := func() string {
		cfg, _ := ts.st.XMPP()
		if len(cfg.Domains) == 0 {
			return ""
		}
		return cfg.Domains[0].Name
	}
	if _, errs, code := exec(t, c, "xmpp domain example.com", ""); code != 0 {
		t.Fatalf("xmpp domain: %q", errs)
	}
	_, errs, code := exec(t, c, "xmpp reset", "no\n")
	if code != 1 || !strings.Contains(errs, "not confirmed") || domain() != "example.com" {
		t.Fatalf("unconfirmed reset: %q %d, domain %q", errs, code, domain())
	}
	if _, errs, code = exec(t, c, "xmpp reset", ""); code != 1 || !strings.Contains(errs, "standard input ended") {
		t.Fatalf("reset without input: %q %d", errs, code)
	}
	out, errs, code := exec(t, c, "xmpp reset", "reset\n")
	if code != 0 || !strings.Contains(out, "XMPP configuration cleared") || domain() != "" {
		t.Fatalf("reset: %q %q %d", out, errs, code)
	}
	// Script mode: the answer is the line after the command.
	out, errs, code = exec(t, c, "", "xmpp domain example.org\nxmpp reset\nreset\nxmpp domain example.net\n")
	if code != 0 || domain() != "example.net" {
		t.Fatalf("script: %q %q %d, domain %q", out, errs, code, domain())
	}

	// Exec mode at a terminal (ssh -t): the prompt, then the answer shown.
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPty("xterm", 40, 100, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	s.Stdin = strings.NewReader("reset\r")
	tout, err := s.CombinedOutput("xmpp reset")
	s.Close()
	if err != nil || !strings.Contains(string(tout), "Type 'reset' to clear the XMPP configuration: reset\r\n") || domain() != "" {
		t.Fatalf("exec at a terminal: %v %q", err, tout)
	}

	// Interactive: the answer is echoed as it is typed.
	ts.st.ProposeSettled(context.Background(), store.DomainPrimary{Name: "example.com"})
	s, in, expect, _ := ptyShell(t, c)
	expect("parley> ")
	io.WriteString(in, "xmpp reset\r")
	expect("Type 'reset' to clear the XMPP configuration: ")
	io.WriteString(in, "rese")
	expect("configuration: rese")
	io.WriteString(in, "t\r")
	expect("XMPP configuration cleared")
	if domain() != "" {
		t.Error("interactive reset did not clear the domain")
	}
	io.WriteString(in, "\x04")
	if err := s.Wait(); err != nil {
		t.Fatalf("Ctrl-D: %v", err)
	}
	if h, _ := ts.st.History("admin"); len(h) != 1 || h[0] != "xmpp reset" {
		t.Errorf("history = %q: the answer must not be in it", h)
	}
}

// ptyShell opens an interactive shell with a pseudo-terminal. expect waits
// (at most 10 s) until the screen shows want; screen returns all output.
func ptyShell(t *testing.T, c *gossh.Client) (s *gossh.Session, in io.Writer, expect func(want string), screen func() string) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.RequestPty("xterm", 40, 100, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	in, _ = s.StdinPipe()
	var mu sync.Mutex
	var buf bytes.Buffer
	s.Stdout = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(p) })
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	screen = func() string {
		mu.Lock()
		defer mu.Unlock()
		return buf.String()
	}
	expect = func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if strings.Contains(screen(), want) {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("screen never showed %q:\n%q", want, screen())
	}
	return s, in, expect, screen
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestSFTP(t *testing.T) {
	ts := start(t, 64<<10)
	c := ts.client(t, "admin", adminPassword)
	fc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	put := func(name string, data []byte) error {
		f, err := fc.Create(name)
		if err != nil {
			return err
		}
		_, werr := f.Write(data)
		cerr := f.Close()
		if werr != nil {
			return werr
		}
		return cerr
	}
	if err := put("a.pem", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(ts.dir, "files", "a.pem"))
	if err != nil || string(got) != "hello" {
		t.Fatalf("uploaded file: %q %v", got, err)
	}
	// Escapes stay inside the area.
	if err := put("../escape", []byte("x")); err != nil {
		t.Fatalf("../escape: %v", err)
	}
	if _, err := os.Stat(filepath.Join(ts.dir, "escape")); err == nil {
		t.Fatal("../escape was written outside the files area")
	}
	if _, err := fc.Open("/../parley.db"); err == nil {
		t.Fatal("read the store through ..")
	}
	os.Symlink("/etc/passwd", filepath.Join(ts.dir, "files", "passwd"))
	if f, err := fc.Open("passwd"); err == nil {
		b, _ := io.ReadAll(f)
		t.Fatalf("read through an outside symlink: %q", b)
	}
	if err := fc.Symlink("/etc/passwd", "link"); err == nil {
		t.Fatal("symlink created")
	}
	if err := put(".hidden", []byte("x")); err == nil {
		t.Fatal("hidden name accepted")
	}
	// Oversize: fails, and nothing is left, not even a temporary file.
	if err := put("big.bin", make([]byte, 65<<10)); err == nil {
		t.Fatal("oversize upload accepted")
	}
	entries, _ := os.ReadDir(filepath.Join(ts.dir, "files"))
	for _, e := range entries {
		if e.Name() == "big.bin" || strings.HasPrefix(e.Name(), ".tmp-") {
			t.Fatalf("leftover %s after a failed upload", e.Name())
		}
	}
	if err := fc.Rename("a.pem", "b.pem"); err != nil {
		t.Fatal(err)
	}
	list, err := fc.ReadDir("/")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fi := range list {
		names = append(names, fi.Name())
	}
	if strings.Join(names, ",") != "b.pem,escape,passwd" {
		t.Fatalf("listing = %v", names)
	}
	if err := fc.Remove("b.pem"); err != nil {
		t.Fatal(err)
	}

	// The audit role reads but cannot write.
	exec(t, c, "user add aud audit", "aud-password-1\n")
	ac := ts.client(t, "aud", "aud-password-1")
	afc, err := sftp.NewClient(ac)
	if err != nil {
		t.Fatal(err)
	}
	defer afc.Close()
	if f, err := afc.Create("x.pem"); err == nil {
		f.Close()
		t.Fatal("audit role uploaded")
	}
	if _, err := afc.Open("escape"); err != nil {
		t.Fatalf("audit role cannot read: %v", err)
	}
	entriesAudit, _ := ts.st.Audit(20)
	var actions []string
	for _, e := range entriesAudit {
		actions = append(actions, e.Action)
	}
	if !strings.Contains(strings.Join(actions, "|"), "sftp put a.pem (5 bytes)") {
		t.Fatalf("audit lacks the upload: %q", actions)
	}
}

func TestHostKeyStable(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadOrCreateHostKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateHostKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1.PublicKey().Marshal(), k2.PublicKey().Marshal()) || k1.PublicKey().Type() != gossh.KeyAlgoED25519 {
		t.Fatal("host key changed or is not ed25519")
	}
	st, _ := os.Stat(filepath.Join(dir, HostKeyFile))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("host key mode %v", st.Mode().Perm())
	}
}
