package e2e

import (
	"strings"
	"testing"
)

// Issue item 3: exec mode (ssh host 'COMMAND') and script mode (commands on
// stdin, no terminal): status 0 on success, non-zero and one line on stderr
// on failure, script mode stopping at the first failure, secrets from the
// next line of stdin.
func TestExecMode(t *testing.T) {
	t.Parallel()
	a := start(t, options{hostname: "box1"})
	cases := []struct {
		name    string
		stdin   string
		command string
		stdout  string   // exact, on success
		fail    []string // the one stderr line holds these; empty: success
	}{
		{name: "Success", command: "hostname", stdout: "box1\n"},
		{name: "QuotedWordsAreOneArgument", command: `help "user add"`, fail: []string{`help: no command "user add"`}},
		{name: "UnknownCommand", command: "frobnicate now", fail: []string{`unknown command "frobnicate": type 'help' for the list of commands`}},
		{name: "UnknownSubcommand", command: "user frob", fail: []string{`user: unknown subcommand "frob"`, "see 'help user'"}},
		{name: "MissingArgument", command: "user del", fail: []string{"user del: missing <name>; usage: user del <name>"}},
		{name: "ExtraArgument", command: "version extra", fail: []string{`version: unexpected argument "extra"; usage: version`}},
		{name: "BadNumber", command: "user rule min_length twelve", fail: []string{"must be a whole number"}},
		{name: "FailingCommand", command: "pki inspect nosuch.pem", fail: []string{"nosuch.pem: no such file in the files area"}},
		{name: "PathInFileArgument", command: "pki inspect ../parley.db", fail: []string{"give a bare file name"}},
		{name: "SecretFromStdin", command: "user add bob audit", stdin: "Bob-password-1\n", stdout: ""},
		{name: "SecretMissing", command: "user add bob2 audit", stdin: "", fail: []string{"user add: no password given", "standard input ended"}},
		{name: "SecretTooShort", command: "user add bob3 audit", stdin: "short\n", fail: []string{"the password is too short: use at least 8 characters"}},
		{name: "UserExists", command: "user add bob audit", stdin: "Bob-password-1\n", fail: []string{"user bob already exists"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := a.ssh(a.asAdmin(), c.stdin, c.command)
			if len(c.fail) > 0 {
				mustFail(t, r, c.command, c.fail...)
				if r.stdout != "" {
					t.Fatalf("%s: a failed command printed to stdout: %q", c.command, r.stdout)
				}
				return
			}
			if got := mustOK(t, r, c.command); got != c.stdout {
				t.Fatalf("%s: stdout %q, want %q", c.command, got, c.stdout)
			}
		})
	}

	// What the cases did, and did not do.
	rows := a.userRows(t)
	if _, ok := rows["bob"]; !ok {
		t.Fatalf("user bob, added with the password on stdin, is not listed: %v", rows)
	}
	for _, u := range []string{"bob2", "bob3"} {
		if _, ok := rows[u]; ok {
			t.Fatalf("user %s was added by a failed command", u)
		}
	}
	mustOK(t, a.ssh(pw("bob", "Bob-password-1"), "", "user info bob"), "bob logs in with the password given on stdin")
}

func TestScriptMode(t *testing.T) {
	t.Parallel()
	a := start(t, options{hostname: "box1"})

	t.Run("Success", func(t *testing.T) {
		out := mustOK(t, a.ssh(a.asAdmin(), "# a comment\n\nhostname s1\nhostname\nversion\n", ""), "script")
		if !strings.HasPrefix(out, "s1\nParley ") {
			t.Fatalf("script output %q, want the new hostname then the version", out)
		}
	})

	t.Run("StopsAtFirstFailure", func(t *testing.T) {
		r := a.ssh(a.asAdmin(), "hostname s2\nfrobnicate\nhostname s3\n", "")
		mustFail(t, r, "script with a failing line 2", `line 2: unknown command "frobnicate"`)
		if got := a.mustAdmin(t, "hostname"); got != "s2\n" {
			t.Fatalf("hostname after the script is %q: want s2 (line 1 ran, line 3 must not)", got)
		}
	})

	t.Run("StopsAtFailingSecret", func(t *testing.T) {
		r := a.ssh(a.asAdmin(), "user add eve audit\nshort\nhostname s4\n", "")
		mustFail(t, r, "script with a too short password", "line 1: user add: the password is too short")
		if got := a.mustAdmin(t, "hostname"); got != "s2\n" {
			t.Fatalf("hostname after the failed script is %q: the line after the failure ran", got)
		}
		if _, ok := a.userRows(t)["eve"]; ok {
			t.Fatal("user eve was added with a too short password")
		}
	})

	t.Run("SecretFromNextLine", func(t *testing.T) {
		out := mustOK(t, a.ssh(a.asAdmin(), "user add carol audit\nCarol-password-1\nuser list\n", ""), "script adding carol")
		if !strings.Contains(out, "carol") || !strings.Contains(out, "USERNAME") {
			t.Fatalf("user list in the script does not show carol:\n%s", out)
		}
		// The password line was consumed as the secret, not run as a command.
		mustOK(t, a.ssh(pw("carol", "Carol-password-1"), "", "hostname"), "carol logs in")
	})

	t.Run("ExitStopsTheScript", func(t *testing.T) {
		mustOK(t, a.ssh(a.asAdmin(), "hostname s5\nexit\nhostname s6\n", ""), "script with exit")
		if got := a.mustAdmin(t, "hostname"); got != "s5\n" {
			t.Fatalf("hostname %q: want s5, the line after exit must not run", got)
		}
	})
}
