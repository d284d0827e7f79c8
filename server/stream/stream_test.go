package stream

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
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

// timeoutErr is a read that timed out.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestReadErrorClosing(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"bad XML", fmt.Errorf("reading: %w", &xml.Error{Condition: "not-well-formed", Text: "bad"}),
			string((&Error{Condition: "not-well-formed", Text: "bad"}).Bytes())},
		{"timeout", &net.OpError{Op: "read", Err: timeoutErr{}},
			string((&Error{Condition: "connection-timeout", Text: "too slow"}).Bytes())},
		{"stream closed", io.EOF, string(Close)},
		{"ended", nil, string(Close)},
		{"connection gone", &net.OpError{Op: "read", Err: io.ErrClosedPipe}, ""},
	} {
		if got := string(Closing(ReadError(tc.err, "too slow"))); got != tc.want {
			t.Errorf("%s: closed with %q, want %q", tc.name, got, tc.want)
		}
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

// stanzas returns n message stanzas of about size bytes, numbered.
func stanzas(n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf(`<message id="m%d"><body>%s</body></message>`, i, strings.Repeat("x", size)))
	}
	return out
}

// ids lists the ids of the whole messages in b.
func ids(b []byte) []string {
	var out []string
	parts := bytes.Split(b, []byte(`<message id="`))
	for _, p := range parts[1:] {
		if id, _, ok := bytes.Cut(p, []byte(`"`)); ok && bytes.Contains(p, []byte("</message>")) {
			out = append(out, string(id))
		}
	}
	return out
}

// accounted fails unless every stanza sent is, exactly once, in what the
// peer read or in what the connection handed back.
func accounted(t *testing.T, sent [][]byte, read []byte, back [][]byte) {
	t.Helper()
	seen := map[string]int{}
	for _, id := range ids(read) {
		seen[id]++
	}
	for _, b := range back {
		for _, id := range ids(b) {
			seen[id]++
		}
	}
	for _, b := range sent {
		id := ids(b)[0]
		if seen[id] != 1 {
			t.Fatalf("%s: read or handed back %d times (read %d stanzas, %d handed back, %d sent)", id, seen[id], len(ids(read)), len(back), len(sent))
		}
		delete(seen, id)
	}
	if len(seen) != 0 {
		t.Fatalf("never sent: %v", seen)
	}
}

func waitDone(t *testing.T, c *Conn, within time.Duration) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(within):
		t.Fatalf("the connection did not end within %v", within)
	}
}

// TestConnOverflowHandsBack: a peer that never reads makes the queue
// overflow; the connection ends and hands back, in order, every stanza it
// accepted; the one refused stays with the caller.
func TestConnOverflowHandsBack(t *testing.T) {
	srv, cli := net.Pipe() // unbuffered: nothing is written until read
	defer cli.Close()
	c := NewConn(srv, NSClient)
	all := stanzas(1000, 10<<10)
	var sent [][]byte
	for _, b := range all {
		if !c.SendRaw(b) {
			break
		}
		sent = append(sent, b)
	}
	if len(sent) == len(all) || len(sent) < MaxQueueBytes/len(all[0])-1 {
		t.Fatalf("accepted %d stanzas of %d bytes", len(sent), len(all[0]))
	}
	if !c.Overflowed() || !c.Closing() {
		t.Fatal("not failing after the overflow")
	}
	waitDone(t, c, OverflowGrace+5*time.Second)
	back := c.Unwritten()
	if len(back) != len(sent) {
		t.Fatalf("handed back %d of %d", len(back), len(sent))
	}
	for i := range back {
		if !bytes.Equal(back[i], sent[i]) {
			t.Fatalf("stanza %d handed back is not the one sent", i)
		}
	}
	if c.SendRaw([]byte("more")) {
		t.Fatal("send after overflow accepted")
	}
}

// TestConnOverflowStreamError: when the peer reads again after the
// overflow, it gets what was in flight, whole, and a policy-violation
// stream error; the rest is handed back; nothing twice, nothing missing.
func TestConnOverflowStreamError(t *testing.T) {
	srv, cli := net.Pipe()
	c := NewConn(srv, NSClient)
	all := stanzas(1000, 10<<10)
	c.SendRaw(all[0])
	sent := all[:1]
	first := make([]byte, 1) // the writer is in the middle of writing the first stanza
	if _, err := io.ReadFull(cli, first); err != nil {
		t.Fatal(err)
	}
	for _, b := range all[1:] {
		if !c.SendRaw(b) {
			break
		}
		sent = append(sent, b)
	}
	rest, _ := io.ReadAll(cli)
	read := append(first, rest...)
	waitDone(t, c, 5*time.Second)
	if !bytes.Contains(read, []byte(`<stream:error><policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"/>`)) || !bytes.HasSuffix(read, Close) {
		t.Fatalf("no policy-violation stream error at the end: %q", read[max(0, len(read)-300):])
	}
	if n := len(ids(read)); n == 0 || n == len(sent) {
		t.Fatalf("the peer read %d of %d stanzas", n, len(sent))
	}
	accounted(t, sent, read, c.Unwritten())
}

// TestConnStalledPeerPartialWrite: a peer that reads part of a batch and
// stalls: the stanza it got only part of is handed back, the whole ones
// are not.
func TestConnStalledPeerPartialWrite(t *testing.T) {
	srv, cli := net.Pipe()
	defer cli.Close()
	c := NewConn(srv, NSClient)
	var sent [][]byte
	for _, b := range stanzas(20, 1000) {
		c.SendRaw(b)
		sent = append(sent, b)
	}
	read := make([]byte, 5500) // five stanzas and a half
	if _, err := io.ReadFull(cli, read); err != nil {
		t.Fatal(err)
	}
	srv.SetWriteDeadline(time.Now()) // the write in progress fails, as after WriteTimeout
	c.SetWriteDeadline(time.Now())
	waitDone(t, c, 5*time.Second)
	back := c.Unwritten()
	if len(ids(read)) != 5 || len(back) != 15 {
		t.Fatalf("read %d whole stanzas, %d handed back", len(ids(read)), len(back))
	}
	accounted(t, sent, read, back)
}

type testPacer struct {
	mu      sync.Mutex
	written []uint64
	lows    int
}

func (p *testPacer) Written(id uint64) { p.mu.Lock(); p.written = append(p.written, id); p.mu.Unlock() }
func (p *testPacer) Low()              { p.mu.Lock(); p.lows++; p.mu.Unlock() }

// TestConnTracked: tracked stanzas are reported written in order, the
// pacer hears when the queue runs low, and tracked stanzas not written
// when the peer goes are not handed back (their owner keeps them).
func TestConnTracked(t *testing.T) {
	srv, cli := net.Pipe()
	c := NewConn(srv, NSClient)
	p := &testPacer{}
	c.SetPacer(p, 1000)
	all := stanzas(10, 100)
	for i, b := range all {
		if i%2 == 0 {
			c.SendTracked(b, uint64(i+1))
		} else {
			c.SendRaw(b)
		}
	}
	got := make([]byte, 0, 4096)
	buf := make([]byte, 4096)
	for len(ids(got)) < 10 {
		n, err := cli.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		w, lows := append([]uint64(nil), p.written...), p.lows
		p.mu.Unlock()
		if len(w) > 0 && w[len(w)-1] == 9 && lows > 0 {
			for i := 1; i < len(w); i++ {
				if w[i] <= w[i-1] {
					t.Fatalf("written out of order: %v", w)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("written %v, low %d times", w, lows)
		}
		time.Sleep(time.Millisecond)
	}
	// The peer goes: tracked stanzas stay with the pacer's owner.
	cli.Close()
	c.SendTracked([]byte(`<message id="m100"/>`), 100)
	c.SendRaw([]byte(`<message id="m101"><body>x</body></message>`))
	waitDone(t, c, 5*time.Second)
	back := c.Unwritten()
	if len(back) > 1 || (len(back) == 1 && ids(back[0])[0] != "m101") {
		t.Fatalf("handed back %q", back)
	}
}

func TestParseStanzas(t *testing.T) {
	els := ParseStanzas([][]byte{
		[]byte(`<message to="a@x" id="1"><body>hi</body></message>`),
		[]byte(`<handshake/>`),
		[]byte(`<iq type="get" id="2"><ping xmlns="urn:xmpp:ping"/></iq>`),
		[]byte(`<broken`),
	}, NSAccept)
	if len(els) != 2 || els[0].Name != (xml.Name{Space: NSAccept, Local: "message"}) || els[0].Child("", "body").Text() != "hi" || els[1].Get("id") != "2" {
		t.Fatalf("%v", els)
	}
}
