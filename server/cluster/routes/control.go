package routes

import (
	"github.com/parley-xmpp/parley/server/cluster"
)

// Requests from one node's engine to another's (ChanControl): an
// administrator's `xmpp sessions kick` of a user bound on another node.
const (
	controlVersion = 1
	controlKick    = 1 // JID, reason: close its sessions there (Config.Kick)
	maxReason      = 1024
)

// Kick asks node to close the sessions of a bare or full JID bound there
// with reason; an error if it cannot be sent.
func (t *Table) Kick(node, jid, reason string) error {
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	msg := []byte{controlVersion, controlKick}
	msg = appendString(msg, jid)
	msg = appendString(msg, reason)
	return t.cfg.Mesh.Send(node, cluster.ChanControl, msg)
}

func (t *Table) receiveControl(from string, msg []byte) {
	if t.closed.Load() {
		return
	}
	if len(msg) < 2 || msg[0] != controlVersion || msg[1] != controlKick {
		t.bad(from, "a request that does not decode")
		return
	}
	rd := reader{b: msg[2:]}
	jid, reason := rd.string(maxStringLen+1024), rd.string(maxReason)
	if rd.err != nil || len(rd.b) != 0 || jid == "" {
		t.bad(from, "a request that does not decode")
		return
	}
	if t.cfg.Kick != nil {
		go t.cfg.Kick(jid, reason)
	}
}
