package commands

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server/directory"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// directoryCheckTimeout bounds the whole of xmpp directory test.
const directoryCheckTimeout = 30 * time.Second

func xmppDirectoryCommands() []*Command {
	return []*Command{
		{
			Words:            []string{"xmpp", "directory"},
			Args:             []Arg{{Name: "domain", Optional: true}, {Name: "setting", Optional: true, Repeat: true}},
			Syntax:           "xmpp directory [<domain> ldap|starttls|trust|user-filter|jid-from|roster-groups|test|sync|prune|none …]",
			QueryWithoutArgs: true,
			Summary:          "Take a hosted domain's accounts from an LDAP directory (OpenLDAP, Active Directory …); without arguments, show the directories",
			Help: "  xmpp directory <domain> ldap <ldap[s]://host[:port]> base <dn> [bind <dn>]\n" +
				"  xmpp directory <domain> starttls on|off\n" +
				"  xmpp directory <domain> trust <bundle>|system\n" +
				"  xmpp directory <domain> user-filter <filter>|default\n" +
				"  xmpp directory <domain> jid-from mail|uid|<attribute>\n" +
				"  xmpp directory <domain> roster-groups <base> [<filter>]|none\n" +
				"  xmpp directory <domain> test [<user>]\n" +
				"  xmpp directory <domain> sync\n" +
				"  xmpp directory <domain> prune\n" +
				"  xmpp directory <domain> none\n" +
				"ldap sets where the directory is and the base DN users are searched under; with bind <dn>, searches\n" +
				"bind as that DN with a password asked for without echo (in exec or script mode: the next line of\n" +
				"standard input), stored in the replicated configuration and never shown; without it, searches are\n" +
				"anonymous. Users log in with their directory password: SASL PLAIN over TLS (the only mechanism a\n" +
				"directory domain offers: SCRAM needs keys stored here), checked by a search for the user and a bind\n" +
				"as the entry found. Their account (roster, offline messages, vCard) is made here at their first\n" +
				"login; xmpp user add, del and passwd are refused for a directory domain.\n" +
				"starttls on upgrades ldap:// with StartTLS (ldaps:// is TLS from the start); trust <bundle> verifies\n" +
				"the directory's certificate with the CAs of a bundle in the files area only, system with the\n" +
				"system's roots (the default). user-filter selects user entries (default (objectClass=inetOrgPerson);\n" +
				"default restores it). jid-from is the attribute a JID is found by: mail (the default) matches the\n" +
				"whole address user@domain, so a user's e-mail address is their JID; any other attribute (uid,\n" +
				"sAMAccountName …) matches the JID's user part. What users type is escaped (RFC 4515).\n" +
				"roster-groups puts the members of each group under <base> (default filter\n" +
				"(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)), members by member or uniqueMember)\n" +
				"in each other's rosters, subscribed both ways, in a roster group named as the group's cn, at each\n" +
				"login and refresh; items the groups no longer give go then (roster-groups none: all of them).\n" +
				"sync makes an account here for every user of the directory who has none yet (they are otherwise\n" +
				"made at the first login), so that messages to them are kept offline and xmpp user list shows them.\n" +
				"prune deletes, after a confirmation, the accounts made from the directory whose user is no longer\n" +
				"in it, with their roster, offline messages, vCard and private data (local accounts are left).\n" +
				"none makes the domain's accounts local again (accounts made from the directory stay, without a\n" +
				"password: set one with xmpp user passwd). test checks connection, TLS, bind and search, and given\n" +
				"a user (alice or alice@domain) finds them and shows the vCard their login would build: one line\n" +
				"per step with its verdict and, when it fails, the fix.",
			Example: "xmpp directory example.com ldap ldap://ldap.example.com base ou=people,dc=example,dc=com bind cn=parley,dc=example,dc=com\n" +
				"xmpp directory example.com starttls on\nxmpp directory example.com trust company-ca.pem\n" +
				"xmpp directory example.com jid-from uid\nxmpp directory example.com roster-groups ou=groups,dc=example,dc=com\n" +
				"xmpp directory example.com test alice\nxmpp directory",
			Perm: PermXMPP,
			Run:  runXMPPDirectory,
		},
	}
}

func runXMPPDirectory(c *Ctx, args []string) error {
	what := "xmpp directory"
	if len(args) == 0 {
		return showDirectories(c)
	}
	if len(args) == 1 {
		return errorf("%s %s: missing the setting: ldap, starttls, trust, user-filter, jid-from, roster-groups, sync, prune, none or test (see help xmpp directory)", what, args[0])
	}
	domain, err := parseDomain(args[0])
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	cfg, err := c.Store.XMPP()
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	if _, ok := cfg.Domain(domain); !ok {
		return errorf("%s: %v", what, notHosted(domain, cfg))
	}
	set, rest := args[1], args[2:]
	what = what + " " + domain + " " + set
	cur, has := c.Store.DirectoryOf(domain)
	need := func(n int, usage string) error {
		if len(rest) != n {
			return errorf("%s: usage: xmpp directory %s %s %s", what, domain, set, usage)
		}
		if set != "ldap" && set != "none" && set != "test" && !has {
			return errorf("%s: %s has no directory yet: set it first with xmpp directory %s ldap <url> base <dn> [bind <dn>]", what, domain, domain)
		}
		return nil
	}
	save := func(d store.Directory) error {
		if err := directory.Validate(dirConfig(d, nil)); err != nil {
			return errorf("%s: %v", what, err)
		}
		if err := store.CheckDirectory(d); err != nil {
			return errorf("%s: %v", what, err)
		}
		if err := commit(c, store.DirectorySet{Directory: d}); err != nil {
			return errorf("%s: %v", what, err)
		}
		return nil
	}
	switch set {
	case "ldap":
		if len(rest) != 3 && len(rest) != 5 || rest[1] != "base" || (len(rest) == 5 && rest[3] != "bind") {
			return errorf("%s: usage: xmpp directory %s ldap <ldap[s]://host[:port]> base <dn> [bind <dn>]", what, domain)
		}
		d := cur
		if !has {
			d = store.Directory{Domain: domain}
		}
		d.URL, d.Base, d.BindDN, d.BindPassword = strings.TrimSuffix(rest[0], "/"), rest[2], "", ""
		if strings.HasPrefix(d.URL, "ldaps://") {
			d.StartTLS = false
		}
		if len(rest) == 5 {
			d.BindDN = rest[4]
		}
		if err := directory.Validate(dirConfig(d, nil)); err != nil {
			return errorf("%s: %v", what, err)
		}
		if d.BindDN != "" {
			pw, err := askBindPassword(c, "Password of "+d.BindDN+": ")
			if err != nil {
				return errorf("%s: %v", what, err)
			}
			d.BindPassword = pw
		}
		if err := save(d); err != nil {
			return err
		}
		c.printf("%s takes its accounts from %s (base %s, %s)\n", domain, d.URL, d.Base, bindText(d))
		if !has {
			c.printf("Check it with: xmpp directory %s test <user>\n", domain)
		}
		return nil
	case "starttls":
		if err := need(1, "on|off"); err != nil {
			return err
		}
		if rest[0] != "on" && rest[0] != "off" {
			return errorf("%s: give on or off, not %q", what, rest[0])
		}
		cur.StartTLS = rest[0] == "on"
		if err := save(cur); err != nil {
			return err
		}
		c.printf("StartTLS %s for %s\n", rest[0], cur.URL)
		return nil
	case "trust":
		if err := need(1, "<bundle>|system"); err != nil {
			return err
		}
		if rest[0] == "system" {
			cur.Trust = ""
		} else {
			name := rest[0]
			if err := pki.CheckName(name); err != nil {
				return errorf("%s: %v", what, err)
			}
			data, err := c.Files.ReadFile(name)
			if err != nil {
				return errorf("%s: %v", what, err)
			}
			certs, err := pki.ParseCertificates(data)
			if err != nil || len(certs) == 0 {
				return errorf("%s: %s holds no PEM certificate: give the CA bundle that signed the directory's certificate", what, name)
			}
			if err := replicateFiles(c, what, "", name); err != nil {
				return err
			}
			cur.Trust = name
		}
		if err := save(cur); err != nil {
			return err
		}
		if cur.Trust == "" {
			c.printf("The directory of %s is verified with the system's roots\n", domain)
		} else {
			c.printf("The directory of %s is verified with the CAs of %s only\n", domain, cur.Trust)
		}
		return nil
	case "user-filter":
		if len(rest) == 0 {
			return need(1, "<filter>|default")
		}
		f := strings.Join(rest, " ")
		if err := need(len(rest), "<filter>|default"); err != nil {
			return err
		}
		if f == "default" {
			f = ""
		}
		cur.UserFilter = f
		if err := save(cur); err != nil {
			return err
		}
		c.printf("Users of %s are entries matching %s\n", domain, cur.Filter())
		return nil
	case "jid-from":
		if err := need(1, "mail|uid|<attribute>"); err != nil {
			return err
		}
		cur.JIDFrom = rest[0]
		if strings.EqualFold(rest[0], "mail") {
			cur.JIDFrom = ""
		}
		if err := save(cur); err != nil {
			return err
		}
		if cur.Attribute() == "mail" {
			c.printf("A user of %s is found by their e-mail address: mail=<user>@%s\n", domain, domain)
		} else {
			c.printf("A user of %s is found by %s=<user>\n", domain, cur.Attribute())
		}
		return nil
	case "roster-groups":
		if len(rest) == 0 {
			return need(1, "<base> [<filter>] | none")
		}
		if err := need(len(rest), "<base> [<filter>] | none"); err != nil {
			return err
		}
		if rest[0] == "none" {
			if len(rest) != 1 {
				return errorf("%s: usage: xmpp directory %s roster-groups none", what, domain)
			}
			cur.GroupsBase, cur.GroupFilter = "", ""
		} else {
			cur.GroupsBase, cur.GroupFilter = rest[0], strings.Join(rest[1:], " ")
		}
		if err := save(cur); err != nil {
			return err
		}
		if cur.GroupsBase == "" {
			c.printf("Directory groups no longer fill the rosters of %s: the items they made go at each user's next login or refresh\n", domain)
		} else {
			c.printf("Members of the groups under %s matching %s see each other in their rosters (at their next login or refresh)\n", cur.GroupsBase, cur.Groups())
		}
		return nil
	case "sync":
		if len(rest) != 0 {
			return errorf("%s: usage: xmpp directory %s sync", what, domain)
		}
		if !has {
			return errorf("%s: %s has no directory", what, domain)
		}
		return syncDirectory(c, cur)
	case "prune":
		if len(rest) != 0 {
			return errorf("%s: usage: xmpp directory %s prune", what, domain)
		}
		if !has {
			return errorf("%s: %s has no directory", what, domain)
		}
		return pruneDirectory(c, cur)
	case "none":
		if len(rest) != 0 {
			return errorf("%s: usage: xmpp directory %s none", what, domain)
		}
		if !has {
			return errorf("%s: %s has no directory", what, domain)
		}
		if err := commit(c, store.DirectoryDel{Domain: domain}); err != nil {
			return errorf("%s: %v", what, err)
		}
		c.printf("%s has local accounts again; accounts made from the directory need a password: xmpp user passwd <jid>\n", domain)
		return nil
	case "test":
		if len(rest) > 1 {
			return errorf("%s: usage: xmpp directory %s test [<user>]", what, domain)
		}
		if !has {
			return errorf("%s: %s has no directory: set it with xmpp directory %s ldap <url> base <dn> [bind <dn>]", what, domain, domain)
		}
		user := ""
		if len(rest) == 1 {
			user = rest[0]
			if l, d, ok := strings.Cut(user, "@"); ok {
				if d != domain {
					return errorf("%s: %s is not in %s", what, user, domain)
				}
				user = l
			}
			bare, _, err := parseAccountJID(user+"@"+domain, domain)
			if err != nil {
				return errorf("%s: %v", what, err)
			}
			user = strings.TrimSuffix(bare, "@"+domain)
		}
		return testDirectory(c, cur, user)
	}
	return errorf("xmpp directory %s: %q is not a setting: give ldap, starttls, trust, user-filter, jid-from, roster-groups, sync, prune, none or test", domain, set)
}

func bindText(d store.Directory) string {
	if d.BindDN == "" {
		return "anonymous search"
	}
	return "searching as " + d.BindDN
}

// askBindPassword reads the directory's bind password; at a terminal it is
// asked again and both must match.
func askBindPassword(c *Ctx, prompt string) (string, error) {
	pw, err := c.Prompt.Secret(prompt)
	if err != nil {
		return "", fmt.Errorf("no password given: %v", err)
	}
	if pw == "" {
		return "", errors.New("the bind password is empty: give the bind DN's password, or leave out bind <dn> for anonymous searches")
	}
	if len(pw) > store.MaxDirectoryField {
		return "", fmt.Errorf("the password is longer than %d bytes", store.MaxDirectoryField)
	}
	if c.Prompt.Interactive() {
		again, err := c.Prompt.Secret("Retype password: ")
		if err != nil {
			return "", fmt.Errorf("no password given: %v", err)
		}
		if again != pw {
			return "", errors.New("the passwords do not match; nothing was changed")
		}
	}
	return pw, nil
}

// dirConfig is the client configuration of a stored directory; roots is
// the trust bundle's pool (nil: the system roots).
func dirConfig(d store.Directory, roots *x509.CertPool) directory.Config {
	return directory.Config{URL: d.URL, Base: d.Base, BindDN: d.BindDN, BindPassword: d.BindPassword, StartTLS: d.StartTLS,
		Roots: roots, UserFilter: d.Filter(), JIDFrom: d.Attribute(), GroupsBase: d.GroupsBase, GroupFilter: d.GroupFilter}
}

// trustPool reads a directory's trust bundle from the files area.
func trustPool(area *pki.Area, name string) (*x509.CertPool, error) {
	if name == "" {
		return nil, nil
	}
	data, err := area.ReadFile(name)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate", name)
	}
	return p, nil
}

func showDirectories(c *Ctx) error {
	all, err := c.Store.Directories()
	if err != nil {
		return errorf("xmpp directory: %v", err)
	}
	if len(all) == 0 {
		c.printf("No domain takes its accounts from a directory: xmpp directory <domain> ldap <url> base <dn> [bind <dn>]\n")
		return nil
	}
	var health map[string]status.Directory
	if c.XMPP != nil {
		health = map[string]status.Directory{}
		for _, h := range c.XMPP.Status().Directories {
			health[h.Domain] = h
		}
	}
	for _, d := range all {
		tlsText := "none"
		switch {
		case strings.HasPrefix(d.URL, "ldaps://"):
			tlsText = "ldaps"
		case d.StartTLS:
			tlsText = "StartTLS"
		}
		trust := "system roots"
		if d.Trust != "" {
			trust = d.Trust
		}
		bind := "anonymous"
		if d.BindDN != "" {
			bind = d.BindDN + " (password set)"
		}
		c.printf("***\n")
		c.printf("Domain      : %s\n", d.Domain)
		c.printf("Directory   : %s\n", d.URL)
		c.printf("Base        : %s\n", d.Base)
		c.printf("Bind        : %s\n", bind)
		c.printf("TLS         : %s (trust: %s)\n", tlsText, trust)
		c.printf("User filter : %s\n", d.Filter())
		c.printf("JID from    : %s\n", d.Attribute())
		if d.GroupsBase != "" {
			c.printf("Roster groups: %s %s\n", d.GroupsBase, d.Groups())
		} else {
			c.printf("Roster groups: none\n")
		}
		if h, ok := health[d.Domain]; ok {
			c.printf("State       : %s\n", directoryState(h))
		}
	}
	return nil
}

// directoryState is one line on a directory's health.
func directoryState(h status.Directory) string {
	switch {
	case h.Error != "" && !h.Known:
		return "not usable: " + h.Error
	case !h.Known:
		return "not used yet"
	case h.OK:
		return "reachable (last asked " + h.At.UTC().Format("2006-01-02 15:04:05") + ")"
	default:
		return "UNREACHABLE since " + h.Since.UTC().Format("2006-01-02 15:04:05") + ": " + h.Error
	}
}

func testDirectory(c *Ctx, d store.Directory, user string) error {
	roots, err := trustPool(c.Files, d.Trust)
	if err != nil {
		return errorf("xmpp directory %s test: the trust bundle: %v (xmpp directory %s trust <bundle>|system)", d.Domain, err, d.Domain)
	}
	steps := newStepPrinter(c, nil)
	c.printf("Checking the directory of %s: %s\n", d.Domain, d.URL)
	ctx, cancel := context.WithTimeout(context.Background(), directoryCheckTimeout)
	defer cancel()
	ok := directory.Check(ctx, dirConfig(d, roots), d.Domain, user, "xmpp directory "+d.Domain, steps.report)
	fail := steps.finish()
	switch {
	case fail != "":
		return errorf("the directory of %s does not work: %s", d.Domain, fail)
	case !ok:
		return errorf("the directory of %s does not work", d.Domain)
	}
	if user != "" {
		c.printf("%s@%s can log in with their directory password\n", user, d.Domain)
	} else {
		c.printf("The directory of %s works\n", d.Domain)
	}
	return nil
}

// directoryDomain refuses a change of accounts on a domain whose accounts
// come from a directory.
func directoryDomain(c *Ctx, what, bare string) error {
	_, domain, ok := strings.Cut(bare, "@")
	if !ok {
		return nil
	}
	if d, has := c.Store.DirectoryOf(domain); has {
		return errorf("%s: the accounts of %s come from its directory (%s): change them there", what, domain, d.URL)
	}
	return nil
}

// directoryLines are the directories as xmpp shows them: one line each,
// with the engine's view of it when an engine runs here.
func directoryLines(c *Ctx, st status.XMPP) []string {
	all, _ := c.Store.Directories()
	health := map[string]status.Directory{}
	for _, h := range st.Directories {
		health[h.Domain] = h
	}
	var out []string
	for _, d := range all {
		line := d.Domain + ": " + d.URL
		if h, ok := health[d.Domain]; ok && c.XMPP != nil {
			line += ", " + directoryState(h)
		}
		out = append(out, line)
	}
	return out
}

// directoryHealth adds health's lines for the directories.
func directoryHealth(c *Ctx, line func(status, check, detail string)) {
	if c.XMPP == nil {
		return
	}
	for _, h := range c.XMPP.Status().Directories {
		name := "directory " + h.Domain
		switch {
		case h.Error != "" && !h.Known:
			line("FAIL", name, "not usable: "+h.Error)
		case !h.Known:
			line("OK", name, h.URL+": not used yet (xmpp directory "+h.Domain+" test checks it)")
		case h.OK:
			line("OK", name, h.URL+" reachable")
		default:
			line("FAIL", name, h.URL+" unreachable since "+h.Since.UTC().Format("2006-01-02 15:04:05")+": "+h.Error+"; logins of "+h.Domain+" fail until it is back")
		}
	}
}

// openDirectory makes a client of a domain's directory, for the commands
// that ask it from the shell; what prefixes the errors.
func openDirectory(c *Ctx, d store.Directory, what string) (*directory.Client, error) {
	roots, err := trustPool(c.Files, d.Trust)
	if err != nil {
		return nil, errorf("%s: the trust bundle: %v", what, err)
	}
	client, err := directory.New(dirConfig(d, roots))
	if err != nil {
		return nil, errorf("%s: %v", what, err)
	}
	return client, nil
}

// pruneConfirmation is what xmpp directory <domain> prune asks to type.
const pruneConfirmation = "prune"

// pruneMaxListed is how many accounts prune lists before it asks.
const pruneMaxListed = 20

// pruneDirectory deletes the directory accounts of a domain whose users
// the directory no longer has, after asking.
func pruneDirectory(c *Ctx, d store.Directory) error {
	what := "xmpp directory " + d.Domain + " prune"
	client, err := openDirectory(c, d, what)
	if err != nil {
		return err
	}
	defer client.Close()
	accounts, err := c.Store.Accounts(d.Domain)
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	var gone []string
	checked := 0
	for _, a := range accounts {
		if !a.Directory {
			continue
		}
		checked++
		local := strings.TrimSuffix(a.JID, "@"+d.Domain)
		ctx, cancel := context.WithTimeout(context.Background(), directory.DefaultDialTimeout+directory.DefaultOpTimeout)
		_, err := client.Lookup(ctx, local, d.Domain)
		cancel()
		switch {
		case err == nil:
		case errors.Is(err, directory.ErrNoEntry):
			gone = append(gone, a.JID)
		case errors.Is(err, directory.ErrUnavailable):
			return errorf("%s: the directory cannot be asked (%v); nothing was deleted", what, err)
		default: // several entries match: the user is there, the directory is ambiguous
			c.printf("kept %s: %v\n", a.JID, err)
		}
	}
	if len(gone) == 0 {
		c.printf("Every account made from the directory of %s is still in it (%s checked)\n", d.Domain, plural(checked, "account"))
		return nil
	}
	c.printf("No longer in the directory (%d of %d):\n", len(gone), checked)
	for i, j := range gone {
		if i == pruneMaxListed {
			c.printf("  … and %d more\n", len(gone)-pruneMaxListed)
			break
		}
		c.printf("  %s\n", j)
	}
	answer, err := c.Prompt.Ask("Type '" + pruneConfirmation + "' to delete these accounts with their rosters, offline messages, vCards and private data: ")
	if err != nil {
		return errorf("%s: not confirmed (%v); nothing was deleted", what, err)
	}
	if strings.TrimSpace(answer) != pruneConfirmation {
		return errorf("%s: not confirmed (type %s to confirm); nothing was deleted", what, pruneConfirmation)
	}
	deleted := 0
	for _, j := range gone {
		if err := commit(c, store.AccountDelete{JID: j}); err != nil && !errors.Is(err, store.ErrNotFound) {
			return errorf("%s: deleted %d, then %s: %v", what, deleted, j, err)
		}
		deleted++
	}
	c.printf("Deleted %s no longer in the directory of %s\n", plural(deleted, "account"), d.Domain)
	return nil
}

// syncBatch is how many accounts sync creates per commit.
const syncBatch = 500

// syncDirectory makes an account for every user of the directory who has
// none yet.
func syncDirectory(c *Ctx, d store.Directory) error {
	what := "xmpp directory " + d.Domain + " sync"
	client, err := openDirectory(c, d, what)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	jids, truncated, err := client.Users(ctx, d.Domain, directory.MaxUsers)
	if err != nil {
		return errorf("%s: %v; nothing was created", what, err)
	}
	var create []store.Account
	existing, skipped := 0, 0
	for _, j := range jids {
		bare, domain, err := parseAccountJID(j, d.Domain)
		if err != nil || domain != d.Domain {
			skipped++
			continue
		}
		if _, err := c.Store.Account(bare); err == nil {
			existing++
			continue
		}
		create = append(create, store.Account{JID: bare, Directory: true})
	}
	created := 0
	for created < len(create) {
		end := min(created+syncBatch, len(create))
		if err := commit(c, store.AccountCreate{Accounts: create[created:end], SkipExisting: true}); err != nil {
			return errorf("%s: stopped after creating %d accounts: %v; run it again to resume", what, created, err)
		}
		created = end
	}
	c.printf("%d users in the directory of %s: created %s, %d already had one", len(jids), d.Domain, plural(created, "account"), existing)
	if skipped > 0 {
		c.printf(", %d skipped (not a valid JID)", skipped)
	}
	c.printf("\n")
	if truncated {
		c.printf("The directory has more than %d users: only the first %d were read\n", directory.MaxUsers, directory.MaxUsers)
	}
	return nil
}
