// Package c2s owns client streams (RFC 6120): STARTTLS (required before
// authentication), SASL with SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN through
// mellium.im/sasl with stored salted credentials, resource binding from the
// SASL identity only, and the session's read loop, which stamps `from` on
// everything the client sends and hands it to the Handler.
package c2s

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-xmpp/parley/server/authlimit"
	"github.com/parley-xmpp/parley/server/limit"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/tlsrec"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// Accounts looks up credentials.
type Accounts interface {
	Account(bareJID string) (store.Account, error)
}

// Directory checks the passwords of a domain whose accounts come from a
// company directory (server/directory): such a domain offers PLAIN only
// (SCRAM needs keys stored here), and only over TLS as every mechanism.
type Directory interface {
	// Authenticate checks local@domain's password, and makes the account
	// here if it is the user's first login. An error wrapping
	// directory.ErrUnavailable means the directory could not answer
	// (temporary-auth-failure); any other, a wrong user or password
	// (not-authorized). It returns by ctx's deadline.
	Authenticate(ctx context.Context, local, domain, password string) error
}

// Handler receives what bound sessions do (a *Session is the
// router.Session it is given).
type Handler interface {
	// Online is called once the session is bound.
	Online(s router.Session)
	// Handle is called for each stanza the client sends, `from` stamped.
	Handle(s router.Session, stanza *xml.Element)
	// Offline is called after the session is unbound.
	Offline(s router.Session)
	// Undelivered is called, after the session is unbound and before
	// Offline, with the stanzas its connection accepted but could not
	// write (it failed, or closed while they were queued): the handler
	// routes, stores or bounces them as for any undeliverable stanza.
	Undelivered(s router.Session, stanzas []*xml.Element)
}

// Config is what client streams need from the engine. Functions are read at
// each use, so configuration changes apply to new streams at once.
type Config struct {
	TLS      func() *tls.Config
	Hosted   func(domain string) bool
	Accounts Accounts
	// Directory returns the directory of a domain whose accounts come from
	// one, nil for a domain of local accounts (Directory itself may be nil).
	Directory   func(domain string) Directory
	Router      *router.Router
	Handler     Handler
	AuthTimeout func() time.Duration
	IdleTimeout time.Duration // after this long without data: a ping; twice: closed
	ParkAfter   time.Duration // after this long without data: parked (0: DefaultParkAfter)
	Limits      xml.Limits
	Throttle    *authlimit.Throttle
	Log         *slog.Logger
	// MaxSessions is the limit of bound sessions (0: none).
	MaxSessions func() int
	// Features are the stream features offered after authentication
	// besides resource binding: what the IM modules registered (legacy
	// session, roster versioning, the server's entity capabilities).
	Features []byte
	// StanzaRate is how many stanzas a bound client may send: per second
	// sustained, and in a burst (nil, or a rate of 0: limit.DefaultRate
	// and limit.DefaultBurst). A client over it is not read from until it
	// is back within the rate: it is slowed down, nothing is dropped. A
	// session reads it when it starts and about once a second.
	StanzaRate func() (perSecond float64, burst int)
	// Episodes logs limits hit, one line per episode (nil: every time, to
	// Log).
	Episodes *limit.Episodes
}

// directory is the domain's directory, or nil.
func (cfg *Config) directory(domain string) Directory {
	if cfg.Directory == nil {
		return nil
	}
	return cfg.Directory(domain)
}

// stanzaRate is the configured rate, or the default.
func (cfg *Config) stanzaRate() (float64, int) { return limit.Rate(cfg.StanzaRate, 1) }

// logLimit logs a limit hit: once per episode of key with Episodes.
func (cfg *Config) logLimit(key, format string, args ...any) {
	if cfg.Episodes != nil {
		cfg.Episodes.Printf(key, format, args...)
	} else if cfg.Log != nil {
		logging.Problem(cfg.Log, format, args...)
	}
}

// Session is one client stream.
type Session struct {
	cfg      *Config
	raw      net.Conn
	rd       *xml.Reader // the stream it reads; LastRead for Info
	conn     *stream.Conn
	domain   string
	local    string
	resource string
	bare     string
	full     string
	tls      bool
	mech     uint8  // the SASL mechanism: Mechanisms[mech]
	id       uint64 // the connection's number in the log (XMPPI-id)

	in atomic.Uint64 // stanzas received from the client (the read loop counts)

	mu         sync.Mutex
	values     []value // the modules' state (router.Session's value store)
	replaced   bool
	bindResult *xml.Element
	Started    time.Time

	// Owned by the read loop.
	rate  limit.Pace // the stanzas it sends (the read loop's own)
	park  parker     // the connection, if it can be parked
	onEnd func()     // called once the session has ended
}

// Tag names the session's connection in the log.
func (s *Session) Tag() logging.Conn { return logging.ConnOf(logging.KindClient, s.id, s.raw) }

// Bare is local@domain.
func (s *Session) Bare() string { return s.bare }

// Resource is the bound resource.
func (s *Session) Resource() string { return s.resource }

// Full is the full JID.
func (s *Session) Full() string { return s.full }

// Domain is the session's domain.
func (s *Session) Domain() string { return s.domain }

// Local is the localpart.
func (s *Session) Local() string { return s.local }

// Info is what `xmpp sessions` shows of the session: its address, TLS
// version, SASL mechanism, start and stanza counts (the caller adds when
// the client last sent anything, and its availability).
func (s *Session) Info() status.Session {
	st := status.Session{JID: s.full, Since: s.Started, StanzasIn: s.in.Load(), StanzasOut: s.conn.Written(), LastRead: s.rd.LastRead()}
	if int(s.mech) < len(Mechanisms) {
		st.Mechanism = Mechanisms[s.mech]
	}
	if a := s.raw.RemoteAddr(); a != nil {
		st.Remote = a.String()
	}
	switch tc := s.raw.(type) {
	case *tls.Conn:
		st.TLS = tls.VersionName(tc.ConnectionState().Version)
	case *tlsrec.Conn:
		st.TLS = tls.VersionName(tc.Version())
	}
	return st
}

// value is one entry of the session's value store.
type value struct{ key, v any }

// Value returns what SetValue stored under key, or nil.
func (s *Session) Value(key any) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, kv := range s.values {
		if kv.key == key {
			return kv.v
		}
	}
	return nil
}

// SetValue stores v under key (a module's own key type) for the life of
// the session. The store is a short list: a session holds a few modules'
// state.
func (s *Session) SetValue(key, v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.values {
		if s.values[i].key == key {
			s.values[i].v = v
			return
		}
	}
	s.values = append(s.values, value{key, v})
}

var _ router.Session = (*Session)(nil)

// Deliver queues a stanza to the client. When it cannot (the connection is
// failing or closing) the session is unbound at once, so that the caller,
// who keeps the stanza, routes it elsewhere without finding it again.
func (s *Session) Deliver(el *xml.Element) bool {
	if s.conn.Send(el) {
		return true
	}
	s.cfg.Router.Unbind(s)
	return false
}

// Out is the session's outbound connection, for a sender that paces itself
// by the writer (the offline flush, with SendTracked and a Pacer).
func (s *Session) Out() *stream.Conn { return s.conn }

// Replace closes the session because another bound its resource.
func (s *Session) Replace() {
	s.mu.Lock()
	s.replaced = true
	s.mu.Unlock()
	s.conn.CloseWith((&stream.Error{Condition: "conflict", Text: "another session bound this resource"}).Bytes())
}

// Close ends the session with a stream error (nil: a clean end).
func (s *Session) Close(e *stream.Error) {
	if e == nil {
		s.conn.CloseWith(stream.Close)
		return
	}
	s.conn.CloseWith(e.Bytes())
}

// Serve runs a client stream whose header has been read: the negotiation
// on the caller's goroutine, then the session on a goroutine of its own,
// and it returns once the session has started (or the negotiation failed).
// The negotiation's stack (TLS handshake, SCRAM) grows to tens of KiB and a
// goroutine's stack never shrinks below four times what it uses, so an
// idle session parked on that stack would keep it for good; the fresh one
// needs only what the read loop uses.
// onBound, if not nil, is called with the session once it is bound; onEnd,
// if not nil, once the stream has ended (after a failed negotiation too).
func Serve(cfg *Config, raw net.Conn, rd *xml.Reader, header *xml.Element, direct bool, onBound func(*Session), onEnd func()) {
	if onEnd == nil {
		onEnd = func() {}
	}
	n := &negotiation{cfg: cfg, raw: raw, rd: rd, tls: direct, deadline: time.Now().Add(cfg.AuthTimeout()), id: logging.NextID()}
	raw.SetReadDeadline(n.deadline)
	if logging.On(cfg.Log, logging.LevelLow) {
		how := "plain, STARTTLS required"
		if direct {
			how = "direct TLS"
		}
		n.tag().Low(cfg.Log, "c2s: client stream to %s (%s)", xml.Clip(header.Get("to")), how)
	}
	s, err := n.run(header)
	if err != nil {
		n.tag().Low(cfg.Log, "c2s: negotiation ended: %v", err)
		// n.raw, not raw: after STARTTLS the error goes inside TLS.
		var se *stream.Error
		if errors.As(err, &se) {
			n.raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
			n.raw.Write(se.Bytes())
		}
		n.raw.Close()
		onEnd()
		return
	}
	if onBound != nil {
		onBound(s)
	}
	go s.serve(n.rd, onEnd)
}

func (s *Session) serve(rd *xml.Reader, onEnd func()) {
	cfg := s.cfg
	max := 0
	if cfg.MaxSessions != nil {
		max = cfg.MaxSessions()
	}
	if err := cfg.Router.BindChecked(s, max); err != nil {
		text := fmt.Sprintf("the server's limit of %d sessions is reached", max)
		if max == 1 {
			text = "the server's limit of 1 session is reached"
		}
		if errors.Is(err, router.ErrTooManyResources) {
			text = fmt.Sprintf("%s has %d sessions, the most one account may have: close one first", s.bare, router.MaxResources)
		}
		s.Close(&stream.Error{Condition: "resource-constraint", Text: text})
		<-s.conn.Done()
		onEnd()
		return
	}
	s.onEnd = onEnd
	// The client learns its JID only once others can reach it (and once
	// it counts against xmpp max-sessions).
	s.conn.Send(s.bindResult)
	s.bindResult = nil
	cfg.Handler.Online(s)
	// Idle handling happens below the tokenizer (a timeout must not end
	// the stream it is reading), counted from the last bytes read
	// (stanzas, whitespace keepalives, a ping's answer): silent for the
	// idle timeout, the client gets one ping; silent for twice that, the
	// stream is closed. A connection that can be parked (tlsrec.Conn on
	// Linux) is parked once the client has been silent for ParkAfter.
	idle := cfg.IdleTimeout
	s.park, _ = s.raw.(parker)
	var pingedFor time.Time // the silence a ping was sent for, by its start
	rd.OnTimeout(func(err error) error {
		last := rd.LastRead()
		quiet := time.Since(last)
		var next time.Time
		switch {
		case quiet >= 2*idle:
			return err
		case quiet >= idle:
			if !pingedFor.Equal(last) {
				pingedFor = last
				s.conn.Send(xml.New(stream.NSClient, "iq", "type", "get", "id", "idle-"+stream.NewID(), "to", s.full, "from", s.domain).
					Add(xml.New("urn:xmpp:ping", "ping")))
			}
			next = last.Add(2 * idle)
		default:
			next = last.Add(idle)
		}
		if s.park != nil && !s.park.Buffered() && !rd.Buffered() {
			if quiet >= s.parkAfter() {
				s.raw.SetReadDeadline(next) // the parked wait's
				return errPark
			}
			if t := last.Add(s.parkAfter()); t.Before(next) {
				next = t
			}
		}
		s.raw.SetReadDeadline(next)
		return nil
	})
	s.raw.SetReadDeadline(time.Now().Add(min(idle, s.parkAfter())))
	s.rate = limit.NewPace(cfg.stanzaRate)
	s.read()
}

// DefaultParkAfter is how long a client is silent before its session is
// parked. A session that is read often stays on its goroutine, as
// parking and waking cost more than a wait in the runtime's poller.
const DefaultParkAfter = 250 * time.Millisecond

// errPark is the idle handling's signal to park the session.
var errPark = errors.New("c2s: park the session")

// parkAfter is how long the client is silent before the session is
// parked (forever if it cannot be).
func (s *Session) parkAfter() time.Duration {
	switch {
	case s.park == nil:
		return time.Duration(1 << 62)
	case s.cfg.ParkAfter > 0:
		return s.cfg.ParkAfter
	}
	return DefaultParkAfter
}

// read handles the client's stanzas until the stream ends, or until the
// session is parked: then it holds no goroutine, no buffer and no cipher
// state until its client sends more, when wake reads on a new goroutine.
func (s *Session) read() {
	cfg, rd := s.cfg, s.rd
	for {
		el, err := rd.Next()
		if errors.Is(err, errPark) {
			rd.Release()
			parked, perr := s.park.Park(s.wake)
			if parked {
				return
			}
			if perr == nil {
				s.raw.SetReadDeadline(time.Now().Add(min(cfg.IdleTimeout, s.parkAfter())))
				continue // input came meanwhile
			}
			err = perr
		}
		if err != nil {
			s.conn.CloseWith(stream.Closing(stream.ReadError(err, "no data from the client")))
			break
		}
		if el.Name.Space != stream.NSClient || !isStanza(el.Name.Local) {
			s.Close(&stream.Error{Condition: "unsupported-stanza-type", Text: "<" + xml.Clip(el.Name.Local) + "> in " + xml.Clip(el.Name.Space) + " is not a stanza"})
			break
		}
		if !s.pace() {
			break
		}
		s.in.Add(1)
		// from is always the session's full JID (RFC 6120 §8.1.2.1).
		el.Set("from", s.full)
		if logging.On(cfg.Log, logging.LevelAll) {
			s.Tag().Stanza(cfg.Log, el)
		}
		cfg.Handler.Handle(s, el)
	}
	s.end()
}

// wake goes on with a parked session: input came (err nil), the read
// deadline passed, or the connection was closed.
func (s *Session) wake(err error) {
	for errors.Is(err, os.ErrDeadlineExceeded) {
		switch err = s.rd.Timeout(err); {
		case errors.Is(err, errPark):
			parked, perr := s.park.Park(s.wake)
			if parked {
				return
			}
			err = perr
		case err != nil:
			s.conn.CloseWith(stream.Closing(stream.ReadError(err, "no data from the client")))
			s.end()
			return
		}
	}
	if err != nil {
		s.conn.CloseWith(stream.Closing(stream.ReadError(err, "no data from the client")))
		s.end()
		return
	}
	// Input: read until the client is silent for parkAfter again.
	s.raw.SetReadDeadline(time.Now().Add(min(s.cfg.IdleTimeout, s.parkAfter())))
	s.read()
}

// end finishes the session once its stream is over: what the connection
// accepted and did not write goes through the delivery rule.
func (s *Session) end() {
	cfg := s.cfg
	<-s.conn.Done()
	cfg.Router.Unbind(s)
	if back := s.conn.Unwritten(); len(back) > 0 {
		if s.conn.Overflowed() {
			s.Tag().Problem(cfg.Log, "c2s: %s did not read fast enough: closed with policy-violation, %d stanzas not written are routed again", s.full, len(back))
		}
		cfg.Handler.Undelivered(s, stream.ParseStanzas(back, stream.NSClient))
	} else if s.conn.Overflowed() {
		s.Tag().Problem(cfg.Log, "c2s: %s did not read fast enough: closed with policy-violation", s.full)
	}
	cfg.Handler.Offline(s)
	s.Tag().Low(cfg.Log, "c2s: session of %s ended", s.full)
	s.onEnd()
}

// parker is a connection that can wait for input without a goroutine
// (tlsrec.Conn).
type parker interface {
	Buffered() bool
	Park(func(error)) (bool, error)
}

// pace takes a token for one stanza from the session's bucket and, when
// the client is over its rate, waits until it is back within it: the
// stream is not read meanwhile, so TCP slows the client down. It reports
// false if the session ended while it waited.
func (s *Session) pace() bool {
	w, r, b := s.rate.Take()
	if w == 0 {
		return true
	}
	s.cfg.logLimit("c2s: "+s.bare+" over the stanza rate", "c2s: %s sends more than %g stanzas/s (burst %d): reading it more slowly", s.full, r, b)
	t := time.NewTimer(w)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.conn.Done():
		return false
	}
}

func isStanza(local string) bool {
	return local == "message" || local == "presence" || local == "iq"
}
