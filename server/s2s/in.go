package s2s

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/parley-xmpp/parley/server/limit"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/metrics"
	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// maxPendingDialback bounds the dialback verifications one incoming stream
// may have running at once.
const maxPendingDialback = 16

// maxDomainPairs bounds the domain pairs one incoming stream may
// authenticate (XEP-0220 lets a peer multiplex several domains).
const maxDomainPairs = 256

// inStream is one incoming server stream and the domain pairs
// authenticated on it.
type inStream struct {
	s     *Service
	peer  string
	since time.Time
	id    uint64 // the connection's number in the log (XMPPS-id)

	mu       sync.Mutex
	raw      net.Conn
	conn     *stream.Conn // after TLS, every write goes through it
	authed   map[pair]status.Auth
	chain    []*x509.Certificate
	pending  int
	closing  bool
	verified map[string]bool // remote domain → its client certificate verified
	stanzas  map[pair]uint64 // received, per authenticated pair

	rate limit.Pace // stanzas received (the read loop's own)
}

// tag names the stream's connection in the log.
func (st *inStream) tag() logging.Conn {
	return logging.Conn{Kind: logging.KindServerIn, ID: st.id, Peer: st.peer}
}

func (st *inStream) links() []status.Link {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []status.Link
	for p, method := range st.authed {
		out = append(out, status.Link{Local: p.local, Remote: p.remote, Direction: status.In, State: status.Up, Auth: method, TLS: true, Peer: st.peer, Since: st.since,
			Stanzas: st.stanzas[p]})
	}
	return out
}

func (st *inStream) write(b []byte) {
	st.mu.Lock()
	conn, raw := st.conn, st.raw
	st.mu.Unlock()
	if conn != nil {
		conn.SendRaw(b)
		return
	}
	raw.SetWriteDeadline(time.Now().Add(10 * time.Second))
	raw.Write(b)
}

func (st *inStream) close(e *stream.Error) { st.closeWith(e.Bytes()) }

func (st *inStream) closeWith(b []byte) {
	st.mu.Lock()
	conn, raw := st.conn, st.raw
	st.closing = true
	st.mu.Unlock()
	if conn != nil {
		conn.CloseWith(b)
		return
	}
	raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
	raw.Write(b)
	raw.Close()
}

func (st *inStream) reconfigure(fed store.FederationConfig) {
	if !fed.Enabled {
		st.close(&stream.Error{Condition: "policy-violation", Text: "federation was disabled on this server"})
		return
	}
	st.mu.Lock()
	bad := ""
	for p := range st.authed {
		if !fed.Permitted(p.remote) || (fed.SecureRequired(p.remote) && !st.verified[p.remote]) {
			bad = p.remote
		}
	}
	st.mu.Unlock()
	if bad != "" {
		st.close(&stream.Error{Condition: "policy-violation", Text: "federation with " + bad + " is no longer allowed here"})
	}
}

func (st *inStream) isAuthed(local, remote string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	_, ok := st.authed[pair{local, remote}]
	return ok
}

// count reports whether a pair is authenticated on the stream and, if so,
// counts a stanza received for it.
func (st *inStream) count(local, remote string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	p := pair{local, remote}
	if _, ok := st.authed[p]; !ok {
		return false
	}
	st.stanzas[p]++
	return true
}

func (st *inStream) remoteAuthed(remote string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	for p := range st.authed {
		if p.remote == remote {
			return true
		}
	}
	return false
}

func (st *inStream) mark(local, remote string, method status.Auth) {
	st.mu.Lock()
	st.authed[pair{local, remote}] = method
	raw := st.raw
	st.mu.Unlock()
	stream.Authenticated(raw) // no longer counts as unauthenticated
	st.tag().Major(st.s.cfg.Log, "s2s: %s ← %s authenticated (%s)", local, remote, method)
}

// certFor reports whether the peer's client certificate verifies for a
// remote domain (cached per domain).
func (st *inStream) certFor(remote string) bool {
	st.mu.Lock()
	chain := st.chain
	v, ok := st.verified[remote]
	st.mu.Unlock()
	if ok {
		return v
	}
	v = len(chain) > 0 && st.s.verifyPeer(chain, remote, "") == nil
	st.mu.Lock()
	if len(st.verified) < 64 {
		st.verified[remote] = v
	}
	st.mu.Unlock()
	return v
}

// ServeIn runs an incoming server stream whose header has been read. direct
// tells whether TLS is already up (the direct TLS port).
func (s *Service) ServeIn(c net.Conn, rd *xml.Reader, header *xml.Element, direct bool) {
	st := &inStream{s: s, peer: c.RemoteAddr().String(), since: time.Now(), raw: c, id: logging.NextID(), authed: map[pair]status.Auth{}, verified: map[string]bool{},
		stanzas: map[pair]uint64{}}
	st.rate = limit.NewPace(func() (float64, int) { return limit.LinkRate(s.cfg.StanzaRate) })
	if tc, ok := c.(*tls.Conn); ok {
		st.chain = tc.ConnectionState().PeerCertificates
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.in[st] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.in, st)
		s.mu.Unlock()
	}()
	err := st.serve(rd, header, direct)
	if b := stream.Closing(err); b != nil {
		st.closeWith(b)
	} else {
		st.mu.Lock()
		st.closing = true
		conn := st.conn
		st.mu.Unlock()
		if conn != nil {
			conn.CloseWith(nil)
		} else {
			c.Close()
		}
	}
	st.mu.Lock()
	conn := st.conn
	st.mu.Unlock()
	if conn != nil {
		<-conn.Done()
	}
}

func (st *inStream) serve(rd *xml.Reader, header *xml.Element, isTLS bool) error {
	s := st.s
	deadline := time.Now().Add(s.cfg.AuthTimeout())
	st.raw.SetDeadline(deadline)
	saslDone := false
	headerSent := false
	local := ""
	fail := func(cond, text string) error {
		if !headerSent {
			st.write(serverHeader(local, "", stream.NewID()))
		}
		return &stream.Error{Condition: cond, Text: text}
	}
	for restart := 0; ; restart++ {
		headerSent = false
		if restart > 4 {
			return fail("policy-violation", "too many stream restarts")
		}
		to, from := header.Get("to"), header.Get("from")
		if j, err := jid.Parse(to); err == nil && j.Localpart() == "" && j.Resourcepart() == "" && s.cfg.Handler.Local(j.Domainpart()) {
			local = j.Domainpart()
		} else {
			return fail("host-unknown", "\""+to+"\" is not served here")
		}
		if from != "" {
			if j, err := jid.Parse(from); err == nil && j.Localpart() == "" && j.Resourcepart() == "" {
				from = j.Domainpart()
			} else {
				return fail("invalid-from", "the stream's from is not a domain")
			}
		}
		if ns := defaultNS(header); ns != stream.NSServer {
			return fail("invalid-namespace", "expected a jabber:server stream")
		}
		if v := header.Get("version"); !strings.HasPrefix(v, "1.") {
			return fail("unsupported-version", "XMPP version 1.0 is required")
		}
		fed := s.cfg.Federation()
		if !fed.Enabled {
			return fail("policy-violation", "federation with other servers is disabled here")
		}
		if from != "" && !fed.Permitted(from) {
			return fail("policy-violation", "federation with "+from+" is not allowed by this server's policy")
		}
		id := stream.NewID()
		st.write(serverHeader(local, from, id))
		headerSent = true
		var f strings.Builder
		f.WriteString("<stream:features>")
		switch {
		case !isTLS:
			f.WriteString(`<starttls xmlns='` + stream.NSTLS + `'><required/></starttls>`)
		case !saslDone:
			if from != "" && st.certFor(from) {
				f.WriteString(`<mechanisms xmlns='` + stream.NSSASL + `'><mechanism>EXTERNAL</mechanism></mechanisms>`)
			}
			f.WriteString(`<dialback xmlns='` + NSDialbackFeature + `'><errors/></dialback>`)
		default:
			f.WriteString(`<dialback xmlns='` + NSDialbackFeature + `'><errors/></dialback>`)
		}
		f.WriteString("</stream:features>")
		st.write([]byte(f.String()))

		next, err := st.exchange(rd, local, from, id, isTLS, saslDone)
		if err != nil {
			return err
		}
		switch next {
		case "tls":
			cfg := s.cfg.TLS()
			if cfg == nil {
				return fail("internal-server-error", "no certificate is configured")
			}
			cfg = cfg.Clone()
			cfg.ClientAuth = tls.RequestClientCert
			cfg.NextProtos = nil
			tc := tls.Server(st.raw, cfg)
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			err := tc.HandshakeContext(ctx)
			cancel()
			metrics.TLSHandshake(metrics.In, err)
			if err != nil {
				return err
			}
			st.mu.Lock()
			st.raw, st.chain = tc, tc.ConnectionState().PeerCertificates
			st.conn = stream.NewConn(tc, stream.NSServer)
			st.mu.Unlock()
			isTLS = true
		case "sasl":
			saslDone = true
		}
		rd = xml.NewReader(st.raw, s.cfg.Limits)
		if header, err = rd.Header(); err != nil {
			return st.readErr(err)
		}
	}
}

func (st *inStream) readErr(err error) error {
	return stream.ReadError(err, "nothing received in time")
}

// exchange reads elements of one stream until it must restart ("tls",
// "sasl") or ends.
func (st *inStream) exchange(rd *xml.Reader, local, from, id string, isTLS, saslDone bool) (string, error) {
	s := st.s
	st.watchIdle(rd)
	for {
		el, err := rd.Next()
		if err != nil {
			return "", st.readErr(err)
		}
		switch {
		case el.Name.Space == stream.NSTLS && el.Name.Local == "starttls" && !isTLS:
			st.write([]byte(`<proceed xmlns='` + stream.NSTLS + `'/>`))
			return "tls", nil
		case el.Name.Space == stream.NSSASL && el.Name.Local == "auth" && isTLS && !saslDone:
			if st.external(el, local, from) {
				return "sasl", nil
			}
		case el.Name.Space == NSDialback && el.Name.Local == "verify":
			st.answerVerify(el)
		case el.Name.Space == NSDialback && el.Name.Local == "result":
			if !isTLS {
				return "", &stream.Error{Condition: "policy-violation", Text: "STARTTLS first: this server does not accept unencrypted server links"}
			}
			if err := st.dialback(el, id); err != nil {
				return "", err
			}
		case el.Name.Space == stream.NSServer && (el.Name.Local == "message" || el.Name.Local == "presence" || el.Name.Local == "iq"):
			if logging.On(s.cfg.Log, logging.LevelAll) {
				st.tag().Stanza(s.cfg.Log, el)
			}
			st.pace(from)
			if err := st.stanza(el); err != nil {
				return "", err
			}
		case el.Name.Space == stream.NSStream && el.Name.Local == "error":
			st.tag().Problem(s.cfg.Log, "s2s: stream error from %s: %s", from, streamErrorText(el))
			return "", io.EOF
		default:
			return "", &stream.Error{Condition: "unsupported-stanza-type", Text: "<" + el.Name.Local + "> is not expected here"}
		}
	}
}

// pace keeps the stream within its stanza rate: over it, the stream is
// not read until it is back within (the peer is slowed down by TCP).
func (st *inStream) pace(from string) {
	if w, r, b := st.rate.Take(); w > 0 {
		st.s.cfg.Episodes.Printf("s2s: incoming stream "+st.peer+" over the stanza rate", "s2s: the stream from %s (%s) sends more than %g stanzas/s (burst %d): reading it more slowly", from, st.peer, r, b)
		time.Sleep(w)
	}
}

// watchIdle decides what a read timeout means: before any domain is
// authenticated it is the negotiation bound; after, the stream may stay
// quiet for a generous idle period (a peer closes its idle link itself;
// one that vanished without a word is dropped after a quiet period).
func (st *inStream) watchIdle(rd *xml.Reader) {
	seen := int64(-1)
	rd.OnTimeout(func(err error) error {
		// Read at every timeout: a changed idle timeout applies to open
		// streams too.
		idle := max(3*st.s.cfg.Federation().IdleTimeout, 15*time.Minute)
		st.mu.Lock()
		authed := len(st.authed) > 0
		st.mu.Unlock()
		if n := rd.Consumed(); !authed || n == seen {
			return err
		} else {
			seen = n
		}
		st.raw.SetReadDeadline(time.Now().Add(idle))
		return nil
	})
}

// external handles SASL EXTERNAL (XEP-0178): the authorization identity
// (or the stream's from) must be named by the verified client certificate.
func (st *inStream) external(el *xml.Element, local, from string) bool {
	failure := func(cond string) bool {
		st.write([]byte(`<failure xmlns='` + stream.NSSASL + `'><` + cond + `/></failure>`))
		return false
	}
	if el.Get("mechanism") != "EXTERNAL" {
		return failure("invalid-mechanism")
	}
	authz := from
	if t := strings.TrimSpace(el.Text()); t != "" && t != "=" {
		b, err := base64.StdEncoding.DecodeString(t)
		if err != nil {
			return failure("incorrect-encoding")
		}
		authz = strings.ToLower(string(b))
	}
	if authz == "" || (from != "" && authz != from) || !st.certFor(authz) {
		return failure("not-authorized")
	}
	fed := st.s.cfg.Federation()
	if !fed.Permitted(authz) {
		return failure("not-authorized")
	}
	st.write([]byte(`<success xmlns='` + stream.NSSASL + `'/>`))
	st.mark(local, authz, status.External)
	return true
}

// answerVerify is the authoritative side of dialback: was this key made
// here for that stream?
func (st *inStream) answerVerify(el *xml.Element) {
	from, to, id := parseDomain(el.Get("from")), parseDomain(el.Get("to")), el.Get("id")
	reply := xml.New(NSDialback, "verify", "from", to, "to", from, "id", id)
	if from == "" || to == "" || id == "" || !st.s.cfg.Handler.Local(to) {
		reply.Set("type", "invalid")
	} else {
		want := st.s.dialbackKey(from, to, id)
		got := strings.TrimSpace(el.Text())
		if subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1 {
			reply.Set("type", "valid")
		} else {
			reply.Set("type", "invalid")
		}
	}
	st.write(dialbackBytes(reply))
}

// dialback is the receiving side of dialback: the peer claims a domain;
// ask that domain's authoritative server whether the key is its own.
func (st *inStream) dialback(el *xml.Element, id string) error {
	remote, local, key := parseDomain(el.Get("from")), parseDomain(el.Get("to")), strings.TrimSpace(el.Text())
	if remote == "" || local == "" || key == "" {
		return &stream.Error{Condition: "improper-addressing", Text: "a dialback request needs from, to and a key"}
	}
	reply := func(typ, cond, text string) {
		r := xml.New(NSDialback, "result", "from", local, "to", remote, "type", typ)
		if cond != "" {
			e := xml.New(stream.NSServer, "error", "type", "cancel")
			e.Add(xml.New(stream.NSStanzas, cond))
			if text != "" {
				e.Add(xml.New(stream.NSStanzas, "text").AddText(text))
			}
			r.Add(e)
		}
		st.write(dialbackBytes(r))
	}
	fed := st.s.cfg.Federation()
	switch {
	case !st.s.cfg.Handler.Local(local):
		reply("error", "item-not-found", local+" is not served here")
		return nil
	case !fed.Permitted(remote):
		reply("error", "policy-violation", "federation with "+remote+" is not allowed here")
		return nil
	case fed.SecureRequired(remote) && !st.certFor(remote):
		reply("error", "policy-violation", remote+" is on this server's secure list: present a certificate that verifies for it")
		return nil
	case st.isAuthed(local, remote):
		reply("valid", "", "")
		return nil
	}
	st.mu.Lock()
	if len(st.authed) >= maxDomainPairs {
		st.mu.Unlock()
		reply("error", "resource-constraint", "too many domains on one stream: open another")
		return nil
	}
	if st.pending >= maxPendingDialback {
		st.mu.Unlock()
		return &stream.Error{Condition: "policy-violation", Text: "too many dialback requests at once"}
	}
	st.pending++
	st.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), st.s.cfg.ConnectTimeout)
		err := st.s.verifyDialback(ctx, local, remote, id, key)
		cancel()
		st.mu.Lock()
		st.pending--
		st.mu.Unlock()
		if err != nil {
			st.s.fail(pair{local, remote}, "incoming dialback: "+err.Error())
			reply("invalid", "", "")
			return
		}
		st.mark(local, remote, status.Dialback)
		reply("valid", "", "")
	}()
	return nil
}

// verifyDialback asks the authoritative server of remote whether key is
// the one it made for stream id.
func (s *Service) verifyDialback(ctx context.Context, local, remote, id, key string) error {
	est, err := s.connectVerify(ctx, pair{local, remote})
	if err != nil {
		return err
	}
	defer est.raw.Close()
	v := xml.New(NSDialback, "verify", "from", local, "to", remote, "id", id).AddText(key)
	if d, ok := ctx.Deadline(); ok {
		est.raw.SetDeadline(d)
	}
	if _, err := est.raw.Write(dialbackBytes(v)); err != nil {
		return err
	}
	for i := 0; i < 16; i++ {
		el, err := est.rd.Next()
		if err != nil {
			return err
		}
		if err := streamErr(el, remote); err != nil {
			return err
		}
		if el.Name.Space == NSDialback && el.Name.Local == "verify" && el.Get("id") == id {
			est.raw.Write(stream.Close)
			if el.Get("type") == "valid" {
				return nil
			}
			return errors.New(remote + " says the dialback key is not its own")
		}
	}
	return errors.New("no dialback verification answer from " + remote)
}

// stanza checks and delivers one stanza from the peer.
func (st *inStream) stanza(el *xml.Element) error {
	from, err1 := jid.Parse(el.Get("from"))
	to, err2 := jid.Parse(el.Get("to"))
	if err1 != nil || err2 != nil {
		return &stream.Error{Condition: "improper-addressing", Text: "a stanza between servers needs valid from and to addresses"}
	}
	remote, local := from.Domainpart(), to.Domainpart()
	if !st.count(local, remote) {
		if !st.remoteAuthed(remote) {
			return &stream.Error{Condition: "invalid-from", Text: remote + " is not authenticated on this stream"}
		}
		return &stream.Error{Condition: "invalid-from", Text: remote + " is not authenticated on this stream for " + local}
	}
	fed := st.s.cfg.Federation()
	if !fed.Enabled || !fed.Permitted(remote) {
		return &stream.Error{Condition: "policy-violation", Text: "federation with " + remote + " is not allowed here"}
	}
	el = stream.Retarget(el, stream.NSServer, stream.NSClient)
	el.Set("from", from.String())
	el.Set("to", to.String())
	st.s.cfg.Handler.FromRemote(el)
	return nil
}
