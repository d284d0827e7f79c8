package e2e

// The harness of the federation tests (issue 5): real peers from Debian's
// packages on loopback addresses of their own with the default XMPP ports,
// and a real DNS server (dnsmasq) that the test starts and that every
// server uses for its _xmpp-server._tcp and A lookups.
//
//   - startDNS runs dnsmasq in the foreground on one address, serving the
//     test's .lan zone from its command line (and NXDOMAIN for the rest of
//     .lan). Prosody's resolver (libunbound) answers NXDOMAIN by itself for
//     .test, hence .lan.
//   - startProsody runs Prosody 0.12 as the prosody user (it refuses root)
//     with its own configuration and data directory, c2s on IP:5222 and s2s
//     on IP:5269, a self-signed certificate, dialback allowed, and
//     unbound = { resolvconf = FILE } pointing at the test's DNS server.
//   - startEjabberd runs ejabberd 23.01 in the foreground as the ejabberd
//     user with its own ctl-config, config dir, spool and logs. Its SRV
//     lookups use Erlang's resolver, but the A/AAAA lookups of the SRV
//     targets use the C library (net:getaddrinfo in xmpp_stream_out), which
//     reads /etc/resolv.conf whatever an inetrc says: so it runs in a mount
//     namespace of its own (unshare -m) where the test's resolv.conf is
//     bind-mounted over /etc/resolv.conf. Nothing outside that process sees
//     it.
//
// Every peer is a process group killed at cleanup (SIGTERM, then SIGKILL);
// when a peer does not come up the test fails with its log.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The peers' programs (Debian packages dnsmasq-base, prosody, ejabberd,
// util-linux).
const (
	dnsmasqBin     = "/usr/sbin/dnsmasq"
	prosodyBin     = "/usr/bin/prosody"
	prosodyctlBin  = "/usr/bin/prosodyctl"
	ejabberdctlBin = "/usr/sbin/ejabberdctl"
	setprivBin     = "/usr/bin/setpriv"
	unshareBin     = "/usr/bin/unshare"
)

// Bounds of the peers.
const (
	peerBootTimeout = 30 * time.Second // a peer listening after its start
	peerStopTimeout = 5 * time.Second  // after SIGTERM, then SIGKILL
)

// needPeers fails the test unless the peer programs are installed.
func needPeers(t *testing.T) {
	t.Helper()
	needXMPPClients(t)
	for bin, pkg := range map[string]string{dnsmasqBin: "dnsmasq-base", prosodyBin: "prosody", prosodyctlBin: "prosody",
		ejabberdctlBin: "ejabberd", setprivBin: "util-linux", unshareBin: "util-linux"} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s is missing: install the Debian package %s (apt-get install %s, or make deps); the federation tests drive the real peer", bin, pkg, pkg)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("the federation tests start Prosody and ejabberd as their own users and dnsmasq on port 53: run them as root")
	}
}

// --- addresses ------------------------------------------------------------

// fedNet is a /24 of loopback addresses for one test, so that tests with
// servers on the default ports can run in parallel: .53 the DNS server,
// .21 Prosody, .22 ejabberd, .31 and .32 Parley appliances, .41 and up
// whatever else the test needs.
type fedNet struct{ n int }

var fedNetSeq atomic.Int32

func newFedNet(t *testing.T) fedNet {
	// 54 networks in turn: more than ever run at once, even with -count.
	return fedNet{201 + int(fedNetSeq.Add(1)-1)%54}
}

func (f fedNet) ip(host int) string { return fmt.Sprintf("127.0.%d.%d", f.n, host) }

// Well-known hosts of a fedNet.
const (
	hostDNS     = 53
	hostProsody = 21
	hostEjab    = 22
	hostParley  = 31
	hostParley2 = 32
)

// --- processes ------------------------------------------------------------

// peerProc is a peer's process group and where it logs.
type peerProc struct {
	name     string
	cmd      *exec.Cmd
	out      *syncBuffer
	logFiles []string
	exited   chan struct{}
}

// startPeerProc starts cmd in a process group of its own, killed when t
// ends; logFiles are shown with its output when it fails.
func startPeerProc(t *testing.T, name string, cmd *exec.Cmd, logFiles ...string) *peerProc {
	t.Helper()
	p := &peerProc{name: name, cmd: cmd, out: &syncBuffer{}, logFiles: logFiles, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s (%s): %v", name, cmd.Path, err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.stop)
	return p
}

// stop ends the process group: SIGTERM, and SIGKILL if it lingers.
func (p *peerProc) stop() {
	pgid := p.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(peerStopTimeout):
	}
	// The leader may be gone while others of the group live on (erl's
	// children): make sure.
	syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(peerStopTimeout):
	}
}

func (p *peerProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// logs is the process's output and the tail of its log files.
func (p *peerProc) logs() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- %s output:\n%s", p.name, tail(p.out.String(), 80))
	for _, f := range p.logFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(&b, "--- %s: %v\n", f, err)
			continue
		}
		fmt.Fprintf(&b, "--- %s:\n%s", f, tail(string(data), 80))
	}
	return b.String()
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[%d lines before]\n", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "")
}

// waitTCP waits until every address accepts TCP connections; the test
// fails with the peer's logs if it exits or does not listen in time.
func (p *peerProc) waitTCP(t *testing.T, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(peerBootTimeout)
	for _, addr := range addrs {
		for {
			if !p.running() {
				t.Fatalf("%s exited before listening on %s (%v)\n%s", p.name, addr, p.cmd.ProcessState, p.logs())
			}
			c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not listen on %s within %v: %v\n%s", p.name, addr, peerBootTimeout, err, p.logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// peerDir makes a scratch directory that a peer's user can read (the
// test's own temporary directories are private to root), removed when t
// ends.
func peerDir(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "parley-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chownTree gives a directory tree to a system user.
func chownTree(t *testing.T, dir, username string) {
	t.Helper()
	u, err := user.Lookup(username)
	if err != nil {
		t.Fatalf("the user %s is missing (is its Debian package installed?): %v", username, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// asUser is the setpriv prefix that runs a program as a system user.
func asUser(username string, args ...string) []string {
	return append([]string{setprivBin, "--reuid=" + username, "--regid=" + username, "--init-groups"}, args...)
}

// selfSigned makes a self-signed certificate for name (CN and DNS SAN) in
// dir: base.key and base.crt.
func selfSigned(t *testing.T, dir, base, name string) (key, crt string) {
	t.Helper()
	key, crt = filepath.Join(dir, base+".key"), filepath.Join(dir, base+".crt")
	run(t, dir, opensslBin, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN="+name, "-addext", "subjectAltName=DNS:"+name)
	return key, crt
}

// --- DNS ------------------------------------------------------------------

// dnsServer is a running dnsmasq.
type dnsServer struct {
	ip   string
	proc *peerProc
}

// hostRec is an A record.
func hostRec(name, ip string) string { return "--host-record=" + name + "," + ip }

// srvRec is an _xmpp-server._tcp SRV record of domain pointing at target.
func srvRec(domain, target string, port int) string {
	return fmt.Sprintf("--srv-host=_xmpp-server._tcp.%s,%s,%d,0,5", domain, target, port)
}

// xmppDomainRecs are the records of an XMPP domain served at ip: its A
// record and an SRV record to it on 5269.
func xmppDomainRecs(domain, ip string) []string {
	return []string{hostRec(domain, ip), srvRec(domain, domain, 5269)}
}

// startDNS runs dnsmasq on listenIP:53 serving records (hostRec, srvRec)
// and NXDOMAIN for every other name under .lan; nothing is forwarded.
func startDNS(t *testing.T, listenIP string, records ...string) *dnsServer {
	t.Helper()
	args := []string{"--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll", "--conf-file=/dev/null",
		"--local=/lan/", "--listen-address=" + listenIP, "--bind-interfaces", "--port=53",
		"--pid-file=", "--log-facility=-", "--log-queries"}
	args = append(args, records...)
	p := startPeerProc(t, "dnsmasq on "+listenIP, exec.Command(dnsmasqBin, args...))
	d := &dnsServer{ip: listenIP, proc: p}
	deadline := time.Now().Add(peerBootTimeout)
	for {
		if !p.running() {
			t.Fatalf("dnsmasq exited (%v)\n%s", p.cmd.ProcessState, p.logs())
		}
		_, err := d.lookup("probe.lan")
		var de *net.DNSError
		if err == nil || errors.As(err, &de) && de.IsNotFound {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq does not answer on %s:53 within %v: %v\n%s", listenIP, peerBootTimeout, err, p.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lookup asks this server (and no other) for the addresses of name.
func (d *dnsServer) lookup(name string) ([]string, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "udp", net.JoinHostPort(d.ip, "53"))
	}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return r.LookupHost(ctx, name)
}

// resolvConf writes a resolv.conf naming the server, for a peer.
func (d *dnsServer) resolvConf(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(p, []byte("nameserver "+d.ip+"\noptions timeout:2 attempts:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// --- XMPP peers -----------------------------------------------------------

// peerConfig says how a peer server starts.
type peerConfig struct {
	ip       string
	domain   string
	dns      *dnsServer
	certName string   // the name its certificate is for; default domain
	users    []string // local part, password, local part, password…
}

// xmppPeer is a running Prosody or ejabberd.
type xmppPeer struct {
	kind   string // "prosody" or "ejabberd"
	ip     string
	c2s    string // its client port: 5222 unless taken
	domain string
	proc   *peerProc
}

// clients returns an xmppAppliance that only serves to start slixmpp
// clients against the peer (x.login, x.client): its address and c2s port.
func (p *xmppPeer) clients() *xmppAppliance {
	return &xmppAppliance{host: p.ip, c2s: p.c2s, domain: p.domain}
}

// defaultPort returns port if it can be bound on ip, else another port
// free there: a wildcard listener of another program on the machine (say
// a stray server on 0.0.0.0:5222) takes the default client ports of every
// loopback address. Client ports only matter to the test's own clients;
// the s2s port must be the default, so mustBind checks it instead.
func defaultPort(t *testing.T, ip, port string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
	if err != nil {
		return portOn(t, ip)
	}
	l.Close()
	return port
}

// mustBind fails the test unless port can be bound on ip.
func mustBind(t *testing.T, ip, port string) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
	if err != nil {
		t.Fatalf("port %s on %s is taken (%v): is another XMPP server listening on all addresses (ss -ltnp sport = %s)? Stop it: the federation tests need the default s2s port", port, ip, err, port)
	}
	l.Close()
}

// login logs a slixmpp client in to the peer as jid.
func (p *xmppPeer) login(t *testing.T, jid, password string) *xclient {
	t.Helper()
	return p.clients().login(t, jid, password, clientOpts{})
}

// startProsody runs Prosody for c.domain on c.ip (c2s 5222, s2s 5269),
// with c.users registered.
func startProsody(t *testing.T, c peerConfig) *xmppPeer {
	t.Helper()
	needPeers(t)
	dir := peerDir(t, "prosody")
	if c.certName == "" {
		c.certName = c.domain
	}
	key, crt := selfSigned(t, dir, c.domain, c.certName)
	resolv := c.dns.resolvConf(t, dir)
	mustBind(t, c.ip, "5269")
	c2s := defaultPort(t, c.ip, "5222")
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o750); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "prosody.cfg.lua")
	// Global options first: after VirtualHost they would apply to it only.
	conf := fmt.Sprintf(`-- Prosody for a Parley federation test
pidfile = %[1]q
data_path = %[2]q
log = { { levels = { min = "debug" }, to = "console" } }
interfaces = { %[3]q }
c2s_ports = { %[9]s }
c2s_direct_tls_ports = { }
s2s_ports = { 5269 }
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = false
s2s_timeout = 10
authentication = "internal_hashed"
storage = "internal"
unbound = { resolvconf = %[4]q }
modules_enabled = { "roster", "saslauth", "tls", "dialback", "disco", "presence", "message", "iq", "ping" }
modules_disabled = { "admin_socket", "offline" }
certificates = %[5]q

VirtualHost %[6]q
  ssl = { key = %[7]q, certificate = %[8]q }
`, filepath.Join(dir, "prosody.pid"), filepath.Join(dir, "data"), c.ip, resolv, dir, c.domain, key, crt, c2s)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	chownTree(t, dir, "prosody")
	for i := 0; i+1 < len(c.users); i += 2 {
		args := asUser("prosody", prosodyctlBin, "--config", cfg, "register", c.users[i], c.domain, c.users[i+1])
		run(t, dir, args[0], args[1:]...)
	}
	args := asUser("prosody", prosodyBin, "--config", cfg, "-F")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	p := &xmppPeer{kind: "prosody", ip: c.ip, c2s: c2s, domain: c.domain,
		proc: startPeerProc(t, "prosody "+c.domain+" on "+c.ip, cmd)}
	p.proc.waitTCP(t, net.JoinHostPort(c.ip, c2s), net.JoinHostPort(c.ip, "5269"))
	return p
}

// startEjabberd runs ejabberd for c.domain on c.ip (c2s 5222, s2s 5269,
// STARTTLS required on both, dialback enabled), with c.users registered.
func startEjabberd(t *testing.T, c peerConfig) *xmppPeer {
	t.Helper()
	needPeers(t)
	dir := peerDir(t, "ejabberd")
	if c.certName == "" {
		c.certName = c.domain
	}
	key, crt := selfSigned(t, dir, c.domain, c.certName)
	pem := filepath.Join(dir, c.domain+".pem")
	var both []byte
	for _, f := range []string{crt, key} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		both = append(both, data...)
	}
	for _, d := range []string{"spool", "logs"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, dir, filepath.Base(pem), both)
	resolv := c.dns.resolvConf(t, dir)
	mustBind(t, c.ip, "5269")
	c2s := defaultPort(t, c.ip, "5222")
	// Erlang's own resolver (SRV lookups) reads the resolv.conf that
	// ejabberdctl's inetrc names; the bind mount below covers the C
	// library's.
	writeFile(t, dir, "inetrc", []byte(fmt.Sprintf("{resolv_conf, %q}.\n{lookup, [file, dns]}.\n", resolv)))
	// The distribution port replaces epmd (no daemon left behind), on
	// 127.0.0.1 only; ejabberdctl register reaches the node through it.
	distPort := freePort(t)
	writeFile(t, dir, "ejabberdctl.cfg", []byte("ERL_OPTIONS=\"-env ERL_CRASH_DUMP_BYTES 0 -kernel inet_dist_use_interface {127,0,0,1}\"\nERL_DIST_PORT="+distPort+"\n"))
	conf := fmt.Sprintf(`# ejabberd for a Parley federation test
hosts:
  - %[1]q
loglevel: info
log_rotate_count: 0
certfiles:
  - %[2]q
listen:
  - port: %[4]s
    ip: %[3]q
    module: ejabberd_c2s
    starttls_required: true
  - port: 5269
    ip: %[3]q
    module: ejabberd_s2s_in
s2s_use_starttls: required
s2s_access: s2s
s2s_dns_timeout: 5
s2s_timeout: 10
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  s2s:
    allow: all
auth_method: internal
auth_password_format: scram
modules:
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  mod_s2s_dialback: {}
`, c.domain, pem, c.ip, c2s)
	cfg := writeFile(t, dir, "ejabberd.yml", []byte(conf))
	for _, f := range []string{pem, key, cfg} {
		os.Chmod(f, 0o640)
	}
	chownTree(t, dir, "ejabberd")
	node := fmt.Sprintf("ejab%d@localhost", time.Now().UnixNano()%1e9)
	ctl := []string{ejabberdctlBin, "--ctl-config", filepath.Join(dir, "ejabberdctl.cfg"), "--config-dir", dir,
		"--config", cfg, "--spool", filepath.Join(dir, "spool"), "--logs", filepath.Join(dir, "logs"), "--node", node}
	env := append(os.Environ(), "HOME="+dir) // the Erlang cookie lives there
	// A mount namespace of its own, where the test's resolv.conf is
	// /etc/resolv.conf, then the ejabberd user.
	script := `mount --bind "$0" /etc/resolv.conf && exec "$@"`
	args := append([]string{unshareBin, "--mount", "--propagation", "private", "/bin/sh", "-c", script, resolv},
		asUser("ejabberd", append(ctl, "foreground")...)...)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir, cmd.Env = dir, env
	p := &xmppPeer{kind: "ejabberd", ip: c.ip, c2s: c2s, domain: c.domain,
		proc: startPeerProc(t, "ejabberd "+c.domain+" on "+c.ip, cmd)} // its output is its log
	p.proc.waitTCP(t, net.JoinHostPort(c.ip, c2s), net.JoinHostPort(c.ip, "5269"))
	for i := 0; i+1 < len(c.users); i += 2 {
		reg := asUser("ejabberd", append(ctl, "register", c.users[i], c.domain, c.users[i+1])...)
		var out []byte
		var err error
		// ejabberd opens its ports before it has created every table:
		// until the password table exists, register aborts with
		// no_exists (seen on a loaded machine). Tried again, for 20 s at most.
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(250 * time.Millisecond) {
			ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
			rc := exec.CommandContext(ctx, reg[0], reg[1:]...)
			rc.Dir, rc.Env = dir, env
			out, err = rc.CombinedOutput()
			cancel()
			if err == nil || !bytes.Contains(out, []byte("no_exists")) || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("ejabberdctl register %s %s: %v\n%s\n%s", c.users[i], c.domain, err, out, p.proc.logs())
		}
	}
	return p
}

// TestPeersFederateWithEachOther proves the harness without Parley:
// Prosody and ejabberd find each other through the test's DNS server,
// authenticate each other by dialback over TLS, and their users exchange
// messages both ways.
func TestPeersFederateWithEachOther(t *testing.T) {
	t.Parallel()
	needPeers(t)
	n := newFedNet(t)
	dns := startDNS(t, n.ip(hostDNS), append(xmppDomainRecs("pros.lan", n.ip(hostProsody)), xmppDomainRecs("ejab.lan", n.ip(hostEjab))...)...)
	if got, err := dns.lookup("ejab.lan"); err != nil || len(got) != 1 || got[0] != n.ip(hostEjab) {
		t.Fatalf("the test DNS server answers %v, %v for ejab.lan, want %s", got, err, n.ip(hostEjab))
	}
	pros := startProsody(t, peerConfig{ip: n.ip(hostProsody), domain: "pros.lan", dns: dns, users: []string{"alice", "pw-alice"}})
	ejab := startEjabberd(t, peerConfig{ip: n.ip(hostEjab), domain: "ejab.lan", dns: dns, users: []string{"bob", "pw-bob-42"}})
	alice := pros.login(t, "alice@pros.lan", "pw-alice")
	bob := ejab.login(t, "bob@ejab.lan", "pw-bob-42")

	alice.send(t, "bob@ejab.lan", "hello ejabberd")
	waitPeerMessage(t, bob, "alice@pros.lan", "hello ejabberd", pros, ejab)
	bob.send(t, "alice@pros.lan", "hello prosody")
	waitPeerMessage(t, alice, "bob@ejab.lan", "hello prosody", pros, ejab)
}

// waitPeerMessage waits for a chat message at c; when it does not come the
// test fails with the client's transcript and the servers' logs.
func waitPeerMessage(t *testing.T, c *xclient, from, body string, servers ...interface{ logs() string }) {
	t.Helper()
	deadline := time.NewTimer(xmppWait)
	defer deadline.Stop()
	for {
		e, ended := c.take(func(e *xev) bool {
			return e.Ev == "message" && e.Type != "error" && bareOf(e.From) == from && e.Body == body
		})
		if e != nil {
			return
		}
		if !ended {
			select {
			case <-c.notify:
				continue
			case <-deadline.C:
			}
		}
		var b strings.Builder
		for _, s := range servers {
			b.WriteString(s.logs())
		}
		t.Fatalf("%s: no message %q from %s within %v; the client printed:\n%s%s", c.name, body, from, xmppWait, c.transcript(), b.String())
	}
}

func (p *xmppPeer) logs() string { return p.proc.logs() }
