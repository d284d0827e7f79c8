package server

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/c2s"
	"github.com/parley-xmpp/parley/server/component"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// The delivery rule (DESIGN.md, Seams): a stanza handed to a connection is
// written, stored offline, or bounced to its sender; never dropped.

// tally counts, per message id, how often it was seen.
type tally map[string]int

// readMessages reads stanzas until the stream or the connection ends,
// counting messages with a body whose id starts with prefix; after each,
// pause. After stopAfter of them (0: never) it ends its side of the stream
// and reads on to the end.
func (c *client) readMessages(seen tally, prefix string, stopAfter int, pause time.Duration) (got int, streamErr string) {
	for {
		el, err := c.rd.Next()
		if err != nil {
			return got, streamErr
		}
		if el.Name.Space == xml.NSStream && el.Name.Local == "error" {
			streamErr = el.Elements()[0].Name.Local
			continue
		}
		if el.Name.Local != "message" || el.Child("", "body") == nil || !strings.HasPrefix(el.Get("id"), prefix) {
			continue
		}
		seen[el.Get("id")]++
		got++
		if got == stopAfter {
			c.send(`</stream:stream>`)
		}
		if pause > 0 {
			time.Sleep(pause)
		}
	}
}

// readUntil reads until every one of n messages was seen at least once.
func (c *client) readUntil(seen tally, prefix string, n int) {
	c.t.Helper()
	for len(seen) < n {
		el, err := c.rd.Next()
		if err != nil {
			c.t.Fatalf("read: %v (%d of %d messages seen)", err, len(seen), n)
		}
		if el.Name.Local == "message" && el.Child("", "body") != nil && strings.HasPrefix(el.Get("id"), prefix) {
			seen[el.Get("id")]++
		}
	}
}

func (s tally) exactlyOnce(t *testing.T, prefix string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		id := fmt.Sprint(prefix, i)
		if s[id] != 1 {
			t.Fatalf("%s arrived %d times (%d distinct of %d)", id, s[id], len(s), n)
		}
	}
	if len(s) != n {
		t.Fatalf("%d distinct messages, want %d", len(s), n)
	}
}

func (f *fixture) stored(bare string) int {
	msgs, err := f.st.Offline(bare)
	if err != nil {
		f.t.Fatal(err)
	}
	return len(msgs)
}

// dialSmall is dial with a small receive buffer, set before the
// connection is made (shrinking it later makes the kernel drop what the
// window it announced let in).
func (f *fixture) dialSmall() *client {
	f.t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
	}}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", f.port))
	if err != nil {
		f.t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	f.t.Cleanup(func() { c.Close() })
	return &client{t: f.t, conn: c}
}

// TestOfflineFlushPaced: 10 MB of stored messages (more than an outbound
// queue holds) reach a slow client exactly once over two logins: the first
// ends its stream part way, what it was not sent stays stored, the second
// gets the rest.
func TestOfflineFlushPaced(t *testing.T) {
	t.Parallel()
	f := start(t)
	const n = 300
	body := strings.Repeat("p", 35<<10)
	for i := 0; i < n; i++ {
		msg := fmt.Sprintf(`<message xmlns="jabber:client" from="alice@example.lan/a" to="bob@example.lan" type="chat" id="o%d"><body>%s</body></message>`, i, body)
		if _, err := f.st.ProposeSettled(context.Background(), store.OfflinePush{User: "bob@example.lan", Stanza: []byte(msg)}); err != nil {
			t.Fatal(err)
		}
	}
	seen := tally{}
	b := f.dialSmall()
	b.conn.SetDeadline(time.Now().Add(40 * time.Second))
	b.login("bob", "bob-password", "one")
	// The flush is paced by the writer: what waits in the session's queue
	// stays near the flush's high-water mark (512 KiB), far below the
	// queue's limit, however much is stored.
	out := f.eng.router.Session("bob@example.lan", "one").(*c2s.Session).Out()
	most := 0
	sampled := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			most = max(most, out.Queued())
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	b.send(`<presence/>`)
	got, serr := b.readMessages(seen, "o", 100, time.Millisecond)
	close(stop)
	<-sampled
	if got < 100 || got >= n || serr != "" {
		t.Fatalf("first login: %d messages, stream error %q; want 100 or a few more, then the end of the stream", got, serr)
	}
	if most == 0 || most > 512<<10+len(body)+1024 {
		t.Fatalf("up to %d bytes waited in the queue during the flush", most)
	}
	t.Logf("at most %d KiB queued during the flush", most>>10)
	waitFor(t, "the written messages deleted", func() bool { return f.stored("bob@example.lan") == n-got })

	b2 := f.dial()
	b2.login("bob", "bob-password", "two")
	b2.send(`<presence/>`)
	b2.readUntil(seen, "o", n)
	b2.ping("sync")
	seen.exactlyOnce(t, "o", n)
	waitFor(t, "the store emptied", func() bool { return f.stored("bob@example.lan") == 0 })
}

// TestStalledRecipient: a recipient that stops reading while 6 MB arrive
// for it: every message is delivered (read when it reads again), stored
// (read at its next login) or bounced to the sender; none twice, none
// missing. The stalled session is closed and unbound, the sender is never
// held up.
func TestStalledRecipient(t *testing.T) {
	t.Parallel()
	f := start(t)
	b := f.dialSmall()
	b.conn.SetDeadline(time.Now().Add(60 * time.Second))
	b.login("bob", "bob-password", "stalled")
	b.send(`<presence/>`)
	b.expect("own presence", func(el *xml.Element) bool { return el.Name.Local == "presence" })
	a := f.dial()
	a.conn.SetDeadline(time.Now().Add(60 * time.Second))
	a.login("alice", "alice-password", "a")

	const n = 1000
	// alice's bounces, counted as they come.
	var mu sync.Mutex
	bounced := tally{}
	go func() {
		for {
			el, err := a.rd.Next()
			if err != nil {
				return
			}
			if el.Name.Local == "message" && el.Get("type") == "error" {
				mu.Lock()
				bounced[el.Get("id")]++
				mu.Unlock()
			}
		}
	}()
	body := strings.Repeat("s", 10<<10)
	for i := 0; i < n; i++ {
		a.send(fmt.Sprintf(`<message to='bob@example.lan' type='chat' id='s%d'><body>%s</body></message>`, i, body))
	}
	waitFor(t, "bob's stalled session unbound", func() bool { return !f.bound("bob@example.lan", "stalled") })

	// bob reads again: what was written to him before the end.
	seen := tally{}
	delivered, serr := b.readMessages(seen, "s", 0, 0)
	var stored, nb int
	deadline := time.Now().Add(15 * time.Second)
	for {
		stored = f.stored("bob@example.lan")
		mu.Lock()
		nb = len(bounced)
		mu.Unlock()
		if delivered+stored+nb == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d delivered (stream error %q), %d stored, %d bounced: %d of %d missing", delivered, serr, stored, nb, n-delivered-stored-nb, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if delivered == n || stored+nb == 0 {
		t.Fatalf("bob read %d messages (stream error %q): the queue never overflowed", delivered, serr)
	}
	b2 := f.dial()
	b2.login("bob", "bob-password", "later")
	b2.send(`<presence/>`)
	b2.readUntil(seen, "s", delivered+stored)
	b2.ping("sync")
	t.Logf("%d delivered (stream error %q), %d stored and delivered at the next login, %d bounced", delivered, serr, stored, nb)
	mu.Lock()
	for id, k := range bounced {
		seen[id] += k
	}
	mu.Unlock()
	seen.exactlyOnce(t, "s", n)
}

// TestStalledComponent: a component (a call bridge) that stops reading:
// its connection is closed with a stream error and every message handed
// to it is either written (it reads them in the end) or bounced to the
// sender with service-unavailable; none lost, none both.
func TestStalledComponent(t *testing.T) {
	t.Parallel()
	f := start(t)
	f.addBridge("cb1")
	comp := f.dialSmall()
	comp.conn.SetDeadline(time.Now().Add(60 * time.Second))
	comp.send(`<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='cb1.example.lan'>`)
	comp.rd = xml.NewReader(comp.conn, xml.DefaultLimits)
	h, err := comp.rd.Header()
	if err != nil {
		t.Fatal(err)
	}
	comp.send(`<handshake>` + component.Handshake(h.Get("id"), cbSecret) + `</handshake>`)
	if el := comp.next(); el.Name.Local != "handshake" {
		t.Fatalf("handshake: %s", el)
	}
	a := f.dial()
	a.conn.SetDeadline(time.Now().Add(60 * time.Second))
	a.login("alice", "alice-password", "a")
	var mu sync.Mutex
	bounced := tally{}
	conds := map[string]int{}
	routed := make(chan struct{})
	go func() {
		for {
			el, err := a.rd.Next()
			if err != nil {
				return
			}
			if el.Get("id") == "routed" {
				close(routed)
			}
			if el.Name.Local == "message" && el.Get("type") == "error" {
				mu.Lock()
				bounced[el.Get("id")]++
				conds[stanzaError(el)]++
				mu.Unlock()
			}
		}
	}()
	const n = 1000
	body := strings.Repeat("c", 10<<10)
	for i := 0; i < n; i++ {
		a.send(fmt.Sprintf(`<message to='room@cb1.example.lan' type='chat' id='c%d'><body>%s</body></message>`, i, body))
	}
	// Once the server answers this, it has routed them all; only then
	// does the component read again.
	a.send(`<iq type='get' id='routed'><ping xmlns='urn:xmpp:ping'/></iq>`)
	select {
	case <-routed:
	case <-time.After(30 * time.Second):
		t.Fatal("no answer to a ping after the messages")
	}
	seen := tally{}
	delivered, serr := comp.readMessages(seen, "c", 0, 0)
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		nb := len(bounced)
		mu.Unlock()
		if delivered+nb >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d delivered (stream error %q), %d bounced: %d of %d missing", delivered, serr, nb, n-delivered-nb, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if delivered == n || len(bounced) == 0 {
		t.Fatalf("%d delivered, %d bounced: the queue never overflowed", delivered, len(bounced))
	}
	if len(conds) != 1 || conds["service-unavailable"] != len(bounced) {
		t.Fatalf("bounce conditions %v, want service-unavailable", conds)
	}
	t.Logf("%d delivered (stream error %q), %d bounced", delivered, serr, len(bounced))
	for id, k := range bounced {
		seen[id] += k
	}
	seen.exactlyOnce(t, "c", n)
}

// TestStalledResourceFailsOver: bob has two available resources and one
// stops reading. Messages to it that it cannot take go to his other
// resource (RFC 6121 §8.5.3.2.1: as for a resource that is gone), not to
// offline storage and never back to the stalled one: each arrives once.
func TestStalledResourceFailsOver(t *testing.T) {
	t.Parallel()
	f := start(t)
	stalled := f.dialSmall()
	stalled.conn.SetDeadline(time.Now().Add(60 * time.Second))
	stalled.login("bob", "bob-password", "stalled")
	stalled.send(`<presence/>`)
	stalled.expect("own presence", func(el *xml.Element) bool { return el.Name.Local == "presence" })
	good := f.dial()
	good.conn.SetDeadline(time.Now().Add(60 * time.Second))
	good.login("bob", "bob-password", "good")
	good.send(`<presence/>`)
	a := f.dial()
	a.conn.SetDeadline(time.Now().Add(60 * time.Second))
	a.login("alice", "alice-password", "a")

	const n = 1000
	body := strings.Repeat("f", 10<<10)
	var mu sync.Mutex
	seenGood := tally{}
	goodDone := make(chan struct{})
	go func() {
		defer close(goodDone)
		for {
			el, err := good.rd.Next()
			if err != nil || el.Get("id") == "end" {
				return
			}
			if el.Name.Local == "message" && strings.HasPrefix(el.Get("id"), "f") {
				mu.Lock()
				seenGood[el.Get("id")]++
				mu.Unlock()
			}
		}
	}()
	for i := 0; i < n; i++ {
		a.send(fmt.Sprintf(`<message to='bob@example.lan/stalled' type='chat' id='f%d'><body>%s</body></message>`, i, body))
	}
	waitFor(t, "the stalled resource unbound", func() bool { return !f.bound("bob@example.lan", "stalled") })
	seen := tally{}
	delivered, serr := stalled.readMessages(seen, "f", 0, 0)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		got := len(seenGood)
		mu.Unlock()
		if delivered+got >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d delivered to the stalled resource (stream error %q), %d to the other, %d stored: %d missing", delivered, serr, got, f.stored("bob@example.lan"), n-delivered-got)
		}
	}
	// A last message to the good resource: nothing more comes before it.
	a.send(`<message to='bob@example.lan/good' type='chat' id='end'><body>end</body></message>`)
	select {
	case <-goodDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the good resource did not get the end marker")
	}
	if stored := f.stored("bob@example.lan"); stored != 0 {
		t.Fatalf("%d messages stored offline while bob had an available resource", stored)
	}
	t.Logf("%d delivered to the stalled resource (stream error %q), %d to the other", delivered, serr, len(seenGood))
	if delivered == n || len(seenGood) == 0 {
		t.Fatalf("the stalled resource got %d: its queue never overflowed", delivered)
	}
	for id, k := range seenGood {
		seen[id] += k
	}
	seen.exactlyOnce(t, "f", n)
}
