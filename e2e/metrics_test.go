package e2e

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// promtoolBin checks the exposition: Debian's package prometheus (its
// service kept off by make deps).
const promtoolBin = "/usr/bin/promtool"

// TestMetrics: through the built binary and ssh, `metrics listen` makes
// the appliance serve Prometheus metrics where it was told and nowhere
// else (its listening sockets are read from /proc before and after);
// slixmpp clients log in (SCRAM-SHA-256 and PLAIN, and a wrong password),
// chat, and leave a message for an offline user, and a scrape shows it
// all — sessions by domain, logins and failures by mechanism, messages
// routed locally and offline, offline stored and delivered, TLS
// handshakes, the node's host name and id; Debian's promtool accepts the
// exposition; bad addresses and a port in use are one-line errors that
// keep the setting; the setting survives a restart; `metrics listen none`
// closes the listener.
func TestMetrics(t *testing.T) {
	if _, err := os.Stat(promtoolBin); err != nil {
		t.Fatalf("%s is missing: install the Debian package prometheus (make deps)", promtoolBin)
	}
	const domain = "metrics.lan"
	x := startXMPPOn(t, options{hostname: "metrics-node"}, "127.0.23.10", domain,
		"alice@"+domain, "alice-pass-12", "bob@"+domain, "bob-pass-1234", "carol@"+domain, "carol-pass-12")
	metricsHost := "127.0.23.11"
	addr := net.JoinHostPort(metricsHost, portOn(t, metricsHost))
	url := "http://" + addr + "/metrics"

	// Nothing listens before it is told: SSH and the three XMPP ports.
	base := listening(t, x.proc.Process.Pid)
	want := []string{"127.0.0.1:" + x.port, net.JoinHostPort(x.host, x.c2s), net.JoinHostPort(x.host, x.c2sTLS), net.JoinHostPort(x.host, x.s2sPort)}
	slices.Sort(want)
	if !slices.Equal(base, want) {
		t.Fatalf("listening before metrics listen: %v, want %v", base, want)
	}
	if out := x.mustAdmin(t, "metrics"); !strings.Contains(out, "Listen     : none") || !strings.Contains(out, "State      : not listening") {
		t.Fatalf("metrics before it is told:\n%s", out)
	}

	// Bad input: one line, nothing stored, nothing listens.
	mustFail(t, x.admin("metrics listen "+metricsHost), "metrics listen without a port", `"`+metricsHost+`" is not address:port`)
	mustFail(t, x.admin("metrics listen localhost:9100"), "metrics listen with a host name", `"localhost" is not an IP address`)
	mustFail(t, x.admin("metrics listen 127.0.0.1:"+x.port), "metrics listen on the SSH port",
		"metrics listen: the server cannot listen there: 127.0.0.1:"+x.port+": bind: address already in use; the previous setting is kept")
	if got := listening(t, x.proc.Process.Pid); !slices.Equal(got, base) {
		t.Fatalf("listening after refused metrics listen: %v", got)
	}

	if out := x.mustAdmin(t, "metrics listen "+addr); out != "Metrics: scrape "+url+"\n" {
		t.Fatalf("metrics listen: %q", out)
	}
	if got := listening(t, x.proc.Process.Pid); !slices.Equal(got, sortedWith(base, addr)) {
		t.Fatalf("listening after metrics listen %s: %v", addr, got)
	}

	// Traffic.
	alice := x.login(t, "alice@"+domain+"/desk", "alice-pass-12", clientOpts{mech: "SCRAM-SHA-256"})
	bob := x.login(t, "bob@"+domain+"/phone", "bob-pass-1234", clientOpts{mech: "PLAIN"})
	x.loginFails(t, "bob@"+domain, "wrong-password", clientOpts{mech: "PLAIN"})
	alice.send(t, "bob@"+domain+"/phone", "hello over metrics")
	bob.message(t, "alice@"+domain, "hello over metrics")
	alice.send(t, "carol@"+domain, "while you were away")
	alice.ping(t, "") // the message is stored by now
	carol := x.login(t, "carol@"+domain+"/laptop", "carol-pass-12", clientOpts{mech: "PLAIN"})
	carol.message(t, "alice@"+domain, "while you were away")

	nodeID := strings.TrimSpace(readFile(t, filepath.Join(x.dataDir, "node-id")))
	var text string
	var m map[string]float64
	// The delivered offline message is counted once the flush deleted it.
	waitUntil(t, "the offline message counted as delivered", func() bool {
		text = scrapeText(t, url)
		m = parseExposition(t, text)
		return m[`parley_offline_messages_delivered_total`] == 1
	})
	for series, v := range map[string]float64{
		`parley_sessions{domain="` + domain + `"}`:                           3,
		`parley_logins_total{mechanism="SCRAM-SHA-256"}`:                     1,
		`parley_logins_total{mechanism="PLAIN"}`:                             2,
		`parley_login_failures_total{mechanism="PLAIN"}`:                     1,
		`parley_login_failures_total{mechanism="SCRAM-SHA-256"}`:             0,
		`parley_stanzas_routed_total{kind="message",outcome="local"}`:        1,
		`parley_stanzas_routed_total{kind="message",outcome="offline"}`:      1,
		`parley_stanzas_routed_total{kind="message",outcome="bounced"}`:      0,
		`parley_offline_messages_stored_total`:                               1,
		`parley_tls_handshakes_total{direction="in",outcome="ok"}`:           4,
		`parley_tls_handshakes_total{direction="in",outcome="failed"}`:       0,
		`parley_s2s_links{direction="out",state="up"}`:                       0,
		`parley_components_connected`:                                        0,
		`parley_node_info{hostname="metrics-node",node_id="` + nodeID + `"}`: 1,
	} {
		got, ok := m[series]
		if !ok {
			t.Errorf("the scrape has no series %s", series)
		} else if got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
	for _, name := range []string{"parley_store_commit_duration_seconds_count", "process_resident_memory_bytes", "go_goroutines"} {
		if m[name] <= 0 {
			t.Errorf("%s = %v, want > 0", name, m[name])
		}
	}
	if t.Failed() {
		t.Logf("the scrape:\n%s", text)
	}

	// The three clients are quiet: their sessions are parked (no
	// goroutine, buffer or cipher state), and a parked session wakes for
	// its client's next stanza.
	waitUntil(t, "the three quiet sessions parked", func() bool {
		return parseExposition(t, scrapeText(t, url))[`parley_sessions_parked`] == 3
	})
	alice.ping(t, "")
	bob.send(t, "alice@"+domain+"/desk", "after a pause")
	alice.message(t, "bob@"+domain, "after a pause")

	// Debian's promtool accepts the exposition.
	check := exec.Command(promtoolBin, "check", "metrics")
	check.Stdin = strings.NewReader(text)
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}

	// The setting is this node's, kept across a restart.
	out := x.mustAdmin(t, "metrics")
	for _, w := range []string{"Listen     : " + addr, "State      : listening: scrape " + url, "Node       : host name metrics-node, node id " + nodeID, "Last error : none"} {
		if !strings.Contains(out, w) {
			t.Errorf("metrics does not say %q:\n%s", w, out)
		}
	}
	alice.logout(t)
	bob.logout(t)
	carol.logout(t)
	x.restart()
	if got := scrapeText(t, url); !strings.Contains(got, `parley_sessions{domain="`+domain+`"} 0`) {
		t.Fatalf("after a restart the metrics are not served, or count old sessions:\n%s", got)
	}

	// none: the listener closes.
	if out := x.mustAdmin(t, "metrics listen none"); out != "Metrics: not listening\n" {
		t.Fatalf("metrics listen none: %q", out)
	}
	if got := listening(t, x.proc.Process.Pid); !slices.Equal(got, base) {
		t.Fatalf("listening after metrics listen none: %v, want %v", got, base)
	}
	if _, err := http.Get(url); err == nil {
		t.Fatalf("%s is still served after metrics listen none", url)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sortedWith(list []string, more ...string) []string {
	out := append(slices.Clone(list), more...)
	slices.Sort(out)
	return out
}

func scrapeText(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape %s: %s %v", url, resp.Status, err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("scrape %s: Content-Type %q, want the text exposition format", url, ct)
	}
	return string(b)
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$`)

// parseExposition maps each sample ("name{labels}" as written) to its
// value.
func parseExposition(t *testing.T, text string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, l := range strings.Split(text, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		m := sampleLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("not a sample line: %q", l)
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", l, err)
		}
		// The node's version label changes with every build: left out.
		key := regexp.MustCompile(`,version="[^"]*"`).ReplaceAllString(m[1], "")
		out[key] = v
	}
	return out
}

// listening lists the TCP addresses process pid listens on (from
// /proc/PID/fd and /proc/net/tcp{,6}), sorted.
func listening(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, file := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, file))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			out = append(out, procAddr(t, fields[1]))
		}
		f.Close()
	}
	slices.Sort(out)
	return out
}

// procAddr decodes /proc/net/tcp's address form (hex, the IP in host
// byte order by 32-bit word, little-endian here).
func procAddr(t *testing.T, s string) string {
	t.Helper()
	ipHex, portHex, _ := strings.Cut(s, ":")
	raw, err := hex.DecodeString(ipHex)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+4 <= len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, _ := strconv.ParseUint(portHex, 16, 16)
	ip := net.IP(raw)
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(int(port)))
}
