package cluster

import (
	"fmt"
	"sort"
	"testing"
	"time"
)

// BenchmarkFailover measures, on three loopback nodes, the time from the
// leader's end (its raft and its listener closed at once, without handing
// over leadership: what its peers see of a kill -9) until a write made
// through a surviving node is committed again, and until a surviving node
// reports itself leader. Each iteration forms a new cluster (untimed).
// Reported: the median and the worst over b.N iterations (run it with
// -benchtime 10x for the "median and worst of 10").
func BenchmarkFailover(b *testing.B) {
	var writes, elected []time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		nodes := cluster3(b)
		if err := addBridge(nodes[1].st, "before"); err != nil {
			b.Fatal(err)
		}
		old := leaderOf(nodes)
		if old == nil {
			b.Fatal("no leader")
		}
		var rest []*testNode
		for _, n := range nodes {
			if n != old {
				rest = append(rest, n)
			}
		}
		b.StartTimer()
		killed := time.Now()
		old.c.Close()
		// Elected: polled from another goroutine while the write waits.
		got := make(chan time.Duration, 1)
		go func() {
			for time.Since(killed) < 10*time.Second {
				if leaderOf(rest) != nil {
					got <- time.Since(killed)
					return
				}
				time.Sleep(time.Millisecond)
			}
			got <- -1
		}()
		var err error
		for attempt := 0; time.Since(killed) < 10*time.Second; attempt++ {
			// Alternate the writer: one survivor will be the leader, the
			// other forwards.
			if err = addBridge(rest[attempt%2].st, fmt.Sprintf("after%d", attempt)); err == nil {
				break
			}
		}
		w := time.Since(killed)
		b.StopTimer()
		if err != nil {
			b.Fatalf("no write committed within 10 s of the leader's end: %v", err)
		}
		e := <-got
		if e < 0 {
			b.Fatal("no new leader within 10 s")
		}
		writes, elected = append(writes, w), append(elected, e)
		for _, n := range rest {
			n.c.Close()
		}
	}
	report := func(d []time.Duration, unit string) {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		b.ReportMetric(float64(d[len(d)/2])/float64(time.Millisecond), unit+"-median-ms")
		b.ReportMetric(float64(d[len(d)-1])/float64(time.Millisecond), unit+"-worst-ms")
	}
	report(writes, "write")
	report(elected, "leader")
	b.Logf("n=%d write resumed after %v; leader seen after %v", len(writes), writes, elected)
}
