package server

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkIdleSessionMemory measures what one idle, authenticated client
// session over STARTTLS costs the process: heap plus goroutine stacks,
// measured after 200 sessions are bound and available, divided by 200.
// (The clients run in the same process; their side is included, so the
// figure is an upper bound for the server's share.)
func BenchmarkIdleSessionMemory(b *testing.B) {
	const n = 200
	for i := 0; i < b.N; i++ {
		f := start(b)
		for u := 0; u < 4; u++ {
			f.addAccount(fmt.Sprintf("u%d@example.lan", u), "user-password")
		}
		before := memInUse()
		var clients []*client
		for s := 0; s < n; s++ {
			c := f.dial()
			c.login(fmt.Sprintf("u%d", s%4), "user-password", fmt.Sprint("r", s))
			c.conn.SetDeadline(time.Time{})
			clients = append(clients, c)
		}
		after := memInUse()
		b.ReportMetric(float64(after-before)/n, "bytes/session")
		for _, c := range clients {
			c.conn.Close()
		}
	}
}

func memInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}
