package limit

import (
	"bytes"
	"github.com/parley-xmpp/parley/server/logging"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	sec := int64(time.Second)
	tests := []struct {
		name         string
		rate         float64
		burst        int
		takes        int   // at once, at the start
		after        int64 // then one more take this much later
		wantFree     int   // of the first takes, how many wait 0
		wantLastWait time.Duration
	}{
		{"burst is free, the next waits", 100, 500, 500, 0, 500, 10 * time.Millisecond},
		{"beyond the burst waits one interval per token", 100, 500, 510, 0, 500, 110 * time.Millisecond},
		{"refilled at the rate", 100, 500, 500, sec / 10, 500, 0},
		{"refill is capped at the burst", 10, 5, 5, 100 * sec, 5, 0},
		{"burst below one is one", 10, 0, 2, 0, 1, 200 * time.Millisecond},
		{"unlimited", 0, 0, 100000, 0, 100000, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBucket(tc.rate, tc.burst)
			now := b.last
			free := 0
			for i := 0; i < tc.takes; i++ {
				if b.Take(now) == 0 {
					free++
				}
			}
			if free != tc.wantFree {
				t.Errorf("free takes: %d, want %d", free, tc.wantFree)
			}
			if got := b.Take(now + tc.after); got != tc.wantLastWait {
				t.Errorf("last take waits %v, want %v", got, tc.wantLastWait)
			}
		})
	}
}

// A caller that waits what Take says keeps to the rate: 10 s of a flood at
// 100/s with a burst of 500 lets 1,500 through.
func TestBucketPacesAFlood(t *testing.T) {
	b := NewBucket(100, 500)
	now := b.last
	end := now + int64(10*time.Second)
	n := 0
	for now < end {
		if w := b.Take(now); w > 0 {
			now += int64(w)
			if now >= end {
				break
			}
		}
		n++
	}
	if n < 1490 || n > 1510 {
		t.Fatalf("%d stanzas in 10 s, want about 1500", n)
	}
}

func TestBucketSet(t *testing.T) {
	b := NewBucket(100, 500)
	b.Set(10, 5)
	now := b.last
	free := 0
	for i := 0; i < 10; i++ {
		if b.Take(now) == 0 {
			free++
		}
	}
	if free != 5 {
		t.Fatalf("after Set(10, 5): %d free takes, want 5", free)
	}
	b.Set(0, 0)
	if b.Limited() || b.Take(now) != 0 {
		t.Fatal("Set(0, 0) still limits")
	}
}

func BenchmarkBucketTake(b *testing.B) {
	bk := NewBucket(1e12, 1<<30)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		bk.Take(Now())
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestEpisodes() (*Episodes, *bytes.Buffer, *fakeClock) {
	var buf bytes.Buffer
	e := NewEpisodes(logging.NewWriter(&buf, logging.LevelLow))
	clock := &fakeClock{t: time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)}
	e.now = clock.now
	e.quiet = time.Hour // the test drives tick itself
	return e, &buf, clock
}

func lines(buf *bytes.Buffer) []string {
	s := strings.TrimSpace(buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestEpisodeOneLinePerEpisode(t *testing.T) {
	e, buf, clock := newTestEpisodes()
	e.quiet = 10 * time.Second
	e.now = clock.now
	// Keep the real timer out of it: tick is called by hand.
	for i := 0; i < 20000; i++ {
		e.Printf("s2s: links that failed", "s2s: a → d%d.lan: no such domain", i)
	}
	if l := lines(buf); len(l) != 1 || !strings.Contains(l[0], "d0.lan") {
		t.Fatalf("20,000 occurrences wrote %d lines, want the first one only:\n%s", len(l), buf)
	}
	ep := e.open["s2s: links that failed"]
	ep.timer.Stop()
	clock.add(5 * time.Second)
	e.tick(ep) // not quiet yet
	if l := lines(buf); len(l) != 1 {
		t.Fatalf("a tick within the episode wrote a line:\n%s", buf)
	}
	clock.add(10 * time.Second)
	e.tick(ep) // quiet: over
	ep.timer.Stop()
	l := lines(buf)
	if len(l) != 2 || !strings.Contains(l[1], "19999 more") || !strings.Contains(l[1], "20000 in all") {
		t.Fatalf("the end of the episode: want one summary of 19999 more, got:\n%s", buf)
	}
	if e.Open() != 0 {
		t.Fatalf("%d episodes still open", e.Open())
	}
	// A new episode starts with a line of its own.
	if !e.Printf("s2s: links that failed", "s2s: again") {
		t.Fatal("the first occurrence of a new episode was not logged")
	}
	e.open["s2s: links that failed"].timer.Stop()
	if l := lines(buf); len(l) != 3 || !strings.HasSuffix(l[2], " PROBLEM s2s: again (further occurrences are counted: one summary a minute)") {
		t.Fatalf("new episode:\n%s", buf)
	}
}

func TestEpisodeSingleOccurrenceNoSummary(t *testing.T) {
	e, buf, clock := newTestEpisodes()
	e.quiet = 10 * time.Second
	e.Printf("k", "once")
	ep := e.open["k"]
	ep.timer.Stop()
	clock.add(11 * time.Second)
	e.tick(ep)
	if l := lines(buf); len(l) != 1 {
		t.Fatalf("want just the first line, got:\n%s", buf)
	}
}

func TestEpisodeSummaryEveryMinute(t *testing.T) {
	e, buf, clock := newTestEpisodes()
	e.quiet = 10 * time.Second
	e.Printf("k", "first")
	ep := e.open["k"]
	ep.timer.Stop()
	// Ten minutes of one occurrence a second: a summary a minute.
	for s := 0; s < 600; s++ {
		clock.add(time.Second)
		e.Printf("k", "more")
		if s%10 == 9 {
			e.tick(ep)
			ep.timer.Stop()
		}
	}
	n := len(lines(buf))
	if n < 9 || n > 12 {
		t.Fatalf("10 minutes of an episode wrote %d lines, want about one a minute:\n%s", n, buf)
	}
	for _, l := range lines(buf)[1:] {
		if !strings.Contains(l, "still going") {
			t.Fatalf("summary line %q", l)
		}
	}
}

func TestEpisodeKeysBounded(t *testing.T) {
	e, buf, _ := newTestEpisodes()
	for i := 0; i < 3*MaxEpisodes; i++ {
		e.Printf(strings.Repeat("k", i%50)+string(rune('a'+i%26))+string(rune(i)), "line %d", i)
	}
	if e.Open() > MaxEpisodes+1 {
		t.Fatalf("%d episodes open, want at most %d", e.Open(), MaxEpisodes+1)
	}
	if n := len(lines(buf)); n > MaxEpisodes+1 {
		t.Fatalf("%d lines for %d keys, want at most %d", n, 3*MaxEpisodes, MaxEpisodes+1)
	}
	for _, ep := range e.open {
		ep.timer.Stop()
	}
}

// The real timer ends an episode by itself.
func TestEpisodeEndsByItself(t *testing.T) {
	var buf syncBuf
	e := NewEpisodes(logging.NewWriter(&buf, logging.LevelLow))
	e.quiet = 20 * time.Millisecond
	for i := 0; i < 100; i++ {
		e.Printf("k", "first")
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.Open() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the episode did not end")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := buf.String(); strings.Count(s, "\n") != 2 || !strings.Contains(s, "99 more") {
		t.Fatalf("want the first line and a summary of 99 more, got:\n%s", s)
	}
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

func TestRates(t *testing.T) {
	if r, b := Rate(nil, 1); r != DefaultRate || b != DefaultBurst {
		t.Errorf("Rate(nil, 1) = %g, %d", r, b)
	}
	set := func() (float64, int) { return 20, 30 }
	if r, b := Rate(set, LinkFactor); r != 200 || b != 300 {
		t.Errorf("Rate(20/30, 10) = %g, %d", r, b)
	}
	if r, b := LinkRate(nil); r != DefaultRate*LinkFactor || b != DefaultBurst*LinkFactor {
		t.Errorf("LinkRate(nil) = %g, %d", r, b)
	}
	if r, b := LinkRate(set); r != 20 || b != 30 {
		t.Errorf("LinkRate(20/30) = %g, %d: a link's setting is not scaled again", r, b)
	}
}

// A Pace starts full at its setting's rate and takes a new setting about a
// second after it changed, for the streams already open.
func TestPaceFollowsTheSetting(t *testing.T) {
	var mu sync.Mutex
	rate, burst := 10.0, 2
	p := NewPace(func() (float64, int) { mu.Lock(); defer mu.Unlock(); return rate, burst })
	for i := 0; i < 2; i++ {
		if w, r, b := p.Take(); w != 0 || r != 10 || b != 2 {
			t.Fatalf("stanza %d of the burst: wait %v at %g/%d", i, w, r, b)
		}
	}
	if w, _, _ := p.Take(); w <= 0 {
		t.Fatal("over the burst without a wait")
	}
	mu.Lock()
	rate, burst = 1000, 1000
	mu.Unlock()
	time.Sleep(1100 * time.Millisecond)
	if w, r, b := p.Take(); w != 0 || r != 1000 || b != 1000 {
		t.Fatalf("after the change: wait %v at %g/%d, want none at 1000/1000", w, r, b)
	}
}
