package stream

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/xml"
)

func parse(t *testing.T, s string) *xml.Element {
	t.Helper()
	rd := xml.NewReader(strings.NewReader(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`+s), xml.DefaultLimits)
	if _, err := rd.Header(); err != nil {
		t.Fatal(err)
	}
	el, err := rd.Next()
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return el
}

func TestHeader(t *testing.T) {
	h := string(Header(NSClient, "example.lan", `a'b"c`, "id1"))
	el := parse(t, "<x/>")
	_ = el
	rd := xml.NewReader(strings.NewReader(h), xml.DefaultLimits)
	got, err := rd.Header()
	if err != nil {
		t.Fatalf("%s: %v", h, err)
	}
	if got.Get("from") != "example.lan" || got.Get("to") != `a'b"c` || got.Get("id") != "id1" || got.Get("version") != "1.0" || got.Lang() != "en" {
		t.Fatalf("header %s", h)
	}
}

func TestErrorBytes(t *testing.T) {
	b := (&Error{Condition: "policy-violation", Text: "too <big> & bad"}).Bytes()
	if !bytes.HasSuffix(b, Close) {
		t.Fatalf("no stream end: %s", b)
	}
	el := parse(t, string(bytes.TrimSuffix(b, Close)))
	if el.Name != (xml.Name{Space: NSStream, Local: "error"}) {
		t.Fatalf("name %v", el.Name)
	}
	c := el.Elements()
	if len(c) != 2 || c[0].Name != (xml.Name{Space: NSStreams, Local: "policy-violation"}) || c[1].Text() != "too <big> & bad" || c[1].Lang() != "en" {
		t.Fatalf("error %s", b)
	}
	if got := string((&Error{Condition: "conflict"}).Bytes()); got != `<stream:error><conflict xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error></stream:stream>` {
		t.Fatalf("without text: %s", got)
	}
}

func TestStanzaError(t *testing.T) {
	msg := parse(t, `<message from='a@x/r' to='b@x' id='7' type='chat'><body>hi</body><error type='cancel'/></message>`)
	e := ErrorReply(msg, "service-unavailable", "")
	if e.Get("to") != "a@x/r" || e.Get("from") != "b@x" || e.Get("id") != "7" || e.Get("type") != "error" {
		t.Fatalf("addressing %s", e)
	}
	if e.Child("", "body") == nil {
		t.Fatalf("a message error keeps the payload: %s", e)
	}
	errs := 0
	for _, c := range e.Elements() {
		if c.Name.Local == "error" {
			errs++
		}
	}
	if errs != 1 {
		t.Fatalf("%d error children: %s", errs, e)
	}
	errEl := e.Child(NSClient, "error")
	if errEl.Get("type") != "cancel" || errEl.Child(NSStanzas, "service-unavailable") == nil {
		t.Fatalf("error %s", e)
	}
	iq := parse(t, `<iq from='a@x/r' to='x' id='q' type='get'><query xmlns='urn:q'/></iq>`)
	e = ErrorReply(iq, "bad-request", "why")
	if e.Child("urn:q", "query") != nil {
		t.Fatalf("an iq error does not echo the query: %s", e)
	}
	if e.Child("", "error").Get("type") != "modify" || e.Child("", "error").Child(NSStanzas, "text").Text() != "why" {
		t.Fatalf("iq error %s", e)
	}
	if ErrorReply(iq, "made-up-condition", "").Child("", "error").Get("type") != "cancel" {
		t.Fatal("unknown conditions default to cancel")
	}
	// The reply re-reads as XML.
	parse(t, string(e.Bytes(NSClient)))
}

func TestConnWritesInOrderAndCloses(t *testing.T) {
	srv, cli := net.Pipe()
	c := NewConn(srv, NSClient)
	for i := 0; i < 100; i++ {
		if !c.Send(xml.New(NSClient, "message", "id", string(rune('a'+i%26)))) {
			t.Fatal("send failed")
		}
	}
	c.CloseWith([]byte("END"))
	if c.SendRaw([]byte("late")) {
		t.Fatal("send after CloseWith accepted")
	}
	all, _ := io.ReadAll(cli)
	if !bytes.HasSuffix(all, []byte("END")) || bytes.Count(all, []byte("<message")) != 100 || bytes.Contains(all, []byte("late")) {
		t.Fatalf("got %q", all)
	}
	if !bytes.HasPrefix(all, []byte(`<message id="a"/><message id="b"/>`)) {
		t.Fatalf("order: %q", all[:40])
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("writer did not finish")
	}
}

// TestConnOverflow: a peer that never reads is dropped when its queue is
// full, and Send never blocks meanwhile.
func TestConnOverflow(t *testing.T) {
	srv, cli := net.Pipe() // unbuffered: nothing is written until read
	defer cli.Close()
	c := NewConn(srv, NSClient)
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	done := make(chan int)
	go func() {
		n := 0
		for c.SendRaw(chunk) {
			n++
		}
		done <- n
	}()
	select {
	case n := <-done:
		if n < MaxQueueBytes/len(chunk)-1 || n > MaxQueueBytes/len(chunk)+2 {
			t.Fatalf("dropped after %d chunks", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SendRaw blocked")
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("overflowed connection not closed")
	}
	if _, err := cli.Read(make([]byte, 10)); err == nil {
		// The pipe may hold part of the first write; after that it ends.
		if _, err := io.ReadAll(cli); err != nil && err != io.EOF && !strings.Contains(err.Error(), "closed") {
			t.Fatal(err)
		}
	}
	if c.SendRaw([]byte("more")) {
		t.Fatal("send after overflow accepted")
	}
}

// TestConnPeerGone: a write error closes the connection for good.
func TestConnPeerGone(t *testing.T) {
	srv, cli := net.Pipe()
	c := NewConn(srv, NSClient)
	cli.Close()
	c.SendRaw([]byte("x"))
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("writer did not stop")
	}
	if c.SendRaw([]byte("y")) {
		t.Fatal("send to a dead connection accepted")
	}
}
