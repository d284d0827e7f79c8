package tlsrec

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// fakeConn reads from a buffer and discards what is written.
type fakeConn struct {
	r bytes.Reader
}

func (f *fakeConn) Read(b []byte) (int, error)         { return f.r.Read(b) }
func (f *fakeConn) Write(b []byte) (int, error)        { return len(b), nil }
func (f *fakeConn) Close() error                       { return nil }
func (f *fakeConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (f *fakeConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (f *fakeConn) SetDeadline(t time.Time) error      { return nil }
func (f *fakeConn) SetReadDeadline(t time.Time) error  { return nil }
func (f *fakeConn) SetWriteDeadline(t time.Time) error { return nil }

// FuzzRecords feeds the record layer what a client could send: with the
// first byte even, the rest is a list of inner plaintexts (a 2-byte
// length each) sealed with the client's real key, so that what is inside
// records is explored; odd, the bytes go to the socket as they are.
// Whatever comes, Read returns data or an error, never more data than
// was sent, and never panics.
func FuzzRecords(f *testing.F) {
	f.Add([]byte{0, 0, 6, 'h', 'e', 'l', 'l', 'o', typeData})
	f.Add([]byte{0, 0, 6, msgKeyUpdate, 0, 0, 1, 1, typeHandshake, 0, 3, 'x', typeData, 0})
	f.Add([]byte{0, 0, 3, 1, 0, typeAlert})
	f.Add([]byte{0, 0, 2, 0, 0})
	f.Add([]byte{1, typeData, 3, 3, 0, 20, 1, 2, 3})
	f.Add([]byte{1, typeData, 3, 3, 0xff, 0xff})
	secret := bytes.Repeat([]byte{7}, 32)
	su := suiteByID(suites[0].id)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		var wire []byte
		sent := 0
		if in[0]%2 == 0 {
			var h half
			h.set(su, secret)
			a, _ := h.cipher()
			rest := in[1:]
			for len(rest) >= 2 {
				n := min(int(binary.BigEndian.Uint16(rest)), len(rest)-2)
				inner := rest[2 : 2+n]
				rest = rest[2+n:]
				sent += n
				nonce := h.nonce()
				hdr := []byte{typeData, 3, 3, 0, 0}
				binary.BigEndian.PutUint16(hdr[3:], uint16(n+a.Overhead()))
				wire = a.Seal(append(wire, hdr...), nonce, inner, hdr)
				h.seq++
			}
		} else {
			wire = in[1:]
			sent = len(wire)
		}
		fc := &fakeConn{}
		fc.r.Reset(wire)
		c := newConn(fc, su, secret, secret, 0)
		got := 0
		buf := make([]byte, 1000)
		for i := 0; i < 10000; i++ {
			n, err := c.Read(buf)
			got += n
			if err != nil {
				break
			}
		}
		if got > sent {
			t.Fatalf("read %d bytes of data from %d sent", got, sent)
		}
		c.Close()
	})
}
