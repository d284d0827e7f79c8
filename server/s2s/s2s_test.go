package s2s

import (
	"strings"
	"testing"

	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
)

func TestServerHeader(t *testing.T) {
	h := string(serverHeader("a.lan", "b.lan", "id1"))
	if !strings.HasPrefix(h, "<?xml version='1.0'?><stream:stream xmlns:db='jabber:server:dialback' xmlns='jabber:server'") {
		t.Fatalf("header: %s", h)
	}
	// It parses, with the dialback prefix bound.
	rd := xml.NewReader(strings.NewReader(h+string(dialbackBytes(xml.New(NSDialback, "result", "from", "a.lan", "to", "b.lan").AddText("k")))), xml.DefaultLimits)
	if _, err := rd.Header(); err != nil {
		t.Fatal(err)
	}
	el, err := rd.Next()
	if err != nil || el.Name.Space != NSDialback || el.Name.Local != "result" || el.Text() != "k" {
		t.Fatalf("dialback element read back as %v (%v)", el, err)
	}
}

func TestDialbackBytes(t *testing.T) {
	for _, c := range []struct {
		el   *xml.Element
		want string
	}{
		{xml.New(NSDialback, "result", "from", "a.lan", "to", "b.lan").AddText("abc"), `<db:result from="a.lan" to="b.lan">abc</db:result>`},
		{xml.New(NSDialback, "verify", "from", "a.lan", "to", "b.lan", "id", "i", "type", "valid"), `<db:verify from="a.lan" to="b.lan" id="i" type="valid"/>`},
		{xml.New(NSDialback, "result", "type", "error").Add(xml.New(stream.NSServer, "error", "type", "cancel").Add(xml.New(stream.NSStanzas, "item-not-found"))),
			`<db:result type="error"><error xmlns="jabber:server" type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></db:result>`},
	} {
		if got := string(dialbackBytes(c.el)); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
}

func TestDialbackKey(t *testing.T) {
	s := New(Config{})
	k := s.dialbackKey("b.lan", "a.lan", "id1")
	if len(k) != 64 || k != s.dialbackKey("b.lan", "a.lan", "id1") {
		t.Fatalf("key %q", k)
	}
	for _, other := range []string{s.dialbackKey("a.lan", "b.lan", "id1"), s.dialbackKey("b.lan", "a.lan", "id2"), New(Config{}).dialbackKey("b.lan", "a.lan", "id1")} {
		if other == k {
			t.Fatal("keys for other streams, directions or secrets must differ")
		}
	}
}

func TestDomainPart(t *testing.T) {
	for in, want := range map[string]string{
		"alice@a.lan/phone": "a.lan", "alice@a.lan": "a.lan", "a.lan": "a.lan", "a.lan/res": "a.lan",
		"room@cb1.a.lan/nick/with/slashes": "cb1.a.lan", "a.lan/res@odd": "a.lan", "": "",
	} {
		if got := domainPart(in); got != want {
			t.Errorf("domainPart(%q) = %q, want %q", in, got, want)
		}
	}
}
