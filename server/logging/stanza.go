package logging

import (
	"strings"

	"github.com/parley-xmpp/parley/server/xml"
)

// stanza is a stanza in a record, rendered by the Hub with its body rule.
type stanza struct{ el *xml.Element }

// Namespaces whose elements' text is never written, bodies or not:
// SASL exchanges and the legacy authentication's password and digest.
const (
	nsSASL = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsAuth = "jabber:iq:auth"
)

// hidden replaces text that is not written.
const hidden = "[hidden]"

// render writes a stanza for the log. Without bodies, every text in it is
// hidden (only elements and attributes are written): message bodies,
// subjects, form values, vCards, passwords. With bodies, text is written
// except a secret's: anything in the SASL or legacy-auth namespace, a
// <password> element's (in-band registration, MUC room passwords), and the
// values of form fields whose name mentions a password.
func render(el *xml.Element, bodies bool) string {
	return string(redact(el, bodies, false).Bytes(""))
}

func redact(el *xml.Element, bodies, secret bool) *xml.Element {
	secret = secret || isSecret(el)
	out := &xml.Element{Name: el.Name, Attr: el.Attr, Children: make([]xml.Node, 0, len(el.Children))}
	for _, c := range el.Children {
		switch n := c.(type) {
		case *xml.Element:
			out.Children = append(out.Children, redact(n, bodies, secret))
		case xml.Text:
			if strings.TrimSpace(string(n)) == "" || (bodies && !secret) {
				out.Children = append(out.Children, n)
			} else {
				out.Children = append(out.Children, xml.Text(hidden))
			}
		}
	}
	return out
}

func isSecret(el *xml.Element) bool {
	switch {
	case el.Name.Space == nsSASL, el.Name.Space == nsAuth:
		return true
	case strings.EqualFold(el.Name.Local, "password"):
		return true
	case el.Name.Local == "field" && strings.Contains(strings.ToLower(el.Get("var")), "password"):
		return true
	}
	return false
}
