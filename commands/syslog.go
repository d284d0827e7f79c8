package commands

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/store"
)

// How many lines `syslog` shows without an argument, and a page of
// `syslog page`.
const (
	syslogTail = 50
	pageLines  = 22
)

func logCommands() []*Command {
	return []*Command{
		{
			Words:   []string{"xmpp", "log", "level"},
			Args:    []Arg{{Name: "level", Kind: ArgEnum, Values: logging.LevelNames, Optional: true}},
			Summary: "Show or set what the log records: none, major, problems (the default), low-level or all",
			Help: "CommuniGate Pro's log levels, each including the ones before it:\n" +
				"  none       nothing is logged\n" +
				"  major      major events and delivery reports: logins, server links up and down,\n" +
				"             components connected, sessions closed by an administrator, cluster changes\n" +
				"  problems   also non-fatal errors: failed logins, peers that cannot be reached, limits hit\n" +
				"  low-level  also protocol steps: streams negotiated, sessions bound and closed, links idle\n" +
				"  all        also every stanza read from a connection (message bodies and all other text\n" +
				"             hidden unless 'xmpp log bodies on'; passwords and SASL data never)\n" +
				"Records of an XMPP connection are tagged XMPPI (client), XMPPS (incoming server), XMPPO\n" +
				"(outgoing server) or XMPPC (component), with the connection's number and peer address, so\n" +
				"one conversation can be followed. The level is this node's (node-local) and applies at once,\n" +
				"to the log file, 'syslog' and the remote syslog servers alike. Without an argument: shows it.",
			Example:          "xmpp log level low-level\nxmpp log level",
			Perm:             PermXMPP,
			QueryWithoutArgs: true,
			Run:              runLogLevel,
		},
		{
			Words:   []string{"xmpp", "log", "bodies"},
			Args:    []Arg{{Name: "setting", Kind: ArgEnum, Values: []string{"on", "off"}, Optional: true}},
			Summary: "Show or set whether stanzas logged at level all show their text (message bodies)",
			Help: "Off (the default): a stanza logged at level all shows its elements and attributes, every text\n" +
				"in it is replaced by [hidden]. On: message bodies and other text are written too, except\n" +
				"passwords (in-band registration, legacy authentication, room passwords, password form fields)\n" +
				"and SASL data, which are never written. Only matters at level all. Node-local.",
			Example:          "xmpp log bodies on",
			Perm:             PermXMPP,
			QueryWithoutArgs: true,
			Run:              runLogBodies,
		},
		{
			Words:   []string{"syslog"},
			Args:    []Arg{{Name: "lines", Kind: ArgNumber, Optional: true}},
			Summary: "Show the last lines of this node's log (50 unless a number is given)",
			Help: "The log of this node, oldest line first: time (UTC), level (MAJOR, PROBLEM, LOW, ALL), the\n" +
				"connection's tag and peer address when the record is of an XMPP connection, and the message.\n" +
				fmt.Sprintf("The last %d lines (at most 4 MiB) are kept in memory; the file log/parley.log in the data directory\n", logging.DefaultRing) +
				"keeps more (rotated at 10 MiB, four older files kept). See also syslog page, syslog follow,\n" +
				"and syslog server list for remote logging.",
			Example: "syslog\nsyslog 200",
			Perm:    PermRead,
			Run:     runSyslog,
		},
		{
			Words:   []string{"syslog", "page"},
			Summary: "Show this node's log a page at a time (in exec mode: all of it)",
			Help: fmt.Sprintf("Every line kept in memory (the last %d), oldest first, %d lines a page: Enter shows the\n", logging.DefaultRing, pageLines) +
				"next page, q (or Ctrl-C) stops. Without a terminal (ssh host 'syslog page') every line is printed.",
			Perm: PermRead,
			Run:  runSyslogPage,
		},
		{
			Words:   []string{"syslog", "follow"},
			Summary: "Show this node's log as it is written, until Ctrl-C (in exec mode: until the session ends)",
			Help: "Prints each new line of the log at once (at the level 'xmpp log level' set). At a terminal,\n" +
				"Ctrl-C or Enter stops; in exec mode (ssh host 'syslog follow') it runs until the SSH session\n" +
				"ends. If the terminal cannot keep up, a line says how many were skipped.",
			Perm: PermRead,
			Run:  runSyslogFollow,
		},
		{
			Words: []string{"syslog", "server", "add"},
			Args: []Arg{{Name: "host[:port]"},
				{Name: "protocol", Kind: ArgEnum, Values: logging.Protocols, Optional: true}},
			Syntax:  "syslog server add <host>[:<port>] [tcp|tls|udp]",
			Summary: "Send this node's log to a remote syslog server (RFC 5424) once syslog is enabled",
			Help: "Records go as RFC 5424 messages, facility daemon, APP-NAME parley, HOSTNAME this appliance's\n" +
				"host name, MSGID the connection's tag (XMPPI, XMPPS, XMPPO, XMPPC) with its number and peer in\n" +
				"the structured data [conn@32473 id=… peer=…]. udp (the default, port 514) sends one datagram\n" +
				"a record (cut at 2048 bytes); tcp (port 514) and tls (port 6514, RFC 5425; the server's\n" +
				"certificate must be valid for its name under the system's trusted roots) frame records by\n" +
				"octet counting (RFC 6587). Each server has a queue of its own: a server that is slow or down\n" +
				fmt.Sprintf("never holds up the XMPP service; past %d waiting records new ones are dropped and counted,\n", logging.QueueLen) +
				"and the connection is retried (every second, backing off to a minute). At most 8 servers.\n" +
				"Node-local, as on CMS: on a cluster, add the servers on every node.",
			Example: "syslog server add 192.0.2.10\nsyslog server add logs.example.com:6514 tls\nsyslog enable",
			Perm:    PermSystem,
			Run:     runSyslogServerAdd,
		},
		{
			Words:   []string{"syslog", "server", "del"},
			Args:    []Arg{{Name: "host"}},
			Syntax:  "syslog server del <host>[:<port>]",
			Summary: "Stop sending the log to a remote syslog server",
			Help:    "Removes every server entry of that host (or only the one of host:port).",
			Example: "syslog server del 192.0.2.10",
			Perm:    PermSystem,
			Run:     runSyslogServerDel,
		},
		{
			Words:   []string{"syslog", "server", "list"},
			Summary: "List the remote syslog servers, whether syslog is enabled, and each server's state",
			Help: "Per server: address, protocol, state (connected, connecting, unreachable and why), records sent,\n" +
				"dropped (queue full) and waiting. Also shows the audit file and the log level.",
			Perm: PermRead,
			Run:  runSyslogServerList,
		},
		{
			Words:   []string{"syslog", "enable"},
			Summary: "Start sending this node's log to the remote syslog servers",
			Perm:    PermSystem,
			Run:     func(c *Ctx, _ []string) error { return setSyslogEnabled(c, true) },
		},
		{
			Words:   []string{"syslog", "disable"},
			Summary: "Stop sending this node's log to the remote syslog servers (they stay configured)",
			Perm:    PermSystem,
			Run:     func(c *Ctx, _ []string) error { return setSyslogEnabled(c, false) },
		},
		{
			Words:   []string{"syslog", "audit", "add"},
			Args:    []Arg{{Name: "file", Kind: ArgFile}},
			Summary: "Also append this node's audit trail to a file in the files area",
			Help: "Every audited shell command and SFTP change is appended, one line each:\n" +
				"  2026-12-06T09:00:00Z user=admin from=192.0.2.7 action=\"xmpp log level all\" result=\"ok\"\n" +
				"The file can be downloaded by SFTP. It is created if missing; past 8 MiB it is renamed to\n" +
				"<file>.1 (replacing an older one) and a new one begun. One file at a time: adding another\n" +
				"replaces the setting. Node-local.",
			Example: "syslog audit add audit.log",
			Perm:    PermSystem,
			Run:     runSyslogAuditAdd,
		},
		{
			Words:   []string{"syslog", "audit", "del"},
			Summary: "Stop appending the audit trail to a file (the file stays)",
			Perm:    PermSystem,
			Run: func(c *Ctx, _ []string) error {
				if v, _ := c.Store.Config(store.SyslogAudit); v == "" {
					return errorf("syslog audit del: the audit trail is not written to a file")
				}
				if err := commit(c, store.ConfigDel{Key: store.SyslogAudit}); err != nil {
					return err
				}
				c.printf("The audit trail is no longer written to a file.\n")
				return nil
			},
		},
	}
}

func needLogs(c *Ctx, cmd string) (*logging.Hub, error) {
	if c.Logs == nil {
		return nil, errorf("%s: no log in this process", cmd)
	}
	return c.Logs, nil
}

func runLogLevel(c *Ctx, args []string) error {
	if len(args) == 0 {
		v, _ := c.Store.Config(store.LogLevel)
		if v == "" {
			v = logging.LevelName(logging.DefaultLevel) + " (the default)"
		}
		c.printf("Log level: %s\n", v)
		return nil
	}
	l, err := logging.ParseLevel(args[0])
	if err != nil {
		return errorf("xmpp log level: %v", err)
	}
	if err := commit(c, store.ConfigSet{Key: store.LogLevel, Value: logging.LevelName(l)}); err != nil {
		return err
	}
	c.printf("Log level: %s\n", logging.LevelName(l))
	return nil
}

func runLogBodies(c *Ctx, args []string) error {
	if len(args) == 0 {
		v, _ := c.Store.Config(store.LogBodies)
		if v != "on" {
			v = "off"
		}
		c.printf("Message bodies in the log: %s\n", v)
		return nil
	}
	if err := commit(c, store.ConfigSet{Key: store.LogBodies, Value: args[0]}); err != nil {
		return err
	}
	c.printf("Message bodies in the log: %s", args[0])
	if lv, _ := c.Store.Config(store.LogLevel); args[0] == "on" && lv != "all" {
		c.printf(" (written only at level all: xmpp log level all)")
	}
	c.printf("\n")
	return nil
}

func runSyslog(c *Ctx, args []string) error {
	h, err := needLogs(c, "syslog")
	if err != nil {
		return err
	}
	n := syslogTail
	if len(args) == 1 {
		v, err := strconv.Atoi(args[0])
		if err != nil || v < 1 {
			return errorf("syslog: %q: give a number of lines from 1 to %d", args[0], logging.DefaultRing)
		}
		n = v
	}
	lines := h.Lines(n)
	if len(lines) == 0 {
		c.printf("The log is empty (level %s).\n", logging.LevelName(h.Level()))
		return nil
	}
	for _, l := range lines {
		c.printf("%s\n", l)
	}
	return nil
}

func runSyslogPage(c *Ctx, _ []string) error {
	h, err := needLogs(c, "syslog page")
	if err != nil {
		return err
	}
	lines := h.Lines(0)
	if len(lines) == 0 {
		c.printf("The log is empty (level %s).\n", logging.LevelName(h.Level()))
		return nil
	}
	for i, l := range lines {
		if c.Prompt != nil && c.Prompt.Interactive() && i > 0 && i%pageLines == 0 {
			a, err := c.Prompt.Ask(fmt.Sprintf("-- %d of %d lines: Enter for more, q to stop -- ", i, len(lines)))
			if err != nil || strings.HasPrefix(strings.ToLower(strings.TrimSpace(a)), "q") {
				return nil
			}
		}
		c.printf("%s\n", l)
	}
	return nil
}

func runSyslogFollow(c *Ctx, _ []string) error {
	h, err := needLogs(c, "syslog follow")
	if err != nil {
		return err
	}
	f, err := h.Follow()
	if err != nil {
		return errorf("syslog follow: %v", err)
	}
	defer f.Close()
	stop := make(chan struct{})
	interactive := c.Prompt != nil && c.Prompt.Interactive()
	if interactive {
		c.printf("Following the log at level %s: Ctrl-C or Enter stops.\n", logging.LevelName(h.Level()))
		go func() {
			c.Prompt.Ask("")
			close(stop)
		}()
	} else {
		c.printf("Following the log at level %s until the session ends.\n", logging.LevelName(h.Level()))
	}
	for {
		select {
		case <-stop:
			return nil
		case <-c.Done:
			return nil
		case l := <-f.C:
			if n := f.Skipped(); n > 0 {
				c.printf("(%d lines skipped: the terminal did not keep up)\n", n)
			}
			if _, err := fmt.Fprintf(c.Out, "%s\n", l); err != nil {
				return nil // the session is gone
			}
		}
	}
}

func storedServers(c *Ctx) []logging.Server {
	v, _ := c.Store.Config(store.SyslogServers)
	return logging.ParseServers(v)
}

func runSyslogServerAdd(c *Ctx, args []string) error {
	proto := ""
	if len(args) > 1 {
		proto = args[1]
	}
	srv, err := logging.ParseServer(args[0], proto)
	if err != nil {
		return errorf("syslog server add: %v", err)
	}
	list := storedServers(c)
	for i, s := range list {
		if s.Host == srv.Host && s.Port == srv.Port {
			if s.Proto == srv.Proto {
				return errorf("syslog server add: %s is already a server", s)
			}
			list = append(list[:i], list[i+1:]...) // the protocol changes
			break
		}
	}
	if len(list) >= logging.MaxServers {
		return errorf("syslog server add: there are already %d servers, the most: delete one first (syslog server del)", logging.MaxServers)
	}
	list = append(list, srv)
	if err := commit(c, store.ConfigSet{Key: store.SyslogServers, Value: logging.FormatServers(list)}); err != nil {
		return err
	}
	c.printf("Syslog server %s added.", srv)
	if v, _ := c.Store.Config(store.SyslogEnabled); v != "true" {
		c.printf(" Records are sent once you say: syslog enable")
	}
	c.printf("\n")
	return nil
}

func runSyslogServerDel(c *Ctx, args []string) error {
	arg := strings.ToLower(args[0])
	list := storedServers(c)
	var keep []logging.Server
	for _, s := range list {
		if s.Host == strings.Trim(arg, "[]") || s.Addr() == arg {
			continue
		}
		keep = append(keep, s)
	}
	if len(keep) == len(list) {
		return errorf("syslog server del: %s is not a syslog server (see syslog server list)", args[0])
	}
	var op store.Op = store.ConfigSet{Key: store.SyslogServers, Value: logging.FormatServers(keep)}
	if len(keep) == 0 {
		op = store.ConfigDel{Key: store.SyslogServers}
	}
	if err := commit(c, op); err != nil {
		return err
	}
	c.printf("Syslog server %s deleted.\n", args[0])
	return nil
}

func runSyslogServerList(c *Ctx, _ []string) error {
	enabled, _ := c.Store.Config(store.SyslogEnabled)
	state := "disabled"
	if enabled == "true" {
		state = "enabled"
	}
	list := storedServers(c)
	c.printf("Node          : %s (the settings below are this node's)\n", Hostname(c.Store))
	var live map[logging.Server]logging.RemoteStatus
	if c.Logs != nil {
		live = map[logging.Server]logging.RemoteStatus{}
		for _, r := range c.Logs.Remotes() {
			live[r.Server] = r
		}
		c.printf("Log level     : %s\n", logging.LevelName(c.Logs.Level()))
	}
	c.printf("Remote syslog : %s\n", state)
	audit, _ := c.Store.Config(store.SyslogAudit)
	if audit == "" {
		audit = "none"
	} else if c.Logs != nil {
		if _, err := c.Logs.AuditFile(); err != nil {
			audit += " (last write failed: " + err.Error() + ")"
		}
	}
	c.printf("Audit file    : %s\n", audit)
	if len(list) == 0 {
		c.printf("No syslog servers: add one with syslog server add <host>[:<port>] [tcp|tls|udp]\n")
		return nil
	}
	tw := tabwriter.NewWriter(c.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tPROTOCOL\tSTATE\tSENT\tDROPPED\tQUEUED")
	for _, s := range list {
		r, ok := live[s]
		st := "not sending (syslog disabled)"
		if ok {
			st = r.State
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\n", s.Addr(), s.Proto, st, r.Sent, r.Dropped, r.Queued)
	}
	return tw.Flush()
}

func setSyslogEnabled(c *Ctx, on bool) error {
	v, _ := c.Store.Config(store.SyslogEnabled)
	if (v == "true") == on {
		if on {
			return errorf("syslog enable: remote syslog is already enabled")
		}
		return errorf("syslog disable: remote syslog is already disabled")
	}
	var op store.Op = store.ConfigDel{Key: store.SyslogEnabled}
	if on {
		op = store.ConfigSet{Key: store.SyslogEnabled, Value: "true"}
	}
	if err := commit(c, op); err != nil {
		return err
	}
	if !on {
		c.printf("Remote syslog disabled.\n")
		return nil
	}
	n := len(storedServers(c))
	switch n {
	case 0:
		c.printf("Remote syslog enabled, but there is no server yet: syslog server add <host>[:<port>] [tcp|tls|udp]\n")
	case 1:
		c.printf("Remote syslog enabled: sending to 1 server.\n")
	default:
		c.printf("Remote syslog enabled: sending to %d servers.\n", n)
	}
	return nil
}

func runSyslogAuditAdd(c *Ctx, args []string) error {
	name := args[0]
	if err := pki.CheckName(name); err != nil {
		return errorf("syslog audit add: %v", err)
	}
	if strings.HasSuffix(name, ".bak") {
		return errorf("syslog audit add: %s: .bak files are backups; choose another name, e.g. audit.log", name)
	}
	// Never append to a file that is something else (a key, a backup).
	if c.Files != nil && c.Files.Exists(name) {
		data, err := c.Files.ReadFile(name)
		if err != nil {
			return errorf("syslog audit add: %v", err)
		}
		if first, _, _ := bytes.Cut(data, []byte("\n")); len(data) > 0 && !bytes.Contains(first, []byte(" user=")) {
			return errorf("syslog audit add: %s exists and is not an audit file: choose another name", name)
		}
	}
	if err := commit(c, store.ConfigSet{Key: store.SyslogAudit, Value: name}); err != nil {
		return err
	}
	c.printf("The audit trail is now also appended to %s in the files area.\n", name)
	return nil
}
