// End-to-end tests of the Parley appliance.
//
// How to run (no Makefile needed): from the module root,
//
//	go test ./e2e/
//
// (add -v to see each case, -run TestSFTP to pick some). The tests need the
// OpenSSH client tools /usr/bin/ssh, /usr/bin/sftp and /usr/bin/ssh-keygen
// (Debian package openssh-client) and /usr/bin/openssl (package openssl);
// the XMPP tests (xmpp_*_test.go) also need python3-slixmpp, imported by
// /usr/bin/python3, and go-sendxmpp (make deps installs them all); without
// them the package fails rather than skips. TestMain builds
// ./cmd/parley once into a temporary directory; every test then starts its
// own appliance from that binary on a free 127.0.0.1 port with its own data
// directory, and stops it with SIGTERM when it ends.
//
// This file holds the harness: building, starting, restarting and killing
// the appliance, and running ssh (exec, script and pty sessions) and sftp
// against it.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// The external tools the suite drives.
const (
	sshBin     = "/usr/bin/ssh"
	sftpBin    = "/usr/bin/sftp"
	keygenBin  = "/usr/bin/ssh-keygen"
	opensslBin = "/usr/bin/openssl"
)

// adminPassword is the first admin's password, from --admin-password-file.
const adminPassword = "Admin-pass-2024"

// Bounds on every wait.
const (
	bootTimeout   = 15 * time.Second
	stopTimeout   = 10 * time.Second
	clientTimeout = 60 * time.Second // one ssh or sftp run
	screenTimeout = 10 * time.Second // one expected piece of terminal output
)

var (
	parleyBin  string // the binary under test
	askpassBin string // prints $PARLEY_E2E_PASSWORD: password logins without a terminal
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	tools := map[string]string{sshBin: "openssh-client", sftpBin: "openssh-client", keygenBin: "openssh-client", opensslBin: "openssl"}
	for bin, pkg := range tools {
		if _, err := os.Stat(bin); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %s is missing: install the Debian package %s (apt-get install %s); the end-to-end tests drive the real OpenSSH client\n", bin, pkg, pkg)
			return 1
		}
	}
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		fmt.Fprintf(os.Stderr, "e2e: cannot find the module root (go env GOMOD): %v\n", err)
		return 1
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	tmp, err := os.MkdirTemp("", "parley-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	parleyBin = filepath.Join(tmp, "parley")
	build := exec.Command("go", "build", "-o", parleyBin, "./cmd/parley")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/parley failed: %v\n%s", err, out)
		return 1
	}
	askpassBin = filepath.Join(tmp, "askpass")
	if err := os.WriteFile(askpassBin, []byte("#!/bin/sh\nprintf '%s\\n' \"$PARLEY_E2E_PASSWORD\"\n"), 0o700); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	return m.Run()
}

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// options choose how an appliance starts.
type options struct {
	hostname   string   // --hostname ("" leaves it out)
	noPassword bool     // first boot without --admin-password-file: a generated password
	adminKey   bool     // generate a key pair and pass --admin-key
	maxUpload  int64    // --sftp-max-upload (0 leaves it out)
	nofile     int      // the process's open-file limit, soft and hard (prlimit); 0: inherited
	serveArgs  []string // more arguments to serve (e.g. --xmpp-idle-timeout)
}

// appliance is one running `parley serve` and what it takes to reach it.
type appliance struct {
	t        *testing.T
	work     string // scratch directory for the test
	dataDir  string
	port     string
	args     []string // serve's arguments, after the listen address
	nofile   int      // options.nofile
	password string   // the admin's password when given by file
	key      string   // the admin's private key file, with options.adminKey

	proc   *exec.Cmd
	stdout *syncBuffer // of the current boot
	stderr *syncBuffer
	exited chan struct{}
}

// start boots a new appliance for t, stopped with SIGTERM when t ends.
func start(t *testing.T, o options) *appliance {
	t.Helper()
	work := t.TempDir()
	a := &appliance{t: t, work: work, dataDir: filepath.Join(work, "data"), nofile: o.nofile}
	if !o.noPassword {
		pwFile := filepath.Join(work, "admin-password")
		if err := os.WriteFile(pwFile, []byte(adminPassword+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		a.password = adminPassword
		a.args = append(a.args, "--admin-password-file", pwFile)
	}
	if o.adminKey {
		priv, pub := newKey(t, work, "admin_ed25519")
		a.key = priv
		a.args = append(a.args, "--admin-key", pub)
	}
	if o.hostname != "" {
		a.args = append(a.args, "--hostname", o.hostname)
	}
	if o.maxUpload > 0 {
		a.args = append(a.args, "--sftp-max-upload", fmt.Sprint(o.maxUpload))
	}
	a.args = append(a.args, o.serveArgs...)
	t.Cleanup(a.stop)
	for try := 0; ; try++ {
		a.port = freePort(t)
		err := a.tryBoot()
		if err == nil {
			return a
		}
		// Another test may have taken the port between our probe and the
		// appliance's listen: pick another.
		if try < 3 && strings.Contains(a.stderr.String(), "address already in use") {
			continue
		}
		t.Fatalf("appliance did not start: %v\nstdout:\n%s\nstderr:\n%s", err, a.stdout, a.stderr)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// tryBoot starts the process on a.port and waits until it accepts
// connections and has printed how to log in.
func (a *appliance) tryBoot() error {
	args := append([]string{"serve", "--data-dir", a.dataDir, "--ssh-listen", "127.0.0.1:" + a.port}, a.args...)
	cmd := exec.Command(parleyBin, args...)
	if a.nofile > 0 {
		// prlimit sets the limit and execs parley: the process is parley's.
		cmd = exec.Command("prlimit", append([]string{fmt.Sprintf("--nofile=%d:%d", a.nofile, a.nofile), parleyBin}, args...)...)
	}
	a.stdout, a.stderr = &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = a.stdout, a.stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	a.proc = cmd
	exited := make(chan struct{})
	a.exited = exited
	go func() { cmd.Wait(); close(exited) }()

	deadline := time.Now().Add(bootTimeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("parley exited during boot (%v)", cmd.ProcessState)
		default:
		}
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+a.port, 200*time.Millisecond); err == nil {
			c.Close()
			if strings.Contains(a.stdout.String(), "Log in with") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			a.proc.Process.Kill()
			<-exited
			return fmt.Errorf("parley did not accept connections on port %s within %v", a.port, bootTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// boot starts the appliance again on its port and data directory.
func (a *appliance) boot() {
	a.t.Helper()
	if err := a.tryBoot(); err != nil {
		a.t.Fatalf("appliance did not start: %v\nstdout:\n%s\nstderr:\n%s", err, a.stdout, a.stderr)
	}
}

func (a *appliance) running() bool {
	if a.proc == nil {
		return false
	}
	select {
	case <-a.exited:
		return false
	default:
		return true
	}
}

// stop ends the appliance with SIGTERM (SIGKILL if it does not end in time).
func (a *appliance) stop() {
	if !a.running() {
		return
	}
	a.proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(stopTimeout):
		a.proc.Process.Kill()
		<-a.exited
		a.t.Errorf("parley did not stop within %v of SIGTERM", stopTimeout)
	}
}

// restart stops the appliance and starts it again on the same data directory.
func (a *appliance) restart() {
	a.t.Helper()
	a.stop()
	if code := a.proc.ProcessState.ExitCode(); code != 0 {
		a.t.Errorf("parley exited with status %d after SIGTERM; stderr:\n%s", code, a.stderr)
	}
	a.boot()
}

// kill9 kills the appliance with SIGKILL: no chance to clean up.
func (a *appliance) kill9() {
	a.t.Helper()
	if !a.running() {
		a.t.Fatal("kill9: the appliance is not running")
	}
	a.proc.Process.Kill()
	select {
	case <-a.exited:
	case <-time.After(stopTimeout):
		a.t.Fatal("parley did not die of SIGKILL")
	}
}

// filesDir is the SFTP area on disk.
func (a *appliance) filesDir() string { return filepath.Join(a.dataDir, "files") }

// login says who logs in, and how.
type login struct {
	user     string
	password string   // password login, answered by SSH_ASKPASS
	key      string   // or public key login with this private key file
	opts     []string // extra ssh options; they come first, so they win
}

// asAdmin logs in as the first admin with its password.
func (a *appliance) asAdmin() login { return login{user: "admin", password: a.password} }

// pw logs in as user with a password.
func pw(user, password string) login { return login{user: user, password: password} }

// keyLogin logs in as user with a private key.
func keyLogin(user, key string) login { return login{user: user, key: key} }

// clientOptions are the ssh options every run shares, then the
// authentication options of l.
func (a *appliance) clientOptions(l login) []string {
	args := append([]string{}, l.opts...)
	args = append(args,
		"-F", os.DevNull,
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile="+os.DevNull,
		"-o", "LogLevel=ERROR",
		"-o", "ConnectTimeout=10",
	)
	if l.key != "" {
		args = append(args,
			"-o", "IdentitiesOnly=yes",
			"-o", "IdentityFile="+l.key,
			"-o", "PreferredAuthentications=publickey",
			"-o", "PasswordAuthentication=no",
			"-o", "KbdInteractiveAuthentication=no",
		)
	} else {
		args = append(args,
			"-o", "PreferredAuthentications=password,keyboard-interactive",
			"-o", "PubkeyAuthentication=no",
		)
	}
	return args
}

// clientEnv is the environment of ssh and sftp: the askpass program answers
// password prompts with l's password; no agent.
func clientEnv(l login) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SSH_AUTH_SOCK=") || strings.HasPrefix(kv, "SSH_ASKPASS") || strings.HasPrefix(kv, "PARLEY_E2E_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"SSH_ASKPASS="+askpassBin,
		"SSH_ASKPASS_REQUIRE=force",
		"DISPLAY=:0",
		"PARLEY_E2E_PASSWORD="+l.password,
	)
}

// result is what an ssh or sftp run left.
type result struct {
	stdout, stderr string
	code           int // exit status; -1 if it did not run to the end
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("exit status %d (%v)\n--- stdout:\n%s--- stderr:\n%s", r.code, r.err, r.stdout, r.stderr)
}

func runClient(cmd *exec.Cmd, stdin string) result {
	var stdout, stderr bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), code: -1, err: err}
	var ee *exec.ExitError
	if err == nil {
		r.code = 0
	} else if errors.As(err, &ee) && ee.Exited() {
		r.code, r.err = ee.ExitCode(), nil
	}
	return r
}

// ssh runs one ssh session without a terminal: exec mode with command, or
// script mode (commands on stdin) when command is "". It never fails the
// test itself, so goroutines may use it.
func (a *appliance) ssh(l login, stdin, command string) result {
	args := a.clientOptions(l)
	args = append(args, "-T", "-p", a.port, l.user+"@127.0.0.1")
	if command != "" {
		args = append(args, command)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sshBin, args...)
	cmd.Env = clientEnv(l)
	return runClient(cmd, stdin)
}

// admin runs command as the first admin in exec mode.
func (a *appliance) admin(command string) result { return a.ssh(a.asAdmin(), "", command) }

// mustAdmin runs command as the first admin and returns its output; the test
// fails unless it succeeds.
func (a *appliance) mustAdmin(t *testing.T, command string) string {
	t.Helper()
	return mustOK(t, a.admin(command), command)
}

// mustOK fails the test unless r is a success with nothing on stderr, and
// returns its standard output.
func mustOK(t *testing.T, r result, what string) string {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: want success, got %v", what, r)
	}
	if r.stderr != "" {
		t.Fatalf("%s: succeeded but wrote to stderr: %v", what, r)
	}
	return r.stdout
}

// mustFail fails the test unless r is a command that ran and failed (not an
// ssh failure: status 255 is ssh's own) with one line on stderr holding
// every one of want. It returns that line.
func mustFail(t *testing.T, r result, what string, want ...string) string {
	t.Helper()
	if r.code == 0 || r.code == 255 || r.code == -1 {
		t.Fatalf("%s: want the command to fail with a non-zero status of its own, got %v", what, r)
	}
	line := strings.TrimSuffix(r.stderr, "\n")
	if line == "" || strings.Contains(line, "\n") {
		t.Fatalf("%s: want exactly one line on stderr, got %q", what, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Fatalf("%s: stderr %q does not say %q", what, line, w)
		}
	}
	return line
}

// loginRefused fails the test unless ssh could not log in at all.
func loginRefused(t *testing.T, r result, what string) {
	t.Helper()
	if r.code != 255 || !strings.Contains(r.stderr, "Permission denied") && !strings.Contains(r.stderr, "too many authentication failures") {
		t.Fatalf("%s: want the login refused (ssh status 255, permission denied), got %v", what, r)
	}
}

// sftp runs the OpenSSH sftp client in batch mode (-b) with commands, in the
// local directory dir. BatchMode=no comes before -b so a password login can
// still use SSH_ASKPASS.
func (a *appliance) sftp(t *testing.T, l login, dir, commands string) result {
	t.Helper()
	batch := filepath.Join(t.TempDir(), "batch")
	if err := os.WriteFile(batch, []byte(commands), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-o", "BatchMode=no"}, a.clientOptions(l)...)
	args = append(args, "-P", a.port, "-b", batch, l.user+"@127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, sftpBin, args...)
	cmd.Env = clientEnv(l)
	cmd.Dir = dir
	return runClient(cmd, "")
}

// put uploads local files (paths) to the files area under their base names.
func (a *appliance) put(t *testing.T, l login, paths ...string) {
	t.Helper()
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "put %s %s\n", p, filepath.Base(p))
	}
	if r := a.sftp(t, l, t.TempDir(), b.String()); r.code != 0 {
		t.Fatalf("sftp put %v: %v", paths, r)
	}
}

// get downloads files from the files area into dir.
func (a *appliance) get(t *testing.T, l login, dir string, names ...string) {
	t.Helper()
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "get %s %s\n", n, filepath.Join(dir, n))
	}
	if r := a.sftp(t, l, dir, b.String()); r.code != 0 {
		t.Fatalf("sftp get %v: %v", names, r)
	}
}

// ptySession is ssh -tt running in a real pseudo-terminal: what the person
// at the keyboard types, and what their screen receives.
type ptySession struct {
	t      *testing.T
	f      *os.File // the pty's master side
	cmd    *exec.Cmd
	notify chan struct{} // a read arrived

	mu       sync.Mutex
	buf      []byte
	pos      int // expect searches from here
	readDone bool

	exited chan struct{}
	code   int
}

// interactive logs in with ssh -tt inside a new pseudo-terminal and no
// command: the interactive shell.
func (a *appliance) interactive(t *testing.T, l login) *ptySession {
	t.Helper()
	return a.interactiveExec(t, l, "")
}

// interactiveExec runs ssh -tt inside a new pseudo-terminal with a command
// (exec mode at a terminal), or with none ("": the interactive shell).
func (a *appliance) interactiveExec(t *testing.T, l login, command string) *ptySession {
	t.Helper()
	args := a.clientOptions(l)
	args = append(args, "-tt", "-p", a.port, l.user+"@127.0.0.1")
	if command != "" {
		args = append(args, command)
	}
	cmd := exec.Command(sshBin, args...)
	cmd.Env = append(clientEnv(l), "TERM=xterm")
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 50, Cols: 200})
	if err != nil {
		t.Fatalf("start ssh in a pty: %v", err)
	}
	p := &ptySession{t: t, f: f, cmd: cmd, notify: make(chan struct{}, 1), exited: make(chan struct{})}
	go p.read()
	go func() {
		err := cmd.Wait()
		p.code = -1
		var ee *exec.ExitError
		if err == nil {
			p.code = 0
		} else if errors.As(err, &ee) && ee.Exited() {
			p.code = ee.ExitCode()
		}
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Kill()
			<-p.exited
		}
		f.Close()
	})
	return p
}

func (p *ptySession) read() {
	chunk := make([]byte, 4096)
	for {
		n, err := p.f.Read(chunk)
		p.mu.Lock()
		p.buf = append(p.buf, chunk[:n]...)
		if err != nil {
			p.readDone = true
		}
		p.mu.Unlock()
		select {
		case p.notify <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

// send types s at the keyboard.
func (p *ptySession) send(s string) {
	p.t.Helper()
	if _, err := p.f.Write([]byte(s)); err != nil {
		p.t.Fatalf("typing %q: %v", s, err)
	}
}

// expect waits until the screen output after the previous match holds sub,
// and returns what came between the previous match and this one.
func (p *ptySession) expect(t *testing.T, sub string, timeout time.Duration) string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		if i := bytes.Index(p.buf[p.pos:], []byte(sub)); i >= 0 {
			before := string(p.buf[p.pos : p.pos+i])
			p.pos += i + len(sub)
			p.mu.Unlock()
			return before
		}
		done, rest := p.readDone, string(p.buf[p.pos:])
		p.mu.Unlock()
		if done {
			t.Fatalf("the session ended without showing %q; after the last match it showed:\n%q", sub, rest)
		}
		select {
		case <-p.notify:
		case <-deadline.C:
			t.Fatalf("the screen did not show %q within %v; after the last match it showed:\n%q", sub, timeout, rest)
		}
	}
}

// command types line and Enter, and returns what the command printed: the
// screen between the entered line and the next prompt, without terminal
// control sequences.
func (p *ptySession) command(t *testing.T, line, prompt string) string {
	t.Helper()
	p.send(line + "\r")
	p.expect(t, line+"\r\n", screenTimeout) // readline's last redraw of the line, then Enter
	return plain(p.expect(t, prompt, screenTimeout))
}

// screen is everything the session has shown so far.
func (p *ptySession) screen() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.buf)
}

// wait waits for ssh to end and returns its exit status.
func (p *ptySession) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.code
	case <-time.After(timeout):
		t.Fatalf("the ssh session did not end within %v; the screen showed:\n%q", timeout, p.screen())
	}
	return -1
}

// newKey generates an ed25519 key pair in dir and returns the private and
// public key files.
func newKey(t *testing.T, dir, name string) (priv, pub string) {
	t.Helper()
	priv = filepath.Join(dir, name)
	if out, err := exec.Command(keygenBin, "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", priv).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	return priv, priv + ".pub"
}

// run runs a local program in dir and returns its combined output; the
// test fails if it fails.
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	out, err := tryRun(dir, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// tryRun runs a local program in dir and returns its combined output.
func tryRun(dir, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// writeFile writes a local file in dir and returns its path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// table parses tabular command output (a header line, then rows) into rows
// of fields keyed by the first field.
func table(t *testing.T, out string, header ...string) map[string][]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || strings.Join(strings.Fields(lines[0]), " ") != strings.Join(header, " ") {
		t.Fatalf("want the header %q, got output:\n%s", strings.Join(header, " "), out)
	}
	rows := map[string][]string{}
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > 0 {
			rows[f[0]] = f
		}
	}
	return rows
}

// userRows is `user list` as rows keyed by user name.
func (a *appliance) userRows(t *testing.T) map[string][]string {
	t.Helper()
	return table(t, a.mustAdmin(t, "user list"), "USERNAME", "ROLE", "PASSWORD-EXPIRY", "LOGGED-IN")
}

// addUser adds an admin user with a role and password in exec mode (the
// password on stdin), as the first admin.
func (a *appliance) addUser(t *testing.T, name, role, password string) {
	t.Helper()
	mustOK(t, a.ssh(a.asAdmin(), password+"\n", "user add "+name+" "+role), "user add "+name)
}

var ansiRE = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// plain removes terminal control sequences and the carriage return readline
// writes before redrawing a prompt, for assertions on the meaning of a
// screen rather than its bytes.
func plain(s string) string {
	return strings.TrimSuffix(ansiRE.ReplaceAllString(s, ""), "\r")
}
