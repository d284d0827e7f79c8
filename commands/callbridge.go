package commands

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// Call bridge secrets: generated ones are secretLength characters of
// secretAlphabet; typed ones are minSecret to maxSecret printable ASCII
// characters without spaces.
const (
	secretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	secretLength   = 20
	minSecret      = 8
	maxSecret      = 256
	maxBridgeName  = 63
)

func callbridgeCommands() []*Command {
	name := Arg{Name: "name"}
	return []*Command{
		{
			Words:   []string{"xmpp", "callbridge", "add"},
			Args:    []Arg{name},
			Summary: "Register a call bridge (XEP-0114 component <name>.<xmpp domain>) with a generated secret, and print the secret",
			Help: "The name is a DNS label: 1 to 63 letters, digits and hyphens, not starting or ending with a\n" +
				"hyphen; it is lower-cased. The component is <name>.<primary domain> (set the domain first with\n" +
				"xmpp domain), and must not be a hosted domain itself. The secret is 20 random letters and digits;\n" +
				"enter it with the component name and domain in the call bridge's XMPP settings. The nodes of a\n" +
				"cluster share call bridges and their secrets; to give a standalone appliance the same secret, use\n" +
				"xmpp callbridge add-secret there. A name already registered is refused: del it first to change\n" +
				"its secret.",
			Example: "xmpp callbridge add cb1",
			Perm:    PermXMPP,
			Run:     runCallbridgeAdd,
		},
		{
			Words:   []string{"xmpp", "callbridge", "add-secret"},
			Args:    []Arg{name},
			Summary: "Register a call bridge with a secret you type (no echo), e.g. the one another node generated",
			Help: "As xmpp callbridge add, but the secret is asked for twice without echo; in exec or script mode it\n" +
				"is read once, from the next line of standard input. It is 8 to 256 printable ASCII characters\n" +
				"without spaces. This is how another appliance gets the secret a first one generated (cluster nodes\n" +
				"need not: they share the secrets).",
			Example: "xmpp callbridge add-secret cb1\nprintf 'kvgP1SRzWVabhiPVAb1x\\n' | ssh -p 2222 admin@host 'xmpp callbridge add-secret cb1'",
			Perm:    PermXMPP,
			Run:     runCallbridgeAddSecret,
		},
		{
			Words:   []string{"xmpp", "callbridge", "del"},
			Args:    []Arg{name},
			Summary: "Remove a call bridge; if it is connected, the engine disconnects it",
			Help:    "Waits up to 3 seconds for the engine to report that the component is disconnected.",
			Example: "xmpp callbridge del cb1",
			Perm:    PermXMPP,
			Run:     runCallbridgeDel,
		},
		{
			Words:   []string{"xmpp", "callbridge", "list"},
			Summary: "List the call bridges with their domains and secrets, in Cisco Meeting Server's format",
			Help: "One block per call bridge and nothing else, as Cisco Meeting Server prints it, so scripts written\n" +
				"for it keep working; no call bridges, no output:\n" +
				"  ***\n" +
				"  Callbridge : cb1\n" +
				"  Domain     : example.com\n" +
				"  Secret     : kvgP1SRzWVabhiPVAb1\n" +
				"It shows the secrets, so it needs the role admin or appadmin, and every use is recorded in the\n" +
				"audit trail. Domain is the one the call bridge was added under, also when that domain is no longer\n" +
				"hosted (after xmpp reset or a new primary domain); xmpp shows the same component address, whether\n" +
				"it is connected, and marks a domain that is not hosted.",
			Example: "xmpp callbridge list",
			Perm:    PermXMPP,
			Run:     runCallbridgeList,
		},
		{
			Words:   []string{"xmpp", "callbridge", "plain"},
			Args:    []Arg{{Name: "setting", Kind: ArgEnum, Values: []string{"allow", "deny"}}},
			Summary: "Allow components to connect without TLS from any address, or (deny, the default) from loopback only",
			Help: "Components always may connect with TLS on the c2s-tls port (5223 by default, direct TLS, as Cisco\n" +
				"Meeting Server call bridges do), and without TLS from this appliance itself (127.0.0.1, ::1).\n" +
				"allow also accepts plain connections from other hosts, e.g. on the c2s port 5222: the handshake\n" +
				"does not reveal the secret, but the traffic that follows is not encrypted. deny goes back to\n" +
				"loopback only; components already connected stay connected.",
			Example: "xmpp callbridge plain allow\nxmpp callbridge plain deny",
			Perm:    PermXMPP,
			Run:     runCallbridgePlain,
		},
	}
}

// parseBridgeName validates a call bridge name (one DNS label) and returns
// it lower-cased.
func parseBridgeName(s string) (string, error) {
	n := strings.ToLower(s)
	bad := n == "" || len(n) > maxBridgeName || n[0] == '-' || n[len(n)-1] == '-'
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			bad = true
		}
	}
	if bad {
		return "", fmt.Errorf("%q is not a valid call bridge name: use 1 to %d letters, digits and hyphens, not starting or ending with a hyphen, e.g. cb1", s, maxBridgeName)
	}
	return n, nil
}

// newBridge checks that a call bridge named arg may be added and returns
// it without its secret.
func newBridge(c *Ctx, what, arg string) (store.Component, error) {
	name, err := parseBridgeName(arg)
	if err != nil {
		return store.Component{}, errorf("%s: %v", what, err)
	}
	cfg, err := c.Store.XMPP()
	if err != nil {
		return store.Component{}, errorf("%s: %v", what, err)
	}
	p, ok := cfg.Primary()
	if !ok {
		return store.Component{}, errorf("%s: set a domain first: xmpp domain <name>", what)
	}
	comp := store.Component{Name: name, Domain: p.Name}
	if old, err := c.Store.Component(name); err == nil {
		return store.Component{}, errorf("%s: call bridge %s already exists (component %s): to change its secret, xmpp callbridge del %s and add it again", what, name, old.JID(), name)
	} else if !errors.Is(err, store.ErrNotFound) {
		return store.Component{}, errorf("%s: %v", what, err)
	}
	if _, hosted := cfg.Domain(comp.JID()); hosted {
		return store.Component{}, errorf("%s: %s is a hosted XMPP domain, so it cannot also be a component: choose another name", what, comp.JID())
	}
	if _, err := parseDomain(comp.JID()); err != nil {
		return store.Component{}, errorf("%s: %s cannot be a component address: %v", what, comp.JID(), err)
	}
	return comp, nil
}

func addBridge(c *Ctx, what string, comp store.Component) error {
	if err := commit(c, store.ComponentAdd{Component: comp}); err != nil {
		if errors.Is(err, store.ErrExists) {
			return errorf("%s: call bridge %s already exists: to change its secret, xmpp callbridge del %s and add it again", what, comp.Name, comp.Name)
		}
		return errorf("%s: %v", what, err)
	}
	return nil
}

func runCallbridgeAdd(c *Ctx, args []string) error {
	const what = "xmpp callbridge add"
	comp, err := newBridge(c, what, args[0])
	if err != nil {
		return err
	}
	if comp.Secret, err = generateSecret(); err != nil {
		return errorf("%s: generating a secret: %v", what, err)
	}
	if err := addBridge(c, what, comp); err != nil {
		return err
	}
	c.printf("Callbridge %s added: component %s, secret %s\n", comp.Name, comp.JID(), comp.Secret)
	return nil
}

func runCallbridgeAddSecret(c *Ctx, args []string) error {
	const what = "xmpp callbridge add-secret"
	comp, err := newBridge(c, what, args[0])
	if err != nil {
		return err
	}
	if comp.Secret, err = askSecret(c, "Secret for "+comp.Name+": "); err != nil {
		return errorf("%s: %v", what, err)
	}
	if err := addBridge(c, what, comp); err != nil {
		return err
	}
	c.printf("Callbridge %s added: component %s, with the secret given\n", comp.Name, comp.JID())
	return nil
}

// generateSecret returns secretLength characters drawn uniformly from
// secretAlphabet with crypto/rand.
func generateSecret() (string, error) {
	// Bytes of 248 and more are dropped so that every character is equally
	// likely (248 = 4 × 62).
	limit := byte(256 - 256%len(secretAlphabet))
	out := make([]byte, 0, secretLength)
	buf := make([]byte, 2*secretLength)
	for len(out) < secretLength {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			if b < limit && len(out) < secretLength {
				out = append(out, secretAlphabet[int(b)%len(secretAlphabet)])
			}
		}
	}
	return string(out), nil
}

// askSecret reads a secret and checks it (checkSecret); at a terminal it
// is then asked again, and both must match.
func askSecret(c *Ctx, prompt string) (string, error) {
	s, err := c.Prompt.Secret(prompt)
	if err != nil {
		return "", fmt.Errorf("no secret given: %v", err)
	}
	if err := checkSecret(s); err != nil {
		return "", err
	}
	if c.Prompt.Interactive() {
		again, err := c.Prompt.Secret("Retype secret: ")
		if err != nil {
			return "", fmt.Errorf("no secret given: %v", err)
		}
		if again != s {
			return "", errors.New("the secrets do not match; nothing was changed")
		}
	}
	return s, nil
}

// checkSecret applies the rules for a typed secret. Its errors never
// quote the secret: they end up in the audit trail.
func checkSecret(s string) error {
	switch {
	case s == "":
		return errors.New("the secret is empty: give 8 to 256 printable ASCII characters without spaces")
	case len(s) < minSecret:
		return fmt.Errorf("the secret is too short: use at least %d characters", minSecret)
	case len(s) > maxSecret:
		return fmt.Errorf("the secret is too long: use at most %d characters", maxSecret)
	}
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b == ' ':
			return fmt.Errorf("the secret may hold only printable ASCII characters without spaces: character %d is a space", i+1)
		case b < 0x21 || b > 0x7e:
			return fmt.Errorf("the secret may hold only printable ASCII characters without spaces: character %d is not printable ASCII", i+1)
		}
	}
	return nil
}

func runCallbridgeDel(c *Ctx, args []string) error {
	const what = "xmpp callbridge del"
	name, err := parseBridgeName(args[0])
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	comp, err := c.Store.Component(name)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errorf("%s: no call bridge %s (see xmpp callbridge list)", what, name)
		}
		return errorf("%s: %v", what, err)
	}
	jid := comp.JID()
	before, wasConnected := connectedComponent(c, jid)
	if err := commit(c, store.ComponentDel{Name: name}); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errorf("%s: no call bridge %s (see xmpp callbridge list)", what, name)
		}
		return errorf("%s: %v", what, err)
	}
	if !wasConnected {
		c.printf("Callbridge %s deleted: %s can no longer connect\n", name, jid)
		return nil
	}
	for deadline := time.Now().Add(engineWait); ; time.Sleep(enginePoll) {
		if _, still := connectedComponent(c, jid); !still {
			c.printf("Callbridge %s deleted: %s was connected from %s and has been disconnected\n", name, jid, before.From)
			return nil
		}
		if time.Now().After(deadline) {
			c.printf("Callbridge %s deleted: %s is still connected; the engine has not reported closing it within %s (see 'xmpp')\n", name, jid, engineWait)
			return nil
		}
	}
}

// connectedComponent returns the engine's status of a component if it is
// connected.
func connectedComponent(c *Ctx, jid string) (status.Component, bool) {
	if c.XMPP == nil {
		return status.Component{}, false
	}
	for _, cs := range c.XMPP.Status().Components {
		if cs.JID == jid && cs.Connected {
			return cs, true
		}
	}
	return status.Component{}, false
}

func runCallbridgeList(c *Ctx, args []string) error {
	comps, err := c.Store.Components()
	if err != nil {
		return errorf("xmpp callbridge list: %v", err)
	}
	for _, comp := range comps {
		c.printf("***\nCallbridge : %s\nDomain     : %s\nSecret     : %s\n", comp.Name, comp.Domain, comp.Secret)
	}
	return nil
}

func runCallbridgePlain(c *Ctx, args []string) error {
	const what = "xmpp callbridge plain"
	var op store.Op = store.ConfigDel{Key: store.XMPPComponentPlain}
	if args[0] == "allow" {
		op = store.ConfigSet{Key: store.XMPPComponentPlain, Value: "allow"}
	}
	if err := commit(c, op); err != nil {
		return errorf("%s: %v", what, err)
	}
	cfg, err := c.Store.XMPP()
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	c.printf("Component plain: %s; TLS on the c2s-tls port %d is always allowed\n", componentPlainText(c), cfg.PortC2STLS)
	return nil
}

// componentPlainText says from where components may connect without TLS.
func componentPlainText(c *Ctx) string {
	if v, _ := c.Store.Config(store.XMPPComponentPlain); v == "allow" {
		return "allowed from any address"
	}
	return "loopback only"
}

// componentLines are the Components lines of the xmpp status: each
// configured component with what the engine reports of it, then the
// components the engine reports that are not configured (refused as
// unknown, or still connected after del).
func componentLines(c *Ctx, st status.XMPP) ([]string, error) {
	comps, err := c.Store.Components()
	if err != nil {
		return nil, err
	}
	hosted := map[string]bool{}
	if cfg, err := c.Store.XMPP(); err == nil {
		for _, d := range cfg.Domains {
			hosted[d.Name] = true
		}
	}
	byJID := map[string]status.Component{}
	for _, cs := range st.Components {
		byJID[cs.JID] = cs
	}
	var lines []string
	configured := map[string]bool{}
	for _, comp := range comps {
		jid := comp.JID()
		configured[jid] = true
		if c.XMPP == nil {
			if !hosted[comp.Domain] {
				jid += ": " + comp.Domain + " is not hosted"
			}
			lines = append(lines, jid)
			continue
		}
		line := jid + ": " + componentState(c, byJID[jid])
		if !hosted[comp.Domain] {
			line += "; " + comp.Domain + " is not hosted (to move it: xmpp callbridge del " + comp.Name + ", then add it again)"
		}
		lines = append(lines, line)
	}
	var others []string
	for _, cs := range st.Components {
		if configured[cs.JID] || (!cs.Connected && cs.LastFailure == "") {
			continue
		}
		others = append(others, cs.JID+": not configured, "+componentState(c, cs))
	}
	sort.Strings(others)
	lines = append(lines, others...)
	if len(lines) == 0 {
		lines = []string{"none: add a call bridge with xmpp callbridge add <name>"}
	}
	return lines, nil
}

func componentState(c *Ctx, cs status.Component) string {
	var s string
	if cs.Connected && cs.Node != "" {
		return "connected to node " + nodeName(c, cs.Node)
	}
	if cs.Connected {
		s = "connected"
		if !cs.Since.IsZero() {
			s += " since " + cs.Since.UTC().Format(time.RFC3339)
		}
		if cs.From != "" {
			s += " from " + cs.From
		}
		if cs.LastFailure != "" && cs.LastFailureAt.After(cs.Since) {
			s += " (last failure: " + failureText(cs) + ")"
		}
		return s
	}
	s = "not connected"
	if cs.LastFailure != "" {
		s += " (last failure: " + failureText(cs) + ")"
	}
	return s
}

// nodeName is another cluster node as `xmpp cluster status` lists it: its
// XMPP address, else its id. The cluster's status is read once per
// command, however many sessions or bridges name a node.
func nodeName(c *Ctx, id string) string {
	if c.nodeNames == nil {
		c.nodeNames = map[string]string{}
		if c.Cluster != nil {
			for _, p := range c.Cluster.Status().Peers {
				if p.Address != "" {
					c.nodeNames[p.ID] = p.Address
				}
			}
		}
	}
	if a, ok := c.nodeNames[id]; ok {
		return a
	}
	return id
}

func failureText(cs status.Component) string {
	if cs.LastFailureAt.IsZero() {
		return cs.LastFailure
	}
	return cs.LastFailure + " at " + cs.LastFailureAt.UTC().Format(time.RFC3339)
}
