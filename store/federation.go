package store

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Federation (server-to-server) configuration keys in the config bucket.
// Keys with a trailing dot are prefixes: one key per entry, so that adding
// or removing one entry is one small operation and two admins editing the
// list at once never lose each other's change.
const (
	FedEnabled     = "xmpp.federation.enabled"      // "true" when server-to-server traffic is allowed
	FedIdleTimeout = "xmpp.federation.idle-timeout" // seconds an outgoing link may stay idle, default 300
	FedTrust       = "xmpp.federation.trust"        // CA bundle in the files area trusted besides the system roots
	FedAllowList   = "xmpp.federation.allow-list"   // "true": only domains with an "allow" policy federate
	FedSecure      = "xmpp.federation.secure."      // + pattern ("example.com", "*.example.com"); value "1"
	FedRoute       = "xmpp.federation.route."       // + domain; value host[:port] (port default 5269)
	FedPolicy      = "xmpp.federation.policy."      // + domain; value "block" or "allow"
	DNSResolvers   = "dns.resolvers"                // space-separated ip[:port] (port default 53); unset: /etc/resolv.conf
)

// Federation defaults and bounds.
const (
	DefaultFedIdleTimeout = 300 * time.Second
	MinFedIdleTimeout     = 5 * time.Second
	MaxFedIdleTimeout     = 24 * time.Hour
)

// Policy values.
const (
	PolicyBlock = "block"
	PolicyAllow = "allow"
)

// FederationConfig is a snapshot of the federation settings.
type FederationConfig struct {
	Enabled     bool
	IdleTimeout time.Duration
	Trust       string            // bundle file name, "" for the system roots only
	AllowList   bool              // only domains whose policy is "allow" federate
	Secure      []string          // patterns, sorted
	Routes      map[string]string // domain → host[:port]
	Policy      map[string]string // domain → PolicyBlock | PolicyAllow
}

// Federation returns the federation settings.
func (s *Store) Federation() (FederationConfig, error) {
	c := FederationConfig{IdleTimeout: DefaultFedIdleTimeout, Routes: map[string]string{}, Policy: map[string]string{}}
	err := s.view(func(tx *bolt.Tx) error {
		cfg := tx.Bucket(bucketConfig)
		c.Enabled = string(cfg.Get([]byte(FedEnabled))) == "true"
		c.AllowList = string(cfg.Get([]byte(FedAllowList))) == "true"
		c.Trust = string(cfg.Get([]byte(FedTrust)))
		if n, err := strconv.Atoi(string(cfg.Get([]byte(FedIdleTimeout)))); err == nil && n > 0 {
			c.IdleTimeout = time.Duration(n) * time.Second
		}
		cur := cfg.Cursor()
		prefix := []byte("xmpp.federation.")
		for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
			key := string(k)
			switch {
			case strings.HasPrefix(key, FedSecure):
				c.Secure = append(c.Secure, key[len(FedSecure):])
			case strings.HasPrefix(key, FedRoute):
				c.Routes[key[len(FedRoute):]] = string(v)
			case strings.HasPrefix(key, FedPolicy):
				c.Policy[key[len(FedPolicy):]] = string(v)
			}
		}
		return nil
	})
	return c, err
}

// Permitted reports whether traffic with a remote domain is allowed by the
// block list or, in allow-list mode, by the allow list.
func (c *FederationConfig) Permitted(domain string) bool {
	p := c.Policy[strings.ToLower(domain)]
	if p == PolicyBlock {
		return false
	}
	return !c.AllowList || p == PolicyAllow
}

// SecureRequired reports whether a remote domain is on the secure list:
// its traffic goes only over TLS with a verified certificate.
func (c *FederationConfig) SecureRequired(domain string) bool {
	for _, p := range c.Secure {
		if MatchDomainPattern(p, domain) {
			return true
		}
	}
	return false
}

// MatchDomainPattern matches a domain against a pattern: "example.com"
// matches itself only, "*.example.com" matches any name below example.com
// (a.example.com, a.b.example.com) but not example.com, and "*" matches
// every domain. Case and a trailing dot do not matter.
func MatchDomainPattern(pattern, domain string) bool {
	pattern = strings.TrimSuffix(strings.ToLower(pattern), ".")
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	switch {
	case pattern == "*":
		return domain != ""
	case strings.HasPrefix(pattern, "*."):
		return strings.HasSuffix(domain, pattern[1:]) && len(domain) > len(pattern)-1
	default:
		return pattern == domain
	}
}

// Resolvers returns the configured DNS servers (ip:port), nil when the
// system's /etc/resolv.conf applies.
func (s *Store) Resolvers() []string {
	v, ok := s.Config(DNSResolvers)
	if !ok || strings.TrimSpace(v) == "" {
		return nil
	}
	return strings.Fields(v)
}
