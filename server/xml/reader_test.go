package xml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

const header = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.lan' version='1.0'>`

// countingReader counts the bytes the Reader pulled from the connection.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n += int64(k)
	return k, err
}

// endless yields a prefix, then the same filler byte forever.
type endless struct {
	prefix string
	fill   byte
}

func (e *endless) Read(p []byte) (int, error) {
	n := copy(p, e.prefix)
	e.prefix = e.prefix[n:]
	for i := n; i < len(p); i++ {
		p[i] = e.fill
	}
	return len(p), nil
}

func condition(err error) string {
	var xe *Error
	if errors.As(err, &xe) {
		return xe.Condition
	}
	if err == io.EOF {
		return "EOF"
	}
	if err == nil {
		return ""
	}
	return "other: " + err.Error()
}

func TestHeader(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  string // condition, "" for success
		attrs map[string]string
	}{
		{"declaration and header", header, "", map[string]string{"to": "example.lan", "version": "1.0"}},
		{"no declaration", `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='a.lan'>`, "", map[string]string{"to": "a.lan"}},
		{"leading whitespace", "\n  \t" + `<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, "", nil},
		{"explicit UTF-8", `<?xml version='1.0' encoding='UTF-8'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, "", nil},
		{"lower-case utf-8", `<?xml version="1.0" encoding="utf-8"?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, "", nil},
		{"other prefix", `<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:server'>`, "", nil},
		{"ISO-8859-1", `<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, "unsupported-encoding", nil},
		{"UTF-16 label", `<?xml version='1.0' encoding='UTF-16'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, "unsupported-encoding", nil},
		{"wrong namespace", `<stream:stream xmlns:stream='urn:nope'>`, "invalid-namespace", nil},
		{"undeclared prefix", `<stream:stream xmlns='jabber:client'>`, "invalid-namespace", nil},
		{"duplicate to", `<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='a.lan' to='b.lan'>`, "not-well-formed", nil},
		{"wrong element", `<message xmlns='jabber:client'/>`, "invalid-namespace", nil},
		{"text first", `hello<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, "not-well-formed", nil},
		{"comment", `<!-- hi --><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, "restricted-xml", nil},
		{"processing instruction", `<?xml version='1.0'?><?php echo 1 ?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, "restricted-xml", nil},
		{"DTD", `<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY x "y">]><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, "restricted-xml", nil},
		{"empty", ``, "EOF", nil},
		{"truncated", `<stream:stream xmlns:stream='http://etherx.jabber.org/str`, "EOF", nil},
		{"invalid UTF-8 in header", "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='\xff'>", "unsupported-encoding", nil},
		{"garbage", `<<<`, "not-well-formed", nil},
		{"standalone", `<?xml version="1.0" encoding="UTF-8" standalone='yes'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, "", nil},
		{"declaration without version", `<?xml encoding='UTF-8'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, "not-well-formed", nil},
		{"attribute in declaration", `<?xml xmlns:db='jabber:server:dialback' version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, "not-well-formed", nil},
		{"declaration out of order", `<?xml version='1.0' standalone='yes' encoding='UTF-8'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, "not-well-formed", nil},
		{"unquoted version", `<?xml version=1.0?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, "not-well-formed", nil},
		{"empty declaration", `<?xml ?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, "not-well-formed", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rd := NewReader(strings.NewReader(tc.in), DefaultLimits)
			h, err := rd.Header()
			if got := condition(err); got != tc.want {
				t.Fatalf("got %q (%v), want %q", got, err, tc.want)
			}
			if err != nil {
				return
			}
			if h.Name.Space != NSStream || h.Name.Local != "stream" {
				t.Fatalf("header name %v", h.Name)
			}
			for k, v := range tc.attrs {
				if h.Get(k) != v {
					t.Errorf("%s = %q, want %q", k, h.Get(k), v)
				}
			}
		})
	}
}

// readAll reads a stream body (after the standard header) and returns the
// elements and the error that ended it.
func readAll(t *testing.T, body string, limits Limits) ([]*Element, error) {
	t.Helper()
	rd := NewReader(strings.NewReader(header+body), limits)
	if _, err := rd.Header(); err != nil {
		t.Fatalf("header: %v", err)
	}
	var out []*Element
	for {
		el, err := rd.Next()
		if err != nil {
			return out, err
		}
		out = append(out, el)
	}
}

func TestNextElements(t *testing.T) {
	els, err := readAll(t, `<message to='bob@example.lan' type='chat' xml:lang='de'><body>hallo</body>`+
		`<x xmlns='urn:x'><y/></x><p:thing xmlns:p='urn:p' p:attr='v' plain='w'/></message>`+
		"\n \r\n\t"+ // whitespace keepalives between stanzas
		`<iq xmlns='jabber:client' type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>`+
		` <presence/>`+
		`<db:result xmlns:db='jabber:server:dialback' from='a' to='b'>key</db:result>`+
		`</stream:stream>`, DefaultLimits)
	if err != io.EOF {
		t.Fatalf("end: %v, want io.EOF", err)
	}
	if len(els) != 4 {
		t.Fatalf("%d elements", len(els))
	}
	m := els[0]
	if m.Name != (Name{Space: "jabber:client", Local: "message"}) {
		t.Errorf("message name %v", m.Name)
	}
	if m.Get("to") != "bob@example.lan" || m.Get("type") != "chat" || m.Lang() != "de" {
		t.Errorf("message attrs %v", m.Attr)
	}
	if b := m.Child("jabber:client", "body"); b == nil || b.Text() != "hallo" {
		t.Errorf("body %v", m.Child("", "body"))
	}
	x := m.Child("urn:x", "x")
	if x == nil || x.Child("urn:x", "y") == nil {
		t.Errorf("x child in urn:x: %v", x)
	}
	p := m.Child("urn:p", "thing")
	if p == nil {
		t.Fatalf("prefixed child missing: %s", m)
	}
	if len(p.Attr) != 2 || p.Attr[0].Name != (Name{Space: "urn:p", Local: "attr"}) || p.Attr[1].Name != (Name{Local: "plain"}) {
		t.Errorf("prefixed attributes (xmlns declarations must be dropped): %v", p.Attr)
	}
	if els[1].Name.Local != "iq" || els[1].Elements()[0].Name.Space != "jabber:iq:roster" {
		t.Errorf("iq %s", els[1])
	}
	if els[2].Name != (Name{Space: "jabber:client", Local: "presence"}) {
		t.Errorf("presence %v", els[2].Name)
	}
	if els[3].Name != (Name{Space: "jabber:server:dialback", Local: "result"}) || els[3].Text() != "key" {
		t.Errorf("dialback %s", els[3])
	}
}

func TestNextErrors(t *testing.T) {
	deep := func(n int) string {
		return strings.Repeat("<a>", n) + strings.Repeat("</a>", n)
	}
	tests := []struct {
		name   string
		body   string
		limits Limits
		want   string
		n      int // elements read before the error
	}{
		{"end of stream", `<presence/></stream:stream>`, DefaultLimits, "EOF", 1},
		{"connection closed", `<presence/>`, DefaultLimits, "EOF", 1},
		{"closed mid-stanza", `<message><body>hi`, DefaultLimits, "EOF", 0},
		{"text at stream level", `<presence/>hello<presence/>`, DefaultLimits, "not-well-formed", 1},
		{"comment in stanza", `<message><!-- x --></message>`, DefaultLimits, "restricted-xml", 0},
		{"comment between stanzas", `<presence/><!-- x -->`, DefaultLimits, "restricted-xml", 1},
		{"processing instruction", `<message><?pi data?></message>`, DefaultLimits, "restricted-xml", 0},
		{"xml declaration again", `<?xml version='1.0'?>`, DefaultLimits, "restricted-xml", 0},
		{"doctype", `<!DOCTYPE message>`, DefaultLimits, "restricted-xml", 0},
		{"entity declaration", `<!ENTITY lol "lol">`, DefaultLimits, "restricted-xml", 0},
		{"undeclared entity", `<message><body>&lol;</body></message>`, DefaultLimits, "restricted-xml", 0},
		{"invalid numeric reference", `<message><body>&#0;</body></message>`, DefaultLimits, "not-well-formed", 0},
		{"invalid UTF-8 in text", "<message><body>\xff\xfe</body></message>", DefaultLimits, "unsupported-encoding", 0},
		{"invalid UTF-8 in attribute", "<message to='\xc3\x28'/>", DefaultLimits, "unsupported-encoding", 0},
		{"invalid UTF-8 in name", "<mess\xffage/>", DefaultLimits, "unsupported-encoding", 0},
		{"overlong UTF-8", "<message><body>\xc0\xaf</body></message>", DefaultLimits, "unsupported-encoding", 0},
		{"UTF-16 surrogate in UTF-8", "<message><body>\xed\xa0\x80</body></message>", DefaultLimits, "unsupported-encoding", 0},
		{"mismatched tags", `<a></b>`, DefaultLimits, "not-well-formed", 0},
		{"duplicate attribute", `<message to='a@b' from='x@y' from='admin@example.lan'/>`, DefaultLimits, "not-well-formed", 0},
		{"duplicate namespaced attribute", `<a xmlns:p='urn:p' xmlns:q='urn:p' p:x='1' q:x='2'/>`, DefaultLimits, "not-well-formed", 0},
		{"duplicate attribute, many", `<a ` + manyAttrs(40) + ` a7='again'/>`, DefaultLimits, "not-well-formed", 0},
		{"many distinct attributes", `<a ` + manyAttrs(40) + `/>`, DefaultLimits, "EOF", 1},
		{"duplicate namespace declaration", `<a xmlns:p='urn:p' xmlns:p='urn:q'/>`, DefaultLimits, "not-well-formed", 0},
		{"depth at the limit", deep(4), Limits{MaxStanza: 1 << 10, MaxDepth: 4}, "EOF", 1},
		{"depth over the limit", deep(5), Limits{MaxStanza: 1 << 10, MaxDepth: 4}, "policy-violation", 0},
		{"size at the limit", `<a>` + strings.Repeat("x", 100) + `</a>`, Limits{MaxStanza: 107, MaxDepth: 4}, "EOF", 1},
		{"size over the limit", `<a>` + strings.Repeat("x", 101) + `</a>`, Limits{MaxStanza: 107, MaxDepth: 4}, "policy-violation", 0},
		{"second stanza over", `<a/><a>` + strings.Repeat("x", 200) + `</a>`, Limits{MaxStanza: 107, MaxDepth: 4}, "policy-violation", 1},
		{"many small stanzas", strings.Repeat(`<a>`+strings.Repeat("x", 90)+`</a>`, 100), Limits{MaxStanza: 107, MaxDepth: 4}, "EOF", 100},
		{"whitespace keepalives", strings.Repeat(" ", 900) + `<a/>` + strings.Repeat("\n", 900) + `<a/>` + strings.Repeat(" ", 900), Limits{MaxStanza: 1 << 10, MaxDepth: 4}, "EOF", 2},
		{"whitespace flood", `<a/>` + strings.Repeat(" ", 50000) + `<a/>`, Limits{MaxStanza: 1 << 10, MaxDepth: 4}, "policy-violation", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			els, err := readAll(t, tc.body, tc.limits)
			want := tc.want
			if want == "" {
				want = "EOF"
			}
			if got := condition(err); got != want {
				t.Fatalf("got %q (%v), want %q", got, err, want)
			}
			if len(els) != tc.n {
				t.Fatalf("%d elements before the error, want %d", len(els), tc.n)
			}
		})
	}
}

// TestSizeLimitWhileReading: a huge stanza fails once the limit is passed,
// not after the reader has swallowed the whole of it.
func TestSizeLimitWhileReading(t *testing.T) {
	const max = 64 << 10
	for _, tc := range []struct {
		name   string
		prefix string
		fill   byte
	}{
		{"text", `<message><body>`, 'x'},
		{"attribute value", `<message to='`, 'x'},
		{"whitespace between stanzas", ``, ' '},
		{"whitespace in stanza", `<message>`, '\n'},
		{"element name", `<m`, 'm'},
		{"comment", `<message><!--`, 'c'},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &countingReader{r: io.LimitReader(&endless{prefix: header + tc.prefix, fill: tc.fill}, 10<<20)}
			rd := NewReader(src, Limits{MaxStanza: max, MaxDepth: 16})
			if _, err := rd.Header(); err != nil {
				t.Fatal(err)
			}
			_, err := rd.Next()
			got := condition(err)
			if got != "policy-violation" {
				t.Fatalf("got %q (%v), want policy-violation", got, err)
			}
			if limit := int64(len(header)) + max + 2*readAhead; src.n > limit {
				t.Fatalf("read %d bytes for a %d byte limit", src.n, max)
			}
		})
	}
}

// TestSizeLimitRearms: the limit applies per stanza, so a long stream of
// stanzas each under the limit passes.
func TestSizeLimitRearms(t *testing.T) {
	stanza := `<message><body>` + strings.Repeat("y", 900) + `</body></message>`
	var b strings.Builder
	for i := 0; i < 1000; i++ {
		b.WriteString(stanza)
	}
	els, err := readAll(t, b.String(), Limits{MaxStanza: 1 << 10, MaxDepth: 4})
	if err != io.EOF || len(els) != 1000 {
		t.Fatalf("%d elements, %v", len(els), err)
	}
}

func TestRoundTrip(t *testing.T) {
	stanzas := []string{
		`<message to="a@b.lan" type="chat"><body>plain</body></message>`,
		`<message><body>&lt;tag&gt; &amp; &quot;quotes&quot; &apos;apos&apos; ]]&gt;</body></message>`,
		`<message to="x&amp;y&lt;&gt;&quot;&apos;"><body>new
line	tab</body></message>`,
		`<message a="line&#xA;feed&#x9;tab&#xD;cr"/>`,
		`<message><body>carriage&#xD;return</body></message>`,
		`<message xml:lang="fr"><body xml:lang="en">bonjour — ø 漢字 🎉</body></message>`,
		`<message><x xmlns="urn:x"><y xmlns=""><z/></y></x></message>`,
		`<iq type="set" id="1"><p:q xmlns:p="urn:p" xmlns:r="urn:r" p:one="1" r:two="2" three="3"><p:inner/></p:q></iq>`,
		`<presence><![CDATA[<not markup> & stuff]]></presence>`,
		`<message><body>mixed <b xmlns="urn:b">bold</b> text</body></message>`,
	}
	for _, s := range stanzas {
		t.Run(s, func(t *testing.T) {
			els, err := readAll(t, s, DefaultLimits)
			if err != io.EOF || len(els) != 1 {
				t.Fatalf("read: %d, %v", len(els), err)
			}
			out := els[0].Bytes("jabber:client")
			again, err := readAll(t, string(out), DefaultLimits)
			if err != io.EOF || len(again) != 1 {
				t.Fatalf("re-read %s: %d, %v", out, len(again), err)
			}
			if !equal(els[0], again[0]) {
				t.Fatalf("round trip differs:\n%s\n%s", els[0], again[0])
			}
			if out2 := again[0].Bytes("jabber:client"); !bytes.Equal(out, out2) {
				t.Fatalf("serialization not stable:\n%s\n%s", out, out2)
			}
		})
	}
}

// equal compares trees, merging adjacent text nodes (CDATA and escapes may
// split text into several tokens).
func equal(a, b *Element) bool {
	if a.Name != b.Name || len(a.Attr) != len(b.Attr) {
		return false
	}
	for i := range a.Attr {
		if a.Attr[i] != b.Attr[i] {
			return false
		}
	}
	ac, bc := merged(a.Children), merged(b.Children)
	if len(ac) != len(bc) {
		return false
	}
	for i := range ac {
		switch x := ac[i].(type) {
		case Text:
			if y, ok := bc[i].(Text); !ok || x != y {
				return false
			}
		case *Element:
			if y, ok := bc[i].(*Element); !ok || !equal(x, y) {
				return false
			}
		}
	}
	return true
}

func merged(ns []Node) []Node {
	var out []Node
	for _, n := range ns {
		if t, ok := n.(Text); ok && len(out) > 0 {
			if p, ok := out[len(out)-1].(Text); ok {
				out[len(out)-1] = p + t
				continue
			}
		}
		out = append(out, n)
	}
	return out
}

// FuzzReader: whatever a peer sends, the Reader does not panic, never
// returns an element deeper than MaxDepth, never pulls more than one
// stanza's limit plus its read-ahead from the connection per element, and
// what it returns serializes to XML it reads back the same.
func FuzzReader(f *testing.F) {
	for _, s := range []string{
		`<message to='a@b'><body>hi</body></message>`,
		`<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq> <presence/>`,
		`<a><b><c><d><e><f><g><h><i/></h></g></f></e></d></c></b></a>`,
		`<!-- c --><?pi?><!DOCTYPE x>`,
		"<message>\xff</message>",
		`<p:x xmlns:p='urn:p' p:a='1' xml:lang='en'>&lt;&amp;&#x1F600;<![CDATA[x]]></p:x>`,
		`<a>` + strings.Repeat("z", 3000) + `</a>`,
		`</stream:stream>`,
		`text`,
		`<a b='&lol;'/>`,
	} {
		f.Add([]byte(s))
	}
	limits := Limits{MaxStanza: 2048, MaxDepth: 8}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := &countingReader{r: io.MultiReader(strings.NewReader(header), bytes.NewReader(data))}
		rd := NewReader(src, limits)
		if _, err := rd.Header(); err != nil {
			t.Fatalf("header: %v", err)
		}
		var ms runtime.MemStats
		for i := 0; i < 100; i++ {
			before := src.n
			runtime.ReadMemStats(&ms)
			alloc := ms.TotalAlloc
			el, err := rd.Next()
			runtime.ReadMemStats(&ms)
			if d := src.n - before; d > limits.MaxStanza+readAhead {
				t.Fatalf("one Next read %d bytes", d)
			}
			// Each input byte may cost a few hundred bytes of tree (an
			// element per "<a/>"); the bound catches unbounded buffering.
			if d := ms.TotalAlloc - alloc; d > 512*uint64(limits.MaxStanza+readAhead) {
				t.Fatalf("one Next allocated %d bytes", d)
			}
			if err != nil {
				var xe *Error
				if err != io.EOF && !errors.As(err, &xe) {
					t.Fatalf("error of an unexpected kind: %T %v", err, err)
				}
				return
			}
			if d := depth(el); d > limits.MaxDepth {
				t.Fatalf("depth %d", d)
			}
			out := el.Bytes("jabber:client")
			again, err := readAll(t, string(out), Limits{MaxStanza: 1 << 20, MaxDepth: 64})
			if err != io.EOF || len(again) != 1 || !equal(el, again[0]) {
				t.Fatalf("round trip of %q: %q → %v, %v", data, out, again, err)
			}
		}
	})
}

func manyAttrs(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, " a%d='%d'", i, i)
	}
	return b.String()
}

func depth(e *Element) int {
	d := 0
	for _, c := range e.Elements() {
		if k := depth(c); k > d {
			d = k
		}
	}
	return d + 1
}

// TestReaderOnTheOtherTokenizer: the Reader's tests pass on both
// tokenizers (UseEncodingXML switches).
func TestReaderOnTheOtherTokenizer(t *testing.T) {
	UseEncodingXML = !UseEncodingXML
	defer func() { UseEncodingXML = !UseEncodingXML }()
	for name, test := range map[string]func(*testing.T){
		"Header": TestHeader, "NextElements": TestNextElements, "NextErrors": TestNextErrors,
		"SizeLimitWhileReading": TestSizeLimitWhileReading, "SizeLimitRearms": TestSizeLimitRearms,
		"RoundTrip": TestRoundTrip, "ElementsOwnTheirData": TestElementsOwnTheirData,
	} {
		t.Run(name, test)
	}
}

// TestNextAfterTimeout: without OnTimeout, a read timeout comes back from
// Next unchanged; the next call goes on with the stanza being read.
func TestNextAfterTimeout(t *testing.T) {
	if UseEncodingXML {
		t.Skip("encoding/xml keeps the first error it sees")
	}
	stanza := `<message to='a@b'><body>hello</body></message>`
	for cut := 0; cut <= len(stanza); cut++ {
		parts := []string{header + stanza[:cut], stanza[cut:] + `<presence/>`}
		timedOut := false
		rd := NewReader(readerFunc(func(p []byte) (int, error) {
			if len(parts) == 0 {
				return 0, io.EOF
			}
			if len(parts) == 1 && !timedOut {
				timedOut = true
				return 0, timeoutErr{}
			}
			n := copy(p, parts[0])
			if parts[0] = parts[0][n:]; parts[0] == "" {
				parts = parts[1:]
			}
			return n, nil
		}), DefaultLimits)
		if _, err := rd.Header(); err != nil {
			t.Fatal(err)
		}
		var got []string
		timeouts := 0
		for {
			el, err := rd.Next()
			if err == (timeoutErr{}) {
				timeouts++
				continue
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("cut %d: %v", cut, err)
			}
			got = append(got, el.String())
		}
		want := []string{`<message xmlns="jabber:client" to="a@b"><body>hello</body></message>`, `<presence xmlns="jabber:client"/>`}
		if timeouts != 1 || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("cut %d: %d timeouts, %q", cut, timeouts, got)
		}
	}
}

// TestElementsOwnTheirData: what Next returns shares nothing with the
// tokenizer's buffers, which the next stanzas overwrite.
func TestElementsOwnTheirData(t *testing.T) {
	var in strings.Builder
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&in, `<message to='u%d@b' id='%d'><body>text %d&amp;</body><x xmlns='urn:%d' a='%d'/></message>`, i, i, i, i, i)
	}
	els, err := readAll(t, in.String(), DefaultLimits)
	if err != io.EOF || len(els) != 200 {
		t.Fatalf("%d, %v", len(els), err)
	}
	for i, el := range els {
		want := fmt.Sprintf(`<message xmlns="jabber:client" to="u%d@b" id="%d"><body>text %d&amp;</body><x xmlns="urn:%d" a="%d"/></message>`, i, i, i, i, i)
		if el.String() != want {
			t.Fatalf("%d: %s, want %s", i, el, want)
		}
	}
}
