package server

import (
	"bytes"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/cluster"
	"github.com/parley-xmpp/parley/server/cluster/clustertest"
	"github.com/parley-xmpp/parley/server/logging"
)

// BenchmarkRouteMessageRealMesh: BenchmarkRouteMessageCluster over the
// cluster's real mesh (two raft nodes on 127.0.0.1, mutual TLS, the
// cluster listener's framing) instead of the in-memory one: alice on
// engine 1, bob on engine 2 ("nodes"), both over net.Pipe, against both
// on engine 1 ("node", with the same two-node set-up running). cpu-ns/msg
// is the process's CPU, so both engines', the mesh's TLS both ways and
// raft's idle heartbeats. The engines share one store as in twoNodes;
// each raft node has its own (consensus is never on the path of a routed
// message). The sender keeps at most routeWindow messages in flight: the
// mesh queues at most cluster.QueueLength messages for a node, and a
// message that finds the queue full is not forwarded (the sending node
// applies the delivery rule alone), so runRoute's unbounded burst would
// never all arrive.
func BenchmarkRouteMessageRealMesh(b *testing.B) {
	for _, bc := range []struct{ where, to string }{{"node", "full"}, {"nodes", "full"}, {"node", "bare"}, {"nodes", "bare"}} {
		b.Run(bc.where+"/"+bc.to, func(b *testing.B) {
			to := bc.to
			c1, c2 := meshPair(b)
			f1 := start(b)
			e2 := New(Config{Store: f1.st, Files: f1.files, Version: "test", Log: logging.Discard()})
			e2.Start()
			b.Cleanup(e2.Stop)
			f2 := &fixture{t: b, st: f1.st, eng: e2, files: f1.files}
			f1.eng.JoinMesh(c1.Mesh())
			e2.JoinMesh(c2.Mesh())
			f1.eng.c2s.StanzaRate = func() (float64, int) { return 1e12, 1 << 30 }
			recvNode := f2
			if bc.where == "node" {
				recvNode = f1
			}
			receiver := recvNode.pipeLogin(b, "bob", "bob-password", "desk")
			sender := f1.pipeLogin(b, "alice", "alice-password", "bench")
			for deadline := time.Now().Add(5 * time.Second); bc.where == "nodes"; time.Sleep(5 * time.Millisecond) {
				if n, ok := f1.eng.Routes().Resource("bob@example.lan", "desk"); ok && n == c2.ID() {
					break
				}
				if time.Now().After(deadline) {
					b.Fatal("node 1 does not see bob/desk on node 2")
				}
			}
			target := "bob@example.lan/desk"
			if to == "bare" {
				target = "bob@example.lan"
			}
			runRouteWindow(b, sender, receiver, target)
		})
	}
}

const routeWindow = 1024

// runRouteWindow is runRoute with at most routeWindow messages in flight.
func runRouteWindow(b *testing.B, sender, receiver net.Conn, target string) {
	var received atomic.Int64
	done := make(chan error, 1)
	go func() {
		end := []byte("</message>")
		buf := make([]byte, 64<<10)
		var carry []byte
		for received.Load() < int64(b.N) {
			k, err := receiver.Read(buf)
			if k > 0 {
				chunk := append(carry, buf[:k]...)
				received.Add(int64(bytes.Count(chunk, end)))
				tail := min(len(end)-1, len(chunk))
				carry = append(carry[:0], chunk[len(chunk)-tail:]...)
			}
			if err != nil {
				done <- fmt.Errorf("after %d of %d messages: %w", received.Load(), b.N, err)
				return
			}
		}
		done <- nil
	}()
	msgs := make([][]byte, b.N)
	for i := range msgs {
		msgs[i] = []byte(benchMessage(target, i))
	}
	cpu0 := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		var batch []byte
		for i := 0; i < b.N; {
			for int64(i)-received.Load() >= routeWindow {
				time.Sleep(20 * time.Microsecond)
			}
			batch = batch[:0]
			for j := 0; j < 16 && i < b.N; j, i = j+1, i+1 {
				batch = append(batch, msgs[i]...)
			}
			if _, err := sender.Write(batch); err != nil {
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			b.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		b.Fatalf("only %d of %d messages arrived within 2 minutes", received.Load(), b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/msg")
}

// meshPair makes a two-node raft cluster on 127.0.0.1 (one self-signed
// certificate trusted by both) and waits until each reaches the other.
func meshPair(b *testing.B) (*cluster.Cluster, *cluster.Cluster) {
	b.Helper()
	p := clustertest.NewPKI(b)
	node := func() (*cluster.Cluster, string) {
		c, _, addr := clustertest.Node(b, p)
		return c, addr
	}
	c1, addr1 := node()
	c2, _ := node()
	if err := c1.Initialize(); err != nil {
		b.Fatal(err)
	}
	if _, err := c2.Join(addr1); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(c1.Mesh().Members()) != 2 || len(c2.Mesh().Members()) != 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("the two nodes do not reach each other")
		}
	}
	return c1, c2
}
