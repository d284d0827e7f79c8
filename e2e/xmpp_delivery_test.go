package e2e

// Issue 9, "Messages are never lost": the delivery rule through the built
// binary. A stanza handed to a connection is written, stored offline, or
// bounced to its sender; never dropped. The counting sides are Go clients
// (exact, and able to stall on purpose); the later logins are slixmpp.

import (
	"encoding/xml"
	"fmt"
	"math/rand"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// goClient is an XMPP client stream written by hand (rawConn) that, once
// logged in, reads whole stanzas with encoding/xml.
type goClient struct {
	*rawConn
	dec   *xml.Decoder
	pongs chan string // answers to sendAll's pings, once it reads in the background
}

// goStanza is what the tests look at in a stanza (or a stream error).
type goStanza struct {
	XMLName xml.Name
	ID      string `xml:"id,attr"`
	Type    string `xml:"type,attr"`
	From    string `xml:"from,attr"`
	Body    string `xml:"body"`
	Error   *struct {
		Conds []struct{ XMLName xml.Name } `xml:",any"`
	} `xml:"error"`
	Conds []struct{ XMLName xml.Name } `xml:",any"` // a stream error's
}

// condition is the stanza error's condition ("" if none).
func (s *goStanza) condition() string {
	if s.Error == nil {
		return ""
	}
	for _, c := range s.Error.Conds {
		if c.XMLName.Local != "text" {
			return c.XMLName.Local
		}
	}
	return ""
}

// goLogin connects to c2s (with a receive buffer of rcvbuf bytes, set
// before connecting, if not 0), logs in with PLAIN and binds resource.
func (x *xmppAppliance) goLogin(t *testing.T, user, password, resource string, rcvbuf int) *goClient {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) })
		}
	}
	c, err := d.Dial("tcp", net.JoinHostPort(x.host, x.c2s))
	if err != nil {
		t.Fatalf("connect to c2s: %v", err)
	}
	r := &rawConn{t: t, c: c, domain: x.domain}
	t.Cleanup(func() { r.c.Close() })
	r.open()
	r.login(user, password, resource)
	return &goClient{rawConn: r, dec: xml.NewDecoder(r.c)}
}

// next reads the next stanza (or stream error) within d; an error at the
// end of the stream or the connection.
func (g *goClient) next(d time.Duration) (*goStanza, error) {
	g.c.SetReadDeadline(time.Now().Add(d))
	for {
		tok, err := g.dec.Token()
		if err != nil {
			return nil, err
		}
		if se, ok := tok.(xml.StartElement); ok {
			s := &goStanza{}
			if err := g.dec.DecodeElement(s, &se); err != nil {
				return nil, err
			}
			return s, nil
		}
	}
}

// idCounts is how often each message id was seen, safe for concurrent use.
type idCounts struct {
	mu    sync.Mutex
	m     map[string]int
	conds map[string]int // of bounces: stanza error conditions
}

func (c *idCounts) cond(condition string) {
	c.mu.Lock()
	if c.conds == nil {
		c.conds = map[string]int{}
	}
	c.conds[condition]++
	c.mu.Unlock()
}

func (c *idCounts) add(id string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[id]++
	c.mu.Unlock()
}

func (c *idCounts) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// exactlyOnceAcross fails unless ids prefix0 … prefix(n-1), and nothing else,
// were seen once each across the idCounts.
func exactlyOnceAcross(t *testing.T, prefix string, n int, cs ...*idCounts) {
	t.Helper()
	all := map[string]int{}
	for _, c := range cs {
		c.mu.Lock()
		for id, k := range c.m {
			all[id] += k
		}
		c.mu.Unlock()
	}
	var missing, twice []string
	for i := 0; i < n; i++ {
		id := fmt.Sprint(prefix, i)
		switch all[id] {
		case 0:
			missing = append(missing, id)
		case 1:
		default:
			twice = append(twice, id)
		}
		delete(all, id)
	}
	if len(missing) > 0 || len(twice) > 0 || len(all) > 0 {
		t.Fatalf("%d of %d messages missing (%.10v…), %d more than once (%.10v…), %d unexpected", len(missing), n, missing, len(twice), twice, len(all))
	}
}

// sizedBody is a message body of about size bytes that names its id.
func sizedBody(id string, size int) string {
	return id + " " + strings.Repeat("m", size-len(id)-1)
}

// collect records, from a slixmpp client's events, the messages whose body
// starts with prefix, by id (the body's first word).
func (c *xclient) collect(prefix string, into *idCounts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, e := range c.events {
		if !c.used[i] && e.Ev == "message" && strings.HasPrefix(e.Body, prefix) {
			c.used[i] = true
			id, _, _ := strings.Cut(e.Body, " ")
			into.add(id)
		}
	}
}

// collectUntil collects until n distinct ids are in into, within bound.
func (c *xclient) collectUntil(t *testing.T, prefix string, into *idCounts, n int, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		c.collect(prefix, into)
		if into.len() >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d %s… messages within %v; stderr: %s", c.name, into.len(), n, prefix, bound, c.stderr.String())
		}
		select {
		case <-c.notify:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sendAll sends messages to `to` with ids prefix0… and bodies of min to max
// bytes, then a ping, and returns once the ping's answer came: the server
// has routed them all. Bounces seen meanwhile go into bounced; the reading
// goes on in the background until the connection closes.
func (g *goClient) sendAll(t *testing.T, to, prefix string, n, min, max int, bounced *idCounts) {
	t.Helper()
	if g.pongs == nil {
		g.pongs = make(chan string, 4)
		go func() {
			for {
				s, err := g.next(time.Minute)
				if err != nil {
					return
				}
				switch {
				case s.XMLName.Local == "message" && s.Type == "error":
					bounced.add(s.ID)
					bounced.cond(s.condition())
				case s.XMLName.Local == "iq" && strings.HasPrefix(s.ID, "sent-"):
					g.pongs <- s.ID
				}
			}
		}()
	}
	rnd := rand.New(rand.NewSource(int64(n)))
	for i := 0; i < n; i++ {
		id := fmt.Sprint(prefix, i)
		g.write(fmt.Sprintf(`<message to='%s' type='chat' id='%s'><body>%s</body></message>`, to, id, sizedBody(id, min+rnd.Intn(max-min+1))))
	}
	g.write(`<iq type='get' id='sent-` + prefix + `'><ping xmlns='urn:xmpp:ping'/></iq>`)
	select {
	case id := <-g.pongs:
		if id != "sent-"+prefix {
			t.Fatalf("answer to %s, want sent-%s", id, prefix)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the server did not answer a ping after %d messages within 30 s", n)
	}
}

// TestXMPPOfflineFlushExactlyOnce: 1,000 offline messages of 10–20 KB for
// one user (15 MB, far more than an outbound queue holds) arrive exactly
// once over two logins: a slow Go client that ends its stream after 300
// of them, then slixmpp, which gets the rest.
func TestXMPPOfflineFlushExactlyOnce(t *testing.T) {
	t.Parallel()
	x := startXMPP(t, "example.lan", "alice@example.lan", "Alice-pass-1", "bob@example.lan", "Bob-pass-22")
	alice := x.goLogin(t, "alice", "Alice-pass-1", "a", 0)
	const n = 1000
	var bounced idCounts
	begin := time.Now()
	alice.sendAll(t, "bob@example.lan", "o", n, 10<<10, 20<<10, &bounced)
	if bounced.len() != 0 {
		t.Fatalf("%d messages to an offline user bounced", bounced.len())
	}
	t.Logf("%d messages stored in %v", n, time.Since(begin))

	// A slow reader: it ends its stream after 300 messages and reads what
	// was already on its way to the end.
	var first idCounts
	bob := x.goLogin(t, "bob", "Bob-pass-22", "slow", 32<<10)
	bob.write(`<presence/>`)
	got, streamErr := 0, ""
	for {
		s, err := bob.next(20 * time.Second)
		if err != nil {
			break
		}
		if s.XMLName.Local == "error" {
			streamErr = fmt.Sprint(s.Conds)
		}
		if s.XMLName.Local != "message" || !strings.HasPrefix(s.ID, "o") {
			continue
		}
		first.add(s.ID)
		if got++; got == 300 {
			bob.write(`</stream:stream>`)
		}
		time.Sleep(500 * time.Microsecond)
	}
	if got < 300 || got >= n || streamErr != "" {
		t.Fatalf("first login: %d messages, stream error %s; want 300 or a few more and the end of the stream", got, streamErr)
	}
	t.Logf("first login: %d messages in %v", got, time.Since(begin))

	// slixmpp gets the rest at the next login, and nothing twice.
	var second idCounts
	c := x.login(t, "bob@example.lan", "Bob-pass-22", clientOpts{})
	c.collectUntil(t, "o", &second, n-got, 40*time.Second)
	c.ping(t, "")
	c.collect("o", &second)
	exactlyOnceAcross(t, "o", n, &first, &second)
	c.logout(t)

	// Nothing is left for a third login.
	c = x.login(t, "bob@example.lan", "Bob-pass-22", clientOpts{})
	c.ping(t, "")
	c.none(t, "an offline message delivered again", func(e *xev) bool { return e.Ev == "message" })
	t.Logf("all in %v", time.Since(begin))
}

// TestXMPPStalledRecipient: bob's client logs in and stops reading while
// alice sends him 1,000 messages of 10 KB. Every one is written to bob
// (he reads them once the server has closed his stream), stored offline
// (slixmpp gets them at his next login) or bounced to alice — counted,
// none missing, none twice. bob's offline store already holds 900 older
// messages, so that its limit (1,000) is reached and the rule's third
// branch, the bounce, is taken too.
func TestXMPPStalledRecipient(t *testing.T) {
	t.Parallel()
	x := startXMPP(t, "example.lan", "alice@example.lan", "Alice-pass-1", "bob@example.lan", "Bob-pass-22")
	alice := x.goLogin(t, "alice", "Alice-pass-1", "a", 0)
	var bounced idCounts
	const older, n, room = 900, 1000, 1000 - 900
	alice.sendAll(t, "bob@example.lan", "p", older, 100, 200, &bounced)
	if bounced.len() != 0 {
		t.Fatalf("%d messages to an offline user bounced", bounced.len())
	}

	// bob's stalled session: a negative priority (the older messages stay
	// stored), messages to its full JID.
	bob := x.goLogin(t, "bob", "Bob-pass-22", "stalled", 32<<10)
	bob.write(`<presence><priority>-1</priority></presence>`)
	begin := time.Now()
	alice.sendAll(t, "bob@example.lan/stalled", "s", n, 10<<10, 10<<10, &bounced)
	t.Logf("sent in %v, %d bounced so far", time.Since(begin), bounced.len())

	// bob reads again: what the server wrote before it closed his stream.
	var delivered idCounts
	streamErr := ""
	for {
		s, err := bob.next(20 * time.Second)
		if err != nil {
			break
		}
		if s.XMLName.Local == "error" {
			for _, c := range s.Conds {
				streamErr += c.XMLName.Local + " "
			}
		}
		if s.XMLName.Local == "message" && strings.HasPrefix(s.ID, "s") {
			delivered.add(s.ID)
		}
	}
	d := delivered.len()
	t.Logf("bob read %d before the server closed his stream (stream error: %s) after %v", d, streamErr, time.Since(begin))
	if d == n || d < 100 {
		t.Fatalf("bob read %d messages: his queue never overflowed, or he got nothing", d)
	}
	// The rest: room stored (the store's limit), the others bounced.
	want := n - d - room
	for deadline := time.Now().Add(20 * time.Second); bounced.len() < want; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d delivered, %d bounced, want %d bounced and %d stored", d, bounced.len(), want, room)
		}
	}

	// At the next login: the older messages and the stored new ones.
	var stored, olderSeen idCounts
	c := x.login(t, "bob@example.lan", "Bob-pass-22", clientOpts{})
	deadline := time.Now().Add(40 * time.Second)
	for stored.len() < room || olderSeen.len() < older {
		c.collect("s", &stored)
		c.collect("p", &olderSeen)
		if time.Now().After(deadline) {
			t.Fatalf("%d delivered, %d stored, %d bounced: %d of %d missing; %d of %d older messages", d, stored.len(), bounced.len(),
				n-d-stored.len()-bounced.len(), n, olderSeen.len(), older)
		}
		select {
		case <-c.notify:
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.ping(t, "")
	c.collect("s", &stored)
	c.collect("p", &olderSeen)
	t.Logf("%d delivered, %d stored, %d bounced, in %v", d, stored.len(), bounced.len(), time.Since(begin))
	exactlyOnceAcross(t, "s", n, &delivered, &stored, &bounced)
	exactlyOnceAcross(t, "p", older, &olderSeen)
	// Bounced because bob's offline storage is full.
	if len(bounced.conds) != 1 || bounced.conds["service-unavailable"] != bounced.len() {
		t.Fatalf("bounces with the conditions %v, want service-unavailable", bounced.conds)
	}
	// The log says it once.
	logs := x.stdout.String() + x.stderr.String()
	if k := strings.Count(logs, "c2s: bob@example.lan/stalled did not read fast enough: closed with policy-violation"); k != 1 {
		t.Fatalf("the log says %d times that bob's stalled session was closed; log:\n%s", k, logs)
	}
}
