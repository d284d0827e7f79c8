package server

import (
	"github.com/parley-xmpp/parley/server/metrics"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/server/tlsrec"
	"github.com/parley-xmpp/parley/store"
)

// The engine's side of the Prometheus metrics (package server/metrics):
// it owns the exporter, listens where the node-local setting
// metrics.listen says (at Start and at every change of it), and is the
// exporter's Source of live state, read at scrape time.

// SetNode tells the engine which node it is, for parley_node_info: fn
// returns the cluster node id and the host name. Call it before Start.
func (e *Engine) SetNode(fn metrics.Node) { e.nodeInfo.Store(&fn) }

func (e *Engine) node() (id, hostname string) {
	if fn := e.nodeInfo.Load(); fn != nil && *fn != nil {
		return (*fn)()
	}
	h, _ := e.cfg.Store.Config(store.ConfigHostname)
	return "", h
}

// applyMetrics makes the exporter listen where the setting says (or
// nowhere); a failure is the exporter's last error, which `metrics
// listen` reports.
func (e *Engine) applyMetrics() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped { // a stopped engine still hears the store's changes
		return
	}
	addr, _ := e.cfg.Store.Config(store.MetricsListen)
	e.metrics.Listen(addr)
}

// Metrics reports the exporter's state.
func (e *Engine) Metrics() status.Metrics {
	st := e.metrics.Status()
	addr, _ := e.cfg.Store.Config(store.MetricsListen)
	id, host := e.node()
	return status.Metrics{Listen: addr, Listening: st.Listening, LastError: st.LastError, LastErrorAt: st.LastErrorAt,
		NodeID: id, Hostname: host}
}

// metricsSource is the live state the exporter reads at scrape time.
type metricsSource struct{ e *Engine }

func (m metricsSource) SessionsByDomain(fn func(domain string, n int)) {
	_, by := m.e.router.Count()
	if h := m.e.hosted.Load(); h != nil {
		for d := range *h {
			fn(d, by[d])
			delete(by, d)
		}
	}
	for d, n := range by { // a domain no longer served, its sessions closing
		fn(d, n)
	}
}

func (m metricsSource) ServerLinks(fn func(direction, state string, n int)) {
	links, _ := m.e.s2s.Status()
	for _, l := range links {
		fn(string(l.Direction), string(l.State), 1)
	}
}

func (m metricsSource) ComponentsConnected() int { return len(m.e.comps.Connected()) }

func (m metricsSource) SessionsParked() int { return tlsrec.Parked() }
