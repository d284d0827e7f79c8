package resolve

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingSilentServer reads queries, counts them and never answers.
func countingSilentServer(t *testing.T) (string, *atomic.Int32) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var n atomic.Int32
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			n.Add(1)
		}
	}()
	return pc.LocalAddr().String(), &n
}

// At most MaxInFlight queries are out at once; the others wait their turn
// within their context, and beyond MaxWaiting waiting a lookup fails at
// once with Kind Busy.
func TestLookupsInFlightBounded(t *testing.T) {
	addr, got := countingSilentServer(t)
	r := &Resolver{Servers: func() []string { return []string{addr} }, Timeout: 3 * time.Second, MaxInFlight: 2}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, MaxWaiting+10)
	for i := 0; i < 2+MaxWaiting; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.LookupHost(ctx, "a.lan")
			errs <- err
		}()
	}
	// Wait until every one of them is out or waiting.
	deadline := time.Now().Add(10 * time.Second)
	for r.waiting.Load() < MaxWaiting-2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d lookups waiting", r.waiting.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	_, err := r.LookupHost(context.Background(), "b.lan")
	var le *LookupError
	if !errors.As(err, &le) || le.Kind != Busy || time.Since(start) > time.Second {
		t.Fatalf("one lookup too many: %v (after %v), want Kind Busy at once", err, time.Since(start))
	}
	// LookupHost asks A and AAAA at once: 2 queries in flight, no more.
	time.Sleep(100 * time.Millisecond)
	if n := got.Load(); n > 2 {
		t.Fatalf("%d queries reached the server, want at most MaxInFlight (2)", n)
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil {
			t.Fatal("a lookup succeeded against a server that never answers")
		}
	}
}
