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
	err := s.db.View(func(tx *bolt.Tx) error {
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
	err := s.db.View(func(tx *bolt.Tx) error {
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
	err := s.db.View(func(tx *bolt.Tx) error {
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
	err := s.db.View(func(tx *bolt.Tx) error {
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
	err := s.db.View(func(tx *bolt.Tx) error {
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
	err := s.db.View(func(tx *bolt.Tx) error {
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
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		ok, err = getJSON(tx.Bucket(bucketLast), user, &l)
		return err
	})
	return l, ok, err
}

func applyIM(tx *bolt.Tx, op Op) error {
	switch op.Kind {
	case OpRosterPut:
		if op.Item == nil || op.Item.JID == "" {
			return errors.New("roster.put without an item")
		}
		b, err := tx.Bucket(bucketRosters).CreateBucketIfNotExists([]byte(op.Name))
		if err != nil {
			return err
		}
		if b.Get([]byte(op.Item.JID)) == nil && b.Stats().KeyN >= MaxRosterItems {
			return fmt.Errorf("roster of %s has %d items: %w", op.Name, MaxRosterItems, ErrFull)
		}
		if _, err := b.NextSequence(); err != nil {
			return err
		}
		return putJSON(b, op.Item.JID, op.Item)
	case OpRosterDel:
		b := tx.Bucket(bucketRosters).Bucket([]byte(op.Name))
		if b == nil || b.Get([]byte(op.Value)) == nil {
			return fmt.Errorf("roster item %s: %w", op.Value, ErrNotFound)
		}
		if _, err := b.NextSequence(); err != nil {
			return err
		}
		return b.Delete([]byte(op.Value))
	case OpOfflinePush:
		b, err := tx.Bucket(bucketOffline).CreateBucketIfNotExists([]byte(op.Name))
		if err != nil {
			return err
		}
		if b.Stats().KeyN >= MaxOfflineQueue {
			return fmt.Errorf("offline queue of %s has %d messages: %w", op.Name, MaxOfflineQueue, ErrFull)
		}
		n, _ := b.NextSequence()
		return b.Put(seqKey(n), op.Data)
	case OpOfflineDel: // delete every stored stanza up to and including Index
		b := tx.Bucket(bucketOffline).Bucket([]byte(op.Name))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= uint64(op.Index); k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	case OpVCardSet:
		if len(op.Data) > MaxStoredXML {
			return fmt.Errorf("vCard larger than %d bytes: %w", MaxStoredXML, ErrFull)
		}
		if len(op.Data) == 0 {
			return tx.Bucket(bucketVCards).Delete([]byte(op.Name))
		}
		return tx.Bucket(bucketVCards).Put([]byte(op.Name), op.Data)
	case OpPrivateSet:
		if len(op.Data) > MaxStoredXML {
			return fmt.Errorf("private XML larger than %d bytes: %w", MaxStoredXML, ErrFull)
		}
		b, err := tx.Bucket(bucketPrivate).CreateBucketIfNotExists([]byte(op.Name))
		if err != nil {
			return err
		}
		if b.Get([]byte(op.Value)) == nil && b.Stats().KeyN >= MaxPrivateEntries {
			return fmt.Errorf("private storage of %s has %d entries: %w", op.Name, MaxPrivateEntries, ErrFull)
		}
		return b.Put([]byte(op.Value), op.Data)
	case OpLastSet:
		return putJSON(tx.Bucket(bucketLast), op.Name, LastActivity{Time: op.Time, Status: op.Value})
	}
	return fmt.Errorf("unknown IM operation %q", op.Kind)
}
