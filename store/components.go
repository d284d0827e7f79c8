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
	err := s.view(func(tx *bolt.Tx) error {
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
	err := s.view(func(tx *bolt.Tx) error {
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

// ComponentAdd registers a component; it fails with ErrExists if the name
// is taken.
type ComponentAdd struct {
	Component Component `json:"component"`
}

// ComponentDel deletes a component.
type ComponentDel struct {
	Name string `json:"name"`
}

func (ComponentAdd) Kind() OpKind { return "component.add" }
func (ComponentDel) Kind() OpKind { return "component.del" }

func (o ComponentAdd) apply(tx *bolt.Tx, at time.Time) (any, error) {
	b := tx.Bucket(bucketComponents)
	c := o.Component
	if c.Name == "" || c.Domain == "" || c.Secret == "" {
		return nil, errors.New("component.add needs a name, a domain and a secret")
	}
	if b.Get([]byte(c.Name)) != nil {
		return nil, fmt.Errorf("call bridge %s %w", c.Name, ErrExists)
	}
	c.Created = at
	return nil, putJSON(b, c.Name, c)
}

func (o ComponentDel) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	b := tx.Bucket(bucketComponents)
	if b.Get([]byte(o.Name)) == nil {
		return nil, fmt.Errorf("call bridge %s: %w", o.Name, ErrNotFound)
	}
	return nil, b.Delete([]byte(o.Name))
}
