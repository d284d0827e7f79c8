package store

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// OpKind names one kind of change.
type OpKind string

// The kinds of change. Each is deterministic given the Op alone (the time
// travels inside it), so replaying a log gives the same state everywhere.
const (
	OpConfigSet     OpKind = "config.set"     // Name = key, Value = value
	OpConfigDel     OpKind = "config.del"     // Name = key
	OpAdminCreate   OpKind = "admin.create"   // Admin; fails if the name is taken
	OpAdminDelete   OpKind = "admin.delete"   // Name; refuses the last admin
	OpAdminPassword OpKind = "admin.password" // Name, Value = hash; clears expiry
	OpAdminExpire   OpKind = "admin.expire"   // Name; forces a change at next login
	OpAdminUnlock   OpKind = "admin.unlock"   // Name
	OpAdminLoginOK  OpKind = "admin.login-ok" // Name
	OpAdminKeyAdd   OpKind = "admin.key-add"  // Name, Value = authorized_keys line
	OpAdminKeyDel   OpKind = "admin.key-del"  // Name, Index (1-based)
	OpAudit         OpKind = "audit"          // Audit
	OpHistory       OpKind = "history"        // Name = user, Value = line

	OpDomainPrimary   OpKind = "domain.primary"   // Name; Domain optional (its certificates)
	OpDomainPut       OpKind = "domain.put"       // Domain (keeps Primary as it was)
	OpDomainDel       OpKind = "domain.del"       // Name
	OpXMPPReset       OpKind = "xmpp.reset"       // every domain and every xmpp.* setting; accounts stay
	OpComponentAdd    OpKind = "component.add"    // Component; fails if the name is taken
	OpComponentDel    OpKind = "component.del"    // Name
	OpAccountCreate   OpKind = "account.create"   // Accounts; SkipExisting
	OpAccountPassword OpKind = "account.password" // Accounts[0]
	OpAccountDelete   OpKind = "account.delete"   // Name = bare JID
	OpRosterPut       OpKind = "roster.put"       // Name = user, Item
	OpRosterDel       OpKind = "roster.del"       // Name = user, Value = contact JID
	OpOfflinePush     OpKind = "offline.push"     // Name = user, Data = stanza
	OpOfflineDel      OpKind = "offline.del"      // Name = user, Index = last seq delivered
	OpVCardSet        OpKind = "vcard.set"        // Name = user, Data = vCard XML (empty: delete)
	OpPrivateSet      OpKind = "private.set"      // Name = user, Value = key, Data = XML
	OpLastSet         OpKind = "last.set"         // Name = user, Value = status
)

// Op is one serializable change to the store.
type Op struct {
	Kind  OpKind      `json:"kind"`
	Time  time.Time   `json:"time"`
	Name  string      `json:"name,omitempty"`
	Value string      `json:"value,omitempty"`
	Index int         `json:"index,omitempty"`
	Admin *Admin      `json:"admin,omitempty"`
	Audit *AuditEntry `json:"audit,omitempty"`

	Data         []byte      `json:"data,omitempty"`
	Domain       *Domain     `json:"domain,omitempty"`
	Accounts     []Account   `json:"accounts,omitempty"`
	SkipExisting bool        `json:"skip_existing,omitempty"`
	Item         *RosterItem `json:"item,omitempty"`
	Component    *Component  `json:"component,omitempty"`
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

// AuditLimit is how many audit entries are kept; the oldest go first.
const AuditLimit = 100000

func apply(tx *bolt.Tx, op Op) error {
	switch op.Kind {
	case OpConfigSet:
		return tx.Bucket(bucketConfig).Put([]byte(op.Name), []byte(op.Value))
	case OpConfigDel:
		return tx.Bucket(bucketConfig).Delete([]byte(op.Name))
	case OpAdminCreate:
		if op.Admin == nil || op.Admin.Name == "" {
			return errors.New("admin.create without an admin")
		}
		b := tx.Bucket(bucketAdmins)
		if b.Get([]byte(op.Admin.Name)) != nil {
			return fmt.Errorf("user %s %w", op.Admin.Name, ErrExists)
		}
		a := *op.Admin
		a.Created = op.Time
		if a.PasswordChanged.IsZero() {
			a.PasswordChanged = op.Time
		}
		return putJSON(b, a.Name, a)
	case OpAdminDelete:
		b := tx.Bucket(bucketAdmins)
		var a Admin
		if ok, err := getJSON(b, op.Name, &a); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("user %s: %w", op.Name, ErrNotFound)
		}
		if a.Role == RoleAdmin && countRole(b, RoleAdmin) <= 1 {
			return fmt.Errorf("%s is the %w: add another admin user first", op.Name, ErrLastAdmin)
		}
		if err := b.Delete([]byte(op.Name)); err != nil {
			return err
		}
		if h := tx.Bucket(bucketHistory); h.Bucket([]byte(op.Name)) != nil {
			return h.DeleteBucket([]byte(op.Name))
		}
		return nil
	case OpAdminPassword, OpAdminExpire, OpAdminUnlock, OpAdminLoginOK, OpAdminKeyAdd, OpAdminKeyDel:
		return updateAdmin(tx, op)
	case OpAudit:
		if op.Audit == nil {
			return errors.New("audit op without an entry")
		}
		b := tx.Bucket(bucketAudit)
		n, _ := b.NextSequence()
		e := *op.Audit
		e.Time = op.Time
		if err := putJSON(b, string(seqKey(n)), e); err != nil {
			return err
		}
		return trimSeq(b, n, AuditLimit)
	case OpHistory:
		h, err := tx.Bucket(bucketHistory).CreateBucketIfNotExists([]byte(op.Name))
		if err != nil {
			return err
		}
		n, _ := h.NextSequence()
		if err := h.Put(seqKey(n), []byte(op.Value)); err != nil {
			return err
		}
		return trimSeq(h, n, HistoryLimit)
	case OpDomainPrimary, OpDomainPut, OpDomainDel:
		return applyDomain(tx, op)
	case OpXMPPReset:
		return applyXMPPReset(tx)
	case OpComponentAdd, OpComponentDel:
		return applyComponent(tx, op)
	case OpAccountCreate, OpAccountPassword, OpAccountDelete:
		return applyAccount(tx, op)
	case OpRosterPut, OpRosterDel, OpOfflinePush, OpOfflineDel, OpVCardSet, OpPrivateSet, OpLastSet:
		return applyIM(tx, op)
	}
	return fmt.Errorf("unknown store operation %q", op.Kind)
}

func updateAdmin(tx *bolt.Tx, op Op) error {
	b := tx.Bucket(bucketAdmins)
	var a Admin
	if ok, err := getJSON(b, op.Name, &a); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("user %s: %w", op.Name, ErrNotFound)
	}
	switch op.Kind {
	case OpAdminPassword:
		a.PasswordHash = op.Value
		a.PasswordChanged = op.Time
		a.Expired = false
	case OpAdminExpire:
		a.Expired = true
	case OpAdminUnlock:
		// Nothing stored: the SSH server keeps failed logins per source
		// address in memory (shell.guard); the op checks the user exists
		// and is audited.
	case OpAdminLoginOK:
		a.LastLogin = op.Time
	case OpAdminKeyAdd:
		for _, k := range a.Keys {
			if k.Line == op.Value {
				return fmt.Errorf("that key is %w for %s", ErrExists, a.Name)
			}
		}
		a.Keys = append(a.Keys, SSHKey{Line: op.Value, Added: op.Time})
	case OpAdminKeyDel:
		if op.Index < 1 || op.Index > len(a.Keys) {
			return fmt.Errorf("%s has no key number %d (see 'user sshkey list %s')", a.Name, op.Index, a.Name)
		}
		a.Keys = append(a.Keys[:op.Index-1], a.Keys[op.Index:]...)
	}
	return putJSON(b, a.Name, a)
}

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
