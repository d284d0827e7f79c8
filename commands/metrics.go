package commands

import (
	"strings"
	"time"

	"github.com/parley-xmpp/parley/server/metrics"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// MetricsExporter is the engine's Prometheus exporter as the metrics
// commands see it.
type MetricsExporter interface {
	Metrics() status.Metrics
}

func metricsCommands() []*Command {
	return []*Command{
		{
			Words:   []string{"metrics"},
			Summary: "Show where this node serves its Prometheus metrics, and which node it says it is",
			Help: "Prints the metrics listen setting, whether the exporter listens there (and the URL to scrape),\n" +
				"the node's identity as parley_node_info reports it, and the last error. The setting is this\n" +
				"node's own: each node of a cluster has its own listener.",
			Perm: PermRead,
			Run:  runMetrics,
		},
		{
			Words:   []string{"metrics", "listen"},
			Args:    []Arg{{Name: "address:port|none"}},
			Syntax:  "metrics listen <address:port>|none",
			Summary: "Serve Prometheus metrics on this IP address and port (HTTP, /metrics), or nowhere",
			Help: "The address is an IP address of this appliance (IPv6 in brackets) and a TCP port; 'none' stops\n" +
				"the listener. Nothing listens until an address is given. The change is live, on this node only\n" +
				"(each node of a cluster has its own setting), and kept across restarts. The metrics have no\n" +
				"authentication: listen on a management address that only the Prometheus server can reach.\n" +
				"If the address cannot be listened on (not an address of this appliance, a port in use), the\n" +
				"command fails with the reason and the previous setting is kept.",
			Example: "metrics listen 192.0.2.10:9100\nmetrics listen [2001:db8::10]:9100\nmetrics listen none",
			Perm:    PermSystem,
			Run:     runMetricsListen,
		},
	}
}

func runMetrics(c *Ctx, args []string) error {
	var st status.Metrics
	if c.Metrics != nil {
		st = c.Metrics.Metrics()
	} else {
		st.Listen, _ = c.Store.Config(store.MetricsListen)
	}
	var rows [][2]string
	add := func(label, value string) { rows = append(rows, [2]string{label, value}) }
	if st.Listen == "" {
		add("Listen", "none (set one with metrics listen <address:port>)")
	} else {
		add("Listen", st.Listen)
	}
	if c.Metrics != nil {
		switch {
		case st.Listening != "":
			add("State", "listening: scrape http://"+st.Listening+metrics.Path)
		case st.Listen == "":
			add("State", "not listening")
		default:
			add("State", "not listening (see Last error)")
		}
		add("Node", nodeText(st))
		lastErr := "none"
		if st.LastError != "" {
			lastErr = st.LastError + " (at " + st.LastErrorAt.UTC().Format(time.RFC3339) + ")"
		}
		add("Last error", lastErr)
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r[0]))
	}
	for _, r := range rows {
		c.printf("%-*s : %s\n", width, r[0], r[1])
	}
	return nil
}

func nodeText(st status.Metrics) string {
	var parts []string
	if st.Hostname != "" {
		parts = append(parts, "host name "+st.Hostname)
	}
	if st.NodeID != "" {
		parts = append(parts, "node id "+st.NodeID)
	}
	if len(parts) == 0 {
		return "unnamed"
	}
	return strings.Join(parts, ", ")
}

func runMetricsListen(c *Ctx, args []string) error {
	const what = "metrics listen"
	op := store.Op(store.ConfigDel{Key: store.MetricsListen})
	if args[0] != "none" {
		if err := metrics.CheckAddress(args[0]); err != nil {
			return errorf("%s: %v", what, err)
		}
		op = store.ConfigSet{Key: store.MetricsListen, Value: args[0]}
	}
	var undo store.Op = store.ConfigDel{Key: store.MetricsListen}
	if old, had := c.Store.Config(store.MetricsListen); had {
		undo = store.ConfigSet{Key: store.MetricsListen, Value: old}
	}
	applied := time.Now()
	if err := commit(c, op); err != nil {
		return errorf("%s: %v", what, err)
	}
	if c.Metrics == nil {
		return nil
	}
	st := c.Metrics.Metrics()
	if st.LastError != "" && !st.LastErrorAt.Before(applied) {
		if err := commit(c, undo); err != nil {
			return errorf("%s: stored, but the server cannot apply it: %s; see 'metrics'", what, strings.TrimPrefix(st.LastError, what+" "))
		}
		return errorf("%s: the server cannot listen there: %s; the previous setting is kept", what, strings.TrimPrefix(st.LastError, what+" "))
	}
	switch {
	case st.Listening != "":
		c.printf("Metrics: scrape http://%s%s\n", st.Listening, metrics.Path)
	default:
		c.printf("Metrics: not listening\n")
	}
	return nil
}
