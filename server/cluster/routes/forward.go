package routes

import (
	"encoding/binary"
	"errors"

	"github.com/parley-xmpp/parley/server/cluster"
	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/server/xml"
)

// Forward hands a stanza to the node that holds its recipient (ChanStanza):
// false if the node is unreachable or its queue is full (the router then
// decides alone). The sender's only copy (f.Fallback) is numbered and kept
// until the node acknowledges it (acks.go).
func (t *Table) Forward(node string, el *xml.Element, f router.Forwarded) bool {
	if node == t.self || node == "" {
		return false
	}
	var hb [256]byte
	h := append(hb[:0], stanzaVersion, 0)
	if f.Fallback {
		h[1] |= flagFallback | flagTracked
	}
	h = appendString(h, f.To.Local)
	h = appendString(h, f.To.Domain)
	h = appendString(h, f.To.Resource)
	h = binary.AppendUvarint(h, uint64(len(f.Resources)))
	for _, r := range f.Resources {
		h = appendString(h, r)
	}
	body := appendElement(make([]byte, 0, 256), el)
	// One buffer, owned by the mesh from here (it may queue it).
	build := func(id, seq uint64) []byte {
		msg := make([]byte, 0, len(h)+len(body)+2*binary.MaxVarintLen64)
		msg = append(msg, h[:2]...)
		if seq != 0 {
			msg = binary.AppendUvarint(msg, id)
			msg = binary.AppendUvarint(msg, seq)
		}
		return append(append(msg, h[2:]...), body...)
	}
	if f.Fallback {
		return t.sendTracked(node, build)
	}
	return t.cfg.Mesh.Send(node, cluster.ChanStanza, build(0, 0)) == nil
}

// decodeForward splits a forwarded stanza into its header (its resources
// appended to resBuf) and the stanza's bytes.
func decodeForward(msg []byte, resBuf []string) (f router.Forwarded, id, seq uint64, body []byte, err error) {
	if len(msg) < 2 || msg[0] != stanzaVersion {
		return f, 0, 0, nil, errVersion
	}
	rd := reader{b: msg[2:]}
	f.Fallback = msg[1]&flagFallback != 0
	if msg[1]&flagTracked != 0 {
		if id, seq = rd.uvarint(), rd.uvarint(); seq == 0 {
			rd.err = errBad
		}
	}
	f.To.Local, f.To.Domain, f.To.Resource = rd.string(1023), rd.string(1023), rd.string(1023)
	n := rd.uvarint()
	if n > router.MaxResources {
		rd.err = errBad
	}
	f.Resources = resBuf[:0]
	for i := uint64(0); i < n && rd.err == nil; i++ {
		f.Resources = append(f.Resources, rd.string(1023))
	}
	if rd.err != nil || f.To.Domain == "" {
		return f, 0, 0, nil, errBad
	}
	f.To.Bare = f.To.Domain
	if f.To.Local != "" {
		f.To.Bare = f.To.Local + "@" + f.To.Domain
	}
	return f, id, seq, rd.b, nil
}

// receiveStanza delivers a stanza another node forwarded to the sessions
// it names here, never further. When none takes it and the sender asked
// for the delivery rule (its only copy), it is routed as if this node were
// alone, off the mesh's goroutine when that may wait (offline storage).
func (t *Table) receiveStanza(from string, msg []byte) {
	if t.closed.Load() {
		return
	}
	if int64(len(msg)) > t.cfg.MaxStanza+4*maxStringLen+router.MaxResources*(1024+3)+binary.MaxVarintLen64 {
		t.bad(from, "a forwarded stanza of %d bytes", len(msg))
		return
	}
	if len(msg) >= 3 && msg[0] == stanzaVersion && msg[1]&flagProbe != 0 {
		rd := reader{b: msg[2:]}
		if id, seq := rd.uvarint(), rd.uvarint(); rd.err == nil && seq != 0 {
			t.gotTracked(from, id, seq)
		}
		return
	}
	var resBuf [8]string
	f, id, seq, body, err := decodeForward(msg, resBuf[:0])
	if err == errVersion {
		t.bad(from, "a forwarded stanza of an unknown version")
		return
	}
	if err != nil {
		t.bad(from, "a forwarded stanza whose header does not decode")
		return
	}
	if seq != 0 && !t.gotTracked(from, id, seq) {
		return // seen before
	}
	el, err := decodeStanza(body, xml.DefaultLimits.MaxDepth)
	if err != nil {
		t.bad(from, "a forwarded stanza that does not decode (%v)", err)
		return
	}
	r := t.cfg.Router
	if r.DeliverLocal(el, f.To.Bare, f.Resources) || !f.Fallback {
		return
	}
	fallback := func() {
		if c, text := r.RouteLocal(el, f.To); c != "" && t.cfg.Bounce != nil {
			t.cfg.Bounce(el, c, text)
		}
	}
	if el.Name.Local != "message" {
		fallback() // a component, a bounce, or nowhere: nothing waits
		return
	}
	select {
	case t.fallbacks <- struct{}{}:
		go func() {
			defer func() { <-t.fallbacks }()
			fallback()
		}()
	default:
		// Too many waiting already: this one waits here, and the
		// sender's queue to this node fills (its Send fails, and it
		// decides alone) rather than goroutines without bound.
		fallback()
	}
}

var errNotStanza = errors.New("not a stanza")

// errVersion: a frame of another format.
var errVersion = errors.New("unknown version")
