package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/parley-xmpp/parley/server/c2s"
	"github.com/parley-xmpp/parley/server/directory"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// Directory refresh: the vCards of directory users with a session here
// are refreshed from the directory this often, at most
// directoryRefreshBatch users per round.
var (
	directoryRefreshEvery = 15 * time.Minute
	directoryRefreshBatch = 1000
)

// domainDirectory is one hosted domain's directory as the engine uses it:
// the client (nil if the settings cannot be used, err says why).
type domainDirectory struct {
	e      *Engine
	domain string
	cfg    store.Directory
	client *directory.Client
	err    error
}

// directories are the domains' directories, replaced whole when the
// settings change (read at every login without a lock).
type directories map[string]*domainDirectory

func cutAt(bare string) (string, string, bool) {
	for i := len(bare) - 1; i >= 0; i-- {
		if bare[i] == '@' {
			return bare[:i], bare[i+1:], true
		}
	}
	return bare, "", false
}

// loadDirectories builds a client for every domain's directory, keeping
// the clients whose settings (and trust bundle) did not change.
func (e *Engine) loadDirectories() {
	all, err := e.cfg.Store.Directories()
	if err != nil {
		logging.Problem(e.cfg.Log, "xmpp: reading the directories: %v", err)
		return
	}
	old := e.dirs.Load()
	next := directories{}
	for _, d := range all {
		roots, rootsErr := e.directoryRoots(d.Trust)
		if o := (*old)[d.Domain]; o != nil && o.cfg == d && (o.err == nil) == (rootsErr == nil) && d.Trust == "" {
			next[d.Domain] = o
			continue
		}
		dd := &domainDirectory{e: e, domain: d.Domain, cfg: d}
		if rootsErr != nil {
			dd.err = rootsErr
		} else {
			dd.client, dd.err = directory.New(directory.Config{URL: d.URL, Base: d.Base, BindDN: d.BindDN, BindPassword: d.BindPassword,
				StartTLS: d.StartTLS, Roots: roots, UserFilter: d.Filter(), JIDFrom: d.Attribute(), GroupsBase: d.GroupsBase, GroupFilter: d.GroupFilter})
		}
		if dd.err != nil {
			logging.Problem(e.cfg.Log, "xmpp: the directory of %s cannot be used: %v", d.Domain, dd.err)
		} else {
			go dd.probe() // xmpp and health know at once whether it answers
		}
		next[d.Domain] = dd
	}
	e.dirs.Store(&next)
	for dom, o := range *old {
		if n := next[dom]; n != o && o.client != nil {
			o.client.Close()
		}
	}
}

// directoryRoots reads a directory's trust bundle (nil: the system roots).
func (e *Engine) directoryRoots(name string) (*x509.CertPool, error) {
	if name == "" {
		return nil, nil
	}
	data, err := e.cfg.Files.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("the trust bundle: %v", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("the trust bundle %s holds no PEM certificate", name)
	}
	return p, nil
}

// directoryFor is c2s.Config.Directory.
func (e *Engine) directoryFor(domain string) c2s.Directory {
	if m := e.dirs.Load(); m != nil {
		if d := (*m)[domain]; d != nil {
			return d
		}
	}
	return nil
}

// Authenticate checks a password against the domain's directory; at the
// user's first login it makes their account, and at every login it brings
// their vCard up to date with their entry.
func (d *domainDirectory) Authenticate(ctx context.Context, local, domain, password string) error {
	if d.client == nil {
		return fmt.Errorf("%w: %v", directory.ErrUnavailable, d.err)
	}
	entry, err := d.client.Authenticate(ctx, local, domain, password)
	if err != nil {
		return err
	}
	bare := local + "@" + domain
	st := d.e.cfg.Store
	if _, err := st.Account(bare); errors.Is(err, store.ErrNotFound) {
		_, err = st.Propose(store.AccountCreate{Accounts: []store.Account{{JID: bare, Directory: true}}, SkipExisting: true})
		if err != nil {
			return fmt.Errorf("%w: making the account %s: %v", directory.ErrUnavailable, bare, err)
		}
	} else if err != nil {
		return fmt.Errorf("%w: %v", directory.ErrUnavailable, err)
	}
	d.apply(ctx, bare, entry)
	return nil
}

// apply brings what Parley keeps of a directory user up to date with
// their entry: the vCard, and the roster shared with their colleagues.
func (d *domainDirectory) apply(ctx context.Context, bare string, entry *directory.Entry) {
	if err := d.e.im.SetDirectoryVCard(bare, directory.VCard(entry)); err != nil {
		logging.Problem(d.e.cfg.Log, "xmpp: storing the directory vCard of %s: %v", bare, err)
	}
	d.shareRoster(ctx, bare, entry)
}

// shareRoster puts the user's colleagues (those who share a directory
// group with them) in their roster and them in the colleagues'. A failure
// is logged: the login goes on.
func (d *domainDirectory) shareRoster(ctx context.Context, bare string, entry *directory.Entry) {
	_, domain, _ := cutAt(bare)
	var cols []directory.Colleague
	if d.cfg.GroupsBase != "" {
		var err error
		if cols, err = d.client.Colleagues(ctx, entry, domain); err != nil {
			d.e.episodes.Printf("directory groups "+d.domain, "xmpp: the directory groups of %s: %v", bare, err)
			return
		}
	}
	contacts := make([]store.SharedContact, 0, len(cols))
	for _, c := range cols {
		j, err := jid.Parse(c.JID)
		if err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
			continue
		}
		contacts = append(contacts, store.SharedContact{JID: j.String(), Name: c.Name, Groups: c.Groups})
	}
	if sharedUpToDate(d.e.cfg.Store, bare, contacts) {
		return // nothing to write (a login costs no commit for it)
	}
	if err := d.e.im.ApplyDirectoryRoster(bare, directory.DisplayName(entry), contacts); err != nil {
		logging.Problem(d.e.cfg.Log, "xmpp: the shared roster of %s: %v", bare, err)
	}
}

// directoryUser is im.Service.DirectoryUser: whether a user's domain
// takes its accounts from a directory.
func (e *Engine) directoryUser(bare string) bool {
	_, d, ok := cutAt(bare)
	return ok && e.directoryFor(d) != nil
}

// refreshDirectories refreshes, on a schedule, the vCards of the directory
// users with a session here; a user no longer in the directory keeps
// their vCard until their next login fails.
func (e *Engine) refreshDirectories() {
	defer e.wg.Done()
	t := time.NewTicker(directoryRefreshEvery)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		seen := map[string]bool{}
		for _, s := range e.router.All() {
			bare := s.Bare()
			local, domain, _ := cutAt(bare)
			d, _ := e.directoryFor(domain).(*domainDirectory)
			if d == nil || d.client == nil || seen[bare] || len(seen) >= directoryRefreshBatch {
				continue
			}
			seen[bare] = true
			ctx, cancel := context.WithTimeout(context.Background(), 2*directory.DefaultOpTimeout)
			if entry, err := d.client.Lookup(ctx, local, domain); err == nil {
				d.apply(ctx, bare, entry)
			}
			cancel()
		}
	}
}

// directoryProbeEvery: a directory not asked anything for this long is
// probed, so that xmpp and health know it is down before a user does.
var directoryProbeEvery = 30 * time.Second

func (d *domainDirectory) probe() {
	ctx, cancel := context.WithTimeout(context.Background(), directory.DefaultDialTimeout+directory.DefaultOpTimeout)
	defer cancel()
	if err := d.client.Probe(ctx); err != nil {
		d.e.episodes.Printf("directory "+d.domain, "xmpp: the directory of %s does not answer: %v", d.domain, err)
	}
}

// probeDirectories probes the directories that were not asked anything
// lately.
func (e *Engine) probeDirectories() {
	defer e.wg.Done()
	t := time.NewTicker(directoryProbeEvery)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		for _, d := range *e.dirs.Load() {
			if d.client != nil && time.Since(d.client.Health().At) >= directoryProbeEvery {
				d.probe()
			}
		}
	}
}

// directoryStatus is each directory's health for Status.
func (e *Engine) directoryStatus() []status.Directory {
	m := e.dirs.Load()
	if m == nil {
		return nil
	}
	var out []status.Directory
	for dom, d := range *m {
		s := status.Directory{Domain: dom, URL: d.cfg.URL}
		if d.client == nil {
			s.Error = d.err.Error()
		} else {
			h := d.client.Health()
			s.Known, s.OK, s.At, s.Since = h.Known, h.OK, h.At, h.Since
			s.Error = strings.TrimPrefix(h.Error, directory.ErrUnavailable.Error()+": ")
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Domain < out[j].Domain })
	return out
}

// sharedUpToDate reports whether user's roster already holds the shared
// contacts as DirectoryRoster would make them, and no other item the
// directory made.
func sharedUpToDate(st *store.Store, user string, contacts []store.SharedContact) bool {
	_, items, err := st.Roster(user)
	if err != nil {
		return false
	}
	want := make(map[string]store.SharedContact, len(contacts))
	for _, c := range contacts {
		want[c.JID] = c
	}
	seen := 0
	for _, it := range items {
		c, shared := want[it.JID]
		switch {
		case !shared && it.Directory:
			return false // to remove
		case !shared:
		case it.Hidden || it.Subscription != store.SubBoth || it.Ask || it.PendingIn:
			return false
		case it.Directory && (it.Name != c.Name || !slices.Equal(it.Groups, c.Groups)):
			return false
		default:
			seen++
		}
	}
	return seen == len(want)
}
