package store

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	bolt "go.etcd.io/bbolt"
)

// OpKind names one kind of change; it is what the log records beside the
// payload, so a kind's name never changes once released.
type OpKind string

// Op is one typed change to the replicated store: each kind of change is
// its own payload type (ConfigSet, AdminCreate, OfflinePush …). An Op is
// deterministic given its payload and the entry's time, so replaying the
// log gives the same state on every node. Only this package defines ops:
// apply runs inside the FSM's transaction (see Store.Apply).
type Op interface {
	Kind() OpKind
	// apply changes the store in tx at time at (the entry's time, never
	// the clock) and returns the op's response. An error leaves nothing
	// of the op behind: the FSM rolls it back.
	apply(tx *bolt.Tx, at time.Time) (any, error)
}

// opTypes maps every kind the log may carry to a new empty payload.
// Decoding an entry of any other kind is an error.
var opTypes = map[OpKind]reflect.Type{}

func register(ops ...Op) {
	for _, op := range ops {
		k := op.Kind()
		if _, dup := opTypes[k]; dup {
			panic("store: op kind registered twice: " + string(k))
		}
		opTypes[k] = reflect.TypeOf(op)
	}
}

func init() {
	register(ConfigSet{}, ConfigDel{},
		AdminCreate{}, AdminDelete{}, AdminPassword{}, AdminExpire{}, AdminUnlock{}, AdminKeyAdd{}, AdminKeyDel{},
		AuditAdd{},
		DomainPrimary{}, DomainPut{}, DomainDel{}, XMPPReset{},
		ComponentAdd{}, ComponentDel{},
		AccountCreate{}, AccountPassword{}, AccountDelete{},
		RosterPut{}, RosterDel{}, RosterSet{}, RosterSubscribe{}, RosterRemove{},
		OfflinePush{}, OfflineDel{}, VCardSet{}, PrivateSet{}, LastSet{},
		FilePut{}, DialbackSecretInit{},
		DirectorySet{}, DirectoryDel{}, DirectoryRoster{})
}

// Errors callers may test for.
var (
	ErrNotFound  = errors.New("not found")
	ErrExists    = errors.New("already exists")
	ErrLastAdmin = errors.New("last admin")
)

// LockoutPeriod is how long an account stays locked after too many failed
// logins.
const LockoutPeriod = 15 * time.Minute

// HistoryLimit is how many shell history lines are kept per admin user.
const HistoryLimit = 500

// AuditLimit is how many audit entries each node keeps; the oldest go
// first.
const AuditLimit = 100000

// ConfigSet sets one configuration key. Node-local keys (IsLocalKey) are
// not set through the log: use Store.SetLocal.
type ConfigSet struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// ConfigDel deletes one configuration key.
type ConfigDel struct {
	Key string `json:"key"`
}

func (ConfigSet) Kind() OpKind { return "config.set" }
func (ConfigDel) Kind() OpKind { return "config.del" }

func (o ConfigSet) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	if IsLocalKey(o.Key) {
		return nil, fmt.Errorf("%s is node-local: it is not replicated", o.Key)
	}
	return nil, tx.Bucket(bucketConfig).Put([]byte(o.Key), []byte(o.Value))
}

func (o ConfigDel) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	return nil, tx.Bucket(bucketConfig).Delete([]byte(o.Key))
}

// AdminCreate adds an admin user; it fails with ErrExists if the name is
// taken. Created (and PasswordChanged, if zero) are the entry's time.
type AdminCreate struct {
	Admin Admin `json:"admin"`
}

// AdminDelete deletes an admin user; it refuses the last admin.
type AdminDelete struct {
	Name string `json:"name"`
}

// AdminPassword sets an admin user's password hash and clears an expiry.
type AdminPassword struct {
	Name string `json:"name"`
	Hash string `json:"hash"`
}

// AdminExpire forces a password change at the user's next login.
type AdminExpire struct {
	Name string `json:"name"`
}

// AdminUnlock checks the user exists (and is audited): the SSH server
// keeps failed logins per source address in memory (shell.guard).
type AdminUnlock struct {
	Name string `json:"name"`
}

// AdminKeyAdd authorizes an SSH public key (an authorized_keys line).
type AdminKeyAdd struct {
	Name string `json:"name"`
	Line string `json:"line"`
}

// AdminKeyDel removes the user's Index-th key (1-based).
type AdminKeyDel struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
}

func (AdminCreate) Kind() OpKind   { return "admin.create" }
func (AdminDelete) Kind() OpKind   { return "admin.delete" }
func (AdminPassword) Kind() OpKind { return "admin.password" }
func (AdminExpire) Kind() OpKind   { return "admin.expire" }
func (AdminUnlock) Kind() OpKind   { return "admin.unlock" }
func (AdminKeyAdd) Kind() OpKind   { return "admin.key-add" }
func (AdminKeyDel) Kind() OpKind   { return "admin.key-del" }

func (o AdminCreate) apply(tx *bolt.Tx, at time.Time) (any, error) {
	if o.Admin.Name == "" {
		return nil, errors.New("admin.create without an admin")
	}
	b := tx.Bucket(bucketAdmins)
	if b.Get([]byte(o.Admin.Name)) != nil {
		return nil, fmt.Errorf("user %s %w", o.Admin.Name, ErrExists)
	}
	a := o.Admin
	a.Created = at
	if a.PasswordChanged.IsZero() {
		a.PasswordChanged = at
	}
	return nil, putJSON(b, a.Name, a)
}

func (o AdminDelete) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	b := tx.Bucket(bucketAdmins)
	var a Admin
	if ok, err := getJSON(b, o.Name, &a); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("user %s: %w", o.Name, ErrNotFound)
	}
	if a.Role == RoleAdmin && countRole(b, RoleAdmin) <= 1 {
		return nil, fmt.Errorf("%s is the %w: add another admin user first", o.Name, ErrLastAdmin)
	}
	// The user's node-local data (history, last login) goes after commit:
	// see Store.afterCommit.
	return nil, b.Delete([]byte(o.Name))
}

func (o AdminPassword) apply(tx *bolt.Tx, at time.Time) (any, error) {
	return nil, updateAdmin(tx, o.Name, func(a *Admin) error {
		a.PasswordHash, a.PasswordChanged, a.Expired = o.Hash, at, false
		return nil
	})
}

func (o AdminExpire) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	return nil, updateAdmin(tx, o.Name, func(a *Admin) error { a.Expired = true; return nil })
}

func (o AdminUnlock) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	return nil, updateAdmin(tx, o.Name, func(a *Admin) error { return nil })
}

func (o AdminKeyAdd) apply(tx *bolt.Tx, at time.Time) (any, error) {
	return nil, updateAdmin(tx, o.Name, func(a *Admin) error {
		for _, k := range a.Keys {
			if k.Line == o.Line {
				return fmt.Errorf("that key is %w for %s", ErrExists, a.Name)
			}
		}
		a.Keys = append(a.Keys, SSHKey{Line: o.Line, Added: at})
		return nil
	})
}

func (o AdminKeyDel) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	return nil, updateAdmin(tx, o.Name, func(a *Admin) error {
		if o.Index < 1 || o.Index > len(a.Keys) {
			return fmt.Errorf("%s has no key number %d (see 'user sshkey list %s')", a.Name, o.Index, a.Name)
		}
		a.Keys = append(a.Keys[:o.Index-1], a.Keys[o.Index:]...)
		return nil
	})
}

func updateAdmin(tx *bolt.Tx, name string, change func(a *Admin) error) error {
	b := tx.Bucket(bucketAdmins)
	var a Admin
	if ok, err := getJSON(b, name, &a); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("user %s: %w", name, ErrNotFound)
	}
	if err := change(&a); err != nil {
		return err
	}
	return putJSON(b, a.Name, a)
}

// AuditAdd was the replicated audit trail's op before schema 5. The
// audit trail is node-local now (Store.AddAudit); the kind stays
// registered so that an entry of it still decodes, and the FSM applies
// it as a no-op. Nothing proposes it any more.
type AuditAdd struct {
	Entry AuditEntry `json:"entry"`
}

func (AuditAdd) Kind() OpKind { return "audit" }

func (AuditAdd) apply(*bolt.Tx, time.Time) (any, error) { return nil, nil }

func countRole(b *bolt.Bucket, role string) int {
	n := 0
	b.ForEach(func(k, v []byte) error {
		var a Admin
		if jsonUnmarshal(v, &a) == nil && a.Role == role {
			n++
		}
		return nil
	})
	return n
}

// trimSeq keeps a sequence-keyed bucket at limit entries: having just added
// entry n, it drops entry n-limit.
func trimSeq(b *bolt.Bucket, n uint64, limit int) error {
	if n <= uint64(limit) {
		return nil
	}
	return b.Delete(seqKey(n - uint64(limit)))
}
