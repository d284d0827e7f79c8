package server

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// Federation benchmarks: two engines in this process (a.lan and b.lan),
// resolving each other through the test's DNS server, over loopback TCP
// and TLS with dialback, as in s2s_test.go. Both engines, the DNS server
// and both test clients share the process, so process CPU time counts all
// of them.
//
//   - FederationMessage: alice@a.lan sends chat messages to bob@b.lan/r
//     over one established link; bob's socket receives them. A pipelined
//     sender keeps at most fedWindow messages in flight, so the link stays
//     busy without overrunning the bounded queues.
//   - FederationLinkSetup: the time from the first message to b.lan until
//     bob's socket has it, on a cold link: DNS SRV and A, TCP, STARTTLS,
//     dialback with the connect-back verification (b.lan resolves a.lan,
//     connects, STARTTLS, db:verify), then the message. Every link is
//     closed on both sides between iterations (untimed); there is no DNS
//     cache and no TLS session resumption, so each iteration pays all of it.
//   - FederationIdleLinkMemory: heap and goroutine stacks per idle,
//     authenticated link (the outgoing side on one engine plus the
//     incoming side on the other).

// fedUsers logs alice in at a.lan and bob at b.lan (STARTTLS, available),
// with each one's own presence echo read.
func fedUsers(fp *fedPair) (alice, bob *client) {
	alice = fp.a.userAt("a.lan", "alice")
	bob = fp.b.userAt("b.lan", "bob")
	isPresence := func(el *xml.Element) bool { return el.Name.Local == "presence" }
	alice.expect("alice's presence", isPresence)
	bob.expect("bob's presence", isPresence)
	return alice, bob
}

// fedWindow is how many messages the sender keeps in flight: far more
// than the pipeline holds at full speed, far less than the 4 MiB queues.
const fedWindow = 512

func BenchmarkFederationMessage(b *testing.B) {
	fp := federate(b, nil)
	fp.unlimited()
	alice, bob := fedUsers(fp)
	// Set the link up (untimed) and check it is the one being measured.
	alice.send(`<message to='bob@b.lan/r' type='chat' id='warm'><body>warm-up</body></message>`)
	bob.expect("the warm-up message", isMessageFrom("alice@a.lan/r", "warm-up"))
	if out := fp.a.links("out"); len(out) != 1 || out[0].Auth != "dialback" || !out[0].TLS || out[0].State != "up" {
		b.Fatalf("a.lan's outgoing links: %+v", out)
	}
	alice.conn.SetDeadline(time.Time{})
	bob.conn.SetDeadline(time.Time{})

	// Fixed-size messages, pre-built, so the sender costs almost nothing.
	msg0 := benchMessage("bob@b.lan/r", 0)
	size := len(msg0)
	var in bytes.Buffer
	in.Grow(size * b.N)
	for i := 0; i < b.N; i++ {
		in.WriteString(benchMessage("bob@b.lan/r", i))
	}
	if in.Len() != size*b.N {
		b.Fatal("messages are not all the same size")
	}
	data := in.Bytes()

	var got atomic.Int64
	progress := make(chan struct{}, 1)
	received := make(chan error, 1)
	go func() {
		received <- countMessagesProgress(bob.conn, b.N, &got, progress)
	}()
	sent := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)

	cpu0 := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	t0 := time.Now()
	go func() {
		const chunk = 8 // messages per write, ~1.3 KB, like a client's TLS records
		for i := 0; i < b.N; {
			n := min(chunk, b.N-i)
			for int64(i+n)-got.Load() > fedWindow {
				select {
				case <-progress:
				case <-stop:
					sent <- nil
					return
				}
			}
			if _, err := alice.conn.Write(data[i*size : (i+n)*size]); err != nil {
				sent <- err
				return
			}
			i += n
		}
		sent <- nil
	}()
	select {
	case err := <-received:
		if err != nil {
			b.Fatal(err)
		}
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d messages arrived", got.Load(), b.N)
	}
	elapsed := time.Since(t0)
	b.StopTimer()
	if err := <-sent; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/msg")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}

// countMessagesProgress reads until n messages arrived, publishing the
// count in got and signalling progress after every read.
func countMessagesProgress(c net.Conn, n int, got *atomic.Int64, progress chan<- struct{}) error {
	end := []byte("</message>")
	buf := make([]byte, 64<<10)
	var carry []byte
	seen := 0
	for seen < n {
		k, err := c.Read(buf)
		if k > 0 {
			chunk := append(carry, buf[:k]...)
			seen += bytes.Count(chunk, end)
			tail := min(len(end)-1, len(chunk))
			carry = append(carry[:0], chunk[len(chunk)-tail:]...)
			got.Store(int64(seen))
			select {
			case progress <- struct{}{}:
			default:
			}
		}
		if err != nil {
			return fmt.Errorf("after %d of %d messages: %w", seen, n, err)
		}
	}
	return nil
}

func BenchmarkFederationLinkSetup(b *testing.B) {
	fp := federate(b, nil)
	fp.unlimited()
	alice, bob := fedUsers(fp)
	noLinks := func() bool { return len(fp.a.links("")) == 0 && len(fp.b.links("")) == 0 }
	var lat []time.Duration
	var cpu int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		// Close every link on both sides and wait until both engines
		// list none, so the next message starts from nothing.
		for _, f := range []*fixture{fp.a, fp.b} {
			f.eng.s2s.Close()
			f.eng.s2s.Open()
		}
		waitFor(b, "every link to close", noLinks)
		body := fmt.Sprint("setup ", i)
		msg := `<message to='bob@b.lan/r' type='chat'><body>` + body + `</body></message>`
		alice.conn.SetDeadline(time.Now().Add(30 * time.Second))
		bob.conn.SetDeadline(time.Now().Add(30 * time.Second))
		c0 := cpuTime()
		b.StartTimer()
		t0 := time.Now()
		alice.send(msg)
		bob.expect("the message over a new link", isMessageFrom("alice@a.lan/r", body))
		lat = append(lat, time.Since(t0))
		b.StopTimer()
		cpu += cpuTime() - c0
		if out := fp.a.links("out"); len(out) != 1 || out[0].Auth != "dialback" || !out[0].TLS {
			b.Fatalf("a.lan's outgoing links: %+v", out)
		}
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(cpu)/float64(b.N)/1e6, "cpu-ms/link")
}

// BenchmarkFederationIdleLinkMemory sets up fedLinks links from as many
// extra domains hosted on a.lan's engine (d0.lan, d1.lan, …) to b.lan,
// each with one stanza (an IQ result, which b.lan drops), and measures heap
// plus goroutine stacks after two GCs once every link is up and idle,
// before minus after, divided by the links. Each link is an outgoing
// stream on one engine and an incoming stream on the other, both in this
// process, so the figure is what one federation link costs the two ends
// together.
func BenchmarkFederationIdleLinkMemory(b *testing.B) {
	const fedLinks = 100
	for i := 0; i < b.N; i++ {
		fp := federate(b, nil)
		fp.unlimited()
		recs := append(srvRecords("a.lan", fp.a.s2sPort), srvRecords("b.lan", fp.b.s2sPort)...)
		var domains []string
		for d := 0; d < fedLinks; d++ {
			name := fmt.Sprintf("d%d.lan", d)
			domains = append(domains, name)
			selfSigned(b, fp.a.files, name)
			if _, err := fp.a.st.ProposeSettled(context.Background(), store.DomainPut{Domain: store.Domain{Name: name, Key: name + ".key", Cert: name + ".crt"}}); err != nil {
				b.Fatal(err)
			}
			recs = append(recs, srvRecords(name, fp.a.s2sPort)...)
		}
		if err := fp.dns.Set(recs...); err != nil {
			b.Fatal(err)
		}
		up := func(f *fixture, dir status.Direction) int {
			n := 0
			for _, l := range f.links(dir) {
				if l.State == "up" && l.Auth != "" {
					n++
				}
			}
			return n
		}
		goroutines0 := runtime.NumGoroutine()
		before := memInUse()
		for _, d := range domains {
			fp.a.eng.s2s.Route(xml.New(stream.NSClient, "iq", "type", "result", "id", "idle", "from", d, "to", "b.lan"))
		}
		waitFor(b, "every link to be up", func() bool {
			return up(fp.a, "out") == fedLinks && up(fp.b, "in") == fedLinks && len(fp.a.links("in")) == 0
		})
		// The dialback verification connections (b.lan back to a.lan) end
		// just after the links are up; let them finish.
		time.Sleep(200 * time.Millisecond)
		after := memInUse()
		goroutines := runtime.NumGoroutine() - goroutines0
		b.ReportMetric(float64(after-before)/fedLinks, "bytes/link")
		b.ReportMetric(float64(goroutines)/fedLinks, "goroutines/link")
		if f := fp.a.links("out"); len(f) != fedLinks {
			b.Fatalf("%d outgoing links, want %d", len(f), fedLinks)
		}
	}
}
