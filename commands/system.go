package commands

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/store"
)

// DefaultHostname is the prompt's name until one is set.
const DefaultHostname = "parley"

// Hostname returns the appliance's configured host name.
func Hostname(s *store.Store) string {
	if h, ok := s.Config(store.ConfigHostname); ok && h != "" {
		return h
	}
	return DefaultHostname
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// CheckHostname validates a host name (RFC 1123 labels, at most 253 chars).
func CheckHostname(h string) error {
	if len(h) > 253 || !hostnameRE.MatchString(h) {
		return fmt.Errorf("%q is not a valid host name: use letters, digits and hyphens, in dot-separated labels of at most 63 characters", h)
	}
	return nil
}

func systemCommands(t *Tree) []*Command {
	return []*Command{
		{
			Words:   []string{"help"},
			Args:    []Arg{{Name: "command", Optional: true, Repeat: true}},
			Summary: "List the command families, a family's commands, or one command's usage, help and example",
			Help: "help alone prints one line per family of commands (pki, user, xmpp federation …); help <family>\n" +
				"lists that family's commands, and the families under it one line each; help <command> shows the\n" +
				"command's usage, help, role and example, then the commands under it.",
			Example: "help\nhelp xmpp federation\nhelp user add",
			Perm:    PermAny,
			Run:     runHelp,
		},
		{
			Words:   []string{"exit"},
			Summary: "Leave the shell (Ctrl-D does the same)",
			Perm:    PermAny,
			Run:     func(c *Ctx, args []string) error { return ErrExit },
		},
		{
			Words:   []string{"version"},
			Summary: "Show the software version",
			Perm:    PermRead,
			Run: func(c *Ctx, args []string) error {
				c.printf("Parley %s\n", c.Version)
				return nil
			},
		},
		{
			Words:   []string{"uptime"},
			Summary: "Show how long the appliance has been running",
			Perm:    PermRead,
			Run: func(c *Ctx, args []string) error {
				up := c.now().Sub(c.Started).Truncate(time.Second)
				c.printf("up %s, since %s\n", formatDuration(up), c.Started.UTC().Format(time.RFC3339))
				return nil
			},
		},
		{
			Words:            []string{"hostname"},
			Args:             []Arg{{Name: "name", Optional: true}},
			Summary:          "Show or set the appliance's host name (the shell prompt)",
			Help:             "With no argument, prints the host name. With a name, sets it; every open shell's prompt changes at its next line.",
			Example:          "hostname\nhostname xmpp1.example.com",
			Perm:             PermSystem,
			QueryWithoutArgs: true,
			Run: func(c *Ctx, args []string) error {
				if len(args) == 0 {
					c.printf("%s\n", Hostname(c.Store))
					return nil
				}
				if err := CheckHostname(args[0]); err != nil {
					return errorf("hostname: %v", err)
				}
				return commit(c, store.ConfigSet{Key: store.ConfigHostname, Value: args[0]})
			},
		},
		{
			Words:   []string{"health"},
			Summary: "Check the store, the files area, certificate expiry and the open files",
			Help: "Prints one line per check with OK, WARN or FAIL. Certificates in the files area that have expired\n" +
				"are FAIL, those expiring within 30 days WARN. Open files over 80% of the process's open-file limit\n" +
				"are WARN (new connections fail at the limit). The command fails if any check fails.",
			Perm: PermRead,
			Run:  runHealth,
		},
		{
			Words:   []string{"audit"},
			Args:    []Arg{{Name: "count", Kind: ArgNumber, Optional: true}},
			Summary: "Show the audit trail: who changed what, and when (default: the last 20)",
			Example: "audit\naudit 100",
			Perm:    PermRead,
			Run: func(c *Ctx, args []string) error {
				n := 20
				if len(args) == 1 {
					n, _ = parseCount(args[0])
				}
				entries, err := c.Store.Audit(n)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(c.Out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tUSER\tFROM\tACTION\tRESULT")
				for _, e := range entries {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format(time.RFC3339), e.User, orDash(e.From), e.Action, e.Result)
				}
				return tw.Flush()
			},
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func formatDuration(d time.Duration) string {
	days := int(d / (24 * time.Hour))
	d -= time.Duration(days) * 24 * time.Hour
	h, m, s := int(d/time.Hour), int(d/time.Minute)%60, int(d/time.Second)%60
	if days > 0 {
		return fmt.Sprintf("%d days, %02d:%02d:%02d", days, h, m, s)
	}
	return fmt.Sprintf("%02d:%02d:%02d", h, m, s)
}

// familySummaries describe the families of commands that are more than
// one command; a family of one command is described by its summary.
var familySummaries = map[string]string{
	"backup":            "Snapshots of the configuration and XMPP data in the files area: take, list, roll back",
	"dns":               "The DNS servers the XMPP service uses, and lookups with them",
	"metrics":           "Prometheus metrics of this node: where they are served, the exporter's state",
	"syslog":            "This node's log: last lines, paged, followed live; remote syslog servers (RFC 5424); audit file",
	"pki":               "Keys, certificate signing requests, self-signed certificates; inspect, match and verify files",
	"user":              "Admin users of this shell: add, delete, list, roles, password expiry, unlock",
	"user rule":         "Password and SSH login rules for admin users",
	"user sshkey":       "SSH public keys of admin users",
	"xmpp":              "The XMPP service: status, enable, disable, reset, domains, certificates, listen addresses, ports",
	"xmpp callbridge":   "Call bridges (XEP-0114 components) and their secrets, in Cisco Meeting Server's format",
	"xmpp cluster":      "Clustering appliances: status, enable, initialize, join, remove, trust",
	"xmpp federation":   "Server-to-server federation: enable, policy, secure domains, trust, routes, checks",
	"xmpp limits":       "Limits of the XMPP service: connections before login, stanza rates",
	"xmpp multi-domain": "More hosted domains, each with its own certificate",
	"xmpp user":         "XMPP accounts: add, delete, list, passwords, CSV import, password rule",
}

// A first word with more than bigFamily commands is split: each second
// word with at least subFamily commands is a family of its own.
const (
	bigFamily = 15
	subFamily = 3
)

// count is how many commands start with words.
func (t *Tree) count(words ...string) int {
	n := 0
	for _, cmd := range t.cmds {
		if len(cmd.Words) >= len(words) && equalWords(cmd.Words[:len(words)], words) {
			n++
		}
	}
	return n
}

// familyOf is the family a command belongs to: its first word, or its
// first two for the big families' sub-families (xmpp federation).
func (t *Tree) familyOf(cmd *Command) string {
	if len(cmd.Words) >= 2 && t.count(cmd.Words[0]) > bigFamily && t.count(cmd.Words[:2]...) >= subFamily {
		return strings.Join(cmd.Words[:2], " ")
	}
	return cmd.Words[0]
}

// familySummary is a family's one line.
func (t *Tree) familySummary(name string, cmds []*Command) string {
	if s, ok := familySummaries[name]; ok {
		return s
	}
	if len(cmds) == 1 && cmds[0].Name() == name {
		return cmds[0].Summary
	}
	var words []string
	seen := map[string]bool{}
	n := len(strings.Fields(name))
	for _, cmd := range cmds {
		w := "(" + name + ")"
		if len(cmd.Words) > n {
			w = cmd.Words[n]
		}
		if !seen[w] {
			seen[w] = true
			words = append(words, w)
		}
	}
	return "Commands: " + strings.Join(words, ", ")
}

// visible reports whether role sees cmd in the lists of help.
func visible(cmd *Command, role string) bool { return cmd.Perm.Allows(role) || cmd.QueryWithoutArgs }

// families lists the families (in the tree's order, by name) with the
// commands of each that role sees.
func (t *Tree) families(role string) ([]string, map[string][]*Command) {
	var names []string
	by := map[string][]*Command{}
	for _, cmd := range t.cmds {
		if !visible(cmd, role) {
			continue
		}
		f := t.familyOf(cmd)
		if by[f] == nil {
			names = append(names, f)
		}
		by[f] = append(by[f], cmd)
	}
	sort.Strings(names)
	return names, by
}

func runHelp(c *Ctx, args []string) error {
	t := c.Tree
	if len(args) == 0 {
		c.printf("Command families (type 'help <family>' for its commands, 'help <command>' for one command):\n")
		names, by := t.families(c.Role)
		tw := tabwriter.NewWriter(c.Out, 0, 0, 2, ' ', 0)
		for _, f := range names {
			fmt.Fprintf(tw, "  %s\t%s\n", f, t.familySummary(f, by[f]))
		}
		return tw.Flush()
	}
	cmd, rest, _ := t.Lookup(args)
	if len(rest) > 0 {
		cmd = nil // a shorter command matched: not the one asked about
	}
	// The commands under the words asked about, e.g. "help xmpp user".
	under := t.under(args)
	if len(prefixOf(under, args)) < len(args) {
		under = nil
	}
	if cmd == nil && len(under) == 0 {
		return errorf("help: no command %q: type 'help' for the list of commands", strings.Join(args, " "))
	}
	if cmd != nil {
		writeCommandHelp(c.Out, cmd)
		if len(under) == 0 {
			return nil
		}
		c.printf("\n")
	}
	// A family's own commands, then one line per family under it.
	asked := strings.Join(args, " ")
	_, by := t.families(c.Role)
	tw := tabwriter.NewWriter(c.Out, 0, 0, 2, ' ', 0)
	var subs []string
	for _, u := range under {
		if f := t.familyOf(u); f != asked && strings.HasPrefix(f, asked+" ") {
			if len(subs) == 0 || subs[len(subs)-1] != f {
				subs = append(subs, f)
			}
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\n", u.Usage(), u.Summary)
	}
	for _, f := range subs {
		if len(by[f]) > 0 {
			fmt.Fprintf(tw, "  %s …\t%s (help %s)\n", f, t.familySummary(f, by[f]), f)
		}
	}
	return tw.Flush()
}

func writeCommandHelp(w interface{ Write([]byte) (int, error) }, cmd *Command) {
	fmt.Fprintf(w, "usage: %s\n  %s\n", cmd.Usage(), cmd.Summary)
	if cmd.Help != "" {
		fmt.Fprintf(w, "\n%s\n", indent(cmd.Help, "  "))
	}
	fmt.Fprintf(w, "\nrole: %s\n", cmd.Perm)
	ex := cmd.Example
	if ex == "" {
		ex = cmd.Usage()
		if len(cmd.Args) > 0 {
			ex = cmd.Name()
		}
	}
	fmt.Fprintf(w, "example:\n%s\n", indent(ex, "  "))
}

func indent(s, prefix string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}

func runHealth(c *Ctx, args []string) error {
	failed := false
	line := func(status, check, detail string) {
		if status == "FAIL" {
			failed = true
		}
		c.printf("%-4s  %-22s %s\n", status, check, detail)
	}
	if err := c.Store.Check(); err != nil {
		line("FAIL", "store", err.Error())
	} else {
		v, _ := c.Store.Schema()
		line("OK", "store", fmt.Sprintf("consistent, schema %d", v))
	}
	if err := probeWrite(c.Files); err != nil {
		line("FAIL", "files area", err.Error())
	} else {
		var st syscall.Statfs_t
		status, detail := "OK", "writable"
		if syscall.Statfs(c.Files.Dir(), &st) == nil {
			free := st.Bavail * uint64(st.Bsize)
			detail = fmt.Sprintf("writable, %s free", humanBytes(free))
			if free < 100<<20 {
				status, detail = "WARN", detail+": less than 100 MiB"
			}
		}
		line(status, "files area", detail)
	}
	entries, _ := c.Files.List()
	nCerts, nBad := 0, 0
	now := c.now()
	for _, e := range entries {
		data, err := c.Files.ReadFile(e.Name)
		if err != nil {
			continue
		}
		s := pki.Summarize(data)
		if (s.Kind != pki.KindCertificate && s.Kind != pki.KindBundle) || s.NotAfter.IsZero() {
			continue
		}
		nCerts++
		left := s.NotAfter.Sub(now)
		switch {
		case left <= 0:
			nBad++
			line("FAIL", "certificate "+e.Name, "expired "+s.NotAfter.UTC().Format("2006-01-02"))
		case left < 30*24*time.Hour:
			nBad++
			line("WARN", "certificate "+e.Name, fmt.Sprintf("expires %s (in %d days)", s.NotAfter.UTC().Format("2006-01-02"), int(left.Hours()/24)))
		}
	}
	switch {
	case nCerts == 0:
		line("OK", "certificates", "none in the files area")
	case nBad == 0:
		line("OK", "certificates", fmt.Sprintf("%d checked, none expiring within 30 days", nCerts))
	}
	if c.XMPP != nil {
		if st := c.XMPP.Status(); st.FileLimit > 0 {
			if float64(st.OpenFiles) > openFilesNear*float64(st.FileLimit) {
				line("WARN", "open files", openFilesText(st.OpenFiles, st.FileLimit)+
					": near the limit, new connections will fail; raise it (ulimit -n, systemd LimitNOFILE=) or lower xmpp limits pre-auth")
			} else {
				line("OK", "open files", openFilesText(st.OpenFiles, st.FileLimit))
			}
		}
	}
	directoryHealth(c, line)
	if failed {
		return errorf("health: some checks failed (see FAIL above)")
	}
	return nil
}

func probeWrite(a *pki.Area) error {
	name, f, err := a.CreateTemp(0o600)
	if err != nil {
		return fmt.Errorf("not writable: %v", err)
	}
	f.Close()
	return a.Root().Remove(name)
}

func humanBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d KiB", n>>10)
	}
}
