// Package commands owns the admin shell's command tree. Each command is data
// (its words, arguments, help, example and the permission it needs) plus a
// Run function. Commands work against the store, the files area and small
// interfaces (the running engine, the federation check, DNS), never against
// SSH, so they are tested without a network; what the engine reports comes
// in the types of server/status, printed here as they are. The shell
// package only feeds them lines and prints what they return.
package commands

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server/cluster"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/store"
)

// Perm is what a command needs from the caller's role.
type Perm int

// Permissions. Reading is open to every role; each writing family belongs
// to one role besides admin, as in Cisco Meeting Server's MMP.
const (
	PermAny    Perm = iota // any logged-in user (help, passwd, exit)
	PermRead               // reads only: every role
	PermSystem             // admin users, hostname, rules: admin only
	PermPKI                // keys and certificates: admin and crypto
	PermXMPP               // the XMPP service: admin and appadmin
)

// Allows reports whether role may run commands needing p.
func (p Perm) Allows(role string) bool {
	switch p {
	case PermAny, PermRead:
		return true
	case PermPKI:
		return role == store.RoleAdmin || role == store.RoleCrypto
	case PermXMPP:
		return role == store.RoleAdmin || role == store.RoleAppAdmin
	default:
		return role == store.RoleAdmin
	}
}

func (p Perm) String() string {
	switch p {
	case PermAny:
		return "any user"
	case PermRead:
		return "any role (read only)"
	case PermPKI:
		return "admin, crypto"
	case PermXMPP:
		return "admin, appadmin"
	default:
		return "admin"
	}
}

// ArgKind says what an argument holds, for validation and completion.
type ArgKind int

// Argument kinds.
const (
	ArgText   ArgKind = iota
	ArgFile           // a bare file name from the files area
	ArgEnum           // one of Values
	ArgNumber         // a non-negative integer
)

// Arg describes one argument.
type Arg struct {
	Name     string
	Kind     ArgKind
	Values   []string // ArgEnum
	Optional bool     // may be left out (only trailing arguments)
	Repeat   bool     // the last argument may repeat
}

func (a Arg) usage() string {
	s := "<" + a.Name + ">"
	if a.Kind == ArgEnum {
		s = "<" + strings.Join(a.Values, "|") + ">"
	}
	if a.Repeat {
		s += "…"
	}
	if a.Optional {
		s = "[" + s + "]"
	}
	return s
}

// Command is one shell command.
type Command struct {
	Words []string
	Args  []Arg
	// Syntax, when set, is the usage line instead of the one made from
	// Words and Args (for forms Args cannot express, e.g. "[<key> <crt>]").
	Syntax  string
	Summary string // one line
	Help    string // paragraphs
	Example string // one or more lines
	Perm    Perm
	// QueryWithoutArgs: run with no arguments, the command only reads
	// (e.g. "hostname" shows, "hostname NAME" sets).
	QueryWithoutArgs bool
	// Changes marks a PermAny command that changes state (passwd), so it
	// is audited.
	Changes bool
	Run     func(c *Ctx, args []string) error
}

// Name is the command's words joined by spaces.
func (cmd *Command) Name() string { return strings.Join(cmd.Words, " ") }

// Usage is the one-line usage.
func (cmd *Command) Usage() string {
	if cmd.Syntax != "" {
		return cmd.Syntax
	}
	parts := []string{cmd.Name()}
	for _, a := range cmd.Args {
		parts = append(parts, a.usage())
	}
	return strings.Join(parts, " ")
}

func (cmd *Command) perm(args []string) Perm {
	if cmd.QueryWithoutArgs && len(args) == 0 {
		return PermRead
	}
	return cmd.Perm
}

func (cmd *Command) writes(args []string) bool {
	p := cmd.perm(args)
	return p > PermRead || (p == PermAny && cmd.Changes)
}

// Prompter asks the person at the other end for input the command needs.
type Prompter interface {
	// Secret reads a secret without echo; in exec or script mode it is the
	// next line of standard input.
	Secret(prompt string) (string, error)
	// Ask reads a line shown as it is typed (a confirmation, a choice); in
	// exec or script mode it is the next line of standard input.
	Ask(prompt string) (string, error)
	// Interactive reports whether a person is at a terminal.
	Interactive() bool
}

// Env is what every command runs against.
type Env struct {
	Store   *store.Store
	Files   *pki.Area
	Version string
	Started time.Time
	Now     func() time.Time
	// Sessions returns how many shell sessions each admin user has open.
	Sessions func() map[string]int
	// Logins are the SSH server's holds on password logins, per user and
	// source address; nil when no SSH server runs in this process.
	Logins LoginLocks
	// XMPP is the XMPP engine running in this process; nil when there is
	// none (unit tests, tools that only edit the store).
	XMPP XMPPEngine
	// Federation checks federation with a remote domain, and DNS is the
	// engine's resolver; nil when there is no engine in this process.
	Federation FederationChecker
	DNS        DNSResolver
	// Cluster is this appliance's cluster node, and ClusterSettings its
	// own cluster settings (the trust bundle); nil when there is none in
	// this process.
	Cluster         cluster.Node
	ClusterSettings ClusterSettings
	// Metrics is the engine's Prometheus exporter; nil when there is no
	// engine in this process.
	Metrics MetricsExporter
	// Logs is this process's log (`xmpp log`, `syslog`); nil when there
	// is none.
	Logs *logging.Hub
}

// LoginLocks are the SSH server's holds on password logins: failures and
// locks per user and source (user rule max_failed_logins), and the
// sources whose password logins are paused (user rule per_source_penalty).
type LoginLocks interface {
	// Locks lists the sources with failures or a hold on user's password
	// logins.
	Locks(user string) []LoginLock
	// Unlock forgets user's failures and locks, lifts the password pause
	// of the sources they came from, and returns those sources.
	Unlock(user string) []string
}

// LoginLock is one source's record of a user's failed passwords.
type LoginLock struct {
	Source string    // an IPv4 address or an IPv6 /64
	Failed int       // failures in a row
	Until  time.Time // password logins from Source held until then; zero if not
}

func (e *Env) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// Ctx is one invocation's context.
type Ctx struct {
	*Env
	Tree   *Tree
	User   string
	Role   string
	From   string // remote address, for the audit trail
	Out    io.Writer
	Prompt Prompter
	// Done is closed when the caller's session ends (nil: never), for
	// commands that run until then (syslog follow).
	Done <-chan struct{}

	nodeNames map[string]string // cluster node id → XMPP address (nodeName)
}

func (c *Ctx) printf(format string, a ...any) { fmt.Fprintf(c.Out, format, a...) }

// ErrExit is returned by the exit command.
var ErrExit = errors.New("exit")

// Error is a failed command's one-line message.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

func errorf(format string, a ...any) error { return &Error{fmt.Sprintf(format, a...)} }

// Tree is the set of commands.
type Tree struct {
	cmds []*Command
}

// NewTree returns the full command tree.
func NewTree() *Tree {
	t := &Tree{}
	t.add(systemCommands(t)...)
	t.add(userCommands()...)
	t.add(pkiCommands()...)
	t.add(xmppCommands()...)
	t.add(dnsCommands()...)
	t.add(backupCommands()...)
	t.add(metricsCommands()...)
	t.add(logCommands()...)
	sort.SliceStable(t.cmds, func(i, j int) bool { return t.cmds[i].Name() < t.cmds[j].Name() })
	return t
}

func (t *Tree) add(cmds ...*Command) { t.cmds = append(t.cmds, cmds...) }

// Commands returns every command, by name.
func (t *Tree) Commands() []*Command { return t.cmds }

// Lookup finds the command with the longest run of words matching tokens
// and returns it with the remaining tokens as arguments. If no command
// matches, it returns the commands under the longest matching prefix (for
// "incomplete command" help), or none.
func (t *Tree) Lookup(tokens []string) (*Command, []string, []*Command) {
	var best *Command
	for _, cmd := range t.cmds {
		if len(cmd.Words) > len(tokens) {
			continue
		}
		match := true
		for i, w := range cmd.Words {
			if tokens[i] != w {
				match = false
				break
			}
		}
		if match && (best == nil || len(cmd.Words) > len(best.Words)) {
			best = cmd
		}
	}
	if best != nil {
		return best, tokens[len(best.Words):], nil
	}
	return nil, nil, t.under(tokens)
}

// hasSubcommands reports whether longer commands start with cmd's words.
func (t *Tree) hasSubcommands(cmd *Command) bool {
	n := len(cmd.Words)
	for _, u := range t.cmds {
		if len(u.Words) > n && equalWords(u.Words[:n], cmd.Words) {
			return true
		}
	}
	return false
}

// under returns the commands whose words start with the longest matching
// prefix of tokens.
func (t *Tree) under(tokens []string) []*Command {
	for n := len(tokens); n > 0; n-- {
		var out []*Command
		for _, cmd := range t.cmds {
			if len(cmd.Words) > n && equalWords(cmd.Words[:n], tokens[:n]) {
				out = append(out, cmd)
			}
		}
		if out != nil {
			return out
		}
	}
	return nil
}

func equalWords(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Run parses and runs one command line as the caller in c. It returns nil
// for an empty line or comment, ErrExit for exit, and otherwise the
// command's error, which is always one line.
func (t *Tree) Run(c *Ctx, line string) error {
	tokens, err := Tokenize(line)
	if err != nil {
		return err
	}
	if len(tokens) == 0 {
		return nil
	}
	c.Tree = t
	cmd, args, under := t.Lookup(tokens)
	if cmd != nil && len(args) > 0 && len(cmd.Args) == 0 {
		// "xmpp frob", "xmpp multi-domain": words meant as a subcommand of a
		// command that takes no arguments.
		if t.hasSubcommands(cmd) {
			cmd, under = nil, t.under(tokens)
		}
	}
	if cmd == nil {
		if under != nil {
			prefix := strings.Join(prefixOf(under, tokens), " ")
			next := strings.Join(nextWords(under, tokens), ", ")
			if n := len(prefixOf(under, tokens)); n < len(tokens) {
				return errorf("%s: unknown subcommand %q; use one of: %s (see 'help %s')", prefix, tokens[n], next, prefix)
			}
			return errorf("%s: incomplete command; it needs one of: %s (see 'help %s')", prefix, next, prefix)
		}
		return errorf("unknown command %q: type 'help' for the list of commands", tokens[0])
	}
	if !cmd.perm(args).Allows(c.Role) {
		return errorf("%s: permission denied: needs role %s (you are %s)", cmd.Name(), cmd.perm(args), c.Role)
	}
	if err := checkArgs(cmd, args); err != nil {
		return err
	}
	err = cmd.Run(c, args)
	if cmd.writes(args) {
		result := "ok"
		if err != nil {
			result = "failed: " + err.Error()
		}
		// The audit trail is this node's (node.db): it costs no
		// replicated write and works without a cluster quorum.
		if aerr := c.Store.AddAudit(store.AuditEntry{
			User: c.User, From: c.From, Action: auditLine(cmd, args), Result: result,
		}); aerr != nil && err == nil {
			err = errorf("%s: done, but the audit trail could not be written: %v", cmd.Name(), aerr)
		}
	}
	return err
}

// auditLine is what the audit trail records of an invocation: the command
// and its arguments, each quoted if needed. Commands never take secrets as
// arguments (they prompt for them), so nothing secret is written.
func auditLine(cmd *Command, args []string) string {
	parts := []string{cmd.Name()}
	for _, a := range args {
		parts = append(parts, Quote(a))
	}
	return strings.Join(parts, " ")
}

// prefixOf is the longest prefix of tokens shared by every command in under.
func prefixOf(under []*Command, tokens []string) []string {
	n := 0
	for n < len(tokens) {
		ok := true
		for _, u := range under {
			if len(u.Words) <= n || u.Words[n] != tokens[n] {
				ok = false
				break
			}
		}
		if !ok {
			break
		}
		n++
	}
	return tokens[:n]
}

// nextWords lists the distinct words that may follow the shared prefix.
func nextWords(under []*Command, tokens []string) []string {
	n := len(prefixOf(under, tokens))
	seen := map[string]bool{}
	var out []string
	for _, u := range under {
		if len(u.Words) > n && !seen[u.Words[n]] {
			seen[u.Words[n]] = true
			out = append(out, u.Words[n])
		}
	}
	sort.Strings(out)
	return out
}

func checkArgs(cmd *Command, args []string) error {
	min, max := 0, len(cmd.Args)
	for _, a := range cmd.Args {
		if !a.Optional {
			min++
		}
		if a.Repeat {
			max = -1
		}
	}
	usage := "usage: " + cmd.Usage()
	if len(args) < min {
		return errorf("%s: missing %s; %s", cmd.Name(), cmd.Args[len(args)].usage(), usage)
	}
	if max >= 0 && len(args) > max {
		return errorf("%s: unexpected argument %q; %s", cmd.Name(), args[max], usage)
	}
	for i, v := range args {
		a := cmd.Args[min0(i, len(cmd.Args)-1)]
		switch a.Kind {
		case ArgEnum:
			if !contains(a.Values, v) {
				return errorf("%s: %q is not one of %s; %s", cmd.Name(), v, strings.Join(a.Values, ", "), usage)
			}
		case ArgNumber:
			if _, err := parseCount(v); err != nil {
				return errorf("%s: <%s> must be a whole number, not %q; %s", cmd.Name(), a.Name, v, usage)
			}
		case ArgFile:
			if err := pki.CheckName(v); err != nil {
				return errorf("%s: %v", cmd.Name(), err)
			}
		}
	}
	return nil
}

func min0(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func parseCount(s string) (int, error) {
	n := 0
	if s == "" || len(s) > 9 {
		return 0, errors.New("bad number")
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, errors.New("bad number")
		}
		n = n*10 + int(r-'0')
	}
	return n, nil
}
