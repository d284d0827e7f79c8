// Package directory owns the LDAP side of accounts that come from a company
// directory: a client with a bounded pool of connections and bounded
// timeouts (Client), password checks by a search for the user (the user's
// input escaped per RFC 4515) and a bind as the entry found
// (Authenticate), look-ups for vCards (Lookup, VCard), errors classified
// so that a directory that is down is told apart from a wrong password
// (ErrUnavailable, ErrBadCredentials), its health, and the step-by-step
// check behind `xmpp directory test` (Check). It uses
// github.com/go-ldap/ldap/v3 and knows nothing of the store or the shell.
package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Errors a caller tells apart: ErrUnavailable means the directory could not
// answer (try again later: SASL temporary-auth-failure), ErrBadCredentials
// that the user is unknown, ambiguous or gave a wrong password (SASL
// not-authorized).
var (
	ErrUnavailable    = errors.New("the directory is unavailable")
	ErrBadCredentials = errors.New("wrong user name or password")
	// ErrNoEntry (with ErrBadCredentials) means no entry matches the user.
	ErrNoEntry = errors.New("no entry")
)

// Defaults of Config's bounds.
const (
	DefaultDialTimeout = 3 * time.Second
	DefaultOpTimeout   = 5 * time.Second
	DefaultPool        = 8
	DefaultBackoff     = 2 * time.Second
	// MaxPassword bounds the password sent to the directory.
	MaxPassword = 1024
	// MaxAttributeBytes bounds each attribute value kept from an entry
	// (a jpegPhoto larger than this is dropped).
	MaxAttributeBytes = 256 << 10
)

// Config is one directory: where it is, how to reach it securely, whom to
// search as, and how users are found.
type Config struct {
	URL          string // ldap://host[:port] or ldaps://host[:port]
	Base         string // base DN of the user search
	BindDN       string // "" for an anonymous search
	BindPassword string
	StartTLS     bool
	Roots        *x509.CertPool // nil: the system roots
	UserFilter   string         // e.g. (objectClass=inetOrgPerson)
	JIDFrom      string         // "mail": the JID is the e-mail address; else the attribute holding the JID's user part
	GroupsBase   string         // where roster groups are searched ("" for none)
	GroupFilter  string         // which entries there are groups

	DialTimeout time.Duration // connect, TLS and the search bind (0: DefaultDialTimeout)
	OpTimeout   time.Duration // each request (0: DefaultOpTimeout)
	Pool        int           // connections at most (0: DefaultPool)
	// Backoff: after a failure to connect, requests fail at once for this
	// long instead of each waiting for the dial (0: DefaultBackoff).
	Backoff time.Duration
}

var attrName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]{0,62}$`)

// Validate checks a configuration's syntax: the URL, the filter and the
// attribute.
func Validate(cfg Config) error {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("%q is not an LDAP server URL: give ldap://host[:port] or ldaps://host[:port]", cfg.URL)
	}
	if cfg.StartTLS && u.Scheme == "ldaps" {
		return errors.New("starttls is for ldap:// URLs: ldaps:// is TLS from the start")
	}
	if _, err := ldap.ParseDN(cfg.Base); err != nil || cfg.Base == "" {
		return fmt.Errorf("%q is not a DN: give e.g. ou=people,dc=example,dc=com", cfg.Base)
	}
	if cfg.BindDN != "" {
		if _, err := ldap.ParseDN(cfg.BindDN); err != nil {
			return fmt.Errorf("%q is not a DN: give e.g. cn=parley,ou=services,dc=example,dc=com", cfg.BindDN)
		}
	}
	if f := cfg.UserFilter; f != "" {
		if !strings.HasPrefix(f, "(") {
			return fmt.Errorf("%q is not an LDAP filter: write it in parentheses, e.g. (objectClass=inetOrgPerson)", f)
		}
		if _, err := ldap.CompileFilter(f); err != nil {
			return fmt.Errorf("%q is not an LDAP filter (RFC 4515): %v", f, err)
		}
	}
	if cfg.GroupsBase != "" {
		if _, err := ldap.ParseDN(cfg.GroupsBase); err != nil {
			return fmt.Errorf("%q is not a DN: give e.g. ou=groups,dc=example,dc=com", cfg.GroupsBase)
		}
	}
	if f := cfg.GroupFilter; f != "" {
		if !strings.HasPrefix(f, "(") {
			return fmt.Errorf("%q is not an LDAP filter: write it in parentheses, e.g. (objectClass=groupOfNames)", f)
		}
		if _, err := ldap.CompileFilter(f); err != nil {
			return fmt.Errorf("%q is not an LDAP filter (RFC 4515): %v", f, err)
		}
	}
	if a := cfg.JIDFrom; a != "" && !attrName.MatchString(a) {
		return fmt.Errorf("%q is not an LDAP attribute name: give e.g. mail or uid", a)
	}
	return nil
}

// Client talks to one directory. It is safe for concurrent use; at most
// Config.Pool requests run at once, the others wait for a connection within
// their own deadline.
type Client struct {
	cfg   Config
	u     *url.URL
	slots chan struct{}
	idle  chan *conn

	mu        sync.Mutex
	members   map[string]member // member DN → user (groups.go), bounded
	downUntil time.Time
	health    Health
	closed    bool
}

// Health is what the client last saw of its directory.
type Health struct {
	Known   bool      // a request has been made
	OK      bool      // the last request reached the directory
	At      time.Time // of the last request
	Error   string    // why the last one failed, if it did
	Since   time.Time // the state (OK or not) holds since then
	Entries int       // how many users the last look-ups found (diagnostic)
}

type conn struct {
	l     *ldap.Conn
	raw   net.Conn
	dirty bool // bound as a user: bind as the searcher before searching
}

// New makes a client; it connects only when asked something.
func New(cfg Config) (*Client, error) {
	if err := Validate(cfg); err != nil {
		return nil, err
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = DefaultOpTimeout
	}
	if cfg.Pool <= 0 {
		cfg.Pool = DefaultPool
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.UserFilter == "" {
		cfg.UserFilter = "(objectClass=inetOrgPerson)"
	}
	if cfg.JIDFrom == "" {
		cfg.JIDFrom = "mail"
	}
	u, _ := url.Parse(cfg.URL)
	return &Client{cfg: cfg, u: u, slots: make(chan struct{}, cfg.Pool), idle: make(chan *conn, cfg.Pool)}, nil
}

// Close closes the idle connections; requests in flight finish and close
// theirs.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.drain()
}

// Health returns what the client last saw of the directory.
func (c *Client) Health() Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.health
}

func (c *Client) record(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ok := err == nil || !errors.Is(err, ErrUnavailable)
	now := time.Now()
	if !c.health.Known || c.health.OK != ok {
		c.health.Since = now
	}
	c.health.Known, c.health.OK, c.health.At = true, ok, now
	c.health.Error = ""
	if !ok {
		c.health.Error = err.Error()
	}
}

// tlsConfig is the TLS configuration for the directory's host.
func (c *Client) tlsConfig() *tls.Config {
	return &tls.Config{ServerName: c.u.Hostname(), RootCAs: c.cfg.Roots, MinVersion: tls.VersionTLS12}
}

// hostPort is the URL's host with the scheme's default port.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "ldaps" {
		return net.JoinHostPort(u.Hostname(), "636")
	}
	return net.JoinHostPort(u.Hostname(), "389")
}

// unavailable wraps a failure to reach or use the directory.
func unavailable(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUnavailable, fmt.Sprintf(format, a...))
}

// dial connects, secures and binds as the searcher, all within the dial
// timeout and ctx.
func (c *Client) dial(ctx context.Context) (*conn, error) {
	deadline := time.Now().Add(c.cfg.DialTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	d := net.Dialer{Deadline: deadline}
	raw, err := d.DialContext(ctx, "tcp", hostPort(c.u))
	if err != nil {
		return nil, unavailable("cannot connect to %s: %v", hostPort(c.u), err)
	}
	raw.SetDeadline(deadline)
	var l *ldap.Conn
	if c.u.Scheme == "ldaps" {
		tc := tls.Client(raw, c.tlsConfig())
		if err := tc.Handshake(); err != nil {
			raw.Close()
			return nil, unavailable("TLS with %s: %v", hostPort(c.u), err)
		}
		l = ldap.NewConn(tc, true)
	} else {
		l = ldap.NewConn(raw, false)
	}
	l.Start()
	l.SetTimeout(c.cfg.OpTimeout)
	if c.cfg.StartTLS {
		if err := l.StartTLS(c.tlsConfig()); err != nil {
			l.Close()
			return nil, unavailable("StartTLS with %s: %v", hostPort(c.u), err)
		}
	}
	cn := &conn{l: l, raw: raw}
	if err := c.bindSearcher(cn); err != nil {
		l.Close()
		return nil, err
	}
	raw.SetDeadline(time.Time{})
	return cn, nil
}

// bindSearcher binds as the configured DN, or anonymously.
func (c *Client) bindSearcher(cn *conn) error {
	var err error
	if c.cfg.BindDN == "" {
		err = cn.l.UnauthenticatedBind("")
	} else {
		err = cn.l.Bind(c.cfg.BindDN, c.cfg.BindPassword)
	}
	if err != nil {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			return unavailable("the directory refused the bind as %s: wrong bind DN or password (set them again with xmpp directory ... bind)", orAnonymous(c.cfg.BindDN))
		}
		return unavailable("bind as %s: %v", orAnonymous(c.cfg.BindDN), err)
	}
	cn.dirty = false
	return nil
}

func orAnonymous(dn string) string {
	if dn == "" {
		return "anonymous"
	}
	return dn
}

// get takes a connection: an idle one, else a new one, waiting for a free
// slot until ctx ends. fresh says it was just dialed.
func (c *Client) get(ctx context.Context) (cn *conn, fresh bool, err error) {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, false, unavailable("every connection to the directory is busy")
	}
	select {
	case cn := <-c.idle:
		return cn, false, nil
	default:
	}
	c.mu.Lock()
	down, last := time.Now().Before(c.downUntil), c.health.Error
	c.mu.Unlock()
	if down {
		<-c.slots
		return nil, false, unavailable("%s", strings.TrimPrefix(last, ErrUnavailable.Error()+": "))
	}
	cn, err = c.dial(ctx)
	if err != nil {
		c.mu.Lock()
		c.downUntil = time.Now().Add(c.cfg.Backoff)
		c.mu.Unlock()
		<-c.slots
		return nil, false, err
	}
	return cn, true, nil
}

// drain closes the idle connections.
func (c *Client) drain() {
	for {
		select {
		case cn := <-c.idle:
			cn.l.Close()
		default:
			return
		}
	}
}

// put returns a connection: kept if it is healthy, else closed.
func (c *Client) put(cn *conn, broken bool) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if broken || closed || cn.l.IsClosing() {
		cn.l.Close()
	} else {
		select {
		case c.idle <- cn:
		default:
			cn.l.Close()
		}
	}
	<-c.slots
}

// networkish reports whether an error means the connection is unusable.
func networkish(err error) bool {
	var le *ldap.Error
	if errors.As(err, &le) {
		switch le.ResultCode {
		case ldap.ErrorNetwork, ldap.LDAPResultBusy, ldap.LDAPResultUnavailable, ldap.LDAPResultServerDown,
			ldap.LDAPResultTimeout, ldap.LDAPResultConnectError:
			return true
		}
		return false
	}
	return err != nil
}

// with runs f on a connection bound as the searcher, within the request
// timeout. A pooled connection that fails at the network level is
// replaced by a new one once.
func (c *Client) with(ctx context.Context, f func(cn *conn) error) error {
	return c.withFor(ctx, c.cfg.OpTimeout, f)
}

// withFor is with, f bounded by timeout instead of the request timeout.
func (c *Client) withFor(ctx context.Context, timeout time.Duration, f func(cn *conn) error) error {
	for try := 0; ; try++ {
		cn, fresh, err := c.get(ctx)
		if err != nil {
			return err
		}
		deadline := time.Now().Add(timeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		cn.raw.SetDeadline(deadline)
		if cn.dirty {
			err = c.bindSearcher(cn)
		}
		if err == nil {
			err = f(cn)
		}
		cn.raw.SetDeadline(time.Time{})
		broken := err != nil && errors.Is(err, ErrUnavailable)
		c.put(cn, broken)
		if broken && !fresh && try == 0 && ctx.Err() == nil {
			// An idle connection the server had closed (it restarted):
			// the other idle ones are likely dead too.
			c.drain()
			continue
		}
		return err
	}
}

// Entry is a user's directory entry: its DN and the attributes Parley
// uses, by lower-cased name.
type Entry struct {
	DN    string
	Attrs map[string][][]byte
}

// Get returns an attribute's first value ("" if none).
func (e *Entry) Get(name string) string {
	if v := e.Attrs[strings.ToLower(name)]; len(v) > 0 {
		return string(v[0])
	}
	return ""
}

// All returns an attribute's values.
func (e *Entry) All(name string) []string {
	var out []string
	for _, v := range e.Attrs[strings.ToLower(name)] {
		out = append(out, string(v))
	}
	return out
}

// Raw returns an attribute's first value as bytes.
func (e *Entry) Raw(name string) []byte {
	if v := e.Attrs[strings.ToLower(name)]; len(v) > 0 {
		return v[0]
	}
	return nil
}

// attributes are what a user search asks for.
func (c *Client) attributes() []string {
	a := []string{"cn", "givenName", "sn", "displayName", "mail", "telephoneNumber", "mobile", "title", "o", "ou", "jpegPhoto", "uid"}
	for _, x := range a {
		if strings.EqualFold(x, c.cfg.JIDFrom) {
			return a
		}
	}
	return append(a, c.cfg.JIDFrom)
}

// Filter is the search filter that finds the user local@domain: the user
// filter and the JID attribute equal to the address (mail) or the user
// part, escaped per RFC 4515 so that no input changes the filter.
func (c *Client) Filter(local, domain string) string {
	return userFilter(c.cfg.UserFilter, c.cfg.JIDFrom, local, domain)
}

func userFilter(filter, attr, local, domain string) string {
	v := local
	if strings.EqualFold(attr, "mail") {
		v = local + "@" + domain
	}
	return "(&" + filter + "(" + attr + "=" + ldap.EscapeFilter(v) + "))"
}

// find searches for one user; ErrBadCredentials if there is none or more
// than one.
func (c *Client) find(cn *conn, local, domain string) (*Entry, error) {
	req := ldap.NewSearchRequest(c.cfg.Base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 2, int(c.cfg.OpTimeout/time.Second), false,
		c.Filter(local, domain), c.attributes(), nil)
	res, err := cn.l.Search(req)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		return nil, fmt.Errorf("%w: more than one entry matches %s@%s", ErrBadCredentials, local, domain)
	}
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return nil, unavailable("the base DN %s does not exist in the directory", c.cfg.Base)
	}
	if err != nil {
		return nil, unavailable("search: %v", err)
	}
	switch len(res.Entries) {
	case 0:
		return nil, fmt.Errorf("%w: %w for %s@%s", ErrBadCredentials, ErrNoEntry, local, domain)
	case 1:
	default:
		return nil, fmt.Errorf("%w: more than one entry matches %s@%s", ErrBadCredentials, local, domain)
	}
	return toEntry(res.Entries[0]), nil
}

func toEntry(le *ldap.Entry) *Entry {
	e := &Entry{DN: le.DN, Attrs: map[string][][]byte{}}
	for _, a := range le.Attributes {
		k := strings.ToLower(a.Name)
		for _, v := range a.ByteValues {
			if len(v) <= MaxAttributeBytes {
				e.Attrs[k] = append(e.Attrs[k], v)
			}
		}
	}
	return e
}

// Probe checks that the directory answers: a connection bound as the
// searcher reads the base entry. It updates Health.
func (c *Client) Probe(ctx context.Context) error {
	err := c.with(ctx, func(cn *conn) error {
		req := ldap.NewSearchRequest(c.cfg.Base, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, int(c.cfg.OpTimeout/time.Second), false,
			"(objectClass=*)", []string{"1.1"}, nil)
		_, err := cn.l.Search(req)
		switch {
		case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
			return unavailable("the base DN %s does not exist in the directory", c.cfg.Base)
		case err != nil:
			return unavailable("search: %v", err)
		}
		return nil
	})
	c.record(err)
	return err
}

// Lookup finds the entry of local@domain.
func (c *Client) Lookup(ctx context.Context, local, domain string) (*Entry, error) {
	var e *Entry
	err := c.with(ctx, func(cn *conn) error {
		var err error
		e, err = c.find(cn, local, domain)
		return err
	})
	c.record(err)
	return e, err
}

// Authenticate checks local@domain's password: it finds the user's entry
// and binds as it. An empty password is refused without asking (an LDAP
// bind with an empty password is anonymous, RFC 4513 §5.1.2).
func (c *Client) Authenticate(ctx context.Context, local, domain, password string) (*Entry, error) {
	if password == "" || len(password) > MaxPassword {
		return nil, fmt.Errorf("%w: empty or oversized password", ErrBadCredentials)
	}
	var e *Entry
	err := c.with(ctx, func(cn *conn) error {
		var err error
		if e, err = c.find(cn, local, domain); err != nil {
			if errors.Is(err, ErrNoEntry) {
				// A bind as nobody, so that an unknown user takes about as
				// long as a wrong password (the answer does not tell who
				// exists).
				cn.dirty = true
				if berr := cn.l.Bind("cn=nobody,"+c.cfg.Base, password); berr != nil && networkish(berr) {
					return unavailable("bind: %v", berr)
				}
			}
			return err
		}
		cn.dirty = true
		err = cn.l.Bind(e.DN, password)
		switch {
		case err == nil:
			return nil
		case ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials), ldap.IsErrorWithCode(err, ldap.LDAPResultInappropriateAuthentication):
			return fmt.Errorf("%w: the directory refused the password of %s", ErrBadCredentials, e.DN)
		case networkish(err):
			return unavailable("bind as %s: %v", e.DN, err)
		default: // e.g. an account locked by a password policy
			return fmt.Errorf("%w: the directory refused %s: %v", ErrBadCredentials, e.DN, err)
		}
	})
	c.record(err)
	if err != nil {
		return nil, err
	}
	return e, nil
}
