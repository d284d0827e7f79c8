package s2s

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/resolve"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

func TestServerHeader(t *testing.T) {
	h := string(serverHeader("a.lan", "b.lan", "id1"))
	if !strings.HasPrefix(h, "<?xml version='1.0'?><stream:stream xmlns:db='jabber:server:dialback' xmlns='jabber:server'") {
		t.Fatalf("header: %s", h)
	}
	// It parses, with the dialback prefix bound.
	rd := xml.NewReader(strings.NewReader(h+string(dialbackBytes(xml.New(NSDialback, "result", "from", "a.lan", "to", "b.lan").AddText("k")))), xml.DefaultLimits)
	if _, err := rd.Header(); err != nil {
		t.Fatal(err)
	}
	el, err := rd.Next()
	if err != nil || el.Name.Space != NSDialback || el.Name.Local != "result" || el.Text() != "k" {
		t.Fatalf("dialback element read back as %v (%v)", el, err)
	}
}

func TestDialbackBytes(t *testing.T) {
	for _, c := range []struct {
		el   *xml.Element
		want string
	}{
		{xml.New(NSDialback, "result", "from", "a.lan", "to", "b.lan").AddText("abc"), `<db:result from="a.lan" to="b.lan">abc</db:result>`},
		{xml.New(NSDialback, "verify", "from", "a.lan", "to", "b.lan", "id", "i", "type", "valid"), `<db:verify from="a.lan" to="b.lan" id="i" type="valid"/>`},
		{xml.New(NSDialback, "result", "type", "error").Add(xml.New(stream.NSServer, "error", "type", "cancel").Add(xml.New(stream.NSStanzas, "item-not-found"))),
			`<db:result type="error"><error xmlns="jabber:server" type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></db:result>`},
	} {
		if got := string(dialbackBytes(c.el)); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
}

func TestDialbackKey(t *testing.T) {
	s := New(Config{})
	k := s.dialbackKey("b.lan", "a.lan", "id1")
	if len(k) != 64 || k != s.dialbackKey("b.lan", "a.lan", "id1") {
		t.Fatalf("key %q", k)
	}
	for _, other := range []string{s.dialbackKey("a.lan", "b.lan", "id1"), s.dialbackKey("b.lan", "a.lan", "id2"), New(Config{}).dialbackKey("b.lan", "a.lan", "id1")} {
		if other == k {
			t.Fatal("keys for other streams, directions or secrets must differ")
		}
	}
}

type bounceRecorder struct {
	mu      sync.Mutex
	bounced map[string]string // id → condition
}

func (h *bounceRecorder) FromRemote(*xml.Element)  {}
func (h *bounceRecorder) Local(domain string) bool { return domain == "a.lan" }
func (h *bounceRecorder) Bounce(el *xml.Element, condition, text string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if el.Name.Space != stream.NSClient {
		panic("a bounce in " + el.Name.Space)
	}
	h.bounced[el.Get("id")] = condition
}

// TestStalledLinkBounces: a remote server that stops reading: its link's
// queue overflows, the link closes, and every stanza handed to it is
// either written (the peer reads them in the end) or bounced to its
// sender — none lost, none both.
func TestStalledLinkBounces(t *testing.T) {
	h := &bounceRecorder{bounced: map[string]string{}}
	s := New(Config{
		Handler: h,
		Federation: func() store.FederationConfig {
			// A new link after the stalled one finds nobody: its queue bounces.
			return store.FederationConfig{Enabled: true, IdleTimeout: time.Minute, Routes: map[string]string{"b.lan": "127.0.0.1:1"}}
		},
		Resolver: &resolve.Resolver{},
		Log:      logging.Discard(),
	})
	srv, peer := net.Pipe()
	p := pair{"a.lan", "b.lan"}
	l := s.newOutLink(p)
	s.out[p] = l
	upDone := make(chan struct{})
	go func() {
		// The peer's side of the stream: nothing until it closes.
		// The peer's stream header has been read, as by a real link set-up.
		rd := xml.NewReader(io.MultiReader(strings.NewReader(`<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>`), srv), xml.DefaultLimits)
		if _, err := rd.Header(); err != nil {
			panic(err)
		}
		l.up(&established{raw: srv, rd: rd})
		close(upDone)
	}()
	for l.link().State != status.Up {
		time.Sleep(time.Millisecond)
	}
	const n = 1000
	body := strings.Repeat("b", 10<<10)
	for i := 0; i < n; i++ {
		s.Route(xml.New(stream.NSClient, "message", "from", "alice@a.lan/r", "to", "bob@b.lan", "type", "chat", "id", fmt.Sprint("m", i)).
			Add(xml.New(stream.NSClient, "body").AddText(body)))
	}
	// The peer reads again, to the end: what was written to it.
	read, _ := io.ReadAll(peer)
	select {
	case <-upDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled link did not end")
	}
	written := map[string]bool{}
	for _, part := range strings.Split(string(read), `id="`)[1:] {
		id, rest, _ := strings.Cut(part, `"`)
		if strings.Contains(rest, "</message>") {
			written[id] = true
		}
	}
	waitFor := time.Now().Add(10 * time.Second)
	for {
		h.mu.Lock()
		nb := len(h.bounced)
		h.mu.Unlock()
		if nb+len(written) >= n || time.Now().After(waitFor) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !strings.Contains(string(read), "policy-violation") && !strings.Contains(string(read), "</stream:stream>") {
		t.Logf("the peer got no stream end (its stream broke mid-stanza)")
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprint("m", i)
		_, b := h.bounced[id]
		if b == written[id] {
			t.Fatalf("%s: written %v, bounced %v (%d written, %d bounced of %d)", id, written[id], b, len(written), len(h.bounced), n)
		}
	}
	if len(written) == 0 || len(h.bounced) == 0 {
		t.Fatalf("%d written, %d bounced: the queue never overflowed", len(written), len(h.bounced))
	}
}

// Two nodes of a cluster share the dialback secret (the engine reads it
// from the replicated store): a key node A makes for a link is valid when
// the remote server asks node B to verify it; a node with a secret of its
// own (another store) says invalid.
func TestDialbackKeySharedSecret(t *testing.T) {
	openStore := func() *store.Store {
		st, err := store.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	secretOf := func(st *store.Store) func() []byte {
		return func() []byte {
			s, err := st.DialbackSecret()
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
	a, b, other := openStore(), openStore(), openStore()
	if _, err := a.Propose(store.DialbackSecretInit{Secret: []byte("0123456789abcdef0123456789abcdef")}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Propose(store.DialbackSecretInit{Secret: []byte("another secret of thirty-two b..")}); err != nil {
		t.Fatal(err)
	}
	// b joins a's cluster: a's snapshot (or log) gives it the secret.
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(a.Snapshot(pw)) }()
	if err := b.Restore(pr); err != nil {
		t.Fatal(err)
	}
	h := &bounceRecorder{}
	nodeA := New(Config{Handler: h, Secret: secretOf(a)})
	key := nodeA.dialbackKey("b.lan", "a.lan", "id1") // a.lan's link to b.lan, stream id1
	verify := func(st *store.Store) string {
		node := New(Config{Handler: h, Secret: secretOf(st)})
		ours, theirs := net.Pipe()
		defer theirs.Close()
		in := &inStream{s: node, raw: ours}
		go in.answerVerify(xml.New(NSDialback, "verify", "from", "b.lan", "to", "a.lan", "id", "id1").AddText(key))
		theirs.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 512)
		n, err := theirs.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	if got := verify(b); !strings.Contains(got, `type="valid"`) {
		t.Errorf("node B (the cluster's secret) answers %s", got)
	}
	if got := verify(other); !strings.Contains(got, `type="invalid"`) {
		t.Errorf("a node with another secret answers %s", got)
	}
}
