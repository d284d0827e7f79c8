package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// XMPPComponentPlain is the config key that allows plain (not TLS)
// component connections from other hosts than loopback: "allow", or unset.
const XMPPComponentPlain = "xmpp.component-plain"

// Component is an external XEP-0114 component, such as a Cisco Meeting
// Server call bridge. It connects as Name.Domain with the shared secret,
// which the server must know to check the handshake, so it is stored as is.
type Component struct {
	Name    string    `json:"name"`
	Domain  string    `json:"domain"`
	Secret  string    `json:"secret"`
	Created time.Time `json:"created"`
}

// JID is the component's address: name.domain.
func (c Component) JID() string { return c.Name + "." + c.Domain }

// Components returns every component, by name.
func (s *Store) Components() ([]Component, error) {
	var out []Component
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketComponents).ForEach(func(k, v []byte) error {
			var c Component
			if err := json.Unmarshal(v, &c); err != nil {
				return err
			}
			out = append(out, c)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// Component returns one component by name.
func (s *Store) Component(name string) (Component, error) {
	var c Component
	err := s.db.View(func(tx *bolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bucketComponents), name, &c)
		if err == nil && !ok {
			err = fmt.Errorf("no call bridge %s (see 'xmpp callbridge list'): %w", name, ErrNotFound)
		}
		return err
	})
	return c, err
}

// ComponentByJID returns the component whose address is jid.
func (s *Store) ComponentByJID(jid string) (Component, bool) {
	all, _ := s.Components()
	for _, c := range all {
		if c.JID() == jid {
			return c, true
		}
	}
	return Component{}, false
}

func applyComponent(tx *bolt.Tx, op Op) error {
	b := tx.Bucket(bucketComponents)
	switch op.Kind {
	case OpComponentAdd:
		c := op.Component
		if c == nil || c.Name == "" || c.Domain == "" || c.Secret == "" {
			return errors.New("component.add needs a name, a domain and a secret")
		}
		if b.Get([]byte(c.Name)) != nil {
			return fmt.Errorf("call bridge %s %w", c.Name, ErrExists)
		}
		cc := *c
		cc.Created = op.Time
		return putJSON(b, cc.Name, cc)
	case OpComponentDel:
		if b.Get([]byte(op.Name)) == nil {
			return fmt.Errorf("call bridge %s: %w", op.Name, ErrNotFound)
		}
		return b.Delete([]byte(op.Name))
	}
	return fmt.Errorf("unknown component operation %q", op.Kind)
}
