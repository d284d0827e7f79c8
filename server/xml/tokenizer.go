package xml

import (
	"bytes"
	exml "encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// tokenizer is Parley's own XML tokenizer: the token stream of
// encoding/xml's Decoder.Token (Strict, UTF-8 only) for what XMPP uses,
// with XML 1.0 + Namespaces well-formedness enforced where encoding/xml is
// lax, and without its per-byte and per-token allocations.
//
// It differs from encoding/xml only by refusing more (each checked by the
// differential fuzz test): undeclared namespace prefixes; names that are
// not QNames (":a", "a:"); the prefix xmlns on elements and an element
// named xmlns; xmlns:p="" and other declarations Namespaces 1.0 forbids;
// character references to surrogates (encoding/xml turns them into
// U+FFFD); attributes not separated by whitespace. Its errors are *Error
// values with the RFC 6120 condition, io.EOF (end of input between
// top-level tokens), io.ErrUnexpectedEOF (end of input inside a token or
// element) or the reader's own error, unchanged.
//
// It reads into one buffer and hands out a token only once the token is
// complete there; until then it keeps what it has, so a read error (a
// timeout) is returned once and the next call resumes where it left off.
// Finding a token's end is resumable too: a token that arrives a byte at a
// time costs linear, not quadratic, time. Byte slices and the Attr slice
// of a token are valid until the next call, as encoding/xml's CharData.
type tokenizer struct {
	r       io.Reader
	buf     []byte
	pos     int   // start of the next token in buf
	end     int   // end of the data in buf
	base    int64 // input offset of buf[0]
	maxBuf  int
	eof     bool
	err     error // sticky: a syntax error or the end
	pendErr error // a read error that came with data, returned once

	// finding the end of the token at pos, resumable
	scanned int
	quote   byte
	dir     dirState

	tok          token
	closePending bool // after <a/>, the EndElement

	// While the connection is idle the buffers below go back to a pool
	// (see fill); sc carries them there and back.
	sc  *scratch
	one [1]byte // what an idle read reads into

	text  []byte // decoded character data, directives
	vals  []byte // decoded attribute values
	strs  []byte // a start tag's strings, before they become one string
	raw   []rawAttr
	slots []slot
	attr  []exml.Attr
	stack []openElement
	ns    []binding
}

type tokKind uint8

const (
	tokStart tokKind = iota + 1
	tokEnd
	tokText
	tokComment
	tokProcInst
	tokDirective
)

// token is a token as the Reader takes it, without the interface
// conversion (an allocation) of Token().
type token struct {
	kind   tokKind
	name   exml.Name   // start and end elements
	attr   []exml.Attr // start elements
	data   []byte      // text, comment, directive, processing instruction
	target string      // processing instruction
}

type rawAttr struct{ prefix, local, value []byte }

type slot struct {
	s        string
	off, len int
}

type binding struct{ prefix, uri string }

type openElement struct {
	prefix, local string
	name          exml.Name
	nsLen         int // len(ns) before the element's declarations
}

type dirState struct {
	i      int // next byte, relative to pos; 0: not started
	phase  uint8
	lt     int // bytes of "!--" matched after a '<'
	quote  byte
	depth  int
	b0, b1 byte
}

const nsXMLNS = "http://www.w3.org/2000/xmlns/"

// maxBindings bounds the namespace declarations in scope, which prefixes
// are looked up in one by one.
const maxBindings = 256

var errNeedMore = errors.New("xml: need more input")

func newTokenizer(r io.Reader, maxBuf int) *tokenizer {
	if maxBuf < 64 {
		maxBuf = 64
	}
	return &tokenizer{r: r, maxBuf: maxBuf}
}

func wf(format string, args ...any) error {
	return &Error{"not-well-formed", fmt.Sprintf(format, args...)}
}

// clipBytes is Clip for a byte slice (an error's cold path: only the
// prefix is copied).
func clipBytes(b []byte) string { return Clip(string(b[:min(len(b), MaxQuote+4)])) }

func badUTF8() error { return &Error{"unsupported-encoding", "invalid UTF-8"} }

// InputOffset is the input offset just after the last token returned.
func (t *tokenizer) InputOffset() int64 { return t.base + int64(t.pos) }

// Token returns the next token as encoding/xml's Decoder.Token does.
func (t *tokenizer) Token() (exml.Token, error) {
	tk, err := t.next()
	if err != nil {
		return nil, err
	}
	switch tk.kind {
	case tokStart:
		return exml.StartElement{Name: tk.name, Attr: append([]exml.Attr{}, tk.attr...)}, nil
	case tokEnd:
		return exml.EndElement{Name: tk.name}, nil
	case tokText:
		return exml.CharData(tk.data), nil
	case tokComment:
		return exml.Comment(tk.data), nil
	case tokProcInst:
		return exml.ProcInst{Target: tk.target, Inst: tk.data}, nil
	default:
		return exml.Directive(tk.data), nil
	}
}

// next reads the next token into t.tok.
func (t *tokenizer) next() (*token, error) {
	if t.err != nil {
		return nil, t.err
	}
	if t.closePending {
		t.closePending = false
		t.pop()
		return &t.tok, nil
	}
	for {
		if t.pos < t.end {
			var n int
			var err error
			if t.isDirective() {
				n, err = t.directive()
			} else {
				if n = t.end - t.pos; !t.eof {
					n = t.findEnd()
				}
				if n >= 0 {
					n, err = t.parse(t.buf[t.pos:t.pos+n], t.eof)
				}
			}
			if err == errNeedMore || (err == nil && n < 0 && t.eof) {
				if t.eof {
					err = io.ErrUnexpectedEOF
				} else {
					err = wf("malformed markup")
				}
			}
			if err != nil {
				t.err = err
				return nil, err
			}
			if n >= 0 {
				t.pos += n
				t.scanned, t.quote, t.dir = 0, 0, dirState{}
				return &t.tok, nil
			}
		} else if t.eof {
			t.err = io.EOF
			if len(t.stack) > 0 {
				t.err = io.ErrUnexpectedEOF
			}
			return nil, t.err
		}
		if err := t.fill(); err != nil {
			return nil, err
		}
	}
}

// scratch is the tokenizer's working memory, which it holds only while
// input is flowing: the read buffer and what tokens are decoded into.
type scratch struct {
	buf, text, vals, strs []byte
	raw                   []rawAttr
	slots                 []slot
	attr                  []exml.Attr
}

var scratchPool sync.Pool

// release gives the working memory back to the pool: everything buffered
// has been consumed and no token is in progress.
func (t *tokenizer) release() {
	sc := t.sc
	if sc == nil {
		sc = &scratch{}
	}
	clear(t.raw[:cap(t.raw)]) // slices of buf
	*sc = scratch{buf: t.buf, text: t.text[:0], vals: t.vals[:0], strs: t.strs[:0], raw: t.raw[:0], slots: t.slots[:0], attr: t.attr[:0]}
	t.buf, t.text, t.vals, t.strs, t.raw, t.slots, t.attr = nil, nil, nil, nil, nil, nil, nil
	t.tok = token{}
	t.sc = nil
	scratchPool.Put(sc)
}

// idle releases the working memory if everything read has been consumed
// and nothing is pending.
func (t *tokenizer) idle() {
	if t.pos != t.end || t.closePending || t.pendErr != nil || t.err != nil || t.base+int64(t.pos) == 0 {
		return
	}
	t.base += int64(t.pos)
	t.pos, t.end = 0, 0
	if t.buf != nil || t.sc != nil {
		t.release()
	}
}

// trim gives back the spare capacity of the element and namespace stacks
// that the deepest stanza so far made them grow to: for a reader whose
// connection is going to wait a long while (the stream's root stays open
// for the stream's life).
func (t *tokenizer) trim() {
	if cap(t.stack) > len(t.stack) {
		t.stack = slices.Clone(t.stack)
	}
	if cap(t.ns) > len(t.ns) {
		t.ns = slices.Clone(t.ns)
	}
}

// acquire takes working memory from the pool (none there: it grows as
// input needs it).
func (t *tokenizer) acquire() {
	sc, _ := scratchPool.Get().(*scratch)
	if sc == nil {
		return
	}
	t.buf, t.text, t.vals, t.strs, t.raw, t.slots, t.attr = sc.buf, sc.text, sc.vals, sc.strs, sc.raw, sc.slots, sc.attr
	*sc = scratch{}
	t.sc = sc
}

// fill reads more input, making room first. A read error is returned and
// not kept: the next call reads again.
//
// When everything read has been consumed, the next read may wait for as
// long as the peer stays quiet: the tokenizer then gives its buffers back
// to a pool and waits on a one-byte read, and takes them again when input
// arrives (what came with that byte is read at once, from the TLS record
// or the socket buffer). An idle connection holds no buffer.
func (t *tokenizer) fill() error {
	if err := t.pendErr; err != nil {
		t.pendErr = nil
		return err
	}
	if t.pos == t.end {
		t.base += int64(t.pos)
		t.pos, t.end = 0, 0
		if cap(t.buf) > 64<<10 { // after a big stanza
			t.buf = nil
			clear(t.raw[:cap(t.raw)]) // slices of it
			t.tok = token{}
		}
		for _, b := range []*[]byte{&t.text, &t.vals, &t.strs} {
			if cap(*b) > 64<<10 {
				*b = nil
			}
		}
		if t.base == 0 {
			// Nothing read yet: the first read takes what the peer
			// sent at once (the reader looks at the start of it).
			return t.read()
		}
		if t.buf != nil || t.sc != nil {
			t.release()
		}
		n, err := t.r.Read(t.one[:])
		for tries := 0; n == 0 && err == nil; tries++ {
			if tries == 100 {
				return io.ErrNoProgress
			}
			n, err = t.r.Read(t.one[:])
		}
		if n > 0 {
			t.acquire()
			if len(t.buf) == 0 {
				t.buf = make([]byte, min(4096, t.maxBuf))
			}
			t.buf[0] = t.one[0]
			t.end = 1
		}
		switch {
		case err == io.EOF:
			t.eof = true
			return nil
		case err != nil && n > 0:
			t.pendErr = err
			return nil
		case err != nil:
			return err
		}
		return nil
	}
	return t.read()
}

// read reads into the buffer, making room (or growing it) first.
func (t *tokenizer) read() error {
	if t.end == len(t.buf) {
		if t.pos > 0 {
			copy(t.buf, t.buf[t.pos:t.end])
			t.base += int64(t.pos)
			t.end -= t.pos
			t.pos = 0
		}
		if t.end == len(t.buf) {
			n := min(max(2*len(t.buf), 4096), t.maxBuf)
			if n <= t.end {
				return &Error{"policy-violation", fmt.Sprintf("an XML token larger than %d bytes", t.maxBuf)}
			}
			nb := make([]byte, n)
			copy(nb, t.buf[:t.end])
			t.buf = nb
		}
	}
	for tries := 0; ; tries++ {
		n, err := t.r.Read(t.buf[t.end:])
		t.end += n
		if err == io.EOF {
			t.eof = true
			return nil
		}
		if err != nil {
			if n > 0 {
				t.pendErr = err
				return nil
			}
			return err
		}
		if n > 0 {
			return nil
		}
		if tries == 100 {
			return io.ErrNoProgress
		}
	}
}

func (t *tokenizer) isDirective() bool {
	b := t.buf[t.pos:t.end]
	return len(b) >= 3 && b[0] == '<' && b[1] == '!' && b[2] != '-' && b[2] != '['
}

// findEnd returns the length of the token at pos once all of it is
// buffered, or -1. The length is where parsing can decide: a token that
// is malformed before its end may get a shorter one.
func (t *tokenizer) findEnd() int {
	b := t.buf[t.pos:t.end]
	if b[0] != '<' {
		if i := bytes.IndexByte(b[t.scanned:], '<'); i >= 0 {
			return t.scanned + i
		}
		t.scanned = len(b)
		return -1
	}
	if len(b) < 2 {
		return -1
	}
	switch b[1] {
	case '/':
		return t.findTagEnd(b, 2, false)
	case '?':
		return t.findSeq(b, 2, "?>")
	case '!':
		if len(b) < 4 {
			return -1
		}
		if b[2] == '-' {
			if b[3] != '-' {
				return 4
			}
			// The first "--" must be followed by '>'.
			from := max(4, t.scanned-1)
			i := bytes.Index(b[from:], []byte("--"))
			if i < 0 {
				t.scanned = len(b)
				return -1
			}
			if i += from; i+2 < len(b) {
				return i + 3
			}
			t.scanned = i
			return -1
		}
		// "<![": CDATA, or an error
		if len(b) < 9 {
			if !bytes.HasPrefix([]byte("<![CDATA["), b) {
				return len(b)
			}
			return -1
		}
		if string(b[:9]) != "<![CDATA[" {
			return 9
		}
		return t.findSeq(b, 9, "]]>")
	default:
		return t.findTagEnd(b, 1, true)
	}
}

func (t *tokenizer) findSeq(b []byte, start int, seq string) int {
	from := max(start, t.scanned-(len(seq)-1))
	if i := bytes.Index(b[from:], []byte(seq)); i >= 0 {
		return from + i + len(seq)
	}
	t.scanned = len(b)
	return -1
}

// findTagEnd finds the '>' that ends a tag (outside quoted values in a
// start tag), or a '<', which is an error wherever it is in a tag.
func (t *tokenizer) findTagEnd(b []byte, start int, quotes bool) int {
	i := max(start, t.scanned)
	for ; i < len(b); i++ {
		c := b[i]
		if t.quote != 0 {
			if c == t.quote {
				t.quote = 0
			} else if c == '<' {
				return i + 1
			}
			continue
		}
		switch c {
		case '>', '<':
			return i + 1
		case '\'', '"':
			if quotes {
				t.quote = c
			}
		}
	}
	t.scanned = len(b)
	return -1
}

// parse parses the token at the start of b, returning its length; at the
// end of the input (atEOF) b is all that is left and may hold more.
func (t *tokenizer) parse(b []byte, atEOF bool) (int, error) {
	if b[0] != '<' {
		return t.parseText(b)
	}
	if len(b) < 2 {
		return 0, errNeedMore
	}
	switch b[1] {
	case '/':
		return t.parseEnd(b)
	case '?':
		return t.parsePI(b)
	case '!':
		if len(b) < 3 {
			return 0, errNeedMore
		}
		if b[2] == '-' {
			return t.parseComment(b)
		}
		return t.parseCDATA(b)
	}
	return t.parseStart(b)
}

func (t *tokenizer) parseText(b []byte) (int, error) {
	t.text = t.text[:0]
	data, n, err := chars(&t.text, b, '<', modeText)
	if err != nil {
		return 0, err
	}
	t.tok = token{kind: tokText, data: data}
	return n, nil
}

func (t *tokenizer) parseCDATA(b []byte) (int, error) {
	const open = "<![CDATA["
	for i := 2; i < len(open); i++ {
		if i >= len(b) {
			return 0, errNeedMore
		}
		if b[i] != open[i] {
			return 0, wf("invalid <! sequence")
		}
	}
	k := bytes.Index(b[len(open):], []byte("]]>"))
	if k < 0 {
		return 0, errNeedMore
	}
	content := b[len(open) : len(open)+k]
	t.text = t.text[:0]
	data, _, err := chars(&t.text, content, -1, modeCDATA)
	if err != nil {
		return 0, err
	}
	t.tok = token{kind: tokText, data: data}
	return len(open) + k + 3, nil
}

func (t *tokenizer) parseComment(b []byte) (int, error) {
	if len(b) < 4 {
		return 0, errNeedMore
	}
	if b[3] != '-' {
		return 0, wf("invalid sequence <!- not part of <!--")
	}
	k := bytes.Index(b[4:], []byte("--"))
	if k < 0 {
		return 0, errNeedMore
	}
	k += 4
	if k+2 >= len(b) {
		return 0, errNeedMore
	}
	if b[k+2] != '>' {
		return 0, wf(`"--" in a comment`)
	}
	t.tok = token{kind: tokComment, data: b[4:k]}
	return k + 3, nil
}

func (t *tokenizer) parsePI(b []byte) (int, error) {
	i := 2
	j := nameEnd(b, i)
	if j == len(b) {
		return 0, errNeedMore
	}
	if j == i {
		return 0, wf("expected a target name after <?")
	}
	if err := checkName(b[i:j]); err != nil {
		return 0, err
	}
	target := intern(b[i:j])
	i = skipSpace(b, j)
	k := bytes.Index(b[i:], []byte("?>"))
	if k < 0 {
		return 0, errNeedMore
	}
	data := b[i : i+k]
	if target == "xml" {
		// As encoding/xml: only XML 1.0, only UTF-8.
		content := string(data)
		if v := procInst("version", content); v != "" && v != "1.0" {
			return 0, wf("XML version %q is not supported", Clip(v))
		}
		if e := procInst("encoding", content); e != "" && !strings.EqualFold(e, "utf-8") {
			return 0, &Error{"unsupported-encoding", "only UTF-8 is allowed, not " + Clip(e)}
		}
	}
	t.tok = token{kind: tokProcInst, target: target, data: data}
	return i + k + 2, nil
}

// procInst finds param='value' in an XML declaration the way encoding/xml
// does, so that both refuse the same declarations.
func procInst(param, s string) string {
	param += "="
	i := 0
	var sep byte
	for i < len(s) {
		k := strings.Index(s[i:], param)
		if k < 0 || i+k+len(param) >= len(s) {
			return ""
		}
		c := s[i+k+len(param)]
		i += k + len(param) + 1
		if c == '\'' || c == '"' {
			sep = c
			break
		}
	}
	if sep == 0 {
		return ""
	}
	j := strings.IndexByte(s[i:], sep)
	if j < 0 {
		return ""
	}
	return s[i : i+j]
}

// directive reads a <!...> directive (a DTD) as encoding/xml does (quotes
// and nested <...> and <!--...--> respected), resumably: a byte is looked
// at once however the input arrives. It returns the directive's length or
// -1 for more input.
func (t *tokenizer) directive() (int, error) {
	b := t.buf[t.pos:t.end]
	d := &t.dir
	if d.i == 0 {
		d.i = 2
		t.text = t.text[:0]
	}
	for d.i < len(b) {
		c := b[d.i]
		d.i++
		switch d.phase {
		case 0: // the first byte is taken as it is
			t.text = append(t.text, c)
			d.phase = 1
		case 1:
			if d.quote == 0 && c == '>' && d.depth == 0 {
				t.tok = token{kind: tokDirective, data: t.text}
				return d.i, nil
			}
			t.dirByte(c)
		case 2: // after '<': "<!--" starts a comment
			if c != "!--"[d.lt] {
				t.text = append(t.text, "!--"[:d.lt]...)
				d.depth++
				d.phase = 1
				t.dirByte(c)
			} else if d.lt++; d.lt == 3 {
				t.text = t.text[:len(t.text)-1] // the '<'
				d.b0, d.b1 = 0, 0
				d.phase = 3
			}
		case 3: // in a comment, replaced by a space
			if d.b0 == '-' && d.b1 == '-' && c == '>' {
				t.text = append(t.text, ' ')
				d.phase = 1
			} else {
				d.b0, d.b1 = d.b1, c
			}
		}
	}
	return -1, nil
}

func (t *tokenizer) dirByte(c byte) {
	d := &t.dir
	t.text = append(t.text, c)
	switch {
	case c == d.quote:
		d.quote = 0
	case d.quote != 0:
	case c == '\'' || c == '"':
		d.quote = c
	case c == '>':
		d.depth--
	case c == '<':
		d.phase, d.lt = 2, 0
	}
}

func (t *tokenizer) parseEnd(b []byte) (int, error) {
	prefix, local, i, err := qname(b, 2)
	if err != nil {
		return 0, err
	}
	i = skipSpace(b, i)
	if i >= len(b) {
		return 0, errNeedMore
	}
	if b[i] != '>' {
		return 0, wf("invalid characters between </%s and >", clipBytes(local))
	}
	if len(t.stack) == 0 {
		return 0, wf("unexpected end element </%s>", clipBytes(local))
	}
	top := &t.stack[len(t.stack)-1]
	if string(local) != top.local || string(prefix) != top.prefix {
		return 0, wf("element <%s> closed by </%s>", Clip(top.local), clipBytes(local))
	}
	t.pop()
	return i + 1, nil
}

func (t *tokenizer) pop() {
	e := t.stack[len(t.stack)-1]
	t.stack = t.stack[:len(t.stack)-1]
	clear(t.ns[e.nsLen:])
	t.ns = t.ns[:e.nsLen]
	t.tok = token{kind: tokEnd, name: e.name}
}

func (t *tokenizer) parseStart(b []byte) (int, error) {
	prefix, local, i, err := qname(b, 1)
	if err != nil {
		return 0, err
	}
	t.raw = t.raw[:0]
	t.vals = t.vals[:0]
	empty := false
	for {
		sp := i
		i = skipSpace(b, i)
		if i >= len(b) {
			return 0, errNeedMore
		}
		if c := b[i]; c == '>' {
			i++
			break
		} else if c == '/' {
			if i+1 >= len(b) {
				return 0, errNeedMore
			}
			if b[i+1] != '>' {
				return 0, wf("expected /> in element")
			}
			i += 2
			empty = true
			break
		}
		if i == sp {
			return 0, wf("attributes must be separated by whitespace in <%s>", clipBytes(local))
		}
		var a rawAttr
		if a.prefix, a.local, i, err = qname(b, i); err != nil {
			return 0, err
		}
		if i = skipSpace(b, i); i >= len(b) {
			return 0, errNeedMore
		}
		if b[i] != '=' {
			return 0, wf("attribute name without = in element")
		}
		if i = skipSpace(b, i+1); i >= len(b) {
			return 0, errNeedMore
		}
		q := b[i]
		if q != '\'' && q != '"' {
			return 0, wf("unquoted or missing attribute value in element")
		}
		i++
		var n int
		if a.value, n, err = chars(&t.vals, b[i:], int(q), modeAttr); err != nil {
			return 0, err
		}
		i += n + 1 // and the quote
		t.raw = append(t.raw, a)
	}
	if err := t.start(prefix, local); err != nil {
		return 0, err
	}
	t.closePending = empty
	return i, nil
}

// start makes the start tag's strings (one allocation for all that are
// not common names), applies its namespace declarations, resolves names
// and fills t.tok.
func (t *tokenizer) start(prefix, local []byte) error {
	t.strs = t.strs[:0]
	t.slots = t.slots[:0]
	t.addSlot(prefix)
	t.addSlot(local)
	for _, a := range t.raw {
		t.addSlot(a.prefix)
		t.addSlot(a.local)
		t.addSlot(a.value)
	}
	if len(t.strs) > 0 {
		all := string(t.strs)
		for i := range t.slots {
			if s := &t.slots[i]; s.off >= 0 {
				s.s = all[s.off : s.off+s.len]
			}
		}
	}
	nsLen := len(t.ns)
	t.attr = t.attr[:0]
	for k := range t.raw {
		p, l, v := t.slots[2+3*k].s, t.slots[3+3*k].s, t.slots[4+3*k].s
		switch {
		case p == "xmlns":
			switch {
			case l == "xmlns":
				return wf("the prefix xmlns must not be declared")
			case l == "xml":
				if v != NSXML {
					return wf("the prefix xml must not be bound to another namespace")
				}
				continue
			case v == "":
				return wf("empty namespace for the prefix %s", Clip(l))
			case v == NSXML || v == nsXMLNS:
				return wf("the namespace %s must not be bound to another prefix", Clip(v))
			}
			t.ns = append(t.ns, binding{l, v})
		case p == "" && l == "xmlns":
			if v == NSXML || v == nsXMLNS {
				return wf("the namespace %s must not be the default", Clip(v))
			}
			t.ns = append(t.ns, binding{"", v})
		}
	}
	if len(t.ns) > maxBindings {
		return &Error{"policy-violation", fmt.Sprintf("more than %d namespace declarations in scope", maxBindings)}
	}
	name := exml.Name{Local: t.slots[1].s}
	switch p := t.slots[0].s; p {
	case "":
		if name.Local == "xmlns" {
			return wf("an element must not be named xmlns")
		}
		name.Space, _ = t.lookup("")
	case "xml":
		name.Space = NSXML
	case "xmlns":
		return wf("the prefix xmlns is not allowed on elements")
	default:
		var ok bool
		if name.Space, ok = t.lookup(p); !ok {
			return &Error{"invalid-namespace", "undeclared namespace prefix " + Clip(p) + " in <" + Clip(p+":"+name.Local) + ">"}
		}
	}
	for k := range t.raw {
		p, l, v := t.slots[2+3*k].s, t.slots[3+3*k].s, t.slots[4+3*k].s
		a := exml.Attr{Name: exml.Name{Space: p, Local: l}, Value: v}
		switch p {
		case "", "xmlns":
		case "xml":
			a.Name.Space = NSXML
		default:
			var ok bool
			if a.Name.Space, ok = t.lookup(p); !ok {
				return &Error{"invalid-namespace", "undeclared namespace prefix " + Clip(p) + " in attribute " + Clip(p+":"+l)}
			}
		}
		t.attr = append(t.attr, a)
	}
	t.stack = append(t.stack, openElement{prefix: t.slots[0].s, local: name.Local, name: name, nsLen: nsLen})
	t.tok = token{kind: tokStart, name: name, attr: t.attr}
	return nil
}

func (t *tokenizer) addSlot(b []byte) {
	if len(b) == 0 {
		t.slots = append(t.slots, slot{off: -1})
		return
	}
	if len(b) <= 64 {
		if s, ok := common[string(b)]; ok {
			t.slots = append(t.slots, slot{s: s, off: -1})
			return
		}
	}
	t.slots = append(t.slots, slot{off: len(t.strs), len: len(b)})
	t.strs = append(t.strs, b...)
}

func (t *tokenizer) lookup(prefix string) (string, bool) {
	for i := len(t.ns) - 1; i >= 0; i-- {
		if t.ns[i].prefix == prefix {
			return t.ns[i].uri, true
		}
	}
	return "", false
}

const (
	modeText = iota
	modeAttr
	modeCDATA
)

// plain marks the bytes that stand for themselves in character data.
var plain = func() (p [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		p[c] = true
	}
	for _, c := range "&<>\"'" {
		p[c] = false
	}
	p['\t'], p['\n'] = true, true
	return
}()

// chars checks and decodes character data in b up to the byte stop (-1:
// all of b): references (not in CDATA), CR and CRLF to LF, legal XML
// characters in valid UTF-8 only, no "]]>" in text, no '<' in attribute
// values. It returns the data (b itself when nothing needed decoding,
// else appended to dst), the length of b used, and an error (errNeedMore
// if stop was not found).
func chars(dstp *[]byte, b []byte, stop int, mode int) ([]byte, int, error) {
	dst := *dstp
	start := len(dst)
	copied := false
	i, last := 0, 0
	for i < len(b) {
		c := b[i]
		if plain[c] {
			i++
			continue
		}
		if int(c) == stop {
			break
		}
		switch {
		case c == '&' && mode != modeCDATA:
			var rb [4]byte
			n, k, err := reference(b, i, &rb)
			if err != nil {
				return nil, 0, err
			}
			dst = append(dst, b[last:i]...)
			dst = append(dst, rb[:n]...)
			copied = true
			i, last = k, k
		case c == '\r':
			dst = append(dst, b[last:i]...)
			dst = append(dst, '\n')
			copied = true
			if i++; i < len(b) && b[i] == '\n' {
				i++
			}
			last = i
		case c == '<':
			if mode == modeAttr {
				return nil, 0, wf("unescaped < inside an attribute value")
			}
			i++
		case c == '>':
			if mode == modeText && i >= 2 && b[i-1] == ']' && b[i-2] == ']' {
				return nil, 0, wf("unescaped ]]> not in a CDATA section")
			}
			i++
		case c == '&', c == '\'', c == '"':
			i++
		case c < utf8.RuneSelf:
			return nil, 0, wf("illegal character code %U", rune(c))
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return nil, 0, badUTF8()
			}
			if r == 0xFFFE || r == 0xFFFF {
				return nil, 0, wf("illegal character code %U", r)
			}
			i += size
		}
	}
	if stop >= 0 && i == len(b) && mode == modeAttr {
		return nil, 0, errNeedMore
	}
	if !copied {
		return b[:i], i, nil
	}
	dst = append(dst, b[last:i]...)
	*dstp = dst
	return dst[start:len(dst):len(dst)], i, nil
}

// reference decodes the reference at b[i] ('&') into rb, returning its
// length in rb and the index after it.
func reference(b []byte, i int, rb *[4]byte) (int, int, error) {
	j := i + 1
	if j >= len(b) {
		return 0, 0, errNeedMore
	}
	if b[j] == '#' {
		j++
		if j >= len(b) {
			return 0, 0, errNeedMore
		}
		base := rune(10)
		if b[j] == 'x' {
			base = 16
			j++
		}
		start := j
		v := rune(0)
		for ; j < len(b); j++ {
			d := hexDigit(b[j])
			if d < 0 || d >= base {
				break
			}
			if v <= unicode.MaxRune {
				v = v*base + d
			}
		}
		if j >= len(b) {
			return 0, 0, errNeedMore
		}
		if b[j] != ';' || j == start {
			return 0, 0, wf("invalid character reference")
		}
		if !isChar(v) {
			return 0, 0, wf("character reference to an illegal character")
		}
		return utf8.EncodeRune(rb[:], v), j + 1, nil
	}
	k := nameEnd(b, j)
	if k >= len(b) {
		return 0, 0, errNeedMore
	}
	if b[k] != ';' || k == j {
		return 0, 0, wf("& not part of a reference (escape it as &amp;)")
	}
	switch string(b[j:k]) {
	case "lt":
		rb[0] = '<'
	case "gt":
		rb[0] = '>'
	case "amp":
		rb[0] = '&'
	case "apos":
		rb[0] = '\''
	case "quot":
		rb[0] = '"'
	default:
		if err := checkName(b[j:k]); err != nil {
			return 0, 0, err
		}
		return 0, 0, &Error{"restricted-xml", "entity references other than the predefined ones are not allowed"}
	}
	return 1, k + 1, nil
}

func hexDigit(c byte) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return rune(c-'A') + 10
	}
	return -1
}

// isChar: XML 1.0 Char.
func isChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// nameByte: the ASCII bytes a name may contain; names end at any other
// ASCII byte (bytes from 0x80 are checked as UTF-8 afterwards).
var nameByte = func() (p [256]bool) {
	for c := 0; c < 256; c++ {
		p[c] = 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '_' || c == ':' || c == '.' || c == '-' || c >= 0x80
	}
	return
}()

var asciiNameStart, asciiName = func() (s, c [utf8.RuneSelf]bool) {
	for r := rune(0); r < utf8.RuneSelf; r++ {
		s[r], c[r] = unicode.Is(nameStart, r), unicode.Is(nameChar, r)
	}
	return
}()

func nameEnd(b []byte, i int) int {
	for i < len(b) && nameByte[b[i]] {
		i++
	}
	return i
}

// checkName checks a name against the XML Name production (as
// encoding/xml's tables have it).
func checkName(name []byte) error {
	first := true
	for i := 0; i < len(name); {
		if c := name[i]; c < utf8.RuneSelf {
			if !asciiName[c] || first && !asciiNameStart[c] {
				return wf("invalid XML name: %s", clipBytes(name))
			}
			first = false
			i++
			continue
		}
		r, size := utf8.DecodeRune(name[i:])
		if r == utf8.RuneError && size == 1 {
			return badUTF8()
		}
		if !unicode.Is(nameChar, r) || first && !unicode.Is(nameStart, r) {
			return wf("invalid XML name: %s", clipBytes(name))
		}
		first = false
		i += size
	}
	return nil
}

// qname reads a name at b[i] and splits it as a Namespaces QName.
func qname(b []byte, i int) (prefix, local []byte, end int, err error) {
	j := nameEnd(b, i)
	if j == len(b) {
		return nil, nil, 0, errNeedMore
	}
	if j == i {
		return nil, nil, 0, wf("expected a name")
	}
	name := b[i:j]
	if err := checkName(name); err != nil {
		return nil, nil, 0, err
	}
	c := bytes.IndexByte(name, ':')
	if c < 0 {
		return nil, name, j, nil
	}
	if c == 0 || c == len(name)-1 || bytes.IndexByte(name[c+1:], ':') >= 0 {
		return nil, nil, 0, wf("%s is not a qualified name", clipBytes(name))
	}
	// Both parts are NCNames: the local part starts as a name does too
	// ("stream:0" is a Name, not a QName, and "0" alone would not parse).
	if err := checkName(name[c+1:]); err != nil {
		return nil, nil, 0, wf("%s is not a qualified name", name)
	}
	return name[:c], name[c+1:], j, nil
}

func intern(b []byte) string {
	if s, ok := common[string(b)]; ok {
		return s
	}
	return string(b)
}

// common names and values of XMPP, used without allocating.
var common = func() map[string]string {
	m := map[string]string{}
	for _, s := range strings.Fields(`xml xmlns stream db lang version to from type id
		message presence iq body subject thread error query item x active composing
		paused inactive gone request received ping show status priority c delay
		features starttls proceed auth success failure challenge response mechanisms
		mechanism bind session jid resource result verify sm enable enabled r a
		chat groupchat normal headline get set unavailable subscribe subscribed
		unsubscribe unsubscribed probe away xa dnd cancel modify wait en 1.0 ver node hash
		sha-1 stamp code true false
		jabber:client jabber:server jabber:server:dialback jabber:iq:roster
		jabber:iq:version jabber:iq:last jabber:iq:private jabber:x:data vcard-temp
		http://etherx.jabber.org/streams urn:xmpp:receipts urn:xmpp:ping urn:xmpp:time
		urn:xmpp:delay urn:xmpp:sm:3 urn:xmpp:carbons:2 urn:xmpp:mam:2 urn:xmpp:sid:0
		urn:xmpp:chat-markers:0 urn:xmpp:hints urn:xmpp:message-correct:0
		http://jabber.org/protocol/chatstates http://jabber.org/protocol/caps
		http://jabber.org/protocol/disco#info http://jabber.org/protocol/disco#items
		http://jabber.org/protocol/muc http://jabber.org/protocol/muc#user
		urn:ietf:params:xml:ns:xmpp-stanzas urn:ietf:params:xml:ns:xmpp-streams
		urn:ietf:params:xml:ns:xmpp-tls urn:ietf:params:xml:ns:xmpp-sasl
		urn:ietf:params:xml:ns:xmpp-bind urn:ietf:params:xml:ns:xmpp-session
		http://www.w3.org/XML/1998/namespace`) {
		m[s] = s
	}
	return m
}()
