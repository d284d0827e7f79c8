package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Subscription states of a roster item (RFC 6121 §2.1.2.5).
const (
	SubNone = "none"
	SubTo   = "to"
	SubFrom = "from"
	SubBoth = "both"
)

// RosterItem is one contact in a user's roster.
type RosterItem struct {
	JID          string   `json:"jid"`
	Name         string   `json:"name,omitempty"`
	Subscription string   `json:"subscription"`
	Ask          bool     `json:"ask,omitempty"`        // we asked to subscribe to them
	PendingIn    bool     `json:"pending_in,omitempty"` // they asked to subscribe to us
	PendingInMsg []byte   `json:"pending_in_msg,omitempty"`
	Groups       []string `json:"groups,omitempty"`
	// Hidden: the contact only asked to subscribe; the user has not added
	// or approved them, so roster gets do not show the item (RFC 6121 §3.1.3).
	Hidden bool `json:"hidden,omitempty"`
	// Directory: the item comes from a company directory's group
	// (DirectoryRoster), which removes it when the group no longer says so.
	Directory bool `json:"directory,omitempty"`
}

// Limits on per-account data.
const (
	MaxRosterItems    = 1000
	MaxOfflineQueue   = 1000
	MaxStoredXML      = 64 << 10 // one vCard or private XML fragment
	MaxPrivateEntries = 100
)

// ErrFull is returned when a per-account limit is reached.
var ErrFull = errors.New("full")

// Roster returns a user's roster version and items.
func (s *Store) Roster(user string) (uint64, []RosterItem, error) {
	var ver uint64
	var items []RosterItem
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRosters).Bucket([]byte(user))
		if b == nil {
			return nil
		}
		ver = b.Sequence()
		return b.ForEach(func(k, v []byte) error {
			var it RosterItem
			if err := json.Unmarshal(v, &it); err != nil {
				return err
			}
			items = append(items, it)
			return nil
		})
	})
	return ver, items, err
}

// RosterItem returns one item of a user's roster.
func (s *Store) RosterItem(user, jid string) (RosterItem, bool, error) {
	var it RosterItem
	var ok bool
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRosters).Bucket([]byte(user))
		if b == nil {
			return nil
		}
		var err error
		ok, err = getJSON(b, jid, &it)
		return err
	})
	return it, ok, err
}

// OfflineMessage is one stored stanza for an offline user.
type OfflineMessage struct {
	Seq    uint64
	Stanza []byte
}

// Offline returns a user's stored stanzas, oldest first.
func (s *Store) Offline(user string) ([]OfflineMessage, error) {
	var out []OfflineMessage
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOffline).Bucket([]byte(user))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out = append(out, OfflineMessage{Seq: binary.BigEndian.Uint64(k), Stanza: append([]byte(nil), v...)})
			return nil
		})
	})
	return out, err
}

// OfflineAfter returns at most limit of a user's stored stanzas with a
// sequence number above after, oldest first.
func (s *Store) OfflineAfter(user string, after uint64, limit int) ([]OfflineMessage, error) {
	var out []OfflineMessage
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOffline).Bucket([]byte(user))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			out = append(out, OfflineMessage{Seq: binary.BigEndian.Uint64(k), Stanza: append([]byte(nil), v...)})
		}
		return nil
	})
	return out, err
}

// VCard returns a user's stored vCard XML, or nil.
func (s *Store) VCard(user string) ([]byte, error) {
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketVCards).Get([]byte(user)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

// Private returns a user's private XML stored under key, or nil.
func (s *Store) Private(user, key string) ([]byte, error) {
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPrivate).Bucket([]byte(user))
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(key)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

// LastActivity is when a user's last session ended and its status text.
type LastActivity struct {
	Time   time.Time `json:"time"`
	Status string    `json:"status,omitempty"`
}

// Last returns a user's last activity, if recorded.
func (s *Store) Last(user string) (LastActivity, bool, error) {
	var l LastActivity
	var ok bool
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		ok, err = getJSON(tx.Bucket(bucketLast), user, &l)
		return err
	})
	return l, ok, err
}

// RosterPut stores one roster item as given (no subscription logic: see
// RosterSet, RosterSubscribe and RosterRemove for the read-modify-write
// changes).
type RosterPut struct {
	User string     `json:"user"`
	Item RosterItem `json:"item"`
}

// RosterDel deletes one roster item.
type RosterDel struct {
	User string `json:"user"`
	JID  string `json:"jid"`
}

// OfflinePush stores a stanza for an offline user.
type OfflinePush struct {
	User   string `json:"user"`
	Stanza []byte `json:"stanza"`
}

// OfflineDel deletes a user's stored stanzas up to and including Through.
type OfflineDel struct {
	User    string `json:"user"`
	Through uint64 `json:"through"`
}

// VCardSet stores a user's vCard XML (empty: deletes it).
type VCardSet struct {
	User  string `json:"user"`
	VCard []byte `json:"vcard,omitempty"`
}

// PrivateSet stores private XML (XEP-0049) under a key.
type PrivateSet struct {
	User string `json:"user"`
	Key  string `json:"key"`
	XML  []byte `json:"xml"`
}

// LastSet records that a user's last session ended now (the entry's time).
type LastSet struct {
	User   string `json:"user"`
	Status string `json:"status,omitempty"`
}

func (RosterPut) Kind() OpKind   { return "roster.put" }
func (RosterDel) Kind() OpKind   { return "roster.del" }
func (OfflinePush) Kind() OpKind { return "offline.push" }
func (OfflineDel) Kind() OpKind  { return "offline.del" }
func (VCardSet) Kind() OpKind    { return "vcard.set" }
func (PrivateSet) Kind() OpKind  { return "private.set" }
func (LastSet) Kind() OpKind     { return "last.set" }

func (o RosterPut) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	if o.Item.JID == "" {
		return nil, errors.New("roster.put without an item")
	}
	return nil, putRosterItem(tx, o.User, o.Item)
}

// putRosterItem stores an item, bumping the roster's version.
func putRosterItem(tx *bolt.Tx, user string, it RosterItem) error {
	b, err := tx.Bucket(bucketRosters).CreateBucketIfNotExists([]byte(user))
	if err != nil {
		return err
	}
	if b.Get([]byte(it.JID)) == nil && b.Stats().KeyN >= MaxRosterItems {
		return fmt.Errorf("roster of %s has %d items: %w", user, MaxRosterItems, ErrFull)
	}
	if _, err := b.NextSequence(); err != nil {
		return err
	}
	return putJSON(b, it.JID, it)
}

// getRosterItem reads one item; ok is false if the user has none for jid.
func getRosterItem(tx *bolt.Tx, user, jid string) (it RosterItem, ok bool, err error) {
	b := tx.Bucket(bucketRosters).Bucket([]byte(user))
	if b == nil {
		return it, false, nil
	}
	ok, err = getJSON(b, jid, &it)
	return it, ok, err
}

func (o RosterDel) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	b := tx.Bucket(bucketRosters).Bucket([]byte(o.User))
	if b == nil || b.Get([]byte(o.JID)) == nil {
		return nil, fmt.Errorf("roster item %s: %w", o.JID, ErrNotFound)
	}
	if _, err := b.NextSequence(); err != nil {
		return nil, err
	}
	return nil, b.Delete([]byte(o.JID))
}

func (o OfflinePush) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	b, err := tx.Bucket(bucketOffline).CreateBucketIfNotExists([]byte(o.User))
	if err != nil {
		return nil, err
	}
	if b.Stats().KeyN >= MaxOfflineQueue {
		return nil, fmt.Errorf("offline queue of %s has %d messages: %w", o.User, MaxOfflineQueue, ErrFull)
	}
	n, _ := b.NextSequence()
	return nil, b.Put(seqKey(n), o.Stanza)
}

func (o OfflineDel) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	b := tx.Bucket(bucketOffline).Bucket([]byte(o.User))
	if b == nil {
		return nil, nil
	}
	c := b.Cursor()
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= o.Through; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

func (o VCardSet) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	if len(o.VCard) > MaxStoredXML {
		return nil, fmt.Errorf("vCard larger than %d bytes: %w", MaxStoredXML, ErrFull)
	}
	if len(o.VCard) == 0 {
		return nil, tx.Bucket(bucketVCards).Delete([]byte(o.User))
	}
	return nil, tx.Bucket(bucketVCards).Put([]byte(o.User), o.VCard)
}

func (o PrivateSet) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	if len(o.XML) > MaxStoredXML {
		return nil, fmt.Errorf("private XML larger than %d bytes: %w", MaxStoredXML, ErrFull)
	}
	b, err := tx.Bucket(bucketPrivate).CreateBucketIfNotExists([]byte(o.User))
	if err != nil {
		return nil, err
	}
	if b.Get([]byte(o.Key)) == nil && b.Stats().KeyN >= MaxPrivateEntries {
		return nil, fmt.Errorf("private storage of %s has %d entries: %w", o.User, MaxPrivateEntries, ErrFull)
	}
	return nil, b.Put([]byte(o.Key), o.XML)
}

func (o LastSet) apply(tx *bolt.Tx, at time.Time) (any, error) {
	return nil, putJSON(tx.Bucket(bucketLast), o.User, LastActivity{Time: at, Status: o.Status})
}
