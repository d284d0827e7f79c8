package e2e

// Issue 9, item 4: memory a logged-in user can grow, and the rate of what
// a client sends. A raw Go client (STARTTLS + PLAIN, as the load generator
// logs in: slixmpp is too slow to flood) floods the built appliance with
// directed presence to unique addresses, messages to unknown remote
// domains, and presence changes; the appliance's memory (VmRSS of its
// process), its log (stderr) and what reaches a watcher stay bounded, and
// the offender is told.

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/resolve/dnstest"
)

// rssKiB is the resident memory of the appliance's process.
func (a *appliance) rssKiB(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.proc.Process.Pid))
	if err != nil {
		t.Fatalf("reading the appliance's memory: %v", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("VmRSS line %q", l)
			}
			return n
		}
	}
	t.Fatal("no VmRSS in /proc/PID/status")
	return 0
}

// rssPeak samples the appliance's memory every 100 ms until stop is
// closed, and returns the highest seen.
func (a *appliance) rssPeak(t *testing.T, stop <-chan struct{}) <-chan int {
	out := make(chan int, 1)
	pid := a.proc.Process.Pid
	go func() {
		peak := 0
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				for _, l := range strings.Split(string(data), "\n") {
					if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
						if n, _ := strconv.Atoi(f[1]); n > peak {
							peak = n
						}
					}
				}
			}
			select {
			case <-stop:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// counter reads a stream to its end and counts the occurrences of some
// strings in it (across reads).
type counter struct {
	mu     sync.Mutex
	counts map[string]int
	sample map[string]string // some text around the first occurrence
	done   chan struct{}
}

func countIn(c net.Conn, subs ...string) *counter {
	k := &counter{counts: map[string]int{}, sample: map[string]string{}, done: make(chan struct{})}
	go func() {
		defer close(k.done)
		buf := make([]byte, 64<<10)
		var carry []byte
		keep := 0
		for _, s := range subs {
			keep = max(keep, len(s)-1)
		}
		for {
			c.SetReadDeadline(time.Now().Add(90 * time.Second))
			n, err := c.Read(buf)
			if n > 0 {
				chunk := append(carry, buf[:n]...)
				k.mu.Lock()
				for _, s := range subs {
					// Occurrences that end in the new bytes only.
					from := 0
					for {
						i := bytes.Index(chunk[from:], []byte(s))
						if i < 0 {
							break
						}
						at := from + i
						if at+len(s) > len(carry) {
							k.counts[s]++
							if _, ok := k.sample[s]; !ok {
								k.sample[s] = string(chunk[max(0, at-300):min(len(chunk), at+300)])
							}
						}
						from = at + 1
					}
				}
				k.mu.Unlock()
				t := min(keep, len(chunk))
				carry = append([]byte(nil), chunk[len(chunk)-t:]...)
			}
			if err != nil {
				return
			}
		}
	}()
	return k
}

func (k *counter) count(s string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.counts[s]
}

func (k *counter) around(s string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.sample[s]
}

// writeFor writes what next returns (nil: the end) to c until then, or until
// d has passed, and reports how many pieces it wrote. A write blocked by a
// server that does not read is cut at the end of d.
func writeFor(c net.Conn, d time.Duration, next func(i int) []byte) int {
	end := time.Now().Add(d)
	c.SetWriteDeadline(end)
	defer c.SetWriteDeadline(time.Time{})
	n := 0
	for time.Now().Before(end) {
		b := next(n)
		if b == nil {
			break
		}
		if _, err := c.Write(b); err != nil {
			break
		}
		n++
	}
	return n
}

// logLines counts the lines of the appliance's log (stderr) so far.
func (a *appliance) logLines() int { return strings.Count(a.stderr.String(), "\n") }

// Directed presence to a million unique addresses (as fast as the client
// can write for 10 s): the appliance's memory stays bounded, the client
// gets policy-violation errors once its directed-presence set is full, and
// the log says so in a line or two. Before the caps, the set grew by about
// 120 bytes an address (a million: over 100 MB) and nothing was refused.
func TestXMPPDirectedPresenceFloodBounded(t *testing.T) {
	t.Parallel()
	x := startXMPP(t, "caps.lan", "mallory@caps.lan", "pw-mallory")
	r := x.rawDial(t, "caps.lan")
	r.login("mallory", "pw-mallory", "flood")
	base := x.rssKiB(t)
	lines0 := x.logLines()
	errs := countIn(r.c, "<policy-violation", "<resource-constraint")
	stop := make(chan struct{})
	peak := x.rssPeak(t, stop)
	const total, batch = 1000000, 1000
	var buf bytes.Buffer
	sent := writeFor(r.c, 10*time.Second, func(i int) []byte {
		if i*batch >= total {
			return nil
		}
		buf.Reset()
		for j := i * batch; j < (i+1)*batch; j++ {
			fmt.Fprintf(&buf, "<presence to='u%d@far%d.caps.lan'/>", j, j%7)
		}
		return buf.Bytes()
	}) * batch
	// Whatever the server still reads, for a moment.
	deadline := time.Now().Add(10 * time.Second)
	for errs.count("<policy-violation") == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	grew := (<-peak - base) / 1024
	t.Logf("wrote about %d directed presences; server RSS %d MiB at the start, grew %d MiB; %d policy-violation errors",
		sent, base/1024, grew, errs.count("<policy-violation"))
	if errs.count("<policy-violation") == 0 {
		t.Errorf("the client got no policy-violation error for directed presence beyond the cap")
	} else if s := errs.around("<policy-violation"); !strings.Contains(s, "directed presence") {
		t.Errorf("the policy-violation error does not say why:\n%s", s)
	}
	if grew > 40 {
		t.Errorf("the appliance grew by %d MiB during the flood, want under 40", grew)
	}
	if n := x.logLines() - lines0; n > 10 {
		t.Errorf("the flood wrote %d log lines, want a few:\n%s", n, tail(x.stderr.String(), 30))
	}
}

// Messages to 5,000 domains that do not exist (the test's DNS server
// answers NXDOMAIN at once): the sender gets each back with an error
// (remote-server-not-found, or resource-constraint when too many links are
// being set up), the appliance's memory stays bounded, and its log has a
// few lines, not one per domain.
func TestXMPPRemoteDomainFloodBounded(t *testing.T) {
	t.Parallel()
	x := startXMPP(t, "caps.lan", "mallory@caps.lan", "pw-mallory")
	dns, err := dnstest.Start(net.JoinHostPort(x.host, "0"), "caps.lan. 60 IN A "+x.host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	mustOK(t, x.ssh(x.asAdmin(), "dns resolver add "+dns.Addr()+"\nxmpp federation enable\n", ""), "federation set-up")
	r := x.rawDial(t, "caps.lan")
	r.login("mallory", "pw-mallory", "flood")
	base := x.rssKiB(t)
	lines0 := x.logLines()
	conds := []string{"<remote-server-not-found", "<remote-server-timeout", "<resource-constraint"}
	errs := countIn(r.c, append(conds, "</message>")...)
	stop := make(chan struct{})
	peak := x.rssPeak(t, stop)
	const domains = 5000
	sent := writeFor(r.c, 20*time.Second, func(i int) []byte {
		if i >= domains {
			return nil
		}
		return fmt.Appendf(nil, "<message to='bob@nx%d.invalid.lan' type='chat' id='m%d'><body>hello %d</body></message>", i, i, i)
	})
	// The bounces of what the server read come within seconds.
	bounced := func() int {
		n := 0
		for _, c := range conds {
			n += errs.count(c)
		}
		return n
	}
	// The server goes on reading at the client's stanza rate: watch for
	// a while.
	time.Sleep(8 * time.Second)
	close(stop)
	grew := (<-peak - base) / 1024
	lines := x.logLines() - lines0
	t.Logf("wrote %d messages to unknown domains; %d bounced (%d remote-server-not-found, %d remote-server-timeout, %d resource-constraint); RSS %d MiB, grew %d MiB; %d log lines",
		sent, bounced(), errs.count(conds[0]), errs.count(conds[1]), errs.count(conds[2]), base/1024, grew, lines)
	if bounced() < 500 {
		t.Errorf("only %d of the %d messages written bounced", bounced(), sent)
	}
	if other := errs.count("</message>") - bounced(); other > 0 {
		t.Errorf("%d messages came back without one of the errors %v", other, conds)
	}
	if grew > 40 {
		t.Errorf("the appliance grew by %d MiB during the flood, want under 40", grew)
	}
	if lines > 20 {
		t.Errorf("the flood wrote %d log lines, want one or two per episode:\n%s", lines, tail(x.stderr.String(), 30))
	}
}

// A client sending 10,000 presence changes a second for 5 s is read at its
// stanza rate (default 100/s, burst 500): a watcher (the same account's
// other resource) gets about 1,000 of them in those 5 s, not 50,000, and
// the log has a line or two about it.
func TestXMPPStanzaFloodSlowed(t *testing.T) {
	t.Parallel()
	x := startXMPP(t, "caps.lan", "mallory@caps.lan", "pw-mallory")
	w := x.rawDial(t, "caps.lan")
	w.login("mallory", "pw-mallory", "watch")
	w.write("<presence/>")
	w.mustRead("/watch")
	r := x.rawDial(t, "caps.lan")
	r.login("mallory", "pw-mallory", "flood")
	lines0 := x.logLines()
	seen := countIn(w.c, "<status>")
	drain := countIn(r.c) // the flooder's own presence echoes must be read
	_ = drain
	var written atomic.Int64
	window := 5 * time.Second
	start := time.Now()
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		var buf bytes.Buffer
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		i := 0
		n := writeFor(r.c, window, func(int) []byte {
			<-tick.C // 100 presences every 10 ms: 10,000/s
			buf.Reset()
			for j := 0; j < 100; j++ {
				fmt.Fprintf(&buf, "<presence><status>s%d</status></presence>", i)
				i++
			}
			return buf.Bytes()
		})
		written.Store(int64(n * 100))
	}()
	time.Sleep(time.Until(start.Add(window)))
	got := seen.count("<status>")
	<-flooded
	t.Logf("in %v the flooder wrote about %d presences (at 10,000/s, as far as TCP took them); the watcher got %d",
		window, written.Load(), got)
	// 500 (the burst) + 5 s × 100/s = 1,000; generous both ways.
	if got > 2000 {
		t.Errorf("the watcher got %d presences in %v, want about 1,000 (100/s, burst 500)", got, window)
	}
	if got < 300 {
		t.Errorf("the watcher got only %d presences in %v: the flooder should be slowed, not stopped", got, window)
	}
	if n := x.logLines() - lines0; n > 5 {
		t.Errorf("the flood wrote %d log lines, want one or two:\n%s", n, tail(x.stderr.String(), 20))
	}
}
