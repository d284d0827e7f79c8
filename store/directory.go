package store

import (
	"encoding/json"
	"errors"
	"fmt"
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
	JIDFrom string    `json:"jid_from,omitempty"`
	Changed time.Time `json:"changed"`
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
	for _, f := range []string{d.URL, d.Base, d.BindDN, d.BindPassword, d.Trust, d.UserFilter, d.JIDFrom} {
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
