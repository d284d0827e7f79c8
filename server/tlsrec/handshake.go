package tlsrec

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"slices"
)

// Prepare readies cfg, a server configuration shared by connections, for
// Server: for a client that offers TLS 1.3 (and that cfg's own
// GetConfigForClient, if any, leaves to cfg) the handshake runs on a copy
// of cfg that hands the connection its traffic secrets. Call it once,
// before cfg is used.
func Prepare(cfg *tls.Config) {
	inner := cfg.GetConfigForClient
	cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		if inner != nil {
			if c, err := inner(h); c != nil || err != nil {
				return c, err
			}
		}
		s, ok := h.Conn.(*shim)
		if !ok || !slices.Contains(h.SupportedVersions, tls.VersionTLS13) {
			return nil, nil
		}
		c := cfg.Clone()
		c.GetConfigForClient = nil
		c.KeyLogWriter = &s.secrets
		return c, nil
	}
}

// Server runs crypto/tls's server handshake on raw with cfg (made ready by
// Prepare). A TLS 1.3 connection comes back as a *Conn, which carries on
// the record layer itself; any other as the *tls.Conn.
// The handshake is bounded by raw's deadlines.
func Server(raw net.Conn, cfg *tls.Config) (net.Conn, tls.ConnectionState, error) {
	s := &shim{Conn: raw, hdrN: headerLen}
	tc := tls.Server(s, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, tls.ConnectionState{}, err
	}
	st := tc.ConnectionState()
	s.handshaken = true
	defer func() { s.last, s.wpart = nil, nil }()
	su := suiteByID(st.CipherSuite)
	if st.Version != tls.VersionTLS13 || su == nil || s.secrets.client == nil || s.secrets.server == nil {
		return tc, st, nil
	}
	// crypto/tls read nothing past the client's Finished (the shim saw
	// to it) and holds no data; a session ticket, if it sent one, was the
	// last record it wrote, under the server's traffic secret.
	outSeq := uint64(0)
	if s.ticket(su) {
		outSeq = 1
	}
	c := newConn(raw, su, s.secrets.client, s.secrets.server, outSeq)
	clear(s.secrets.client)
	clear(s.secrets.server)
	return c, st, nil
}

// shim is the connection crypto/tls does the handshake on. It hands
// crypto/tls one record at a time, never reading past a record's end, so
// that whatever the client sends after its Finished is left in the socket
// for the Conn; and it keeps the last record crypto/tls wrote.
type shim struct {
	net.Conn
	handshaken bool // after the handshake: reads and writes pass through
	left       int  // bytes of the current record still to read (-1: header)
	hdr        [headerLen]byte
	hdrN       int    // of hdr, given to crypto/tls
	last       []byte // the last record written, while in the handshake
	wpart      []byte // a record being written across Write calls
	secrets    keyLog
}

// Read gives at most the rest of the current record (its header first).
func (s *shim) Read(p []byte) (int, error) {
	if s.handshaken {
		return s.Conn.Read(p)
	}
	if s.hdrN < headerLen {
		n := copy(p, s.hdr[s.hdrN:])
		s.hdrN += n
		return n, nil
	}
	if s.left == 0 {
		// At a record's start: the header alone, read exactly.
		if _, err := io.ReadFull(s.Conn, s.hdr[:]); err != nil {
			return 0, err
		}
		s.left = int(s.hdr[3])<<8 | int(s.hdr[4])
		s.hdrN = copy(p, s.hdr[:])
		return s.hdrN, nil
	}
	if len(p) > s.left {
		p = p[:s.left]
	}
	n, err := s.Conn.Read(p)
	s.left -= n
	return n, err
}

// Write passes b on and keeps the last whole record of the handshake.
func (s *shim) Write(b []byte) (int, error) {
	if !s.handshaken {
		s.wpart = append(s.wpart, b...)
		for len(s.wpart) >= headerLen {
			n := headerLen + (int(s.wpart[3])<<8 | int(s.wpart[4]))
			if len(s.wpart) < n {
				break
			}
			s.last = append(s.last[:0], s.wpart[:n]...)
			s.wpart = s.wpart[n:]
		}
		if len(s.wpart) == 0 {
			s.wpart = nil
		}
	}
	return s.Conn.Write(b)
}

// NetConn is the connection underneath (for stream.Authenticated).
func (s *shim) NetConn() net.Conn { return s.Conn }

// ticket reports whether the last record crypto/tls wrote was protected
// by the server's application traffic secret at sequence 0 (a
// NewSessionTicket), which only the secret's holder can make.
func (s *shim) ticket(su *suite) bool {
	r := s.last
	if len(r) <= headerLen || r[0] != typeData {
		return false
	}
	var h half
	h.set(su, s.secrets.server)
	a, err := h.cipher()
	if err != nil {
		return false
	}
	nonce := h.nonce()
	body := bytes.Clone(r[headerLen:])
	plain, err := a.Open(body[:0], nonce, body, r[:headerLen])
	if err != nil {
		return false
	}
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	return i > 0 && plain[i] == typeHandshake && plain[0] == msgNewSessionTicket
}

// keyLog takes the application traffic secrets from crypto/tls's key log
// (NSS format: label, client random, secret, in hex). They stay in
// memory: nothing is written anywhere.
type keyLog struct {
	client, server []byte
}

func (k *keyLog) Write(line []byte) (int, error) {
	f := bytes.Fields(line)
	if len(f) != 3 {
		return 0, errors.New("tlsrec: unexpected key log line")
	}
	var dst *[]byte
	switch string(f[0]) {
	case "CLIENT_TRAFFIC_SECRET_0":
		dst = &k.client
	case "SERVER_TRAFFIC_SECRET_0":
		dst = &k.server
	default:
		return len(line), nil
	}
	b := make([]byte, hex.DecodedLen(len(f[2])))
	if _, err := hex.Decode(b, f[2]); err != nil || len(b) > 48 {
		return 0, errors.New("tlsrec: unexpected key log line")
	}
	*dst = b
	clear(f[2])
	return len(line), nil
}
