package store

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Roles, as in Cisco Meeting Server's MMP.
const (
	RoleAdmin    = "admin"    // everything
	RoleCrypto   = "crypto"   // pki, and reading
	RoleAudit    = "audit"    // reading only
	RoleAppAdmin = "appadmin" // xmpp, and reading
)

// Roles lists every role in the order help shows them.
var Roles = []string{RoleAdmin, RoleCrypto, RoleAudit, RoleAppAdmin}

// ValidRole reports whether r is a role.
func ValidRole(r string) bool {
	for _, x := range Roles {
		if x == r {
			return true
		}
	}
	return false
}

// Admin is one user of the admin shell. The password is kept only as a
// salted slow hash (see package shell's password functions).
type Admin struct {
	Name            string    `json:"name"`
	Role            string    `json:"role"`
	PasswordHash    string    `json:"password_hash"`
	PasswordChanged time.Time `json:"password_changed"`
	Expired         bool      `json:"expired,omitempty"`
	LastLogin       time.Time `json:"-"` // node-local (node.go), filled in by Admin and Admins
	Created         time.Time `json:"created"`
	Keys            []SSHKey  `json:"keys,omitempty"`
}

// SSHKey is one authorized public key, in authorized_keys format.
type SSHKey struct {
	Line  string    `json:"line"`
	Added time.Time `json:"added"`
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// Admin returns one admin user.
func (s *Store) Admin(name string) (Admin, error) {
	var a Admin
	err := s.view(func(tx *bolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bucketAdmins), name, &a)
		if err == nil && !ok {
			err = fmt.Errorf("no user %s (see 'user list'): %w", name, ErrNotFound)
		}
		return err
	})
	if err == nil {
		a.LastLogin = s.lastLogin(name)
	}
	return a, err
}

// Admins returns every admin user, by name.
func (s *Store) Admins() ([]Admin, error) {
	var out []Admin
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAdmins).ForEach(func(k, v []byte) error {
			var a Admin
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("admin %s: %w", k, err)
			}
			out = append(out, a)
			return nil
		})
	})
	for i := range out {
		out[i].LastLogin = s.lastLogin(out[i].Name)
	}
	return out, err
}

// Config keys.
const (
	ConfigHostname      = "hostname"
	RuleMinLength       = "rule.min_length"
	RuleMaxFailedLogins = "rule.max_failed_logins"
)

// Config returns a configuration value and whether it is set; a
// node-local key (IsLocalKey) is this node's.
func (s *Store) Config(key string) (string, bool) {
	if IsLocalKey(key) {
		return s.localConfig(key)
	}
	var v []byte
	s.view(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketConfig).Get([]byte(key)); b != nil {
			v = append([]byte(nil), b...)
		}
		return nil
	})
	return string(v), v != nil
}

// ConfigInt returns an integer configuration value, 0 when unset.
func (s *Store) ConfigInt(key string) int {
	v, _ := s.Config(key)
	n, _ := strconv.Atoi(v)
	return n
}

// AuditEntry is one line of the audit trail: who changed what, when, and
// whether it worked. Secrets never reach it: commands prompt for them.
type AuditEntry struct {
	Time   time.Time `json:"time"`
	User   string    `json:"user"`
	From   string    `json:"from,omitempty"`
	Action string    `json:"action"`
	Result string    `json:"result"`
}

// RulePasswordAge is the config key of the password age rule, in days
// (0 or unset: passwords do not age).
const RulePasswordAge = "rule.password_age"

// DefaultMinPasswordLength applies until `user rule min_length` sets one.
const DefaultMinPasswordLength = 8

// PasswordExpiry returns when the password expires given the age rule in
// days, and the zero time if it never does.
func (a *Admin) PasswordExpiry(ageDays int) time.Time {
	if ageDays <= 0 {
		return time.Time{}
	}
	return a.PasswordChanged.Add(time.Duration(ageDays) * 24 * time.Hour)
}

// MustChangePassword reports whether the user has to set a new password
// before doing anything else: an admin expired it, or it is too old.
func (a *Admin) MustChangePassword(now time.Time, ageDays int) bool {
	exp := a.PasswordExpiry(ageDays)
	return a.Expired || (!exp.IsZero() && !now.Before(exp))
}
