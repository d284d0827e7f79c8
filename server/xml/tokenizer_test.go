package xml

import (
	"bytes"
	exml "encoding/xml"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"unicode"
	"unicode/utf8"
)

func stdDecoder(r io.Reader) *exml.Decoder {
	d := exml.NewDecoder(r)
	d.Strict = true
	d.CharsetReader = func(label string, input io.Reader) (io.Reader, error) {
		if strings.EqualFold(label, "utf-8") {
			return input, nil
		}
		return nil, &Error{"unsupported-encoding", "only UTF-8 is allowed, not " + label}
	}
	return d
}

func sameToken(a, b exml.Token) bool {
	switch a := a.(type) {
	case exml.StartElement:
		b, ok := b.(exml.StartElement)
		if !ok || a.Name != b.Name || len(a.Attr) != len(b.Attr) {
			return false
		}
		for i := range a.Attr {
			if a.Attr[i] != b.Attr[i] {
				return false
			}
		}
		return true
	case exml.EndElement:
		b, ok := b.(exml.EndElement)
		return ok && a == b
	case exml.CharData:
		b, ok := b.(exml.CharData)
		return ok && bytes.Equal(a, b)
	case exml.Comment:
		b, ok := b.(exml.Comment)
		return ok && bytes.Equal(a, b)
	case exml.Directive:
		b, ok := b.(exml.Directive)
		return ok && bytes.Equal(a, b)
	case exml.ProcInst:
		b, ok := b.(exml.ProcInst)
		return ok && a.Target == b.Target && bytes.Equal(a.Inst, b.Inst)
	}
	return false
}

var charRef = regexp.MustCompile(`&#(x[0-9a-fA-F]+|[0-9]+);`)

// stricter names the rule of Namespaces / XML 1.0 that the std token tok
// (raw: the same token without namespace translation; src: its bytes)
// breaks and encoding/xml does not enforce but the tokenizer does, or "".
// It is written independently of the tokenizer, from encoding/xml's view.
// ncNameStart reports whether a QName's local part starts as a name must
// (encoding/xml checks the whole prefixed name only).
func ncNameStart(local string) bool {
	r, _ := utf8.DecodeRuneInString(local)
	return local != "" && unicode.Is(nameStart, r)
}

func stricter(tok, raw exml.Token, src []byte, scopes *[][]string) string {
	declared := func(p string) bool {
		for _, s := range *scopes {
			for _, q := range s {
				if q == p {
					return true
				}
			}
		}
		return false
	}
	for _, m := range charRef.FindAllSubmatch(src, -1) {
		s := string(m[1])
		base := 10
		if s[0] == 'x' {
			s, base = s[1:], 16
		}
		if v, err := strconv.ParseUint(s, base, 64); err == nil && v >= 0xD800 && v <= 0xDFFF {
			return "character reference to a surrogate"
		}
	}
	switch r := raw.(type) {
	case exml.StartElement:
		var decl []string
		for _, a := range r.Attr {
			switch {
			case strings.Contains(a.Name.Local, ":"), a.Name.Space != "" && !ncNameStart(a.Name.Local):
				return "attribute name not a QName"
			case a.Name.Space == "xmlns":
				switch {
				case a.Name.Local == "xmlns":
					return "xmlns declared"
				case a.Name.Local == "xml" && a.Value != NSXML:
					return "xml rebound"
				case a.Name.Local != "xml" && (a.Value == "" || a.Value == NSXML || a.Value == nsXMLNS):
					return "empty or reserved namespace for a prefix"
				}
				decl = append(decl, a.Name.Local)
			case a.Name.Space == "" && a.Name.Local == "xmlns" && (a.Value == NSXML || a.Value == nsXMLNS):
				return "reserved namespace as default"
			}
		}
		*scopes = append(*scopes, decl)
		switch {
		case strings.Contains(r.Name.Local, ":"), r.Name.Space != "" && !ncNameStart(r.Name.Local):
			return "element name not a QName"
		case r.Name.Space == "xmlns" || r.Name.Space == "" && r.Name.Local == "xmlns":
			return "xmlns element"
		case r.Name.Space != "" && r.Name.Space != "xml" && !declared(r.Name.Space):
			return "undeclared element prefix"
		}
		for _, a := range r.Attr {
			if p := a.Name.Space; p != "" && p != "xml" && p != "xmlns" && !declared(p) {
				return "undeclared attribute prefix"
			}
		}
		// Whitespace between attributes: after each closing quote comes
		// whitespace, '/' or '>' (the tag is well-formed otherwise).
		var q byte
		for i := 0; i < len(src); i++ {
			switch c := src[i]; {
			case q != 0:
				if c == q {
					q = 0
					if i+1 < len(src) && !strings.ContainsRune(" \t\r\n/>", rune(src[i+1])) {
						return "attributes not separated by whitespace"
					}
				}
			case c == '\'' || c == '"':
				q = c
			}
		}
	case exml.EndElement:
		if len(*scopes) > 0 {
			*scopes = (*scopes)[:len(*scopes)-1]
		}
	}
	return ""
}

// timeoutReader returns a timeout error before every read that returns
// data: the tokenizer must hand it back and resume on the next call.
type timeoutReader struct {
	r    io.Reader
	flip bool
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func (r *timeoutReader) Read(p []byte) (int, error) {
	if r.flip = !r.flip; r.flip {
		return 0, timeoutErr{}
	}
	return r.r.Read(p)
}

type result struct {
	toks []exml.Token
	err  error
}

// runMine tokenizes data read through rd, retrying on timeouts.
func runMine(t *testing.T, rd io.Reader) result {
	tk := newTokenizer(rd, 1<<20)
	var res result
	for i := 0; i < 100000; i++ {
		tok, err := tk.Token()
		if _, ok := err.(timeoutErr); ok {
			continue
		}
		if err != nil {
			res.err = err
			return res
		}
		res.toks = append(res.toks, exml.CopyToken(tok))
	}
	t.Fatal("no end")
	return res
}

// differential compares the tokenizer with encoding/xml on data: where
// encoding/xml accepts a token (and the token breaks none of the rules
// only the tokenizer enforces) the tokenizer returns the same token at
// the same offset; where encoding/xml fails, the tokenizer fails too;
// where encoding/xml has a token that breaks a stricter rule, the
// tokenizer fails there. It returns encoding/xml's final error.
func differential(t *testing.T, data []byte) error {
	t.Helper()
	std := stdDecoder(bytes.NewReader(data))
	raw := stdDecoder(bytes.NewReader(data))
	mine := newTokenizer(bytes.NewReader(data), 1<<20)
	var scopes [][]string
	prev := int64(0)
	for i := 0; ; i++ {
		st, serr := std.Token()
		mt, merr := mine.Token()
		if serr != nil {
			switch {
			case serr == io.EOF && merr != io.EOF && merr != io.ErrUnexpectedEOF:
				t.Fatalf("%q: token %d: encoding/xml ends, tokenizer: %v %v", data, i, mt, merr)
			case merr == nil || (serr != io.EOF && merr == io.EOF):
				t.Fatalf("%q: token %d: encoding/xml fails (%v), tokenizer: %#v %v", data, i, serr, mt, merr)
			}
			return serr
		}
		rt, rerr := raw.RawToken()
		if rerr != nil {
			t.Fatalf("raw token: %v", rerr)
		}
		rule := stricter(st, rt, data[prev:std.InputOffset()], &scopes)
		if n := 0; rule == "" && len(scopes) > 0 {
			for _, s := range scopes {
				n += len(s)
			}
			if n > maxBindings {
				rule = "too many namespace declarations"
			}
		}
		if rule != "" {
			if merr == nil {
				t.Fatalf("%q: token %d %#v breaks %q, tokenizer accepts it", data, i, st, rule)
			}
			return fmt.Errorf("stricter: %s", rule)
		}
		if merr != nil {
			t.Fatalf("%q: token %d: encoding/xml has %#v, tokenizer fails: %v", data, i, st, merr)
		}
		if !sameToken(st, mt) {
			t.Fatalf("%q: token %d differs:\nencoding/xml %#v\ntokenizer    %#v", data, i, st, mt)
		}
		if std.InputOffset() != mine.InputOffset() {
			t.Fatalf("%q: token %d %#v: offset %d, encoding/xml %d", data, i, st, mine.InputOffset(), std.InputOffset())
		}
		prev = std.InputOffset()
	}
}

// sameResults: however the input arrives (a byte at a time, with a
// timeout before every read), the tokenizer gives the same tokens and the
// same end.
func sameResults(t *testing.T, data []byte) {
	t.Helper()
	whole := runMine(t, bytes.NewReader(data))
	for name, rd := range map[string]io.Reader{
		"byte at a time": iotest.OneByteReader(bytes.NewReader(data)),
		"timeouts":       &timeoutReader{r: iotest.HalfReader(bytes.NewReader(data))},
	} {
		got := runMine(t, rd)
		if len(got.toks) != len(whole.toks) {
			t.Fatalf("%q %s: %d tokens, %d when read at once", data, name, len(got.toks), len(whole.toks))
		}
		for i := range got.toks {
			if !sameToken(got.toks[i], whole.toks[i]) {
				t.Fatalf("%q %s: token %d %#v, %#v when read at once", data, name, i, got.toks[i], whole.toks[i])
			}
		}
		if fmt.Sprint(got.err) != fmt.Sprint(whole.err) {
			t.Fatalf("%q %s: ends with %v, %v when read at once", data, name, got.err, whole.err)
		}
	}
}

const streamHead = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.lan' version='1.0' xml:lang='en'>`

// validInputs: encoding/xml reads each completely; the tokenizer must
// give exactly its tokens.
var validInputs = []string{
	``,
	` `,
	streamHead,
	streamHead + `</stream:stream>`,
	streamHead + benchStanza + "\n" + benchStanza + ` </stream:stream>`,
	`<?xml version="1.0" encoding="UTF-8" standalone='yes'?><a/>`,
	`<?xml version='1.0' encoding='utf-8'?>` + "\n<a/>",
	`<a b="1" c='2' d = "3"	e
=	'4'/>`,
	`<a b='"' c="'" d='>' e="]]>"/>`,
	"<a b='x\ry\r\nz\n\tw'/>",
	"<a b='&#xD;&#13;&#xA;&#x9;'/>",
	`<a b='&lt;&gt;&amp;&apos;&quot;'/>`,
	"<a>x\ry\r\nz\r\r\n</a>",
	"<a>\r</a>",
	`<a>&lt;&gt;&amp;&apos;&quot;&#65;&#x42;&#x0043;&#0068;&#x1F600;</a>`,
	`<a>]]&gt; ] ]] > ]></a>`,
	`<a><![CDATA[<b>&amp;</b>]]]]><![CDATA[>]]></a>`,
	"<a><![CDATA[x\r\ny]]></a>",
	`<a><![CDATA[]]></a>`,
	`<a>bonjour — ø 漢字 🎉 ` + "\u007f\u0080\u00a0\ufffd" + `</a>`,
	`<été xmlns='urn:x'><日本 ü='ö'/></été>`,
	`<a_b.c-d1 e_f.g-h2='1'/>`,
	`<a xmlns='urn:a'><b/><c xmlns=''><d/></c><e xmlns='urn:e'/></a>`,
	`<p:a xmlns:p='urn:p' xmlns:q='urn:q' p:x='1' q:x='2' x='3'><p:b/><q:c xmlns:q='urn:q2' q:y='4'/><q:d/></p:a>`,
	`<a xmlns:p='urn:p'><p:b xmlns:p='urn:other'/><p:c/></a>`,
	`<a xml:lang='en'><xml:b/></a>`,
	`<a xmlns:xml='http://www.w3.org/XML/1998/namespace' xml:lang='de'/>`,
	`<a xmlns:p='urn:p' xmlns:p='urn:q'><p:b/></a>`,
	`<a b='1' b='2'/>`,
	`<a></a ><b></b	>`,
	`<!-- comment -->`,
	`<!---->`,
	`<!-- - -- ->`[:0] + `<!-- a - b -->`,
	`<?pi some data ?><?pi?><?xml-stylesheet href='x'?>`,
	`<!DOCTYPE a [<!ENTITY x "y"> <!-- c --> <!ELEMENT a ANY>]>`,
	`<!DOCTYPE a '>' "<" <!-- > --> <b>>`,
	`<!'>`,
	`<!D<!->x>`,
	"\ufeff<a/>",
	"<a>\u0085\u2028\u00a0</a>",
	"<a\r\nb='1'\r\n/>",
	`<a/>text at the end`,
	`text at the start<a/>`,
	"<a>\t\n </a>",
	`<a>` + strings.Repeat("x", 10000) + `</a>`,
	`<a b='` + strings.Repeat("&amp;", 3000) + `'/>`,
	`<a>` + strings.Repeat("<b>&#x10FFFF;</b>", 500) + `</a>`,
	`<a><b><c><d/></c></b></a>`,
	`<?xml version='1.0' encoding='UTF-8'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:server' xmlns:db='jabber:server:dialback' to='b.lan' from='a.lan' version='1.0'><db:result from='a.lan' to='b.lan'>abc</db:result><db:verify from='a' to='b' id='x' type='valid'/>`,
}

func TestTokensAsEncodingXML(t *testing.T) {
	for _, in := range validInputs {
		name := in
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(name, func(t *testing.T) {
			var se *exml.SyntaxError
			if err := differential(t, []byte(in)); err != io.EOF && !(errors.As(err, &se) && se.Msg == "unexpected EOF") {
				t.Fatalf("encoding/xml: %v (the input must be valid)", err)
			}
			sameResults(t, []byte(in))
		})
	}
}

func TestTokenizerErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string // condition, or EOF / unexpected EOF
	}{
		// encoding/xml refuses these too
		{`<a>`, "unexpected EOF"},
		{`<a b='x`, "unexpected EOF"},
		{`<a><![CDATA[x`, "unexpected EOF"},
		{`<!-- x`, "unexpected EOF"},
		{`<!DOCTYPE x`, "unexpected EOF"},
		{`<a>&lt`, "unexpected EOF"},
		{`</a>`, "not-well-formed"},
		{`<a></b>`, "not-well-formed"},
		{`<a></a:a>`, "not-well-formed"},
		{`<a b=c/>`, "not-well-formed"},
		{`<a b/>`, "not-well-formed"},
		{`<a b='<'/>`, "not-well-formed"},
		{`<a b='x'/ >`, "not-well-formed"},
		{`< a/>`, "not-well-formed"},
		{`<1a/>`, "not-well-formed"},
		{`<a:b:c xmlns:a='u'/>`, "not-well-formed"},
		{`<a>]]></a>`, "not-well-formed"},
		{`<a>&#0;</a>`, "not-well-formed"},
		{`<a>&#x1;</a>`, "not-well-formed"},
		{`<a>&#xFFFE;</a>`, "not-well-formed"},
		{`<a>&#x110000;</a>`, "not-well-formed"},
		{`<a>&#99999999999999999999999;</a>`, "not-well-formed"},
		{`<a>&#;</a>`, "not-well-formed"},
		{`<a>&#x;</a>`, "not-well-formed"},
		{`<a>&#X41;</a>`, "not-well-formed"},
		{`<a>&#65</a>`, "not-well-formed"},
		{`<a>& b</a>`, "not-well-formed"},
		{`<a>&;</a>`, "not-well-formed"},
		{`<a>&amp</a>`, "not-well-formed"},
		{`<a>&lol;</a>`, "restricted-xml"},
		{`<a b='&lol;'/>`, "restricted-xml"},
		{"<a>\x01</a>", "not-well-formed"},
		{"<a>\x00</a>", "not-well-formed"},
		{"<a b='\x0b'/>", "not-well-formed"},
		{"<a>\uFFFE</a>", "not-well-formed"},
		{"<a>\xff</a>", "unsupported-encoding"},
		{"<a b='\xc3\x28'/>", "unsupported-encoding"},
		{"<a\xff/>", "unsupported-encoding"},
		{"<a>\xed\xa0\x80</a>", "unsupported-encoding"},
		{"<a>\xc0\xaf</a>", "unsupported-encoding"},
		{"<a><![CDATA[\xff]]></a>", "unsupported-encoding"},
		{"<a><![CDATA[\x02]]></a>", "not-well-formed"},
		{`<!- x -->`, "not-well-formed"},
		{`<!-- a -- b -->`, "not-well-formed"},
		{`<!-- a --->`, "not-well-formed"},
		{`<![CDAT[x]]>`, "not-well-formed"},
		{`<?xml version='1.1'?>`, "not-well-formed"},
		{`<?xml version='1.0' encoding='ISO-8859-1'?>`, "unsupported-encoding"},
		{`<? x?>`, "not-well-formed"},
		// stricter than encoding/xml
		{`<p:a/>`, "invalid-namespace"},
		{`<a p:b='1'/>`, "invalid-namespace"},
		{`<a xmlns:p='urn:p'/><p:b/>`, "invalid-namespace"},
		{`<:a/>`, "not-well-formed"},
		{`<a:/>`, "not-well-formed"},
		{`<a :b='1'/>`, "not-well-formed"},
		{`<xmlns:a/>`, "not-well-formed"},
		{`<xmlns/>`, "not-well-formed"},
		{`<a xmlns:p=''/>`, "not-well-formed"},
		{`<a xmlns:xmlns='urn:x'/>`, "not-well-formed"},
		{`<a xmlns:xml='urn:x'/>`, "not-well-formed"},
		{`<a xmlns:p='http://www.w3.org/XML/1998/namespace'/>`, "not-well-formed"},
		{`<a xmlns='http://www.w3.org/2000/xmlns/'/>`, "not-well-formed"},
		{`<a>&#xD800;</a>`, "not-well-formed"},
		{`<a b='&#57343;'/>`, "not-well-formed"},
		{`<a b='1'c='2'/>`, "not-well-formed"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			differential(t, []byte(tc.in)) // refused by encoding/xml too, or by a stricter rule
			sameResults(t, []byte(tc.in))
			tk := newTokenizer(strings.NewReader(tc.in), 1<<20)
			var err error
			for err == nil {
				_, err = tk.next()
			}
			got := condition(err)
			if err == io.ErrUnexpectedEOF {
				got = "unexpected EOF"
			}
			if got != tc.want {
				t.Fatalf("%v, want %s", err, tc.want)
			}
			if _, again := tk.next(); again != err {
				t.Errorf("error not kept: %v then %v", err, again)
			}
		})
	}
}

// TestTokenizerReadErrors: a read error comes back unchanged, once; the
// next call goes on with the token being read.
func TestTokenizerReadErrors(t *testing.T) {
	in := `<message to='a@b'><body>hello</body></message>`
	for cut := 1; cut < len(in); cut++ {
		failed := false
		rd := readerFunc(func(p []byte) (int, error) {
			return 0, nil
		})
		parts := []string{in[:cut], in[cut:]}
		rd = func(p []byte) (int, error) {
			if len(parts) == 0 {
				return 0, io.EOF
			}
			if len(parts) == 1 && !failed {
				failed = true
				return 0, timeoutErr{}
			}
			n := copy(p, parts[0])
			if parts[0] = parts[0][n:]; parts[0] == "" {
				parts = parts[1:]
			}
			return n, nil
		}
		tk := newTokenizer(rd, 1<<20)
		var got []string
		timeouts := 0
		for {
			tok, err := tk.Token()
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
			got = append(got, fmt.Sprintf("%T", tok))
		}
		if timeouts != 1 || len(got) != 5 {
			t.Fatalf("cut %d: %d timeouts, tokens %v", cut, timeouts, got)
		}
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestTokenizerLinear: a large token arriving a byte at a time costs
// linear time (each byte is looked at a bounded number of times).
func TestTokenizerLinear(t *testing.T) {
	for _, in := range []string{
		`<a>` + strings.Repeat("x", 200000) + `</a>`,
		`<a b='` + strings.Repeat("x", 200000) + `'/>`,
		`<!--` + strings.Repeat("-x", 100000) + `-->`,
		`<a><![CDATA[` + strings.Repeat("]x", 100000) + `]]></a>`,
		`<!DOCTYPE ` + strings.Repeat("<'>'", 50000) + strings.Repeat(">", 50000) + `>`,
		`<?pi ` + strings.Repeat("?x", 100000) + `?>`,
	} {
		n := 0
		rd := iotest.OneByteReader(strings.NewReader(in))
		tk := newTokenizer(readerFunc(func(p []byte) (int, error) {
			n++
			return rd.Read(p)
		}), 1<<20)
		var err error
		for err == nil {
			_, err = tk.next()
		}
		if err != io.EOF {
			t.Fatalf("%.20q: %v", in, err)
		}
		_ = n
	}
}

// TestTokenizerBuffer: the tokenizer holds at most maxBuf bytes.
func TestTokenizerBuffer(t *testing.T) {
	tk := newTokenizer(&endless{prefix: `<a>`, fill: 'x'}, 10000)
	var err error
	for err == nil {
		_, err = tk.next()
	}
	if condition(err) != "policy-violation" {
		t.Fatalf("%v", err)
	}
	if cap(tk.buf) > 10000 {
		t.Fatalf("buffer of %d bytes", cap(tk.buf))
	}
}

// FuzzTokenizer: the differential test on arbitrary input after a stream
// header, and the same tokens however the input arrives.
func FuzzTokenizer(f *testing.F) {
	for _, s := range validInputs {
		if len(s) < 1000 {
			f.Add([]byte(s))
		}
	}
	for _, s := range []string{
		`<message to='a@b'><body>hi</body></message>`,
		`<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq> <presence/>`,
		`<presence><show>away</show><status>brb &amp; back</status><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>`,
		`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>`,
		`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>biwsbj1qdWxpZXQscj1vTXNUQUF3QUFBQU1BQUFBTlAwVEFBQUFBQUJQVTBBQQ==</auth>`,
		`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`,
		`<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`,
		`<p:x xmlns:p='urn:p' p:a='1' xml:lang='en'>&lt;&amp;&#x1F600;<![CDATA[x]]></p:x>`,
		`<!-- c --><?pi?><!DOCTYPE x>`,
		"<message>\xff</message>",
		`</stream:stream>`,
		`<a b='&lol;'/>`,
		`<a b='1'c='2'/>`,
		`<p:a/>`,
		`<a>&#xD800;</a>`,
	} {
		f.Add([]byte(s))
		f.Add([]byte(streamHead + s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		differential(t, data)
		sameResults(t, data)
	})
}

var _ = errors.New

// idleProbe is a connection that, whenever the tokenizer waits for input
// with everything before consumed, records what the tokenizer still holds.
type idleProbe struct {
	t      *tokenizer
	chunks []string
	held   []int // bytes of buffers held at each read with nothing pending
	sizes  []int // len(p) of those reads
}

func (p *idleProbe) Read(b []byte) (int, error) {
	// (The first read, before anything was consumed, is a whole one: the
	// reader looks at what starts the stream.)
	if p.t.pos == p.t.end && p.t.base > 0 {
		p.held = append(p.held, cap(p.t.buf)+cap(p.t.text)+cap(p.t.vals)+cap(p.t.strs))
		p.sizes = append(p.sizes, len(b))
	}
	if len(p.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.chunks[0])
	if p.chunks[0] = p.chunks[0][n:]; p.chunks[0] == "" {
		p.chunks = p.chunks[1:]
	}
	return n, nil
}

// An idle connection holds no buffer: between stanzas, once everything
// read has been consumed, the tokenizer waits on a one-byte read with its
// buffers back in the pool, and the stanzas still read whole.
func TestTokenizerIdleHoldsNoBuffer(t *testing.T) {
	p := &idleProbe{chunks: []string{
		`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`,
		`<message to='a@b' id='1'><body>` + strings.Repeat("x", 3000) + `</body></message>`,
		` `,
		`<presence/><iq type='get' id='2'><ping xmlns='urn:xmpp:ping'/></iq>`,
	}}
	rd := NewReader(p, DefaultLimits)
	p.t = rd.tok.(*tokenizer)
	if _, err := rd.Header(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		el, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, el.Name.Local+"/"+el.Get("id"))
	}
	if want := []string{"message/1", "presence/", "iq/2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("stanzas %v, want %v", got, want)
	}
	if len(p.held) < 3 {
		t.Fatalf("only %d idle reads: %v", len(p.held), p.sizes)
	}
	for i, h := range p.held {
		if h != 0 || p.sizes[i] != 1 {
			t.Errorf("idle read %d: %d bytes of buffers held, read of %d bytes; want none held and a one-byte read", i, h, p.sizes[i])
		}
	}
}
