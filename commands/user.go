package commands

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/store"
)

var userNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,31}$`)

// CheckUserName validates an admin user name.
func CheckUserName(name string) error {
	if !userNameRE.MatchString(name) {
		return fmt.Errorf("%q is not a valid user name: use 1 to 32 lower-case letters, digits, '_', '.' or '-', starting with a letter or '_'", name)
	}
	return nil
}

var roleArg = Arg{Name: "role", Kind: ArgEnum, Values: store.Roles}

func userCommands() []*Command {
	name := Arg{Name: "name"}
	return []*Command{
		{
			Words:   []string{"user", "add"},
			Args:    []Arg{name, roleArg},
			Summary: "Add an admin user with a role; asks for the password twice",
			Help: "Roles: admin (everything), crypto (pki commands), appadmin (xmpp commands), audit (read only).\n" +
				"Every role can run the commands that only show things. The password is asked for twice\n" +
				"without echo; in exec or script mode it is read once, from the next line of standard input.",
			Example: "user add alice appadmin\nprintf 'S3cret-pass\\n' | ssh -p 2222 admin@host 'user add bob audit'",
			Perm:    PermSystem,
			Run:     runUserAdd,
		},
		{
			Words:   []string{"user", "del"},
			Args:    []Arg{name},
			Summary: "Delete an admin user (not the last admin, not yourself)",
			Example: "user del alice",
			Perm:    PermSystem,
			Run: func(c *Ctx, args []string) error {
				if args[0] == c.User {
					return errorf("user del: you cannot delete the user you are logged in as")
				}
				if _, err := c.Store.Admin(args[0]); err != nil {
					return errorf("user del: %v", trimNotFound(err))
				}
				if err := commit(c, store.AdminDelete{Name: args[0]}); err != nil {
					return errorf("user del: %v", err)
				}
				return nil
			},
		},
		{
			Words:   []string{"user", "list"},
			Summary: "List admin users: name, role, password expiry and open sessions",
			Perm:    PermRead,
			Run:     runUserList,
		},
		{
			Words:   []string{"user", "info"},
			Args:    []Arg{name},
			Summary: "Show one admin user's details",
			Example: "user info admin",
			Perm:    PermRead,
			Run:     runUserInfo,
		},
		{
			Words:   []string{"user", "expire"},
			Args:    []Arg{name},
			Summary: "Expire a user's password: they must set a new one at their next interactive login",
			Example: "user expire alice",
			Perm:    PermSystem,
			Run: func(c *Ctx, args []string) error {
				return adminOp(c, "user expire", args[0], store.AdminExpire{Name: args[0]})
			},
		},
		{
			Words:   []string{"user", "unlock"},
			Args:    []Arg{name},
			Summary: "Let a user log in with a password again after failed logins locked or paused it",
			Help: "Ends the locks of user rule max_failed_logins on the user's password logins, from every\n" +
				"source address, and lifts the password pause (user rule per_source_penalty) of the addresses\n" +
				"the user's failed logins came from. Public-key logins are never locked.",
			Example: "user unlock alice",
			Perm:    PermSystem,
			Run:     runUserUnlock,
		},
		{
			Words:   []string{"user", "rule"},
			Summary: "Show the password and login rules",
			Perm:    PermRead,
			Run:     runUserRule,
		},
		ruleCommand("min_length", store.RuleMinLength, 1, store.MaxPasswordLength,
			"Set the minimum password length (default 8)", "user rule min_length 12"),
		ruleCommand("max_failed_logins", store.RuleMaxFailedLogins, 0, 1000,
			"Lock a user's password logins from one address for 15 minutes after this many failures in a row from there (0: off, the default)", "user rule max_failed_logins 5"),
		ruleCommand("password_age", store.RulePasswordAge, 0, 3650,
			"Make passwords expire this many days after they were set (0: never, the default)", "user rule password_age 90"),
		{
			Words:   []string{"user", "rule", "max_startups"},
			Args:    []Arg{{Name: "start:rate:full"}},
			Summary: "Above start unauthenticated SSH connections, refuse new ones with a chance from rate % up to 100 % at full (default 10:30:100)",
			Help: "As OpenSSH's MaxStartups: with 10:30:100, up to 10 connections that have not logged in yet are\n" +
				"always accepted; above that a new one is refused with a probability of 30 %, rising linearly to\n" +
				"100 % at 100. One number n means n:100:n, a hard limit.",
			Example: "user rule max_startups 10:30:100",
			Perm:    PermSystem,
			Run:     runRuleMaxStartups,
		},
		ruleCommand("per_source_max_startups", store.RulePerSourceMaxStartups, 0, store.MaxStartupsLimit,
			"Most unauthenticated SSH connections from one address (IPv6: one /64) at once (0: no limit; default 5)", "user rule per_source_max_startups 5"),
		ruleCommand("login_grace_time", store.RuleLoginGraceTime, 1, int(store.MaxLoginGraceTime/time.Second),
			"Close an SSH connection that has not logged in after this many seconds (default 60)", "user rule login_grace_time 60"),
		{
			Words:   []string{"user", "rule", "per_source_penalty"},
			Args:    []Arg{{Name: "setting", Repeat: true}},
			Summary: "Penalize addresses whose SSH connections fail to log in: <key>:<seconds>…, on, off or default",
			Help: "As OpenSSH's PerSourcePenalties. Each connection from an address (IPv6: a /64) that ends without\n" +
				"logging in adds time to the address's penalty: authfail after failed passwords, noauth when it\n" +
				"never tried to log in, grace-exceeded when login_grace_time closed it. The penalty counts down,\n" +
				"is enforced once it reaches min, and never exceeds max. An authfail penalty pauses password\n" +
				"logins from the address but still accepts public keys, so failed passwords never lock a key\n" +
				"out; noauth and grace-exceeded penalties refuse the address's connections. Settings not given\n" +
				"are kept. Defaults: authfail:5 noauth:1 grace-exceeded:20 min:15 max:600.",
			Example: "user rule per_source_penalty authfail:10 max:1h\nuser rule per_source_penalty off",
			Perm:    PermSystem,
			Run:     runRulePenalty,
		},
		{
			Words:   []string{"user", "sshkey", "add"},
			Args:    []Arg{name, {Name: "file", Kind: ArgFile}},
			Summary: "Authorize the SSH public key(s) in an uploaded file (authorized_keys format) for a user",
			Help:    "Upload the public key over SFTP first (sftp -P 2222 admin@host, then put id_ed25519.pub).",
			Example: "user sshkey add alice id_ed25519.pub",
			Perm:    PermSystem,
			Run:     runSSHKeyAdd,
		},
		{
			Words:   []string{"user", "sshkey", "list"},
			Args:    []Arg{name},
			Summary: "List a user's authorized SSH keys, numbered",
			Example: "user sshkey list alice",
			Perm:    PermRead,
			Run:     runSSHKeyList,
		},
		{
			Words:   []string{"user", "sshkey", "del"},
			Args:    []Arg{name, {Name: "n", Kind: ArgNumber}},
			Summary: "Remove a user's SSH key by its number in 'user sshkey list'",
			Example: "user sshkey del alice 1",
			Perm:    PermSystem,
			Run: func(c *Ctx, args []string) error {
				n, _ := parseCount(args[1])
				return adminOp(c, "user sshkey del", args[0], store.AdminKeyDel{Name: args[0], Index: n})
			},
		},
		{
			Words:   []string{"passwd"},
			Summary: "Change your own password",
			Help: "Asks for the current password, then the new one twice, without echo. In exec or script mode\n" +
				"it reads the current and the new password from the next two lines of standard input.",
			Perm:    PermAny,
			Changes: true,
			Run:     runPasswd,
		},
	}
}

func runUserRule(c *Ctx, args []string) error {
	l := c.Store.SSHLimits()
	c.printf("min_length               %d\n", minPasswordLength(c.Store))
	c.printf("max_failed_logins        %s\n", zeroOff(l.MaxFailedLogins, "", " per address (then password logins from there locked for 15 minutes)"))
	c.printf("password_age             %s\n", zeroOff(c.Store.ConfigInt(store.RulePasswordAge), "", " days"))
	c.printf("max_startups             %s\n", l.MaxStartups)
	c.printf("per_source_max_startups  %s\n", zeroOff(l.PerSourceMaxStartups, "", ""))
	c.printf("login_grace_time         %d seconds\n", int(l.LoginGraceTime/time.Second))
	pen := l.Penalties.String()
	if l.Penalties.Off {
		pen = "off (" + strings.TrimPrefix(pen, "off ") + " when on)"
	}
	c.printf("per_source_penalty       %s\n", pen)
	return nil
}

func runRuleMaxStartups(c *Ctx, args []string) error {
	m, err := store.ParseStartups(args[0])
	if err != nil {
		return errorf("user rule max_startups: %v", err)
	}
	return commit(c, store.ConfigSet{Key: store.RuleMaxStartups, Value: m.String()})
}

func runRulePenalty(c *Ctx, args []string) error {
	p, err := store.ParsePenalties(c.Store.SSHLimits().Penalties, args)
	if err != nil {
		return errorf("user rule per_source_penalty: %v", err)
	}
	return commit(c, store.ConfigSet{Key: store.RulePerSourcePenalty, Value: p.String()})
}

func runUserUnlock(c *Ctx, args []string) error {
	if err := adminOp(c, "user unlock", args[0], store.AdminUnlock{Name: args[0]}); err != nil {
		return err
	}
	if c.Logins != nil {
		if srcs := c.Logins.Unlock(args[0]); len(srcs) > 0 {
			c.printf("Password logins for %s unlocked from %s\n", args[0], strings.Join(srcs, ", "))
		}
	}
	return nil
}

func zeroOff(n int, pre, post string) string {
	if n == 0 {
		return "off"
	}
	return fmt.Sprintf("%s%d%s", pre, n, post)
}

func ruleCommand(word, key string, min, max int, summary, example string) *Command {
	return &Command{
		Words:   []string{"user", "rule", word},
		Args:    []Arg{{Name: "n", Kind: ArgNumber}},
		Summary: summary,
		Example: example,
		Perm:    PermSystem,
		Run: func(c *Ctx, args []string) error {
			n, _ := parseCount(args[0])
			if n < min || n > max {
				return errorf("user rule %s: %d is out of range: give %d to %d", word, n, min, max)
			}
			return commit(c, store.ConfigSet{Key: key, Value: fmt.Sprint(n)})
		},
	}
}

func trimNotFound(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return errors.New(strings.TrimSuffix(err.Error(), ": "+store.ErrNotFound.Error()))
	}
	return err
}

func adminOp(c *Ctx, what, name string, op store.Op) error {
	if _, err := c.Store.Admin(name); err != nil {
		return errorf("%s: %v", what, trimNotFound(err))
	}
	if err := commit(c, op); err != nil {
		return errorf("%s: %v", what, err)
	}
	return nil
}

// NewPassword asks for a new password (twice at a terminal, once from a
// script), checking it against the rules before it is asked again. It
// returns the salted hash.
func NewPassword(c *Ctx, user, prompt string) (string, error) {
	pw, err := askNewPassword(c, prompt, func(pw string) error {
		return checkPasswordRules(pw, minPasswordLength(c.Store), "user rule min_length", user)
	})
	if err != nil {
		return "", err
	}
	return store.HashPassword(pw)
}

// askNewPassword reads a new password without echo and checks it: at a
// terminal it is then asked again (the two must match), so a password the
// rules refuse is not typed twice; from a script it is read once.
func askNewPassword(c *Ctx, prompt string, check func(string) error) (string, error) {
	pw, err := c.Prompt.Secret(prompt)
	if err != nil {
		return "", errorf("no password given: %v", err)
	}
	if err := check(pw); err != nil {
		return "", err
	}
	if c.Prompt.Interactive() {
		again, err := c.Prompt.Secret("Retype password: ")
		if err != nil {
			return "", errorf("no password given: %v", err)
		}
		if again != pw {
			return "", errorf("the passwords do not match; nothing was changed")
		}
	}
	return pw, nil
}

// minPasswordLength is the min_length rule, or its default.
func minPasswordLength(s *store.Store) int {
	if min := s.ConfigInt(store.RuleMinLength); min > 0 {
		return min
	}
	return store.DefaultMinPasswordLength
}

// checkPasswordRules applies the password rules to a new password for one
// of names (the user name, and for XMPP accounts also the bare JID): at
// least min characters, as the rule (the command that sets it) says.
func checkPasswordRules(pw string, min int, rule string, names ...string) error {
	switch {
	case len([]rune(pw)) < min:
		return errorf("the password is too short: use at least %d characters (%s)", min, rule)
	case len(pw) > store.MaxPasswordLength:
		return errorf("the password is too long: use at most %d bytes", store.MaxPasswordLength)
	}
	for _, n := range names {
		if pw == n {
			return errorf("the password must not be the user name")
		}
	}
	return nil
}

func runUserAdd(c *Ctx, args []string) error {
	name, role := args[0], args[1]
	if err := CheckUserName(name); err != nil {
		return errorf("user add: %v", err)
	}
	if _, err := c.Store.Admin(name); err == nil {
		return errorf("user add: user %s already exists (see 'user list')", name)
	}
	hash, err := NewPassword(c, name, "Password for "+name+": ")
	if err != nil {
		return errorf("user add: %v", err)
	}
	if err := commit(c, store.AdminCreate{Admin: store.Admin{Name: name, Role: role, PasswordHash: hash}}); err != nil {
		return errorf("user add: %v", err)
	}
	return nil
}

func runPasswd(c *Ctx, args []string) error {
	a, err := c.Store.Admin(c.User)
	if err != nil {
		return errorf("passwd: %v", err)
	}
	cur, err := c.Prompt.Secret("Current password: ")
	if err != nil {
		return errorf("passwd: no password given: %v", err)
	}
	if !store.CheckPassword(a.PasswordHash, cur) {
		return errorf("passwd: the current password is wrong; nothing was changed")
	}
	hash, err := NewPassword(c, c.User, "New password: ")
	if err != nil {
		return errorf("passwd: %v", err)
	}
	if err := commit(c, store.AdminPassword{Name: c.User, Hash: hash}); err != nil {
		return errorf("passwd: %v", err)
	}
	c.printf("Password changed.\n")
	return nil
}

func (c *Ctx) sessions() map[string]int {
	if c.Sessions == nil {
		return nil
	}
	return c.Sessions()
}

func expiryText(a *store.Admin, age int, now time.Time) string {
	if a.MustChangePassword(now, age) {
		return "expired"
	}
	if e := a.PasswordExpiry(age); !e.IsZero() {
		return e.UTC().Format("2006-01-02")
	}
	return "never"
}

func runUserList(c *Ctx, args []string) error {
	admins, err := c.Store.Admins()
	if err != nil {
		return err
	}
	sort.Slice(admins, func(i, j int) bool { return admins[i].Name < admins[j].Name })
	age := c.Store.ConfigInt(store.RulePasswordAge)
	sess := c.sessions()
	tw := tabwriter.NewWriter(c.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tROLE\tPASSWORD-EXPIRY\tLOGGED-IN")
	for i := range admins {
		a := &admins[i]
		in := "no"
		if n := sess[a.Name]; n > 0 {
			in = fmt.Sprintf("yes (%d)", n)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Name, a.Role, expiryText(a, age, c.now()), in)
	}
	return tw.Flush()
}

func runUserInfo(c *Ctx, args []string) error {
	a, err := c.Store.Admin(args[0])
	if err != nil {
		return errorf("user info: %v", trimNotFound(err))
	}
	now := c.now()
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format(time.RFC3339)
	}
	locked, failed := "no", 0
	if c.Logins != nil {
		var held []string
		for _, l := range c.Logins.Locks(a.Name) {
			failed += l.Failed
			if now.Before(l.Until) {
				held = append(held, "password logins from "+l.Source+" until "+ts(l.Until))
			}
		}
		if len(held) > 0 {
			locked = strings.Join(held, "; ")
		}
	}
	c.printf("Username         : %s\n", a.Name)
	c.printf("Role             : %s\n", a.Role)
	c.printf("Password expiry  : %s\n", expiryText(&a, c.Store.ConfigInt(store.RulePasswordAge), now))
	c.printf("Password changed : %s\n", ts(a.PasswordChanged))
	c.printf("Locked           : %s\n", locked)
	c.printf("Failed logins    : %d\n", failed)
	c.printf("Last login       : %s\n", ts(a.LastLogin))
	c.printf("Logged in        : %s\n", plural(c.sessions()[a.Name], "session"))
	c.printf("SSH keys         : %d\n", len(a.Keys))
	c.printf("Created          : %s\n", ts(a.Created))
	return nil
}

func runSSHKeyAdd(c *Ctx, args []string) error {
	name, file := args[0], args[1]
	if _, err := c.Store.Admin(name); err != nil {
		return errorf("user sshkey add: %v", trimNotFound(err))
	}
	data, err := c.Files.ReadFile(file)
	if err != nil {
		return errorf("user sshkey add: %v", err)
	}
	lines, err := pki.AuthorizedKeys(data)
	if err != nil {
		return errorf("user sshkey add: %s holds %v", file, err)
	}
	added := 0
	for _, l := range lines {
		err := commit(c, store.AdminKeyAdd{Name: name, Line: l})
		if errors.Is(err, store.ErrExists) {
			c.printf("already authorized: %s\n", keyLabel(l))
			continue
		}
		if err != nil {
			return errorf("user sshkey add: %v", err)
		}
		added++
		c.printf("added: %s\n", keyLabel(l))
	}
	if added == 0 {
		return errorf("user sshkey add: every key in %s is already authorized for %s", file, name)
	}
	return nil
}

// keyLabel is "type SHA256:fingerprint comment" for an authorized_keys line.
func keyLabel(line string) string {
	pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return "(unreadable key)"
	}
	s := pub.Type() + " " + ssh.FingerprintSHA256(pub)
	if comment != "" {
		s += " " + comment
	}
	return s
}

func runSSHKeyList(c *Ctx, args []string) error {
	a, err := c.Store.Admin(args[0])
	if err != nil {
		return errorf("user sshkey list: %v", trimNotFound(err))
	}
	if len(a.Keys) == 0 {
		c.printf("%s has no SSH keys\n", a.Name)
		return nil
	}
	for i, k := range a.Keys {
		c.printf("%d  %s  (added %s)\n", i+1, keyLabel(k.Line), k.Added.UTC().Format("2006-01-02"))
	}
	return nil
}
