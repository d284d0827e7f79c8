package directory

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/parley-xmpp/parley/server/xml"
)

// NSVCard is vcard-temp's namespace (XEP-0054).
const NSVCard = "vcard-temp"

// VCard builds a vcard-temp vCard from an entry: cn (or displayName) → FN,
// sn and givenName → N, mail → EMAIL, telephoneNumber and mobile → TEL,
// title → TITLE, o and ou → ORG, jpegPhoto → PHOTO. Only the fields the
// entry has a value for are there.
func VCard(e *Entry) *xml.Element {
	v := xml.New(NSVCard, "vCard")
	text := func(name, s string) *xml.Element { return xml.New(NSVCard, name).AddText(s) }
	// pair adds outer with the parts that have a value, if any has.
	pair := func(outer, aName, a, bName, b string) {
		if a == "" && b == "" {
			return
		}
		el := xml.New(NSVCard, outer)
		if a != "" {
			el.Add(text(aName, a))
		}
		if b != "" {
			el.Add(text(bName, b))
		}
		v.Add(el)
	}
	if fn := DisplayName(e); fn != "" {
		v.Add(text("FN", fn))
	}
	pair("N", "FAMILY", e.Get("sn"), "GIVEN", e.Get("givenName"))
	for _, m := range e.All("mail") {
		v.Add(xml.New(NSVCard, "EMAIL").Add(xml.New(NSVCard, "INTERNET"), text("USERID", m)))
	}
	for _, t := range e.All("telephoneNumber") {
		v.Add(xml.New(NSVCard, "TEL").Add(xml.New(NSVCard, "WORK"), xml.New(NSVCard, "VOICE"), text("NUMBER", t)))
	}
	for _, t := range e.All("mobile") {
		v.Add(xml.New(NSVCard, "TEL").Add(xml.New(NSVCard, "CELL"), xml.New(NSVCard, "VOICE"), text("NUMBER", t)))
	}
	if t := e.Get("title"); t != "" {
		v.Add(text("TITLE", t))
	}
	pair("ORG", "ORGNAME", e.Get("o"), "ORGUNIT", e.Get("ou"))
	if p := e.Raw("jpegPhoto"); len(p) > 0 {
		v.Add(xml.New(NSVCard, "PHOTO").Add(text("TYPE", photoType(p)), text("BINVAL", base64.StdEncoding.EncodeToString(p))))
	}
	return v
}

// DisplayName is how an entry names its person: cn, else displayName.
func DisplayName(e *Entry) string {
	if n := e.Get("cn"); n != "" {
		return n
	}
	return e.Get("displayName")
}

func photoType(p []byte) string {
	t := http.DetectContentType(p)
	if strings.HasPrefix(t, "image/") {
		return t
	}
	return "image/jpeg"
}

// PhotoHash is the XEP-0153 hash of an entry's photo ("" if none).
func PhotoHash(e *Entry) string {
	p := e.Raw("jpegPhoto")
	if len(p) == 0 {
		return ""
	}
	sum := sha1.Sum(p)
	return hex.EncodeToString(sum[:])
}

// Summary describes the vCard an entry gives, one "FIELD: value" line per
// field, as `xmpp directory test` shows it (a photo as its type, size and
// hash).
func Summary(e *Entry) []string {
	var out []string
	add := func(k, v string) {
		if v != "" {
			out = append(out, k+": "+v)
		}
	}
	add("FN", DisplayName(e))
	add("N", strings.TrimSpace(e.Get("givenName")+" "+e.Get("sn")))
	for _, m := range e.All("mail") {
		add("EMAIL", m)
	}
	for _, t := range append(e.All("telephoneNumber"), e.All("mobile")...) {
		add("TEL", t)
	}
	add("TITLE", e.Get("title"))
	add("ORG", strings.Trim(e.Get("o")+" / "+e.Get("ou"), " /"))
	if p := e.Raw("jpegPhoto"); len(p) > 0 {
		add("PHOTO", fmt.Sprintf("%s, %d bytes, avatar hash %s", photoType(p), len(p), PhotoHash(e)))
	}
	return out
}
