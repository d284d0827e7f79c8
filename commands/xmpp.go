package commands

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// XMPPEngine is the running engine as the commands see it. The engine applies configuration by
// watching the store; commands only write the store and read this.
type XMPPEngine interface {
	Status() status.XMPP
	UserSessions(bareJID string) int
	XMPPMonitor // xmpp sessions, xmpp connections (xmpp_sessions.go)
}

// How long xmpp enable/disable wait for the engine to report the change,
// and how often they look. Variables so tests can shorten them.
var (
	engineWait = 3 * time.Second
	enginePoll = 50 * time.Millisecond
)

// Limits of the XMPP settings.
const (
	maxMaxSessions       = 10000000
	minClientAuthTimeout = 5
	maxClientAuthTimeout = 300
)

// The listener names of xmpp port, and their config keys.
var xmppPorts = []struct{ name, key string }{
	{"c2s", store.XMPPPortC2S},
	{"c2s-tls", store.XMPPPortC2STLS},
	{"s2s", store.XMPPPortS2S},
}

func xmppCommands() []*Command {
	file := func(n string) Arg { return Arg{Name: n, Kind: ArgFile} }
	optFile := func(n string) Arg { return Arg{Name: n, Kind: ArgFile, Optional: true} }
	domain := Arg{Name: "domain"}
	portNames := make([]string, len(xmppPorts))
	for i, p := range xmppPorts {
		portNames[i] = p.name
	}
	cmds := []*Command{
		{
			Words:   []string{"xmpp"},
			Summary: "Show the XMPP service: state, domains and certificates, addresses and ports, sessions, limits, call bridges, last error",
			Help: "State is the setting (enabled or disabled) and what the engine does (running since when, or not).\n" +
				"Listeners are the sockets the engine has open; Last error is its most recent failure, e.g. a port\n" +
				"already in use, with the time it happened.\n" +
				"Components are the call bridges and other XEP-0114 components: connected since when and from\n" +
				"where, or not connected with the last failure (e.g. authentication failure: a wrong secret);\n" +
				"a component that tried to connect but is not configured is shown as not configured.\n" +
				"Component plain says from where components may connect without TLS (xmpp callbridge plain).\n" +
				"Federation is the setting and the server-to-server links up, e.g. enabled, 2 links up (b.lan out,\n" +
				"b.lan in); xmpp federation shows them in full.",
			Perm: PermRead,
			Run:  runXMPPStatus,
		},
		{
			Words:   []string{"xmpp", "enable"},
			Summary: "Start the XMPP service, now and at every boot",
			Help: "Needs a domain (xmpp domain <name>). Waits up to 3 seconds for the engine to report that it\n" +
				"listens, and prints where. If it cannot start, or starts only in part (e.g. a port is in use), the\n" +
				"command fails with the engine's error; the service stays enabled, so fix the cause and run xmpp\n" +
				"enable again (xmpp then shows no last error).",
			Perm: PermXMPP,
			Run:  runXMPPEnable,
		},
		{
			Words:   []string{"xmpp", "disable"},
			Summary: "Stop the XMPP service gracefully (clients are told the server shuts down)",
			Perm:    PermXMPP,
			Run:     runXMPPDisable,
		},
		{
			Words:   []string{"xmpp", "reset"},
			Summary: "Clear the XMPP configuration: domains and every xmpp setting (asks for confirmation)",
			Help: "Removes every hosted domain and every xmpp setting (enabled, listen, ports, limits); the service\n" +
				"stops, and components may connect without TLS from loopback only again. XMPP accounts and their\n" +
				"data are kept, and so are the files in the files area. Call bridges are kept with their secrets\n" +
				"and their component address (cb1.<old domain>), which connects again once the service runs: xmpp\n" +
				"and xmpp callbridge list show them under that domain, marked not hosted in xmpp; to move one to\n" +
				"the new primary domain, xmpp callbridge del <name> and add it again. A cluster node first leaves\n" +
				"its cluster (as xmpp cluster disable does), so the reset applies to this node alone.\n" +
				"Type 'reset' to confirm; in exec or script mode the confirmation is the next line of standard input.",
			Example: "xmpp reset\nprintf 'reset\\n' | ssh -p 2222 admin@host 'xmpp reset'",
			Perm:    PermXMPP,
			Run:     runXMPPReset,
		},
		{
			Words:   []string{"xmpp", "domain"},
			Args:    []Arg{domain},
			Summary: "Set the primary XMPP domain; it gets a self-signed certificate until you configure one",
			Help: "A domain without a certificate gets a new self-signed one in the files area: <domain>.key and\n" +
				"<domain>.crt (ECDSA P-256, names <domain> and *.<domain>, valid 10 years). If a usable pair with those\n" +
				"names is already there, it is used. Replace it with a CA-signed certificate with xmpp certs.\n" +
				"A new primary domain replaces the old one, which is no longer hosted (its accounts are kept).\n" +
				"The domain must be a DNS name, not an IP address; internationalized names are accepted.",
			Example: "xmpp domain example.com",
			Perm:    PermXMPP,
			Run:     runXMPPDomain,
		},
		{
			Words:   []string{"xmpp", "certs"},
			Args:    []Arg{file("key"), file("crt"), optFile("bundle")},
			Summary: "Serve the primary domain with a key, certificate and optional CA bundle from the files area",
			Help: "Checked before anything changes: the files exist, the key matches the certificate, the certificate\n" +
				"is valid now, is a TLS server certificate and names the domain in its subjectAltName (a DNS name,\n" +
				"a wildcard *.parent for one label, an XmppAddr or an _xmpp-client/_xmpp-server SRVName), and it\n" +
				"verifies against the bundle (intermediates first, the root last) when one is given.\n" +
				"Sessions in progress are not dropped; new connections get the new certificate.",
			Example: "xmpp certs example.com.key example.com.crt ca-bundle.pem",
			Perm:    PermXMPP,
			Run:     runXMPPCerts,
		},
		{
			Words:   []string{"xmpp", "certs", "none"},
			Summary: "Serve the primary domain with a self-signed certificate again (generated if needed)",
			Help:    "Uses <domain>.key and <domain>.crt from the files area if they are a usable pair, else generates them.",
			Perm:    PermXMPP,
			Run:     runXMPPCertsNone,
		},
		{
			Words:   []string{"xmpp", "multi-domain", "add"},
			Args:    []Arg{domain, optFile("key"), optFile("crt"), optFile("bundle")},
			Syntax:  "xmpp multi-domain add <domain> [<key> <crt> [<bundle>]]",
			Summary: "Host another XMPP domain, with its own certificate (self-signed if none is given)",
			Help: "The key, certificate and bundle are checked as for xmpp certs. Without them the domain gets a\n" +
				"self-signed certificate as for xmpp domain. The domain is served at once: sessions of the other\n" +
				"domains are not dropped. To change its certificate later, use xmpp multi-domain certs.",
			Example: "xmpp multi-domain add example.org example.org.key example.org.crt\nxmpp multi-domain add test.example",
			Perm:    PermXMPP,
			Run:     runXMPPMultiDomainAdd,
		},
		{
			Words:   []string{"xmpp", "multi-domain", "certs"},
			Args:    []Arg{domain, file("key"), file("crt"), optFile("bundle")},
			Summary: "Serve a hosted domain with another key, certificate and optional CA bundle, live; its accounts stay",
			Help: "The files are checked as for xmpp certs before anything changes. The domain stays hosted: sessions\n" +
				"in progress are not dropped; new connections get the new certificate. For the primary domain it\n" +
				"does what xmpp certs does.",
			Example: "xmpp multi-domain certs example.org example.org-2027.key example.org-2027.crt ca-bundle.pem",
			Perm:    PermXMPP,
			Run:     runXMPPMultiDomainCerts,
		},
		{
			Words:   []string{"xmpp", "multi-domain", "del"},
			Args:    []Arg{domain},
			Summary: "Stop hosting a domain added with multi-domain add (not the primary); its accounts are kept",
			Example: "xmpp multi-domain del example.org",
			Perm:    PermXMPP,
			Run:     runXMPPMultiDomainDel,
		},
		{
			Words:   []string{"xmpp", "multi-domain", "list"},
			Summary: "List the hosted domains with their key, certificate, bundle and certificate expiry",
			Perm:    PermRead,
			Run:     runXMPPMultiDomainList,
		},
		{
			Words:   []string{"xmpp", "listen"},
			Args:    []Arg{{Name: "address|interface", Repeat: true}},
			Syntax:  "xmpp listen <address|interface>…|all|none",
			Summary: "Listen on these IP addresses or network interfaces, on all addresses (the default), or nowhere",
			Help: "Each argument is an IPv4 or IPv6 address or the name of a network interface of this appliance\n" +
				"(its addresses are used). 'all' listens on every address; 'none' closes every XMPP listener.\n" +
				"The engine applies the change at once.",
			Example: "xmpp listen 192.0.2.10 2001:db8::10\nxmpp listen eth0\nxmpp listen all",
			Perm:    PermXMPP,
			Run:     runXMPPListen,
		},
		{
			Words:   []string{"xmpp", "port"},
			Args:    []Arg{{Name: "listener", Kind: ArgEnum, Values: portNames}, {Name: "port", Kind: ArgNumber}},
			Summary: "Set a listener's TCP port: c2s (default 5222, STARTTLS), c2s-tls (5223, direct TLS), s2s (5269)",
			Help:    "Ports are 1 to 65535 and the three must differ. Every listener accepts client, server and component\nstreams; the names say what each port is published for.",
			Example: "xmpp port c2s-tls 443",
			Perm:    PermXMPP,
			Run:     runXMPPPort,
		},
		{
			Words:   []string{"xmpp", "max-sessions"},
			Args:    []Arg{{Name: "n|none"}},
			Summary: "Limit the number of authenticated client sessions at once, or 'none' for no limit (the default)",
			Help:    fmt.Sprintf("n is 1 to %d. Sessions over the limit are refused; sessions already open stay.", maxMaxSessions),
			Example: "xmpp max-sessions 5000\nxmpp max-sessions none",
			Perm:    PermXMPP,
			Run:     runXMPPMaxSessions,
		},
		{
			Words:   []string{"xmpp", "client_auth_timeout"},
			Args:    []Arg{{Name: "seconds", Kind: ArgNumber}},
			Summary: fmt.Sprintf("Close client connections not authenticated within this many seconds (%d to %d, default %d)", minClientAuthTimeout, maxClientAuthTimeout, int(store.DefaultClientAuthTimeout/time.Second)),
			Example: "xmpp client_auth_timeout 60",
			Perm:    PermXMPP,
			Run:     runXMPPClientAuthTimeout,
		},
	}
	cmds = append(cmds, xmppUserCommands()...)
	cmds = append(cmds, xmppDirectoryCommands()...)
	cmds = append(cmds, xmppLimitsCommands()...)
	cmds = append(cmds, xmppSessionsCommands()...)
	cmds = append(cmds, federationCommands()...)
	cmds = append(cmds, clusterCommands()...)
	return append(cmds, callbridgeCommands()...)
}

// parseDomain validates an XMPP domain and returns its normalized form
// (RFC 7622: lower case, U-labels), which is how the store and the engine
// name it.
func parseDomain(s string) (string, error) {
	if s == "" {
		return "", errors.New("the domain is empty")
	}
	if strings.ContainsAny(s, "@/") {
		return "", fmt.Errorf("%q is an address, not a domain: give the domain alone, e.g. example.com", s)
	}
	if strings.Contains(s, "*") {
		return "", fmt.Errorf("%q: a wildcard is not a domain; give the domain itself, e.g. example.com", s)
	}
	if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); ip != nil {
		return "", fmt.Errorf("%s is an IP address: an XMPP domain must be a DNS name, which clients and servers look up (SRV records) and find in the certificate, e.g. example.com", s)
	}
	j, err := jid.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a valid XMPP domain: %v", s, err)
	}
	d := j.Domainpart()
	ascii, err := pki.ASCIIDomain(d)
	if err != nil {
		return "", fmt.Errorf("%q is not a valid XMPP domain: %v", s, err)
	}
	if err := pki.CheckDNSName(ascii); err != nil {
		return "", fmt.Errorf("%q is not a valid XMPP domain: %v", s, strings.TrimPrefix(err.Error(), strconv.Quote(ascii)+" is not a valid DNS name or IP address: "))
	}
	return d, nil
}

// --- status ---------------------------------------------------------------

func runXMPPStatus(c *Ctx, args []string) error {
	cfg, err := c.Store.XMPP()
	if err != nil {
		return errorf("xmpp: reading the configuration: %v", err)
	}
	now := c.now()
	var st status.XMPP
	if c.XMPP != nil {
		st = c.XMPP.Status()
	}
	type row struct {
		label  string
		values []string
	}
	var rows []row
	add := func(label string, values ...string) { rows = append(rows, row{label, values}) }

	state := "disabled"
	if cfg.Enabled {
		state = "enabled"
	}
	switch {
	case c.XMPP == nil:
		state += "; engine: not running in this process"
	case st.Running:
		state += ", running since " + st.Since.UTC().Format(time.RFC3339)
	default:
		state += ", not running"
	}
	add("State", state)

	var domains []string
	for _, d := range cfg.Domains {
		domains = append(domains, domainStatus(c, d))
	}
	if len(domains) == 0 {
		domains = []string{"none: set one with xmpp domain <name>"}
	}
	add("Domains", domains...)
	add("Listen", listenText(cfg.Listen))
	add("Ports", fmt.Sprintf("c2s %d (STARTTLS), c2s-tls %d (direct TLS), s2s %d", cfg.PortC2S, cfg.PortC2STLS, cfg.PortS2S))
	if c.XMPP != nil {
		if len(st.Listeners) == 0 {
			add("Listeners", "none")
		} else {
			add("Listeners", st.Listeners...)
		}
		add("Sessions", sessionsText(st))
	}
	maxSessions := "none"
	if cfg.MaxSessions > 0 {
		maxSessions = strconv.Itoa(cfg.MaxSessions)
	}
	add("Max sessions", maxSessions)
	add("Client auth timeout", fmt.Sprintf("%d seconds", int(cfg.ClientAuthTimeout/time.Second)))
	components, err := componentLines(c, st)
	if err != nil {
		return errorf("xmpp: reading the call bridges: %v", err)
	}
	add("Components", components...)
	add("Component plain", componentPlainText(c))
	add("Federation", federationSummary(c, st))
	if dirs := directoryLines(c, st); len(dirs) > 0 {
		add("Directories", dirs...)
	}
	if c.XMPP != nil {
		uptime := "not running"
		if st.Running && !st.Since.IsZero() {
			uptime = formatDuration(now.Sub(st.Since).Truncate(time.Second))
		}
		add("Uptime", uptime)
		lastErr := "none"
		if st.LastError != "" {
			lastErr = st.LastError
			if !st.LastErrorAt.IsZero() {
				lastErr += " (at " + st.LastErrorAt.UTC().Format(time.RFC3339) + ")"
			}
		}
		add("Last error", lastErr)
	}

	width := 0
	for _, r := range rows {
		width = max(width, len(r.label))
	}
	for _, r := range rows {
		for i, v := range r.values {
			label := r.label
			sep := ":"
			if i > 0 {
				label, sep = "", " "
			}
			c.printf("%-*s %s %s\n", width, label, sep, v)
		}
	}
	return nil
}

// domainStatus is one domain's line of the status: name, files and the
// certificate's expiry.
func domainStatus(c *Ctx, d store.Domain) string {
	s := d.Name
	if d.Primary {
		s += " (primary)"
	}
	if d.Cert == "" {
		return s + ": no certificate: run xmpp certs"
	}
	s += ": key " + d.Key + ", certificate " + d.Cert + " (" + certExpiry(c, d.Cert) + ")"
	if d.Bundle != "" {
		s += ", bundle " + d.Bundle
	} else {
		s += ", no bundle"
	}
	return s
}

// certExpiry is "expires 2027-01-02", "expired 2025-01-02", or why the file
// cannot be read.
func certExpiry(c *Ctx, name string) string {
	data, err := c.Files.ReadFile(name)
	if err != nil {
		if !c.Files.Exists(name) {
			return "missing from the files area"
		}
		return "unreadable"
	}
	cert, err := pki.Certificate(data)
	if err != nil {
		return "not a certificate"
	}
	day := cert.NotAfter.UTC().Format("2006-01-02")
	if !cert.NotAfter.After(c.now()) {
		return "expired " + day
	}
	return "expires " + day
}

func listenText(listen []string) string {
	switch {
	case listen == nil:
		return "all addresses"
	case len(listen) == 0:
		return "none"
	}
	return strings.Join(listen, ", ")
}

func sessionsText(st status.XMPP) string {
	s := strconv.Itoa(st.Sessions)
	var parts []string
	for d, n := range st.ByDomain {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", d, n))
		}
	}
	if len(parts) > 0 {
		sort.Strings(parts)
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	return s
}

// --- enable, disable, reset -----------------------------------------------

func runXMPPEnable(c *Ctx, args []string) error {
	cfg, err := c.Store.XMPP()
	if err != nil {
		return errorf("xmpp enable: %v", err)
	}
	if _, ok := cfg.Primary(); !ok {
		return errorf("xmpp enable: set a domain first: xmpp domain <name>")
	}
	applied := time.Now()
	if err := commit(c, store.ConfigSet{Key: store.XMPPEnabled, Value: "true"}); err != nil {
		return errorf("xmpp enable: %v", err)
	}
	if c.XMPP == nil {
		c.printf("XMPP enabled\n")
		return nil
	}
	for deadline := applied.Add(engineWait); ; time.Sleep(enginePoll) {
		st := c.XMPP.Status()
		fresh := st.LastError != "" && !st.LastErrorAt.Before(applied)
		if st.Running {
			if fresh {
				// Partly started (e.g. one port in use): a failure, so
				// scripts notice, with what does run.
				return errorf("xmpp enable: XMPP is enabled and listening on %s, but: %s; fix it and run xmpp enable again", listenersText(st.Listeners), st.LastError)
			}
			c.printf("XMPP enabled: listening on %s\n", listenersText(st.Listeners))
			return nil
		}
		if fresh {
			return errorf("xmpp enable: XMPP is enabled but could not start: %s; fix it and run xmpp enable again", st.LastError)
		}
		if time.Now().After(deadline) {
			c.printf("XMPP enabled, but the engine has not reported running within %s: see 'xmpp' for its state\n", engineWait)
			return nil
		}
	}
}

func listenersText(l []string) string {
	if len(l) == 0 {
		return "nothing (xmpp listen none)"
	}
	return strings.Join(l, ", ")
}

func runXMPPDisable(c *Ctx, args []string) error {
	if err := commit(c, store.ConfigSet{Key: store.XMPPEnabled, Value: "false"}); err != nil {
		return errorf("xmpp disable: %v", err)
	}
	if waitStopped(c) {
		c.printf("XMPP disabled\n")
	} else {
		c.printf("XMPP disabled; the engine is still closing sessions (see 'xmpp')\n")
	}
	return nil
}

// waitStopped waits for the engine (if any) to report it is not running.
func waitStopped(c *Ctx) bool {
	if c.XMPP == nil {
		return true
	}
	for deadline := time.Now().Add(engineWait); ; time.Sleep(enginePoll) {
		if !c.XMPP.Status().Running {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// resetConfirmation is the word xmpp reset wants typed.
const resetConfirmation = "reset"

func runXMPPReset(c *Ctx, args []string) error {
	cfg, err := c.Store.XMPP()
	if err != nil {
		return errorf("xmpp reset: %v", err)
	}
	answer, err := c.Prompt.Ask("Type '" + resetConfirmation + "' to clear the XMPP configuration: ")
	if err != nil {
		return errorf("xmpp reset: not confirmed (%v); nothing was changed", err)
	}
	if strings.TrimSpace(answer) != resetConfirmation {
		return errorf("xmpp reset: not confirmed (type %s to confirm); nothing was changed", resetConfirmation)
	}
	left, err := leaveClusterForReset(c, "xmpp reset")
	if err != nil {
		return err
	}
	// This node's service stops first (xmpp.enabled is node-local), then
	// the replicated settings go, then this node's listen addresses.
	if err := commit(c, store.ConfigDel{Key: store.XMPPEnabled}); err != nil {
		return errorf("xmpp reset: %v", err)
	}
	if err := commit(c, store.XMPPReset{}); err != nil {
		return errorf("xmpp reset: %v", err)
	}
	if err := commit(c, store.ConfigDel{Key: store.XMPPListen}); err != nil { // node-local
		return errorf("xmpp reset: %v", err)
	}
	waitStopped(c)
	if left {
		c.printf("This node left its cluster first (as xmpp cluster disable does), so the reset applies to this node alone.\n")
	}
	c.printf("XMPP configuration cleared: %s and every xmpp setting removed; the service is disabled.\n", plural(len(cfg.Domains), "domain"))
	c.printf("XMPP accounts and the files in the files area are kept.\n")
	bridgesOffDomain(c)
	return nil
}

// bridgesOffDomain says what happens to the call bridges whose domain is
// no longer hosted (after xmpp reset, or a new primary domain): they are
// kept, with their secrets and their component address.
func bridgesOffDomain(c *Ctx) {
	cfg, err := c.Store.XMPP()
	if err != nil {
		return
	}
	comps, _ := c.Store.Components()
	var off []string
	for _, comp := range comps {
		if _, ok := cfg.Domain(comp.Domain); !ok {
			off = append(off, comp.JID())
		}
	}
	if len(off) == 0 {
		return
	}
	c.printf("%s kept with %s, under a domain no longer hosted: %s. %s as before once the service runs again;\n",
		capital(plural(len(off), "call bridge")), pick(len(off) == 1, "its secret", "their secrets"), strings.Join(off, ", "),
		pick(len(off) == 1, "It connects", "They connect"))
	c.printf("to move one to the primary domain: xmpp callbridge del <name>, then xmpp callbridge add <name>.\n")
}

func pick(cond bool, a, b string) string {
	if cond {
		return a
	}
	return b
}

func capital(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if k := len(what); k > 1 && what[k-1] == 'y' && !strings.ContainsRune("aeiou", rune(what[k-2])) {
		return fmt.Sprintf("%d %sies", n, what[:k-1]) // entry, entries
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// --- domains and certificates ---------------------------------------------

// selfSignedPair returns the names of a usable self-signed key and
// certificate for domain in the files area, <domain>.key and <domain>.crt
// (A-label form), generating them if they are not there. A pair that is
// there but unusable is refused rather than overwritten: the admin may have
// put it there.
func selfSignedPair(c *Ctx, what, domain string) (keyName, crtName string, generated bool, err error) {
	ascii, err := pki.ASCIIDomain(domain)
	if err != nil {
		return "", "", false, errorf("%s: %v", what, err)
	}
	keyName, crtName = ascii+".key", ascii+".crt"
	haveKey, haveCrt := c.Files.Exists(keyName), c.Files.Exists(crtName)
	switch {
	case haveKey && haveCrt:
		keyPEM, err := c.Files.ReadFile(keyName)
		if err != nil {
			return "", "", false, errorf("%s: %v", what, err)
		}
		crtPEM, err := c.Files.ReadFile(crtName)
		if err != nil {
			return "", "", false, errorf("%s: %v", what, err)
		}
		if err := pki.CheckServerCertificate(keyPEM, crtPEM, nil, domain, c.now()); err != nil {
			err = pki.NameInputs(err, map[string]string{"key": keyName, "certificate": crtName})
			return "", "", false, errorf("%s: %s and %s are in the files area but cannot serve %s (%v): remove them (sftp rm) to get a new self-signed pair, or configure a certificate with xmpp certs",
				what, keyName, crtName, domain, err)
		}
		return keyName, crtName, false, nil
	case haveKey || haveCrt:
		there, missing := keyName, crtName
		if haveCrt {
			there, missing = crtName, keyName
		}
		return "", "", false, errorf("%s: %s is in the files area but %s is not: upload %s, or remove %s (sftp rm) to get a new self-signed pair",
			what, there, missing, missing, there)
	}
	keyPEM, crtPEM, err := pki.SelfSignedServer(domain, c.now())
	if err != nil {
		return "", "", false, errorf("%s: generating a certificate for %s: %v", what, domain, err)
	}
	if err := c.Files.WriteFile(keyName, keyPEM, 0o600, true); err != nil {
		return "", "", false, errorf("%s: %v", what, err)
	}
	if err := c.Files.WriteFile(crtName, crtPEM, 0o644, true); err != nil {
		c.Files.Remove(keyName)
		return "", "", false, errorf("%s: %v", what, err)
	}
	return keyName, crtName, true, nil
}

// removeGenerated undoes selfSignedPair when the change it was for failed.
func removeGenerated(c *Ctx, generated bool, names ...string) {
	if generated {
		for _, n := range names {
			c.Files.Remove(n)
		}
	}
}

// replicateFiles puts the contents of a domain's key, certificate and
// bundle (names "" skipped) into the replicated store, which writes them
// into every cluster node's files area: an admin uploads them once, on any
// node. The store's copy of a name is replaced each time a command names
// it. Run it after the files are checked and before the domain's change.
func replicateFiles(c *Ctx, what, keyName string, others ...string) error {
	for i, name := range append([]string{keyName}, others...) {
		if name == "" {
			continue
		}
		data, err := c.Files.ReadFile(name)
		if err != nil {
			return errorf("%s: %v", what, err)
		}
		mode := os.FileMode(0o600) // a private key
		if i > 0 {
			mode = 0o644
			if st, err := c.Files.Root().Stat(name); err == nil {
				mode = st.Mode().Perm() | 0o600
			}
		}
		if err := commit(c, store.FilePut{File: store.StoredFile{Name: name, Data: data, Mode: mode}}); err != nil {
			return errorf("%s: storing %s for every cluster node: %v", what, name, err)
		}
	}
	return nil
}

func reportSelfSigned(c *Ctx, domain, keyName, crtName string, generated bool) {
	if generated {
		c.printf("Generated a self-signed certificate for %s: %s and %s. Replace it with a CA-signed one: upload the files, then xmpp certs <key> <crt> [<bundle>]\n",
			domain, keyName, crtName)
	} else {
		c.printf("Using %s and %s from the files area for %s\n", keyName, crtName, domain)
	}
}

// checkCertFiles reads and checks a key, certificate and optional bundle
// from the files area for domain.
func checkCertFiles(c *Ctx, what, domain, keyName, crtName, bundleName string) error {
	keyPEM, err := c.Files.ReadFile(keyName)
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	crtPEM, err := c.Files.ReadFile(crtName)
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	var bundlePEM []byte
	if bundleName != "" {
		if bundlePEM, err = c.Files.ReadFile(bundleName); err != nil {
			return errorf("%s: %v", what, err)
		}
	}
	err = pki.CheckServerCertificate(keyPEM, crtPEM, bundlePEM, domain, c.now())
	if err == nil {
		return nil
	}
	var ie *pki.InputError
	if errors.As(err, &ie) {
		return errorf("%s: %v", what, pki.NameInputs(err, map[string]string{"key": keyName, "certificate": crtName, "bundle": bundleName}))
	}
	return errorf("%s: %s and %s: %v", what, keyName, crtName, err)
}

// domainAndConfig parses a domain argument and reads the XMPP
// configuration it is to be checked against; errors start with what.
func domainAndConfig(c *Ctx, what, arg string) (string, store.XMPPConfig, error) {
	d, err := parseDomain(arg)
	if err != nil {
		return "", store.XMPPConfig{}, errorf("%s: %v", what, err)
	}
	cfg, err := c.Store.XMPP()
	if err != nil {
		return "", store.XMPPConfig{}, errorf("%s: %v", what, err)
	}
	return d, cfg, nil
}

func runXMPPDomain(c *Ctx, args []string) error {
	d, cfg, err := domainAndConfig(c, "xmpp domain", args[0])
	if err != nil {
		return err
	}
	old, hadPrimary := cfg.Primary()
	if hadPrimary && old.Name == d && old.Cert != "" {
		c.printf("%s is already the primary XMPP domain\n", d)
		return nil
	}
	op := store.DomainPrimary{Name: d}
	var keyName, crtName string
	generated := false
	if existing, ok := cfg.Domain(d); ok && existing.Cert != "" {
		keyName, crtName = existing.Key, existing.Cert
	} else {
		if keyName, crtName, generated, err = selfSignedPair(c, "xmpp domain", d); err != nil {
			return err
		}
		op.Certs = &store.Domain{Name: d, Key: keyName, Cert: crtName}
		if err := replicateFiles(c, "xmpp domain", keyName, crtName); err != nil {
			removeGenerated(c, generated, keyName, crtName)
			return err
		}
	}
	if err := commit(c, op); err != nil {
		removeGenerated(c, generated, keyName, crtName)
		return errorf("xmpp domain: %v", err)
	}
	if op.Certs != nil {
		reportSelfSigned(c, d, keyName, crtName, generated)
	} else {
		c.printf("%s keeps its certificate %s\n", d, crtName)
	}
	if hadPrimary && old.Name != d {
		c.printf("%s is now the primary XMPP domain; %s is no longer hosted (its accounts are kept)\n", d, old.Name)
		bridgesOffDomain(c)
	} else {
		c.printf("%s is now the primary XMPP domain\n", d)
	}
	return nil
}

func primaryDomain(c *Ctx, what string) (store.Domain, error) {
	cfg, err := c.Store.XMPP()
	if err != nil {
		return store.Domain{}, errorf("%s: %v", what, err)
	}
	p, ok := cfg.Primary()
	if !ok {
		return store.Domain{}, errorf("%s: set a domain first: xmpp domain <name>", what)
	}
	return p, nil
}

func runXMPPCerts(c *Ctx, args []string) error {
	p, err := primaryDomain(c, "xmpp certs")
	if err != nil {
		return err
	}
	keyName, crtName, bundleName := args[0], args[1], ""
	if len(args) == 3 {
		bundleName = args[2]
	}
	if err := checkCertFiles(c, "xmpp certs", p.Name, keyName, crtName, bundleName); err != nil {
		return err
	}
	if err := replicateFiles(c, "xmpp certs", keyName, crtName, bundleName); err != nil {
		return err
	}
	if err := applyCerts(c, "xmpp certs", p, store.Domain{Name: p.Name, Key: keyName, Cert: crtName, Bundle: bundleName}); err != nil {
		return err
	}
	with := ""
	if bundleName != "" {
		with = ", bundle " + bundleName
	}
	c.printf("%s now uses key %s, certificate %s (%s)%s\n", p.Name, keyName, crtName, certExpiry(c, crtName), with)
	return nil
}

func runXMPPCertsNone(c *Ctx, args []string) error {
	p, err := primaryDomain(c, "xmpp certs none")
	if err != nil {
		return err
	}
	keyName, crtName, generated, err := selfSignedPair(c, "xmpp certs none", p.Name)
	if err != nil {
		return err
	}
	if !generated && p.Key == keyName && p.Cert == crtName && p.Bundle == "" {
		c.printf("%s already uses the self-signed %s and %s\n", p.Name, keyName, crtName)
		return nil
	}
	if err := replicateFiles(c, "xmpp certs none", keyName, crtName); err != nil {
		removeGenerated(c, generated, keyName, crtName)
		return err
	}
	// Applied even when the names are the same (new files under the old
	// names): the change tells the engine to load them.
	if err := commit(c, store.DomainPrimary{Name: p.Name, Certs: &store.Domain{Name: p.Name, Key: keyName, Cert: crtName}}); err != nil {
		removeGenerated(c, generated, keyName, crtName)
		return errorf("xmpp certs none: %v", err)
	}
	reportSelfSigned(c, p.Name, keyName, crtName, generated)
	return nil
}

func runXMPPMultiDomainAdd(c *Ctx, args []string) error {
	const what = "xmpp multi-domain add"
	d, cfg, err := domainAndConfig(c, what, args[0])
	if err != nil {
		return err
	}
	if existing, ok := cfg.Domain(d); ok {
		if existing.Primary {
			return errorf("%s: %s is the primary domain; change its certificate with xmpp certs", what, d)
		}
		return errorf("%s: %s is already hosted (see xmpp multi-domain list); to change its certificate, use xmpp multi-domain certs %s <key> <crt> [<bundle>]", what, d, d)
	}
	if len(args) == 2 {
		return errorf("%s: give both <key> and <crt> (or neither, for a self-signed certificate); usage: %s", what, c.Tree.usageOf(what))
	}
	dom := &store.Domain{Name: d}
	generated := false
	if len(args) == 1 {
		if dom.Key, dom.Cert, generated, err = selfSignedPair(c, what, d); err != nil {
			return err
		}
	} else {
		dom.Key, dom.Cert = args[1], args[2]
		if len(args) == 4 {
			dom.Bundle = args[3]
		}
		if err := checkCertFiles(c, what, d, dom.Key, dom.Cert, dom.Bundle); err != nil {
			return err
		}
	}
	if err := replicateFiles(c, what, dom.Key, dom.Cert, dom.Bundle); err != nil {
		removeGenerated(c, generated, dom.Key, dom.Cert)
		return err
	}
	if err := commit(c, store.DomainPut{Domain: *dom}); err != nil {
		removeGenerated(c, generated, dom.Key, dom.Cert)
		return errorf("%s: %v", what, err)
	}
	if len(args) == 1 {
		reportSelfSigned(c, d, dom.Key, dom.Cert, generated)
	}
	c.printf("%s is now hosted\n", d)
	return nil
}

func runXMPPMultiDomainCerts(c *Ctx, args []string) error {
	const what = "xmpp multi-domain certs"
	d, cfg, err := domainAndConfig(c, what, args[0])
	if err != nil {
		return err
	}
	old, ok := cfg.Domain(d)
	if !ok {
		return errorf("%s: %s is not a hosted domain (see xmpp multi-domain list); add it with xmpp multi-domain add", what, d)
	}
	dom := store.Domain{Name: d, Key: args[1], Cert: args[2]}
	if len(args) == 4 {
		dom.Bundle = args[3]
	}
	if err := checkCertFiles(c, what, d, dom.Key, dom.Cert, dom.Bundle); err != nil {
		return err
	}
	if err := replicateFiles(c, what, dom.Key, dom.Cert, dom.Bundle); err != nil {
		return err
	}
	if err := applyCerts(c, what, old, dom); err != nil {
		return err
	}
	with := ""
	if dom.Bundle != "" {
		with = ", bundle " + dom.Bundle
	}
	c.printf("%s now uses key %s, certificate %s (%s)%s; sessions in progress stay\n", d, dom.Key, dom.Cert, certExpiry(c, dom.Cert), with)
	return nil
}

// applyCerts gives hosted domain old the files of dom, live; if the
// engine cannot load them, old's files are kept.
func applyCerts(c *Ctx, what string, old, dom store.Domain) error {
	op, undo := store.Op(store.DomainPut{Domain: dom}), store.Op(store.DomainPut{Domain: old})
	if old.Primary {
		op = store.DomainPrimary{Name: old.Name, Certs: &dom}
		undo = store.DomainPrimary{Name: old.Name, Certs: &old}
	}
	reason, undone, err := commitLive(c, op, undo)
	switch {
	case err != nil:
		return errorf("%s: %v", what, err)
	case reason != "" && undone:
		return errorf("%s: the server cannot load them: %s; %s keeps %s", what, reason, old.Name, old.Cert)
	case reason != "":
		return errorf("%s: stored, but the server cannot load them: %s; see 'xmpp'", what, reason)
	}
	return nil
}

// usageOf is a command's usage line, by name.
func (t *Tree) usageOf(name string) string {
	if t != nil {
		for _, cmd := range t.cmds {
			if cmd.Name() == name {
				return cmd.Usage()
			}
		}
	}
	return name
}

func runXMPPMultiDomainDel(c *Ctx, args []string) error {
	const what = "xmpp multi-domain del"
	d, cfg, err := domainAndConfig(c, what, args[0])
	if err != nil {
		return err
	}
	existing, ok := cfg.Domain(d)
	switch {
	case !ok:
		return errorf("%s: %s is not a hosted domain (see xmpp multi-domain list)", what, d)
	case existing.Primary:
		return errorf("%s: %s is the primary domain: make another domain primary with xmpp domain <name>, or clear everything with xmpp reset", what, d)
	}
	if err := commit(c, store.DomainDel{Name: d}); err != nil {
		return errorf("%s: %v", what, err)
	}
	accounts, _ := c.Store.Accounts(d)
	if n := len(accounts); n > 0 {
		c.printf("%s is no longer hosted; its %s %s and %s again if it is added back (delete %s with xmpp user del)\n",
			d, plural(n, "account"), pick(n == 1, "is kept", "are kept"), pick(n == 1, "works", "work"), pick(n == 1, "it", "them"))
	} else {
		c.printf("%s is no longer hosted\n", d)
	}
	return nil
}

func runXMPPMultiDomainList(c *Ctx, args []string) error {
	cfg, err := c.Store.XMPP()
	if err != nil {
		return errorf("xmpp multi-domain list: %v", err)
	}
	if len(cfg.Domains) == 0 {
		c.printf("No domains: set one with xmpp domain <name>\n")
		return nil
	}
	tw := tabwriter.NewWriter(c.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tKEY\tCERTIFICATE\tBUNDLE\tEXPIRES")
	for _, d := range cfg.Domains {
		name := d.Name
		if d.Primary {
			name += " (primary)"
		}
		expires := "-"
		if d.Cert != "" {
			expires = strings.TrimPrefix(certExpiry(c, d.Cert), "expires ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, orDash(d.Key), orDash(d.Cert), orDash(d.Bundle), expires)
	}
	return tw.Flush()
}

// --- listeners and limits -------------------------------------------------

func runXMPPListen(c *Ctx, args []string) error {
	const what = "xmpp listen"
	for _, a := range args {
		if (a == "none" || a == "all") && len(args) > 1 {
			return errorf("%s: '%s' stands alone: xmpp listen %s", what, a, a)
		}
	}
	switch args[0] {
	case "none":
		return applySetting(c, what, store.ConfigSet{Key: store.XMPPListen, Value: store.ListenNone})
	case "all":
		return applySetting(c, what, store.ConfigDel{Key: store.XMPPListen})
	}
	var out []string
	seen := map[string]bool{}
	for _, a := range args {
		v := a
		if addr, err := netip.ParseAddr(a); err == nil {
			v = addr.String()
		} else if _, err := net.InterfaceByName(a); err != nil {
			return errorf("%s: %q is neither an IP address nor a network interface of this appliance (interfaces: %s)", what, a, interfaceNames())
		}
		if seen[v] {
			return errorf("%s: %s is given twice", what, v)
		}
		seen[v] = true
		out = append(out, v)
	}
	return applySetting(c, what, store.ConfigSet{Key: store.XMPPListen, Value: strings.Join(out, " ")})
}

func interfaceNames() string {
	ifs, err := net.Interfaces()
	if err != nil || len(ifs) == 0 {
		return "none found"
	}
	names := make([]string, len(ifs))
	for i, f := range ifs {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

// applySetting commits a setting and checks that the engine could apply
// it. If the engine reports a new error for it (e.g. a port already in
// use), the previous value is put back and the command fails with the
// engine's reason.
func applySetting(c *Ctx, what string, op store.Op) error {
	key := ""
	switch o := op.(type) {
	case store.ConfigSet:
		key = o.Key
	case store.ConfigDel:
		key = o.Key
	}
	var undo store.Op
	if key != "" {
		undo = store.ConfigDel{Key: key}
		if old, had := c.Store.Config(key); had {
			undo = store.ConfigSet{Key: key, Value: old}
		}
	}
	reason, undone, err := commitLive(c, op, undo)
	switch {
	case err != nil:
		return errorf("%s: %v", what, err)
	case reason == "":
		return nil
	case undone:
		return errorf("%s: the server cannot apply it: %s; the previous setting is kept", what, reason)
	}
	return errorf("%s: stored, but the server cannot apply it: %s; see 'xmpp'", what, reason)
}

// commitLive commits op and checks that the engine could apply it. If
// the engine reports a new error for it, undo (if not nil) is committed
// to put back what was there; reason is the engine's error and undone
// says whether undo was committed.
func commitLive(c *Ctx, op, undo store.Op) (reason string, undone bool, err error) {
	var before status.XMPP
	if c.XMPP != nil {
		before = c.XMPP.Status()
	}
	applied := time.Now()
	if err := commit(c, op); err != nil {
		return "", false, err
	}
	if reason = engineRefused(c, before, applied); reason == "" || undo == nil {
		return reason, false, nil
	}
	return reason, commit(c, undo) == nil, nil
}

// engineRefused is the error the engine reported while applying a change
// committed (and settled) at applied, or "". An error it already reported
// before the change (a problem the change did not touch) is not the
// change's.
func engineRefused(c *Ctx, before status.XMPP, applied time.Time) string {
	if c.XMPP == nil {
		return ""
	}
	st := c.XMPP.Status()
	if st.LastError == "" || st.LastErrorAt.Before(applied) || st.LastError == before.LastError {
		return ""
	}
	return st.LastError
}

func runXMPPPort(c *Ctx, args []string) error {
	const what = "xmpp port"
	n, _ := parseCount(args[1])
	if n < 1 || n > 65535 {
		return errorf("%s: %d is not a TCP port: give 1 to 65535", what, n)
	}
	cfg, err := c.Store.XMPP()
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	current := map[string]int{"c2s": cfg.PortC2S, "c2s-tls": cfg.PortC2STLS, "s2s": cfg.PortS2S}
	var key string
	for _, p := range xmppPorts {
		if p.name == args[0] {
			key = p.key
			continue
		}
		if current[p.name] == n {
			return errorf("%s: %d is already the %s port: the three ports must differ (see xmpp)", what, n, p.name)
		}
	}
	return applySetting(c, what, store.ConfigSet{Key: key, Value: strconv.Itoa(n)})
}

func runXMPPMaxSessions(c *Ctx, args []string) error {
	const what = "xmpp max-sessions"
	if args[0] == "none" {
		return applySetting(c, what, store.ConfigDel{Key: store.XMPPMaxSessions})
	}
	n, err := parseCount(args[0])
	switch {
	case err != nil:
		return errorf("%s: give a number of sessions (1 to %d) or none, not %q", what, maxMaxSessions, args[0])
	case n == 0:
		return errorf("%s: 0 would refuse every session: give 1 to %d, or none for no limit", what, maxMaxSessions)
	case n > maxMaxSessions:
		return errorf("%s: %d is more than %d: give a smaller number, or none for no limit", what, n, maxMaxSessions)
	}
	return applySetting(c, what, store.ConfigSet{Key: store.XMPPMaxSessions, Value: strconv.Itoa(n)})
}

func runXMPPClientAuthTimeout(c *Ctx, args []string) error {
	const what = "xmpp client_auth_timeout"
	n, _ := parseCount(args[0])
	if n < minClientAuthTimeout || n > maxClientAuthTimeout {
		return errorf("%s: %d seconds is out of range: give %d to %d", what, n, minClientAuthTimeout, maxClientAuthTimeout)
	}
	return applySetting(c, what, store.ConfigSet{Key: store.XMPPClientAuthTimeout, Value: strconv.Itoa(n)})
}
