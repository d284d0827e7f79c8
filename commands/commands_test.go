package commands

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/store"
)

var update = flag.Bool("update", false, "rewrite golden files and docs/commands.md")

// fakePrompt answers secrets and questions from a queue.
type fakePrompt struct {
	answers     []string
	interactive bool
	asked       []string
}

func (p *fakePrompt) Secret(prompt string) (string, error) {
	p.asked = append(p.asked, prompt)
	if len(p.answers) == 0 {
		return "", errors.New("standard input ended")
	}
	a := p.answers[0]
	p.answers = p.answers[1:]
	return a, nil
}

// Ask answers from the same queue as Secret.
func (p *fakePrompt) Ask(prompt string) (string, error) { return p.Secret(prompt) }

func (p *fakePrompt) Interactive() bool { return p.interactive }

type fixture struct {
	t    testing.TB
	tree *Tree
	env  *Env
	out  bytes.Buffer
}

var fixedNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	area, err := pki.OpenArea(filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { area.Close() })
	hash, _ := store.HashPassword("root-password")
	if _, err := st.ProposeSettled(context.Background(), store.AdminCreate{Admin: store.Admin{Name: "root", Role: store.RoleAdmin, PasswordHash: hash}}); err != nil {
		t.Fatal(err)
	}
	env := &Env{Store: st, Files: area, Version: "test", Started: fixedNow.Add(-90 * time.Minute), Now: func() time.Time { return fixedNow }}
	return &fixture{t: t, tree: NewTree(), env: env}
}

// run runs a line as user/role with the given secrets; it returns the
// output and the error.
func (f *fixture) runAs(user, role, line string, secrets ...string) (string, error) {
	f.out.Reset()
	c := &Ctx{Env: f.env, User: user, Role: role, From: "127.0.0.1", Out: &f.out, Prompt: &fakePrompt{answers: secrets}}
	err := f.tree.Run(c, line)
	return f.out.String(), err
}

func (f *fixture) run(line string, secrets ...string) (string, error) {
	return f.runAs("root", store.RoleAdmin, line, secrets...)
}

func (f *fixture) ok(line string, secrets ...string) string {
	f.t.Helper()
	out, err := f.run(line, secrets...)
	if err != nil {
		f.t.Fatalf("%s: %v", line, err)
	}
	return out
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./commands -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n--- got\n%s\n--- want\n%s", name, path, got, want)
	}
}

func TestTokenize(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  string
	}{
		{in: "", want: nil},
		{in: "   ", want: nil},
		{in: "# a comment", want: nil},
		{in: "user add bob admin", want: []string{"user", "add", "bob", "admin"}},
		{in: "  user\tlist  ", want: []string{"user", "list"}},
		{in: `pki csr x CN:a O:"Example Inc." OU:'R&D dept'`, want: []string{"pki", "csr", "x", "CN:a", "O:Example Inc.", "OU:R&D dept"}},
		{in: `a "" b`, want: []string{"a", "", "b"}},
		{in: `a\ b "q\"x"`, want: []string{"a b", `q"x`}},
		{in: `pki csr "unterminated`, err: "unterminated"},
		{in: `x \`, err: "backslash"},
		{in: "x\x01y", err: "control character"},
		{in: "x \xff", err: "UTF-8"},
		{in: strings.Repeat("a", MaxLineLength+1), err: "longer than"},
	}
	for _, tc := range tests {
		got, err := Tokenize(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Tokenize(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
			t.Errorf("Tokenize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, s := range []string{"plain", "two words", `q"uote`, `back\slash`, "", "#hash"} {
		got, err := Tokenize("x " + Quote(s))
		if err != nil || len(got) != 2 || got[1] != s {
			t.Errorf("Quote(%q) does not round-trip: %q %v", s, got, err)
		}
	}
}

// Bad input: one clear line naming the problem and the usage; nothing changes.
func TestBadInput(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		line string
		want string
	}{
		{"frobnicate", `unknown command "frobnicate": type 'help' for the list of commands`},
		{"user", "user: incomplete command; it needs one of: add, del, expire, info, list, rule, sshkey, unlock (see 'help user')"},
		{"user frob", `user: unknown subcommand "frob"; use one of: add, del, expire, info, list, rule, sshkey, unlock (see 'help user')`},
		{"user add", "user add: missing <name>; usage: user add <name> <admin|crypto|audit|appadmin>"},
		{"user add bob", "user add: missing <admin|crypto|audit|appadmin>; usage: user add <name> <admin|crypto|audit|appadmin>"},
		{"user add bob admin extra", `user add: unexpected argument "extra"; usage: user add <name> <admin|crypto|audit|appadmin>`},
		{"user add bob superuser", `user add: "superuser" is not one of admin, crypto, audit, appadmin; usage: user add <name> <admin|crypto|audit|appadmin>`},
		{"user add Bob! admin", `user add: "Bob!" is not a valid user name`},
		{"user rule min_length x", `user rule min_length: <n> must be a whole number, not "x"`},
		{"user rule min_length 0", "out of range"},
		{"user info nobody", "user info: no user nobody (see 'user list')"},
		{"user del nobody", "user del: no user nobody (see 'user list')"},
		{"user del root", "you cannot delete the user you are logged in as"},
		{"hostname -bad-", `hostname: "-bad-" is not a valid host name`},
		{"pki inspect ../etc/passwd", "give a bare file name"},
		{"pki inspect missing.crt", "missing.crt: no such file in the files area"},
		{"help nosuch", `help: no command "nosuch"`},
		{`pki csr x "CN:a`, "unterminated"},
	}
	before, _ := f.env.Store.Admins()
	for _, tc := range tests {
		_, err := f.run(tc.line, "password-123", "password-123")
		if err == nil {
			t.Errorf("%q: no error", tc.line)
			continue
		}
		if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got %q\nwant %q", tc.line, err, tc.want)
		}
	}
	after, _ := f.env.Store.Admins()
	if len(after) != len(before) {
		t.Errorf("bad input changed the users: %d → %d", len(before), len(after))
	}
}

func TestRoles(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		role string
		line string
		ok   bool
	}{
		{store.RoleAudit, "user list", true},
		{store.RoleAudit, "pki list", true},
		{store.RoleAudit, "hostname", true},
		{store.RoleAudit, "audit", true},
		{store.RoleAudit, "hostname other", false},
		{store.RoleAudit, "pki selfsigned a CN:a.example", false},
		{store.RoleAudit, "user rule min_length 9", false},
		{store.RoleAudit, "user add zed audit", false},
		{store.RoleCrypto, "pki selfsigned c CN:c.example key:ecdsa-p256", true},
		{store.RoleCrypto, "user add zed audit", false},
		{store.RoleCrypto, "hostname other", false},
		{store.RoleAppAdmin, "pki csr d CN:d.example", false},
		{store.RoleAppAdmin, "xmpp", true},
		{store.RoleAppAdmin, "user expire root", false},
		{store.RoleAdmin, "hostname other", true},
		{store.RoleAdmin, "pki selfsigned e CN:e.example key:ecdsa-p256", true},
	}
	for _, tc := range tests {
		_, err := f.runAs("someone", tc.role, tc.line, "password-123")
		if tc.ok && err != nil {
			t.Errorf("%s: %q refused: %v", tc.role, tc.line, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "permission denied")) {
			t.Errorf("%s: %q: want permission denied, got %v", tc.role, tc.line, err)
		}
	}
	if f.env.Files.Exists("a.key") || f.env.Files.Exists("d.key") {
		t.Error("a refused pki command wrote files")
	}
}

func TestUserLifecycle(t *testing.T) {
	f := newFixture(t)
	// Interactive: the password is asked twice and must match.
	c := &Ctx{Env: f.env, User: "root", Role: store.RoleAdmin, Out: &f.out,
		Prompt: &fakePrompt{answers: []string{"password-123", "password-124"}, interactive: true}}
	if err := f.tree.Run(c, "user add alice appadmin"); err == nil || !strings.Contains(err.Error(), "do not match") {
		t.Fatalf("mismatch: %v", err)
	}
	if _, err := f.env.Store.Admin("alice"); err == nil {
		t.Fatal("alice created despite mismatch")
	}
	if _, err := f.run("user add alice appadmin", "short"); err == nil || !strings.Contains(err.Error(), "at least 8") {
		t.Fatalf("short password: %v", err)
	}
	if _, err := f.run("user add alice appadmin", "alice"); err == nil {
		t.Fatal("password shorter than the rule accepted")
	}
	f.ok("user add alice appadmin", "password-123")
	if _, err := f.run("user add alice audit", "password-123"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("duplicate: %v", err)
	}
	a, _ := f.env.Store.Admin("alice")
	if a.Role != store.RoleAppAdmin || !store.CheckPassword(a.PasswordHash, "password-123") {
		t.Fatalf("alice = %+v", a)
	}

	f.ok("user rule min_length 12")
	if _, err := f.run("user add bob audit", "password-12"); err == nil || !strings.Contains(err.Error(), "at least 12") {
		t.Fatalf("min_length rule: %v", err)
	}

	f.ok("user expire alice")
	if out := f.ok("user list"); !strings.Contains(out, "alice     appadmin  expired") {
		t.Errorf("user list after expire:\n%s", out)
	}
	f.ok("user del alice")
	if _, err := f.env.Store.Admin("alice"); err == nil {
		t.Fatal("alice not deleted")
	}

	// The audit trail names each change, never the password.
	out := f.ok("audit 50")
	for _, want := range []string{"user add alice appadmin", "user rule min_length 12", "user del alice", "root"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "password-123") {
		t.Error("the audit trail holds a password")
	}
}

func TestPasswd(t *testing.T) {
	f := newFixture(t)
	if _, err := f.run("passwd", "wrong", "new-password-1"); err == nil || !strings.Contains(err.Error(), "current password is wrong") {
		t.Fatalf("wrong current: %v", err)
	}
	out := f.ok("passwd", "root-password", "new-password-1")
	if !strings.Contains(out, "Password changed") {
		t.Errorf("passwd output %q", out)
	}
	a, _ := f.env.Store.Admin("root")
	if !store.CheckPassword(a.PasswordHash, "new-password-1") || store.CheckPassword(a.PasswordHash, "root-password") {
		t.Fatal("password not changed")
	}
	// Any role may change its own password.
	hash, _ := store.HashPassword("aud-password-1")
	f.env.Store.ProposeSettled(context.Background(), store.AdminCreate{Admin: store.Admin{Name: "aud", Role: store.RoleAudit, PasswordHash: hash}})
	if _, err := f.runAs("aud", store.RoleAudit, "passwd", "aud-password-1", "aud-password-2"); err != nil {
		t.Fatalf("audit passwd: %v", err)
	}
}

func TestSSHKeys(t *testing.T) {
	f := newFixture(t)
	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop\n"
	f.env.Files.WriteFile("alice.pub", []byte(key), 0o644, false)
	f.env.Files.WriteFile("junk.pub", []byte("not a key\n"), 0o644, false)
	f.ok("user add alice audit", "password-123")
	if _, err := f.run("user sshkey add alice junk.pub"); err == nil || !strings.Contains(err.Error(), "no SSH public key") {
		t.Fatalf("junk key: %v", err)
	}
	out := f.ok("user sshkey add alice alice.pub")
	if !strings.Contains(out, "added: ssh-ed25519 SHA256:") {
		t.Errorf("add output %q", out)
	}
	if _, err := f.run("user sshkey add alice alice.pub"); err == nil || !strings.Contains(err.Error(), "already authorized") {
		t.Fatalf("duplicate: %v", err)
	}
	out = f.ok("user sshkey list alice")
	if !strings.HasPrefix(out, "1  ssh-ed25519 SHA256:") || !strings.Contains(out, "alice@laptop") {
		t.Errorf("list output %q", out)
	}
	if _, err := f.run("user sshkey del alice 2"); err == nil || !strings.Contains(err.Error(), "no key number 2") {
		t.Fatalf("del 2: %v", err)
	}
	f.ok("user sshkey del alice 1")
	if out := f.ok("user sshkey list alice"); !strings.Contains(out, "has no SSH keys") {
		t.Errorf("after del: %q", out)
	}
}

func TestHostname(t *testing.T) {
	f := newFixture(t)
	if out := f.ok("hostname"); out != "parley\n" {
		t.Errorf("default hostname %q", out)
	}
	f.ok("hostname xmpp1.example.com")
	if got := Hostname(f.env.Store); got != "xmpp1.example.com" {
		t.Errorf("Hostname = %q", got)
	}
}

func TestPKIGenerate(t *testing.T) {
	f := newFixture(t)
	out := f.ok(`pki csr xmpp CN:example.com O:"Example Inc." C:NO subjectAltName:example.com,10.0.0.1`)
	if out != "Wrote xmpp.key and xmpp.csr\n" {
		t.Errorf("csr output %q", out)
	}
	if _, err := f.run("pki csr xmpp CN:example.com"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("overwrite: %v", err)
	}
	for _, bad := range []string{"pki csr bad C:NOR CN:x.example", "pki csr bad XX:1 CN:x.example", "pki csr bad O:Org", "pki selfsigned bad CN:x.example key:dsa"} {
		if _, err := f.run(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if f.env.Files.Exists("bad.key") || f.env.Files.Exists("bad.csr") {
		t.Error("a refused csr left files")
	}
	f.ok("pki selfsigned one CN:one.example key:ecdsa-p256")
	f.ok("pki selfsigned two CN:two.example key:ecdsa-p256")
	if out := f.ok("pki match one.key one.crt"); out != "one.key matches one.crt\n" {
		t.Errorf("match output %q", out)
	}
	if _, err := f.run("pki match two.key one.crt"); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatch: %v", err)
	}
	out = f.ok("pki list")
	for _, want := range []string{"FILE", "one.crt", "certificate", "CN=one.example", "one.example", "xmpp.csr", "csr", "xmpp.key", "key"} {
		if !strings.Contains(out, want) {
			t.Errorf("pki list lacks %q:\n%s", want, out)
		}
	}
	if out := f.ok("pki inspect one.crt"); !strings.Contains(out, "one.example") {
		t.Errorf("inspect:\n%s", out)
	}
	if out := f.ok("health"); !strings.Contains(out, "OK    certificates") {
		t.Errorf("health:\n%s", out)
	}
}

func TestHealthFailsOnExpiredCertificate(t *testing.T) {
	f := newFixture(t)
	f.ok("pki selfsigned old CN:old.example days:1 key:ecdsa-p256")
	f.env.Now = func() time.Time { return fixedNow.Add(48 * time.Hour) }
	out, err := f.run("health")
	if err == nil || !strings.Contains(out, "FAIL  certificate old.crt") {
		t.Fatalf("health with an expired certificate: %v\n%s", err, out)
	}
}

func TestComplete(t *testing.T) {
	f := newFixture(t)
	f.env.Files.WriteFile("server.crt", []byte("x"), 0o644, false)
	f.env.Files.WriteFile("server.key", []byte("x"), 0o600, false)
	files := func() []string { return []string{"server.crt", "server.key"} }
	tests := []struct {
		line string
		role string
		want string
	}{
		{"hostn", store.RoleAdmin, "hostname"},
		{"user ", store.RoleAdmin, "add del expire info list rule sshkey unlock"},
		{"user ", store.RoleAudit, "info list rule sshkey"},
		{"user add bob a", store.RoleAdmin, "admin appadmin audit"},
		{"pki inspect se", store.RoleAdmin, "server.crt server.key"},
		{"pki match server.key server.c", store.RoleAdmin, "server.crt"},
		{"pki match server.key server.crt ", store.RoleAdmin, ""},
		{"zz", store.RoleAdmin, ""},
	}
	for _, tc := range tests {
		got := strings.Join(f.tree.Complete(tc.line, tc.role, files), " ")
		if got != tc.want {
			t.Errorf("Complete(%q, %s) = %q, want %q", tc.line, tc.role, got, tc.want)
		}
	}
}

func TestGoldenOutput(t *testing.T) {
	f := newFixture(t)
	f.ok("user add alice crypto", "password-123")
	for _, tc := range []struct{ name, line string }{
		{"help", "help"},
		{"help-user-add", "help user add"},
		{"help-user", "help user"},
		{"user-list", "user list"},
		{"user-rule", "user rule"},
		{"uptime", "uptime"},
	} {
		golden(t, tc.name, f.ok(tc.line))
	}
}

// docs/commands.md is generated from the tree; this fails when it drifts.
func TestCommandReferenceUpToDate(t *testing.T) {
	path := filepath.Join("..", "docs", "commands.md")
	got := NewTree().Markdown()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Fatal("docs/commands.md is out of date: run 'make docs'")
	}
}

func TestHelpMarkdown(t *testing.T) {
	got := helpMarkdown("Prints <n> blocks:\n  ***\n  Name : x\nThen <more>.")
	want := "Prints \\<n> blocks:\n\n```\n***\nName : x\n```\n\nThen \\<more>."
	if got != want {
		t.Errorf("helpMarkdown:\n%s\nwant\n%s", got, want)
	}
	if got := cell("`a <b|c>`"); got != "`a <b\\|c>`" {
		t.Errorf("cell: %s", got)
	}
}

func TestEveryCommandDocumented(t *testing.T) {
	for _, cmd := range NewTree().Commands() {
		if cmd.Summary == "" || cmd.Run == nil {
			t.Errorf("%s: missing summary or Run", cmd.Name())
		}
		for i, a := range cmd.Args {
			if a.Optional && i+1 < len(cmd.Args) && !cmd.Args[i+1].Optional {
				t.Errorf("%s: optional argument before a required one", cmd.Name())
			}
		}
	}
}
