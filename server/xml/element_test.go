package xml

import (
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestAttributes(t *testing.T) {
	e := New("jabber:client", "message", "to", "a@b", "type", "", "id", "1")
	if e.Has("type") {
		t.Fatal("an empty value in New must not create the attribute")
	}
	if e.Get("to") != "a@b" || !e.Has("id") || e.Get("missing") != "" {
		t.Fatalf("attrs %v", e.Attr)
	}
	e.Set("to", "c@d").Set("from", "x@y")
	if e.Get("to") != "c@d" || e.Get("from") != "x@y" || len(e.Attr) != 3 {
		t.Fatalf("after Set %v", e.Attr)
	}
	e.Set("id", "")
	if e.Has("id") || len(e.Attr) != 2 {
		t.Fatalf("Set with an empty value must remove: %v", e.Attr)
	}
	e.Set("nothing", "") // removing an absent attribute is a no-op
	if len(e.Attr) != 2 {
		t.Fatalf("%v", e.Attr)
	}
	// Namespaced attributes are not plain ones.
	e.Attr = append(e.Attr, Attr{Name: Name{Space: NSXML, Local: "lang"}, Value: "de"}, Attr{Name: Name{Space: "urn:x", Local: "to"}, Value: "ns"})
	if e.Lang() != "de" || e.Get("lang") != "" || e.Get("to") != "c@d" {
		t.Fatalf("lang %q, get lang %q, to %q", e.Lang(), e.Get("lang"), e.Get("to"))
	}
	if New("", "x").Lang() != "" {
		t.Fatal("no xml:lang")
	}
}

func TestChildren(t *testing.T) {
	m := New("jabber:client", "message")
	m.AddText("")
	if len(m.Children) != 0 {
		t.Fatal("AddText(\"\") adds nothing")
	}
	m.Add(New("jabber:client", "body").AddText("one"), New("urn:x", "x"), New("jabber:client", "body").AddText("two"))
	m.AddText("tail")
	if got := len(m.Elements()); got != 3 {
		t.Fatalf("%d elements", got)
	}
	if m.Text() != "tail" {
		t.Fatalf("text %q", m.Text())
	}
	if b := m.Child("", "body"); b == nil || b.Text() != "one" {
		t.Fatal("Child with any namespace returns the first")
	}
	if m.Child("urn:y", "x") != nil || m.Child("urn:x", "x") == nil {
		t.Fatal("Child matches the namespace")
	}
	m.RemoveChildren("jabber:client", "body")
	if len(m.Elements()) != 1 || m.Text() != "tail" {
		t.Fatalf("after RemoveChildren: %s", m)
	}
	m.RemoveChildren("urn:other", "x")
	if len(m.Elements()) != 1 {
		t.Fatal("RemoveChildren matches the namespace")
	}
}

func TestCopyIsDeep(t *testing.T) {
	orig := New("jabber:client", "message", "to", "a@b").Add(New("jabber:client", "body").AddText("hi"))
	c := orig.Copy()
	c.Set("to", "changed")
	c.Child("", "body").Set("x", "1")
	c.Child("", "body").AddText(" there")
	c.Add(New("urn:x", "extra"))
	if orig.String() != `<message xmlns="jabber:client" to="a@b"><body>hi</body></message>` {
		t.Fatalf("original changed: %s", orig)
	}
}

func TestBytes(t *testing.T) {
	tests := []struct {
		name   string
		el     *Element
		parent string
		want   string
	}{
		{"empty", New("jabber:client", "presence"), "jabber:client", `<presence/>`},
		{"namespace declared", New("jabber:client", "presence"), "", `<presence xmlns="jabber:client"/>`},
		{"child namespace", New("jabber:client", "iq", "type", "get", "id", "1").Add(New("urn:xmpp:ping", "ping")), "jabber:client",
			`<iq type="get" id="1"><ping xmlns="urn:xmpp:ping"/></iq>`},
		{"back to empty namespace", New("urn:a", "a").Add(New("", "b")), "urn:a", `<a><b xmlns=""/></a>`},
		{"text escaping", New("", "b").AddText(`<&>"'` + "\r\n\t"), "", `<b>&lt;&amp;&gt;"'&#xD;` + "\n\t</b>"},
		{"attribute escaping", New("", "b", "v", `<&>"'`+"\r\n\t"), "", `<b v="&lt;&amp;&gt;&quot;&apos;&#xD;&#xA;&#x9;"/>`},
		{"xml:lang", &Element{Name: Name{Local: "b"}, Attr: []Attr{{Name: Name{Space: NSXML, Local: "lang"}, Value: "en"}}}, "", `<b xml:lang="en"/>`},
		{"namespaced attribute", &Element{Name: Name{Local: "b"}, Attr: []Attr{{Name: Name{Space: "urn:p", Local: "a"}, Value: "1"}}}, "", `<b xmlns:ns1="urn:p" ns1:a="1"/>`},
		{"xmlns attributes are not copied", &Element{Name: Name{Space: "urn:a", Local: "b"}, Attr: []Attr{{Name: Name{Local: "xmlns"}, Value: "urn:wrong"}, {Name: Name{Space: "xmlns", Local: "p"}, Value: "urn:p"}}}, "",
			`<b xmlns="urn:a"/>`},
		{"non-ASCII", New("", "b").AddText("ø — 漢字 🎉"), "", `<b>ø — 漢字 🎉</b>`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(tc.el.Bytes(tc.parent)); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestManyNamespacedAttributes: every prefix the serializer invents is
// distinct, however many namespaced attributes there are.
func TestManyNamespacedAttributes(t *testing.T) {
	e := New("urn:a", "a")
	for i := 0; i < 25; i++ {
		e.Attr = append(e.Attr, Attr{Name: Name{Space: fmt.Sprintf("urn:ns%d", i), Local: "x"}, Value: fmt.Sprint(i)})
	}
	rd := NewReader(strings.NewReader(header+string(e.Bytes("jabber:client"))), DefaultLimits)
	if _, err := rd.Header(); err != nil {
		t.Fatal(err)
	}
	got, err := rd.Next()
	if err != nil {
		t.Fatalf("%s does not read back: %v", e.Bytes("jabber:client"), err)
	}
	if !equal(e, got) {
		t.Fatalf("round trip:\n%s\n%s", e, got)
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Fatal(err)
	}
}
