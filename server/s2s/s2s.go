// Package s2s owns federation: server-to-server streams (RFC 6120
// jabber:server) in both directions. Outgoing: one queue and one TCP
// connection per (local domain, remote domain) pair, found by SRV
// (_xmpps-server/_xmpp-server, XEP-0368) with A/AAAA fallback or a
// configured relay, STARTTLS always, the peer authenticated by SASL
// EXTERNAL (XEP-0178) when its certificate verifies and by dialback
// (XEP-0220) otherwise, closed after an idle period; stanzas queued while
// the link is set up and bounced when it cannot be. Incoming: STARTTLS
// required, EXTERNAL or dialback per domain pair, every stanza's from
// checked against the domains authenticated on that stream. The secure
// list (domains that must present a verified certificate) and the
// block/allow policy apply both ways. Status reports the links and the
// recent failures as status.Link and status.Failure; Authenticate sets up
// one link for the federation check.
package s2s

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/parley-xmpp/parley/server/address"
	"github.com/parley-xmpp/parley/server/limit"
	"github.com/parley-xmpp/parley/server/metrics"
	"github.com/parley-xmpp/parley/server/resolve"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// Namespaces of server streams.
const (
	NSDialback        = "jabber:server:dialback"
	NSDialbackFeature = "urn:xmpp:features:dialback"
)

// Handler is the IM core as federation sees it.
type Handler interface {
	// FromRemote takes a stanza from another server (jabber:client
	// namespace), its from and to already checked.
	FromRemote(el *xml.Element)
	// Local reports whether a domain is served here (hosted or a
	// component's).
	Local(domain string) bool
	// Bounce answers a local sender's stanza that could not be delivered
	// with a stanza error (never an error or a result).
	Bounce(el *xml.Element, condition, text string)
}

// Config is what federation is built with.
type Config struct {
	Handler    Handler
	Resolver   *resolve.Resolver
	Federation func() store.FederationConfig        // the current settings
	Roots      func() (*x509.CertPool, error)       // system roots plus the trust bundle
	Cert       func(domain string) *tls.Certificate // our certificate for a local domain
	TLS        func() *tls.Config                   // server side of STARTTLS (certificates by SNI)
	// SourceIP, if set, picks the local address outgoing links are made
	// from, for a destination (the appliance's XMPP address, so that
	// firewalls see the address the peers know); invalid: the system's
	// choice.
	SourceIP func(dst netip.Addr) netip.Addr
	// Dialed, if set, is given each TCP connection made to another
	// server (for local → remote) and returns the one to use instead
	// (the engine's byte counters).
	Dialed func(c net.Conn, local, remote string) net.Conn
	Limits xml.Limits
	Log    *slog.Logger //
	// Bounds (defaults in New).
	ConnectTimeout time.Duration        // the whole set-up of an outgoing link, default 30 s
	AuthTimeout    func() time.Duration // negotiation of an incoming stream, default 30 s
	MaxQueue       int                  // stanzas waiting for a link being set up, default 1000
	// Caps on what local senders can make federation hold (defaults in
	// New): over one, the stanza bounces with resource-constraint.
	MaxQueueBytes   int // bytes waiting for one link being set up, default 1 MiB
	MaxPendingBytes int // bytes waiting for all links being set up, default 16 MiB
	MaxPendingLinks int // outgoing links being set up at once, default 256
	MaxLinks        int // outgoing links in all, default 2000
	// StanzaRate is the rate of stanzas one incoming stream may send (nil:
	// limit.DefaultRate and limit.DefaultBurst times limit.LinkFactor).
	StanzaRate func() (perSecond float64, burst int)
	// Episodes logs failures and limits hit, one line per episode (nil:
	// one of its own on Log).
	Episodes *limit.Episodes
	// Secret is the dialback secret (XEP-0185), asked for each key made
	// or checked: the cluster's one, so that a key made on one node
	// verifies on any (nil: a random one of this Service's).
	Secret func() []byte
}

// Defaults of the caps in Config.
const (
	DefaultMaxQueueBytes   = 1 << 20
	DefaultMaxPendingBytes = 16 << 20
	DefaultMaxPendingLinks = 256
	DefaultMaxLinks        = 2000
)

type pair struct{ local, remote string }

// Service runs federation.
type Service struct {
	cfg    Config
	secret []byte // dialback secret when Config.Secret is nil, new at every start

	mu       sync.Mutex
	out      map[pair]*outLink
	in       map[*inStream]struct{}
	failures map[pair]status.Failure
	closed   bool
	// connecting counts the outgoing links being set up, pendingBytes the
	// bytes queued on them.
	connecting   int
	pendingBytes int
}

// New builds the federation service.
func New(cfg Config) *Service {
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 30 * time.Second
	}
	if cfg.AuthTimeout == nil {
		cfg.AuthTimeout = func() time.Duration { return 30 * time.Second }
	}
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = 1000
	}
	if cfg.Limits.MaxStanza == 0 {
		cfg.Limits = xml.DefaultLimits
	}
	if cfg.MaxQueueBytes == 0 {
		cfg.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if cfg.MaxPendingBytes == 0 {
		cfg.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if cfg.MaxPendingLinks == 0 {
		cfg.MaxPendingLinks = DefaultMaxPendingLinks
	}
	if cfg.MaxLinks == 0 {
		cfg.MaxLinks = DefaultMaxLinks
	}
	if cfg.Episodes == nil {
		cfg.Episodes = limit.NewEpisodes(cfg.Log)
	}
	s := &Service{cfg: cfg, out: map[pair]*outLink{}, in: map[*inStream]struct{}{}, failures: map[pair]status.Failure{}}
	s.secret = make([]byte, 32)
	rand.Read(s.secret)
	return s
}

// dialbackKey is the XEP-0185 key: HMAC-SHA256 keyed with SHA-256 of the
// secret over "receiving originating streamID", in hex.
func (s *Service) dialbackKey(receiving, originating, id string) string {
	secret := s.secret
	if s.cfg.Secret != nil {
		secret = s.cfg.Secret()
	}
	k := sha256.Sum256(secret)
	m := hmac.New(sha256.New, k[:])
	m.Write([]byte(receiving + " " + originating + " " + id))
	return hex.EncodeToString(m.Sum(nil))
}

func (s *Service) fail(p pair, err string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) > 256 {
		s.failures = map[pair]status.Failure{}
	}
	s.failures[p] = status.Failure{Local: p.local, Remote: p.remote, Error: err, At: time.Now()}
	// One line per episode: a user writing to thousands of domains that
	// do not exist must not write thousands of lines (xmpp federation
	// lists the recent failures one by one).
	s.cfg.Episodes.Printf("s2s: failures to reach other servers", "s2s: %s → %s: %s", p.local, p.remote, err)
}

// Status lists the links and recent failures.
func (s *Service) Status() ([]status.Link, []status.Failure) {
	outs, ins := s.snapshot()
	s.mu.Lock()
	var fails []status.Failure
	for _, f := range s.failures {
		fails = append(fails, f)
	}
	s.mu.Unlock()
	var links []status.Link
	for _, l := range outs {
		links = append(links, l.link())
	}
	for _, st := range ins {
		links = append(links, st.links()...)
	}
	status.SortLinks(links)
	status.SortFailures(fails)
	return links, fails
}

// Route sends a stanza (jabber:client namespace, from and to set) to the
// server of its to-domain. It never blocks: the stanza is queued on the
// pair's link, which is set up if needed; when it cannot be delivered the
// sender gets an error reply through the handler.
func (s *Service) Route(el *xml.Element) {
	// from and to come normalized from the IM core: the domain parts are
	// all that is needed, without parsing the addresses again.
	p := pair{local: address.Domain(el.Get("from")), remote: address.Domain(el.Get("to"))}
	if p.local == "" || p.remote == "" {
		return
	}
	fed := s.cfg.Federation()
	switch {
	case !fed.Enabled:
		s.bounce(el, "remote-server-not-found", "federation with other servers is disabled here")
		return
	case !fed.Permitted(p.remote):
		s.bounce(el, "not-allowed", "federation with "+p.remote+" is not allowed by this server's policy")
		return
	case !s.cfg.Handler.Local(p.local):
		s.bounce(el, "not-allowed", p.local+" is not served here")
		return
	}
	for try := 0; try < 3; try++ {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			s.bounce(el, "remote-server-not-found", "the server is shutting down")
			return
		}
		l := s.out[p]
		if l == nil {
			if refused := s.linkCap(); refused != "" {
				s.mu.Unlock()
				s.cfg.Episodes.Printf("s2s: links refused", "s2s: %s → %s: %s", p.local, p.remote, refused)
				s.bounce(el, "resource-constraint", refused)
				return
			}
			l = s.newOutLink(p)
			s.out[p] = l
			s.connecting++
			go l.run()
		}
		s.mu.Unlock()
		if l.send(el) {
			return
		}
	}
	s.bounce(el, "remote-server-timeout", "the link to "+p.remote+" kept closing")
}

// linkCap says why no new outgoing link may be made now ("" if one may).
// The caller holds s.mu.
func (s *Service) linkCap() string {
	switch {
	case s.connecting >= s.cfg.MaxPendingLinks:
		return fmt.Sprintf("too many links to other servers are being set up (%d): try again shortly", s.cfg.MaxPendingLinks)
	case len(s.out) >= s.cfg.MaxLinks:
		return fmt.Sprintf("this server has as many links to other servers as it allows (%d)", s.cfg.MaxLinks)
	}
	return ""
}

// bounce answers a stanza that cannot be delivered, through the IM core's
// bounce (which drops errors and results, RFC 6120 §8.3.1).
func (s *Service) bounce(el *xml.Element, condition, text string) {
	if el.Name.Local == "presence" && el.Get("type") != "subscribe" {
		return // presence broadcasts to an unreachable server just go nowhere
	}
	metrics.S2SBounce(condition)
	s.cfg.Handler.Bounce(el, condition, text)
}

// Reconfigure applies a settings change: everything closes when
// federation is disabled, links to domains no longer permitted close, and
// so do links to domains now on the secure list without a verified
// certificate; open links take the idle timeout now in force.
func (s *Service) Reconfigure() {
	fed := s.cfg.Federation()
	outs, ins := s.snapshot()
	for _, l := range outs {
		if !fed.Enabled || !fed.Permitted(l.p.remote) || (fed.SecureRequired(l.p.remote) && !l.verified()) {
			l.close(&stream.Error{Condition: "policy-violation", Text: "federation settings changed"})
			continue
		}
		l.retime(fed.IdleTimeout)
	}
	for _, st := range ins {
		st.reconfigure(fed)
	}
}

// Close ends every link (system-shutdown) and refuses new ones.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.closeAll(&stream.Error{Condition: "system-shutdown", Text: "the server is shutting down"})
}

// Open accepts new links again after Close (the service was re-enabled).
func (s *Service) Open() {
	s.mu.Lock()
	s.closed = false
	s.mu.Unlock()
}

// snapshot lists the links, to act on them outside the service's lock.
func (s *Service) snapshot() ([]*outLink, []*inStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	outs := make([]*outLink, 0, len(s.out))
	for _, l := range s.out {
		outs = append(outs, l)
	}
	ins := make([]*inStream, 0, len(s.in))
	for st := range s.in {
		ins = append(ins, st)
	}
	return outs, ins
}

func (s *Service) closeAll(e *stream.Error) {
	outs, ins := s.snapshot()
	for _, l := range outs {
		l.close(e)
	}
	for _, st := range ins {
		st.close(e)
	}
}

// serverHeader is the opening of a server stream, with the dialback
// namespace declared on the stream element as prefix db.
func serverHeader(from, to, id string) []byte {
	h := stream.Header(stream.NSServer, from, to, id)
	return []byte(strings.Replace(string(h), "<stream:stream ", "<stream:stream xmlns:db='"+NSDialback+"' ", 1))
}

// dialbackBytes serializes a dialback element with the db prefix declared
// on the stream (<db:result/>, <db:verify/>), as XEP-0220 writes them:
// some servers (ejabberd) match the prefixed name and drop the same element
// written with a default namespace.
func dialbackBytes(el *xml.Element) []byte {
	b := string(el.Bytes(NSDialback)) // no xmlns on the element itself
	name := el.Name.Local
	b = "<db:" + strings.TrimPrefix(b, "<")
	if strings.HasSuffix(b, "</"+name+">") {
		b = strings.TrimSuffix(b, "</"+name+">") + "</db:" + name + ">"
	}
	return []byte(b)
}

// parseDomain is the domain part of an address from the network, prepared
// (PRECIS, IDNA), or "" when it is not a valid JID.
func parseDomain(j string) string {
	if p, err := jid.Parse(j); err == nil {
		return p.Domainpart()
	}
	return ""
}

// Authenticate sets up and authenticates a link from local to remote on a
// connection of its own, then closes it: the last step of `xmpp federation
// check`. It reports the method used (EXTERNAL or dialback).
func (s *Service) Authenticate(ctx context.Context, local, remote string) (status.Auth, error) {
	if !s.cfg.Handler.Local(local) {
		return "", &linkError{"not-allowed", local + " is not served here"}
	}
	est, err := s.connect(ctx, pair{local, remote}, true)
	if err != nil {
		return "", err
	}
	est.raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
	est.raw.Write(stream.Close)
	est.raw.Close()
	return est.auth, nil
}
