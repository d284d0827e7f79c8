// Package stream owns what every XMPP stream shares: namespaces, the stream
// header and stream errors (RFC 6120 §4), stanza errors (§8.3), what a
// failed read means for the peer (ReadError, Closing: the one mapping the
// client, server and component read loops use), and Conn, a connection
// with one bounded outbound queue drained by one writer, so a slow reader
// never blocks anyone who sends to it, and which hands back what it could
// not write (conn.go).
package stream

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/parley-xmpp/parley/server/xml"
)

// Namespaces.
const (
	NSStream    = xml.NSStream
	NSClient    = "jabber:client"
	NSServer    = "jabber:server"
	NSAccept    = "jabber:component:accept"
	NSStreams   = "urn:ietf:params:xml:ns:xmpp-streams"
	NSStanzas   = "urn:ietf:params:xml:ns:xmpp-stanzas"
	NSTLS       = "urn:ietf:params:xml:ns:xmpp-tls"
	NSSASL      = "urn:ietf:params:xml:ns:xmpp-sasl"
	NSBind      = "urn:ietf:params:xml:ns:xmpp-bind"
	NSSession   = "urn:ietf:params:xml:ns:xmpp-session"
	NSRosterVer = "urn:xmpp:features:rosterver"
)

// NewID returns a random stream or stanza id.
func NewID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Header returns the opening of a stream we send in reply to a peer's.
func Header(ns, from, to, id string) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version='1.0'?><stream:stream xmlns='`)
	b.WriteString(ns)
	b.WriteString(`' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'`)
	if from != "" {
		b.WriteString(` from='`)
		b.WriteString(xmlAttr(from))
		b.WriteString(`'`)
	}
	if to != "" {
		b.WriteString(` to='`)
		b.WriteString(xmlAttr(to))
		b.WriteString(`'`)
	}
	if id != "" {
		b.WriteString(` id='` + id + `'`)
	}
	b.WriteString(` xml:lang='en'>`)
	return b.Bytes()
}

func xmlAttr(s string) string {
	var b bytes.Buffer
	e := xml.New("", "x", "v", s)
	b.Write(e.Bytes(""))
	out := b.String()
	return out[len(`<x v="`) : len(out)-len(`"/>`)]
}

// Close is the end of a stream.
var Close = []byte("</stream:stream>")

// Error is a stream error: the condition (RFC 6120 §4.9.3) and a text.
type Error struct {
	Condition string
	Text      string
}

func (e *Error) Error() string {
	if e.Text == "" {
		return e.Condition
	}
	return e.Condition + ": " + e.Text
}

// Errorf returns a stream error.
func Errorf(condition, format string, a ...any) *Error {
	return &Error{Condition: condition, Text: fmt.Sprintf(format, a...)}
}

// Bytes is the error as sent, followed by the end of the stream.
func (e *Error) Bytes() []byte {
	el := xml.New(NSStream, "error")
	el.Add(xml.New(NSStreams, e.Condition))
	if e.Text != "" {
		t := xml.New(NSStreams, "text")
		t.Attr = append(t.Attr, xml.Attr{Name: xml.Name{Space: xml.NSXML, Local: "lang"}, Value: "en"})
		el.Add(t.AddText(xml.ClipTo(e.Text, MaxErrorText)))
	}
	b := el.Bytes(NSStream)
	// the stream prefix is declared in the header
	b = bytes.Replace(b, []byte("<error>"), []byte("<stream:error>"), 1)
	b = bytes.Replace(b, []byte("</error>"), []byte("</stream:error>"), 1)
	return append(b, Close...)
}

// MaxErrorText bounds the text of a stream error as sent: texts quote
// what a peer sent only in part (xml.Clip), and this is the backstop.
const MaxErrorText = 1024

// StanzaError builds the error reply to a stanza (RFC 6120 §8.3): to and
// from swapped, type="error", the original payload kept for messages and
// presence, the condition inside <error/>.
func StanzaError(orig *xml.Element, errType, condition, text string) *xml.Element {
	reply := &xml.Element{Name: orig.Name}
	reply.Set("id", orig.Get("id"))
	reply.Set("to", orig.Get("from"))
	reply.Set("from", orig.Get("to"))
	reply.Set("type", "error")
	if orig.Name.Local != "iq" {
		for _, c := range orig.Children {
			if el, ok := c.(*xml.Element); ok && el.Name.Local != "error" {
				reply.Children = append(reply.Children, el.Copy())
			}
		}
	}
	e := xml.New(orig.Name.Space, "error", "type", errType)
	e.Add(xml.New(NSStanzas, condition))
	if text != "" {
		t := xml.New(NSStanzas, "text")
		t.Attr = append(t.Attr, xml.Attr{Name: xml.Name{Space: xml.NSXML, Local: "lang"}, Value: "en"})
		e.Add(t.AddText(text))
	}
	return reply.Add(e)
}

// ErrorTypes maps each stanza error condition to its usual type.
var ErrorTypes = map[string]string{
	"bad-request":             "modify",
	"conflict":                "cancel",
	"feature-not-implemented": "cancel",
	"forbidden":               "auth",
	"item-not-found":          "cancel",
	"jid-malformed":           "modify",
	"not-acceptable":          "modify",
	"not-allowed":             "cancel",
	"not-authorized":          "auth",
	"policy-violation":        "modify",
	"recipient-unavailable":   "wait",
	"remote-server-not-found": "cancel",
	"remote-server-timeout":   "wait",
	"resource-constraint":     "wait",
	"service-unavailable":     "cancel",
	"undefined-condition":     "cancel",
	"internal-server-error":   "cancel",
}

// ErrorReply is StanzaError with the condition's usual type.
func ErrorReply(orig *xml.Element, condition, text string) *xml.Element {
	t := ErrorTypes[condition]
	if t == "" {
		t = "cancel"
	}
	return StanzaError(orig, t, condition, text)
}

// ReadError is what a failed read of a stream means for the peer: the
// stream error for what it sent (an *xml.Error's condition), or
// connection-timeout with timeoutText when nothing came in time; any other
// error (the connection went away) is returned as it is.
func ReadError(err error, timeoutText string) error {
	if se := XMLError(err); se != nil {
		return se
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &Error{Condition: "connection-timeout", Text: timeoutText}
	}
	return err
}

// XMLError is the stream error for what the peer sent when err is an
// *xml.Error (XML that is bad or over a limit), else nil.
func XMLError(err error) *Error {
	var xe *xml.Error
	if errors.As(err, &xe) {
		return &Error{Condition: xe.Condition, Text: xe.Text}
	}
	return nil
}

// Closing is what a stream whose read ended with err (mapped by
// ReadError) is closed with: the stream error, the closing tag when the
// peer closed its stream (io.EOF) or the stream ended without an error
// (nil), and nothing when the connection went away (nothing can be
// written on it).
func Closing(err error) []byte {
	var se *Error
	switch {
	case errors.As(err, &se):
		return se.Bytes()
	case err == nil || errors.Is(err, io.EOF):
		return Close
	}
	return nil
}

// Retarget returns a copy of el with every element in namespace from moved
// to namespace to: the stanza namespaces differ between client
// (jabber:client) and component (jabber:component:accept) streams.
func Retarget(el *xml.Element, from, to string) *xml.Element {
	c := &xml.Element{Name: el.Name, Attr: append([]xml.Attr(nil), el.Attr...)}
	if c.Name.Space == from {
		c.Name.Space = to
	}
	for _, n := range el.Children {
		if e, ok := n.(*xml.Element); ok {
			c.Children = append(c.Children, Retarget(e, from, to))
		} else {
			c.Children = append(c.Children, n)
		}
	}
	return c
}

// Authenticated tells whoever tracks the connection c (or the one it
// wraps, e.g. under TLS) that its peer has authenticated: the engine counts
// connections until then against the limits of unauthenticated ones.
func Authenticated(c net.Conn) {
	for c != nil {
		if a, ok := c.(interface{ Authenticated() }); ok {
			a.Authenticated()
			return
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return
		}
		c = u.NetConn()
	}
}
