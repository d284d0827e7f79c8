package e2e

import (
	"strings"
	"testing"
)

// Issue item 2: the interactive shell in a real pseudo-terminal. Each case
// has its own appliance (hostname box1) so cases can run in parallel.
func TestInteractive(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		run  func(t *testing.T, a *appliance)
	}{
		{"PromptAndHelp", interactivePromptAndHelp},
		{"CompleteCommandWord", interactiveCompleteCommandWord},
		{"CompleteFileName", interactiveCompleteFileName},
		{"LineEditing", interactiveLineEditing},
		{"HistoryAcrossLogins", interactiveHistoryAcrossLogins},
		{"CtrlCClearsLine", interactiveCtrlCClearsLine},
		{"HostnameChangesPromptLive", interactiveHostnameChangesPrompt},
		{"CtrlDLeaves", interactiveCtrlDLeaves},
		{"ExitLeaves", interactiveExitLeaves},
		{"UnknownCommandOneLine", interactiveUnknownCommand},
		{"WrongArgumentsOneLine", interactiveWrongArguments},
		{"UserAddAsksTwiceWithoutEcho", interactiveUserAddNoEcho},
		{"UserAddMismatchedOrCancelled", interactiveUserAddMismatch},
		{"ExecWithTerminalAsksWithoutEcho", execWithTerminalNoEcho},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, start(t, options{hostname: "box1"}))
		})
	}
}

// login opens an interactive session as the first admin and waits for the
// first prompt.
func loginPrompt(t *testing.T, a *appliance, prompt string) *ptySession {
	t.Helper()
	s := a.interactive(t, a.asAdmin())
	s.expect(t, "Type 'help' for commands", screenTimeout)
	s.expect(t, prompt, screenTimeout)
	return s
}

// leave types exit and checks that ssh ends with status 0.
func leave(t *testing.T, s *ptySession) {
	t.Helper()
	s.send("exit\r")
	if code := s.wait(t, screenTimeout); code != 0 {
		t.Fatalf("exit: ssh status %d, want 0; screen:\n%q", code, s.screen())
	}
}

func interactivePromptAndHelp(t *testing.T, a *appliance) {
	s := loginPrompt(t, a, "box1> ")
	// help lists the families, one line each; help <family> narrows.
	list := s.command(t, "help", "box1> ")
	for _, want := range []string{
		"Command families (type 'help <family>' for its commands, 'help <command>' for one command):",
		"  user ",
		"  pki ",
		"  hostname ",
		"  xmpp federation ",
	} {
		if !strings.Contains(list, want) {
			t.Fatalf("'help' does not show %q:\n%s", want, list)
		}
	}
	if n := strings.Count(list, "\n"); n > 30 {
		t.Fatalf("'help' prints %d lines, want one per family:\n%s", n, list)
	}
	pki := s.command(t, "help pki", "box1> ")
	if !strings.Contains(pki, "pki csr <base> <attribute>") || strings.Contains(pki, "user add") {
		t.Fatalf("'help pki' does not narrow to pki:\n%s", pki)
	}

	help := s.command(t, "help user add", "box1> ")
	for _, want := range []string{
		"usage: user add <name> <admin|crypto|audit|appadmin>",
		"asks for the password twice",
		"example:",
		"user add alice appadmin",
	} {
		if !strings.Contains(help, want) {
			t.Fatalf("'help user add' does not show %q:\n%s", want, help)
		}
	}
	leave(t, s)
}

func interactiveCompleteCommandWord(t *testing.T, a *appliance) {
	s := loginPrompt(t, a, "box1> ")
	s.send("hostn\t")
	s.expect(t, "box1> hostname ", screenTimeout) // the line, redrawn with the word completed
	// Enter runs the completed word: hostname prints the name.
	if out := s.command(t, "", "box1> "); out != "box1\r\n" {
		t.Fatalf("hostn<Tab><Enter> should run hostname and print box1; the screen showed:\n%q", out)
	}

	// A second-level word completes too.
	s.send("user inf\t")
	s.expect(t, "box1> user info ", screenTimeout)
	if out := s.command(t, "admin", "box1> "); !strings.Contains(out, "Username         : admin") {
		t.Fatalf("user inf<Tab>admin should run user info admin; the screen showed:\n%q", out)
	}
	leave(t, s)
}

func interactiveCompleteFileName(t *testing.T, a *appliance) {
	local := t.TempDir()
	run(t, local, opensslBin, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", "completion.key", "-out", "completion-test-cert.pem", "-subj", "/CN=completion.example", "-days", "30")
	a.put(t, a.asAdmin(), local+"/completion-test-cert.pem")

	s := loginPrompt(t, a, "box1> ")
	s.send("pki inspect complet\t")
	s.expect(t, "box1> pki inspect completion-test-cert.pem ", screenTimeout)
	out := s.command(t, "", "box1> ")
	if !strings.Contains(out, "Subject:             CN=completion.example") {
		t.Fatalf("pki inspect of the completed file name did not show the certificate:\n%q", out)
	}
	leave(t, s)
}

func interactiveHistoryAcrossLogins(t *testing.T, a *appliance) {
	s := loginPrompt(t, a, "box1> ")
	if out := s.command(t, "user info admin", "box1> "); !strings.Contains(out, "Username         : admin") {
		t.Fatalf("user info admin:\n%q", out)
	}
	s.send("\x04") // Ctrl-D: leave without adding to the history
	if code := s.wait(t, screenTimeout); code != 0 {
		t.Fatalf("Ctrl-D: ssh status %d, want 0", code)
	}

	s2 := loginPrompt(t, a, "box1> ")
	s2.send("\x1b[A") // Up arrow
	s2.expect(t, "box1> user info admin", screenTimeout)
	if out := s2.command(t, "", "box1> "); !strings.Contains(out, "Username         : admin") {
		t.Fatalf("Up then Enter should run the previous session's user info admin; the screen showed:\n%q", out)
	}
	leave(t, s2)
}

func interactiveCtrlCClearsLine(t *testing.T, a *appliance) {
	s := loginPrompt(t, a, "box1> ")
	s.send("hostname not-run-ctrlc")
	s.expect(t, "box1> hostname not-run-ctrlc", screenTimeout)
	s.send("\x03")
	s.expect(t, "^C", screenTimeout)
	s.expect(t, "box1> ", screenTimeout)
	if out := s.command(t, "hostname", "box1> "); out != "box1\r\n" {
		t.Fatalf("after Ctrl-C, hostname shows:\n%q", out)
	}
	leave(t, s)
	if got := a.mustAdmin(t, "hostname"); got != "box1\n" {
		t.Fatalf("the line cleared by Ctrl-C was run: hostname is %q", got)
	}
	if audit := a.mustAdmin(t, "audit"); strings.Contains(audit, "not-run-ctrlc") {
		t.Fatalf("the line cleared by Ctrl-C reached the audit trail:\n%s", audit)
	}
}

func interactiveHostnameChangesPrompt(t *testing.T, a *appliance) {
	s := loginPrompt(t, a, "box1> ")
	other := loginPrompt(t, a, "box1> ")
	if out := s.command(t, "hostname newname", "newname> "); out != "" {
		t.Fatalf("hostname newname printed %q", out)
	}
	if out := s.command(t, "hostname", "newname> "); out != "newname\r\n" {
		t.Fatalf("hostname after the change shows %q", out)
	}
	// Another open shell shows the new name from its next line on.
	other.send("\r")
	other.expect(t, "newname> ", screenTimeout)
	leave(t, other)
	leave(t, s)
}

func interactiveLineEditing(t *testing.T, a *appliance) {
	s := loginPrompt(t, a, "box1> ")
	// Type "hostnme", go back two characters, insert the missing "a".
	s.send("hostnme\x1b[D\x1b[Da")
	s.expect(t, "box1> hostname", screenTimeout)
	if out := s.command(t, "", "box1> "); out != "box1\r\n" {
		t.Fatalf("the edited line did not run hostname: %q", out)
	}
	// Backspace removes the last character.
	s.send("versionx\x7f")
	s.expect(t, "box1> versionx", screenTimeout)
	if out := s.command(t, "", "box1> "); !strings.HasPrefix(out, "Parley ") {
		t.Fatalf("versionx<Backspace><Enter> did not run version: %q", out)
	}
	// Ctrl-A goes to the start of the line, Ctrl-K cuts it.
	s.send("hostname cut-away\x01\x0bversion")
	if out := s.command(t, "", "box1> "); !strings.HasPrefix(out, "Parley ") {
		t.Fatalf("Ctrl-A Ctrl-K then version did not run version: %q", out)
	}
	leave(t, s)
	if got := a.mustAdmin(t, "hostname"); got != "box1\n" {
		t.Fatalf("the cut line ran: hostname is %q", got)
	}
}

func interactiveCtrlDLeaves(t *testing.T, a *appliance) {
	s := loginPrompt(t, a, "box1> ")
	s.send("\x04")
	if code := s.wait(t, screenTimeout); code != 0 {
		t.Fatalf("Ctrl-D: ssh status %d, want 0; screen:\n%q", code, s.screen())
	}
}

func interactiveExitLeaves(t *testing.T, a *appliance) {
	s := loginPrompt(t, a, "box1> ")
	leave(t, s)
}

func interactiveUnknownCommand(t *testing.T, a *appliance) {
	s := loginPrompt(t, a, "box1> ")
	out := s.command(t, "frobnicate now", "box1> ")
	if want := "unknown command \"frobnicate\": type 'help' for the list of commands\r\n"; out != want {
		t.Fatalf("an unknown command should print exactly one line, %q; the screen showed:\n%q", want, out)
	}
	// The shell goes on.
	if out := s.command(t, "version", "box1> "); !strings.HasPrefix(out, "Parley ") {
		t.Fatalf("version after an unknown command: %q", out)
	}
	leave(t, s)
}

func interactiveWrongArguments(t *testing.T, a *appliance) {
	s := loginPrompt(t, a, "box1> ")
	cases := []struct{ line, want string }{
		{"user add onlyname", "user add: missing <admin|crypto|audit|appadmin>; usage: user add <name> <admin|crypto|audit|appadmin>"},
		{"hostname a b", "hostname: unexpected argument \"b\"; usage: hostname [<name>]"},
		{"user add eve superuser", "user add: \"superuser\" is not one of admin, crypto, audit, appadmin"},
		{"user", "user: incomplete command"},
	}
	for _, c := range cases {
		out := s.command(t, c.line, "box1> ")
		if !strings.Contains(out, c.want) || strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\r\n") {
			t.Fatalf("%q should print one line with %q; the screen showed:\n%q", c.line, c.want, out)
		}
	}
	leave(t, s)
	if got := a.mustAdmin(t, "hostname"); got != "box1\n" {
		t.Fatalf("a command with wrong arguments changed the hostname to %q", got)
	}
	if rows := a.userRows(t); len(rows) != 1 {
		t.Fatalf("a command with wrong arguments added a user: %v", rows)
	}
}

func interactiveUserAddNoEcho(t *testing.T, a *appliance) {
	const secret = "Carol-Secret-77"
	s := loginPrompt(t, a, "box1> ")
	s.send("user add carol audit\r")
	s.expect(t, "Password for carol: ", screenTimeout)
	s.send(secret + "\r")
	s.expect(t, "Retype password: ", screenTimeout)
	s.send(secret + "\r")
	s.expect(t, "box1> ", screenTimeout)
	leave(t, s)
	if strings.Contains(s.screen(), secret) || strings.Contains(s.screen(), "Carol-") {
		t.Fatalf("the typed password was echoed:\n%q", s.screen())
	}
	if got := mustOK(t, a.ssh(pw("carol", secret), "", "user info carol"), "carol logs in"); !strings.Contains(got, "Role             : audit") {
		t.Fatalf("user info carol:\n%s", got)
	}
}

func interactiveUserAddMismatch(t *testing.T, a *appliance) {
	s := loginPrompt(t, a, "box1> ")
	s.send("user add dave audit\r")
	s.expect(t, "Password for dave: ", screenTimeout)
	s.send("Dave-Secret-1\r")
	s.expect(t, "Retype password: ", screenTimeout)
	s.send("Dave-Secret-2\r")
	s.expect(t, "user add: the passwords do not match; nothing was changed\r\n", screenTimeout)
	s.expect(t, "box1> ", screenTimeout)
	leave(t, s)
	if strings.Contains(s.screen(), "Dave-Secret") {
		t.Fatalf("a typed password was echoed:\n%q", s.screen())
	}
	if _, ok := a.userRows(t)["dave"]; ok {
		t.Fatal("user dave was added although the passwords did not match")
	}

	// Ctrl-C at a password prompt cancels the command.
	s = loginPrompt(t, a, "box1> ")
	s.send("user add fay audit\r")
	s.expect(t, "Password for fay: ", screenTimeout)
	s.send("Fay-Sec\x03")
	s.expect(t, "user add: no password given: cancelled\r\n", screenTimeout)
	s.expect(t, "box1> ", screenTimeout)
	leave(t, s)
	if _, ok := a.userRows(t)["fay"]; ok {
		t.Fatal("user fay was added although the password prompt was cancelled")
	}
}

// Exec mode with a terminal (ssh -t host 'COMMAND') asks for secrets at the
// terminal, twice, without echo.
func execWithTerminalNoEcho(t *testing.T, a *appliance) {
	const secret = "Erin-Secret-55"
	s := a.interactiveExec(t, a.asAdmin(), "user add erin audit")
	s.expect(t, "Password for erin: ", screenTimeout)
	s.send(secret + "\r")
	s.expect(t, "Retype password: ", screenTimeout)
	s.send(secret + "\r")
	if code := s.wait(t, screenTimeout); code != 0 {
		t.Fatalf("ssh -t 'user add erin audit': status %d; screen:\n%q", code, s.screen())
	}
	if strings.Contains(s.screen(), secret) {
		t.Fatalf("the typed password was echoed:\n%q", s.screen())
	}
	mustOK(t, a.ssh(pw("erin", secret), "", "hostname"), "erin logs in")
}
