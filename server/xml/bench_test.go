package xml

import (
	"bytes"
	exml "encoding/xml"
	"io"
	"testing"
)

// A message stanza of 279 bytes, the size the design's tokenizer floor
// (encoding/xml Token ≈ 4 µs, 43 allocations) was measured with.
const benchStanza = `<message to='bob@example.lan/desk' from='alice@example.lan/phone' type='chat' id='a1b2c3d4e5'><body>Hello Bob, are we still on for lunch at noon today? Let me know, Bob!!!</body><active xmlns='http://jabber.org/protocol/chatstates'/><request xmlns='urn:xmpp:receipts'/></message>`

// repeatReader serves a stream header, then the stanza forever.
type repeatReader struct {
	head []byte
	body []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if len(r.head) > 0 {
		n := copy(p, r.head)
		r.head = r.head[n:]
		return n, nil
	}
	n := 0
	for n < len(p) {
		k := copy(p[n:], r.body[r.off:])
		n += k
		r.off = (r.off + k) % len(r.body)
	}
	return n, nil
}

// BenchmarkReaderNext: parsing one stanza into an Element, limits checked.
func BenchmarkReaderNext(b *testing.B) {
	if len(benchStanza) != 279 {
		b.Fatalf("stanza is %d bytes", len(benchStanza))
	}
	rd := NewReader(&repeatReader{head: []byte(header), body: []byte(benchStanza)}, DefaultLimits)
	if _, err := rd.Header(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchStanza)))
	for b.Loop() {
		if _, err := rd.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBytes: serializing it back for a recipient's queue.
func BenchmarkBytes(b *testing.B) {
	rd := NewReader(io.MultiReader(bytes.NewReader([]byte(header)), bytes.NewReader([]byte(benchStanza))), DefaultLimits)
	rd.Header()
	el, err := rd.Next()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		el.Bytes("jabber:client")
	}
}

// BenchmarkTokenizerFloor: encoding/xml alone on the same stanza (Token()
// until the stanza's end, no tree, no limits), the floor the design
// measured. Run it next to the others: it calibrates the machine.
func BenchmarkTokenizerFloor(b *testing.B) {
	dec := exml.NewDecoder(&repeatReader{head: []byte(header), body: []byte(benchStanza)})
	dec.Strict = true
	for { // the XML declaration, then the stream header
		t, err := dec.Token()
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := t.(exml.StartElement); ok {
			break
		}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchStanza)))
	for b.Loop() {
		depth := 0
		for {
			t, err := dec.Token()
			if err != nil {
				b.Fatal(err)
			}
			if _, ok := t.(exml.StartElement); ok {
				depth++
			} else if _, ok := t.(exml.EndElement); ok {
				if depth--; depth == 0 {
					break
				}
			}
		}
	}
}

// BenchmarkReaderNextEncodingXML: BenchmarkReaderNext on encoding/xml
// (UseEncodingXML), to compare.
func BenchmarkReaderNextEncodingXML(b *testing.B) {
	defer func(old bool) { UseEncodingXML = old }(UseEncodingXML)
	UseEncodingXML = true
	BenchmarkReaderNext(b)
}

// BenchmarkTokenizerFloorParley: Parley's tokenizer alone on the same
// stanza, as BenchmarkTokenizerFloor does with encoding/xml.
func BenchmarkTokenizerFloorParley(b *testing.B) {
	tk := newTokenizer(&repeatReader{head: []byte(header), body: []byte(benchStanza)}, 1<<20)
	for { // the XML declaration, then the stream header
		t, err := tk.next()
		if err != nil {
			b.Fatal(err)
		}
		if t.kind == tokStart {
			break
		}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchStanza)))
	for b.Loop() {
		depth := 0
		for {
			t, err := tk.next()
			if err != nil {
				b.Fatal(err)
			}
			if t.kind == tokStart {
				depth++
			} else if t.kind == tokEnd {
				if depth--; depth == 0 {
					break
				}
			}
		}
	}
}
