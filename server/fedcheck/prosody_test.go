package fedcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/resolve"
	"github.com/parley-xmpp/parley/server/resolve/dnstest"
)

// TestCheckAgainstProsody runs the check against a real Prosody serving
// b.lan (Debian's prosody, run as its own user): what the check reports of
// a real server's stream, STARTTLS, certificate and authentication offers.
func TestCheckAgainstProsody(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no real peer")
	}
	prosody, err := exec.LookPath("prosody")
	if err != nil {
		t.Skip("prosody is not installed")
	}
	pu, err := user.Lookup("prosody")
	if err != nil {
		t.Skip("no prosody user")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run prosody as its own user")
	}
	uid, _ := strconv.Atoi(pu.Uid)
	gid, _ := strconv.Atoi(pu.Gid)

	dir, err := os.MkdirTemp("", "fedcheck-prosody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	os.Chown(dir, uid, gid)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chown(p, uid, gid)
		return p
	}

	ca := makeCA(t, "Prosody Test CA")
	leaf := makeCert(t, "b.lan", []string{"b.lan"}, ca, false, time.Now().AddDate(1, 0, 0))
	ours := makeCert(t, "a.lan", []string{"a.lan"}, ca, false, time.Now().AddDate(1, 0, 0))
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := write("b.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	crtFile := write("b.crt", append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.cert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...))
	caFile := write("ca.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}))

	const ip = "127.0.0.231"
	free := func() int {
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	s2sPort, c2sPort := free(), free()

	dns, err := dnstest.Start("127.0.0.1:0",
		fmt.Sprintf("_xmpp-server._tcp.b.lan. 60 IN SRV 0 5 %d b.lan.", s2sPort),
		"b.lan. 60 IN A "+ip,
		"a.lan. 60 IN A 127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	host, port, _ := net.SplitHostPort(dns.Addr())
	resolvConf := write("resolv.conf", []byte("nameserver "+host+"@"+port+"\n"))
	os.Chmod(resolvConf, 0o644)

	cfg := fmt.Sprintf(`
daemonize = false
data_path = %[1]q
log = { { levels = { min = "info" }, to = "file", filename = %[1]q .. "/prosody.log" } }
interfaces = { %[2]q }
c2s_ports = { %[3]d }
s2s_ports = { %[4]d }
http_ports = { }
https_ports = { }
modules_enabled = { "tls", "dialback", "saslauth", "disco" }
s2s_secure_auth = false
unbound = { resolvconf = %[5]q }
ssl = { cafile = %[6]q }
VirtualHost "b.lan"
  ssl = { key = %[7]q, certificate = %[8]q, cafile = %[6]q }
`, dir, ip, c2sPort, s2sPort, resolvConf, caFile, keyFile, crtFile)
	cfgFile := write("prosody.cfg.lua", []byte(cfg))

	cmd := exec.Command("setpriv", "--reuid=prosody", "--regid=prosody", "--init-groups", prosody, "--config", cfgFile)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start prosody: %v", err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(s2sPort)), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "prosody.log"))
			t.Fatalf("prosody did not listen on %s:%d: %v\n%s", ip, s2sPort, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	saved := now
	now = time.Now
	defer func() { now = saved }()
	var steps []Step
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok := Run(ctx, Config{
		Resolver:    &resolve.Resolver{Servers: func() []string { return []string{dns.Addr()} }, Timeout: 2 * time.Second},
		Roots:       func() (*x509.CertPool, error) { return roots, nil },
		ClientCert:  func(string) *tls.Certificate { return &ours.tls },
		DialTimeout: 5 * time.Second,
	}, "a.lan", "b.lan", func(s Step) { steps = append(steps, s) })
	out := format(steps)
	t.Logf("against Prosody:\n%s", out)
	if !ok {
		log, _ := os.ReadFile(filepath.Join(dir, "prosody.log"))
		t.Errorf("check failed against a working Prosody:\n%s\nprosody log:\n%s", out, log)
	}
	for _, want := range []string{
		fmt.Sprintf("ok   SRV _xmpp-server._tcp.b.lan: b.lan:%d (priority 0, weight 5)", s2sPort),
		"ok   A/AAAA b.lan: " + ip,
		"ok   stream " + ip,
		"ok   STARTTLS: offered",
		"ok   TLS: TLS 1.",
		"info certificate: names DNS:b.lan; subject CN=b.lan; issuer CN=Prosody Test CA",
		"ok   certificate chain: verified",
		"ok   certificate name: names b.lan",
		"ok   SASL EXTERNAL: offered: b.lan accepts our certificate for a.lan",
		"ok   dialback: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q", want)
		}
	}
}
