package commands

import (
	"encoding/csv"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"mellium.im/xmpp/jid"

	"github.com/parley-xmpp/parley/store"
)

// Import tuning: accounts are created in transactions of importBatch, with
// a progress line per batch for files of more than importProgressOver
// lines. Variables so tests can use small files.
var (
	importBatch        = 500
	importProgressOver = 1000
)

// importMaxRejected is how many rejected lines the import summary lists.
const importMaxRejected = 20

func xmppUserCommands() []*Command {
	jidArg := Arg{Name: "jid"}
	return []*Command{
		{
			Words:   []string{"xmpp", "user", "add"},
			Args:    []Arg{jidArg},
			Summary: "Create an XMPP account; asks for its password twice",
			Help: "The JID is a bare address (user@domain) in a hosted domain. The password is asked for twice\n" +
				"without echo; in exec or script mode it is read once, from the next line of standard input. It\n" +
				"follows the XMPP accounts' rule min_length (xmpp user rule), which is checked before the password\n" +
				"is asked again. Only SCRAM-SHA-1 and SCRAM-SHA-256 salted keys are\n" +
				"stored, never the password.",
			Example: "xmpp user add alice@example.com\nprintf 'S3cret-pass\\n' | ssh -p 2222 admin@host 'xmpp user add bob@example.com'",
			Perm:    PermXMPP,
			Run:     runXMPPUserAdd,
		},
		{
			Words:   []string{"xmpp", "user", "del"},
			Args:    []Arg{jidArg},
			Summary: "Delete an XMPP account with its roster, offline messages, vCard and private data",
			Example: "xmpp user del alice@example.com",
			Perm:    PermXMPP,
			Run:     runXMPPUserDel,
		},
		{
			Words:   []string{"xmpp", "user", "list"},
			Args:    []Arg{{Name: "domain", Optional: true}},
			Summary: "List XMPP accounts (of one domain if given): JID, when created, sessions online now",
			Example: "xmpp user list\nxmpp user list example.com",
			Perm:    PermRead,
			Run:     runXMPPUserList,
		},
		{
			Words:   []string{"xmpp", "user", "passwd"},
			Args:    []Arg{jidArg},
			Summary: "Set a new password for an XMPP account; asks for it twice",
			Example: "xmpp user passwd alice@example.com",
			Perm:    PermXMPP,
			Run:     runXMPPUserPasswd,
		},
		{
			Words:   []string{"xmpp", "user", "rule"},
			Summary: "Show the password rules of XMPP accounts",
			Perm:    PermRead,
			Run: func(c *Ctx, args []string) error {
				c.printf("min_length  %d\n", xmppMinPasswordLength(c.Store))
				return nil
			},
		},
		{
			Words:   []string{"xmpp", "user", "rule", "min_length"},
			Args:    []Arg{{Name: "n", Kind: ArgNumber}},
			Summary: fmt.Sprintf("Set the minimum password length of XMPP accounts (default %d; admin users have their own: user rule min_length)", store.DefaultMinPasswordLength),
			Help: "Applies to new passwords: xmpp user add, xmpp user passwd and xmpp user import; existing\n" +
				"passwords stay. A refused password says which rule refused it.",
			Example: "xmpp user rule min_length 10",
			Perm:    PermXMPP,
			Run: func(c *Ctx, args []string) error {
				n, _ := parseCount(args[0])
				if n < 1 || n > store.MaxPasswordLength {
					return errorf("xmpp user rule min_length: %d is out of range: give 1 to %d", n, store.MaxPasswordLength)
				}
				return commit(c, store.ConfigSet{Key: ruleXMPPMinLength, Value: strconv.Itoa(n)})
			},
		},
		{
			Words:   []string{"xmpp", "user", "import"},
			Args:    []Arg{{Name: "csv", Kind: ArgFile}},
			Summary: "Create XMPP accounts from a CSV file in the files area (jid,password per line); resumable",
			Help: "One account a line: jid,password. The password is everything after the first comma, exactly as\n" +
				"written; a line starting with a double quote is read as CSV (quote a JID with a comma). A first\n" +
				"line jid,password, blank lines and CRLF line ends are accepted.\n" +
				"Every line is checked first (JID, hosted domain, password rules, duplicates in the file); then\n" +
				"the accounts that do not exist yet are created, 500 per transaction, with a progress line on large\n" +
				"files, and a summary: created, skipped (already exist), rejected with each line's reason.\n" +
				"The import is resumable, not all-or-nothing: accounts that exist are skipped, so running the same\n" +
				"file again after an interruption or after fixing rejected lines creates only what is missing.\n" +
				"Existing accounts keep their password. The command fails if every line is rejected.",
			Example: "xmpp user import users.csv",
			Perm:    PermXMPP,
			Run:     runXMPPUserImport,
		},
	}
}

// parseAccountJID validates a bare account JID and returns its normalized
// form (RFC 7622) and domain. example is the domain an error's example
// address uses (the primary domain).
func parseAccountJID(s, example string) (bare, domain string, err error) {
	j, err := jid.Parse(s)
	if err != nil {
		return "", "", fmt.Errorf("%q is not a valid JID: %v", s, err)
	}
	switch {
	case j.Localpart() == "" && !strings.ContainsAny(s, "@."):
		return "", "", fmt.Errorf("%q is not an address: give user@domain, e.g. %s@%s", s, s, example)
	case j.Localpart() == "":
		return "", "", fmt.Errorf("%q has no user part: give an address like alice@%s", s, j.Domainpart())
	case j.Resourcepart() != "":
		return "", "", fmt.Errorf("%q has a resource (/%s): give the bare JID %s", s, j.Resourcepart(), j.Bare())
	}
	return j.Bare().String(), j.Domainpart(), nil
}

// exampleDomain is the domain of example addresses in messages: the
// primary domain, or example.com before there is one.
func exampleDomain(c *Ctx) string {
	if cfg, err := c.Store.XMPP(); err == nil {
		if p, ok := cfg.Primary(); ok {
			return p.Name
		}
	}
	return "example.com"
}

// hostedJID parses an account JID and checks that its domain is hosted.
func hostedJID(c *Ctx, s string) (bare, local string, err error) {
	bare, domain, err := parseAccountJID(s, exampleDomain(c))
	if err != nil {
		return "", "", err
	}
	cfg, err := c.Store.XMPP()
	if err != nil {
		return "", "", err
	}
	if _, ok := cfg.Domain(domain); !ok {
		return "", "", notHosted(domain, cfg)
	}
	return bare, strings.TrimSuffix(bare, "@"+domain), nil
}

func notHosted(domain string, cfg store.XMPPConfig) error {
	if len(cfg.Domains) == 0 {
		return fmt.Errorf("%s is not a hosted domain: no domain is set yet (xmpp domain <name>)", domain)
	}
	names := make([]string, len(cfg.Domains))
	for i, d := range cfg.Domains {
		names[i] = d.Name
	}
	return fmt.Errorf("%s is not a hosted domain (hosted: %s; add it with xmpp multi-domain add)", domain, strings.Join(names, ", "))
}

// ruleXMPPMinLength is the config key of xmpp user rule min_length.
const ruleXMPPMinLength = "rule.xmpp_min_length"

// xmppMinPasswordLength is the XMPP accounts' min_length rule, or its
// default.
func xmppMinPasswordLength(s *store.Store) int {
	if min := s.ConfigInt(ruleXMPPMinLength); min > 0 {
		return min
	}
	return store.DefaultMinPasswordLength
}

// checkXMPPPassword applies the password rules to an account's password.
func checkXMPPPassword(c *Ctx, pw, bare, local string) error {
	if err := checkPasswordRules(pw, xmppMinPasswordLength(c.Store), "xmpp user rule min_length", local, bare); err != nil {
		return err
	}
	if _, err := store.PreparePassword(pw); err != nil {
		return errorf("%v", err)
	}
	return nil
}

func runXMPPUserAdd(c *Ctx, args []string) error {
	const what = "xmpp user add"
	bare, local, err := hostedJID(c, args[0])
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	if err := directoryDomain(c, what, bare); err != nil {
		return err
	}
	if _, err := c.Store.Account(bare); err == nil {
		return errorf("%s: %s already exists (to change its password: xmpp user passwd %s)", what, bare, bare)
	}
	pw, err := askNewPassword(c, "Password for "+bare+": ", func(pw string) error { return checkXMPPPassword(c, pw, bare, local) })
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	a, err := store.NewAccount(bare, pw)
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	if err := commit(c, store.AccountCreate{Accounts: []store.Account{a}}); err != nil {
		return errorf("%s: %v", what, err)
	}
	c.printf("Created %s\n", bare)
	return nil
}

// existingAccount parses a JID and checks the account exists (its domain
// need not be hosted any more).
func existingAccount(c *Ctx, what, s string) (bare string, err error) {
	bare, _, err = parseAccountJID(s, exampleDomain(c))
	if err != nil {
		return "", errorf("%s: %v", what, err)
	}
	if _, err := c.Store.Account(bare); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", errorf("%s: no account %s (see xmpp user list)", what, bare)
		}
		return "", errorf("%s: %v", what, err)
	}
	return bare, nil
}

func runXMPPUserDel(c *Ctx, args []string) error {
	const what = "xmpp user del"
	bare, err := existingAccount(c, what, args[0])
	if err != nil {
		return err
	}
	if err := directoryDomain(c, what, bare); err != nil {
		return err
	}
	if err := commit(c, store.AccountDelete{JID: bare}); err != nil {
		return errorf("%s: %v", what, err)
	}
	c.printf("Deleted %s\n", bare)
	return nil
}

func runXMPPUserPasswd(c *Ctx, args []string) error {
	const what = "xmpp user passwd"
	bare, err := existingAccount(c, what, args[0])
	if err != nil {
		return err
	}
	if err := directoryDomain(c, what, bare); err != nil {
		return err
	}
	local, _, _ := strings.Cut(bare, "@")
	pw, err := askNewPassword(c, "New password for "+bare+": ", func(pw string) error { return checkXMPPPassword(c, pw, bare, local) })
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	a, err := store.NewAccount(bare, pw)
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	if err := commit(c, store.AccountPassword{Account: a}); err != nil {
		return errorf("%s: %v", what, err)
	}
	c.printf("Password changed for %s\n", bare)
	return nil
}

func runXMPPUserList(c *Ctx, args []string) error {
	domain := ""
	if len(args) == 1 {
		d, err := parseDomain(args[0])
		if err != nil {
			return errorf("xmpp user list: %v", err)
		}
		domain = d
	}
	accounts, err := c.Store.Accounts(domain)
	if err != nil {
		return errorf("xmpp user list: %v", err)
	}
	hosted := true
	if domain != "" {
		cfg, err := c.Store.XMPP()
		if err != nil {
			return errorf("xmpp user list: %v", err)
		}
		if _, hosted = cfg.Domain(domain); !hosted && len(accounts) == 0 {
			return errorf("xmpp user list: %v", notHosted(domain, cfg))
		}
	}
	if !hosted {
		// Accounts kept from a domain no longer hosted.
		defer c.printf("%s is not hosted: these accounts cannot log in until it is added again (xmpp multi-domain add)\n", domain)
	}
	if domain != "" {
		if d, dir := c.Store.DirectoryOf(domain); dir {
			if len(accounts) == 0 {
				c.printf("No one has logged in from the directory of %s (%s) yet: accounts are made at their first login\n", domain, d.URL)
				return nil
			}
			defer c.printf("Accounts of %s come from its directory (%s): users who have not logged in yet are not listed\n", domain, d.URL)
		}
	}
	if len(accounts) == 0 {
		if domain != "" {
			c.printf("No XMPP accounts in %s: add one with xmpp user add <jid>\n", domain)
		} else {
			c.printf("No XMPP accounts: add one with xmpp user add <jid>, or many with xmpp user import <csv>\n")
		}
		return nil
	}
	tw := tabwriter.NewWriter(c.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JID\tCREATED\tONLINE\tACCOUNT")
	for _, a := range accounts {
		online := "-"
		if c.XMPP != nil {
			online = "no"
			if n := c.XMPP.UserSessions(a.JID); n > 0 {
				online = fmt.Sprintf("yes (%d)", n)
			}
		}
		kind := "local"
		if a.Directory {
			kind = "directory"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.JID, a.Created.UTC().Format("2006-01-02 15:04"), online, kind)
	}
	return tw.Flush()
}

// importLine is one accepted line of an import file.
type importLine struct {
	jid, password string
}

// splitImportLine splits "jid,password": the password is everything after
// the first comma; a line starting with a double quote is one CSV record
// of two fields.
func splitImportLine(line string) (string, string, error) {
	if strings.HasPrefix(line, `"`) {
		r := csv.NewReader(strings.NewReader(line))
		r.FieldsPerRecord = -1
		rec, err := r.Read()
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return "", "", fmt.Errorf("bad CSV quoting: %v", err)
		}
		if len(rec) != 2 {
			return "", "", fmt.Errorf("%d fields: give jid,password", len(rec))
		}
		return strings.TrimSpace(rec[0]), rec[1], nil
	}
	j, pw, ok := strings.Cut(line, ",")
	if !ok {
		return "", "", errors.New("no comma: give jid,password")
	}
	return strings.TrimSpace(j), pw, nil
}

func runXMPPUserImport(c *Ctx, args []string) error {
	const what = "xmpp user import"
	name := args[0]
	data, err := c.Files.ReadFile(name)
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	if !utf8.Valid(data) {
		return errorf("%s: %s is not UTF-8 text: save it as UTF-8 CSV", what, name)
	}
	cfg, err := c.Store.XMPP()
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	example := exampleDomain(c)
	text := strings.TrimPrefix(string(data), "\uFEFF") // a byte order mark, as spreadsheets write
	lines := strings.Split(text, "\n")

	var valid []importLine
	var rejected []string
	seen := map[string]int{}
	total, header := 0, false
	for i, raw := range lines {
		n := i + 1
		line := strings.TrimSuffix(raw, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if total == 0 && !header && strings.EqualFold(strings.ReplaceAll(line, " ", ""), "jid,password") {
			header = true
			continue
		}
		total++
		reject := func(format string, a ...any) {
			rejected = append(rejected, fmt.Sprintf("line %d: ", n)+fmt.Sprintf(format, a...))
		}
		j, pw, err := splitImportLine(line)
		if err != nil {
			reject("%v", err)
			continue
		}
		bare, domain, err := parseAccountJID(j, example)
		if err != nil {
			reject("%v", err)
			continue
		}
		if _, ok := cfg.Domain(domain); !ok {
			reject("%v", notHosted(domain, cfg))
			continue
		}
		if _, dir := c.Store.DirectoryOf(domain); dir {
			reject("the accounts of %s come from its directory", domain)
			continue
		}
		if first, dup := seen[bare]; dup {
			reject("%s is also on line %d (the first one is used)", bare, first)
			continue
		}
		local, _, _ := strings.Cut(bare, "@")
		if pw == "" {
			reject("%s has no password", bare)
			continue
		}
		if err := checkXMPPPassword(c, pw, bare, local); err != nil {
			reject("%s: %v", bare, err)
			continue
		}
		seen[bare] = n
		valid = append(valid, importLine{bare, pw})
	}
	if total == 0 {
		return errorf("%s: %s has no accounts: give one jid,password a line", what, name)
	}

	var create []importLine
	skipped := 0
	for _, l := range valid {
		if _, err := c.Store.Account(l.jid); err == nil {
			skipped++
		} else {
			create = append(create, l)
		}
	}

	start := time.Now()
	created := 0
	for len(create) > created {
		end := min(created+importBatch, len(create))
		accounts, err := deriveAccounts(create[created:end])
		if err == nil {
			err = commit(c, store.AccountCreate{Accounts: accounts, SkipExisting: true})
		}
		if err != nil {
			importSummary(c, created, skipped, rejected)
			return errorf("%s: stopped after creating %d accounts: %v; run the same import again to resume", what, created, err)
		}
		created = end
		if total > importProgressOver {
			c.printf("imported %d of %d…\n", created, len(create))
		}
	}
	importSummary(c, created, skipped, rejected)
	if created > 0 && total > importProgressOver {
		c.printf("(%s in %s)\n", plural(created, "account"), time.Since(start).Round(100*time.Millisecond))
	}
	if len(valid) == 0 {
		return errorf("%s: every line of %s was rejected; nothing was imported (reasons above)", what, name)
	}
	return nil
}

func importSummary(c *Ctx, created, skipped int, rejected []string) {
	c.printf("created %d, skipped %d (already exist), rejected %d\n", created, skipped, len(rejected))
	for i, r := range rejected {
		if i == importMaxRejected {
			c.printf("… and %d more\n", len(rejected)-importMaxRejected)
			break
		}
		c.printf("%s\n", r)
	}
}

// deriveAccounts derives the SCRAM credentials of a batch (two PBKDF2 runs
// of store.SCRAMIterations each per account) on one worker per CPU.
func deriveAccounts(batch []importLine) ([]store.Account, error) {
	out := make([]store.Account, len(batch))
	errs := make([]error, len(batch))
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := min(runtime.NumCPU(), len(batch)); w > 0; w-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(batch) {
					return
				}
				out[i], errs[i] = store.NewAccount(batch[i].jid, batch[i].password)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("%s: %v", batch[i].jid, err)
		}
	}
	return out, nil
}
