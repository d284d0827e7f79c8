// Package dnstest is a tiny authoritative DNS server for tests: it serves
// the records it is given, in zone-file form, over UDP and TCP on one
// address, and its data can be replaced while it runs.
//
// A name that has no record at all is answered NXDOMAIN; a name that has
// records, but none of the type asked, is answered NOERROR with no data
// (NODATA). CNAME records are followed inside the served data. Answers that
// do not fit a UDP message are truncated (TC set), so clients retry over TCP.
package dnstest

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// Server is a running test DNS server.
type Server struct {
	addr string
	udp  *dns.Server
	tcp  *dns.Server

	mu   sync.RWMutex
	data map[string][]dns.RR // lower-case FQDN → records

	closeOnce sync.Once
}

// Start serves records on addr ("127.0.0.1:0" picks a free port, used for
// both UDP and TCP). Records are zone-file lines such as
// "_xmpp-server._tcp.b.lan. 60 IN SRV 0 5 5269 b.lan." or
// "b.lan. 60 IN A 127.0.0.12".
func Start(addr string, records ...string) (*Server, error) {
	data, err := parse(records)
	if err != nil {
		return nil, err
	}
	pc, ln, err := listen(addr)
	if err != nil {
		return nil, err
	}
	s := &Server{addr: pc.LocalAddr().String(), data: data}
	h := dns.HandlerFunc(s.serve)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: ln, Handler: h}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		errc := make(chan error, 1)
		go func() { errc <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-errc:
			pc.Close()
			ln.Close()
			return nil, fmt.Errorf("dnstest: %v", err)
		}
	}
	return s, nil
}

// listen binds UDP and TCP on the same address and port.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dnstest: address %q: %v", addr, err)
	}
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dnstest: %v", err)
		}
		_, p, _ := net.SplitHostPort(pc.LocalAddr().String())
		ln, err := net.Listen("tcp", net.JoinHostPort(host, p))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
		if port != "0" {
			break
		}
	}
	return nil, nil, fmt.Errorf("dnstest: %v", lastErr)
}

func parse(records []string) (map[string][]dns.RR, error) {
	data := make(map[string][]dns.RR)
	for _, line := range records {
		if strings.TrimSpace(line) == "" {
			continue
		}
		rr, err := dns.NewRR(line)
		if err != nil {
			return nil, fmt.Errorf("dnstest: record %q: %v", line, err)
		}
		if rr == nil {
			continue
		}
		name := strings.ToLower(dns.Fqdn(rr.Header().Name))
		data[name] = append(data[name], rr)
	}
	return data, nil
}

// Set replaces all the served records.
func (s *Server) Set(records ...string) error {
	data, err := parse(records)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.data = data
	s.mu.Unlock()
	return nil
}

// Addr is the "ip:port" the server listens on (UDP and TCP).
func (s *Server) Addr() string { return s.addr }

// Port is the port of Addr.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Close stops the server.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		err = errors.Join(s.udp.Shutdown(), s.tcp.Shutdown())
	})
	return err
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		resp.SetRcode(req, dns.RcodeNotImplemented)
		w.WriteMsg(resp)
		return
	}
	resp.SetReply(req)
	resp.Authoritative = true
	q := req.Question[0]
	name := strings.ToLower(q.Name)

	s.mu.RLock()
	for hops := 0; hops < 8; hops++ {
		rrs, ok := s.data[name]
		if !ok {
			if hops == 0 {
				resp.Rcode = dns.RcodeNameError
			}
			break
		}
		var cname *dns.CNAME
		found := false
		for _, rr := range rrs {
			if t := rr.Header().Rrtype; t == q.Qtype || q.Qtype == dns.TypeANY {
				resp.Answer = append(resp.Answer, dns.Copy(rr))
				found = true
			} else if c, ok := rr.(*dns.CNAME); ok {
				cname = c
			}
		}
		if found || cname == nil {
			break
		}
		resp.Answer = append(resp.Answer, dns.Copy(cname))
		name = strings.ToLower(cname.Target)
	}
	s.mu.RUnlock()

	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
			resp.SetEdns0(opt.UDPSize(), false)
		}
		resp.Truncate(size)
	}
	w.WriteMsg(resp)
}
