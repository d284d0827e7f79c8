package xml

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestNotXMLBeforeTheHeader: bytes that cannot start an XML stream fail
// the header at once, though the peer sends nothing more and keeps the
// connection open (before, the tokenizer waited for a '<' as long as the
// read deadline allowed).
func TestNotXMLBeforeTheHeader(t *testing.T) {
	clientHello := string([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03})
	for _, tc := range []struct{ name, send, text string }{
		{"TLS ClientHello", clientHello, "TLS before the stream header"},
		{"HTTP request", "GET / HTTP/1.1\r\nHost: example.lan\r\n", "HTTP request"},
		{"text", "  \r\nhello there, server", `not XML before the stream header: "hello there, ser"`},
		{"binary", "\x00\x01\x02", `"\x00\x01\x02"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := net.Pipe()
			defer client.Close()
			defer server.Close()
			go client.Write([]byte(tc.send))
			server.SetReadDeadline(time.Now().Add(5 * time.Second))
			begin := time.Now()
			_, err := NewReader(server, DefaultLimits).Header()
			var xe *Error
			if !errors.As(err, &xe) || xe.Condition != "not-well-formed" || !strings.Contains(xe.Text, tc.text) {
				t.Fatalf("got %v, want not-well-formed with %q", err, tc.text)
			}
			if d := time.Since(begin); d > time.Second {
				t.Fatalf("failed after %v, want at once", d)
			}
		})
	}
	// Whitespace, the declaration and the header itself are still fine,
	// also a byte at a time.
	server, client := net.Pipe()
	defer client.Close()
	go func() {
		for _, b := range []byte(" \n<?xml version='1.0'?>\n<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='a.lan' version='1.0'>") {
			client.Write([]byte{b})
		}
	}()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := NewReader(server, DefaultLimits).Header(); err != nil {
		t.Fatal(err)
	}
}

// TestSecondStreamHeader: a stream header where a stanza belongs is a
// stream error, not an element that swallows the stanzas after it.
func TestSecondStreamHeader(t *testing.T) {
	h := "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='a.lan' version='1.0'>"
	rd := NewReader(strings.NewReader(h+"<message/>"+h+"<message><body>swallowed?</body></message>"), DefaultLimits)
	if _, err := rd.Header(); err != nil {
		t.Fatal(err)
	}
	if el, err := rd.Next(); err != nil || el.Name.Local != "message" {
		t.Fatalf("first stanza: %v %v", el, err)
	}
	_, err := rd.Next()
	var xe *Error
	if !errors.As(err, &xe) || xe.Condition != "unsupported-stanza-type" {
		t.Fatalf("second header: %v", err)
	}
}

func TestClip(t *testing.T) {
	long := strings.Repeat("é", 100) // 2 bytes each
	c := Clip(long)
	if !strings.HasSuffix(c, "…") || len(c) > MaxQuote+len("…") || !utf8.ValidString(c) {
		t.Fatalf("Clip = %q", c)
	}
	if Clip("short") != "short" {
		t.Fatal("a short string was changed")
	}
	// An error about a huge name quotes only its start.
	name := strings.Repeat("a", 10000)
	rd := NewReader(strings.NewReader("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><"+name+"></b>"), DefaultLimits)
	rd.Header()
	_, err := rd.Next()
	var xe *Error
	if !errors.As(err, &xe) || len(xe.Text) > 3*MaxQuote {
		t.Fatalf("error text of %d bytes: %v", len(xe.Text), err)
	}
}
