package xml

import (
	"bytes"
	exml "encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Tokenizer is what the Reader needs from an XML tokenizer: encoding/xml's
// Decoder (UseEncodingXML), or Parley's own, which takes a faster path.
type Tokenizer interface {
	Token() (exml.Token, error)
	InputOffset() int64
}

// Limits bound what one peer may send.
type Limits struct {
	MaxStanza int64 // bytes in one top-level element
	MaxDepth  int   // element nesting inside a stanza
}

// DefaultLimits are RFC-friendly defaults: 256 KiB stanzas, 32 levels.
var DefaultLimits = Limits{MaxStanza: 256 << 10, MaxDepth: 32}

// Error is a problem in what the peer sent, named by its RFC 6120 stream
// error condition.
type Error struct {
	Condition string
	Text      string
}

func (e *Error) Error() string { return e.Condition + ": " + e.Text }

// NSStream is the namespace of the stream element.
const NSStream = "http://etherx.jabber.org/streams"

var errTooBig = errors.New("stanza too big")

// MaxQuote is the most of a peer's input an error text quotes.
const MaxQuote = 64

// Clip returns at most MaxQuote bytes of s (cut between characters),
// marked with "…" when cut: error texts quote only a bounded prefix of
// what a peer sent.
func Clip(s string) string { return ClipTo(s, MaxQuote) }

// ClipTo returns at most n bytes of s, cut between characters and marked
// with "…" when cut.
func ClipTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// limitReader refuses to read past an offset, so a peer cannot make the
// tokenizer buffer more than one stanza's worth of input.
type limitReader struct {
	r         io.Reader
	n         int64 // bytes read so far
	limit     int64
	onTimeout func(error) error
	last      atomic.Int64 // unix nanoseconds of the last read that brought data (read by other goroutines: LastRead)
	// prolog: no '<' seen yet. Only whitespace may come before it; other
	// bytes (a TLS ClientHello, an HTTP request) fail the read at once
	// instead of waiting, as text, for a '<' that never comes.
	prolog bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n >= l.limit {
		return 0, errTooBig
	}
	if int64(len(p)) > l.limit-l.n {
		p = p[:l.limit-l.n]
	}
	for {
		k, err := l.r.Read(p)
		if k > 0 {
			l.last.Store(time.Now().UnixNano())
			if l.prolog {
				if err := l.checkProlog(p[:k]); err != nil {
					return 0, err
				}
			}
		}
		l.n += int64(k)
		if k == 0 && err != nil && l.onTimeout != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// The tokenizer keeps an error for good: a timeout
				// must not reach it unless the caller gives up.
				if err = l.onTimeout(err); err == nil {
					continue
				}
			}
		}
		return k, err
	}
}

// checkProlog looks at bytes before the first '<'.
func (l *limitReader) checkProlog(b []byte) error {
	for i, c := range b {
		switch c {
		case '<':
			l.prolog = false
			return nil
		case ' ', '\t', '\r', '\n':
			continue
		}
		rest := b[i:]
		switch {
		case c == 0x16 && len(rest) >= 3 && rest[1] == 3:
			return &Error{"not-well-formed", "TLS before the stream header: this port starts in plain XML (STARTTLS); for TLS from the first byte use the direct TLS port"}
		case bytes.HasPrefix(rest, []byte("GET ")) || bytes.HasPrefix(rest, []byte("POST ")) || bytes.HasPrefix(rest, []byte("HEAD ")) ||
			bytes.HasPrefix(rest, []byte("CONNECT ")) || bytes.HasPrefix(rest, []byte("PUT ")) || bytes.HasPrefix(rest, []byte("OPTIONS ")):
			return &Error{"not-well-formed", "an HTTP request: this is an XMPP port, which expects an XML stream"}
		}
		if len(rest) > 16 {
			rest = rest[:16]
		}
		return &Error{"not-well-formed", fmt.Sprintf("not XML before the stream header: %q", rest)}
	}
	return nil
}

// readAhead is how far the tokenizer may buffer beyond a stanza.
const readAhead = 4096

// Reader reads one XML stream.
type Reader struct {
	lim    *limitReader
	tok    source
	limits Limits
	stream Name // the stream element, once read

	// the stanza being read: kept across calls, so that Next goes on with
	// it after a read error (a timeout) the tokenizer does not keep
	stack []*Element
	start int64
}

// source is how the Reader takes tokens: Parley's tokenizer directly, or
// a Tokenizer (encoding/xml) through stdSource.
type source interface {
	next() (*token, error)
	InputOffset() int64
}

// UseEncodingXML makes NewReader use encoding/xml instead of Parley's own
// tokenizer (tokenizer.go): the switch to fall back to, and to compare.
var UseEncodingXML = false

// NewReader starts reading a stream from r.
func NewReader(r io.Reader, limits Limits) *Reader {
	lim := &limitReader{r: r, limit: limits.MaxStanza + readAhead, prolog: true}
	lim.last.Store(time.Now().UnixNano())
	var src source
	if UseEncodingXML {
		dec := exml.NewDecoder(lim)
		dec.Strict = true
		dec.CharsetReader = func(label string, input io.Reader) (io.Reader, error) {
			if strings.EqualFold(label, "utf-8") {
				return input, nil
			}
			return nil, &Error{"unsupported-encoding", "only UTF-8 is allowed, not " + Clip(label)}
		}
		src = &stdSource{tok: dec}
	} else {
		src = newTokenizer(lim, int(limits.MaxStanza)+2*readAhead)
	}
	return &Reader{lim: lim, tok: src, limits: limits}
}

// stdSource takes tokens from a Tokenizer.
type stdSource struct {
	tok Tokenizer
	t   token
}

func (s *stdSource) InputOffset() int64 { return s.tok.InputOffset() }

func (s *stdSource) next() (*token, error) {
	tok, err := s.tok.Token()
	if err != nil {
		return nil, err
	}
	switch tok := tok.(type) {
	case exml.StartElement:
		s.t = token{kind: tokStart, name: tok.Name, attr: tok.Attr}
	case exml.EndElement:
		s.t = token{kind: tokEnd, name: tok.Name}
	case exml.CharData:
		s.t = token{kind: tokText, data: tok}
	case exml.Comment:
		s.t = token{kind: tokComment, data: tok}
	case exml.ProcInst:
		s.t = token{kind: tokProcInst, target: tok.Target, data: tok.Inst}
	case exml.Directive:
		s.t = token{kind: tokDirective, data: tok}
	default:
		return nil, fmt.Errorf("xml: unknown token %T", tok)
	}
	return &s.t, nil
}

// OnTimeout sets what happens when a read from the connection times out
// (its read deadline passed): fn is called with the error; if it returns
// nil (after moving the deadline), the read is retried and the stanza being
// read continues; otherwise Next or Header return fn's error. Without it,
// a timeout ends the stream: encoding/xml keeps the first error it sees.
func (r *Reader) OnTimeout(fn func(error) error) { r.lim.onTimeout = fn }

// Consumed is how many bytes the Reader has taken from the connection,
// including whitespace keepalives and stanzas not yet complete.
func (r *Reader) Consumed() int64 { return r.lim.n }

// Buffered reports whether the reader holds input it has not consumed
// (or an error to return): while it does not, the next call to Next reads
// from the connection first.
func (r *Reader) Buffered() bool {
	t, ok := r.tok.(*tokenizer)
	return !ok || t.pos < t.end || t.pendErr != nil || t.closePending || t.err != nil || t.eof
}

// Release gives the tokenizer's working memory back to its pool when
// nothing is buffered: for a caller about to wait for input itself (the
// tokenizer does the same before a read that may wait).
func (r *Reader) Release() {
	if t, ok := r.tok.(*tokenizer); ok {
		t.idle()
		t.trim()
	}
	if len(r.stack) == 0 && cap(r.stack) > 0 {
		r.stack = nil
	}
}

// Timeout gives err, a timeout of a wait for input the caller did itself,
// to the OnTimeout function: nil means wait again.
func (r *Reader) Timeout(err error) error {
	if r.lim.onTimeout == nil {
		return err
	}
	return r.lim.onTimeout(err)
}

// LastRead is when bytes last came from the connection (whitespace
// keepalives included), or when the Reader was made. Safe to call from
// another goroutine than the one reading.
func (r *Reader) LastRead() time.Time { return time.Unix(0, r.lim.last.Load()) }

func (r *Reader) classify(err error) error {
	var xe *Error
	switch {
	case errors.As(err, &xe):
		return xe
	case errors.Is(err, errTooBig):
		return &Error{"policy-violation", fmt.Sprintf("stanza larger than %d bytes", r.limits.MaxStanza)}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return io.EOF
	}
	var se *exml.SyntaxError
	if errors.As(err, &se) {
		// encoding/xml reports bad UTF-8 in text as "invalid UTF-8" and in
		// names by quoting the bytes ("invalid XML name: \xff").
		if strings.Contains(se.Msg, "UTF-8") || !utf8.ValidString(se.Msg) {
			return &Error{"unsupported-encoding", "invalid UTF-8"}
		}
		// A named entity other than the five predefined ones (RFC 6120
		// §11.1: entity references are restricted XML).
		if strings.HasPrefix(se.Msg, "invalid character entity &") && !strings.HasPrefix(se.Msg, "invalid character entity &#") {
			return &Error{"restricted-xml", "entity references other than the predefined ones are not allowed"}
		}
		if strings.Contains(se.Msg, "unexpected EOF") {
			return io.EOF
		}
		return &Error{"not-well-formed", se.Msg}
	}
	if strings.Contains(err.Error(), "CharsetReader") || strings.Contains(err.Error(), "encoding") {
		return &Error{"unsupported-encoding", err.Error()}
	}
	return err // a network error
}

func (r *Reader) rearm() {
	r.lim.limit = r.tok.InputOffset() + r.limits.MaxStanza + readAhead
}

// Header reads the XML declaration (optional) and the stream header. It
// returns the header as an element without children.
func (r *Reader) Header() (*Element, error) {
	for {
		t, err := r.tok.next()
		if err != nil {
			return nil, r.classify(err)
		}
		switch t.kind {
		case tokProcInst:
			if t.target != "xml" {
				return nil, &Error{"restricted-xml", "processing instructions are not allowed"}
			}
			if err := checkDeclaration(string(t.data)); err != nil {
				return nil, err
			}
		case tokText:
			if len(bytes.TrimSpace(t.data)) > 0 {
				return nil, &Error{"not-well-formed", "text before the stream header"}
			}
		case tokStart:
			if duplicateAttr(t.attr) {
				return nil, &Error{"not-well-formed", "an attribute appears twice in the stream header"}
			}
			if t.name.Local != "stream" || t.name.Space != NSStream {
				return nil, &Error{"invalid-namespace", fmt.Sprintf("expected a stream header, got <%s xmlns=%q>", Clip(t.name.Local), Clip(t.name.Space))}
			}
			r.stream = t.name
			r.rearm()
			return &Element{Name: t.name, Attr: append([]Attr(nil), t.attr...)}, nil
		case tokComment:
			return nil, &Error{"restricted-xml", "comments are not allowed"}
		case tokDirective:
			return nil, &Error{"restricted-xml", "DTDs and other directives are not allowed"}
		default:
			return nil, &Error{"not-well-formed", "unexpected data before the stream header"}
		}
	}
}

// Next returns the next top-level element of the stream. At the end of the
// stream (</stream:stream> or the connection closing) it returns io.EOF.
func (r *Reader) Next() (*Element, error) {
	for {
		// Text is its own token, so this is where a stanza's start tag
		// begins.
		before := r.tok.InputOffset()
		t, err := r.tok.next()
		if err != nil {
			return nil, r.classify(err)
		}
		switch t.kind {
		case tokStart:
			if len(r.stack) == 0 {
				r.start = before
				if t.name.Local == "stream" && t.name.Space == NSStream {
					// A stream restarts only where the protocol says so
					// (after STARTTLS, SASL success), on a new Reader:
					// read as an element, it would swallow every stanza
					// after it.
					return nil, &Error{"unsupported-stanza-type", "a second stream header: a stream restarts only after STARTTLS or SASL success"}
				}
			}
			if len(r.stack) >= r.limits.MaxDepth {
				return nil, &Error{"policy-violation", fmt.Sprintf("elements nested deeper than %d", r.limits.MaxDepth)}
			}
			if duplicateAttr(t.attr) {
				return nil, &Error{"not-well-formed", "an attribute appears twice in <" + Clip(t.name.Local) + ">"}
			}
			el := &Element{Name: t.name}
			n := 0
			for _, a := range t.attr {
				if !isNamespaceDecl(a) {
					n++
				}
			}
			if n > 0 {
				// The tokenizer's Attr slice is its own, reused: copy.
				el.Attr = make([]Attr, 0, n)
				for _, a := range t.attr {
					if !isNamespaceDecl(a) {
						el.Attr = append(el.Attr, a)
					}
				}
			}
			if len(r.stack) > 0 {
				p := r.stack[len(r.stack)-1]
				p.Children = append(p.Children, el)
			}
			r.stack = append(r.stack, el)
		case tokEnd:
			if len(r.stack) == 0 {
				// </stream:stream>
				return nil, io.EOF
			}
			el := r.stack[len(r.stack)-1]
			r.stack[len(r.stack)-1] = nil
			r.stack = r.stack[:len(r.stack)-1]
			if len(r.stack) == 0 {
				if r.tok.InputOffset()-r.start > r.limits.MaxStanza {
					return nil, &Error{"policy-violation", fmt.Sprintf("stanza larger than %d bytes", r.limits.MaxStanza)}
				}
				r.rearm()
				return el, nil
			}
		case tokText:
			if len(r.stack) == 0 {
				if len(bytes.TrimSpace(t.data)) > 0 {
					return nil, &Error{"not-well-formed", "text outside of stanzas"}
				}
				r.rearm() // whitespace keepalives
				continue
			}
			if len(t.data) == 0 {
				continue // an empty CDATA section: no text at all (as AddText)
			}
			p := r.stack[len(r.stack)-1]
			p.Children = append(p.Children, Text(t.data))
		case tokComment:
			return nil, &Error{"restricted-xml", "comments are not allowed"}
		case tokProcInst:
			return nil, &Error{"restricted-xml", "processing instructions are not allowed"}
		case tokDirective:
			return nil, &Error{"restricted-xml", "DTDs and other directives are not allowed"}
		}
	}
}

func isNamespaceDecl(a Attr) bool {
	return a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns")
}

// duplicateAttr reports whether an attribute name (namespace resolved)
// appears twice: not well-formed XML, and dangerous to pass on, since the
// reader keeps the first (e.g. the `from` it stamps) and a recipient might
// take the second.
func duplicateAttr(attrs []exml.Attr) bool {
	if len(attrs) < 2 {
		return false
	}
	if len(attrs) <= 16 {
		for i := 1; i < len(attrs); i++ {
			for j := 0; j < i; j++ {
				if attrs[i].Name == attrs[j].Name {
					return true
				}
			}
		}
		return false
	}
	seen := make(map[Name]struct{}, len(attrs))
	for _, a := range attrs {
		if _, ok := seen[a.Name]; ok {
			return true
		}
		seen[a.Name] = struct{}{}
	}
	return false
}

// checkDeclaration checks an XML declaration's pseudo-attributes (XML 1.0
// §2.8): version first, then optional encoding and standalone, in that
// order, each once, quoted. encoding/xml only looks for the encoding.
func checkDeclaration(inst string) error {
	bad := &Error{"not-well-formed", "the XML declaration is not well-formed"}
	order := []string{"version", "encoding", "standalone"}
	next := 0
	rest := strings.TrimSpace(inst)
	for rest != "" {
		eq := strings.IndexByte(rest, '=')
		if eq < 0 {
			return bad
		}
		name := strings.TrimSpace(rest[:eq])
		rest = strings.TrimLeft(rest[eq+1:], " \t\r\n")
		if rest == "" || (rest[0] != '\'' && rest[0] != '"') {
			return bad
		}
		end := strings.IndexByte(rest[1:], rest[0])
		if end < 0 {
			return bad
		}
		value := rest[1 : end+1]
		rest = rest[end+2:]
		if rest != "" && !strings.ContainsAny(rest[:1], " \t\r\n") {
			return bad
		}
		rest = strings.TrimSpace(rest)
		i := next
		for i < len(order) && order[i] != name {
			i++
		}
		if i == len(order) || (next == 0 && name != "version") {
			return bad
		}
		if name == "version" && !strings.HasPrefix(value, "1.") {
			return bad
		}
		next = i + 1
	}
	if next == 0 {
		return bad
	}
	return nil
}
