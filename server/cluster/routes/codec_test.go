package routes

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
)

// viaXML is what the receiving node got before the binary form: the
// element written as on a jabber:client stream and parsed again.
func viaXML(t testing.TB, el *xml.Element) *xml.Element {
	head := `<stream:stream xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams">`
	rd := xml.NewReader(io.MultiReader(strings.NewReader(head), bytes.NewReader(el.Bytes(stream.NSClient))), xml.DefaultLimits)
	if _, err := rd.Header(); err != nil {
		t.Fatal(err)
	}
	got, err := rd.Next()
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestCodecAsXML: the tree the binary form gives is the tree the XML
// round trip gave, for stanzas with namespaced children and attributes,
// xml:lang, escaped text and mixed content.
func TestCodecAsXML(t *testing.T) {
	for _, s := range []string{
		`<message xmlns="jabber:client" to="bob@a.lan/desk" from="alice@a.lan/x" type="chat" id="1" xml:lang="en"><body>hi &lt;there&gt; &amp; "you"</body><active xmlns="http://jabber.org/protocol/chatstates"/></message>`,
		`<presence xmlns="jabber:client" from="a@b/c"><show>away</show><status>out</status><priority>-1</priority><c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="n" ver="v="/></presence>`,
		`<iq xmlns="jabber:client" type="set" id="r"><query xmlns="jabber:iq:roster"><item jid="c@d" name="C"><group>Friends</group><group>Ünïcødé</group></item></query></iq>`,
		`<message xmlns="jabber:client"><x xmlns="urn:a" xmlns:p="urn:p" p:attr="v">text<y/>more</x><body></body></message>`,
	} {
		el := viaXML(t, parse(t, s))
		got, err := decodeStanza(appendElement(nil, el), xml.DefaultLimits.MaxDepth)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if want := string(viaXML(t, el).Bytes("")); string(got.Bytes("")) != want {
			t.Errorf("binary form of %s:\\n got %s\\nwant %s", s, got.Bytes(""), want)
		}
	}
}

func parse(t testing.TB, s string) *xml.Element {
	head := `<stream:stream xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams">`
	rd := xml.NewReader(strings.NewReader(head+s), xml.DefaultLimits)
	if _, err := rd.Header(); err != nil {
		t.Fatal(err)
	}
	el, err := rd.Next()
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return el
}

// FuzzDecodeStanza: no input makes decoding panic, and what decodes
// encodes to a form that decodes to the same stanza.
func FuzzDecodeStanza(f *testing.F) {
	f.Add(appendElement(nil, msg("chat", "bob@a.lan", "1")))
	f.Add([]byte{0, 0, 0})
	f.Add([]byte{13})
	f.Fuzz(func(t *testing.T, b []byte) {
		el, err := decodeStanza(b, xml.DefaultLimits.MaxDepth)
		if err != nil {
			return
		}
		again, err := decodeStanza(appendElement(nil, el), xml.DefaultLimits.MaxDepth)
		if err != nil {
			t.Fatalf("%x decodes to %s, whose own form does not decode: %v", b, el.Bytes(""), err)
		}
		if !bytes.Equal(again.Bytes(""), el.Bytes("")) {
			t.Fatalf("%x decodes to %s, then to %s", b, el.Bytes(""), again.Bytes(""))
		}
	})
}

func BenchmarkCodec(b *testing.B) {
	el := viaXML(b, msg("chat", "bob@a.lan/desk", "1"))
	enc := appendElement(nil, el)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		for i := 0; i < b.N; i++ {
			buf = appendElement(buf[:0], el)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := decodeStanza(enc, 32); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("xml-bytes", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			el.Bytes(stream.NSClient)
		}
	})
}
