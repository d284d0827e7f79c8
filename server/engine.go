// Package server is Parley's embedded XMPP engine. Engine reads its
// configuration from the store and reconciles on every change, without a
// restart: listeners, domains, certificates (chosen by SNI), limits. The
// protocol work lives in the sub-packages: xml (parsing with limits),
// stream (errors, bounded outbound queues), c2s (client negotiation),
// router (the session table), im (the IM core), s2s (federation),
// component (XEP-0114), fedcheck (the federation check). What the engine
// reports to the shell (Status, FederationCheck) is in the types of
// server/status, which commands/ prints as they are.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server/authlimit"
	"github.com/parley-xmpp/parley/server/c2s"
	"github.com/parley-xmpp/parley/server/cluster"
	"github.com/parley-xmpp/parley/server/cluster/routes"
	"github.com/parley-xmpp/parley/server/component"
	"github.com/parley-xmpp/parley/server/fedcheck"
	"github.com/parley-xmpp/parley/server/im"
	"github.com/parley-xmpp/parley/server/limit"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/metrics"
	"github.com/parley-xmpp/parley/server/resolve"
	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/server/s2s"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/tlsrec"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// Config is what the engine is built with; everything else comes from the
// store.
type Config struct {
	Store       *store.Store
	Files       *pki.Area
	Version     string
	Log         *slog.Logger
	IdleTimeout time.Duration // client idle time before a ping (default 5 minutes)
	ParkAfter   time.Duration // client idle time before its session is parked (default 1 s)
	Limits      xml.Limits    // default xml.DefaultLimits
}

// Engine is the XMPP engine.
type Engine struct {
	cfg      Config
	router   *router.Router
	im       *im.Service
	c2s      *c2s.Config
	comps    *component.Registry
	comp     *component.Config
	s2s      *s2s.Service
	resolver *resolve.Resolver
	preauth  *preAuth
	stop     chan struct{}
	wg       sync.WaitGroup

	mu        sync.Mutex
	xmpp      store.XMPPConfig
	hosted    atomic.Pointer[map[string]bool] // replaced whole on reconcile: read on every stanza without a lock
	fed       atomic.Pointer[store.FederationConfig]
	listenIPs atomic.Pointer[[]netip.Addr]    // specific listen addresses, for outgoing links
	compJIDs  atomic.Pointer[map[string]bool] // registered components' addresses, replaced whole on change
	trust     atomic.Pointer[trust]
	routes    atomic.Pointer[routes.Table] // the cluster's route table (JoinMesh); nil: standalone
	dirs      atomic.Pointer[directories]  // the domains' LDAP directories (directories.go), replaced whole on change
	episodes  *limit.Episodes
	rate      atomic.Pointer[stanzaRate] // replaced whole on reconcile: may be read per stanza
	certs     map[string]*tls.Certificate
	tlsOnce   sync.Once
	tlsClient *tls.Config // what tlsConfig returns (while there is a certificate)
	primary   string
	listeners map[string]*listener // by "addr kind"
	conns     map[net.Conn]*connState
	dialed    dialedConns // outgoing server connections (sessions.go)
	since     time.Time
	lastErr   string
	lastErrAt time.Time
	errs      uint64 // setError calls, so reconcile knows whether it failed at something
	stopped   bool
	filesWarn bool // the open-file count is near the limit (logged once per episode)

	metrics  *metrics.Exporter            // the Prometheus exporter (metrics.go)
	nodeInfo atomic.Pointer[metrics.Node] // which node this is (SetNode)

	secret    atomic.Pointer[[]byte] // the store's dialback secret, once read (files.go)
	localOnce sync.Once
	local     []byte // this process's dialback secret while the store has none
}

type stanzaRate struct {
	perSecond float64
	burst     int
}

type connState struct {
	sess  *c2s.Session
	other bool            // a component's or a server's stream: closed by its own service
	kind  status.ConnKind // set once the stream header said (server-in, component)
}

// Accept back-off: after a failed accept (e.g. EMFILE: no file descriptor
// left), wait this long, doubling up to acceptMaxDelay, as net/http does.
var (
	acceptMinDelay = 5 * time.Millisecond
	acceptMaxDelay = time.Second
)

// How often the open-file count is checked, and the share of the limit
// above which the log and health warn.
var (
	filesCheckEvery = 5 * time.Second
	filesWarnShare  = 0.8
)

type listener struct {
	l      net.Listener
	direct bool // TLS from the first byte (5223)
	label  string
}

// New builds an engine; Start runs it.
func New(cfg Config) *Engine {
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.Limits.MaxStanza == 0 {
		cfg.Limits = xml.DefaultLimits
	}
	e := &Engine{
		cfg: cfg, router: router.New(), stop: make(chan struct{}), preauth: newPreAuth(),
		certs: map[string]*tls.Certificate{}, listeners: map[string]*listener{}, conns: map[net.Conn]*connState{},
	}
	e.comps = component.NewRegistry()
	// One episode logger for every limit: one line per episode.
	episodes := limit.NewEpisodes(cfg.Log)
	e.episodes = episodes
	e.router.Hosted = e.Hosted
	e.router.Components = componentRoutes{e}
	// In a cluster, the other nodes learn which components are here.
	e.comps.OnChange(func(jid string, connected bool) {
		if t := e.routes.Load(); t != nil {
			if connected {
				t.ComponentUp(jid)
			} else {
				t.ComponentDown(jid)
			}
		}
	})
	e.dirs.Store(&directories{})
	e.im = &im.Service{Store: cfg.Store, Router: e.router, Hosted: e.Hosted, Version: cfg.Version, Started: time.Now(), Log: cfg.Log,
		Episodes: episodes, DirectoryUser: e.directoryUser}
	e.im.Init()
	e.comp = &component.Config{
		Lookup: cfg.Store.ComponentByJID,
		PlainAllowed: func() bool {
			v, _ := cfg.Store.Config(store.XMPPComponentPlain)
			return v == "allow"
		},
		Handler:     e.im,
		Limits:      cfg.Limits,
		AuthTimeout: e.authTimeout,
		Log:         cfg.Log,
		Throttle:    authlimit.New(authlimit.Default, "component", cfg.Log),
		StanzaRate:  e.linkStanzaRate,
		Episodes:    episodes,
	}
	e.c2s = &c2s.Config{
		TLS:         e.tlsConfig,
		Hosted:      e.Hosted,
		Accounts:    cfg.Store,
		Directory:   e.directoryFor,
		Router:      e.router,
		Handler:     e.im,
		AuthTimeout: e.authTimeout,
		MaxSessions: func() int {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.xmpp.MaxSessions
		},
		IdleTimeout: cfg.IdleTimeout,
		ParkAfter:   cfg.ParkAfter,
		Limits:      cfg.Limits,
		Throttle:    authlimit.New(authlimit.Default, "c2s", cfg.Log),
		Log:         cfg.Log,
		Features:    e.im.StreamFeatures(),
		Episodes:    episodes,
		StanzaRate: func() (float64, int) {
			r := e.rate.Load()
			return r.perSecond, r.burst
		},
	}
	e.fed.Store(&store.FederationConfig{})
	e.rate.Store(&stanzaRate{store.DefaultStanzaRate, store.DefaultStanzaBurst})
	e.resolver = &resolve.Resolver{Servers: cfg.Store.Resolvers}
	e.s2s = s2s.New(s2s.Config{
		Handler:     e.im,
		Resolver:    e.resolver,
		Federation:  func() store.FederationConfig { return *e.fed.Load() },
		Roots:       e.trustRoots,
		AuthTimeout: e.authTimeout,
		Cert:        e.certFor,
		TLS:         e.tlsConfig,
		Limits:      cfg.Limits,
		Log:         cfg.Log,
		SourceIP:    e.sourceIP,
		Dialed:      e.dialed.add,
		StanzaRate:  e.linkStanzaRate,
		Episodes:    episodes,
		Secret:      e.dialbackSecret,
	})
	e.router.Remote = e.s2s
	e.metrics = metrics.NewExporter(metricsSource{e}, e.node, cfg.Version, slog.NewLogLogger(cfg.Log.Handler(), logging.LevelProblems))
	return e
}

// linkStanzaRate is the stanza rate of a server or component stream: the
// clients' times limit.LinkFactor (they carry many users' traffic).
func (e *Engine) linkStanzaRate() (float64, int) {
	return limit.Rate(e.c2s.StanzaRate, limit.LinkFactor)
}

// sourceIP is the address outgoing server links are made from: the first
// listen address of the destination's family (none when listening on all
// addresses: the system chooses).
func (e *Engine) sourceIP(dst netip.Addr) netip.Addr {
	p := e.listenIPs.Load()
	if p == nil {
		return netip.Addr{}
	}
	for _, ip := range *p {
		if ip.Is4() == dst.Is4() && ip.IsLoopback() == dst.IsLoopback() {
			return ip
		}
	}
	return netip.Addr{}
}

// Resolver is the DNS client federation uses (for `dns`).
func (e *Engine) Resolver() *resolve.Resolver { return e.resolver }

// FederationCheck runs `xmpp federation check`: every step from DNS to
// an authenticated link from local to remote, reported one at a time.
func (e *Engine) FederationCheck(ctx context.Context, local, remote string, report func(status.Step)) bool {
	fed := *e.fed.Load()
	return fedcheck.Run(ctx, fedcheck.Config{
		Resolver: e.resolver,
		Roots:    e.trustRoots,
		Route: func(d string) (string, bool) {
			r, ok := fed.Routes[d]
			return r, ok
		},
		ClientCert:   e.certFor,
		Authenticate: e.s2s.Authenticate,
		Secure:       fed.SecureRequired(remote),
	}, local, remote, report)
}

// trust is the pool federation verifies peers against (the system's roots
// and the trust bundle's CAs), or why the bundle could not be read.
type trust struct {
	pool *x509.CertPool
	err  error
}

// trustRoots is the trust pool as last loaded (the system's roots before
// the first reconcile).
func (e *Engine) trustRoots() (*x509.CertPool, error) {
	if t := e.trust.Load(); t != nil {
		return t.pool, t.err
	}
	return x509.SystemCertPool()
}

// loadTrust reads the system roots and the federation trust bundle.
func (e *Engine) loadTrust(fed *store.FederationConfig) {
	pool, err := pki.TrustPool(e.cfg.Files, fed.Trust)
	if err != nil {
		err = fmt.Errorf("federation trust bundle %s: %v", fed.Trust, err)
		e.setError(err)
	}
	e.trust.Store(&trust{pool, err})
}

// certFor is our certificate for a name: a hosted domain's own, the parent
// domain's for a name below it (a component, cb1.example.com), else the
// primary domain's, else any. Both TLS by SNI and our client certificate
// on outgoing server links take it from here.
func (e *Engine) certFor(name string) *tls.Certificate {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.certs[name]; c != nil {
		return c
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c := e.certs[name[i+1:]]; c != nil {
			return c
		}
	}
	if c := e.certs[e.primary]; c != nil {
		return c
	}
	for _, c := range e.certs {
		return c
	}
	return nil
}

// Start applies the stored configuration and follows every change.
func (e *Engine) Start() {
	e.cfg.Store.Watch(e.onChange)
	e.putFiles(!e.cfg.Store.Clustered())
	e.loadComponents()
	e.loadDirectories()
	e.reconcile()
	e.applyMetrics()
	e.wg.Add(4)
	go e.watchFiles()
	go e.releaseWhenQuiet()
	go e.refreshDirectories()
	go e.probeDirectories()
}

// watchFiles warns in the log, once per episode, while the process's
// open files near its limit.
func (e *Engine) watchFiles() {
	defer e.wg.Done()
	t := time.NewTicker(filesCheckEvery)
	defer t.Stop()
	for {
		e.checkFiles()
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
	}
}

func (e *Engine) checkFiles() {
	open, limit, err := openFiles()
	if err != nil || limit <= 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch share := float64(open) / float64(limit); {
	case share > filesWarnShare && !e.filesWarn:
		e.filesWarn = true
		logging.Problem(e.cfg.Log, "xmpp: %d of the %d files the process may open are in use (%.0f%%): new connections will fail at the limit; raise it (ulimit -n, systemd LimitNOFILE=) or lower xmpp limits pre-auth",
			open, limit, 100*share)
	case share < filesWarnShare-0.1 && e.filesWarn:
		e.filesWarn = false
		logging.Major(e.cfg.Log, "xmpp: open files back to %d of %d", open, limit)
	}
}

// loadComponents refreshes the set of registered components' addresses,
// which the router asks about every stanza to a domain not hosted here.
func (e *Engine) loadComponents() {
	all, err := e.cfg.Store.Components()
	if err != nil {
		logging.Problem(e.cfg.Log, "xmpp: reading the call bridges: %v", err)
		return
	}
	m := make(map[string]bool, len(all))
	for _, c := range all {
		m[c.JID()] = true
	}
	e.compJIDs.Store(&m)
}

// StopGrace bounds how long Stop waits for sessions to write their
// system-shutdown stream error and close.
const StopGrace = 3 * time.Second

// Stop closes every listener and session (system-shutdown). It returns
// once the connections are closed, or after StopGrace: the process may
// exit then, and the clients have been told why.
func (e *Engine) Stop() {
	close(e.stop)
	e.LeaveMesh()
	e.mu.Lock()
	e.stopped = true
	e.metrics.Close()
	e.stopLocked("system-shutdown", "the server is shutting down")
	e.mu.Unlock()
	e.wg.Wait()
	for _, d := range *e.dirs.Load() {
		if d.client != nil {
			d.client.Close()
		}
	}
	for deadline := time.Now().Add(StopGrace); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		e.mu.Lock()
		n := len(e.conns)
		e.mu.Unlock()
		if n == 0 {
			break
		}
	}
}

// onChange follows the store's changes, on the store's notifier
// goroutine after each commit. Shell commands wait for it (Store.Settle):
// when a command that changed the configuration ends, the change is live.
func (e *Engine) onChange(c store.Change) {
	switch op := c.Op.(type) {
	case store.ConfigSet:
		if strings.HasPrefix(op.Key, "xmpp.") {
			e.reconcile()
		}
		if op.Key == store.MetricsListen {
			e.applyMetrics()
		}
	case store.ConfigDel:
		if strings.HasPrefix(op.Key, "xmpp.") {
			e.reconcile()
		}
		if op.Key == store.MetricsListen {
			e.applyMetrics()
		}
	case store.DomainPrimary, store.DomainPut, store.DomainDel:
		e.reconcile()
	case store.XMPPReset:
		e.loadDirectories()
		e.reconcile()
	case store.DirectorySet, store.DirectoryDel:
		e.loadDirectories()
	case store.FilePut:
		e.putFile(op.File, false)
		e.loadDirectories() // a trust bundle may have changed
	case store.DialbackSecretInit:
		e.secret.Store(nil) // read again at the next key
	case store.ComponentAdd:
		e.loadComponents()
	case store.ComponentDel:
		e.loadComponents()
		e.comps.KickName(op.Name, &stream.Error{Condition: "not-authorized", Text: "the component was deleted"})
	case store.OfflinePush:
		e.im.OfflineStored(op.User)
	case store.AccountDelete:
		for _, s := range e.router.Sessions(op.JID) {
			s.Close(&stream.Error{Condition: "not-authorized", Text: "the account was deleted"})
		}
	case store.Restored:
		e.putFiles(!e.cfg.Store.Clustered())
		e.secret.Store(nil)
		e.loadComponents()
		e.loadDirectories()
		e.reconcile()
		e.dropGone()
	}
}

// dropGone closes, after a restore, the sessions of accounts and the
// components that are no longer in the store.
func (e *Engine) dropGone() {
	for _, s := range e.router.All() {
		if _, err := e.cfg.Store.Account(s.Bare()); errors.Is(err, store.ErrNotFound) {
			s.Close(&stream.Error{Condition: "not-authorized", Text: "the account no longer exists"})
		}
	}
	known := e.compJIDs.Load()
	for _, j := range e.comps.Connected() {
		if known == nil || !(*known)[j] {
			name, _, _ := strings.Cut(j, ".")
			if _, err := e.cfg.Store.Component(name); errors.Is(err, store.ErrNotFound) {
				e.comps.KickName(name, &stream.Error{Condition: "not-authorized", Text: "the component was deleted"})
			}
		}
	}
}

// Hosted reports whether a domain is served here.
func (e *Engine) Hosted(domain string) bool {
	m := e.hosted.Load()
	return m != nil && (*m)[strings.ToLower(domain)]
}

func (e *Engine) authTimeout() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.xmpp.ClientAuthTimeout
}

func (e *Engine) setError(err error) {
	e.lastErr, e.lastErrAt = err.Error(), time.Now()
	e.errs++
	logging.Problem(e.cfg.Log, "xmpp: %v", err)
}

// Status reports the engine's state.
func (e *Engine) Status() status.XMPP {
	total, by := e.router.Count()
	links, fails := e.s2s.Status()
	open, limit, _ := openFiles()
	e.mu.Lock()
	defer e.mu.Unlock()
	st := status.XMPP{Running: len(e.listeners) > 0, Since: e.since, Sessions: total, ByDomain: by, LastError: e.lastErr, LastErrorAt: e.lastErrAt,
		Components: e.comps.Status(), IdleTimeout: e.cfg.IdleTimeout, MaxStanza: e.cfg.Limits.MaxStanza, OpenFiles: open, FileLimit: limit}
	if rt := e.routes.Load(); rt != nil {
		// The components connected to the other nodes of a cluster.
		here := map[string]int{}
		for i, c := range st.Components {
			here[c.JID] = i
		}
		_, comps := rt.PerNode()
		for node, list := range comps {
			for _, jid := range list {
				if i, ok := here[jid]; !ok {
					st.Components = append(st.Components, status.Component{JID: jid, Connected: true, Node: node})
				} else if !st.Components[i].Connected {
					st.Components[i].Connected, st.Components[i].Node = true, node
				}
			}
		}
	}
	st.PreAuthLimit, st.PreAuthPerAddress, st.PreAuth = e.preauth.limits()
	st.Federation, st.FederationFailures = links, fails
	st.Directories = e.directoryStatus()
	for _, l := range e.listeners {
		st.Listeners = append(st.Listeners, l.label)
	}
	sort.Strings(st.Listeners)
	return st
}

// LocalSessions counts the sessions bound on this node (what a cluster
// node announces in its hellos: cheap, unlike Status).
func (e *Engine) LocalSessions() int { return e.router.Len() }

// UserSessions counts a user's bound sessions (on every node of a
// cluster).
func (e *Engine) UserSessions(bare string) int {
	n := len(e.router.Sessions(bare))
	if c := e.router.Cluster(); c != nil {
		n += c.Resources(bare)
	}
	return n
}

// JoinMesh makes the engine one node of a cluster: its sessions and
// components are published to the other nodes over m, theirs are routed
// to in one hop (package server/cluster/routes). Call it before m starts
// delivering messages (it sets m's handlers for the route table and the
// forwarded stanzas); a second call replaces the first.
func (e *Engine) JoinMesh(m cluster.Mesh) *routes.Table {
	e.LeaveMesh()
	t := routes.New(routes.Config{Mesh: m, Router: e.router, Bounce: e.im.Bounce, Log: e.cfg.Log, Episodes: e.episodes,
		MaxStanza: e.cfg.Limits.MaxStanza, Gone: e.im.RemoteGone, Back: e.im.RemoteBack,
		Kick: func(jid, reason string) { e.kickHere(jid, reason) }})
	e.routes.Store(t)
	for _, c := range e.comps.Connected() {
		t.ComponentUp(c)
	}
	return t
}

// LeaveMesh makes the engine standalone again (cluster disable).
func (e *Engine) LeaveMesh() {
	if t := e.routes.Swap(nil); t != nil {
		t.Close()
	}
}

// Routes is the cluster's route table (nil when standalone), for status:
// sessions and components per node.
func (e *Engine) Routes() *routes.Table { return e.routes.Load() }

func (e *Engine) reconcile() {
	// Read under the lock: reconciles run on the store's notifier and on
	// Start's goroutine, and the last to run must see the last change.
	e.mu.Lock()
	defer e.mu.Unlock()
	// A reconcile that fails at nothing clears the last error: whatever
	// it was (a port in use, a certificate), it is gone now.
	errs := e.errs
	defer func() {
		if e.errs == errs {
			e.lastErr, e.lastErrAt = "", time.Time{}
		}
	}()
	cfg, err := e.cfg.Store.XMPP()
	if e.stopped {
		return
	}
	if err != nil {
		e.setError(err)
		return
	}
	e.xmpp = cfg
	preAuthMax := cfg.PreAuth
	if preAuthMax <= 0 {
		preAuthMax = autoPreAuth(fileLimit())
	}
	e.preauth.setLimits(preAuthMax, max(cfg.PreAuthPerAddress, 1))
	e.rate.Store(&stanzaRate{cfg.StanzaRate, cfg.StanzaBurst})
	hosted := map[string]bool{}
	if cfg.Enabled {
		for _, d := range cfg.Domains {
			hosted[d.Name] = true
		}
	}
	// Sessions of domains no longer served end (when the whole service
	// is disabled, stopLocked below tells them system-shutdown instead).
	if cfg.Enabled {
		for _, s := range e.router.All() {
			if !hosted[s.Domain()] {
				s.Close(&stream.Error{Condition: "host-gone", Text: "the domain is no longer served here"})
			}
		}
	}
	e.hosted.Store(&hosted)
	fed, err := e.cfg.Store.Federation()
	if err != nil {
		e.setError(err)
	}
	e.fed.Store(&fed)
	if !cfg.Enabled || len(cfg.Domains) == 0 {
		e.stopLocked("system-shutdown", "the XMPP service was disabled")
		return
	}
	e.loadTrust(&fed)
	e.s2s.Open()
	defer e.s2s.Reconfigure() // links that the new settings forbid close
	e.loadCertificates(cfg)
	want, err := e.wantListeners(cfg)
	if err != nil {
		e.setError(err)
	}
	for key, l := range e.listeners {
		if _, ok := want[key]; !ok {
			l.l.Close()
			delete(e.listeners, key)
		}
	}
	for key, w := range want {
		if _, ok := e.listeners[key]; ok {
			continue
		}
		ln, err := net.Listen("tcp", w.addr)
		if err != nil {
			e.setError(err)
			continue
		}
		l := &listener{l: ln, direct: w.direct, label: w.label}
		e.listeners[key] = l
		e.wg.Add(1)
		go e.accept(l)
	}
	if len(e.listeners) > 0 && e.since.IsZero() {
		e.since = time.Now()
	}
}

func (e *Engine) stopLocked(condition, text string) {
	for key, l := range e.listeners {
		l.l.Close()
		delete(e.listeners, key)
	}
	e.comps.CloseAll(&stream.Error{Condition: condition, Text: text})
	e.s2s.Close()
	for c, st := range e.conns {
		if st.other {
			continue // closed above, after its stream error is written
		}
		if st.sess != nil {
			st.sess.Close(&stream.Error{Condition: condition, Text: text})
		} else {
			c.Close()
		}
	}
	e.since = time.Time{}
}

type wanted struct {
	addr   string
	direct bool
	label  string
}

func (e *Engine) wantListeners(cfg store.XMPPConfig) (map[string]wanted, error) {
	var hosts []string
	var errs []string
	if cfg.Listen == nil {
		hosts = []string{""}
	}
	for _, a := range cfg.Listen {
		if ip := net.ParseIP(a); ip != nil {
			hosts = append(hosts, a)
			continue
		}
		ifc, err := net.InterfaceByName(a)
		if err != nil {
			errs = append(errs, fmt.Sprintf("listen %s: no such interface or address", a))
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, ad := range addrs {
			if ipn, ok := ad.(*net.IPNet); ok && !ipn.IP.IsLinkLocalUnicast() {
				hosts = append(hosts, ipn.IP.String())
			}
		}
	}
	var ips []netip.Addr
	for _, h := range hosts {
		if ip, err := netip.ParseAddr(h); err == nil && !ip.IsUnspecified() {
			ips = append(ips, ip.Unmap())
		}
	}
	e.listenIPs.Store(&ips)
	out := map[string]wanted{}
	for _, h := range hosts {
		for _, p := range []struct {
			port   int
			direct bool
			kind   string
		}{
			{cfg.PortC2S, false, "c2s, STARTTLS"},
			{cfg.PortC2STLS, true, "c2s-tls, direct TLS"},
			{cfg.PortS2S, false, "s2s, STARTTLS"},
		} {
			addr := net.JoinHostPort(h, strconv.Itoa(p.port))
			label := addr
			if h == "" {
				label = "*:" + strconv.Itoa(p.port)
			}
			out[addr+" "+strconv.FormatBool(p.direct)] = wanted{addr: addr, direct: p.direct, label: label + " (" + p.kind + ")"}
		}
	}
	if len(errs) > 0 {
		return out, errors.New(strings.Join(errs, "; "))
	}
	return out, nil
}

// loadCertificates reads each domain's key, certificate and bundle from
// the files area. A domain whose files do not load keeps no certificate
// and the error is reported.
func (e *Engine) loadCertificates(cfg store.XMPPConfig) {
	certs := map[string]*tls.Certificate{}
	e.primary = ""
	for _, d := range cfg.Domains {
		if d.Primary {
			e.primary = d.Name
		}
		if d.Key == "" || d.Cert == "" {
			continue
		}
		c, err := e.loadPair(d)
		if err != nil {
			e.setError(fmt.Errorf("certificate for %s: %v", d.Name, err))
			continue
		}
		certs[d.Name] = c
		// TLS carries an internationalized name in its A-label form
		// (RFC 6066 §3): xn--bcher-kva.example for bücher.example.
		if a, err := pki.ASCIIDomain(d.Name); err == nil {
			certs[a] = c
		}
	}
	e.certs = certs
}

func (e *Engine) loadPair(d store.Domain) (*tls.Certificate, error) {
	keyPEM, err := e.cfg.Files.ReadFile(d.Key)
	if err != nil {
		return nil, err
	}
	certPEM, err := e.cfg.Files.ReadFile(d.Cert)
	if err != nil {
		return nil, err
	}
	var bundlePEM []byte
	if d.Bundle != "" {
		if bundlePEM, err = e.cfg.Files.ReadFile(d.Bundle); err != nil {
			return nil, err
		}
	}
	return pki.KeyPair(keyPEM, certPEM, bundlePEM)
}

func (e *Engine) tlsConfig() *tls.Config {
	e.mu.Lock()
	n := len(e.certs)
	e.mu.Unlock()
	if n == 0 {
		return nil
	}
	e.tlsOnce.Do(e.buildTLS)
	return e.tlsClient
}

// buildTLS makes the TLS configurations, once: every connection shares
// them (a tls.Config each was half a KiB held for a session's life), and
// the certificate is chosen per connection by SNI through certFor, so
// they never change.
func (e *Engine) buildTLS() {
	getCert := func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if c := e.certFor(strings.ToLower(strings.TrimSuffix(h.ServerName, "."))); c != nil {
			return c, nil
		}
		return nil, errors.New("no certificate")
	}
	// A server connecting to the direct TLS port says so by ALPN
	// (XEP-0368): it is asked for its certificate, for SASL EXTERNAL.
	server := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"xmpp-server"},
		ClientAuth:     tls.RequestClientCert,
		GetCertificate: getCert,
	}
	e.tlsClient = &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"xmpp-client"},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			for _, p := range h.SupportedProtos {
				if p == "xmpp-server" {
					return server, nil
				}
			}
			return nil, nil
		},
		GetCertificate: getCert,
	}
	// Client connections on TLS 1.3 carry on with Parley's record layer
	// after the handshake, which lets go of buffers and cipher state
	// while they are idle.
	tlsrec.Prepare(e.tlsClient)
}

// accept serves a listener until it is closed. A failed accept (no file
// descriptor left, EMFILE; a connection aborted before it was taken) is
// retried after a back-off, never the end of the listener: the failure is
// the engine's last error and one line in the log per episode.
func (e *Engine) accept(l *listener) {
	defer e.wg.Done()
	var (
		delay    time.Duration
		failures int
		since    time.Time
	)
	for {
		c, err := l.l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if delay == 0 {
				delay, since = acceptMinDelay, time.Now()
				e.mu.Lock()
				e.setError(fmt.Errorf("accepting connections on %s: %v (retrying%s)", l.label, err, filesNote()))
				e.mu.Unlock()
			} else {
				delay = min(2*delay, acceptMaxDelay)
			}
			failures++
			select {
			case <-e.stop:
				return
			case <-time.After(delay):
			}
			continue
		}
		if failures > 0 {
			logging.Major(e.cfg.Log, "xmpp: accepting connections on %s again, after %d failed attempts over %v", l.label, failures, time.Since(since).Round(time.Millisecond))
			delay, failures = 0, 0
		}
		// Admitted here, in the order accepted, so that "the oldest"
		// of the pre-auth limit is the one that came first.
		p, refused := e.preauth.admit(c, e.logf)
		if refused != nil {
			go e.refuse(c, l.direct, refused)
			continue
		}
		go e.serve(p, l.direct)
	}
}

// filesNote says how many files are open when that may be why accept
// failed.
func filesNote() string {
	open, limit, err := openFiles()
	if err != nil || limit <= 0 {
		return ""
	}
	return fmt.Sprintf("; %d of %d open files in use", open, limit)
}

// refuse closes a connection the pre-auth limits do not take, with a
// stream error when it is plain XML (on the direct TLS port it is a TLS
// handshake: closed at once).
func (e *Engine) refuse(c net.Conn, direct bool, xe *xml.Error) {
	if !direct {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write(append(stream.Header(stream.NSClient, "", "", stream.NewID()), stream.XMLError(xe).Bytes()...))
	}
	c.Close()
}

func (e *Engine) logf(format string, a ...any) { logging.Problem(e.cfg.Log, "xmpp: "+format, a...) }

// serve runs one connection: direct TLS if on 5223, then the stream header
// decides what it is (client, server or component), by namespace. Until
// its peer authenticates, the connection counts against the pre-auth
// limits.
func (e *Engine) serve(p *pending, direct bool) {
	defer e.preauth.done(p, e.logf)
	var c net.Conn = p
	e.mu.Lock()
	max := e.xmpp.MaxSessions
	st := &connState{}
	e.conns[c] = st
	timeout := e.xmpp.ClientAuthTimeout
	e.mu.Unlock()
	key := c // c becomes the TLS conn below
	release := func() {
		e.mu.Lock()
		delete(e.conns, key)
		e.mu.Unlock()
	}
	// A client stream hands release on to its session's goroutine.
	handedOff := false
	defer func() {
		if !handedOff {
			release()
		}
	}()
	c.SetDeadline(time.Now().Add(timeout))
	if direct {
		cfg := e.tlsConfig()
		if cfg == nil {
			c.Close()
			return
		}
		tc, _, err := tlsrec.Server(c, cfg)
		metrics.TLSHandshake(metrics.In, err)
		if err != nil {
			c.Close()
			return
		}
		c = tc
	}
	rd := xml.NewReader(c, e.cfg.Limits)
	header, err := rd.Header()
	fail := func(ns string, se *stream.Error) {
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Write(stream.Header(ns, "", "", stream.NewID()))
		c.Write(se.Bytes())
		c.Close()
	}
	if err != nil {
		// Bad XML is told; a timeout or a peer gone is closed silently.
		if se := stream.XMLError(err); se != nil {
			fail(stream.NSClient, se)
		} else {
			c.Close()
		}
		return
	}
	ns := ""
	for _, a := range header.Attr {
		if a.Name.Space == "" && a.Name.Local == "xmlns" {
			ns = a.Value
		}
	}
	switch ns {
	case stream.NSClient:
		if total := e.router.Total(); max > 0 && total >= max { // every node's, in a cluster
			text := fmt.Sprintf("the server's limit of %d sessions is reached", max)
			if max == 1 {
				text = "the server's limit of 1 session is reached"
			}
			fail(ns, &stream.Error{Condition: "resource-constraint", Text: text})
			return
		}
		c.SetWriteDeadline(time.Time{})
		handedOff = true
		c2s.Serve(e.c2s, c, rd, header, direct, func(s *c2s.Session) {
			e.preauth.done(p, e.logf)
			e.mu.Lock()
			st.sess = s
			e.mu.Unlock()
		}, release)
	case stream.NSServer:
		e.mu.Lock()
		st.other, st.kind = true, status.ConnServerIn
		e.mu.Unlock()
		e.s2s.ServeIn(c, rd, header, direct || isTLS(c))
	case stream.NSAccept:
		e.mu.Lock()
		st.other, st.kind = true, status.ConnComponent
		e.mu.Unlock()
		component.Serve(e.comp, e.comps, c, rd, header, direct || isTLS(c))
	default:
		fail(stream.NSClient, &stream.Error{Condition: "invalid-namespace", Text: fmt.Sprintf("unknown stream namespace %q", xml.Clip(ns))})
	}
}

// componentRoutes lets the IM core reach external components.
type componentRoutes struct{ e *Engine }

func (c componentRoutes) Known(domain string) bool {
	m := c.e.compJIDs.Load()
	return m != nil && (*m)[domain]
}

func (c componentRoutes) Route(domain string, el *xml.Element) bool {
	return c.e.comps.Route(domain, el)
}

// Connected lists the components connected here and, in a cluster, on
// the other nodes.
func (c componentRoutes) Connected() []string {
	out := c.e.comps.Connected()
	if t := c.e.routes.Load(); t != nil {
		_, by := t.PerNode()
		for _, list := range by {
			out = append(out, list...)
		}
		sort.Strings(out)
		out = slices.Compact(out)
	}
	return out
}

func isTLS(c net.Conn) bool {
	switch c.(type) {
	case *tls.Conn, *tlsrec.Conn:
		return true
	}
	return false
}
