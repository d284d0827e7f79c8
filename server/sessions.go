package server

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-xmpp/parley/server/address"
	"github.com/parley-xmpp/parley/server/c2s"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/server/stream"
)

// meter counts a connection's bytes for `xmpp connections`: an atomic
// add per read or write call on the socket, nothing per stanza.
type meter struct {
	bytesIn, bytesOut atomic.Uint64
	since             int64 // unix nanoseconds: accepted or dialed
}

// start sets when the connection began.
func (m *meter) start() { m.since = time.Now().UnixNano() }

// began is when the connection began.
func (m *meter) began() time.Time { return time.Unix(0, m.since) }

func (m *meter) read(n int) {
	if n > 0 {
		m.bytesIn.Add(uint64(n))
	}
}

func (m *meter) wrote(n int) {
	if n > 0 {
		m.bytesOut.Add(uint64(n))
	}
}

// dialedConns are the connections the engine made to other servers, for
// `xmpp connections` (the accepted ones are Engine.conns).
type dialedConns struct {
	mu sync.Mutex
	m  map[*dialedConn]struct{}
}

// dialedConn is an outgoing server connection with byte counters; it
// leaves the set when closed.
type dialedConn struct {
	net.Conn
	meter
	set  *dialedConns
	name string // "local → remote"
	once sync.Once
}

// add is s2s.Config.Dialed: it counts c's bytes while it is open.
func (d *dialedConns) add(c net.Conn, local, remote string) net.Conn {
	dc := &dialedConn{Conn: c, set: d, name: local + " → " + remote}
	dc.start()
	d.mu.Lock()
	if d.m == nil {
		d.m = map[*dialedConn]struct{}{}
	}
	d.m[dc] = struct{}{}
	d.mu.Unlock()
	return dc
}

func (c *dialedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read(n)
	return n, err
}

func (c *dialedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.wrote(n)
	return n, err
}

func (c *dialedConn) Close() error {
	c.once.Do(func() {
		c.set.mu.Lock()
		delete(c.set.m, c)
		c.set.mu.Unlock()
	})
	return c.Conn.Close()
}

// NetConn is the connection underneath.
func (c *dialedConn) NetConn() net.Conn { return c.Conn }

// Sessions lists the bound client resources that match filter: "" all of
// them, a domain, a bare JID (its resources) or a full JID (compared as
// given: the caller normalizes it). In a cluster, the resources bound on
// the other nodes follow, with their node id and what the route table
// knows of them (availability and priority).
func (e *Engine) Sessions(filter string) []status.Session {
	match := func(bare, full string) bool {
		switch {
		case filter == "":
			return true
		case strings.Contains(filter, "/"):
			return full == filter
		case strings.Contains(filter, "@"):
			return bare == filter
		default:
			return address.Domain(bare) == filter
		}
	}
	type entry struct {
		s         *c2s.Session
		available bool
		priority  int
	}
	var local []entry
	e.router.Each(func(s router.Session, available bool, priority int) {
		if cs, ok := s.(*c2s.Session); ok && match(cs.Bare(), cs.Full()) {
			local = append(local, entry{cs, available, priority})
		}
	})
	out := make([]status.Session, 0, len(local))
	for _, l := range local {
		st := l.s.Info()
		st.Available, st.Priority = l.available, l.priority
		out = append(out, st)
	}
	if t := e.routes.Load(); t != nil {
		t.EachRemote(func(node, bare, res string, available bool, priority int) {
			full := bare + "/" + res
			if match(bare, full) {
				out = append(out, status.Session{JID: full, Node: node, Available: available, Priority: priority})
			}
		})
	}
	status.SortSessions(out)
	return out
}

// ErrNoSession is Kick's error when no session of the JID is bound anywhere.
var ErrNoSession = errors.New("no session")

// KickWait bounds how long Kick waits for other nodes to close what it
// asked them to.
const KickWait = 3 * time.Second

// Kick closes the sessions of a bare JID (all its resources) or of a full
// JID with a policy-violation stream error whose text is reason (RFC 6120
// §4.9.3.14: the administrator's policy): those bound on this node, and,
// on a cluster, those on the other nodes, which it asks to close theirs
// and waits for (up to KickWait, until the route table shows them gone).
func (e *Engine) Kick(jid, reason string) (status.Kicked, error) {
	if reason == "" {
		reason = "closed by the server's administrator"
	}
	k := status.Kicked{Here: e.kickHere(jid, reason)}
	bare, res, full := strings.Cut(jid, "/")
	t := e.routes.Load()
	if t != nil {
		asked := map[string][]string{}
		for _, rm := range t.AppendRemote(nil, bare) {
			if !full || rm.Resource == res {
				asked[rm.Node] = append(asked[rm.Node], rm.Resource)
			}
		}
		for node := range asked {
			if err := t.Kick(node, jid, reason); err != nil {
				k.Unanswered = append(k.Unanswered, node)
				delete(asked, node)
			}
		}
		deadline := time.Now().Add(KickWait)
		for len(asked) > 0 {
			for node, list := range asked {
				left := 0
				for _, r := range list {
					if n, ok := t.Resource(bare, r); ok && n == node {
						left++
					}
				}
				if left == 0 {
					if k.Nodes == nil {
						k.Nodes = map[string]int{}
					}
					k.Nodes[node] = len(list)
					delete(asked, node)
				}
			}
			if len(asked) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		for node := range asked {
			k.Unanswered = append(k.Unanswered, node)
		}
		sort.Strings(k.Unanswered)
	}
	if k.Here == 0 && len(k.Nodes) == 0 && len(k.Unanswered) == 0 {
		return k, fmt.Errorf("%w of %s", ErrNoSession, jid)
	}
	return k, nil
}

// kickHere closes the sessions of a bare or full JID bound on this node,
// and returns how many.
func (e *Engine) kickHere(jid, reason string) int {
	bare, res, full := strings.Cut(jid, "/")
	var targets []router.Session
	for _, s := range e.router.Sessions(bare) {
		if !full || s.Resource() == res {
			targets = append(targets, s)
		}
	}
	for _, s := range targets {
		s.Close(&stream.Error{Condition: "policy-violation", Text: reason})
	}
	if len(targets) > 0 {
		logging.Major(e.cfg.Log, "xmpp: %d session(s) of %s closed by the administrator: %s", len(targets), jid, reason)
	}
	return len(targets)
}

// Connections lists every TCP connection of the engine: accepted ones
// (not authenticated yet, clients, incoming server streams, components)
// and the ones it made to other servers, with their byte counts.
func (e *Engine) Connections() []status.Connection {
	// Who is at the other end of server and component streams, by peer
	// address.
	names := map[string][]string{}
	links, _ := e.s2s.Status()
	for _, l := range links {
		if l.Direction == status.In {
			names[l.Peer] = append(names[l.Peer], l.Remote+" → "+l.Local)
		}
	}
	for _, c := range e.comps.Status() {
		if c.Connected && c.From != "" {
			names[c.From] = append(names[c.From], c.JID)
		}
	}
	var out []status.Connection
	e.mu.Lock()
	for c, st := range e.conns {
		p, ok := c.(*pending)
		if !ok {
			continue
		}
		cn := status.Connection{Kind: status.ConnPreLogin, Peer: c.RemoteAddr().String(), Since: p.began(), BytesIn: p.bytesIn.Load(), BytesOut: p.bytesOut.Load()}
		switch {
		case st.sess != nil:
			cn.Kind, cn.Name = status.ConnClient, st.sess.Full()
		case st.kind != "":
			cn.Kind = st.kind
			cn.Name = strings.Join(names[cn.Peer], ", ")
		}
		out = append(out, cn)
	}
	e.mu.Unlock()
	e.dialed.mu.Lock()
	for c := range e.dialed.m {
		out = append(out, status.Connection{Kind: status.ConnServerOut, Peer: c.RemoteAddr().String(), Name: c.name, Since: c.began(),
			BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load()})
	}
	e.dialed.mu.Unlock()
	status.SortConnections(out)
	return out
}
