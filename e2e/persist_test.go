package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Issue item 8: everything survives a restart.
func TestPersistenceAcrossRestart(t *testing.T) {
	t.Parallel()
	a := start(t, options{})
	local := t.TempDir()
	_, pub := newKey(t, local, "alice_ed25519")
	payload := randomBytes(t, 10_000)
	writeFile(t, local, "payload.bin", payload)
	a.put(t, a.asAdmin(), pub, filepath.Join(local, "payload.bin"))
	script := strings.Join([]string{
		"hostname persisted",
		"user add alice crypto", "Alice-password-1",
		"user sshkey add alice alice_ed25519.pub",
		"user rule min_length 10",
		"user rule max_failed_logins 7",
		"user rule max_startups 20:40:80",
		"user rule per_source_max_startups 4",
		"user rule login_grace_time 45",
		"user rule per_source_penalty authfail:7 max:20m",
		"pki selfsigned kept CN:kept.example.com",
	}, "\n") + "\n"
	mustOK(t, a.ssh(a.asAdmin(), script, ""), "setup script")
	before := map[string]string{}
	for _, c := range []string{"hostname", "user list", "user info alice", "user sshkey list alice", "user rule", "pki list", "pki inspect kept.crt"} {
		before[c] = a.mustAdmin(t, c)
	}

	a.restart()

	for c, want := range before {
		got := a.mustAdmin(t, c)
		if c == "user info alice" {
			// Only the logged-in line may differ, and it does not: alice is out.
			want, got = stripLine(want, "Logged in"), stripLine(got, "Logged in")
		}
		if got != want {
			t.Fatalf("%s after restart:\n%s\nbefore:\n%s", c, got, want)
		}
	}
	for _, want := range []string{"max_startups             20:40:80", "per_source_max_startups  4", "login_grace_time         45 seconds", "per_source_penalty       authfail:7 noauth:1 grace-exceeded:20 min:15 max:1200"} {
		if !strings.Contains(before["user rule"], want) {
			t.Fatalf("user rule does not show %q:\n%s", want, before["user rule"])
		}
	}
	if got, err := os.ReadFile(filepath.Join(a.filesDir(), "payload.bin")); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("payload.bin after restart: %v", err)
	}
	mustOK(t, a.ssh(pw("alice", "Alice-password-1"), "", "hostname"), "alice after restart")
	if out := a.mustAdmin(t, "audit 100"); !strings.Contains(out, "hostname persisted") {
		t.Fatalf("the audit trail lost entries across the restart:\n%s", out)
	}
}

func stripLine(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Issue item 8: a killed process loses nothing that was reported done.
func TestKill9LosesNothingReported(t *testing.T) {
	t.Parallel()
	a := start(t, options{})
	local := t.TempDir()
	payload := randomBytes(t, 50_000)
	writeFile(t, local, "upload.bin", payload)

	a.put(t, a.asAdmin(), filepath.Join(local, "upload.bin"))
	mustOK(t, a.ssh(a.asAdmin(), "Killed-user-pw-1\n", "user add kate audit"), "user add kate")
	mustOK(t, a.admin("pki csr killed CN:killed.example.com"), "pki csr")
	mustOK(t, a.admin("hostname after-kill"), "hostname after-kill")
	a.kill9() // at once: the last success must already be on disk

	a.boot()
	if got := a.mustAdmin(t, "hostname"); got != "after-kill\n" {
		t.Fatalf("hostname after kill -9: %q, want after-kill", got)
	}
	if _, ok := a.userRows(t)["kate"]; !ok {
		t.Fatal("user kate lost by kill -9")
	}
	mustOK(t, a.ssh(pw("kate", "Killed-user-pw-1"), "", "hostname"), "kate after kill -9")
	rows := table(t, a.mustAdmin(t, "pki list"), "FILE", "KIND", "SUBJECT", "SANS", "EXPIRES")
	for _, f := range []string{"upload.bin", "killed.key", "killed.csr"} {
		if _, ok := rows[f]; !ok {
			t.Fatalf("%s lost by kill -9: %v", f, rows)
		}
	}
	if got, err := os.ReadFile(filepath.Join(a.filesDir(), "upload.bin")); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("upload.bin after kill -9 differs from what was put (%v)", err)
	}
	if out := a.mustAdmin(t, "health"); strings.Contains(out, "FAIL") {
		t.Fatalf("health after kill -9:\n%s", out)
	}
}

// Issue item 8: two admins in sessions at once cannot corrupt the store.
func TestConcurrentSessions(t *testing.T) {
	t.Parallel()
	a := start(t, options{})
	a.addUser(t, "root2", "admin", "Root2-password-1")
	admins := []login{a.asAdmin(), pw("root2", "Root2-password-1")}
	const perSession = 10

	var wg sync.WaitGroup
	errs := make(chan string, 4*perSession)
	want := []string{}
	for g, l := range admins {
		// One goroutine per admin runs an exec session per user...
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perSession; i++ {
				name := fmt.Sprintf("exec%d_%02d", g, i)
				if r := a.ssh(l, "Password-"+name+"\n", "user add "+name+" audit"); r.code != 0 || r.stderr != "" {
					errs <- fmt.Sprintf("%s: user add %s: %v", l.user, name, r)
				}
			}
		}()
		// ...and another runs one script session adding as many.
		wg.Add(1)
		go func() {
			defer wg.Done()
			var script strings.Builder
			for i := 0; i < perSession; i++ {
				name := fmt.Sprintf("script%d_%02d", g, i)
				fmt.Fprintf(&script, "user add %s crypto\nPassword-%s\n", name, name)
			}
			if r := a.ssh(l, script.String(), ""); r.code != 0 || r.stderr != "" {
				errs <- fmt.Sprintf("%s: script: %v", l.user, r)
			}
		}()
		for i := 0; i < perSession; i++ {
			want = append(want, fmt.Sprintf("exec%d_%02d", g, i), fmt.Sprintf("script%d_%02d", g, i))
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if t.Failed() {
		t.FailNow()
	}

	check := func(when string) {
		t.Helper()
		rows := a.userRows(t)
		if len(rows) != len(want)+2 {
			t.Fatalf("%s: %d users listed, want %d", when, len(rows), len(want)+2)
		}
		for _, name := range want {
			if _, ok := rows[name]; !ok {
				t.Fatalf("%s: user %s missing", when, name)
			}
		}
	}
	check("after the concurrent sessions")
	a.restart()
	check("after a restart")
	if out := a.mustAdmin(t, "health"); !strings.Contains(out, "consistent") {
		t.Fatalf("health:\n%s", out)
	}
	// A sample of the users log in with their own password.
	for _, name := range []string{"exec0_00", "exec1_09", "script0_05", "script1_09"} {
		mustOK(t, a.ssh(pw(name, "Password-"+name), "", "hostname"), name+" logs in")
	}
}
