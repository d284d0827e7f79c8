// Package metrics owns Parley's Prometheus metrics: their definitions
// (names, help, labels), the calls the rest of the appliance makes when
// something happens (Routed, Login, OfflineStored, TLSHandshake …), and
// the Exporter that serves them over HTTP where `metrics listen` says.
//
// The counters are the process's: package-level, registered on no
// registry of their own; each Exporter builds its own prometheus.Registry
// (never the global default) with them, the process and Go collectors,
// and the collectors that read live state at scrape time (sessions by
// domain, server links, this node's identity).
//
// The calls are cheap: every label value a call can take is resolved to
// its counter once, at init, so counting a routed stanza is an index into
// an array and an atomic add, with no allocation and no lock. A label
// value that comes from outside (a SASL mechanism a client names, a stream
// error condition) is mapped onto a fixed set, "other" for the rest, so no
// peer can grow the number of series.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Namespace prefixes every Parley metric.
const Namespace = "parley"

// Outcome is what Route did with a stanza.
type Outcome uint8

// Outcomes of routing.
const (
	Local     Outcome = iota // handed to a session of this node
	Offline                  // given to offline storage (stored, or bounced by a full queue)
	Component                // handed to an external component connected here
	Remote                   // handed to federation (the s2s layer delivers or bounces it)
	Cluster                  // forwarded to another cluster node
	Bounced                  // refused: an error goes back to the sender
	Nowhere                  // nobody takes it and the RFCs say to drop it (presence, errors, headlines)
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"local", "offline", "component", "remote", "cluster", "bounced", "nowhere"}

func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return "unknown"
}

// The stanza kinds routed, "other" for anything else.
var kindNames = [...]string{"message", "presence", "iq", "other"}

func kindIndex(kind string) int {
	switch kind {
	case "message":
		return 0
	case "presence":
		return 1
	case "iq":
		return 2
	}
	return 3
}

// The SASL mechanisms a login is counted under ("other": a name the
// server does not offer).
var mechNames = [...]string{"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "other"}

func mechIndex(m string) int {
	for i, n := range mechNames[:len(mechNames)-1] {
		if n == m {
			return i
		}
	}
	return len(mechNames) - 1
}

// The reasons a stanza for another server bounces: the stanza error
// conditions the s2s layer uses.
var s2sBounceReasons = [...]string{
	"remote-server-not-found", "remote-server-timeout", "not-allowed", "resource-constraint",
	"service-unavailable", "policy-violation", "other",
}

// The reasons a component fails to connect (component.Registry's
// failures).
var componentFailReasons = map[string]string{
	"unknown component":          "unknown-component",
	"plain connection refused":   "plain-refused",
	"no handshake":               "no-handshake",
	"too many failed handshakes": "throttled",
	"authentication failure":     "bad-secret",
}

// The streams whose outbound queue can overflow, by namespace.
var streamNames = [...]string{"c2s", "s2s", "component", "other"}

func streamIndex(ns string) int {
	switch ns {
	case "jabber:client":
		return 0
	case "jabber:server":
		return 1
	case "jabber:component:accept":
		return 2
	}
	return 3
}

// The queues that refuse a stanza when full.
var queueNames = [...]string{"s2s", "cluster"}

// Queue is a queue that may refuse stanzas when full.
type Queue uint8

// Queues.
const (
	S2SQueue     Queue = iota // stanzas waiting for a link to another server
	ClusterQueue              // a cluster link's queue to another node
)

// Direction of a TLS handshake.
type Direction uint8

// Directions.
const (
	In  Direction = iota // a peer connected to us
	Out                  // we connected to a peer
)

var directionNames = [...]string{"in", "out"}

// The definitions. Vectors are what exporters register; the arrays hold
// each label combination's counter, resolved at init.
var (
	routedVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "stanzas_routed_total",
		Help: "Stanzas routed (the one routing point), by kind (message, presence, iq) and outcome (local, offline, component, remote, cluster, bounced, nowhere).",
	}, []string{"kind", "outcome"})
	loginsVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "logins_total",
		Help: "Successful client authentications, by SASL mechanism.",
	}, []string{"mechanism"})
	loginFailuresVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "login_failures_total",
		Help: "Client authentication attempts that did not succeed (wrong credentials, unknown user, aborted, throttled, unknown mechanism), by SASL mechanism.",
	}, []string{"mechanism"})
	offlineStored = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "offline_messages_stored_total",
		Help: "Messages stored for accounts that were offline.",
	})
	offlineDelivered = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "offline_messages_delivered_total",
		Help: "Stored offline messages written to a session (and deleted from the store).",
	})
	s2sBouncesVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "s2s_bounces_total",
		Help: "Stanzas for other servers bounced to their sender by the federation layer, by stanza error condition.",
	}, []string{"reason"})
	componentConnects = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "component_connects_total",
		Help: "External components (XEP-0114) that completed the handshake.",
	})
	componentFailuresVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "component_auth_failures_total",
		Help: "External component connections refused before or at the handshake, by reason.",
	}, []string{"reason"})
	overflowsVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "queue_overflows_total",
		Help: "Connections closed because their outbound queue overflowed (the peer did not read), by stream.",
	}, []string{"stream"})
	rejectedVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "queue_rejected_total",
		Help: "Stanzas a full queue did not take (bounced, or routed by this node alone), by queue.",
	}, []string{"queue"})
	tlsVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "tls_handshakes_total",
		Help: "TLS handshakes on XMPP connections (STARTTLS and direct TLS), by direction and outcome (ok, failed).",
	}, []string{"direction", "outcome"})
	storeCommit = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "store_commit_duration_seconds",
		Help:    "Time a change proposed to the store waited until its log committed it and it was applied (standalone: the local log's group commit, one synced transaction per batch; in a cluster: raft).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})

	routed           [len(kindNames)][numOutcomes]prometheus.Counter
	logins           [len(mechNames)]prometheus.Counter
	loginFailures    [len(mechNames)]prometheus.Counter
	s2sBounces       [len(s2sBounceReasons)]prometheus.Counter
	componentFailure = map[string]prometheus.Counter{}
	componentOther   prometheus.Counter
	overflows        [len(streamNames)]prometheus.Counter
	rejected         [len(queueNames)]prometheus.Counter
	tls              [2][2]prometheus.Counter
)

// collectors are the process-wide metrics every exporter registers.
var parleyCollectors = []prometheus.Collector{
	routedVec, loginsVec, loginFailuresVec, offlineStored, offlineDelivered, s2sBouncesVec,
	componentConnects, componentFailuresVec, overflowsVec, rejectedVec, tlsVec, storeCommit,
}

func init() {
	for k, kn := range kindNames {
		for o := Outcome(0); o < numOutcomes; o++ {
			routed[k][o] = routedVec.WithLabelValues(kn, o.String())
		}
	}
	for i, m := range mechNames {
		logins[i] = loginsVec.WithLabelValues(m)
		loginFailures[i] = loginFailuresVec.WithLabelValues(m)
	}
	for i, r := range s2sBounceReasons {
		s2sBounces[i] = s2sBouncesVec.WithLabelValues(r)
	}
	for what, label := range componentFailReasons {
		componentFailure[what] = componentFailuresVec.WithLabelValues(label)
	}
	componentOther = componentFailuresVec.WithLabelValues("other")
	for i, s := range streamNames {
		overflows[i] = overflowsVec.WithLabelValues(s)
	}
	for i, q := range queueNames {
		rejected[i] = rejectedVec.WithLabelValues(q)
	}
	for d, dn := range directionNames {
		tls[d][0] = tlsVec.WithLabelValues(dn, "ok")
		tls[d][1] = tlsVec.WithLabelValues(dn, "failed")
	}
}

// Routed counts a stanza of kind (its element name) that Route handled
// with outcome o.
func Routed(kind string, o Outcome) {
	if o < numOutcomes {
		routed[kindIndex(kind)][o].Inc()
	}
}

// Login counts a client's authentication attempt with a SASL mechanism
// (as the client named it), successful or not.
func Login(mechanism string, ok bool) {
	if ok {
		logins[mechIndex(mechanism)].Inc()
	} else {
		loginFailures[mechIndex(mechanism)].Inc()
	}
}

// OfflineStored counts a message stored for an offline account.
func OfflineStored() { offlineStored.Inc() }

// OfflineDelivered counts n stored messages written to a session.
func OfflineDelivered(n int) {
	if n > 0 {
		offlineDelivered.Add(float64(n))
	}
}

// S2SBounce counts a stanza the federation layer bounced with a stanza
// error condition.
func S2SBounce(condition string) {
	i := len(s2sBounceReasons) - 1
	for j, r := range s2sBounceReasons[:i] {
		if r == condition {
			i = j
			break
		}
	}
	s2sBounces[i].Inc()
}

// ComponentConnected counts a component that completed its handshake.
func ComponentConnected() { componentConnects.Inc() }

// ComponentFailed counts a component connection refused, by what the
// component registry records of it ("authentication failure" …).
func ComponentFailed(what string) {
	if c, ok := componentFailure[what]; ok {
		c.Inc()
		return
	}
	componentOther.Inc()
}

// QueueOverflow counts a connection whose outbound queue overflowed; ns
// is its stream's namespace (jabber:client, jabber:server,
// jabber:component:accept).
func QueueOverflow(ns string) { overflows[streamIndex(ns)].Inc() }

// QueueRejected counts a stanza a full queue did not take.
func QueueRejected(q Queue) {
	if int(q) < len(rejected) {
		rejected[q].Inc()
	}
}

// TLSHandshake counts a TLS handshake on an XMPP connection; err is its
// result.
func TLSHandshake(d Direction, err error) {
	if int(d) >= len(tls) {
		return
	}
	if err != nil {
		tls[d][1].Inc()
	} else {
		tls[d][0].Inc()
	}
}

// StoreCommit records how long a proposal to the store's local log took,
// from since (when it was proposed) until now (durable and applied):
// `defer metrics.StoreCommit(time.Now())`.
func StoreCommit(since time.Time) { storeCommit.Observe(time.Since(since).Seconds()) }
