package routes

import (
	"encoding/binary"

	"github.com/parley-xmpp/parley/server/cluster"
	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
)

// Forward hands a stanza to the node that holds its recipient (ChanStanza):
// false if the node is unreachable or its queue is full (the router then
// decides alone).
func (t *Table) Forward(node string, el *xml.Element, f router.Forwarded) bool {
	if node == t.self || node == "" {
		return false
	}
	var hb [256]byte
	h := append(hb[:0], stanzaVersion, 0)
	if f.Fallback {
		h[1] |= flagFallback
	}
	h = appendString(h, f.To.Local)
	h = appendString(h, f.To.Domain)
	h = appendString(h, f.To.Resource)
	h = binary.AppendUvarint(h, uint64(len(f.Resources)))
	for _, r := range f.Resources {
		h = appendString(h, r)
	}
	body := el.Bytes(stream.NSClient)
	// One buffer, owned by the mesh from here (it may queue it).
	msg := make([]byte, 0, len(h)+len(body))
	msg = append(append(msg, h...), body...)
	return t.cfg.Mesh.Send(node, cluster.ChanStanza, msg) == nil
}

// receiveStanza delivers a stanza another node forwarded to the sessions
// it names here, never further. When none takes it and the sender asked
// for the delivery rule (its only copy), it is routed as if this node were
// alone, off the mesh's goroutine when that may wait (offline storage).
func (t *Table) receiveStanza(from string, msg []byte) {
	if t.closed.Load() {
		return
	}
	if int64(len(msg)) > t.cfg.MaxStanza+4*maxStringLen+router.MaxResources*(1024+3) {
		t.bad(from, "a forwarded stanza of %d bytes", len(msg))
		return
	}
	if len(msg) < 2 || msg[0] != stanzaVersion {
		t.bad(from, "a forwarded stanza of an unknown version")
		return
	}
	rd := reader{b: msg[2:]}
	var f router.Forwarded
	f.Fallback = msg[1]&flagFallback != 0
	f.To.Local, f.To.Domain, f.To.Resource = rd.string(1023), rd.string(1023), rd.string(1023)
	n := rd.uvarint()
	if n > router.MaxResources {
		rd.err = errBad
	}
	var resBuf [8]string
	f.Resources = resBuf[:0]
	for i := uint64(0); i < n && rd.err == nil; i++ {
		f.Resources = append(f.Resources, rd.string(1023))
	}
	if rd.err != nil || f.To.Domain == "" {
		t.bad(from, "a forwarded stanza whose header does not decode")
		return
	}
	f.To.Bare = f.To.Domain
	if f.To.Local != "" {
		f.To.Bare = f.To.Local + "@" + f.To.Domain
	}
	els := stream.ParseStanzas([][]byte{rd.b}, stream.NSClient)
	if len(els) != 1 {
		t.bad(from, "a forwarded stanza that does not parse")
		return
	}
	el := els[0]
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
