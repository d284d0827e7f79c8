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
	fn := e.Get("cn")
	if fn == "" {
		fn = e.Get("displayName")
	}
	if fn != "" {
		v.Add(text("FN", fn))
	}
	if sn, given := e.Get("sn"), e.Get("givenName"); sn != "" || given != "" {
		n := xml.New(NSVCard, "N")
		if sn != "" {
			n.Add(text("FAMILY", sn))
		}
		if given != "" {
			n.Add(text("GIVEN", given))
		}
		v.Add(n)
	}
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
	if o, ou := e.Get("o"), e.Get("ou"); o != "" || ou != "" {
		org := xml.New(NSVCard, "ORG")
		if o != "" {
			org.Add(text("ORGNAME", o))
		}
		if ou != "" {
			org.Add(text("ORGUNIT", ou))
		}
		v.Add(org)
	}
	if p := e.Raw("jpegPhoto"); len(p) > 0 {
		v.Add(xml.New(NSVCard, "PHOTO").Add(text("TYPE", photoType(p)), text("BINVAL", base64.StdEncoding.EncodeToString(p))))
	}
	return v
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
	fn := e.Get("cn")
	if fn == "" {
		fn = e.Get("displayName")
	}
	add("FN", fn)
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
