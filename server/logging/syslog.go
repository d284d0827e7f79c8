package logging

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// RFC 5424 fields of Parley's records.
const (
	AppName = "parley"
	// Facility is daemon (3).
	Facility = 3
	// SDID is the structured data element of a connection's record: the
	// enterprise number 32473 is the one RFC 5612 reserves for
	// documentation and examples (Parley has none of its own).
	SDID = "conn@32473"
)

// Bounds of remote logging.
const (
	QueueLen      = 4096 // records waiting for one collector
	MaxUDP        = 2048 // a datagram (RFC 5426 §3.2) is cut at this size
	MaxStream     = 8192 // a TCP/TLS record is cut at this size (rsyslog's default maximum)
	MaxServers    = 8
	dialTimeout   = 5 * time.Second
	writeTimeout  = 10 * time.Second
	minBackoff    = time.Second
	maxBackoff    = time.Minute
	defaultPort   = 514
	defaultTLSPrt = 6514
)

// Format5424 is a record as an RFC 5424 message, without framing:
// <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG.
// MSGID is the connection's tag (XMPPI …) or "-"; the structured data
// carries its id and peer address.
func Format5424(e *entry, hostname string, pid int) []byte {
	var b strings.Builder
	b.Grow(len(e.msg) + 128)
	b.WriteByte('<')
	b.WriteString(strconv.Itoa(Facility*8 + severity(e.level)))
	b.WriteString(">1 ")
	b.WriteString(e.time.UTC().Format("2006-01-02T15:04:05.000000Z"))
	b.WriteByte(' ')
	b.WriteString(headerField(hostname, 255))
	b.WriteByte(' ')
	b.WriteString(AppName)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(pid))
	b.WriteByte(' ')
	b.WriteString(headerField(e.tag, 32))
	b.WriteByte(' ')
	if e.tag == "" {
		b.WriteByte('-')
	} else {
		b.WriteString("[" + SDID + ` id="`)
		b.WriteString(strconv.FormatUint(e.conn, 10))
		b.WriteByte('"')
		if e.peer != "" {
			b.WriteString(` peer="`)
			b.WriteString(sdEscape(e.peer))
			b.WriteByte('"')
		}
		b.WriteByte(']')
	}
	if e.msg != "" {
		b.WriteByte(' ')
		b.WriteString(e.msg)
	}
	return []byte(b.String())
}

// headerField is a header field: printable US-ASCII only, at most n
// characters, "-" when empty (the NILVALUE).
func headerField(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		if c := s[i]; c >= 33 && c <= 126 {
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// sdEscape escapes a PARAM-VALUE: '"', '\' and ']' get a backslash.
func sdEscape(s string) string {
	if !strings.ContainsAny(s, `"\]`) {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`)
	return r.Replace(s)
}

// cut shortens a message to n bytes without splitting a UTF-8 sequence.
func cut(msg []byte, n int) []byte {
	if len(msg) <= n {
		return msg
	}
	for n > 0 && !utf8.RuneStart(msg[n]) {
		n--
	}
	return msg[:n]
}

// Frame is a message as sent over TCP or TLS: octet counting (RFC 6587
// §3.4.1, RFC 5425 §4.3), "LENGTH SP MESSAGE".
func Frame(msg []byte) []byte {
	msg = cut(msg, MaxStream)
	out := make([]byte, 0, len(msg)+6)
	out = strconv.AppendInt(out, int64(len(msg)), 10)
	out = append(out, ' ')
	return append(out, msg...)
}

// Server is a remote syslog collector.
type Server struct {
	Host  string
	Port  int
	Proto string // udp, tcp or tls
}

// Protocols of remote collectors.
var Protocols = []string{"udp", "tcp", "tls"}

// ParseServer reads `<host>[:<port>]` and a protocol (empty: udp). The
// port defaults to 514 (6514 for tls).
func ParseServer(hostport, proto string) (Server, error) {
	proto = strings.ToLower(proto)
	switch proto {
	case "":
		proto = "udp"
	case "udp", "tcp", "tls":
	default:
		return Server{}, fmt.Errorf("unknown protocol %q: use udp, tcp or tls", proto)
	}
	host, port := hostport, 0
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Server{}, fmt.Errorf("%q: the port must be a number from 1 to 65535", p)
		}
		host, port = h, n
	} else if strings.Count(hostport, ":") == 1 {
		return Server{}, fmt.Errorf("%q: give host or host:port", hostport)
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if err := checkHost(host); err != nil {
		return Server{}, err
	}
	if port == 0 {
		port = defaultPort
		if proto == "tls" {
			port = defaultTLSPrt
		}
	}
	return Server{Host: strings.ToLower(host), Port: port, Proto: proto}, nil
}

func checkHost(h string) error {
	if h == "" {
		return errors.New("the host is empty")
	}
	if net.ParseIP(h) != nil {
		return nil
	}
	if len(h) > 253 {
		return fmt.Errorf("%q: a host name has at most 253 characters", h)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q is not a host name or an IP address", h)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q is not a host name or an IP address", h)
			}
		}
	}
	return nil
}

// Addr is host:port.
func (s Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// String is how the setting stores and shows it: "host:port proto".
func (s Server) String() string { return s.Addr() + " " + s.Proto }

// ParseServers reads the stored list (one String a line); bad lines are
// skipped.
func ParseServers(v string) []Server {
	var out []Server
	for _, l := range strings.Split(v, "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		if s, err := ParseServer(f[0], f[1]); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// FormatServers is the stored form of a list.
func FormatServers(list []Server) string {
	var b strings.Builder
	for _, s := range list {
		b.WriteString(s.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// RemoteStatus is what `syslog` shows of one collector.
type RemoteStatus struct {
	Server  Server
	State   string // "connected", "connecting", "unreachable: …"
	Sent    uint64
	Dropped uint64 // records not sent because the queue was full
	Queued  int
}

// remote sends records to one collector from its own goroutine, through a
// bounded queue: a caller never waits for the network; when the queue is
// full the record is dropped and counted. It reconnects after a failure,
// waiting 1 s doubling up to a minute.
type remote struct {
	srv   Server
	roots *x509.CertPool
	q     chan []byte
	stop  chan struct{}
	done  chan struct{}

	sent, dropped atomic.Uint64
	mu            sync.Mutex
	state         string
}

func newRemote(s Server, roots *x509.CertPool) *remote {
	r := &remote{srv: s, roots: roots, q: make(chan []byte, QueueLen), stop: make(chan struct{}), done: make(chan struct{}), state: "connecting"}
	go r.run()
	return r
}

func (r *remote) enqueue(msg []byte) {
	select {
	case r.q <- msg:
	default:
		r.dropped.Add(1)
	}
}

func (r *remote) setState(s string) {
	r.mu.Lock()
	r.state = s
	r.mu.Unlock()
}

func (r *remote) status() RemoteStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RemoteStatus{Server: r.srv, State: r.state, Sent: r.sent.Load(), Dropped: r.dropped.Load(), Queued: len(r.q)}
}

// close stops the sender; what is queued is dropped.
func (r *remote) close() {
	close(r.stop)
	<-r.done
}

func (r *remote) dial() (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	switch r.srv.Proto {
	case "udp":
		return d.Dial("udp", r.srv.Addr())
	case "tls":
		return tls.DialWithDialer(&d, "tcp", r.srv.Addr(), &tls.Config{ServerName: r.srv.Host, RootCAs: r.roots, MinVersion: tls.VersionTLS12})
	}
	return d.Dial("tcp", r.srv.Addr())
}

func (r *remote) run() {
	defer close(r.done)
	backoff := minBackoff
	var pending []byte // a record whose write failed: sent first after reconnecting
	for {
		c, err := r.dial()
		if err != nil {
			r.setState("unreachable: " + err.Error())
			select {
			case <-r.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		r.setState("connected")
		// A stream collector that closes the connection is noticed by a
		// reader (it sends nothing back).
		closed := make(chan struct{})
		if r.srv.Proto != "udp" {
			go func() {
				buf := make([]byte, 512)
				for {
					if _, err := c.Read(buf); err != nil {
						close(closed)
						return
					}
				}
			}()
		}
		if err := r.send(c, &pending, closed); err == nil {
			c.Close()
			return // stopped
		} else {
			r.setState("reconnecting: " + err.Error())
		}
		c.Close()
		backoff = minBackoff
		select {
		case <-r.stop:
			return
		case <-time.After(backoff):
		}
	}
}

var errClosedByPeer = errors.New("the collector closed the connection")

// send writes queued records until stopped (nil) or a write fails.
func (r *remote) send(c net.Conn, pending *[]byte, closed <-chan struct{}) error {
	for {
		msg := *pending
		if msg == nil {
			select {
			case <-r.stop:
				return nil
			case <-closed:
				return errClosedByPeer
			case msg = <-r.q:
			}
		}
		var wire []byte
		if r.srv.Proto == "udp" {
			wire = cut(msg, MaxUDP)
		} else {
			wire = Frame(msg)
		}
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := c.Write(wire); err != nil {
			*pending = msg
			return err
		}
		*pending = nil
		r.sent.Add(1)
	}
}
