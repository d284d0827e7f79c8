package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketDirectories holds one Directory per hosted domain whose accounts
// come from an LDAP directory, keyed by the domain. It is created by the
// first DirectorySet.
var bucketDirectories = []byte("xmpp.directories")

// Directory defaults.
const (
	DefaultUserFilter = "(objectClass=inetOrgPerson)"
	DefaultJIDFrom    = "mail"
	// MaxDirectoryField bounds each text setting of a directory (URL, DNs,
	// filter, password) in bytes.
	MaxDirectoryField = 1024
)

// Directory is where a hosted domain takes its accounts from: an LDAP
// server (URL ldap://host[:port] or ldaps://host[:port]), the base DN users
// are searched under, and the DN and password the server binds as to
// search (none: an anonymous search). The bind password is stored as it is
// (the server must send it) and is never shown.
type Directory struct {
	Domain       string `json:"domain"`
	URL          string `json:"url"`
	Base         string `json:"base"`
	BindDN       string `json:"bind_dn,omitempty"`
	BindPassword string `json:"bind_password,omitempty"`
	// StartTLS upgrades an ldap:// connection with StartTLS.
	StartTLS bool `json:"starttls,omitempty"`
	// Trust is a CA bundle in the files area that verifies the directory's
	// certificate; "" for the system roots.
	Trust string `json:"trust,omitempty"`
	// UserFilter selects user entries; "" means DefaultUserFilter.
	UserFilter string `json:"user_filter,omitempty"`
	// JIDFrom is the attribute a JID is matched against: "mail" (the
	// whole address), or any other attribute (the JID's user part); ""
	// means DefaultJIDFrom.
	JIDFrom string `json:"jid_from,omitempty"`
	// GroupsBase, if set, is where groups are searched whose members see
	// each other in their rosters (GroupFilter: "" means
	// DefaultGroupFilter).
	GroupsBase  string    `json:"groups_base,omitempty"`
	GroupFilter string    `json:"group_filter,omitempty"`
	Changed     time.Time `json:"changed"`
}

// DefaultGroupFilter selects the groups of roster-groups.
const DefaultGroupFilter = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))"

// Groups is the group filter in force.
func (d Directory) Groups() string {
	if d.GroupFilter == "" {
		return DefaultGroupFilter
	}
	return d.GroupFilter
}

// Filter is the user filter in force.
func (d Directory) Filter() string {
	if d.UserFilter == "" {
		return DefaultUserFilter
	}
	return d.UserFilter
}

// Attribute is the JID attribute in force.
func (d Directory) Attribute() string {
	if d.JIDFrom == "" {
		return DefaultJIDFrom
	}
	return d.JIDFrom
}

// Directories returns every domain's directory, by domain.
func (s *Store) Directories() ([]Directory, error) {
	var out []Directory
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDirectories)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var d Directory
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			out = append(out, d)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Domain < out[j].Domain })
	return out, err
}

// DirectoryOf returns a domain's directory; false if the domain has none.
func (s *Store) DirectoryOf(domain string) (Directory, bool) {
	var d Directory
	found := false
	s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDirectories)
		if b == nil {
			return nil
		}
		ok, err := getJSON(b, domain, &d)
		found = ok && err == nil
		return nil
	})
	return d, found
}

// CheckDirectory checks a directory's settings as the FSM does.
func CheckDirectory(d Directory) error {
	if d.Domain == "" {
		return errors.New("a directory needs a domain")
	}
	if !strings.HasPrefix(d.URL, "ldap://") && !strings.HasPrefix(d.URL, "ldaps://") {
		return fmt.Errorf("the directory URL %q does not start with ldap:// or ldaps://", d.URL)
	}
	if d.Base == "" {
		return errors.New("a directory needs a base DN")
	}
	if d.StartTLS && strings.HasPrefix(d.URL, "ldaps://") {
		return errors.New("starttls is for ldap:// URLs: an ldaps:// connection is TLS from the start")
	}
	for _, f := range []string{d.URL, d.Base, d.BindDN, d.BindPassword, d.Trust, d.UserFilter, d.JIDFrom, d.GroupsBase, d.GroupFilter} {
		if len(f) > MaxDirectoryField {
			return fmt.Errorf("a directory setting is longer than %d bytes", MaxDirectoryField)
		}
	}
	return nil
}

// DirectorySet sets (adds or replaces) a domain's directory.
type DirectorySet struct {
	Directory Directory `json:"directory"`
}

// DirectoryDel makes a domain's accounts local again.
type DirectoryDel struct {
	Domain string `json:"domain"`
}

func (DirectorySet) Kind() OpKind { return "directory.set" }
func (DirectoryDel) Kind() OpKind { return "directory.del" }

func (o DirectorySet) apply(tx *bolt.Tx, at time.Time) (any, error) {
	if err := CheckDirectory(o.Directory); err != nil {
		return nil, err
	}
	b, err := tx.CreateBucketIfNotExists(bucketDirectories)
	if err != nil {
		return nil, err
	}
	d := o.Directory
	d.Changed = at
	return nil, putJSON(b, d.Domain, d)
}

func (o DirectoryDel) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	b := tx.Bucket(bucketDirectories)
	if b == nil || b.Get([]byte(o.Domain)) == nil {
		return nil, fmt.Errorf("directory of %s: %w", o.Domain, ErrNotFound)
	}
	return nil, b.Delete([]byte(o.Domain))
}

// SharedContact is a colleague a directory group puts in a user's roster.
type SharedContact struct {
	JID    string   `json:"jid"`
	Name   string   `json:"name,omitempty"`
	Groups []string `json:"groups"`
}

// DirectoryRoster makes the shared part of a directory user's roster what
// their directory groups say, on both sides: User and each contact (whose
// account exists) have each other with subscription both, in the groups
// they share, named as the directory names them (UserName is the user's
// name in the contacts' rosters). Items the directory made earlier for
// contacts no longer listed go, from both rosters. An item the user made
// themselves is kept as theirs, with its subscription made both.
type DirectoryRoster struct {
	User     string          `json:"user"`
	UserName string          `json:"user_name,omitempty"`
	Contacts []SharedContact `json:"contacts"`
}

// DirectoryRosterResult is what a DirectoryRoster changed: items stored
// and items removed, each in the roster of its User (push them).
type DirectoryRosterResult struct {
	Stored  []RosterChange
	Removed []RosterChange
}

func (DirectoryRoster) Kind() OpKind { return "directory.roster" }

func (o DirectoryRoster) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	if o.User == "" {
		return nil, errors.New("directory.roster without a user")
	}
	if len(o.Contacts) > MaxRosterItems {
		return nil, fmt.Errorf("directory.roster: %d contacts, at most %d", len(o.Contacts), MaxRosterItems)
	}
	var res DirectoryRosterResult
	accounts := tx.Bucket(bucketAccounts)
	want := map[string]bool{}
	for _, c := range o.Contacts {
		if c.JID == "" || c.JID == o.User || want[c.JID] {
			continue
		}
		want[c.JID] = true
		if ch, err := shareItem(tx, o.User, c.JID, c.Name, c.Groups); err != nil {
			return nil, err
		} else if ch != nil {
			res.Stored = append(res.Stored, *ch)
		}
		if accounts.Get([]byte(c.JID)) == nil {
			continue
		}
		if ch, err := shareItem(tx, c.JID, o.User, o.UserName, c.Groups); err != nil {
			return nil, err
		} else if ch != nil {
			res.Stored = append(res.Stored, *ch)
		}
	}
	// The directory's items for contacts no longer shared go, both sides.
	var gone []RosterItem
	if b := tx.Bucket(bucketRosters).Bucket([]byte(o.User)); b != nil {
		b.ForEach(func(k, v []byte) error {
			var it RosterItem
			if jsonUnmarshal(v, &it) == nil && it.Directory && !want[it.JID] {
				gone = append(gone, it)
			}
			return nil
		})
	}
	for _, it := range gone {
		if _, err := (RosterDel{User: o.User, JID: it.JID}).apply(tx, time.Time{}); err != nil {
			return nil, err
		}
		res.Removed = append(res.Removed, RosterChange{User: o.User, Before: it, Existed: true})
		other, ok, err := getRosterItem(tx, it.JID, o.User)
		if err != nil {
			return nil, err
		}
		if ok && other.Directory {
			if _, err := (RosterDel{User: it.JID, JID: o.User}).apply(tx, time.Time{}); err != nil {
				return nil, err
			}
			res.Removed = append(res.Removed, RosterChange{User: it.JID, Before: other, Existed: true})
		}
	}
	return res, nil
}

// shareItem makes user's item for jid a shared one (see DirectoryRoster);
// nil if nothing changed. A full roster is reported in the change's Err.
func shareItem(tx *bolt.Tx, user, jid, name string, groups []string) (*RosterChange, error) {
	before, ok, err := getRosterItem(tx, user, jid)
	if err != nil {
		return nil, err
	}
	it := before
	switch {
	case !ok || before.Hidden:
		it = RosterItem{JID: jid, Name: name, Groups: append([]string(nil), groups...), Directory: true}
	case before.Directory:
		it.Name, it.Groups = name, append([]string(nil), groups...)
	}
	it.Subscription, it.Ask, it.PendingIn, it.PendingInMsg = SubBoth, false, false, nil
	if ok && reflect.DeepEqual(before, it) {
		return nil, nil
	}
	ch := &RosterChange{User: user, Before: before, After: it, Existed: ok && !before.Hidden}
	if err := putRosterItem(tx, user, it); err != nil {
		if !errors.Is(err, ErrFull) {
			return nil, err
		}
		ch.Err = err
		return ch, nil
	}
	ch.Stored = true
	return ch, nil
}
