// Package tlsrec carries on a TLS 1.3 connection after crypto/tls has
// done its handshake: it takes over the record layer (RFC 8446 §5) with
// the traffic secrets the handshake produced, so that an idle connection
// holds those secrets and nothing else.
//
// Why not crypto/tls all the way: a tls.Conn keeps, for the connection's
// life, the buffers its handshake grew (the ClientHello's record and
// message, about 4 KiB with a post-quantum key share) and both
// directions' cipher state (about 1.5 KiB for AES-GCM), and it offers no
// way to give them back while the connection is quiet. An XMPP server
// holds many idle connections, and its budget is 10 KiB for each. Here
// the record buffer is taken from a pool while records are being read and
// given back once everything read has been consumed, and each direction's
// AEAD is built when needed and dropped when the connection goes quiet
// (Release, ReleaseWrite).
//
// The handshake stays crypto/tls's (Server): certificates, key exchange,
// resumption. Only TLS 1.3 connections are taken over; a TLS 1.2 one stays
// a *tls.Conn.
package tlsrec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Record layer limits (RFC 8446 §5.1, §5.2).
const (
	headerLen     = 5
	maxPlaintext  = 1 << 14
	maxCiphertext = maxPlaintext + 256
	recordBufLen  = headerLen + maxCiphertext

	typeAlert     = 21
	typeHandshake = 22
	typeData      = 23

	msgNewSessionTicket = 4
	msgKeyUpdate        = 24

	alertCloseNotify        = 0
	alertUnexpectedMessage  = 10
	alertBadRecordMAC       = 20
	alertRecordOverflow     = 22
	alertDecodeError        = 50
	alertUserCanceled       = 90
	maxUselessRecords       = 16 // records in a row that bring no data (as crypto/tls)
	closeNotifyWriteTimeout = 5 * time.Second
)

// suite is what the record layer needs of a TLS 1.3 cipher suite.
type suite struct {
	id     uint16
	keyLen int
	hash   func() hash.Hash
	aead   func(key []byte) (cipher.AEAD, error)
}

func aesGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

var suites = []suite{
	{tls.TLS_AES_128_GCM_SHA256, 16, sha256.New, aesGCM},
	{tls.TLS_AES_256_GCM_SHA384, 32, sha512.New384, aesGCM},
	{tls.TLS_CHACHA20_POLY1305_SHA256, 32, sha256.New, chacha20poly1305.New},
}

func suiteByID(id uint16) *suite {
	for i := range suites {
		if suites[i].id == id {
			return &suites[i]
		}
	}
	return nil
}

// expandLabel is HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
func expandLabel(h func() hash.Hash, secret []byte, label string, n int) []byte {
	info := make([]byte, 0, 4+6+len(label))
	info = binary.BigEndian.AppendUint16(info, uint16(n))
	info = append(info, byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0)
	out, err := hkdf.Expand(h, secret, string(info), n)
	if err != nil {
		panic("tlsrec: " + err.Error()) // n is at most 48: cannot fail
	}
	return out
}

// half is one direction's traffic protection.
type half struct {
	suite  *suite
	secret [48]byte // the current application traffic secret (the key is derived from it when needed)
	iv     [12]byte
	seq    uint64
	aead   cipher.AEAD // nil while released
	nbuf   [12]byte    // the current record's nonce (see nonce)
}

func (h *half) set(s *suite, secret []byte) {
	h.suite = s
	copy(h.secret[:], secret)
	copy(h.iv[:], expandLabel(s.hash, secret, "iv", 12))
	h.seq = 0
	h.aead = nil
}

// update moves to the next generation of the secret (KeyUpdate, §7.2).
func (h *half) update() {
	n := h.suite.hash().Size()
	next := expandLabel(h.suite.hash, h.secret[:n], "traffic upd", n)
	h.set(h.suite, next)
}

func (h *half) cipher() (cipher.AEAD, error) {
	if h.aead == nil {
		n := h.suite.hash().Size()
		key := expandLabel(h.suite.hash, h.secret[:n], "key", h.suite.keyLen)
		a, err := h.suite.aead(key)
		clear(key)
		if err != nil {
			return nil, err
		}
		h.aead = a
	}
	return h.aead, nil
}

// nonce is the current record's nonce (§5.3), in h.nbuf (a nonce on the
// caller's stack would escape to the heap through the AEAD interface).
func (h *half) nonce() []byte {
	h.nbuf = h.iv
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], h.seq)
	for i := range s {
		h.nbuf[4+i] ^= s[i]
	}
	return h.nbuf[:]
}

// buffers for records: taken while a record is read or written, given
// back once it is consumed or sent.
var bufPool = sync.Pool{New: func() any { b := make([]byte, recordBufLen); return &b }}

// AlertError is a fatal alert: received from the peer (Remote) or sent to
// it because of what it sent.
type AlertError struct {
	Alert  uint8
	Remote bool
	Text   string
}

func (e *AlertError) Error() string {
	if e.Remote {
		return fmt.Sprintf("tls: the peer sent alert %d", e.Alert)
	}
	return "tls: " + e.Text
}

// Conn is a TLS 1.3 connection whose record layer is carried on here. Read
// is for one goroutine at a time, as is Write; they may run at once, and
// Close may be called from anywhere.
type Conn struct {
	raw net.Conn

	// read side, owned by the reader
	in      half
	rbuf    *[]byte // nil when nothing is buffered
	first   [headerLen]byte
	rpos    int    // start of what is not yet decrypted
	rend    int    // end of what was read
	plain   []byte // decrypted data not yet read (in rbuf)
	rerr    error  // sticky
	useless int    // records in a row without data
	rc      syscall.RawConn

	// parking (park.go)
	pmu          sync.Mutex
	parked       *parking
	registered   bool         // the socket is in the poller's epoll set
	readDeadline atomic.Int64 // unix nanoseconds; 0: none

	// write side
	wmu     sync.Mutex
	out     half
	werr    error
	writing atomic.Int32 // writes in progress: Close does not wait for them
	closed  atomic.Bool
}

// newConn takes over raw with the handshake's application traffic
// secrets; outSeq is how many records the handshake already sent under
// the server's (a session ticket).
func newConn(raw net.Conn, s *suite, clientSecret, serverSecret []byte, outSeq uint64) *Conn {
	c := &Conn{raw: raw}
	c.in.set(s, clientSecret)
	c.out.set(s, serverSecret)
	c.out.seq = outSeq
	return c
}

// Version is the TLS version, for status: always TLS 1.3.
func (c *Conn) Version() uint16 { return tls.VersionTLS13 }

// NetConn is the connection underneath.
func (c *Conn) NetConn() net.Conn { return c.raw }

func (c *Conn) LocalAddr() net.Addr  { return c.raw.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error {
	c.noteReadDeadline(t)
	return c.raw.SetDeadline(t)
}

func (c *Conn) SetReadDeadline(t time.Time) error {
	c.noteReadDeadline(t)
	return c.raw.SetReadDeadline(t)
}

func (c *Conn) noteReadDeadline(t time.Time) {
	if t.IsZero() {
		c.readDeadline.Store(0)
	} else {
		c.readDeadline.Store(t.UnixNano())
	}
}

func (c *Conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

// Buffered reports whether input has been read from the socket that Read
// has not returned yet. While it is false, a peer's next bytes are in the
// socket, where Park sees them.
func (c *Conn) Buffered() bool { return len(c.plain) > 0 || c.rpos < c.rend }

// Release drops the read side's cipher state; the next record builds it
// again. For the reader, when the connection goes quiet.
func (c *Conn) Release() {
	if !c.Buffered() {
		c.in.aead = nil
		c.dropBuffer()
	}
}

// ReleaseWrite drops the write side's cipher state, when nothing is being
// written for a while.
func (c *Conn) ReleaseWrite() {
	c.wmu.Lock()
	c.out.aead = nil
	c.wmu.Unlock()
}

func (c *Conn) dropBuffer() {
	if c.rbuf != nil {
		bufPool.Put(c.rbuf)
		c.rbuf, c.rpos, c.rend, c.plain = nil, 0, 0, nil
	}
}

// rawConn finds the socket under the connection (through wrappers that
// have NetConn).
func (c *Conn) rawConn() error {
	if c.rc != nil {
		return nil
	}
	nc := c.raw
	sc, ok := nc.(syscall.Conn)
	for !ok {
		u, uok := nc.(interface{ NetConn() net.Conn })
		if !uok {
			return ErrNotParkable
		}
		nc = u.NetConn()
		sc, ok = nc.(syscall.Conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	c.rc = rc
	return nil
}

// Read returns application data.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(c.plain) == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		if err := c.readRecord(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return 0, err // not kept: the caller may read again
			}
			c.rerr = err
			c.dropBuffer()
			return 0, err
		}
	}
	n := copy(p, c.plain)
	c.plain = c.plain[n:]
	if len(c.plain) == 0 && c.rpos == c.rend {
		c.dropBuffer()
	}
	return n, nil
}

// fill reads until at least n bytes from rpos are buffered.
func (c *Conn) fill(n int) error {
	if c.rbuf == nil {
		// Nothing buffered: the wait for the peer's next bytes, which
		// lasts as long as it is quiet, holds no record buffer (a
		// record's header is read first).
		k, err := c.raw.Read(c.first[:])
		if k == 0 {
			if err == nil {
				err = io.ErrNoProgress
			}
			return err
		}
		c.rbuf = bufPool.Get().(*[]byte)
		c.rpos, c.rend = 0, copy(*c.rbuf, c.first[:k])
		if err != nil && c.rend < n {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	buf := *c.rbuf
	if c.rpos+n > len(buf) {
		copy(buf, buf[c.rpos:c.rend])
		c.rend -= c.rpos
		c.rpos = 0
	}
	for c.rend-c.rpos < n {
		k, err := c.raw.Read(buf[c.rend:])
		c.rend += k
		if err != nil {
			if c.rend-c.rpos >= n {
				break
			}
			if err == io.EOF {
				if c.rend == c.rpos {
					return io.EOF // the peer closed without close_notify
				}
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// readRecord reads and opens one record: its data goes to c.plain, or it
// is handled here (KeyUpdate, an alert).
func (c *Conn) readRecord() error {
	if err := c.fill(headerLen); err != nil {
		return err
	}
	hdr := (*c.rbuf)[c.rpos : c.rpos+headerLen]
	n := int(binary.BigEndian.Uint16(hdr[3:]))
	if hdr[0] != typeData {
		return c.fatal(alertUnexpectedMessage, fmt.Sprintf("a record of type %d after the handshake", hdr[0]))
	}
	if n > maxCiphertext {
		return c.fatal(alertRecordOverflow, fmt.Sprintf("a record of %d bytes", n))
	}
	if err := c.fill(headerLen + n); err != nil {
		return err
	}
	buf := *c.rbuf
	hdr = buf[c.rpos : c.rpos+headerLen]
	body := buf[c.rpos+headerLen : c.rpos+headerLen+n]
	c.rpos += headerLen + n
	a, err := c.in.cipher()
	if err != nil {
		return err
	}
	plain, err := a.Open(body[:0], c.in.nonce(), body, hdr)
	if err != nil {
		return c.fatal(alertBadRecordMAC, "a record that does not decrypt")
	}
	c.in.seq++
	if c.in.seq == 0 {
		return c.fatal(alertUnexpectedMessage, "the record sequence number wrapped")
	}
	// TLSInnerPlaintext: content, the type, zero padding (§5.2).
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 {
		return c.fatal(alertUnexpectedMessage, "a record without a content type")
	}
	typ, plain := plain[i], plain[:i]
	if len(plain) > maxPlaintext {
		return c.fatal(alertRecordOverflow, "a record with more than 16 KiB of data")
	}
	switch typ {
	case typeData:
		if len(plain) > 0 {
			c.useless = 0
			c.plain = plain
			return nil
		}
	case typeAlert:
		if len(plain) != 2 {
			return c.fatal(alertDecodeError, "a malformed alert")
		}
		switch plain[1] {
		case alertCloseNotify:
			return io.EOF
		case alertUserCanceled: // ignored, as warnings were (§6.1)
		default:
			return &AlertError{Alert: plain[1], Remote: true}
		}
	case typeHandshake:
		if err := c.handshakeMessages(plain); err != nil {
			return err
		}
	default:
		return c.fatal(alertUnexpectedMessage, fmt.Sprintf("content of type %d", typ))
	}
	c.useless++
	if c.useless > maxUselessRecords {
		return c.fatal(alertUnexpectedMessage, "too many records without data")
	}
	if c.rpos == c.rend {
		c.dropBuffer()
	}
	return nil
}

// handshakeMessages handles post-handshake messages from a client: only
// KeyUpdate is allowed, whole within its record.
func (c *Conn) handshakeMessages(b []byte) error {
	if len(b) == 0 {
		return c.fatal(alertUnexpectedMessage, "an empty handshake record")
	}
	for len(b) > 0 {
		if len(b) < 4 {
			return c.fatal(alertUnexpectedMessage, "a handshake message split across records")
		}
		typ, n := b[0], int(b[1])<<16|int(b[2])<<8|int(b[3])
		if len(b) < 4+n {
			return c.fatal(alertUnexpectedMessage, "a handshake message split across records")
		}
		body := b[4 : 4+n]
		b = b[4+n:]
		if typ != msgKeyUpdate {
			return c.fatal(alertUnexpectedMessage, fmt.Sprintf("handshake message %d after the handshake", typ))
		}
		if n != 1 || body[0] > 1 {
			return c.fatal(alertDecodeError, "a malformed KeyUpdate")
		}
		if len(b) > 0 {
			// A KeyUpdate changes keys: it ends its record (§5.1).
			return c.fatal(alertUnexpectedMessage, "data after a KeyUpdate in its record")
		}
		c.in.update()
		if body[0] == 1 { // update_requested
			if err := c.sendKeyUpdate(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Conn) sendKeyUpdate() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if err := c.writeRecordLocked(typeHandshake, []byte{msgKeyUpdate, 0, 0, 1, 0}); err != nil {
		return err
	}
	c.out.update()
	return nil
}

// fatal sends alert a (best effort) and returns the error it stands for.
func (c *Conn) fatal(a uint8, text string) error {
	c.wmu.Lock()
	if c.werr == nil {
		c.raw.SetWriteDeadline(time.Now().Add(closeNotifyWriteTimeout))
		c.writeRecordLocked(typeAlert, []byte{2, a})
		c.werr = net.ErrClosed
	}
	c.wmu.Unlock()
	return &AlertError{Alert: a, Text: text}
}

// Write sends b as application data, in records of at most 16 KiB.
func (c *Conn) Write(b []byte) (int, error) {
	c.writing.Add(1)
	defer c.writing.Add(-1)
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	n := 0
	for len(b) > 0 {
		k := min(len(b), maxPlaintext)
		if err := c.writeRecordLocked(typeData, b[:k]); err != nil {
			return n, err
		}
		n += k
		b = b[k:]
	}
	return n, nil
}

// writeRecordLocked seals and writes one record; c.wmu is held.
func (c *Conn) writeRecordLocked(typ byte, data []byte) error {
	a, err := c.out.cipher()
	if err != nil {
		c.werr = err
		return err
	}
	if c.out.seq == ^uint64(0) {
		c.werr = errors.New("tls: the record sequence number would wrap")
		return c.werr
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	n := len(data) + 1 + a.Overhead()
	buf[0] = typeData // the outer type of every protected record
	buf[1], buf[2] = 3, 3
	binary.BigEndian.PutUint16(buf[3:], uint16(n))
	copy(buf[headerLen:], data)
	buf[headerLen+len(data)] = typ
	a.Seal(buf[headerLen:headerLen], c.out.nonce(), buf[headerLen:headerLen+len(data)+1], buf[:headerLen])
	c.out.seq++
	if _, err := c.raw.Write(buf[:headerLen+n]); err != nil {
		c.werr = err
		return err
	}
	return nil
}

// Close sends close_notify and closes the connection. While a Write is in
// progress it only closes the socket, to end that write (as crypto/tls).
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return net.ErrClosed
	}
	defer c.unpark() // after the socket is closed: a resumed reader finds it so
	if c.writing.Load() == 0 && c.wmu.TryLock() {
		if c.werr == nil {
			c.raw.SetWriteDeadline(time.Now().Add(closeNotifyWriteTimeout))
			c.writeRecordLocked(typeAlert, []byte{1, alertCloseNotify})
			c.werr = net.ErrClosed
		}
		c.wmu.Unlock()
	}
	return c.raw.Close()
}
