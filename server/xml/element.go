// Package xml owns the XML of XMPP streams: a small element tree and a
// reader that turns a byte stream into a stream header followed by
// top-level elements, enforcing XMPP's restricted XML (no DTDs, comments or
// processing instructions), UTF-8, a depth limit and a size limit per stanza
// while reading. The tokenizer underneath is Parley's own (tokenizer.go:
// encoding/xml's token stream, stricter on namespaces, without its
// allocations); UseEncodingXML switches back to encoding/xml.
package xml

import (
	"bytes"
	exml "encoding/xml"
	"strconv"
	"strings"
)

// Name is a namespace-qualified XML name.
type Name = exml.Name

// Attr is an attribute.
type Attr = exml.Attr

// NSXML is the namespace of the xml: prefix (xml:lang).
const NSXML = "http://www.w3.org/XML/1998/namespace"

// Element is one XML element with its attributes and children (elements
// and text, in order).
type Element struct {
	Name     Name
	Attr     []Attr
	Children []Node
}

// Node is an *Element or a Text.
type Node interface{ node() }

// Text is character data.
type Text string

func (*Element) node() {}
func (Text) node()     {}

// New returns an element in namespace space with attributes given as
// name, value pairs.
func New(space, local string, attrs ...string) *Element {
	e := &Element{Name: Name{Space: space, Local: local}}
	for i := 0; i+1 < len(attrs); i += 2 {
		if attrs[i+1] != "" {
			e.Attr = append(e.Attr, Attr{Name: Name{Local: attrs[i]}, Value: attrs[i+1]})
		}
	}
	return e
}

// Get returns the value of an attribute without a namespace ("" if absent).
func (e *Element) Get(local string) string {
	for _, a := range e.Attr {
		if a.Name.Local == local && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// Has reports whether the attribute is present.
func (e *Element) Has(local string) bool {
	for _, a := range e.Attr {
		if a.Name.Local == local && a.Name.Space == "" {
			return true
		}
	}
	return false
}

// Set sets (or, with an empty value, removes) an attribute without a
// namespace.
func (e *Element) Set(local, value string) *Element {
	for i, a := range e.Attr {
		if a.Name.Local == local && a.Name.Space == "" {
			if value == "" {
				e.Attr = append(e.Attr[:i], e.Attr[i+1:]...)
			} else {
				e.Attr[i].Value = value
			}
			return e
		}
	}
	if value != "" {
		e.Attr = append(e.Attr, Attr{Name: Name{Local: local}, Value: value})
	}
	return e
}

// Lang returns xml:lang.
func (e *Element) Lang() string {
	for _, a := range e.Attr {
		if a.Name.Local == "lang" && a.Name.Space == NSXML {
			return a.Value
		}
	}
	return ""
}

// Add appends child elements and returns e.
func (e *Element) Add(children ...*Element) *Element {
	for _, c := range children {
		e.Children = append(e.Children, c)
	}
	return e
}

// AddText appends text and returns e.
func (e *Element) AddText(s string) *Element {
	if s != "" {
		e.Children = append(e.Children, Text(s))
	}
	return e
}

// Elements returns the child elements.
func (e *Element) Elements() []*Element {
	var out []*Element
	for _, c := range e.Children {
		if el, ok := c.(*Element); ok {
			out = append(out, el)
		}
	}
	return out
}

// Child returns the first child element with that name; an empty space
// matches any namespace.
func (e *Element) Child(space, local string) *Element {
	for _, c := range e.Children {
		if el, ok := c.(*Element); ok && el.Name.Local == local && (space == "" || el.Name.Space == space) {
			return el
		}
	}
	return nil
}

// RemoveChildren removes every child element with that name.
func (e *Element) RemoveChildren(space, local string) {
	kept := e.Children[:0]
	for _, c := range e.Children {
		if el, ok := c.(*Element); ok && el.Name.Local == local && el.Name.Space == space {
			continue
		}
		kept = append(kept, c)
	}
	e.Children = kept
}

// Text returns the concatenated character data directly inside e.
func (e *Element) Text() string {
	var b strings.Builder
	for _, c := range e.Children {
		if t, ok := c.(Text); ok {
			b.WriteString(string(t))
		}
	}
	return b.String()
}

// Copy returns a deep copy.
func (e *Element) Copy() *Element {
	c := &Element{Name: e.Name, Attr: append([]Attr(nil), e.Attr...)}
	for _, n := range e.Children {
		if el, ok := n.(*Element); ok {
			c.Children = append(c.Children, el.Copy())
		} else {
			c.Children = append(c.Children, n)
		}
	}
	return c
}

// Bytes serializes e as it goes on the wire inside a stream whose default
// namespace is parentSpace: the xmlns attribute is written only where the
// namespace changes.
func (e *Element) Bytes(parentSpace string) []byte {
	var b bytes.Buffer
	e.write(&b, parentSpace)
	return b.Bytes()
}

// String serializes e with its namespace declared.
func (e *Element) String() string { return string(e.Bytes("")) }

func (e *Element) write(b *bytes.Buffer, parent string) {
	b.WriteByte('<')
	b.WriteString(e.Name.Local)
	if e.Name.Space != parent {
		b.WriteString(` xmlns="`)
		escape(b, e.Name.Space, true)
		b.WriteByte('"')
	}
	prefixes := 0
	for _, a := range e.Attr {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue // namespaces are written from Name.Space
		}
		b.WriteByte(' ')
		switch a.Name.Space {
		case "":
		case NSXML:
			b.WriteString("xml:")
		default:
			prefixes++
			p := "ns" + strconv.Itoa(prefixes)
			b.WriteString("xmlns:" + p + `="`)
			escape(b, a.Name.Space, true)
			b.WriteString(`" ` + p + ":")
		}
		b.WriteString(a.Name.Local)
		b.WriteString(`="`)
		escape(b, a.Value, true)
		b.WriteByte('"')
	}
	if len(e.Children) == 0 {
		b.WriteString("/>")
		return
	}
	b.WriteByte('>')
	for _, c := range e.Children {
		switch n := c.(type) {
		case *Element:
			n.write(b, e.Name.Space)
		case Text:
			escape(b, string(n), false)
		}
	}
	b.WriteString("</")
	b.WriteString(e.Name.Local)
	b.WriteByte('>')
}

func escape(b *bytes.Buffer, s string, attr bool) {
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '&':
			esc = "&amp;"
		case '"':
			if !attr {
				continue
			}
			esc = "&quot;"
		case '\'':
			if !attr {
				continue
			}
			esc = "&apos;"
		case '\r':
			esc = "&#xD;"
		case '\n', '\t':
			if !attr {
				continue
			}
			if s[i] == '\n' {
				esc = "&#xA;"
			} else {
				esc = "&#x9;"
			}
		default:
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString(esc)
		last = i + 1
	}
	b.WriteString(s[last:])
}
