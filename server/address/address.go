// Package address owns reading the parts of a JID that is already
// normalized (a bare or full JID as the engine and the store keep it),
// without parsing or preparing it again: the engine's stanza path and the
// store split addresses millions of times and must not pay for PRECIS each
// time. Parsing and normalizing what arrives from the network is
// mellium.im/xmpp/jid's job. It is a leaf: it imports nothing of Parley.
package address

import "strings"

// Domain returns the domain part of a normalized JID: what follows the
// last '@' before the resource (a resource may itself hold '@' and '/'),
// or the whole address up to the resource when it has no local part.
func Domain(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		j = j[:i]
	}
	if i := strings.LastIndexByte(j, '@'); i >= 0 {
		j = j[i+1:]
	}
	return j
}
