package commands

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/parley-xmpp/parley/server/status"
)

// XMPPMonitor is the engine's live view and control of its connections,
// for xmpp sessions and xmpp connections (part of XMPPEngine).
type XMPPMonitor interface {
	// Sessions lists the bound client resources matching filter ("" all,
	// a domain, a bare or a full JID, normalized), with those on other
	// cluster nodes (Node set).
	Sessions(filter string) []status.Session
	// Kick closes the sessions of a bare or full JID with a
	// policy-violation stream error whose text is reason: on this node,
	// and on the other nodes of a cluster, which it asks and waits for.
	Kick(jid, reason string) (status.Kicked, error)
	// Connections lists the engine's TCP connections.
	Connections() []status.Connection
}

func xmppSessionsCommands() []*Command {
	return []*Command{
		{
			Words:   []string{"xmpp", "sessions"},
			Args:    []Arg{{Name: "domain|jid", Optional: true}},
			Summary: "List the client sessions bound now (of a domain or a user if given): address, TLS, SASL, idle time, stanzas",
			Help: "One line per bound resource: its full JID; the client's address; the TLS version and SASL mechanism it\n" +
				"logged in with; when it connected (UTC) and how long since it last sent anything (stanzas or\n" +
				"keepalives: a client silent for the idle timeout of `xmpp limits` is pinged, twice that, closed);\n" +
				"the stanzas it sent (IN) and that were written to it (OUT); and FEATURES, what it uses: presence\n" +
				"with its priority once it is available, \"-\" before.\n" +
				"Give a hosted domain to see its users' sessions, a bare JID (alice@example.com) for all of one\n" +
				"user's resources, or a full JID (alice@example.com/phone) for one.\n" +
				"In a cluster, this node's sessions come first with all their detail; the resources bound on the\n" +
				"other nodes follow as \"on node <address>\" with what this node knows of them (their presence): run\n" +
				"xmpp sessions on that node for the rest.",
			Example: "xmpp sessions\nxmpp sessions example.com\nxmpp sessions alice@example.com",
			Perm:    PermRead,
			Run:     runXMPPSessions,
		},
		{
			Words:   []string{"xmpp", "sessions", "kick"},
			Args:    []Arg{{Name: "full-or-bare-jid"}, {Name: "reason", Optional: true, Repeat: true}},
			Summary: "Close a user's sessions (a bare JID: every resource; a full JID: one) with a stream error",
			Help: "Closes the session(s) with the stream error policy-violation (RFC 6120\n" +
				"§4.9.3.14: the server's local policy, here the administrator's decision) and the reason as its\n" +
				"text, which clients show; without a reason the text is \"closed by the server's administrator\".\n" +
				"(Not not-authorized, which tells a client its credentials are wrong, nor reset or\n" +
				"system-shutdown, which invite it to reconnect at once.) The stanzas queued for the session are\n" +
				"delivered to the user's other sessions, stored offline or bounced, as for any session that ends.\n" +
				"The client may log in again: to keep a user out, delete the account or change its password\n" +
				"(xmpp user del, xmpp user passwd). On a cluster, the nodes that hold sessions of the user are\n" +
				"asked to close theirs, and the command waits (up to 3 s) and says where each was closed.",
			Example: "xmpp sessions kick alice@example.com/phone\nxmpp sessions kick alice@example.com maintenance until 10:00",
			Perm:    PermXMPP,
			Run:     runXMPPSessionsKick,
		},
		{
			Words:   []string{"xmpp", "connections"},
			Summary: "List every TCP connection of the XMPP service by kind: peer address, age, bytes in and out",
			Help: "KIND is what the connection carries: pre-login (a client that has not bound a session yet, or a\n" +
				"connection whose stream header has not come yet), client (a bound session), server-in (another\n" +
				"server connected here), server-out (this server connected to another) or component (a call\n" +
				"bridge). NAME is who is at the other end once known: the client's full JID, the domains of a\n" +
				"server link (from → to), the component's address; \"-\" while a server or component has not\n" +
				"authenticated. IN and OUT are the bytes read from and written to the socket since it opened,\n" +
				"TLS included. The list is this node's.",
			Example: "xmpp connections",
			Perm:    PermRead,
			Run:     runXMPPConnections,
		},
	}
}

// monitor is the engine's live view, or the error to print without one.
func monitor(c *Ctx, what string) (XMPPMonitor, error) {
	if c.XMPP == nil {
		return nil, errorf("%s: not available: no XMPP engine in this process", what)
	}
	return c.XMPP, nil
}

// sessionFilter checks xmpp sessions' argument: a hosted domain, a bare or
// a full JID of a hosted domain; it returns the normalized filter.
func sessionFilter(c *Ctx, arg string, bareOrFull bool) (string, error) {
	cfg, err := c.Store.XMPP()
	if err != nil {
		return "", err
	}
	if !strings.ContainsAny(arg, "@/") {
		if bareOrFull {
			return "", fmt.Errorf("%q is not a JID: give alice@%s (all her sessions) or alice@%s/phone (one)", arg, exampleDomain(c), exampleDomain(c))
		}
		d, err := parseDomain(arg)
		if err != nil {
			return "", err
		}
		if _, ok := cfg.Domain(d); !ok {
			return "", notHosted(d, cfg)
		}
		return d, nil
	}
	j, err := jid.Parse(arg)
	if err != nil {
		return "", fmt.Errorf("%q is not a valid JID: %v", arg, err)
	}
	if j.Localpart() == "" {
		return "", fmt.Errorf("%q has no user part: give an address like alice@%s", arg, j.Domainpart())
	}
	if _, ok := cfg.Domain(j.Domainpart()); !ok {
		return "", notHosted(j.Domainpart(), cfg)
	}
	return j.String(), nil
}

func runXMPPSessions(c *Ctx, args []string) error {
	const what = "xmpp sessions"
	m, err := monitor(c, what)
	if err != nil {
		return err
	}
	filter := ""
	if len(args) == 1 {
		if filter, err = sessionFilter(c, args[0], false); err != nil {
			return errorf("%s: %v", what, err)
		}
	}
	list := m.Sessions(filter)
	of := ""
	if filter != "" {
		of = " of " + filter
	}
	if len(list) == 0 {
		c.printf("No client sessions%s\n", of)
		return nil
	}
	now := c.now()
	here := 0
	elsewhere := map[string]int{}
	tw := tabwriter.NewWriter(c.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JID\tADDRESS\tTLS\tSASL\tSINCE\tIDLE\tIN\tOUT\tFEATURES")
	for _, s := range list {
		if s.Node != "" {
			elsewhere[s.Node]++
			fmt.Fprintf(tw, "%s\ton node %s\t-\t-\t-\t-\t-\t-\t%s\n", s.JID, nodeName(c, s.Node), features(s))
			continue
		}
		here++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.JID, orDash(s.Remote), orDash(s.TLS), orDash(s.Mechanism),
			s.Since.UTC().Format("2006-01-02 15:04:05"), shortDuration(now.Sub(s.LastRead)), s.StanzasIn, s.StanzasOut, features(s))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	line := plural(here, "session") + " on this node"
	if len(elsewhere) > 0 {
		nodes := make([]string, 0, len(elsewhere))
		for n := range elsewhere {
			nodes = append(nodes, n)
		}
		sort.Strings(nodes)
		var parts []string
		for _, n := range nodes {
			parts = append(parts, fmt.Sprintf("%d on node %s", elsewhere[n], nodeName(c, n)))
		}
		line += ", " + strings.Join(parts, ", ")
	}
	c.printf("%s\n", line)
	return nil
}

// features is what a session uses, for the FEATURES column.
func features(s status.Session) string {
	if !s.Available {
		return "-"
	}
	return fmt.Sprintf("presence(prio %d)", s.Priority)
}

func runXMPPSessionsKick(c *Ctx, args []string) error {
	const what = "xmpp sessions kick"
	m, err := monitor(c, what)
	if err != nil {
		return err
	}
	j, err := sessionFilter(c, args[0], true)
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	reason := strings.TrimSpace(strings.Join(args[1:], " "))
	if len(m.Sessions(j)) == 0 {
		return errorf("%s: %s has no session: see xmpp sessions", what, j)
	}
	k, err := m.Kick(j, reason)
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	closed := k.Here
	var where []string
	if k.Here > 0 {
		where = append(where, fmt.Sprintf("%d on this node", k.Here))
	}
	var nodes []string
	for n := range k.Nodes {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, n := range nodes {
		closed += k.Nodes[n]
		where = append(where, fmt.Sprintf("%d on node %s", k.Nodes[n], nodeName(c, n)))
	}
	if closed > 0 {
		c.printf("Closed %s of %s (policy-violation", plural(closed, "session"), j)
		if reason != "" {
			c.printf(": %s", reason)
		}
		c.printf(")")
		if len(nodes) > 0 {
			c.printf(": %s", strings.Join(where, ", "))
		}
		c.printf("\n")
	}
	if len(k.Unanswered) > 0 {
		var names []string
		for _, n := range k.Unanswered {
			names = append(names, nodeName(c, n))
		}
		return errorf("%s: node %s did not close the sessions of %s within %v: run the kick there", what, strings.Join(names, ", "), j, kickWait)
	}
	return nil
}

// kickWait is how long a kick waits for the other nodes (server.KickWait).
const kickWait = 3 * time.Second

func runXMPPConnections(c *Ctx, args []string) error {
	m, err := monitor(c, "xmpp connections")
	if err != nil {
		return err
	}
	list := m.Connections()
	if len(list) == 0 {
		c.printf("No XMPP connections\n")
		return nil
	}
	now := c.now()
	count := map[status.ConnKind]int{}
	tw := tabwriter.NewWriter(c.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tPEER\tNAME\tAGE\tIN\tOUT")
	for _, cn := range list {
		count[cn.Kind]++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", cn.Kind, orDash(cn.Peer), orDash(cn.Name), shortDuration(now.Sub(cn.Since)),
			byteCount(cn.BytesIn), byteCount(cn.BytesOut))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var parts []string
	for _, k := range []status.ConnKind{status.ConnPreLogin, status.ConnClient, status.ConnServerIn, status.ConnServerOut, status.ConnComponent} {
		if count[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[k], k))
		}
	}
	c.printf("%s: %s\n", plural(len(list), "connection"), strings.Join(parts, ", "))
	return nil
}

// shortDuration is a duration in its two largest units: 42s, 3m05s,
// 2h10m, 4d3h.
func shortDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
	}
}

// byteCount is a byte count in B, KiB, MiB or GiB.
func byteCount(n uint64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
}
