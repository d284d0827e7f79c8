package server

import (
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/metrics/metricstest"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// metricsAddr is a free address:port on this work's test loopback range.
func metricsAddr(t *testing.T, host int) string {
	t.Helper()
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.23.%d:0", host))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func scrapeMetrics(addr string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestMetricsTraffic: the engine's counters move with what clients do —
// a STARTTLS handshake, a login and a failed one, a message routed to a
// session, one stored offline and delivered at the next login — and a
// scrape shows the sessions of each hosted domain as they are.
func TestMetricsTraffic(t *testing.T) {
	f := start(t)
	type probe struct {
		name   string
		labels []string
		want   float64
	}
	probes := []probe{
		{"parley_tls_handshakes_total", []string{"direction", "in", "outcome", "ok"}, 3},
		{"parley_logins_total", []string{"mechanism", "PLAIN"}, 2},
		{"parley_login_failures_total", []string{"mechanism", "PLAIN"}, 1},
		{"parley_stanzas_routed_total", []string{"kind", "message", "outcome", "local"}, 1},
		{"parley_stanzas_routed_total", []string{"kind", "message", "outcome", "offline"}, 2},
		{"parley_offline_messages_stored_total", nil, 2},
		{"parley_offline_messages_delivered_total", nil, 2},
		{"parley_store_commit_duration_seconds", nil, 3}, // at least: 2 stored, 1 deletion
	}
	before := make([]float64, len(probes))
	for i, p := range probes {
		before[i] = metricstest.Value(t, p.name, p.labels...)
	}

	// A failed login first, on its own stream.
	bad := f.dial()
	bad.open("example.lan")
	bad.starttls("example.lan")
	bad.open("example.lan")
	bad.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong")) + `</auth>`)
	if el := bad.next(); el.Name.Local != "failure" {
		t.Fatalf("a wrong password: %s", el)
	}

	a := f.dial()
	a.login("alice", "alice-password", "a")
	for i := 1; i <= 2; i++ {
		a.send(fmt.Sprintf(`<message to='bob@example.lan' type='chat' id='m%d'><body>%d</body></message>`, i, i))
	}
	a.ping("sync")
	b := f.dial()
	b.login("bob", "bob-password", "b")
	b.send(`<presence/>`)
	for i := 0; i < 2; i++ {
		b.expect("offline message", func(el *xml.Element) bool { return el.Name.Local == "message" && el.Child("", "body") != nil })
	}
	a.send(`<message to='bob@example.lan/b' type='chat' id='live'><body>live</body></message>`)
	b.expect("the live message", func(el *xml.Element) bool { return el.Get("id") == "live" })
	waitFor(t, "the offline messages deleted", func() bool {
		msgs, _ := f.st.Offline("bob@example.lan")
		return len(msgs) == 0
	})

	for i, p := range probes {
		got := metricstest.Value(t, p.name, p.labels...) - before[i]
		ok := got == p.want
		if p.name == "parley_store_commit_duration_seconds" || p.name == "parley_tls_handshakes_total" {
			ok = got >= p.want // other writes (last activity, rosters) commit too
		}
		if !ok {
			t.Errorf("%s%v moved by %v, want %v", p.name, p.labels, got, p.want)
		}
	}

	// The exporter listens where the node-local setting says, live.
	addr := metricsAddr(t, 210)
	if err := f.st.SetLocal(store.MetricsListen, addr); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the metrics listener", func() bool { return f.eng.Metrics().Listening == addr })
	body, err := scrapeMetrics(addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`parley_sessions{domain="example.lan"} 2`,
		`parley_node_info{hostname="",node_id="",version="` + f.eng.cfg.Version + `"} 1`,
		`parley_s2s_links{direction="out",state="up"} 0`,
		`parley_components_connected 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the scrape has no %q:\n%s", want, body)
		}
	}
	f.eng.SetNode(func() (string, string) { return "n1", "xmpp1" })
	if body, _ := scrapeMetrics(addr); !strings.Contains(body, `parley_node_info{hostname="xmpp1",node_id="n1",version="`+f.eng.cfg.Version+`"} 1`) {
		t.Errorf("the node's identity is not in the scrape")
	}
	b.send(`</stream:stream>`)
	waitFor(t, "bob's session to end", func() bool {
		body, _ := scrapeMetrics(addr)
		return strings.Contains(body, `parley_sessions{domain="example.lan"} 1`)
	})
	if err := f.st.DelLocal(store.MetricsListen); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the metrics listener to close", func() bool { return f.eng.Metrics().Listening == "" })
	if _, err := scrapeMetrics(addr); err == nil {
		t.Fatal("still served after metrics listen none")
	}
}

// TestMetricsListenAtStart: nothing listens without the setting; a
// setting stored before the engine starts is listened on at Start, and
// Stop closes the listener.
func TestMetricsListenAtStart(t *testing.T) {
	addr := metricsAddr(t, 211)
	st, files := openData(t, t.TempDir())
	defer st.Close()
	defer files.Close()
	eng := New(Config{Store: st, Files: files, Log: logging.Discard()})
	eng.Start()
	if m := eng.Metrics(); m.Listening != "" || m.Listen != "" {
		t.Fatalf("listening with no setting: %+v", m)
	}
	eng.Stop()
	if err := st.SetLocal(store.MetricsListen, addr); err != nil {
		t.Fatal(err)
	}
	eng = New(Config{Store: st, Files: files, Log: logging.Discard()})
	eng.Start()
	if m := eng.Metrics(); m.Listening != addr || m.Listen != addr {
		eng.Stop()
		t.Fatalf("after a start with the setting: %+v", m)
	}
	if _, err := scrapeMetrics(addr); err != nil {
		t.Fatal(err)
	}
	eng.Stop()
	if _, err := scrapeMetrics(addr); err == nil {
		t.Fatal("still served after Stop")
	}
}

// TestMetricsComponentsAndFederation: a component's failed and good
// handshakes, a message routed to it, and a message to another server
// bounced because federation is off, each move their counter.
func TestMetricsComponentsAndFederation(t *testing.T) {
	f := start(t)
	f.addBridge("cb1")
	type probe struct {
		name   string
		labels []string
		want   float64
	}
	probes := []probe{
		{"parley_component_auth_failures_total", []string{"reason", "bad-secret"}, 1},
		{"parley_component_auth_failures_total", []string{"reason", "unknown-component"}, 1},
		{"parley_component_connects_total", nil, 1},
		{"parley_stanzas_routed_total", []string{"kind", "message", "outcome", "component"}, 1},
		{"parley_stanzas_routed_total", []string{"kind", "message", "outcome", "remote"}, 1},
		{"parley_s2s_bounces_total", []string{"reason", "remote-server-not-found"}, 1},
	}
	before := make([]float64, len(probes))
	for i, p := range probes {
		before[i] = metricstest.Value(t, p.name, p.labels...)
	}
	if _, got := f.connectComponent("cb1.example.lan", "wrong-secret"); got != "not-authorized" {
		t.Fatalf("a wrong secret: %s", got)
	}
	if _, got := f.connectComponent("cb9.example.lan", cbSecret); got != "host-unknown" {
		t.Fatalf("an unknown component: %s", got)
	}
	comp, got := f.connectComponent("cb1.example.lan", cbSecret)
	if got != "handshake" {
		t.Fatalf("handshake: %s", got)
	}
	a := f.dial()
	a.login("alice", "alice-password", "phone")
	a.send(`<message to='room@cb1.example.lan' type='chat'><body>call me</body></message>`)
	comp.expect("the message", func(el *xml.Element) bool { return el.Name.Local == "message" })
	a.send(`<message to='x@elsewhere.lan' type='chat' id='fed'><body>hi</body></message>`)
	if e := a.expect("the bounce", func(el *xml.Element) bool { return el.Get("id") == "fed" }); stanzaError(e) != "remote-server-not-found" {
		t.Fatalf("the message to another server: %s", e)
	}
	addr := metricsAddr(t, 212)
	f.st.SetLocal(store.MetricsListen, addr)
	waitFor(t, "the listener", func() bool { return f.eng.Metrics().Listening == addr })
	body, err := scrapeMetrics(addr)
	if err != nil || !strings.Contains(body, "parley_components_connected 1\n") {
		t.Errorf("the scrape does not count the connected component (%v)", err)
	}
	for i, p := range probes {
		if got := metricstest.Value(t, p.name, p.labels...) - before[i]; got != p.want {
			t.Errorf("%s%v moved by %v, want %v", p.name, p.labels, got, p.want)
		}
	}
}

// TestMetricsFailures: a TLS handshake that fails on the direct TLS port
// and a SASL mechanism the server does not offer are counted, the
// mechanism under "other" whatever its name.
func TestMetricsFailures(t *testing.T) {
	f := start(t)
	tlsFailed := metricstest.Value(t, "parley_tls_handshakes_total", "direction", "in", "outcome", "failed")
	other := metricstest.Value(t, "parley_login_failures_total", "mechanism", "other")

	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", f.tlsPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("<stream:stream xmlns='jabber:client'>")) // XML, not a TLS hello
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, c) // until the server closes
	c.Close()
	waitFor(t, "the failed handshake counted", func() bool {
		return metricstest.Value(t, "parley_tls_handshakes_total", "direction", "in", "outcome", "failed")-tlsFailed == 1
	})

	cl := f.dial()
	cl.open("example.lan")
	cl.starttls("example.lan")
	cl.open("example.lan")
	cl.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-INVENTED-` + strings.Repeat("A", 200) + `'>=</auth>`)
	if el := cl.next(); el.Name.Local != "failure" || el.Child("", "invalid-mechanism") == nil {
		t.Fatalf("an unknown mechanism: %s", el)
	}
	if got := metricstest.Value(t, "parley_login_failures_total", "mechanism", "other") - other; got != 1 {
		t.Errorf("parley_login_failures_total{mechanism=\"other\"} moved by %v, want 1", got)
	}
}
