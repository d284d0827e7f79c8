package commands

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// FederationChecker runs the federation troubleshooting steps (DNS, TCP
// reach, STARTTLS, certificate, authentication) from local to remote,
// reporting each step as it completes. It returns whether federation works.
type FederationChecker interface {
	FederationCheck(ctx context.Context, local, remote string, report func(status.Step)) (ok bool)
}

// Bounds of what federation commands accept and print.
var (
	checkTimeout = 60 * time.Second // the whole of xmpp federation check
)

const (
	maxShownFailures = 10  // recent failures in xmpp federation
	maxShownLinks    = 5   // link names on the Federation line of xmpp
	maxRemoteText    = 400 // characters of a remote-supplied string printed
	defaultS2SPort   = 5269
)

func federationCommands() []*Command {
	domain := Arg{Name: "domain"}
	pattern := Arg{Name: "pattern"}
	return []*Command{
		{
			Words:   []string{"xmpp", "federation"},
			Summary: "Show federation (server-to-server): setting, idle timeout, trust, policy, secure list, routes, links and recent failures",
			Help: "Links are the server-to-server streams the engine has open: local domain → remote domain, the\n" +
				"direction (out: this appliance connected; in: the remote server did), the state, how the peer was\n" +
				"authenticated (EXTERNAL: its certificate verified; dialback: XEP-0220), TLS, the peer's address,\n" +
				"since when, the stanzas sent (out) or received (in) on it, and for outgoing links the stanzas\n" +
				"waiting. Failures are the most recent failed\n" +
				"links, newest first, e.g. remote-server-not-found when a domain has no usable DNS records.\n" +
				"xmpp shows a one-line summary of the same.",
			Perm: PermRead,
			Run:  runFederationStatus,
		},
		{
			Words:   []string{"xmpp", "federation", "enable"},
			Summary: "Allow server-to-server traffic with other XMPP servers (accept their streams, connect to them)",
			Help: "Every XMPP listener then accepts server streams (jabber:server), and stanzas for remote domains\n" +
				"are sent to their servers, found with _xmpp-server._tcp and _xmpps-server._tcp SRV records or\n" +
				"their A/AAAA records on port 5269. TLS is required on every server-to-server stream. Publish\n" +
				"the SRV records and open the s2s port (5269) in the firewall first: see the admin guide.",
			Perm: PermXMPP,
			Run:  runFederationEnable,
		},
		{
			Words:   []string{"xmpp", "federation", "disable"},
			Summary: "Stop server-to-server traffic: open links close and stanzas for remote domains bounce",
			Help: "Waits up to 3 seconds for the engine to report the links closed. Stanzas sent to remote domains\n" +
				"afterwards are returned to their senders with an error; remote servers cannot connect.",
			Perm: PermXMPP,
			Run:  runFederationDisable,
		},
		{
			Words: []string{"xmpp", "federation", "idle-timeout"},
			Args:  []Arg{{Name: "seconds", Kind: ArgNumber}},
			Summary: fmt.Sprintf("Close an outgoing link idle for this many seconds (%d to %d, default %d)",
				int(store.MinFedIdleTimeout/time.Second), int(store.MaxFedIdleTimeout/time.Second), int(store.DefaultFedIdleTimeout/time.Second)),
			Help: "There is one outgoing link per pair of local and remote domain. It stays open while stanzas\n" +
				"flow and closes after this long without any; the next stanza opens it again. A new timeout\n" +
				"applies to the links already open too: one idle for longer than the new timeout closes at once.",
			Example: "xmpp federation idle-timeout 600",
			Perm:    PermXMPP,
			Run:     runFederationIdleTimeout,
		},
		{
			Words:   []string{"xmpp", "federation", "secure", "add"},
			Args:    []Arg{pattern},
			Summary: "Require a verified certificate from the domains matching a pattern (example.com, *.example.com or *)",
			Help: "Traffic with a domain on the secure list goes only over TLS with a certificate that verifies\n" +
				"(against the system roots and the trust bundle, see xmpp federation trust) and names the domain;\n" +
				"dialback is not accepted for it, and stanzas to it are refused with an error to the sender when\n" +
				"its server cannot prove its name that way. A pattern is a domain (matches itself only),\n" +
				"*.domain (every name below the domain, not the domain itself) or * (every domain).",
			Example: "xmpp federation secure add partner.example\nxmpp federation secure add *.partner.example",
			Perm:    PermXMPP,
			Run:     runFederationSecureAdd,
		},
		{
			Words:   []string{"xmpp", "federation", "secure", "del"},
			Args:    []Arg{pattern},
			Summary: "Remove a pattern from the secure list (dialback is accepted again for its domains)",
			Example: "xmpp federation secure del *.partner.example",
			Perm:    PermXMPP,
			Run:     runFederationSecureDel,
		},
		{
			Words:   []string{"xmpp", "federation", "secure", "list"},
			Summary: "List the secure patterns, one a line",
			Perm:    PermRead,
			Run:     runFederationSecureList,
		},
		{
			Words:   []string{"xmpp", "federation", "trust"},
			Args:    []Arg{{Name: "bundle", Kind: ArgFile}},
			Summary: "Trust the CA certificates in a bundle from the files area for remote servers, besides the system roots",
			Help: "For peers whose certificates come from a private CA. The file must hold at least one CA\n" +
				"certificate (PEM, basic constraints CA:TRUE) and no private key. The engine reads it when the\n" +
				"setting changes: after uploading a new version under the same name, run the command again.",
			Example: "xmpp federation trust partner-ca.pem",
			Perm:    PermXMPP,
			Run:     runFederationTrust,
		},
		{
			Words:   []string{"xmpp", "federation", "trust", "none"},
			Summary: "Trust only the system roots for remote servers' certificates",
			Perm:    PermXMPP,
			Run:     runFederationTrustNone,
		},
		{
			Words:   []string{"xmpp", "federation", "route", "add"},
			Args:    []Arg{domain, {Name: "host[:port]"}},
			Summary: "Send a remote domain's traffic to a fixed relay host instead of the one DNS names",
			Help: "The host is a DNS name or an IP address (an IPv6 address with a port in brackets: [2001:db8::1]:5269);\n" +
				"the port is 1 to 65535, default 5269. The relay's certificate must name the domain or the relay's\n" +
				"host name to count as verified; otherwise dialback is used, unless the domain is on the secure\n" +
				"list. A route for a domain that has one replaces it.",
			Example: "xmpp federation route add partner.example relay.example.net\nxmpp federation route add b.lan 192.0.2.20:5270",
			Perm:    PermXMPP,
			Run:     runFederationRouteAdd,
		},
		{
			Words:   []string{"xmpp", "federation", "route", "del"},
			Args:    []Arg{domain},
			Summary: "Remove a domain's route: its servers are found through DNS again",
			Example: "xmpp federation route del partner.example",
			Perm:    PermXMPP,
			Run:     runFederationRouteDel,
		},
		{
			Words:   []string{"xmpp", "federation", "route", "list"},
			Summary: "List the routes: domain and relay",
			Perm:    PermRead,
			Run:     runFederationRouteList,
		},
		{
			Words:   []string{"xmpp", "federation", "block"},
			Args:    []Arg{domain},
			Summary: "Refuse all traffic with a remote domain",
			Help: "Its servers cannot connect and stanzas to it bounce back to their senders. A block replaces an\n" +
				"allow entry for the same domain; remove it with xmpp federation policy del.",
			Example: "xmpp federation block spam.example",
			Perm:    PermXMPP,
			Run:     func(c *Ctx, args []string) error { return runFederationPolicy(c, args, store.PolicyBlock) },
		},
		{
			Words:   []string{"xmpp", "federation", "allow"},
			Args:    []Arg{domain},
			Summary: "Add a remote domain to the allow list (used in allow-list mode)",
			Help: "In allow-list mode (xmpp federation allow-list on) only domains with an allow entry federate;\n" +
				"otherwise every domain that is not blocked does. An allow replaces a block for the same domain.",
			Example: "xmpp federation allow partner.example",
			Perm:    PermXMPP,
			Run:     func(c *Ctx, args []string) error { return runFederationPolicy(c, args, store.PolicyAllow) },
		},
		{
			Words:   []string{"xmpp", "federation", "policy", "del"},
			Args:    []Arg{domain},
			Summary: "Remove a domain's block or allow entry",
			Example: "xmpp federation policy del spam.example",
			Perm:    PermXMPP,
			Run:     runFederationPolicyDel,
		},
		{
			Words:   []string{"xmpp", "federation", "policy", "list"},
			Summary: "Show the policy mode and the blocked and allowed domains",
			Perm:    PermRead,
			Run:     runFederationPolicyList,
		},
		{
			Words:   []string{"xmpp", "federation", "allow-list"},
			Args:    []Arg{{Name: "mode", Kind: ArgEnum, Values: []string{"on", "off"}}},
			Summary: "on: only domains with an allow entry federate; off (the default): every domain not blocked does",
			Example: "xmpp federation allow partner.example\nxmpp federation allow-list on",
			Perm:    PermXMPP,
			Run:     runFederationAllowList,
		},
		{
			Words:   []string{"xmpp", "federation", "check"},
			Args:    []Arg{domain, {Name: "local domain", Optional: true}},
			Summary: "Check step by step whether federation with a remote domain works, and say how to fix what does not",
			Help: "Runs what one would do by hand: the _xmpp-server._tcp and _xmpps-server._tcp SRV records (and\n" +
				"_xmpp-client._tcp, for information), the A/AAAA records of each target, TCP reach of each\n" +
				"target's port, STARTTLS and the certificate (names, chain, expiry), then SASL EXTERNAL or\n" +
				"dialback. One line per step, ok, warn, fail or info, and under a warn or fail the fix:\n" +
				"  ok    SRV _xmpp-server._tcp.b.lan: b.lan:5269 (priority 0, weight 5)\n" +
				"  fail  TCP 192.0.2.20:5269: connection refused\n" +
				"        fix: open port 5269 on b.lan's firewall\n" +
				"The last line is the verdict; the command fails when a step failed. The local domain (a hosted\n" +
				"domain, default the primary) is the one the check speaks for. It runs even while federation\n" +
				"is disabled, and stops after 60 seconds. It only reads, so every role may run it.",
			Example: "xmpp federation check partner.example\nxmpp federation check partner.example example.org",
			Perm:    PermRead,
			Run:     runFederationCheck,
		},
	}
}

// --- status ---------------------------------------------------------------

// printRows prints label : value rows aligned, as xmpp does.
func printRows(c *Ctx, rows [][]string) {
	width := 0
	for _, r := range rows {
		width = max(width, len(r[0]))
	}
	for _, r := range rows {
		for i, v := range r[1:] {
			label, sep := r[0], ":"
			if i > 0 {
				label, sep = "", " "
			}
			c.printf("%-*s %s %s\n", width, label, sep, v)
		}
	}
}

func runFederationStatus(c *Ctx, args []string) error {
	const what = "xmpp federation"
	fed, err := c.Store.Federation()
	if err != nil {
		return errorf("%s: reading the configuration: %v", what, err)
	}
	var rows [][]string
	add := func(label string, values ...string) { rows = append(rows, append([]string{label}, values...)) }

	state := "disabled"
	if fed.Enabled {
		state = "enabled"
	}
	if cfg, err := c.Store.XMPP(); err == nil && !cfg.Enabled {
		state += " (the XMPP service itself is disabled: xmpp enable)"
	}
	add("Federation", state)
	add("Idle timeout", fmt.Sprintf("%d seconds", int(fed.IdleTimeout/time.Second)))
	add("Trust", trustText(c, fed.Trust))
	add("Mode", modeText(fed.AllowList))
	blocked, allowed := policyDomains(fed)
	add("Blocked", listOrNone(blocked))
	add("Allowed", listOrNone(allowed))
	add("Secure", listOrNone(fed.Secure))
	var routes []string
	for _, d := range sortedKeys(fed.Routes) {
		routes = append(routes, d+" via "+fed.Routes[d])
	}
	add("Routes", routes...)
	if len(routes) == 0 {
		rows[len(rows)-1] = []string{"Routes", "none: remote servers are found through DNS"}
	}
	if c.XMPP == nil {
		add("Links", "not available: no XMPP engine in this process")
	} else {
		st := c.XMPP.Status()
		var links []string
		for _, l := range sortedLinks(st.Federation) {
			links = append(links, linkText(l))
		}
		if len(links) == 0 {
			links = []string{"none"}
		}
		add("Links", links...)
		failures := append([]status.Failure(nil), st.FederationFailures...)
		status.SortFailures(failures)
		var lines []string
		for i, f := range failures {
			if i == maxShownFailures {
				lines = append(lines, fmt.Sprintf("… and %d older", len(failures)-maxShownFailures))
				break
			}
			lines = append(lines, fmt.Sprintf("%s %s → %s: %s", timeText(f.At), f.Local, clean(f.Remote), clean(f.Error)))
		}
		if len(lines) == 0 {
			lines = []string{"none"}
		}
		add("Recent failures", lines...)
	}
	printRows(c, rows)
	return nil
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func modeText(allowList bool) string {
	if allowList {
		return "allow list: only the allowed domains federate"
	}
	return "block list: every domain federates except the blocked ones"
}

func policyDomains(fed store.FederationConfig) (blocked, allowed []string) {
	for _, d := range sortedKeys(fed.Policy) {
		switch fed.Policy[d] {
		case store.PolicyBlock:
			blocked = append(blocked, d)
		case store.PolicyAllow:
			allowed = append(allowed, d)
		}
	}
	return blocked, allowed
}

// trustText says which roots verify remote servers' certificates.
func trustText(c *Ctx, bundle string) string {
	if bundle == "" {
		return "system roots only"
	}
	data, err := c.Files.ReadFile(bundle)
	if err != nil {
		if !c.Files.Exists(bundle) {
			return "system roots and " + bundle + " (missing from the files area: upload it or run xmpp federation trust none)"
		}
		return "system roots and " + bundle + " (unreadable)"
	}
	cas, err := trustBundleCAs(data)
	if err != nil {
		return "system roots and " + bundle + " (not usable: " + err.Error() + ")"
	}
	return "system roots and " + bundle + " (" + plural(len(cas), "CA certificate") + ")"
}

// sortedLinks is a sorted copy of links (see status.SortLinks).
func sortedLinks(links []status.Link) []status.Link {
	out := append([]status.Link(nil), links...)
	status.SortLinks(out)
	return out
}

func linkText(l status.Link) string {
	var parts []string
	state := string(l.State)
	if state == "" {
		state = "unknown"
	}
	parts = append(parts, clean(state))
	if l.Auth != "" {
		parts = append(parts, clean(string(l.Auth)))
	}
	if l.TLS {
		parts = append(parts, "TLS")
	} else {
		parts = append(parts, "no TLS yet")
	}
	if l.Peer != "" {
		prep := "to"
		if l.Direction == status.In {
			prep = "from"
		}
		parts = append(parts, prep+" "+clean(l.Peer))
	}
	if !l.Since.IsZero() {
		parts = append(parts, "since "+timeText(l.Since))
	}
	if l.Direction == status.In {
		parts = append(parts, plural(int(l.Stanzas), "stanza")+" received")
	} else {
		parts = append(parts, plural(int(l.Stanzas), "stanza")+" sent", fmt.Sprintf("%d queued", l.Queued))
	}
	return fmt.Sprintf("%s → %s (%s): %s", l.Local, clean(l.Remote), clean(string(l.Direction)), strings.Join(parts, ", "))
}

// federationSummary is the Federation line of xmpp, e.g. "enabled, 2 links
// up (b.lan out, b.lan in)".
func federationSummary(c *Ctx, st status.XMPP) string {
	fed, err := c.Store.Federation()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	s := "disabled"
	if fed.Enabled {
		s = "enabled"
	}
	if c.XMPP == nil {
		return s
	}
	byState := map[status.LinkState][]string{}
	for _, l := range sortedLinks(st.Federation) {
		byState[l.State] = append(byState[l.State], clean(l.Remote)+" "+clean(string(l.Direction)))
	}
	names := func(l []string) string {
		if len(l) > maxShownLinks {
			l = append(l[:maxShownLinks:maxShownLinks], fmt.Sprintf("%d more", len(l)-maxShownLinks))
		}
		return " (" + strings.Join(l, ", ") + ")"
	}
	up := byState[status.Up]
	switch {
	case len(up) == 0 && fed.Enabled:
		s += ", no links up"
	case len(up) > 0:
		s += ", " + plural(len(up), "link") + " up" + names(up)
	}
	if l := byState[status.Connecting]; len(l) > 0 {
		s += fmt.Sprintf(", %d connecting", len(l)) + names(l)
	}
	if l := byState[status.Closing]; len(l) > 0 {
		s += fmt.Sprintf(", %d closing", len(l)) + names(l)
	}
	if n := len(st.FederationFailures); n > 0 {
		s += ", " + plural(n, "recent failure") + " (xmpp federation)"
	}
	return s
}

// clean makes a string that came from the network safe to print on the
// admin's terminal: control characters become '?', and it is cut short.
func clean(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == maxRemoteText {
			b.WriteString("…")
			break
		}
		n++
		switch {
		case r == utf8.RuneError, unicode.IsControl(r), unicode.Is(unicode.Bidi_Control, r):
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// --- enable, disable, idle timeout -----------------------------------------

func runFederationEnable(c *Ctx, args []string) error {
	const what = "xmpp federation enable"
	fed, err := c.Store.Federation()
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	if fed.Enabled {
		c.printf("Federation is already enabled\n")
		return nil
	}
	if err := applySetting(c, what, store.ConfigSet{Key: store.FedEnabled, Value: "true"}); err != nil {
		return err
	}
	cfg, err := c.Store.XMPP()
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	c.printf("Federation enabled: remote servers may connect on every XMPP listener (s2s port %d), and stanzas for remote domains are delivered; TLS is required on every server-to-server stream\n", cfg.PortS2S)
	if !cfg.Enabled {
		c.printf("Note: the XMPP service is disabled; federation starts with it (xmpp enable)\n")
	}
	if _, allowed := policyDomains(fed); fed.AllowList && len(allowed) == 0 {
		c.printf("Warning: allow-list mode is on and no domain is allowed, so no remote domain federates: xmpp federation allow <domain>\n")
	}
	return nil
}

func runFederationDisable(c *Ctx, args []string) error {
	const what = "xmpp federation disable"
	fed, err := c.Store.Federation()
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	if !fed.Enabled {
		c.printf("Federation is already disabled\n")
		return nil
	}
	before := 0
	if c.XMPP != nil {
		before = len(c.XMPP.Status().Federation)
	}
	if err := applySetting(c, what, store.ConfigSet{Key: store.FedEnabled, Value: "false"}); err != nil {
		return err
	}
	const done = "Federation disabled: server-to-server links close, remote servers cannot connect, and stanzas for remote domains bounce back to their senders"
	if before == 0 {
		c.printf("%s\n", done)
		return nil
	}
	for deadline := time.Now().Add(engineWait); ; time.Sleep(enginePoll) {
		n := len(c.XMPP.Status().Federation)
		if n == 0 {
			c.printf("%s; %s closed\n", done, plural(before, "link"))
			return nil
		}
		if time.Now().After(deadline) {
			c.printf("%s; %s still open: the engine has not reported closing them within %s (see xmpp federation)\n", done, plural(n, "link is"), engineWait)
			return nil
		}
	}
}

func runFederationIdleTimeout(c *Ctx, args []string) error {
	const what = "xmpp federation idle-timeout"
	n, _ := parseCount(args[0])
	lo, hi := int(store.MinFedIdleTimeout/time.Second), int(store.MaxFedIdleTimeout/time.Second)
	if n < lo || n > hi {
		return errorf("%s: %d seconds is out of range: give %d to %d (24 hours)", what, n, lo, hi)
	}
	if err := applySetting(c, what, store.ConfigSet{Key: store.FedIdleTimeout, Value: strconv.Itoa(n)}); err != nil {
		return err
	}
	c.printf("Federation idle timeout: %d seconds: an outgoing link without traffic for that long is closed (open links included)\n", n)
	return nil
}

// --- secure list ----------------------------------------------------------

// parsePattern validates a secure-list pattern: a domain, "*.domain" or
// "*", and returns it normalized.
func parsePattern(s string) (string, error) {
	if s == "*" {
		return "*", nil
	}
	rest, wild := strings.CutPrefix(s, "*.")
	if strings.Contains(rest, "*") || rest == "" {
		return "", fmt.Errorf("%q is not a pattern: use a domain (example.com), *. and a domain for every name below it (*.example.com), or * for every domain", s)
	}
	d, err := parseDomain(rest)
	if err != nil {
		return "", err
	}
	if wild {
		return "*." + d, nil
	}
	return d, nil
}

func runFederationSecureAdd(c *Ctx, args []string) error {
	const what = "xmpp federation secure add"
	p, err := parsePattern(args[0])
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	if _, ok := c.Store.Config(store.FedSecure + p); ok {
		c.printf("%s is already on the secure list\n", p)
		return nil
	}
	if err := applySetting(c, what, store.ConfigSet{Key: store.FedSecure + p, Value: "1"}); err != nil {
		return err
	}
	c.printf("%s added to the secure list: %s only with TLS and a verified certificate (no dialback)\n", p, patternScope(p))
	return nil
}

func patternScope(p string) string {
	switch {
	case p == "*":
		return "every remote domain federates"
	case strings.HasPrefix(p, "*."):
		return "every domain below " + p[2:] + " federates"
	}
	return p + " federates"
}

func runFederationSecureDel(c *Ctx, args []string) error {
	const what = "xmpp federation secure del"
	p, err := parsePattern(args[0])
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	if _, ok := c.Store.Config(store.FedSecure + p); !ok {
		return errorf("%s: %s is not on the secure list (see xmpp federation secure list)", what, p)
	}
	if err := applySetting(c, what, store.ConfigDel{Key: store.FedSecure + p}); err != nil {
		return err
	}
	c.printf("%s removed from the secure list\n", p)
	return nil
}

func runFederationSecureList(c *Ctx, args []string) error {
	fed, err := c.Store.Federation()
	if err != nil {
		return errorf("xmpp federation secure list: %v", err)
	}
	if len(fed.Secure) == 0 {
		c.printf("No secure domains: add one with xmpp federation secure add <pattern>\n")
		return nil
	}
	for _, p := range fed.Secure {
		c.printf("%s\n", p)
	}
	return nil
}

// --- trust ----------------------------------------------------------------

// trustBundleCAs returns the CA certificates of a PEM trust bundle. A
// bundle holding a private key, or no CA certificate, is refused.
func trustBundleCAs(data []byte) ([]*x509.Certificate, error) {
	switch pki.Classify(data) {
	case pki.KindKey:
		return nil, errors.New("it holds a private key: a trust bundle holds only CA certificates (never put a key in it)")
	case pki.KindCertificate, pki.KindBundle:
	default:
		if _, err := pki.Inspect(data, time.Time{}); err != nil {
			return nil, fmt.Errorf("it holds no certificate: %v", strings.TrimPrefix(err.Error(), "not a PEM key, certificate, CSR or bundle: "))
		}
		return nil, fmt.Errorf("it is a %s, not a certificate", pki.Classify(data))
	}
	cas, all, err := pki.BundleCAs(data)
	if err != nil {
		return nil, err
	}
	n := len(all)
	if len(cas) == 0 {
		return nil, fmt.Errorf("none of its %s is a CA certificate (basic constraints CA:TRUE): upload the certificate of the CA that signed the peers' certificates", plural(n, "certificate"))
	}
	return cas, nil
}

func runFederationTrust(c *Ctx, args []string) error {
	const what = "xmpp federation trust"
	name := args[0]
	data, err := c.Files.ReadFile(name)
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	cas, err := trustBundleCAs(data)
	if err != nil {
		return errorf("%s: %s cannot be a trust bundle: %v", what, name, err)
	}
	var expired []string
	for _, ca := range cas {
		if !ca.NotAfter.After(c.now()) {
			expired = append(expired, pki.SubjectString(ca))
		}
	}
	if len(expired) == len(cas) {
		return errorf("%s: %s cannot be a trust bundle: every CA certificate in it has expired (%s)", what, name, strings.Join(expired, "; "))
	}
	// Its contents travel through the log: every cluster node gets the file.
	if err := replicateFiles(c, what, "", name); err != nil {
		return err
	}
	if err := applySetting(c, what, store.ConfigSet{Key: store.FedTrust, Value: name}); err != nil {
		return err
	}
	var subjects []string
	for _, ca := range cas {
		subjects = append(subjects, pki.SubjectString(ca))
	}
	c.printf("Remote servers' certificates are verified against the system roots and %s (%s: %s)\n", name, plural(len(cas), "CA certificate"), strings.Join(subjects, "; "))
	for _, e := range expired {
		c.printf("Warning: %s in %s has expired\n", e, name)
	}
	return nil
}

func runFederationTrustNone(c *Ctx, args []string) error {
	if err := applySetting(c, "xmpp federation trust none", store.ConfigDel{Key: store.FedTrust}); err != nil {
		return err
	}
	c.printf("Remote servers' certificates are verified against the system roots only\n")
	return nil
}

// --- routes ---------------------------------------------------------------

// remoteDomain validates a remote domain: a valid XMPP domain that is not
// hosted here.
func remoteDomain(c *Ctx, what, arg string) (string, error) {
	d, err := parseDomain(arg)
	if err != nil {
		return "", errorf("%s: %v", what, err)
	}
	cfg, err := c.Store.XMPP()
	if err != nil {
		return "", errorf("%s: %v", what, err)
	}
	if _, hosted := cfg.Domain(d); hosted {
		return "", errorf("%s: %s is hosted on this appliance: federation settings are for remote domains", what, d)
	}
	return d, nil
}

// parseRelay validates host[:port] (a DNS name or an IP address, an IPv6
// address with a port in brackets) and returns host:port, the port 5269
// when none is given.
func parseRelay(s string) (string, error) {
	const hint = "give a host name or IP address with an optional port, e.g. relay.example.net, relay.example.net:5269, 192.0.2.20 or [2001:db8::20]:5269"
	if s == "" {
		return "", fmt.Errorf("the relay is empty: %s", hint)
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return "", fmt.Errorf("port 0 in %q is not a TCP port: give 1 to 65535", s)
		}
		return checkRelayAddr(ap.Addr(), int(ap.Port()), s)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return checkRelayAddr(a, defaultS2SPort, s)
	}
	host, port := s, defaultS2SPort
	if strings.Contains(s, ":") || strings.HasPrefix(s, "[") {
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			return "", fmt.Errorf("%q is not host[:port]: %s", s, hint)
		}
		n, err := parseCount(p)
		if err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%q in %q is not a TCP port: give 1 to 65535", p, s)
		}
		if _, err := netip.ParseAddr(h); err == nil || strings.HasPrefix(s, "[") {
			return "", fmt.Errorf("%q is not host[:port]: %s", s, hint)
		}
		host, port = h, n
	}
	if strings.Contains(host, "*") {
		return "", fmt.Errorf("%q: a relay is one host, not a wildcard: %s", s, hint)
	}
	ascii, err := pki.ASCIIDomain(host)
	if err != nil {
		return "", fmt.Errorf("%q is not a host name: %s", host, hint)
	}
	if err := pki.CheckDNSName(ascii); err != nil {
		return "", fmt.Errorf("%q is not a host name (%s): %s", host, strings.TrimPrefix(err.Error(), strconv.Quote(ascii)+" is not a valid DNS name or IP address: "), hint)
	}
	return net.JoinHostPort(ascii, strconv.Itoa(port)), nil
}

func checkRelayAddr(a netip.Addr, port int, s string) (string, error) {
	if a.IsUnspecified() || a.IsMulticast() {
		return "", fmt.Errorf("%s is not the address of a host: give the relay's own address", s)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)).String(), nil
}

func runFederationRouteAdd(c *Ctx, args []string) error {
	const what = "xmpp federation route add"
	d, err := remoteDomain(c, what, args[0])
	if err != nil {
		return err
	}
	relay, err := parseRelay(args[1])
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	old, had := c.Store.Config(store.FedRoute + d)
	if had && old == relay {
		c.printf("%s is already routed via %s\n", d, relay)
		return nil
	}
	if err := applySetting(c, what, store.ConfigSet{Key: store.FedRoute + d, Value: relay}); err != nil {
		return err
	}
	if had {
		c.printf("%s is now routed via %s (was %s)\n", d, relay, old)
	} else {
		c.printf("%s is now routed via %s instead of its DNS records\n", d, relay)
	}
	return nil
}

func runFederationRouteDel(c *Ctx, args []string) error {
	const what = "xmpp federation route del"
	d, err := parseDomain(args[0])
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	if _, ok := c.Store.Config(store.FedRoute + d); !ok {
		return errorf("%s: %s has no route (see xmpp federation route list)", what, d)
	}
	if err := applySetting(c, what, store.ConfigDel{Key: store.FedRoute + d}); err != nil {
		return err
	}
	c.printf("Route of %s removed: its servers are found through DNS again\n", d)
	return nil
}

func runFederationRouteList(c *Ctx, args []string) error {
	fed, err := c.Store.Federation()
	if err != nil {
		return errorf("xmpp federation route list: %v", err)
	}
	if len(fed.Routes) == 0 {
		c.printf("No routes: remote servers are found through DNS (add one with xmpp federation route add <domain> <host[:port]>)\n")
		return nil
	}
	tw := tabwriter.NewWriter(c.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tRELAY")
	for _, d := range sortedKeys(fed.Routes) {
		fmt.Fprintf(tw, "%s\t%s\n", d, fed.Routes[d])
	}
	return tw.Flush()
}

// --- block, allow, allow-list -----------------------------------------------

func runFederationPolicy(c *Ctx, args []string, policy string) error {
	what := "xmpp federation " + policy
	d, err := remoteDomain(c, what, args[0])
	if err != nil {
		return err
	}
	fed, err := c.Store.Federation()
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	old := fed.Policy[d]
	if old == policy {
		c.printf("%s is already %sed\n", d, policy)
		return nil
	}
	if err := applySetting(c, what, store.ConfigSet{Key: store.FedPolicy + d, Value: policy}); err != nil {
		return err
	}
	was := ""
	if old != "" {
		was = " (it was " + old + "ed)"
	}
	if policy == store.PolicyBlock {
		c.printf("%s is blocked%s: its servers cannot connect and stanzas to it bounce\n", d, was)
		return nil
	}
	if fed.AllowList {
		c.printf("%s is allowed%s: it federates (allow-list mode is on)\n", d, was)
	} else {
		c.printf("%s is allowed%s; allow-list mode is off, so every domain that is not blocked federates (xmpp federation allow-list on)\n", d, was)
	}
	return nil
}

func runFederationPolicyDel(c *Ctx, args []string) error {
	const what = "xmpp federation policy del"
	d, err := parseDomain(args[0])
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	fed, err := c.Store.Federation()
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	old, ok := fed.Policy[d]
	if !ok {
		return errorf("%s: %s is neither blocked nor allowed (see xmpp federation policy list)", what, d)
	}
	if err := applySetting(c, what, store.ConfigDel{Key: store.FedPolicy + d}); err != nil {
		return err
	}
	now := "it federates"
	if fed.AllowList {
		now = "it no longer federates (allow-list mode is on)"
	}
	c.printf("%s is no longer %sed: %s\n", d, old, now)
	return nil
}

func runFederationPolicyList(c *Ctx, args []string) error {
	fed, err := c.Store.Federation()
	if err != nil {
		return errorf("xmpp federation policy list: %v", err)
	}
	c.printf("Mode: %s\n", modeText(fed.AllowList))
	if len(fed.Policy) == 0 {
		c.printf("No domain is blocked or allowed\n")
		return nil
	}
	tw := tabwriter.NewWriter(c.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tPOLICY")
	for _, d := range sortedKeys(fed.Policy) {
		fmt.Fprintf(tw, "%s\t%s\n", d, fed.Policy[d])
	}
	return tw.Flush()
}

func runFederationAllowList(c *Ctx, args []string) error {
	const what = "xmpp federation allow-list"
	fed, err := c.Store.Federation()
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	blocked, allowed := policyDomains(fed)
	if args[0] == "off" {
		if err := applySetting(c, what, store.ConfigDel{Key: store.FedAllowList}); err != nil {
			return err
		}
		c.printf("Allow-list mode off: every remote domain federates except the blocked ones (%d blocked)\n", len(blocked))
		return nil
	}
	if err := applySetting(c, what, store.ConfigSet{Key: store.FedAllowList, Value: "true"}); err != nil {
		return err
	}
	if len(allowed) == 0 {
		c.printf("Allow-list mode on: only domains with an allow entry federate\n")
		c.printf("Warning: no domain is allowed, so no remote domain federates now: xmpp federation allow <domain>\n")
		return nil
	}
	c.printf("Allow-list mode on: only the allowed domains federate (%d: %s)\n", len(allowed), strings.Join(allowed, ", "))
	return nil
}

// --- check ----------------------------------------------------------------

// stepPrinter prints the steps of a check as they come (one line each, a
// fix under a failure or warning) until finish, from any goroutine, and
// remembers the first failure.
type stepPrinter struct {
	c         *Ctx
	also      func(status.Step) // called under the lock with each step printed
	mu        sync.Mutex
	finished  bool
	firstFail string
}

func newStepPrinter(c *Ctx, also func(status.Step)) *stepPrinter {
	return &stepPrinter{c: c, also: also}
}

func (p *stepPrinter) report(s status.Step) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return
	}
	if !checkVerdicts[s.Verdict] {
		s.Verdict = status.Info
	}
	text := clean(s.Name)
	if s.Detail != "" {
		text += ": " + clean(s.Detail)
	}
	p.c.printf("%-5s %s\n", s.Verdict, text)
	if (s.Verdict == status.Fail || s.Verdict == status.Warn) && s.Fix != "" {
		p.c.printf("      fix: %s\n", clean(s.Fix))
	}
	if s.Verdict == status.Fail && p.firstFail == "" {
		p.firstFail = text
	}
	if p.also != nil {
		p.also(s)
	}
}

// finish stops the printing (a step reported late is dropped) and returns
// the first failure's text ("" if none).
func (p *stepPrinter) finish() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finished = true
	return p.firstFail
}

// checkVerdicts are the verdicts a step may carry; anything else is shown
// as info.
var checkVerdicts = map[status.Verdict]bool{status.OK: true, status.Warn: true, status.Fail: true, status.Info: true}

// authText is how a way of authenticating is named in the check's verdict.
var authText = map[status.Auth]string{status.External: "SASL EXTERNAL", status.Dialback: "dialback"}

func runFederationCheck(c *Ctx, args []string) error {
	const what = "xmpp federation check"
	remote, err := remoteDomain(c, what, args[0])
	if err != nil {
		return err
	}
	cfg, err := c.Store.XMPP()
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	var local string
	if len(args) == 2 {
		d, err := parseDomain(args[1])
		if err != nil {
			return errorf("%s: <local domain>: %v", what, err)
		}
		if _, ok := cfg.Domain(d); !ok {
			return errorf("%s: %s is not hosted on this appliance: the local domain is one of ours (see xmpp multi-domain list)", what, d)
		}
		local = d
	} else {
		p, ok := cfg.Primary()
		if !ok {
			return errorf("%s: set a domain first: xmpp domain <name>", what)
		}
		local = p.Name
	}
	if c.Federation == nil {
		return errorf("%s: the federation check is not available in this process (no XMPP engine runs here)", what)
	}
	fed, err := c.Store.Federation()
	if err != nil {
		return errorf("%s: %v", what, err)
	}

	var auth string
	steps := newStepPrinter(c, func(s status.Step) {
		if a, ok := authText[s.Auth]; ok && s.Verdict == status.OK {
			auth = a
		}
	})
	report := steps.report

	c.printf("Checking federation from %s to %s\n", local, remote)
	if !fed.Enabled {
		report(status.Step{Verdict: status.Info, Name: "federation", Detail: "disabled on this appliance: checking anyway, but no traffic flows until it is enabled (xmpp federation enable)"})
	}
	switch {
	case fed.Policy[remote] == store.PolicyBlock:
		report(status.Step{Verdict: status.Fail, Name: "policy", Detail: remote + " is blocked here", Fix: "xmpp federation policy del " + remote})
	case !fed.Permitted(remote):
		report(status.Step{Verdict: status.Fail, Name: "policy", Detail: "allow-list mode is on and " + remote + " is not allowed", Fix: "xmpp federation allow " + remote})
	}
	if relay, ok := fed.Routes[remote]; ok {
		report(status.Step{Verdict: status.Info, Name: "route", Detail: remote + " is sent via " + relay + " instead of its DNS records"})
	}
	for _, p := range fed.Secure {
		if store.MatchDomainPattern(p, remote) {
			report(status.Step{Verdict: status.Info, Name: "secure list", Detail: remote + " matches " + p + ": it must present a certificate that verifies (dialback is not accepted)"})
			break
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	ok := c.Federation.FederationCheck(ctx, local, remote, report)
	timedOut := ctx.Err() != nil

	fail := steps.finish()
	how := auth // read after finish: no step is reported any more

	switch {
	case fail != "":
		return errorf("%s: federation does not work: %s", remote, fail)
	case timedOut:
		return errorf("%s: federation does not work: the check did not finish within %s", remote, checkTimeout)
	case !ok:
		return errorf("%s: federation does not work: the check failed without saying why", remote)
	}
	if how != "" {
		c.printf("%s: federation works (%s)\n", remote, how)
	} else {
		c.printf("%s: federation works\n", remote)
	}
	return nil
}
