package metrics

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
)

// Source is the live state an exporter reads at scrape time (the XMPP
// engine implements it): nothing of it is kept in counters that could
// drift from the truth.
type Source interface {
	// SessionsByDomain calls fn with every hosted domain and the number
	// of client sessions bound to it on this node.
	SessionsByDomain(fn func(domain string, sessions int))
	// ServerLinks calls fn with the number of server-to-server links in
	// each direction ("in", "out") and state ("connecting", "up",
	// "closing").
	ServerLinks(fn func(direction, state string, links int))
	// ComponentsConnected is the number of external components connected
	// to this node.
	ComponentsConnected() int
	// SessionsParked is the number of client sessions whose client is
	// quiet and that hold no goroutine or buffer (parked).
	SessionsParked() int
}

// Node says which node is scraped: its id (the cluster's node id) and host
// name (the shell prompt); either may be "".
type Node func() (id, hostname string)

// Limits of the HTTP listener: everything a scraper can grow is capped.
const (
	MaxConnections   = 16 // open connections to the listener
	MaxScrapes       = 4  // scrapes served at once (more get 503)
	ScrapeTimeout    = 10 * time.Second
	readHeaderTimout = 5 * time.Second
	idleTimeout      = 60 * time.Second
	maxHeaderBytes   = 8 << 10
)

// Path is where the exposition is served.
const Path = "/metrics"

// Status is what an exporter reports to the shell.
type Status struct {
	Listening   string // the address listened on; "" when not listening
	LastError   string // why the last Listen failed; "" when it did not
	LastErrorAt time.Time
}

// Exporter serves the metrics over HTTP, on one address at a time, and
// nowhere until Listen is given one.
type Exporter struct {
	reg *prometheus.Registry
	log *log.Logger

	mu      sync.Mutex
	addr    string
	ln      net.Listener
	srv     *http.Server
	lastErr string
	lastAt  time.Time
}

// NewExporter builds an exporter with its own registry: the process-wide
// Parley metrics, the process and Go collectors, and collectors reading
// src (may be nil) and node (may be nil) at scrape time; version is the
// software version, in parley_node_info.
func NewExporter(src Source, node Node, version string, logger *log.Logger) *Exporter {
	reg := prometheus.NewRegistry()
	reg.MustRegister(parleyCollectors...)
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	reg.MustRegister(&liveCollector{src: src, node: node, version: version})
	if logger == nil {
		logger = log.New(discard{}, "", 0)
	}
	return &Exporter{reg: reg, log: logger}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Registry is the exporter's registry (what a scrape gathers).
func (x *Exporter) Registry() *prometheus.Registry { return x.reg }

// Handler serves the exposition (text format, or what the scraper asks
// for), at most MaxScrapes at once.
func (x *Exporter) Handler() http.Handler {
	h := promhttp.HandlerFor(x.reg, promhttp.HandlerOpts{
		ErrorLog:            x.log,
		MaxRequestsInFlight: MaxScrapes,
		Timeout:             ScrapeTimeout,
	})
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, h)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "Parley metrics: %s\n", Path)
	})
	return mux
}

// CheckAddress checks a listen address: an IP address (v4, or v6 in
// brackets) and a port from 1 to 65535. Host names are refused: the
// listener must be where the admin said, not where a resolver says.
func CheckAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not address:port (e.g. 192.0.2.10:9100, [2001:db8::10]:9100)", addr)
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("%q is not an IP address: give this appliance's management address, e.g. 192.0.2.10:9100 (0.0.0.0:9100 for every address)", host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return fmt.Errorf("%q is not a TCP port: give 1 to 65535", port)
	}
	return nil
}

// Listen serves the metrics on addr from now on ("": nowhere). A new
// address is listened on before the old one is closed; when it cannot be
// (a bad address, a port in use), the exporter keeps the old one, and
// the error is returned and kept for Status. The same address again
// changes nothing.
func (x *Exporter) Listen(addr string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if addr == x.addr && (addr == "" || x.ln != nil) {
		x.lastErr, x.lastAt = "", time.Time{}
		return nil
	}
	if addr == "" {
		x.closeLocked()
		x.lastErr, x.lastAt = "", time.Time{}
		return nil
	}
	if err := CheckAddress(addr); err != nil {
		return x.failed(addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil && x.ln != nil {
		// The old listener may hold the port (127.0.0.1:9100, then
		// 0.0.0.0:9100): close it and try again; on failure, back to it.
		old := x.addr
		x.closeLocked()
		if ln, err = net.Listen("tcp", addr); err != nil {
			if x.serve(old) != nil {
				x.log.Printf("metrics: cannot listen on %s again", old)
			}
			return x.failed(addr, err)
		}
	} else if err != nil {
		return x.failed(addr, err)
	}
	x.closeLocked()
	x.start(addr, ln)
	return nil
}

// serve listens on addr and serves there.
func (x *Exporter) serve(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	x.start(addr, ln)
	return nil
}

// start serves on ln, listening on addr.
func (x *Exporter) start(addr string, ln net.Listener) {
	srv := &http.Server{
		Handler:           x.Handler(),
		ReadHeaderTimeout: readHeaderTimout,
		ReadTimeout:       readHeaderTimout,
		WriteTimeout:      ScrapeTimeout + 5*time.Second,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          x.log,
	}
	x.addr, x.ln, x.srv = addr, ln, srv
	x.lastErr, x.lastAt = "", time.Time{}
	go srv.Serve(netutil.LimitListener(ln, MaxConnections))
	x.log.Printf("metrics: serving http://%s%s", ln.Addr(), Path)
}

func (x *Exporter) failed(addr string, err error) error {
	err = fmt.Errorf("metrics listen %s: %w", addr, unwrapOp(err))
	x.lastErr, x.lastAt = err.Error(), time.Now()
	x.log.Printf("%v", err)
	return err
}

// unwrapOp drops net.OpError's "listen tcp ADDR:" prefix, which the
// message says already.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

func (x *Exporter) closeLocked() {
	if x.srv == nil {
		x.addr = ""
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if x.srv.Shutdown(ctx) != nil {
		x.srv.Close()
	}
	x.log.Printf("metrics: stopped listening on %s", x.ln.Addr())
	x.addr, x.ln, x.srv = "", nil, nil
}

// Close stops listening.
func (x *Exporter) Close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.closeLocked()
}

// Status reports where the exporter listens and its last error.
func (x *Exporter) Status() Status {
	x.mu.Lock()
	defer x.mu.Unlock()
	st := Status{LastError: x.lastErr, LastErrorAt: x.lastAt}
	if x.ln != nil {
		st.Listening = x.ln.Addr().String()
	}
	return st
}

// liveCollector reads the live state at scrape time.
type liveCollector struct {
	src     Source
	node    Node
	version string
}

var (
	sessionsDesc = prometheus.NewDesc(Namespace+"_sessions",
		"Client sessions bound on this node, by hosted domain.", []string{"domain"}, nil)
	linksDesc = prometheus.NewDesc(Namespace+"_s2s_links",
		"Server-to-server links of this node, by direction (in, out) and state (connecting, up, closing).", []string{"direction", "state"}, nil)
	componentsDesc = prometheus.NewDesc(Namespace+"_components_connected",
		"External components (XEP-0114) connected to this node.", nil, nil)
	parkedDesc = prometheus.NewDesc(Namespace+"_sessions_parked",
		"Client sessions on this node whose client is quiet, parked: no goroutine, buffer or TLS cipher state held.", nil, nil)
	nodeDesc = prometheus.NewDesc(Namespace+"_node_info",
		"Which node this is: its cluster node id, host name and software version (always 1).", []string{"node_id", "hostname", "version"}, nil)
)

func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sessionsDesc
	ch <- linksDesc
	ch <- componentsDesc
	ch <- parkedDesc
	ch <- nodeDesc
}

func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	id, host := "", ""
	if c.node != nil {
		id, host = c.node()
	}
	ch <- prometheus.MustNewConstMetric(nodeDesc, prometheus.GaugeValue, 1, id, host, c.version)
	if c.src == nil {
		return
	}
	c.src.SessionsByDomain(func(domain string, n int) {
		ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(n), domain)
	})
	// Every direction and state, zeros included: a series that appears
	// and vanishes with its first link graphs badly.
	var links [2][3]int
	states := [3]string{"connecting", "up", "closing"}
	c.src.ServerLinks(func(direction, state string, n int) {
		d := 0
		if direction == "out" {
			d = 1
		}
		for i, s := range states {
			if s == state {
				links[d][i] += n
			}
		}
	})
	for d, dn := range directionNames {
		for i, s := range states {
			ch <- prometheus.MustNewConstMetric(linksDesc, prometheus.GaugeValue, float64(links[d][i]), dn, s)
		}
	}
	ch <- prometheus.MustNewConstMetric(componentsDesc, prometheus.GaugeValue, float64(c.src.ComponentsConnected()))
	ch <- prometheus.MustNewConstMetric(parkedDesc, prometheus.GaugeValue, float64(c.src.SessionsParked()))
}
