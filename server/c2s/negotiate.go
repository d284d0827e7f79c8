package c2s

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp/jid"

	"github.com/parley-xmpp/parley/server/authlimit"
	"github.com/parley-xmpp/parley/server/directory"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/metrics"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/tlsrec"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// MaxAuthAttempts is how many failed SASL attempts one stream may make.
const MaxAuthAttempts = 5

// Mechanisms are offered in this order. No -PLUS variant: channel binding
// is not implemented on the server side, so it is never advertised.
var Mechanisms = []string{"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"}

type negotiation struct {
	cfg        *Config
	raw        net.Conn
	rd         *xml.Reader
	tls        bool
	deadline   time.Time
	domain     string
	headerSent bool
	authed     bool
	local      string
	mech       uint8 // index in Mechanisms of the one that succeeded
	failures   int
	id         uint64 // the connection's number in the log (XMPPI-id)
	tried      string // the account the last SASL attempt named, for the log
}

// tag names the connection in the log.
func (n *negotiation) tag() logging.Conn { return logging.ConnOf(logging.KindClient, n.id, n.raw) }

func (n *negotiation) write(b []byte) error {
	n.raw.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := n.raw.Write(b)
	return err
}

// fail makes a stream error; if our header is not out yet, it goes first.
func (n *negotiation) fail(condition, text string) error {
	if !n.headerSent {
		n.write(stream.Header(stream.NSClient, n.domain, "", stream.NewID()))
		n.headerSent = true
	}
	return &stream.Error{Condition: condition, Text: text}
}

func (n *negotiation) run(header *xml.Element) (*Session, error) {
	for {
		n.headerSent = false
		if err := n.checkHeader(header); err != nil {
			return nil, err
		}
		if err := n.write(stream.Header(stream.NSClient, n.domain, "", stream.NewID())); err != nil {
			return nil, err
		}
		n.headerSent = true
		if err := n.write(n.features()); err != nil {
			return nil, err
		}
		s, restart, err := n.step()
		if err != nil || s != nil {
			return s, err
		}
		if !restart {
			return nil, n.fail("internal-server-error", "negotiation ended")
		}
		n.rd = xml.NewReader(n.raw, n.cfg.Limits)
		header, err = n.rd.Header()
		if err != nil {
			return nil, n.readErr(err)
		}
	}
}

func (n *negotiation) readErr(err error) error {
	var se *stream.Error
	if errors.As(stream.ReadError(err, "authentication took too long"), &se) {
		return n.fail(se.Condition, se.Text)
	}
	return err
}

func (n *negotiation) checkHeader(h *xml.Element) error {
	to := h.Get("to")
	d, err := jid.Parse(to)
	if to == "" || err != nil || d.Localpart() != "" || d.Resourcepart() != "" || !n.cfg.Hosted(d.Domainpart()) {
		return n.fail("host-unknown", fmt.Sprintf("%q is not served here", xml.Clip(to)))
	}
	if n.domain != "" && d.Domainpart() != n.domain {
		return n.fail("host-unknown", "the domain changed during negotiation")
	}
	n.domain = d.Domainpart()
	if v := h.Get("version"); v == "" || !strings.HasPrefix(v, "1.") {
		return n.fail("unsupported-version", "XMPP version 1.0 is required")
	}
	return nil
}

func (n *negotiation) features() []byte {
	var b bytes.Buffer
	b.WriteString("<stream:features>")
	switch {
	case !n.tls:
		b.WriteString(`<starttls xmlns="` + stream.NSTLS + `"><required/></starttls>`)
	case !n.authed:
		b.WriteString(`<mechanisms xmlns="` + stream.NSSASL + `">`)
		if n.cfg.directory(n.domain) != nil {
			b.WriteString("<mechanism>PLAIN</mechanism>")
		} else {
			for _, m := range Mechanisms {
				b.WriteString("<mechanism>" + m + "</mechanism>")
			}
		}
		b.WriteString("</mechanisms>")
	default:
		b.WriteString(`<bind xmlns="` + stream.NSBind + `"/>`)
		b.Write(n.cfg.Features)
	}
	b.WriteString("</stream:features>")
	return b.Bytes()
}

// step reads elements until the stream restarts (STARTTLS, SASL success)
// or a resource is bound.
func (n *negotiation) step() (*Session, bool, error) {
	for {
		el, err := n.rd.Next()
		if err != nil {
			return nil, false, n.readErr(err)
		}
		switch {
		case !n.tls:
			if el.Name.Space == stream.NSTLS && el.Name.Local == "starttls" {
				return nil, true, n.startTLS()
			}
			if isStanza(el.Name.Local) {
				return nil, false, n.fail("not-authorized", "negotiate STARTTLS and authenticate first")
			}
			return nil, false, n.fail("policy-violation", "STARTTLS is required first")
		case !n.authed:
			if el.Name.Space == stream.NSSASL && el.Name.Local == "auth" {
				ok, err := n.authenticate(el)
				if err != nil {
					return nil, false, err
				}
				if ok {
					return nil, true, nil
				}
				continue
			}
			if el.Name.Space == stream.NSTLS {
				return nil, false, n.fail("policy-violation", "TLS is already in place")
			}
			return nil, false, n.fail("not-authorized", "authenticate first")
		default:
			if el.Name.Space == stream.NSClient && el.Name.Local == "iq" && el.Get("type") == "set" {
				if b := el.Child(stream.NSBind, "bind"); b != nil {
					s, err := n.bind(el, b)
					return s, false, err
				}
			}
			return nil, false, n.fail("not-authorized", "bind a resource first")
		}
	}
}

func (n *negotiation) startTLS() error {
	cfg := n.cfg.TLS()
	if cfg == nil {
		n.write([]byte(`<failure xmlns="` + stream.NSTLS + `"/>` + string(stream.Close)))
		return errors.New("no certificate for TLS")
	}
	if err := n.write([]byte(`<proceed xmlns="` + stream.NSTLS + `"/>`)); err != nil {
		return err
	}
	n.raw.SetDeadline(n.deadline)
	tc, st, err := tlsrec.Server(n.raw, cfg)
	metrics.TLSHandshake(metrics.In, err)
	if err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	tc.SetWriteDeadline(time.Time{})
	n.raw = tc
	n.tls = true
	n.tag().Low(n.cfg.Log, "c2s: %s negotiated", tls.VersionName(st.Version))
	return nil
}

func (n *negotiation) saslFailure(condition, text string) error {
	var b bytes.Buffer
	b.WriteString(`<failure xmlns="` + stream.NSSASL + `"><` + condition + `/>`)
	if text != "" {
		t := xml.New(stream.NSSASL, "text").AddText(text)
		b.Write(t.Bytes(stream.NSSASL))
	}
	b.WriteString("</failure>")
	return n.write(b.Bytes())
}

func remoteIP(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// maxWait is how long an attempt may wait for the throttle: what is left
// of the authentication time, less a margin to answer in.
func (n *negotiation) maxWait() time.Duration {
	return time.Until(n.deadline) - 2*time.Second
}

// authenticate runs one SASL exchange. It reports whether it succeeded; a
// failed attempt may be retried until MaxAuthAttempts.
//
// The throttle (package authlimit) is asked twice before any password is
// checked: for the source address when <auth> arrives, and for the account
// once the mechanism names it (before PLAIN's PBKDF2 or SCRAM's lookup).
// An attempt that gets no token in the time it may wait gets
// temporary-auth-failure without its password being checked (RFC 6120
// §6.5.12: try again later), counted as an attempt of the stream.
func (n *negotiation) authenticate(auth *xml.Element) (bool, error) {
	ip := remoteIP(n.raw)
	att, err := n.cfg.Throttle.Begin(ip, n.maxWait())
	if err != nil {
		metrics.Login(auth.Get("mechanism"), false) // throttled before any password was checked
		return false, n.attemptRefused()
	}
	ok, err := n.authenticate1(auth, ip, att)
	metrics.Login(auth.Get("mechanism"), ok)
	// An attempt not ended above (the stream failed in the middle) counts
	// as failed: its tokens stay taken. Otherwise this does nothing.
	att.Failed()
	return ok, err
}

func (n *negotiation) authenticate1(auth *xml.Element, ip string, att *authlimit.Attempt) (bool, error) {
	var mech sasl.Mechanism
	var index uint8
	dir := n.cfg.directory(n.domain)
	if name := auth.Get("mechanism"); dir != nil && name != "PLAIN" {
		att.Abandoned() // no password tested
		return false, n.attemptFailed(ip, att, "invalid-mechanism", fmt.Sprintf("%q is not offered: the accounts of %s come from a directory, use PLAIN", xml.Clip(name), n.domain))
	}
	switch name := auth.Get("mechanism"); name {
	case "SCRAM-SHA-256":
		mech, index = sasl.ScramSha256, 0
	case "SCRAM-SHA-1":
		mech, index = sasl.ScramSha1, 1
	case "PLAIN":
		mech, index = sasl.Plain, 2
	default:
		att.Abandoned() // no password tested
		n.tried = ""
		return false, n.attemptFailed(ip, att, "invalid-mechanism", fmt.Sprintf("%q is not offered", xml.Clip(name)))
	}
	n.mech, n.tried = index, "" // for the log of a failure
	var (
		user      string
		authzErr  bool
		throttled bool
		dirErr    error // the directory's answer
	)
	// turn waits for the account's token; false: refused.
	turn := func(key string) bool {
		if err := att.Account(key, n.maxWait()); err != nil {
			throttled = true
			return false
		}
		return true
	}
	// name checks the user name and the authorization identity and waits
	// for the account's turn.
	name := func(username, identity []byte) (jid.JID, error) {
		n.tried = xml.ClipTo(string(username), 64) + "@" + n.domain // a name, never the password
		j, err := jid.New(string(username), n.domain, "")
		key := ""
		if err == nil {
			key = j.String()
		} else {
			// Not a valid user name: throttled under its bytes
			// (bounded), so that junk names are no way around.
			u := username
			if len(u) > 256 {
				u = u[:256]
			}
			key = "\x00" + string(u) + "@" + n.domain
		}
		if !turn(key) {
			return jid.JID{}, authlimit.ErrThrottled
		}
		if err != nil {
			return jid.JID{}, err
		}
		if len(identity) > 0 && string(identity) != j.String() {
			authzErr = true
			return jid.JID{}, errors.New("authorization identity differs")
		}
		return j, nil
	}
	account := func(username, identity []byte) (store.Account, error) {
		j, err := name(username, identity)
		if err != nil {
			return store.Account{}, err
		}
		user = j.Localpart()
		return n.cfg.Accounts.Account(j.String())
	}
	neg := sasl.NewServer(mech,
		func(neg *sasl.Negotiator) bool { // PLAIN
			u, p, id := neg.Credentials()
			if dir != nil {
				j, err := name(u, id)
				if err != nil {
					dirErr = err
					return false
				}
				ctx, cancel := context.WithTimeout(context.Background(), max(n.maxWait(), time.Second))
				defer cancel()
				if dirErr = dir.Authenticate(ctx, j.Localpart(), n.domain, string(p)); dirErr != nil {
					return false
				}
				user = j.Localpart()
				return true
			}
			a, err := account(u, id)
			if throttled {
				return false
			}
			if err != nil {
				a = decoyAccount(string(u))
			}
			return a.CheckPassword(string(p)) && err == nil
		},
		sasl.SaltedCredentials(func(u, id []byte, mechName string) ([]byte, []byte, int64, error) {
			a, err := account(u, id)
			if authzErr || throttled {
				return nil, nil, 0, err
			}
			if err != nil {
				// An unknown user fails at the proof, like a wrong
				// password, so the answer does not tell who exists.
				a = decoyAccount(string(u))
			}
			k := a.SHA256
			if mechName == "SCRAM-SHA-1" {
				k = a.SHA1
			}
			if k.Iter <= 0 || len(k.Salted) == 0 {
				// An account without this key (one made from a company
				// directory): an empty salted password would let anyone
				// compute the proof. It fails like a wrong password.
				d := decoyAccount(string(u))
				if k = d.SHA256; mechName == "SCRAM-SHA-1" {
					k = d.SHA1
				}
			}
			return k.Salt, k.Salted, int64(k.Iter), nil
		}))

	// Without an initial response (RFC 6120 §6.4.2) the exchange starts
	// with an empty challenge; "=" is an empty initial response.
	var data []byte
	if strings.TrimSpace(auth.Text()) != "" {
		var err error
		if data, err = decodeSASL(auth.Text()); err != nil {
			att.Abandoned() // no password tested
			return false, n.attemptFailed(ip, att, "incorrect-encoding", "")
		}
	} else {
		d, err := n.exchange(ip, att, nil)
		if err != nil || d == nil {
			return false, err
		}
		data = d
	}
	for {
		more, resp, err := neg.Step(data)
		if throttled {
			att.Failed()
			return false, n.attemptRefused()
		}
		if err != nil {
			cond := "not-authorized"
			if authzErr {
				cond = "invalid-authzid"
			}
			if errors.Is(dirErr, directory.ErrUnavailable) {
				// The directory could not say: no password was tested.
				att.Abandoned()
				n.cfg.logLimit("c2s directory "+n.domain, "c2s: the directory of %s cannot check passwords: %v", n.domain, dirErr)
				return false, n.attemptFailed(ip, att, "temporary-auth-failure", "the account directory cannot be reached: try again later")
			}
			att.Failed()
			return false, n.attemptFailed(ip, att, cond, "")
		}
		if !more {
			if _, err := n.cfg.Accounts.Account(user + "@" + n.domain); user == "" || err != nil {
				att.Failed()
				return false, n.attemptFailed(ip, att, "not-authorized", "")
			}
			n.authed, n.local, n.mech = true, user, index
			att.Succeeded()
			n.tag().Major(n.cfg.Log, "c2s: %s@%s logged in with %s", user, n.domain, Mechanisms[index])
			if len(resp) == 0 {
				return true, n.write([]byte(`<success xmlns="` + stream.NSSASL + `"/>`))
			}
			return true, n.write([]byte(`<success xmlns="` + stream.NSSASL + `">` + base64.StdEncoding.EncodeToString(resp) + `</success>`))
		}
		if data, err = n.exchange(ip, att, resp); err != nil || data == nil {
			return false, err
		}
	}
}

// exchange sends a SASL challenge and reads the client's response. It
// returns the decoded response; nil data with a nil error means the attempt
// ended (aborted, or the response was not base64) and may be retried.
func (n *negotiation) exchange(ip string, att *authlimit.Attempt, challenge []byte) ([]byte, error) {
	c := `<challenge xmlns="` + stream.NSSASL + `"/>`
	if len(challenge) > 0 {
		c = `<challenge xmlns="` + stream.NSSASL + `">` + base64.StdEncoding.EncodeToString(challenge) + `</challenge>`
	}
	if err := n.write([]byte(c)); err != nil {
		return nil, err
	}
	el, err := n.rd.Next()
	if err != nil {
		return nil, n.readErr(err)
	}
	if el.Name.Space == stream.NSSASL && el.Name.Local == "abort" {
		att.Abandoned()
		return nil, n.attemptFailed(ip, att, "aborted", "")
	}
	if el.Name.Space != stream.NSSASL || el.Name.Local != "response" {
		return nil, n.fail("not-authorized", "expected a SASL response")
	}
	data, err := decodeSASL(el.Text())
	if err != nil {
		att.Failed() // may be a guess's proof gone wrong: counted
		return nil, n.attemptFailed(ip, att, "incorrect-encoding", "")
	}
	if data == nil {
		data = []byte{} // an empty response is still a response
	}
	return data, nil
}

// attemptFailed answers a failed attempt with a SASL failure; the stream
// ends after MaxAuthAttempts. A failure is logged unless the throttle
// already logged its episode.
func (n *negotiation) attemptFailed(ip string, att *authlimit.Attempt, condition, text string) error {
	if condition != "aborted" {
		n.failures++
		if att == nil || !att.Throttled() {
			who := n.tried
			if who == "" {
				who = "an unnamed account of " + n.domain
			}
			n.tag().Problem(n.cfg.Log, "c2s: login failed for %s with %s: %s", who, Mechanisms[n.mech], condition)
		}
	}
	if err := n.saslFailure(condition, text); err != nil {
		return err
	}
	if n.failures >= MaxAuthAttempts {
		return n.fail("policy-violation", "too many failed authentication attempts")
	}
	return nil
}

// attemptRefused answers an attempt the throttle refused (no password was
// checked) with temporary-auth-failure; it counts against MaxAuthAttempts.
func (n *negotiation) attemptRefused() error {
	n.failures++
	if err := n.saslFailure("temporary-auth-failure", "too many failed authentication attempts: try again later"); err != nil {
		return err
	}
	if n.failures >= MaxAuthAttempts {
		return n.fail("policy-violation", "too many failed authentication attempts")
	}
	return nil
}

func decodeSASL(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "=" {
		return nil, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

var decoyKey = func() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}()

// decoyAccount has credentials no password matches, with a salt that is
// stable per user name, for users that do not exist.
func decoyAccount(user string) store.Account {
	m := hmac.New(sha256.New, decoyKey)
	m.Write([]byte(user))
	salt := m.Sum(nil)[:16]
	junk := make([]byte, 32)
	rand.Read(junk)
	k := store.SCRAMKey{Salt: salt, Iter: store.SCRAMIterations, Salted: junk}
	j1 := store.SCRAMKey{Salt: salt, Iter: store.SCRAMIterations, Salted: junk[:20]}
	return store.Account{SHA1: j1, SHA256: k}
}

func (n *negotiation) bind(iq, b *xml.Element) (*Session, error) {
	res := ""
	if r := b.Child(stream.NSBind, "resource"); r != nil {
		res = strings.TrimSpace(r.Text())
	}
	if res == "" {
		res = "parley-" + stream.NewID()[:12]
	}
	full, err := jid.New(n.local, n.domain, res)
	if err != nil {
		reply := stream.ErrorReply(iq, "bad-request", "the resource is not valid: "+err.Error())
		reply.Set("to", "")
		reply.Set("from", "")
		if werr := n.write(reply.Bytes(stream.NSClient)); werr != nil {
			return nil, werr
		}
		return n.retryBind()
	}
	result := xml.New(stream.NSClient, "iq", "type", "result", "id", iq.Get("id")).
		Add(xml.New(stream.NSBind, "bind").Add(xml.New(stream.NSBind, "jid").AddText(full.String())))
	n.raw.SetReadDeadline(time.Time{})
	s := &Session{
		cfg: n.cfg, raw: n.raw, rd: n.rd, domain: n.domain, local: full.Localpart(), resource: full.Resourcepart(),
		bare: full.Bare().String(), full: full.String(), tls: n.tls, mech: n.mech, Started: time.Now(), id: n.id,
	}
	n.tag().Low(n.cfg.Log, "c2s: bound %s", s.full)
	s.conn = stream.NewConn(n.raw, stream.NSClient)
	s.bindResult = result // sent once the session is routable (serve)
	return s, nil
}

func (n *negotiation) retryBind() (*Session, error) {
	s, _, err := n.step()
	return s, err
}
