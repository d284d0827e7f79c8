package stream

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/metrics/metricstest"
)

// TestConnOverflowCounted: a queue that overflows counts once, under its
// stream's kind, however many sends it then refuses.
func TestConnOverflowCounted(t *testing.T) {
	for _, tc := range []struct{ ns, label string }{{NSClient, "c2s"}, {NSServer, "s2s"}, {NSAccept, "component"}} {
		before := metricstest.Value(t, "parley_queue_overflows_total", "stream", tc.label)
		srv, cli := net.Pipe() // unbuffered: nothing is written until read
		c := NewConn(srv, tc.ns)
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for i := 0; c.SendRaw(chunk); i++ {
			if i > 2*MaxQueueBytes/len(chunk) {
				t.Fatal("the queue never overflowed")
			}
		}
		c.SendRaw(chunk) // refused: counted no more
		cli.Close()      // the write in progress fails at once
		select {
		case <-c.Done():
		case <-time.After(OverflowGrace + 5*time.Second):
			t.Fatal("overflowed connection not closed")
		}
		if got := metricstest.Value(t, "parley_queue_overflows_total", "stream", tc.label) - before; got != 1 {
			t.Errorf("%s: parley_queue_overflows_total{stream=%q} moved by %v, want 1", tc.ns, tc.label, got)
		}
	}
}
