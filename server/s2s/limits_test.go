package s2s

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/resolve"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// bounces records what the service hands back to local senders.
type bounces struct {
	mu  sync.Mutex
	got []string // "to condition"
}

func (b *bounces) FromRemote(*xml.Element) {}
func (b *bounces) Local(d string) bool     { return d == "a.lan" }
func (b *bounces) Bounce(el *xml.Element, condition, text string) {
	b.mu.Lock()
	b.got = append(b.got, el.Get("to")+" "+condition)
	b.mu.Unlock()
}

func (b *bounces) list() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.got...)
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// silentDNS is a DNS server that reads queries and never answers: links
// stay in their set-up.
func silentDNS(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String()
}

func capsService(t *testing.T, tweak func(*Config)) (*Service, *bounces, *syncBuf) {
	b := &bounces{}
	logs := &syncBuf{}
	dns := silentDNS(t)
	cfg := Config{
		Handler:    b,
		Resolver:   &resolve.Resolver{Servers: func() []string { return []string{dns} }, Timeout: 20 * time.Second},
		Federation: func() store.FederationConfig { return store.FederationConfig{Enabled: true, IdleTimeout: time.Minute} },
		Log:        logging.NewWriter(logs, logging.LevelLow),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	s := New(cfg)
	t.Cleanup(s.Close)
	return s, b, logs
}

func msg(to, body string) *xml.Element {
	return xml.New(stream.NSClient, "message", "from", "alice@a.lan/r", "to", to, "type", "chat").Add(xml.New(stream.NSClient, "body").AddText(body))
}

// Links being set up are capped: beyond MaxPendingLinks a message to yet
// another domain bounces at once with resource-constraint, and the log has
// one line for the whole episode.
func TestPendingLinksCapped(t *testing.T) {
	s, b, logs := capsService(t, func(c *Config) { c.MaxPendingLinks = 5 })
	for i := 0; i < 50; i++ {
		s.Route(msg(fmt.Sprintf("bob@d%d.lan", i), "hi"))
	}
	links, _ := s.Status()
	if len(links) != 5 {
		t.Fatalf("%d links being set up, want the cap of 5", len(links))
	}
	got := b.list()
	if len(got) != 45 {
		t.Fatalf("%d bounces, want 45: %v", len(got), got)
	}
	for _, g := range got {
		if !strings.HasSuffix(g, " resource-constraint") {
			t.Fatalf("bounce %q, want resource-constraint", g)
		}
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 {
		t.Fatalf("45 refused links wrote %d log lines, want 1:\n%s", n, logs)
	}
	// A domain with a link already gets its stanzas queued.
	s.Route(msg("carol@d0.lan", "hi"))
	if len(b.list()) != 45 {
		t.Fatal("a stanza for a link being set up bounced")
	}
}

// The total number of outgoing links is capped too.
func TestLinksCapped(t *testing.T) {
	s, b, _ := capsService(t, func(c *Config) { c.MaxLinks = 3 })
	for i := 0; i < 10; i++ {
		s.Route(msg(fmt.Sprintf("bob@d%d.lan", i), "hi"))
	}
	if links, _ := s.Status(); len(links) != 3 || len(b.list()) != 7 {
		t.Fatalf("%d links and %d bounces, want 3 and 7", len(links), len(b.list()))
	}
}

// A link's queue is capped in bytes as well as stanzas, and all queues
// together in bytes.
func TestQueueBytesCapped(t *testing.T) {
	big := strings.Repeat("x", 10<<10)
	s, b, _ := capsService(t, func(c *Config) {
		c.MaxQueueBytes = 100 << 10
		c.MaxPendingBytes = 250 << 10
		// The lookups fail within seconds (cancelling a link does not
		// interrupt its lookup).
		c.Resolver.Timeout = 3 * time.Second
	})
	for i := 0; i < 20; i++ {
		s.Route(msg("bob@d1.lan", big))
	}
	if n := len(b.list()); n < 10 || n > 11 {
		t.Fatalf("20 × 10 KiB for one link with a 100 KiB queue: %d bounced, want 10 or 11", n)
	}
	for i := 0; i < 20; i++ {
		s.Route(msg("bob@d2.lan", big))
		s.Route(msg("bob@d3.lan", big))
	}
	// 250 KiB in all: d1 holds about 100, d2 and d3 share the rest.
	s.mu.Lock()
	pending := s.pendingBytes
	s.mu.Unlock()
	if pending > 250<<10 || pending < 230<<10 {
		t.Fatalf("%d bytes queued in all, want just under the cap of 250 KiB", pending)
	}
	if n := len(b.list()); n < 10+40-16 || n > 10+40-13 {
		t.Fatalf("%d bounced in all", n)
	}
	// What the failed links held no longer counts.
	s.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.mu.Lock()
		pending, connecting := s.pendingBytes, s.connecting
		s.mu.Unlock()
		if pending == 0 && connecting == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Close: %d bytes and %d links still counted", pending, connecting)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Failures to reach servers are logged once per episode, not once per
// domain.
func TestLinkFailuresLoggedPerEpisode(t *testing.T) {
	s, b, logs := capsService(t, func(c *Config) {
		// No DNS server at all: every lookup fails at once.
		c.Resolver = &resolve.Resolver{Servers: func() []string { return []string{"127.0.0.1:1"} }, Timeout: time.Second}
	})
	for i := 0; i < 200; i++ {
		s.Route(msg(fmt.Sprintf("bob@d%d.lan", i), "hi"))
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(b.list()) < 200 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 200 bounced", len(b.list()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "\n"); n > 2 {
		t.Fatalf("200 failed links wrote %d log lines, want one per episode:\n%s", n, logs)
	}
}

func TestApproxSize(t *testing.T) {
	el := msg("bob@d1.lan", strings.Repeat("x", 1000))
	exact := len(el.Bytes(stream.NSClient))
	if n := approxSize(el); n < exact*9/10 || n > exact*2 {
		t.Fatalf("approxSize %d, serialized %d", n, exact)
	}
}
