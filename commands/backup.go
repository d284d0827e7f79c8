package commands

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/parley-xmpp/parley/store"
)

// backupExt is the extension of a backup in the files area.
const backupExt = ".bak"

// backupNameRE is what a backup's name may be: a file name without a
// path, without a leading dot, without spaces.
var backupNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// What a rollback and an overwrite want typed.
const (
	rollbackConfirmation  = "rollback"
	overwriteConfirmation = "overwrite"
)

func backupCommands() []*Command {
	name := Arg{Name: "name"}
	const nodeLocal = "Node-local data is not in a backup and a rollback does not touch it: the shell history, the\n" +
		"admin users' last logins, the audit trail, the host name, xmpp listen (this appliance's addresses)\n" +
		"and whether XMPP is enabled here, nor the files area (keys and certificates are files: a backup\n" +
		"holds only their names)."
	return []*Command{
		{
			Words:   []string{"backup", "snapshot"},
			Args:    []Arg{name},
			Summary: "Write a consistent copy of the configuration and the XMPP data to <name>.bak in the files area",
			Help: "Taken online, without stopping the service: one consistent read of the store, so every change\n" +
				"acknowledged before the command started is in it. It holds the configuration, hosted domains,\n" +
				"call bridges and their secrets, admin users, XMPP accounts, rosters, offline messages, vCards and\n" +
				"private data: treat it as a secret (every role can read the files area over SFTP). Download it\n" +
				"by SFTP (get <name>.bak). The name is 1 to 64\n" +
				"letters, digits, dots, hyphens and underscores; an existing backup of that name is replaced only\n" +
				"if you type 'overwrite' (in exec or script mode, on the next line of standard input).\n" +
				nodeLocal,
			Example: "backup snapshot before-upgrade\nsftp -P 2222 admin@host:before-upgrade.bak .",
			Perm:    PermSystem,
			Run:     runBackupSnapshot,
		},
		{
			Words:   []string{"backup", "list"},
			Summary: "List the backups in the files area: name, size, time and what each holds",
			Help: "Every <name>.bak in the files area (taken here, or uploaded by SFTP), with its size, its time\n" +
				"(the file's), the store's schema version and its counts of domains, XMPP accounts, call bridges\n" +
				"and admin users. A file that is not a usable backup says why.",
			Perm: PermRead,
			Run:  runBackupList,
		},
		{
			Words:   []string{"backup", "rollback"},
			Args:    []Arg{name},
			Summary: "Replace the configuration and the XMPP data with a backup's (asks for confirmation)",
			Help: "Everything in the backup replaces what is stored now: configuration, domains, call bridges, admin\n" +
				"users and their passwords, XMPP accounts and their data. The XMPP engine reloads at once: domains,\n" +
				"certificates, call bridges and limits as in the backup; sessions of accounts and call bridges\n" +
				"that are not in it are closed, other sessions stay. Type 'rollback' to confirm; in exec or script\n" +
				"mode the confirmation is the next line of standard input. On a clustered node it is refused for\n" +
				"now.\n" +
				nodeLocal,
			Example: "backup rollback before-upgrade\nprintf 'rollback\\n' | ssh -p 2222 admin@host 'backup rollback before-upgrade'",
			Perm:    PermSystem,
			Run:     runBackupRollback,
		},
	}
}

// backupFile checks a backup's name and returns its file name; a name
// given with .bak is taken as it is.
func backupFile(what, arg string) (string, error) {
	n := strings.TrimSuffix(arg, backupExt)
	if !backupNameRE.MatchString(n) {
		return "", errorf("%s: %q is not a backup name: use 1 to 64 letters, digits, dots, hyphens and underscores, starting with a letter or digit, e.g. before-upgrade", what, arg)
	}
	return n + backupExt, nil
}

func runBackupSnapshot(c *Ctx, args []string) error {
	const what = "backup snapshot"
	file, err := backupFile(what, args[0])
	if err != nil {
		return err
	}
	if c.Files.Exists(file) {
		answer, err := c.Prompt.Ask(file + " already exists. Type '" + overwriteConfirmation + "' to replace it: ")
		if err != nil || strings.TrimSpace(answer) != overwriteConfirmation {
			return errorf("%s: %s already exists and was kept: choose another name, or confirm with '%s'", what, file, overwriteConfirmation)
		}
	}
	tmp, f, err := c.Files.CreateTemp(0o600)
	if err != nil {
		return errorf("%s: the files area: %v", what, err)
	}
	err = c.Store.Snapshot(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = c.Files.Root().Rename(tmp, file)
	}
	if err != nil {
		c.Files.Root().Remove(tmp)
		return errorf("%s: %v; nothing was written", what, err)
	}
	c.Files.SyncDir()
	info, err := store.InspectSnapshot(filepath.Join(c.Files.Dir(), file))
	if err != nil {
		return errorf("%s: %s was written but does not read back: %v", what, file, err)
	}
	size := int64(0)
	if fi, err := c.Files.Root().Stat(file); err == nil {
		size = fi.Size()
	}
	c.printf("Backup %s written (%s): %s, log index %d\n", file, humanBytes(uint64(size)), holds(info), info.Applied)
	c.printf("Download it by SFTP. Not in it: shell history, last logins, xmpp listen and the files area.\n")
	return nil
}

// holds says what a snapshot holds, e.g. "1 domain, 2 XMPP accounts, 1
// call bridge, 1 admin user".
func holds(i store.SnapshotInfo) string {
	return fmt.Sprintf("%s, %s, %s, %s", plural(i.Domains, "domain"), plural(i.Accounts, "XMPP account"),
		plural(i.Components, "call bridge"), plural(i.Admins, "admin user"))
}

func runBackupList(c *Ctx, args []string) error {
	entries, err := c.Files.List()
	if err != nil {
		return errorf("backup list: %v", err)
	}
	tw := tabwriter.NewWriter(c.Out, 0, 0, 2, ' ', 0)
	n := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name, backupExt) {
			continue
		}
		if n == 0 {
			fmt.Fprintln(tw, "NAME\tSIZE\tTIME\tHOLDS")
		}
		n++
		desc := ""
		if info, err := store.InspectSnapshot(filepath.Join(c.Files.Dir(), e.Name)); err != nil {
			desc = "not usable: " + err.Error()
		} else {
			desc = fmt.Sprintf("schema %d: %s", info.Schema, holds(info))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", strings.TrimSuffix(e.Name, backupExt), humanBytes(uint64(e.Size)), e.ModTime.UTC().Format(time.RFC3339), desc)
	}
	if n == 0 {
		c.printf("No backups in the files area: take one with backup snapshot <name>\n")
		return nil
	}
	return tw.Flush()
}

func runBackupRollback(c *Ctx, args []string) error {
	const what = "backup rollback"
	file, err := backupFile(what, args[0])
	if err != nil {
		return err
	}
	if c.Store.Clustered() {
		return errorf("%s: refused: this node is in a cluster, and a rollback here would diverge from the other nodes; take the node out (xmpp cluster disable), roll back, then initialize a new cluster from it (xmpp cluster initialize)", what)
	}
	if !c.Files.Exists(file) {
		return errorf("%s: no backup %s in the files area (see backup list)", what, file)
	}
	info, err := store.InspectSnapshot(filepath.Join(c.Files.Dir(), file))
	if err != nil {
		return errorf("%s: %s cannot be restored: %v; nothing was changed", what, file, err)
	}
	answer, err := c.Prompt.Ask("This replaces the configuration, admin users and XMPP data with " + file + " (" + holds(info) + "). Type '" + rollbackConfirmation + "' to confirm: ")
	if err != nil {
		return errorf("%s: not confirmed (%v); nothing was changed", what, err)
	}
	if strings.TrimSpace(answer) != rollbackConfirmation {
		return errorf("%s: not confirmed (type %s to confirm); nothing was changed", what, rollbackConfirmation)
	}

	// What goes away, to say so afterwards.
	before, _ := c.Store.Accounts("")

	f, err := c.Files.Root().Open(file)
	if err != nil {
		return errorf("%s: %v; nothing was changed", what, err)
	}
	// Sessions counted just before the swap: those of accounts the backup
	// does not hold are closed by the engine.
	sessions := map[string]int{}
	if c.XMPP != nil {
		for _, a := range before {
			if n := c.XMPP.UserSessions(a.JID); n > 0 {
				sessions[a.JID] = n
			}
		}
	}
	err = c.Store.Restore(f)
	f.Close()
	if err != nil {
		return errorf("%s: %v", what, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	if err := settled(c.Store.Settle(ctx, 0)); err != nil {
		return errorf("%s: restored, but %v", what, err)
	}
	after, _ := c.Store.Accounts("")
	closing := 0
	for jid, n := range sessions {
		if _, err := c.Store.Account(jid); err != nil {
			closing += n
		}
	}
	c.printf("Rolled back to %s (log index %d): %s\n", file, info.Applied, holds(info))
	c.printf("XMPP accounts: %d before, %d now; %s of accounts not in the backup closed\n", len(before), len(after), plural(closing, "session"))
	c.printf("The XMPP engine reloaded domains, certificates, call bridges and limits\n")
	c.printf("Not touched: shell history, last logins, xmpp listen, the audit trail, hostname, xmpp enable/disable and the files area\n")
	return nil
}
