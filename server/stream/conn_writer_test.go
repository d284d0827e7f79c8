package stream

import (
	"bufio"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// writerRunning reports whether c has a writer goroutine.
func writerRunning(c *Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running
}

// An idle connection has no writer goroutine: one starts with something
// to write and ends WriterLinger after the queue ran empty; the next
// stanza starts another, and everything arrives in order.
func TestWriterOnlyWhileBusy(t *testing.T) {
	old := WriterLinger
	WriterLinger = 20 * time.Millisecond
	defer func() { WriterLinger = old }()
	srv, cli := net.Pipe()
	defer cli.Close()
	got := make(chan string, 100)
	go func() {
		r := bufio.NewReader(cli)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				close(got)
				return
			}
			got <- strings.TrimSpace(line)
		}
	}()
	before := runtime.NumGoroutine()
	c := NewConn(srv, NSClient)
	if writerRunning(c) || runtime.NumGoroutine() != before {
		t.Fatal("a new connection started a writer before it had anything to write")
	}
	for round := 0; round < 3; round++ {
		for i := 0; i < 5; i++ {
			if !c.SendRaw([]byte(strings.Repeat("x", round) + "\n")) {
				t.Fatal("send refused")
			}
		}
		for i := 0; i < 5; i++ {
			select {
			case line := <-got:
				if line != strings.Repeat("x", round) {
					t.Fatalf("round %d: got %q", round, line)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("round %d: stanza %d not written", round, i)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for writerRunning(c) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the writer is still running long after the queue ran empty", round)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Closing an idle connection starts a writer for the end of the stream.
	c.CloseWith([]byte("end\n"))
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("CloseWith on an idle connection did not finish")
	}
	if line := <-got; line != "end" {
		t.Fatalf("final bytes %q", line)
	}
}
