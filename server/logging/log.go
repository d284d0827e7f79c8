package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"

	"github.com/parley-xmpp/parley/server/xml"
)

// Connection kinds, the tags of XMPP records (CommuniGate's names).
const (
	KindClient    = "XMPPI" // incoming client connection
	KindServerIn  = "XMPPS" // incoming server connection
	KindServerOut = "XMPPO" // outgoing server connection
	KindComponent = "XMPPC" // component connection
)

// Attribute keys the Hub treats specially: the tag, the connection id and
// the peer address are written before the message; a stanza is rendered
// with the body rule.
const (
	KeyTag  = "tag"
	KeyConn = "conn"
	KeyPeer = "peer"
)

var connIDs atomic.Uint64

// NextID is a new connection id, unique in the process: the number after
// the tag (XMPPI-17), so that one conversation can be followed.
func NextID() uint64 { return connIDs.Add(1) }

// Conn names a connection in records: its kind, id and peer address. The
// zero Conn tags nothing.
type Conn struct {
	Kind string
	ID   uint64
	Peer string
	nc   net.Conn // the peer address is read from it when a record is written
}

// ConnOf is the tag of a network connection; its peer address is read
// only when a record is written.
func ConnOf(kind string, id uint64, c net.Conn) Conn {
	return Conn{Kind: kind, ID: id, nc: c}
}

func (c Conn) peer() string {
	if c.Peer == "" && c.nc != nil {
		if a := c.nc.RemoteAddr(); a != nil {
			return a.String()
		}
	}
	return c.Peer
}

// String is the tag as written in a line: XMPPI-17.
func (c Conn) String() string {
	if c.Kind == "" {
		return ""
	}
	return fmt.Sprintf("%s-%d", c.Kind, c.ID)
}

// Log writes a record of the connection at level, formatted as fmt.Sprintf
// does, if l writes that level (l may be nil: nothing).
func (c Conn) Log(l *slog.Logger, level slog.Level, format string, args ...any) {
	if l == nil || !l.Enabled(context.Background(), level) {
		return
	}
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	if c.Kind == "" {
		l.LogAttrs(context.Background(), level, msg)
		return
	}
	l.LogAttrs(context.Background(), level, msg, slog.String(KeyTag, c.Kind), slog.Uint64(KeyConn, c.ID), slog.String(KeyPeer, c.peer()))
}

// Major, Problem and Low log a record of the connection at that level.
func (c Conn) Major(l *slog.Logger, format string, args ...any) {
	c.Log(l, LevelMajor, format, args...)
}
func (c Conn) Problem(l *slog.Logger, format string, args ...any) {
	c.Log(l, LevelProblems, format, args...)
}
func (c Conn) Low(l *slog.Logger, format string, args ...any) { c.Log(l, LevelLow, format, args...) }

// Stanza logs a stanza read from the connection, at level all: its
// element and attributes, with message bodies and every password's text
// hidden unless `xmpp log bodies on` was said (then only passwords and
// SASL data are). It costs one atomic load when the level is higher.
func (c Conn) Stanza(l *slog.Logger, el *xml.Element) {
	if l == nil || el == nil || !l.Enabled(context.Background(), LevelAll) {
		return
	}
	l.LogAttrs(context.Background(), LevelAll, "stanza in", slog.String(KeyTag, c.Kind), slog.Uint64(KeyConn, c.ID),
		slog.String(KeyPeer, c.peer()), slog.Any("xml", stanza{el}))
}

// On reports whether l writes records of level: a check before work done
// only for the log (l may be nil).
func On(l *slog.Logger, level slog.Level) bool {
	return l != nil && l.Enabled(context.Background(), level)
}

// Major, Problem and Low log an untagged record (not of one connection).
func Major(l *slog.Logger, format string, args ...any) {
	Conn{}.Log(l, LevelMajor, format, args...)
}
func Problem(l *slog.Logger, format string, args ...any) {
	Conn{}.Log(l, LevelProblems, format, args...)
}
func Low(l *slog.Logger, format string, args ...any) { Conn{}.Log(l, LevelLow, format, args...) }

// Discard is a logger that writes nothing.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// NewWriter is a logger writing lines to w from level on, with no other
// sink: for tests and tools.
func NewWriter(w io.Writer, level slog.Level) *slog.Logger {
	h := New(Config{Stderr: w})
	h.SetLevel(level)
	return h.Logger()
}
