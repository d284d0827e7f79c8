package commands

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// Ranges of the xmpp limits settings.
const (
	maxPreAuth     = 1000000
	minStanzaRate  = 0.1
	maxStanzaRate  = 100000
	maxStanzaBurst = 1000000
)

func xmppLimitsCommands() []*Command {
	return []*Command{
		{
			Words:   []string{"xmpp", "limits"},
			Summary: "Show every limit of the XMPP service and its value",
			Help: "Pre-auth connections are connections not yet authenticated: from the TCP accept until a client\n" +
				"has bound a resource, or a server or component stream has authenticated. Automatic (the default)\n" +
				"is a quarter of the process's open-file limit, at most 5000, so the other three quarters stay\n" +
				"for authenticated sessions, server links and the admin shell. Also shown: the stanza rate,\n" +
				"xmpp max-sessions, xmpp client_auth_timeout, the idle timeout (parley serve --xmpp-idle-timeout),\n" +
				"the largest stanza, and the open files against the process's limit.",
			Perm: PermRead,
			Run:  runXMPPLimits,
		},
		{
			Words:   []string{"xmpp", "limits", "pre-auth"},
			Args:    []Arg{{Name: "n|auto"}, {Name: "per-address", Optional: true}, {Name: "n", Optional: true}},
			Syntax:  "xmpp limits pre-auth <n>|auto [per-address <n>]",
			Summary: "Limit connections not yet authenticated: in all (default auto) and from one address (default 100)",
			Help: fmt.Sprintf("When the limit in all is reached, the oldest unauthenticated connection is closed for each new\n"+
				"one (stream error resource-constraint); a new connection from an address that has its limit open\n"+
				"is refused at once (policy-violation), so one address cannot crowd out the others. For IPv6 an\n"+
				"address is its /64. auto is a quarter of the process's open-file limit, at most %d. n is 1 to %d;\n"+
				"per-address is at most the limit in all. Applies at once; connections already open stay.",
				store.DefaultPreAuthMax, maxPreAuth),
			Example: "xmpp limits pre-auth 2000 per-address 50\nxmpp limits pre-auth auto per-address 100",
			Perm:    PermXMPP,
			Run:     runXMPPLimitsPreAuth,
		},
		{
			Words:   []string{"xmpp", "limits", "stanza-rate"},
			Args:    []Arg{{Name: "per-second"}, {Name: "burst", Optional: true}, {Name: "n", Optional: true}},
			Syntax:  "xmpp limits stanza-rate <per-second> [burst <n>]",
			Summary: fmt.Sprintf("Limit the stanzas each client session may send: a rate and a burst (default %d per second, burst %d)", store.DefaultStanzaRate, store.DefaultStanzaBurst),
			Help: fmt.Sprintf("A token bucket per client session: it holds up to burst stanzas and refills at per-second; a client\n"+
				"that sends faster is slowed down. per-second is %g to %d (decimals allowed); burst is 1 to %d.\n"+
				"Applies at once.", minStanzaRate, maxStanzaRate, maxStanzaBurst),
			Example: "xmpp limits stanza-rate 50 burst 200\nxmpp limits stanza-rate 0.5 burst 10",
			Perm:    PermXMPP,
			Run:     runXMPPLimitsStanzaRate,
		},
	}
}

func runXMPPLimits(c *Ctx, args []string) error {
	cfg, err := c.Store.XMPP()
	if err != nil {
		return errorf("xmpp limits: reading the configuration: %v", err)
	}
	var st status.XMPP
	if c.XMPP != nil {
		st = c.XMPP.Status()
	}
	type row struct{ label, value string }
	var rows []row
	add := func(label, value string) { rows = append(rows, row{label, value}) }

	var preAuth, note string
	switch {
	case cfg.PreAuth > 0:
		preAuth = strconv.Itoa(cfg.PreAuth)
		if st.FileLimit > 0 && cfg.PreAuth > st.FileLimit/4 {
			note = fmt.Sprintf(" (more than a quarter of the open-file limit of %d: authenticated sessions may find no file descriptor left)", st.FileLimit)
		}
	case c.XMPP != nil && st.PreAuthLimit > 0 && st.FileLimit > 0:
		preAuth = fmt.Sprintf("auto: %d", st.PreAuthLimit)
		note = fmt.Sprintf(" (a quarter of the open-file limit of %d, at most %d)", st.FileLimit, store.DefaultPreAuthMax)
	default:
		preAuth = fmt.Sprintf("auto (a quarter of the open-file limit, at most %d)", store.DefaultPreAuthMax)
	}
	if c.XMPP != nil {
		preAuth += fmt.Sprintf(", %d now", st.PreAuth)
	}
	preAuth += note
	add("Pre-auth connections", preAuth)
	add("Pre-auth per address", strconv.Itoa(cfg.PreAuthPerAddress))
	add("Stanza rate", fmt.Sprintf("%s per second per client session, burst %d", formatRate(cfg.StanzaRate), cfg.StanzaBurst))
	maxSessions := "none"
	if cfg.MaxSessions > 0 {
		maxSessions = strconv.Itoa(cfg.MaxSessions)
	}
	add("Max sessions", maxSessions)
	add("Client auth timeout", fmt.Sprintf("%d seconds", int(cfg.ClientAuthTimeout/time.Second)))
	if c.XMPP != nil {
		if st.IdleTimeout > 0 {
			add("Idle timeout", fmt.Sprintf("%v: a silent client is pinged, and closed after %v", st.IdleTimeout, 2*st.IdleTimeout))
		}
		if st.MaxStanza > 0 {
			add("Stanza size", fmt.Sprintf("%d bytes at most", st.MaxStanza))
		}
		if st.FileLimit > 0 {
			add("Open files", openFilesText(st.OpenFiles, st.FileLimit))
		}
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r.label))
	}
	for _, r := range rows {
		c.printf("%-*s : %s\n", width, r.label, r.value)
	}
	return nil
}

// openFilesNear is the share of the open-file limit above which health
// warns (the engine's log warns at the same share).
const openFilesNear = 0.8

func openFilesText(open, limit int) string {
	return fmt.Sprintf("%d of %d (%d%%)", open, limit, int(100*float64(open)/float64(limit)))
}

func formatRate(r float64) string { return strconv.FormatFloat(r, 'f', -1, 64) }

// limitCount parses a count of 1 to maxN for what.
func limitCount(what, name, s string, maxN int, alt string) (int, error) {
	n, err := parseCount(s)
	switch {
	case err != nil:
		return 0, errorf("%s: %s must be a whole number from 1 to %d%s, not %q", what, name, maxN, alt, s)
	case n == 0:
		return 0, errorf("%s: %s 0 would refuse everything: give 1 to %d%s", what, name, maxN, alt)
	case n > maxN:
		return 0, errorf("%s: %s %d is more than %d: give 1 to %d%s", what, name, n, maxN, maxN, alt)
	}
	return n, nil
}

// keyword checks the word before a second number ("per-address 50").
func keyword(c *Ctx, what, want string, args []string) error {
	if len(args) == 1 {
		return nil
	}
	if args[1] != want {
		return errorf("%s: expected %s, not %q; usage: %s", what, want, args[1], c.Tree.usageOf(what))
	}
	if len(args) == 2 {
		return errorf("%s: %s needs a number; usage: %s", what, want, c.Tree.usageOf(what))
	}
	return nil
}

func runXMPPLimitsPreAuth(c *Ctx, args []string) error {
	const what = "xmpp limits pre-auth"
	if err := keyword(c, what, "per-address", args); err != nil {
		return err
	}
	total := 0 // auto
	if args[0] != "auto" {
		n, err := limitCount(what, "the limit", args[0], maxPreAuth, ", or auto")
		if err != nil {
			return err
		}
		total = n
	}
	perAddr := 0 // unchanged
	if len(args) == 3 {
		n, err := limitCount(what, "per-address", args[2], maxPreAuth, "")
		if err != nil {
			return err
		}
		if total > 0 && n > total {
			return errorf("%s: per-address %d is more than the limit in all (%d): give per-address %d or less", what, n, total, total)
		}
		perAddr = n
	}
	var op store.Op = store.ConfigDel{Key: store.XMPPPreAuth}
	if total > 0 {
		op = store.ConfigSet{Key: store.XMPPPreAuth, Value: strconv.Itoa(total)}
	}
	if err := applySetting(c, what, op); err != nil {
		return err
	}
	if perAddr > 0 {
		if err := applySetting(c, what, store.ConfigSet{Key: store.XMPPPreAuthPerAddress, Value: strconv.Itoa(perAddr)}); err != nil {
			return err
		}
	}
	cfg, err := c.Store.XMPP()
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	inAll := "auto"
	if cfg.PreAuth > 0 {
		inAll = strconv.Itoa(cfg.PreAuth)
	}
	c.printf("Connections not yet authenticated: at most %s in all, %d per address\n", inAll, cfg.PreAuthPerAddress)
	return nil
}

func runXMPPLimitsStanzaRate(c *Ctx, args []string) error {
	const what = "xmpp limits stanza-rate"
	if err := keyword(c, what, "burst", args); err != nil {
		return err
	}
	rate, err := strconv.ParseFloat(args[0], 64)
	if err != nil || strings.ContainsAny(args[0], "eEinfINFxXpP_") || rate < minStanzaRate || rate > maxStanzaRate {
		return errorf("%s: the rate is stanzas per second from %g to %d, e.g. 100 or 2.5, not %q", what, minStanzaRate, maxStanzaRate, args[0])
	}
	burst := 0
	if len(args) == 3 {
		if burst, err = limitCount(what, "burst", args[2], maxStanzaBurst, ""); err != nil {
			return err
		}
	}
	if err := applySetting(c, what, store.ConfigSet{Key: store.XMPPStanzaRate, Value: formatRate(rate)}); err != nil {
		return err
	}
	if burst > 0 {
		if err := applySetting(c, what, store.ConfigSet{Key: store.XMPPStanzaBurst, Value: strconv.Itoa(burst)}); err != nil {
			return err
		}
	}
	cfg, err := c.Store.XMPP()
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	c.printf("Each client session: at most %s stanzas per second, burst %d\n", formatRate(cfg.StanzaRate), cfg.StanzaBurst)
	return nil
}
