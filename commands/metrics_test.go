package commands

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/metrics"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// engineMetrics is the engine's side of the metrics commands with the
// real exporter: it listens where the store's node-local setting says,
// from the store's watcher, as server.Engine does.
type engineMetrics struct {
	st *store.Store
	x  *metrics.Exporter
}

func newEngineMetrics(t *testing.T, st *store.Store) *engineMetrics {
	m := &engineMetrics{st: st, x: metrics.NewExporter(nil, func() (string, string) { return "n1", "xmpp1" }, "test", nil)}
	t.Cleanup(m.x.Close)
	st.Watch(func(c store.Change) {
		switch op := c.Op.(type) {
		case store.ConfigSet:
			if op.Key == store.MetricsListen {
				m.x.Listen(op.Value)
			}
		case store.ConfigDel:
			if op.Key == store.MetricsListen {
				m.x.Listen("")
			}
		}
	})
	return m
}

func (m *engineMetrics) Metrics() status.Metrics {
	st := m.x.Status()
	addr, _ := m.st.Config(store.MetricsListen)
	return status.Metrics{Listen: addr, Listening: st.Listening, LastError: st.LastError, LastErrorAt: st.LastErrorAt, NodeID: "n1", Hostname: "xmpp1"}
}

func served(addr string) bool {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// TestMetricsCommands: metrics shows the state; metrics listen starts the
// listener live, moves it, and none stops it; bad input is one line with
// the fix and changes nothing; a port in use fails with the reason and
// keeps the previous setting.
func TestMetricsCommands(t *testing.T) {
	f := newFixture(t)
	f.env.Metrics = newEngineMetrics(t, f.env.Store)
	golden(t, "metrics-none", f.ok("metrics"))
	const first, second = "127.0.23.20:19120", "127.0.23.20:19121"
	if served(first) {
		t.Fatalf("%s is served before metrics listen", first)
	}
	if out := f.ok("metrics listen " + first); out != "Metrics: scrape http://"+first+"/metrics\n" {
		t.Fatalf("metrics listen: %q", out)
	}
	if !served(first) {
		t.Fatalf("%s is not served after metrics listen", first)
	}
	golden(t, "metrics-listening", f.ok("metrics"))

	for _, tc := range []struct{ line, want string }{
		{"metrics listen localhost:9100", `metrics listen: "localhost" is not an IP address: give this appliance's management address, e.g. 192.0.2.10:9100 (0.0.0.0:9100 for every address)`},
		{"metrics listen 127.0.23.20", `metrics listen: "127.0.23.20" is not address:port (e.g. 192.0.2.10:9100, [2001:db8::10]:9100)`},
		{"metrics listen 127.0.23.20:0", `metrics listen: "0" is not a TCP port: give 1 to 65535`},
		{"metrics listen 127.0.23.20:70000", `metrics listen: "70000" is not a TCP port: give 1 to 65535`},
		{"metrics listen ::1:9100", `metrics listen: "::1:9100" is not address:port (e.g. 192.0.2.10:9100, [2001:db8::10]:9100)`},
		{"metrics listen", `metrics listen: missing <address:port|none>; usage: metrics listen <address:port>|none`},
		{"metrics listen none now", `metrics listen: unexpected argument "now"; usage: metrics listen <address:port>|none`},
		{"metrics frob", `metrics: unknown subcommand "frob"; use one of: listen (see 'help metrics')`},
	} {
		_, err := f.run(tc.line)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.line, err, tc.want)
		}
	}
	// A port in use: the reason, and the previous setting stays.
	busy, err := net.Listen("tcp", second)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.run("metrics listen " + second)
	busy.Close()
	if err == nil || err.Error() != "metrics listen: the server cannot listen there: "+second+": bind: address already in use; the previous setting is kept" {
		t.Fatalf("metrics listen on a busy port: %v", err)
	}
	if v, _ := f.env.Store.Config(store.MetricsListen); v != first || !served(first) {
		t.Fatalf("after the failure: setting %q, %s served: %v", v, first, served(first))
	}
	// An address that is not this machine's.
	if _, err := f.run("metrics listen 192.0.2.1:9100"); err == nil || !strings.Contains(err.Error(), "cannot assign requested address; the previous setting is kept") {
		t.Fatalf("metrics listen on another machine's address: %v", err)
	}
	// Move, then none.
	if out := f.ok("metrics listen " + second); out != "Metrics: scrape http://"+second+"/metrics\n" || !served(second) || served(first) {
		t.Fatalf("moving to %s: %q", second, out)
	}
	if out := f.ok("metrics listen none"); out != "Metrics: not listening\n" || served(second) {
		t.Fatalf("metrics listen none: %q", out)
	}
	if _, had := f.env.Store.Config(store.MetricsListen); had {
		t.Fatal("metrics listen none left a setting")
	}
	golden(t, "metrics-none", f.ok("metrics"))

	// Who may: any role reads, only admin listens.
	if _, err := f.runAs("ops", store.RoleAudit, "metrics"); err != nil {
		t.Errorf("metrics as audit: %v", err)
	}
	if _, err := f.runAs("app", store.RoleAppAdmin, "metrics listen "+first); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("metrics listen as appadmin: %v", err)
	}
	audit, _ := f.env.Store.Audit(50)
	var lines []string
	for _, e := range audit {
		lines = append(lines, e.Action+" "+e.Result)
	}
	if all := strings.Join(lines, "\n"); !strings.Contains(all, "metrics listen "+first+" ok") || !strings.Contains(all, "metrics listen none ok") {
		t.Errorf("the audit trail:\n%s", all)
	}
}

// TestMetricsWithoutEngine: with no engine in the process the setting is
// still stored and shown.
func TestMetricsWithoutEngine(t *testing.T) {
	f := newFixture(t)
	f.ok("metrics listen 127.0.23.22:9100")
	if out := f.ok("metrics"); out != "Listen : 127.0.23.22:9100\n" {
		t.Fatalf("metrics: %q", out)
	}
}
