package store

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/text/secure/precis"
	"mellium.im/sasl"

	"github.com/parley-xmpp/parley/server/address"
)

// XMPP configuration keys in the config bucket. Domains live in their own
// bucket.
const (
	XMPPEnabled           = "xmpp.enabled"             // "true" when the engine should run on this node. Node-local (node.go)
	XMPPListen            = "xmpp.listen"              // space-separated addresses or interface names; unset: all addresses. Node-local (node.go)
	XMPPPortC2S           = "xmpp.port.c2s"            // plain + STARTTLS, default 5222
	XMPPPortC2STLS        = "xmpp.port.c2s-tls"        // direct TLS, default 5223
	XMPPPortS2S           = "xmpp.port.s2s"            // server streams, default 5269
	XMPPMaxSessions       = "xmpp.max-sessions"        // 0 or unset: no limit
	XMPPClientAuthTimeout = "xmpp.client-auth-timeout" // seconds, default 30

	// xmpp limits (commands/xmpp_limits.go)
	XMPPPreAuth           = "xmpp.limits.pre-auth"             // unauthenticated connections; unset: automatic
	XMPPPreAuthPerAddress = "xmpp.limits.pre-auth-per-address" // of them from one address (IPv6: one /64)
	XMPPStanzaRate        = "xmpp.limits.stanza-rate"          // stanzas per second per client session
	XMPPStanzaBurst       = "xmpp.limits.stanza-burst"         // the token bucket's depth
)

// ListenNone is the value of XMPPListen meaning "listen nowhere".
const ListenNone = "none"

// Defaults for XMPP settings.
const (
	DefaultPortC2S           = 5222
	DefaultPortC2STLS        = 5223
	DefaultPortS2S           = 5269
	DefaultClientAuthTimeout = 30 * time.Second

	// DefaultPreAuthMax bounds the automatic limit of unauthenticated
	// connections (XMPPConfig.PreAuth 0): a quarter of the process's
	// open-file limit, at most this many.
	DefaultPreAuthMax = 5000
	// DefaultPreAuthPerAddress: a NAT gateway's users log in within
	// milliseconds each, so 100 at once from one address is plenty, and a
	// single flooding address holds at most 100 descriptors.
	DefaultPreAuthPerAddress = 100
	// Stanzas per second per client session and the burst allowed above
	// that rate: far above what a person's client sends (a login's roster,
	// presence and disco burst is a few dozen), well below a flood.
	DefaultStanzaRate  = 100
	DefaultStanzaBurst = 500
)

// Domain is one hosted XMPP domain and the files (in the files area) of its
// key, certificate and optional CA bundle.
type Domain struct {
	Name    string `json:"name"`
	Primary bool   `json:"primary,omitempty"`
	Key     string `json:"key,omitempty"`
	Cert    string `json:"cert,omitempty"`
	Bundle  string `json:"bundle,omitempty"`
}

// XMPPConfig is a snapshot of everything the engine is configured with.
type XMPPConfig struct {
	Enabled           bool
	Domains           []Domain // the primary first, then by name
	Listen            []string // nil: all addresses; empty non-nil: none
	PortC2S           int
	PortC2STLS        int
	PortS2S           int
	MaxSessions       int
	ClientAuthTimeout time.Duration

	// PreAuth limits connections not yet authenticated (0: automatic, see
	// DefaultPreAuthMax); PreAuthPerAddress those from one address.
	PreAuth           int
	PreAuthPerAddress int
	// StanzaRate (per second) and StanzaBurst are each client session's
	// token bucket.
	StanzaRate  float64
	StanzaBurst int
}

// Primary returns the primary domain, if one is set.
func (c *XMPPConfig) Primary() (Domain, bool) {
	if len(c.Domains) > 0 && c.Domains[0].Primary {
		return c.Domains[0], true
	}
	return Domain{}, false
}

// Domain returns a hosted domain by name.
func (c *XMPPConfig) Domain(name string) (Domain, bool) {
	for _, d := range c.Domains {
		if d.Name == name {
			return d, true
		}
	}
	return Domain{}, false
}

// XMPP returns the current XMPP configuration.
func (s *Store) XMPP() (XMPPConfig, error) {
	c := XMPPConfig{PortC2S: DefaultPortC2S, PortC2STLS: DefaultPortC2STLS, PortS2S: DefaultPortS2S, ClientAuthTimeout: DefaultClientAuthTimeout,
		PreAuthPerAddress: DefaultPreAuthPerAddress, StanzaRate: DefaultStanzaRate, StanzaBurst: DefaultStanzaBurst}
	err := s.view(func(tx *bolt.Tx) error {
		cfg := tx.Bucket(bucketConfig)
		get := func(k string) (string, bool) {
			v := cfg.Get([]byte(k))
			return string(v), v != nil
		}
		num := func(k string, def int) int {
			if v, ok := get(k); ok {
				if n, err := strconv.Atoi(v); err == nil {
					return n
				}
			}
			return def
		}
		c.PortC2S = num(XMPPPortC2S, DefaultPortC2S)
		c.PortC2STLS = num(XMPPPortC2STLS, DefaultPortC2STLS)
		c.PortS2S = num(XMPPPortS2S, DefaultPortS2S)
		c.MaxSessions = num(XMPPMaxSessions, 0)
		c.ClientAuthTimeout = time.Duration(num(XMPPClientAuthTimeout, int(DefaultClientAuthTimeout/time.Second))) * time.Second
		c.PreAuth = num(XMPPPreAuth, 0)
		c.PreAuthPerAddress = num(XMPPPreAuthPerAddress, DefaultPreAuthPerAddress)
		if v, ok := get(XMPPStanzaRate); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 {
				c.StanzaRate = f
			}
		}
		c.StanzaBurst = num(XMPPStanzaBurst, DefaultStanzaBurst)
		return tx.Bucket(bucketDomains).ForEach(func(k, v []byte) error {
			var d Domain
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			c.Domains = append(c.Domains, d)
			return nil
		})
	})
	if v, _ := s.localConfig(XMPPEnabled); v == "true" {
		c.Enabled = true
	}
	if v, ok := s.localConfig(XMPPListen); ok {
		if v == ListenNone {
			c.Listen = []string{}
		} else {
			c.Listen = strings.Fields(v)
		}
	}
	sort.SliceStable(c.Domains, func(i, j int) bool {
		if c.Domains[i].Primary != c.Domains[j].Primary {
			return c.Domains[i].Primary
		}
		return c.Domains[i].Name < c.Domains[j].Name
	})
	return c, err
}

// DomainPrimary makes Name the primary domain, replacing the old primary
// (which stays hosted, not primary, only if it was added with
// multi-domain). Certs, if set, gives its key, certificate and bundle.
type DomainPrimary struct {
	Name  string  `json:"name"`
	Certs *Domain `json:"certs,omitempty"`
}

// DomainPut adds or replaces a hosted domain, keeping Primary as it was.
type DomainPut struct {
	Domain Domain `json:"domain"`
}

// DomainDel stops hosting a domain.
type DomainDel struct {
	Name string `json:"name"`
}

// XMPPReset deletes every domain and every xmpp.* setting; accounts stay.
// (The node-local xmpp.listen and xmpp.enabled go with Store.DelLocal.)
type XMPPReset struct{}

func (DomainPrimary) Kind() OpKind { return "domain.primary" }
func (DomainPut) Kind() OpKind     { return "domain.put" }
func (DomainDel) Kind() OpKind     { return "domain.del" }
func (XMPPReset) Kind() OpKind     { return "xmpp.reset" }

func (o DomainPrimary) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	b := tx.Bucket(bucketDomains)
	var keep *Domain
	if ok, err := getJSON(b, o.Name, &keep); err != nil {
		return nil, err
	} else if !ok {
		keep = &Domain{Name: o.Name}
	}
	var drop []string
	b.ForEach(func(k, v []byte) error {
		var d Domain
		if json.Unmarshal(v, &d) == nil && d.Primary && d.Name != o.Name {
			drop = append(drop, d.Name)
		}
		return nil
	})
	for _, n := range drop {
		if err := b.Delete([]byte(n)); err != nil {
			return nil, err
		}
	}
	keep.Primary = true
	if o.Certs != nil { // certificates given with the change
		keep.Key, keep.Cert, keep.Bundle = o.Certs.Key, o.Certs.Cert, o.Certs.Bundle
	}
	return nil, putJSON(b, keep.Name, keep)
}

func (o DomainPut) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	b := tx.Bucket(bucketDomains)
	if o.Domain.Name == "" {
		return nil, errors.New("domain.put without a domain")
	}
	var old Domain
	ok, err := getJSON(b, o.Domain.Name, &old)
	if err != nil {
		return nil, err
	}
	d := o.Domain
	d.Primary = ok && old.Primary
	return nil, putJSON(b, d.Name, d)
}

func (o DomainDel) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	b := tx.Bucket(bucketDomains)
	if b.Get([]byte(o.Name)) == nil {
		return nil, fmt.Errorf("domain %s: %w", o.Name, ErrNotFound)
	}
	return nil, b.Delete([]byte(o.Name))
}

func (XMPPReset) apply(tx *bolt.Tx, _ time.Time) (any, error) { return nil, applyXMPPReset(tx) }

// XMPPConfigPrefix starts every XMPP setting's key in the config bucket.
const XMPPConfigPrefix = "xmpp."

// applyXMPPReset deletes every hosted domain and every XMPP setting (keys
// starting with XMPPConfigPrefix, and the domains' directories), in the
// one transaction. Accounts and their data are kept.
func applyXMPPReset(tx *bolt.Tx) error {
	if tx.Bucket(bucketDirectories) != nil {
		if err := tx.DeleteBucket(bucketDirectories); err != nil {
			return err
		}
	}
	for _, bucket := range [][]byte{bucketDomains, bucketConfig} {
		b := tx.Bucket(bucket)
		var keys [][]byte
		err := b.ForEach(func(k, v []byte) error {
			if bytes.Equal(bucket, bucketDomains) || bytes.HasPrefix(k, []byte(XMPPConfigPrefix)) {
				keys = append(keys, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
	}
	return nil
}

// SCRAMIterations is the PBKDF2 iteration count for new credentials.
const SCRAMIterations = 4096

// SCRAMKey is one SCRAM credential: the salt, iteration count and the
// salted password (RFC 5802 SaltedPassword). The password itself is never
// stored.
type SCRAMKey struct {
	Salt   []byte `json:"salt"`
	Iter   int    `json:"iter"`
	Salted []byte `json:"salted"`
}

// Account is one XMPP user account.
type Account struct {
	JID     string    `json:"jid"` // bare, normalized: local@domain
	SHA1    SCRAMKey  `json:"scram_sha1"`
	SHA256  SCRAMKey  `json:"scram_sha256"`
	Created time.Time `json:"created"`
	// Directory marks an account made at its first login from the domain's
	// LDAP directory: it has no credentials here (the directory checks
	// its password), only its data (roster, offline messages, vCard).
	Directory bool `json:"directory,omitempty"`
}

// PreparePassword applies the PRECIS OpaqueString profile (RFC 8265) to
// an XMPP password, as SCRAM clients do before salting it (RFC 7677, RFC
// 5802 "Normalize"): without it, a password with non-ASCII spaces or
// characters in another Unicode normalization form would never match.
func PreparePassword(password string) (string, error) {
	if len(password) > MaxPasswordLength {
		return "", fmt.Errorf("password is longer than %d bytes", MaxPasswordLength)
	}
	p, err := precis.OpaqueString.String(password)
	if err != nil {
		return "", fmt.Errorf("the password has characters that are not allowed in XMPP passwords (RFC 8265): %v", err)
	}
	return p, nil
}

// NewAccount derives the SCRAM-SHA-1 and SCRAM-SHA-256 credentials of a
// password (prepared with PreparePassword), each with its own random salt.
func NewAccount(jid, password string) (Account, error) {
	password, err := PreparePassword(password)
	if err != nil {
		return Account{}, err
	}
	a := Account{JID: jid}
	for _, k := range []*SCRAMKey{&a.SHA1, &a.SHA256} {
		k.Salt, k.Iter = make([]byte, 16), SCRAMIterations
		if _, err := rand.Read(k.Salt); err != nil {
			return a, err
		}
	}
	a.SHA1.Salted = sasl.SCRAMSaltPassword(sha1.New, []byte(password), a.SHA1.Salt, a.SHA1.Iter)
	a.SHA256.Salted = sasl.SCRAMSaltPassword(sha256.New, []byte(password), a.SHA256.Salt, a.SHA256.Iter)
	return a, nil
}

// CheckPassword reports whether password is the account's, comparing the
// SCRAM-SHA-256 salted password in constant time (for SASL PLAIN).
func (a *Account) CheckPassword(password string) bool {
	password, err := PreparePassword(password)
	if err != nil || a.SHA256.Iter <= 0 {
		return false
	}
	got := sasl.SCRAMSaltPassword(sha256.New, []byte(password), a.SHA256.Salt, a.SHA256.Iter)
	return subtle.ConstantTimeCompare(got, a.SHA256.Salted) == 1
}

// Domain returns the domain part of the account's JID.
func (a *Account) Domain() string { return address.Domain(a.JID) }

// Account returns one account by bare JID.
func (s *Store) Account(jid string) (Account, error) {
	var a Account
	err := s.view(func(tx *bolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bucketAccounts), jid, &a)
		if err == nil && !ok {
			err = fmt.Errorf("no account %s: %w", jid, ErrNotFound)
		}
		return err
	})
	return a, err
}

// Accounts returns the accounts of a domain (every account if domain is
// empty), by JID.
func (s *Store) Accounts(domain string) ([]Account, error) {
	var out []Account
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAccounts).ForEach(func(k, v []byte) error {
			if domain != "" && !bytes.HasSuffix(k, []byte("@"+domain)) {
				return nil
			}
			var a Account
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
			out = append(out, a)
			return nil
		})
	})
	return out, err
}

// AccountCreate creates accounts (one, or an import's batch, all or
// none); an existing one fails with ErrExists unless SkipExisting.
type AccountCreate struct {
	Accounts     []Account `json:"accounts"`
	SkipExisting bool      `json:"skip_existing,omitempty"`
}

// AccountPassword replaces an account's credentials.
type AccountPassword struct {
	Account Account `json:"account"`
}

// AccountDelete deletes an account and everything it owned.
type AccountDelete struct {
	JID string `json:"jid"`
}

func (AccountCreate) Kind() OpKind   { return "account.create" }
func (AccountPassword) Kind() OpKind { return "account.password" }
func (AccountDelete) Kind() OpKind   { return "account.delete" }

func (o AccountCreate) apply(tx *bolt.Tx, at time.Time) (any, error) {
	b := tx.Bucket(bucketAccounts)
	for _, a := range o.Accounts {
		if a.JID == "" {
			return nil, errors.New("account without a JID")
		}
		if b.Get([]byte(a.JID)) != nil {
			if o.SkipExisting {
				continue
			}
			return nil, fmt.Errorf("account %s %w", a.JID, ErrExists)
		}
		a.Created = at
		if err := putJSON(b, a.JID, a); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

func (o AccountPassword) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	b := tx.Bucket(bucketAccounts)
	var old Account
	if ok, err := getJSON(b, o.Account.JID, &old); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("account %s: %w", o.Account.JID, ErrNotFound)
	}
	a := o.Account
	a.Created = old.Created
	return nil, putJSON(b, a.JID, a)
}

func (o AccountDelete) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	b := tx.Bucket(bucketAccounts)
	if b.Get([]byte(o.JID)) == nil {
		return nil, fmt.Errorf("account %s: %w", o.JID, ErrNotFound)
	}
	if err := b.Delete([]byte(o.JID)); err != nil {
		return nil, err
	}
	// Everything the account owned goes with it.
	for _, name := range [][]byte{bucketRosters, bucketOffline, bucketVCards, bucketPrivate, bucketLast} {
		p := tx.Bucket(name)
		if p.Bucket([]byte(o.JID)) != nil {
			if err := p.DeleteBucket([]byte(o.JID)); err != nil {
				return nil, err
			}
		} else if p.Get([]byte(o.JID)) != nil {
			if err := p.Delete([]byte(o.JID)); err != nil {
				return nil, err
			}
		}
	}
	return nil, nil
}
