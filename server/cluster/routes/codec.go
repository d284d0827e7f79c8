package routes

import (
	"encoding/binary"
	"errors"

	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
)

// A forwarded stanza crosses the cluster link as its element tree in a
// binary form, not as XML: the receiving node rebuilds the tree without
// parsing XML again. Parsing a second time was the largest cost of a
// message between users on two nodes (a chat message: 1.9 µs and 8
// allocations with a kept reader, against the 0.3 µs of this decoding;
// see docs/benchmarks.md). The tree is the one the XML round trip would
// give (Element.Bytes, then the reader): names and attributes with their
// namespaces as they are, xmlns attributes left out (namespaces travel in
// the names), text as it is.
//
// An element: its namespace and local name, the count of its attributes
// and each (namespace, local name, value), the count of its children and
// each (0 and a string: text; 1 and an element). Strings as a uvarint
// length and the bytes.
const (
	childText    = 0
	childElement = 1
)

var errTree = errors.New("a stanza tree that does not decode")

// appendElement appends e's binary form to b.
func appendElement(b []byte, e *xml.Element) []byte {
	b = appendString(b, e.Name.Space)
	b = appendString(b, e.Name.Local)
	n := 0
	for _, a := range e.Attr {
		if !isNamespaceAttr(a) {
			n++
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	for _, a := range e.Attr {
		if isNamespaceAttr(a) {
			continue
		}
		b = appendString(b, a.Name.Space)
		b = appendString(b, a.Name.Local)
		b = appendString(b, a.Value)
	}
	b = binary.AppendUvarint(b, uint64(len(e.Children)))
	for _, c := range e.Children {
		switch c := c.(type) {
		case xml.Text:
			b = append(b, childText)
			b = appendString(b, string(c))
		case *xml.Element:
			b = append(b, childElement)
			b = appendElement(b, c)
		}
	}
	return b
}

func isNamespaceAttr(a xml.Attr) bool {
	return a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns")
}

// decodeStanza rebuilds a forwarded stanza: a message, presence or iq in
// jabber:client, nested at most maxDepth deep, and nothing after it.
func decodeStanza(b []byte, maxDepth int) (*xml.Element, error) {
	rd := reader{b: b}
	el := decodeElement(&rd, maxDepth)
	if rd.err != nil {
		return nil, rd.err
	}
	if len(rd.b) != 0 {
		return nil, errTree
	}
	if el.Name.Space != stream.NSClient || (el.Name.Local != "message" && el.Name.Local != "presence" && el.Name.Local != "iq") {
		return nil, errNotStanza
	}
	return el, nil
}

func decodeElement(rd *reader, depth int) *xml.Element {
	if depth <= 0 {
		rd.err = errTree
		return nil
	}
	e := &xml.Element{Name: xml.Name{Space: rd.common(), Local: rd.common()}}
	// Each attribute and child takes at least a byte: a count beyond what
	// is left is malformed, and nothing is allocated for it.
	n := rd.uvarint()
	if n > uint64(len(rd.b)) {
		rd.err = errTree
	}
	if rd.err != nil {
		return nil
	}
	if n > 0 {
		e.Attr = make([]xml.Attr, 0, n)
		for i := uint64(0); i < n && rd.err == nil; i++ {
			space, local := rd.common(), rd.common()
			e.Attr = append(e.Attr, xml.Attr{Name: xml.Name{Space: space, Local: local}, Value: rd.common()})
		}
	}
	n = rd.uvarint()
	if n > uint64(len(rd.b)) {
		rd.err = errTree
	}
	if rd.err != nil {
		return nil
	}
	if n > 0 {
		e.Children = make([]xml.Node, 0, n)
	}
	for i := uint64(0); i < n && rd.err == nil; i++ {
		if len(rd.b) == 0 {
			rd.err = errTree
			break
		}
		kind := rd.b[0]
		rd.b = rd.b[1:]
		switch kind {
		case childText:
			e.Children = append(e.Children, xml.Text(rd.string(len(rd.b))))
		case childElement:
			if c := decodeElement(rd, depth-1); c != nil {
				e.Children = append(e.Children, c)
			}
		default:
			rd.err = errTree
		}
	}
	if rd.err != nil {
		return nil
	}
	return e
}

// common reads a string, without allocating for the names and values
// every stanza carries.
func (r *reader) common() string {
	b := r.bytes(len(r.b))
	if s, ok := commonStrings[string(b)]; ok {
		return s
	}
	return string(b)
}

var commonStrings = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		"", stream.NSClient, xml.NSXML, "message", "presence", "iq", "body", "subject", "thread",
		"to", "from", "id", "type", "lang", "chat", "normal", "groupchat", "headline", "error",
		"get", "set", "result", "unavailable", "show", "status", "priority", "away", "xa", "dnd",
		"active", "composing", "paused", "inactive", "gone", "http://jabber.org/protocol/chatstates",
		"urn:xmpp:delay", "delay", "stamp", "c", "http://jabber.org/protocol/caps", "hash", "node", "ver", "sha-1",
		"x", "vcard-temp:x:update", "photo", "ping", "urn:xmpp:ping", "query", "request", "received",
		"urn:xmpp:receipts", "markable", "urn:xmpp:chat-markers:0", "origin-id", "stanza-id", "urn:xmpp:sid:0",
	} {
		m[s] = s
	}
	return m
}()
