// Package ldaptest runs a real OpenLDAP server (Debian's slapd) for tests:
// its own configuration (slapd.conf, mdb backend) and data in a temporary
// directory, a private CA and a server certificate for StartTLS and ldaps,
// users loaded with slapadd, and slapd started on a given loopback address
// and stopped by its pid. No system service is involved.
package ldaptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Base is the suffix of the test directory; People holds its users.
const (
	Base     = "dc=example,dc=lan"
	People   = "ou=people," + Base
	Groups   = "ou=groups," + Base
	RootDN   = "cn=admin," + Base
	RootPW   = "root-secret"
	ReaderDN = "cn=reader," + Base
	ReaderPW = "reader-secret"
)

// User is one user of the test directory.
type User struct {
	UID, Mail, Password string
	CN, Given, SN       string
	Phone, Title, O, OU string
	Photo               []byte
}

// Users returns the directory's users: alice (with a jpegPhoto and every
// vCard attribute), bob, and a user whose uid and address hold the filter
// characters ")(" and "*".
func Users() []User {
	return []User{
		{UID: "alice", Mail: "alice@example.lan", Password: "alice-pw-1", CN: "Alice Liddell", Given: "Alice", SN: "Liddell",
			Phone: "+44 1865 270000", Title: "Explorer", O: "Wonderland Ltd", OU: "Research", Photo: Photo()},
		{UID: "bob", Mail: "bob@example.lan", Password: "bob-pw-12", CN: "Bob Builder", Given: "Bob", SN: "Builder"},
		{UID: "o)(k*", Mail: "o)(k*@example.lan", Password: "odd-pw-12", CN: "Odd Name", SN: "Name"},
	}
}

// Photo is a small JPEG image (alice's jpegPhoto).
func Photo() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	for x := 0; x < 8; x++ {
		for y := 0; y < 8; y++ {
			img.Set(x, y, color.RGBA{uint8(x * 30), uint8(y * 30), 200, 255})
		}
	}
	var b bytes.Buffer
	jpeg.Encode(&b, img, &jpeg.Options{Quality: 90})
	return b.Bytes()
}

// Server is a running slapd.
type Server struct {
	Dir       string
	IP        string
	Port      int    // ldap:// (StartTLS offered)
	TLSPort   int    // ldaps://
	CAPEM     []byte // the private CA that signed the server's certificate
	cmd       *exec.Cmd
	conf, url string
}

// URL is ldap://ip:port; LDAPS is ldaps://ip:tlsport.
func (s *Server) URL() string   { return fmt.Sprintf("ldap://%s:%d", s.IP, s.Port) }
func (s *Server) LDAPS() string { return fmt.Sprintf("ldaps://%s:%d", s.IP, s.TLSPort) }

// Available reports whether slapd and slapadd are installed.
func Available() bool {
	for _, p := range []string{"slapd", "slapadd"} {
		if _, err := lookPath(p); err != nil {
			return false
		}
	}
	return true
}

func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(d, name); fileExists(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: install slapd (make deps)", name)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// freePort finds a free TCP port on ip.
func freePort(t testing.TB, ip string) int {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start starts slapd on ip with the users of Users (and a group "staff"
// of alice and bob), and stops it when the test ends.
func Start(t testing.TB, ip string) *Server {
	t.Helper()
	if !Available() {
		t.Skip("slapd is not installed (make deps installs it)")
	}
	dir := t.TempDir()
	s := &Server{Dir: dir, IP: ip, Port: freePort(t, ip), TLSPort: freePort(t, ip)}
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	s.CAPEM = writeCerts(t, dir, ip)
	s.conf = filepath.Join(dir, "slapd.conf")
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile %[1]s/ca.pem
TLSCertificateFile %[1]s/server.pem
TLSCertificateKeyFile %[1]s/server.key
sizelimit 5000
database mdb
maxsize 16777216
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
directory %[1]s/db
access to attrs=userPassword by anonymous auth by self write by * none
access to * by * read
`, dir, Base, RootDN, RootPW)
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Add(t, baseLDIF())
	s.Start(t)
	t.Cleanup(s.Stop)
	return s
}

// Add loads LDIF with slapadd (slapd stopped) or ldapadd (running).
func (s *Server) Add(t testing.TB, ldif string) {
	t.Helper()
	if s.cmd != nil {
		cmd := exec.Command("ldapadd", "-x", "-H", s.URL(), "-D", RootDN, "-w", RootPW)
		cmd.Stdin = strings.NewReader(ldif)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ldapadd: %v\n%s", err, out)
		}
		return
	}
	slapadd, err := lookPath("slapadd")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(slapadd, "-f", s.conf, "-q")
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v\n%s", err, out)
	}
}

// Modify applies an LDIF of changes with ldapmodify (slapd running).
func (s *Server) Modify(t testing.TB, ldif string) {
	t.Helper()
	cmd := exec.Command("ldapmodify", "-x", "-H", s.URL(), "-D", RootDN, "-w", RootPW)
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ldapmodify: %v\n%s", err, out)
	}
}

// Delete deletes an entry with ldapdelete (slapd running).
func (s *Server) Delete(t testing.TB, dn string) {
	t.Helper()
	if out, err := exec.Command("ldapdelete", "-x", "-H", s.URL(), "-D", RootDN, "-w", RootPW, dn).CombinedOutput(); err != nil {
		t.Fatalf("ldapdelete %s: %v\n%s", dn, err, out)
	}
}

// Start (re)starts slapd and waits until it accepts connections.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	slapd, err := lookPath("slapd")
	if err != nil {
		t.Fatal(err)
	}
	// -d 0: stay in the foreground (the test owns the process), no debug.
	s.cmd = exec.Command(slapd, "-d", "0", "-f", s.conf, "-h", s.URL()+"/ "+s.LDAPS()+"/")
	var logb bytes.Buffer
	s.cmd.Stdout, s.cmd.Stderr = &logb, &logb
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(s.IP, fmt.Sprint(s.Port)), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.Stop()
			t.Fatalf("slapd did not start: %v\n%s", err, logb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops slapd (by its pid) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

func baseLDIF() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n", Base)
	fmt.Fprintf(&b, "dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n\n", Base)
	fmt.Fprintf(&b, "dn: ou=groups,%s\nobjectClass: organizationalUnit\nou: groups\n\n", Base)
	fmt.Fprintf(&b, "dn: %s\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\ncn: reader\nuserPassword: %s\n\n", ReaderDN, ReaderPW)
	var members []string
	for _, u := range Users() {
		b.WriteString(UserLDIF(u))
		if u.UID == "alice" || u.UID == "bob" {
			members = append(members, "member: "+UserDN(u.UID))
		}
	}
	fmt.Fprintf(&b, "dn: cn=staff,%s\nobjectClass: groupOfNames\ncn: staff\n%s\n\n", Groups, strings.Join(members, "\n"))
	return b.String()
}

// UserDN is the DN of the user with this uid (escaped per RFC 4514).
func UserDN(uid string) string {
	var e strings.Builder
	for _, r := range uid {
		if strings.ContainsRune(`,+"\<>;=#`, r) {
			e.WriteByte('\\')
		}
		e.WriteRune(r)
	}
	return "uid=" + e.String() + "," + People
}

// UserLDIF is one user's entry as LDIF (every value base64, so any
// character goes).
func UserLDIF(u User) string {
	var b strings.Builder
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s:: %s\n", k, base64.StdEncoding.EncodeToString([]byte(v)))
		}
	}
	line("dn", UserDN(u.UID))
	b.WriteString("objectClass: inetOrgPerson\n")
	line("uid", u.UID)
	line("mail", u.Mail)
	line("cn", u.CN)
	line("givenName", u.Given)
	line("sn", u.SN)
	line("telephoneNumber", u.Phone)
	line("title", u.Title)
	line("o", u.O)
	line("ou", u.OU)
	line("userPassword", u.Password)
	if len(u.Photo) > 0 {
		line("jpegPhoto", string(u.Photo))
	}
	b.WriteString("\n")
	return b.String()
}

// writeCerts makes a private CA and a certificate for ip signed by it, and
// returns the CA's PEM.
func writeCerts(t testing.TB, dir, ip string) []byte {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Parley test directory CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ip},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP(ip)}, DNSNames: []string{"ldap.example.lan"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	for name, data := range map[string][]byte{
		"ca.pem":     caPEM,
		"server.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"server.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caPEM
}
