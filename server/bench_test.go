package server

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/c2s"
	"github.com/parley-xmpp/parley/server/xml"
)

// The hot path: one client sends a small chat message, the engine reads and
// parses it, stamps from, routes it, serializes it into the recipient's
// outbound queue, and the recipient's writer writes it out; the other
// client reads it. Sender and receiver run concurrently (pipelined), as on
// a busy server, so ns/op is the time per routed message at full
// throughput on this machine, and cpu-ns/msg is the process CPU time (user
// and system, every goroutine) per routed message.
//
//   - pipe: both clients on net.Pipe, without TLS (c2s.Serve is started as
//     for direct TLS, so negotiation skips STARTTLS). The engine's work
//     only, plus a negligible client (pre-built bytes out, a byte count in).
//   - tls: both clients over loopback TCP through the engine's listener,
//     after STARTTLS. cpu-ns/msg includes the clients' TLS too (one
//     encryption and one decryption per message, the same amount of work
//     as the server's), so the server's share is below the figure.
//
// "full" messages are addressed to the recipient's full JID; "bare" to its
// bare JID (the account lookup and RFC 6121 §8.5 resource selection).

const benchBody = "Hello Bob, are we still on for lunch at noon? — A."

func benchMessage(to string, i int) string {
	return fmt.Sprintf(`<message to='%s' type='chat' id='m%08d'><body>%s</body></message>`, to, i, benchBody)
}

func BenchmarkRouteMessage(b *testing.B) {
	for _, transport := range []string{"pipe", "tls"} {
		for _, to := range []string{"full", "bare"} {
			b.Run(transport+"/"+to, func(b *testing.B) {
				f := start(b)
				// A rate no benchmark reaches: the bucket is on the
				// path, and measured, but never waits.
				f.eng.c2s.StanzaRate = func() (float64, int) { return 1e12, 1 << 30 }
				var sender, receiver net.Conn
				if transport == "pipe" {
					sender = f.pipeLogin(b, "alice", "alice-password", "bench")
					receiver = f.pipeLogin(b, "bob", "bob-password", "desk")
				} else {
					a := f.dial()
					a.login("alice", "alice-password", "bench")
					r := f.dial()
					r.login("bob", "bob-password", "desk")
					r.send(`<presence/>`)
					r.expect("own presence", func(el *xml.Element) bool { return el.Name.Local == "presence" })
					a.conn.SetDeadline(time.Time{})
					r.conn.SetDeadline(time.Time{})
					sender, receiver = a.conn, r.conn
				}
				target := "bob@example.lan/desk"
				if to == "bare" {
					target = "bob@example.lan"
				}
				runRoute(b, sender, receiver, target)
			})
		}
	}
}

func runRoute(b *testing.B, sender, receiver net.Conn, target string) {
	// Pre-build the input so the sender costs almost nothing.
	var in bytes.Buffer
	for i := 0; i < b.N; i++ {
		in.WriteString(benchMessage(target, i))
	}
	received := make(chan error, 1)
	go func() {
		received <- countMessages(receiver, b.N)
	}()
	cpu0 := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		// Write in pieces of a few messages, as a client's TLS records or
		// TCP segments would bring them.
		data := in.Bytes()
		for len(data) > 0 {
			n := min(len(data), 2048)
			if _, err := sender.Write(data[:n]); err != nil {
				return
			}
			data = data[n:]
		}
	}()
	select {
	case err := <-received:
		if err != nil {
			b.Fatal(err)
		}
	case <-time.After(5 * time.Minute):
		b.Fatal("messages did not arrive")
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/msg")
}

// countMessages reads until n messages (n "</message>") arrived.
func countMessages(c net.Conn, n int) error {
	end := []byte("</message>")
	buf := make([]byte, 64<<10)
	var carry []byte
	seen := 0
	for seen < n {
		k, err := c.Read(buf)
		if k > 0 {
			chunk := append(carry, buf[:k]...)
			seen += bytes.Count(chunk, end)
			// Keep a tail that could hold the start of a split marker.
			tail := len(end) - 1
			if len(chunk) < tail {
				tail = len(chunk)
			}
			carry = append(carry[:0], chunk[len(chunk)-tail:]...)
		}
		if err != nil {
			return fmt.Errorf("after %d of %d messages: %w", seen, n, err)
		}
	}
	return nil
}

func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// pipeLogin connects a client over net.Pipe, authenticates with PLAIN,
// binds resource and sends available presence; it returns the client's
// end with everything up to the presence echo read.
func (f *fixture) pipeLogin(tb testing.TB, user, password, resource string) net.Conn {
	tb.Helper()
	c := f.pipeClient(tb, user, password, resource)
	go io.WriteString(c.conn, `<presence/>`)
	c.expect("own presence", func(el *xml.Element) bool { return el.Name.Local == "presence" })
	c.conn.SetDeadline(time.Time{})
	return c.conn
}

// pipeClient connects a client over net.Pipe, authenticates with PLAIN
// and binds resource.
func (f *fixture) pipeClient(tb testing.TB, user, password, resource string) *client {
	tb.Helper()
	c := f.pipeAuth(tb, user, password)
	go io.WriteString(c.conn, `<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>`+resource+`</resource></bind></iq>`)
	c.reply("b")
	return c
}

// pipeAuth connects a client over net.Pipe and authenticates with PLAIN,
// up to the features of the restarted stream.
func (f *fixture) pipeAuth(tb testing.TB, user, password string) *client {
	tb.Helper()
	srv, cli := net.Pipe()
	tb.Cleanup(func() { cli.Close(); srv.Close() })
	go func() {
		rd := xml.NewReader(srv, f.eng.cfg.Limits)
		h, err := rd.Header()
		if err != nil {
			srv.Close()
			return
		}
		c2s.Serve(f.eng.c2s, srv, rd, h, true, nil, nil)
	}()
	c := &client{t: tb, conn: cli}
	cli.SetDeadline(time.Now().Add(20 * time.Second))
	// net.Pipe is synchronous: write from a goroutine while reading.
	send := func(s string) {
		go io.WriteString(cli, s)
	}
	restart := func() {
		send(header("example.lan"))
		c.rd = xml.NewReader(cli, xml.DefaultLimits)
		if _, err := c.rd.Header(); err != nil {
			tb.Fatal(err)
		}
		c.next() // features
	}
	restart()
	send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+password)) + `</auth>`)
	if el := c.next(); el.Name.Local != "success" {
		tb.Fatalf("auth: %s", el)
	}
	restart()
	return c
}
