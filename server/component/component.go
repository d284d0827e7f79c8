// Package component owns the accept side of external components (XEP-0114,
// jabber:component:accept), the way Cisco Meeting Server call bridges
// connect: the SHA-1 handshake over the stream id and the shared secret
// (compared in constant time), one live connection per component (the newest
// wins, so a restarted call bridge takes over at once), the check that a
// component sends only from its own domain, and the registry the router
// asks where a component's stanzas go and the engine asks for each
// component's status (status.Component).
package component

import (
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/parley-xmpp/parley/server/authlimit"
	"github.com/parley-xmpp/parley/server/limit"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/metrics"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// Handler receives the stanzas a component sends, already moved into the
// jabber:client namespace.
type Handler interface {
	FromComponent(component string, el *xml.Element)
	// Bounce answers the sender of a stanza that could not be delivered
	// with a stanza error (never an error or a result).
	Bounce(el *xml.Element, condition, text string)
}

// Config is what the accept side needs.
type Config struct {
	Lookup       func(jid string) (store.Component, bool)
	PlainAllowed func() bool // plain connections from other hosts than loopback
	Handler      Handler
	Limits       xml.Limits
	AuthTimeout  func() time.Duration
	Log          *slog.Logger
	// Throttle bounds the rate of handshakes per source address and per
	// component (nil: none).
	Throttle *authlimit.Throttle
	// StanzaRate is the rate of stanzas a component may send (nil:
	// limit.DefaultRate and limit.DefaultBurst times limit.LinkFactor);
	// over it, it is read more slowly.
	StanzaRate func() (perSecond float64, burst int)
	// Episodes logs limits hit once per episode (nil: every time, to Log).
	Episodes *limit.Episodes
}

// Registry holds the connected components and their recent failures.
type Registry struct {
	mu       sync.Mutex
	sessions map[string]*session
	failures map[string]failure
	onChange func(jid string, connected bool)
}

// OnChange sets a function told of every component that connects or
// whose last connection ends (the cluster's route table publishes them).
// It is called under the registry's lock, in the order of the changes:
// it must not call the registry. Set it before the first component.
func (r *Registry) OnChange(fn func(jid string, connected bool)) {
	r.mu.Lock()
	r.onChange = fn
	r.mu.Unlock()
}

type failure struct {
	what string
	at   time.Time
}

type session struct {
	jid   string
	conn  *stream.Conn
	since time.Time
	from  string
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{sessions: map[string]*session{}, failures: map[string]failure{}}
}

func (r *Registry) fail(jid, what string) {
	metrics.ComponentFailed(what)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failures) > 1000 {
		r.failures = map[string]failure{}
	}
	r.failures[jid] = failure{what, time.Now()}
}

// Route delivers a stanza to the connected component at domain. connected
// is false if no component is connected there, or if its connection is
// already closing (a stream error sent, not yet out of the registry): the
// stanza was not queued, and the sender gets a bounce, not silence.
func (r *Registry) Route(domain string, el *xml.Element) (connected bool) {
	r.mu.Lock()
	s := r.sessions[domain]
	r.mu.Unlock()
	if s == nil {
		return false
	}
	return s.conn.Send(stream.Retarget(el, stream.NSClient, stream.NSAccept))
}

// Connected lists the connected components' addresses.
func (r *Registry) Connected() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.sessions))
	for j := range r.sessions {
		out = append(out, j)
	}
	sort.Strings(out)
	return out
}

// KickName disconnects the component called name (name.<any domain>): it
// was deleted.
func (r *Registry) KickName(name string, e *stream.Error) {
	r.mu.Lock()
	var kick []*session
	for j, s := range r.sessions {
		if strings.HasPrefix(j, name+".") {
			kick = append(kick, s)
		}
	}
	r.mu.Unlock()
	for _, s := range kick {
		s.conn.CloseWith(e.Bytes())
	}
}

// CloseAll disconnects every component.
func (r *Registry) CloseAll(e *stream.Error) {
	r.mu.Lock()
	all := make([]*session, 0, len(r.sessions))
	for _, s := range r.sessions {
		all = append(all, s)
	}
	r.mu.Unlock()
	for _, s := range all {
		s.conn.CloseWith(e.Bytes())
	}
}

// Status reports every component that is connected or has failed lately.
func (r *Registry) Status() []status.Component {
	r.mu.Lock()
	defer r.mu.Unlock()
	by := map[string]*status.Component{}
	for j, s := range r.sessions {
		by[j] = &status.Component{JID: j, Connected: true, Since: s.since, From: s.from}
	}
	for j, f := range r.failures {
		st := by[j]
		if st == nil {
			st = &status.Component{JID: j}
			by[j] = st
		}
		st.LastFailure, st.LastFailureAt = f.what, f.at
	}
	out := make([]status.Component, 0, len(by))
	for _, st := range by {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].JID < out[j].JID })
	return out
}

func isLoopback(a net.Addr) bool {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Handshake is the expected handshake value: hex SHA-1 of the stream id
// followed by the secret (XEP-0114 §3).
func Handshake(id, secret string) string {
	sum := sha1.Sum([]byte(id + secret))
	return hex.EncodeToString(sum[:])
}

// throttle waits for the handshake's tokens; nil Attempt methods are no-ops.
func throttle(cfg *Config, c net.Conn, to string, deadline time.Time) (*authlimit.Attempt, error) {
	if cfg.Throttle == nil {
		return nil, nil
	}
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		host = c.RemoteAddr().String()
	}
	maxWait := time.Until(deadline) - 2*time.Second
	att, err := cfg.Throttle.Begin(host, maxWait)
	if err != nil {
		return nil, err
	}
	if err := att.Account(to, maxWait); err != nil {
		att.Failed()
		return nil, err
	}
	return att, nil
}

// Serve runs a component stream whose header has been read. tls tells
// whether the connection is encrypted.
func Serve(cfg *Config, r *Registry, c net.Conn, rd *xml.Reader, header *xml.Element, tls bool) {
	// The address is normalized as the store and the router name it (lower
	// case, U-labels, no trailing dot): a component that writes
	// CB1.Example.com or an A-label is the same component.
	to := header.Get("to")
	if j, err := jid.Parse(to); err == nil && j.Localpart() == "" && j.Resourcepart() == "" {
		to = j.Domainpart()
	}
	id := stream.NewID()
	tag := logging.ConnOf(logging.KindComponent, logging.NextID(), c)
	fail := func(cond, text string) {
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Write(stream.Header(stream.NSAccept, to, "", id))
		c.Write((&stream.Error{Condition: cond, Text: text}).Bytes())
		c.Close()
	}
	comp, ok := cfg.Lookup(to)
	if to == "" || !ok {
		r.fail(xml.Clip(to), "unknown component")
		tag.Problem(cfg.Log, "component: unknown component %q", xml.Clip(to))
		fail("host-unknown", "no component "+xml.Clip(to)+" is registered here (xmpp callbridge add)")
		return
	}
	if !tls && !isLoopback(c.RemoteAddr()) && !cfg.PlainAllowed() {
		r.fail(to, "plain connection refused")
		tag.Problem(cfg.Log, "component: %s: plain connection refused (not from loopback)", to)
		fail("policy-violation", "plain component connections are accepted from loopback only: connect with TLS to the c2s-tls port, or have an admin run xmpp callbridge plain allow")
		return
	}
	deadline := time.Now().Add(cfg.AuthTimeout())
	c.SetDeadline(deadline)
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(stream.Header(stream.NSAccept, to, "", id)); err != nil {
		c.Close()
		return
	}
	el, err := rd.Next()
	if err != nil || el.Name.Local != "handshake" || el.Name.Space != stream.NSAccept {
		r.fail(to, "no handshake")
		if err == nil || !errors.Is(err, io.EOF) {
			c.Write((&stream.Error{Condition: "not-authorized", Text: "expected a handshake"}).Bytes())
		}
		c.Close()
		return
	}
	// The handshake is a guess at the secret: it waits for a token per
	// source address and per component (package authlimit), or is refused
	// unchecked when none comes in the time the handshake may wait.
	att, err := throttle(cfg, c, to, deadline)
	c.SetWriteDeadline(time.Now().Add(5 * time.Second)) // the wait may have used up the first one
	if err != nil {
		r.fail(to, "too many failed handshakes")
		c.Write((&stream.Error{Condition: "policy-violation", Text: "too many failed handshakes: try again later"}).Bytes())
		c.Close()
		return
	}
	want := Handshake(id, comp.Secret)
	got := strings.ToLower(strings.TrimSpace(el.Text()))
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		att.Failed()
		r.fail(to, "authentication failure")
		if !att.Throttled() { // else the throttle logged the episode
			tag.Problem(cfg.Log, "component: authentication failure for %s", to)
		}
		c.Write((&stream.Error{Condition: "not-authorized", Text: "the handshake does not match the shared secret"}).Bytes())
		c.Close()
		return
	}
	att.Succeeded()
	metrics.ComponentConnected()
	c.SetDeadline(time.Time{})
	stream.Authenticated(c)
	s := &session{jid: to, conn: stream.NewConn(c, stream.NSAccept), since: time.Now(), from: c.RemoteAddr().String()}
	r.mu.Lock()
	old := r.sessions[to]
	r.sessions[to] = s
	delete(r.failures, to)
	if r.onChange != nil && old == nil {
		r.onChange(to, true)
	}
	r.mu.Unlock()
	// Registered before it is told: a component that sends or is sent to
	// the moment it has the handshake answer is routed to, not bounced.
	s.conn.SendRaw([]byte(`<handshake/>`))
	if old != nil {
		// The newer connection wins: a call bridge that restarted takes
		// over at once, and there are never two live.
		old.conn.CloseWith((&stream.Error{Condition: "conflict", Text: "replaced by a newer connection of the same component"}).Bytes())
	}
	tag.Major(cfg.Log, "component: %s connected", to)
	defer func() {
		r.mu.Lock()
		if r.sessions[to] == s {
			delete(r.sessions, to)
			if r.onChange != nil {
				r.onChange(to, false)
			}
		}
		r.mu.Unlock()
		tag.Major(cfg.Log, "component: %s disconnected", to)
	}()
	pace := limit.NewPace(func() (float64, int) { return limit.LinkRate(cfg.StanzaRate) })
	for {
		el, err := rd.Next()
		if err != nil {
			s.conn.CloseWith(stream.Closing(stream.ReadError(err, "nothing received in time")))
			break
		}
		if el.Name.Space != stream.NSAccept || (el.Name.Local != "message" && el.Name.Local != "presence" && el.Name.Local != "iq") {
			s.conn.CloseWith((&stream.Error{Condition: "unsupported-stanza-type", Text: "<" + el.Name.Local + "> is not a stanza"}).Bytes())
			break
		}
		from, err := jid.Parse(el.Get("from"))
		if err != nil || from.Domainpart() != to {
			s.conn.CloseWith((&stream.Error{Condition: "invalid-from", Text: "a component sends only from addresses at " + to}).Bytes())
			break
		}
		if el.Get("to") == "" {
			s.conn.CloseWith((&stream.Error{Condition: "improper-addressing", Text: "a stanza from a component needs a 'to'"}).Bytes())
			break
		}
		if w, r, b := pace.Take(); w > 0 {
			// Over the rate: not read until it is back within it.
			if cfg.Episodes != nil {
				cfg.Episodes.Printf("component: "+to+" over the stanza rate", "component: %s sends more than %g stanzas/s (burst %d): reading it more slowly", to, r, b)
			}
			time.Sleep(w)
		}
		if logging.On(cfg.Log, logging.LevelAll) {
			tag.Stanza(cfg.Log, el)
		}
		cfg.Handler.FromComponent(to, stream.Retarget(el, stream.NSAccept, stream.NSClient))
	}
	<-s.conn.Done()
	// What the connection accepted and did not write bounces: a component
	// has no offline storage.
	back := s.conn.Unwritten()
	if s.conn.Overflowed() {
		tag.Problem(cfg.Log, "component: %s did not read fast enough: closed with policy-violation, %d stanzas not written bounce", to, len(back))
	}
	for _, el := range stream.ParseStanzas(back, stream.NSAccept) {
		if el.Name.Local != "presence" {
			cfg.Handler.Bounce(stream.Retarget(el, stream.NSAccept, stream.NSClient), "service-unavailable", "the component "+to+" disconnected before this was sent to it")
		}
	}
}
