package metrics

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The loopback addresses this package's tests listen on (127.0.23.0/24
// is this work's range).
var testIP atomic.Int32

func testAddr(t *testing.T) string {
	t.Helper()
	ip := fmt.Sprintf("127.0.23.%d", 200+testIP.Add(1))
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// delta returns how much c moves while fn runs.
func delta(c prometheus.Collector, fn func()) float64 {
	before := testutil.ToFloat64(c)
	fn()
	return testutil.ToFloat64(c) - before
}

func TestCountersMove(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    prometheus.Collector
		fn   func()
		want float64
	}{
		{"routed message local", routedVec.WithLabelValues("message", "local"), func() { Routed("message", Local) }, 1},
		{"routed iq bounced", routedVec.WithLabelValues("iq", "bounced"), func() { Routed("iq", Bounced); Routed("iq", Bounced) }, 2},
		{"routed presence cluster", routedVec.WithLabelValues("presence", "cluster"), func() { Routed("presence", Cluster) }, 1},
		{"routed junk kind", routedVec.WithLabelValues("other", "nowhere"), func() { Routed("stream:features", Nowhere) }, 1},
		{"routed bad outcome counts nothing", routedVec.WithLabelValues("message", "local"), func() { Routed("message", numOutcomes) }, 0},
		{"login ok", loginsVec.WithLabelValues("SCRAM-SHA-256"), func() { Login("SCRAM-SHA-256", true) }, 1},
		{"login failed", loginFailuresVec.WithLabelValues("PLAIN"), func() { Login("PLAIN", false) }, 1},
		{"login failed, unknown mechanism", loginFailuresVec.WithLabelValues("other"), func() { Login("X-MADE-UP-"+strings.Repeat("A", 100), false) }, 1},
		{"offline stored", offlineStored, OfflineStored, 1},
		{"offline delivered", offlineDelivered, func() { OfflineDelivered(3); OfflineDelivered(0) }, 3},
		{"s2s bounce", s2sBouncesVec.WithLabelValues("remote-server-not-found"), func() { S2SBounce("remote-server-not-found") }, 1},
		{"s2s bounce, other", s2sBouncesVec.WithLabelValues("other"), func() { S2SBounce("gone") }, 1},
		{"component connect", componentConnects, ComponentConnected, 1},
		{"component bad secret", componentFailuresVec.WithLabelValues("bad-secret"), func() { ComponentFailed("authentication failure") }, 1},
		{"component unknown", componentFailuresVec.WithLabelValues("unknown-component"), func() { ComponentFailed("unknown component") }, 1},
		{"component other", componentFailuresVec.WithLabelValues("other"), func() { ComponentFailed("something new") }, 1},
		{"overflow c2s", overflowsVec.WithLabelValues("c2s"), func() { QueueOverflow("jabber:client") }, 1},
		{"overflow s2s", overflowsVec.WithLabelValues("s2s"), func() { QueueOverflow("jabber:server") }, 1},
		{"rejected cluster", rejectedVec.WithLabelValues("cluster"), func() { QueueRejected(ClusterQueue) }, 1},
		{"tls in ok", tlsVec.WithLabelValues("in", "ok"), func() { TLSHandshake(In, nil) }, 1},
		{"tls out failed", tlsVec.WithLabelValues("out", "failed"), func() { TLSHandshake(Out, errors.New("bad certificate")) }, 1},
	} {
		if got := delta(tc.c, tc.fn); got != tc.want {
			t.Errorf("%s: moved by %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestStoreCommitHistogram(t *testing.T) {
	before := histCount(t)
	StoreCommit(time.Now().Add(-3 * time.Millisecond))
	if got := histCount(t) - before; got != 1 {
		t.Fatalf("store_commit_duration_seconds count moved by %d, want 1", got)
	}
}

func histCount(t *testing.T) uint64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(storeCommit)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 {
		t.Fatalf("gather: %v (%d families)", err, len(mfs))
	}
	return mfs[0].GetMetric()[0].GetHistogram().GetSampleCount()
}

// TestRoutedNoAlloc: counting a routed stanza allocates nothing.
func TestRoutedNoAlloc(t *testing.T) {
	if n := testing.AllocsPerRun(1000, func() { Routed("message", Local) }); n != 0 {
		t.Errorf("Routed: %v allocations", n)
	}
	if n := testing.AllocsPerRun(1000, func() { Login("PLAIN", true) }); n != 0 {
		t.Errorf("Login: %v allocations", n)
	}
}

type fakeSource struct{}

func (fakeSource) SessionsByDomain(fn func(string, int)) {
	fn("a.lan", 2)
	fn("b.lan", 0)
}

func (fakeSource) ServerLinks(fn func(direction, state string, n int)) {
	fn("out", "up", 1)
	fn("in", "up", 1)
	fn("in", "up", 1)
}

func (fakeSource) ComponentsConnected() int { return 1 }
func (fakeSource) SessionsParked() int      { return 7 }

func scrape(t *testing.T, addr string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + Path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("GET %s: %s", addr, resp.Status)
	}
	return string(b), err
}

// TestExporterListen: nothing listens until told; the exposition has the
// live state and the node; a new address moves the listener; none stops
// it; a bad address or a port in use is an error and the old listener
// stays.
func TestExporterListen(t *testing.T) {
	x := NewExporter(fakeSource{}, func() (string, string) { return "node-1", "xmpp1" }, "1.2.3", nil)
	defer x.Close()
	if st := x.Status(); st.Listening != "" {
		t.Fatalf("listening before Listen: %+v", st)
	}
	a := testAddr(t)
	if err := x.Listen(a); err != nil {
		t.Fatal(err)
	}
	if st := x.Status(); st.Listening != a || st.LastError != "" {
		t.Fatalf("status after Listen(%s): %+v", a, st)
	}
	Routed("message", Offline)
	body, err := scrape(t, a)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`parley_node_info{hostname="xmpp1",node_id="node-1",version="1.2.3"} 1`,
		`parley_sessions{domain="a.lan"} 2`,
		`parley_sessions{domain="b.lan"} 0`,
		`parley_s2s_links{direction="in",state="up"} 2`,
		`parley_s2s_links{direction="out",state="up"} 1`,
		`parley_s2s_links{direction="out",state="connecting"} 0`,
		`parley_components_connected 1`,
		`parley_sessions_parked 7`,
		`parley_stanzas_routed_total{kind="message",outcome="offline"} `,
		`# TYPE parley_store_commit_duration_seconds histogram`,
		`# TYPE process_cpu_seconds_total counter`,
		`# TYPE go_goroutines gauge`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the exposition has no %q", want)
		}
	}
	if problems, err := testutil.GatherAndLint(x.Registry()); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}

	// The same address again changes nothing.
	if err := x.Listen(a); err != nil || x.Status().Listening != a {
		t.Fatalf("Listen(%s) again: %v %+v", a, err, x.Status())
	}
	// Move.
	b := testAddr(t)
	if err := x.Listen(b); err != nil {
		t.Fatal(err)
	}
	if _, err := scrape(t, b); err != nil {
		t.Fatalf("scrape on the new address: %v", err)
	}
	if _, err := scrape(t, a); err == nil {
		t.Fatalf("still listening on the old address %s", a)
	}
	// A port in use: refused, the listener stays where it was.
	busy, err := net.Listen("tcp", testAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	err = x.Listen(busy.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Listen on a busy port: %v", err)
	}
	if st := x.Status(); st.Listening != b || !strings.Contains(st.LastError, "address already in use") || st.LastErrorAt.IsZero() {
		t.Fatalf("status after a failed Listen: %+v", st)
	}
	if _, err := scrape(t, b); err != nil {
		t.Fatalf("the old listener went away after a failed move: %v", err)
	}
	// Bad addresses never reach the network.
	for _, bad := range []string{"localhost:9100", "127.0.23.1", "127.0.23.1:0", "127.0.23.1:65536", "127.0.23.1:http", ":9100"} {
		if err := x.Listen(bad); err == nil {
			t.Errorf("Listen(%q) was accepted", bad)
		}
	}
	// None: nothing listens, and the error is gone.
	if err := x.Listen(""); err != nil {
		t.Fatal(err)
	}
	if st := x.Status(); st.Listening != "" || st.LastError != "" {
		t.Fatalf("status after Listen(none): %+v", st)
	}
	if _, err := scrape(t, b); err == nil {
		t.Fatalf("still listening on %s after Listen(none)", b)
	}
}

// TestExporterLimits: a scraper cannot hold more than MaxConnections
// connections; the others wait in the kernel's backlog and are served
// once one closes.
func TestExporterLimits(t *testing.T) {
	x := NewExporter(nil, nil, "", nil)
	defer x.Close()
	a := testAddr(t)
	if err := x.Listen(a); err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < MaxConnections; i++ {
		c, err := net.Dial("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// Each held connection has been accepted (a request on it is served).
	if _, err := fmt.Fprintf(conns[0], "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", Path); err != nil {
		t.Fatal(err)
	}
	conns[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 12)
	if _, err := io.ReadFull(conns[0], buf); err != nil || string(buf) != "HTTP/1.1 200" {
		t.Fatalf("a held connection: %q %v", buf, err)
	}
	// One more is not served while the others are held.
	done := make(chan error, 1)
	go func() {
		_, err := scrape(t, a)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a connection over the limit was served: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	conns[1].Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting scrape was not served once a connection closed")
	}
}
