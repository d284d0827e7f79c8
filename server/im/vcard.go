package im

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"strings"

	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// vcard-temp's namespaces (XEP-0054) and its avatar hash in presence
// (XEP-0153).
const (
	NSVCard  = "vcard-temp"
	NSVCardX = "vcard-temp:x:update"
)

// vcardModule stores users' vCards, shows them to anyone, and puts the
// avatar's hash into the user's presence.
func (s *Service) vcardModule(m *Module) {
	m.IQ(Get, NSVCard, ToBare, FromClient|FromRemote, s.vcardGet)
	m.IQ(Set, NSVCard, ToSelf, FromClient, s.vcardSet)
	m.IQ(Set, NSVCard, ToServer|ToAccount, FromClient|FromRemote, forbidden("only your own vCard"))
	m.Feature(Server, NSVCard)
	m.Feature(Account, NSVCard)
	m.OnPresence(func(sess router.Session, p *xml.Element, available bool) {
		if available {
			s.stampAvatar(sess.Bare(), p)
		}
	})
}

// vcardGet answers a vcard-temp get with the stored vCard (an empty one
// if none).
func (s *Service) vcardGet(st *Stanza) {
	data, _ := s.Store.VCard(st.To.bare)
	if len(data) == 0 {
		st.Reply(st.Result().Add(xml.New(NSVCard, "vCard")))
		return
	}
	v, err := newElementParser().parse(data)
	if err != nil {
		st.Reply(stream.ErrorReply(st.El, "internal-server-error", ""))
		return
	}
	st.Reply(st.Result().Add(v))
}

// vcardSet stores the user's own vCard and broadcasts the new avatar hash.
func (s *Service) vcardSet(st *Stanza) {
	sess, q := st.Session, st.Query()
	if q.Name.Local != "vCard" {
		st.Error("bad-request", "")
		return
	}
	data := q.Bytes("")
	if len(q.Children) == 0 {
		data = nil
	}
	if dir := s.directoryVCard(sess.Bare()); dir != nil {
		if field := changedDirectoryField(dir, q); field != "" {
			st.Error("not-allowed", field+" comes from the company directory: change it there")
			return
		}
		data = mergeDirectoryVCard(dir, q).Bytes("")
	}
	if _, err := s.Store.Propose(store.VCardSet{User: sess.Bare(), VCard: data}); err != nil {
		st.Error("not-acceptable", err.Error())
		return
	}
	s.photos.Delete(sess.Bare())
	st.Reply(st.Result())
	s.rebroadcastAvatar(sess.Bare())
}

// rebroadcastAvatar sends the user's available resources' presence again
// with the avatar hash of the stored vCard (XEP-0153).
func (s *Service) rebroadcastAvatar(bare string) {
	for _, own := range s.Router.Available(bare) {
		ps := presenceOf(own)
		if p, prio := ps.last(); p != nil {
			c := p.Copy()
			s.stampAvatar(own.Bare(), c)
			s.setPresence(own, true, prio, c)
			s.broadcast(own, c, false)
		}
	}
}

// stampAvatar puts the user's avatar hash into a presence (XEP-0153).
func (s *Service) stampAvatar(bare string, p *xml.Element) {
	h, ok := s.photos.Load(bare)
	if !ok {
		h = ""
		if data, _ := s.Store.VCard(bare); len(data) > 0 {
			if v, err := newElementParser().parse(data); err == nil {
				if ph := v.Child("", "PHOTO"); ph != nil {
					if bin := ph.Child("", "BINVAL"); bin != nil {
						if raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(bin.Text()), "")); err == nil {
							sum := sha1.Sum(raw)
							h = hex.EncodeToString(sum[:])
						}
					}
				}
			}
		}
		s.photos.Store(bare, h)
	}
	p.RemoveChildren(NSVCardX, "x")
	x := xml.New(NSVCardX, "x")
	if h.(string) != "" {
		x.Add(xml.New(NSVCardX, "photo").AddText(h.(string)))
	} else {
		x.Add(xml.New(NSVCardX, "photo"))
	}
	p.Add(x)
}

// DirectoryFields are the vCard elements a company directory owns (see
// server/directory.VCard): for a directory user they always come from the
// directory, whether it has a value for them or not.
var DirectoryFields = []string{"FN", "N", "EMAIL", "TEL", "TITLE", "ORG", "PHOTO"}

func isDirectoryField(name string) bool {
	for _, f := range DirectoryFields {
		if f == name {
			return true
		}
	}
	return false
}

// directoryVCard is the stored vCard of a directory user, whose
// directory fields are as the directory gave them (an empty vCard if none
// is stored); nil for a user whose vCard is all theirs.
func (s *Service) directoryVCard(bare string) *xml.Element {
	if s.DirectoryUser == nil || !s.DirectoryUser(bare) {
		return nil
	}
	if data, _ := s.Store.VCard(bare); len(data) > 0 {
		if v, err := newElementParser().parse(data); err == nil {
			return v
		}
	}
	return xml.New(NSVCard, "vCard")
}

// changedDirectoryField returns the first directory field that a vCard a
// user sets changes ("" if none): a field left out is kept as the
// directory has it; one given must be as the directory has it.
func changedDirectoryField(dir, v *xml.Element) string {
	for _, f := range DirectoryFields {
		var given []*xml.Element
		for _, c := range v.Elements() {
			if c.Name.Local == f {
				given = append(given, c)
			}
		}
		if len(given) == 0 {
			continue
		}
		var want []*xml.Element
		for _, c := range dir.Elements() {
			if c.Name.Local == f {
				want = append(want, c)
			}
		}
		if len(given) != len(want) {
			return f
		}
		for i := range given {
			if !sameXML(given[i], want[i]) {
				return f
			}
		}
	}
	return ""
}

// sameXML compares two elements by local names, attributes aside, and
// their text with white space removed (clients indent and wrap BINVAL).
func sameXML(a, b *xml.Element) bool {
	if a.Name.Local != b.Name.Local || strings.Join(strings.Fields(a.Text()), "") != strings.Join(strings.Fields(b.Text()), "") {
		return false
	}
	ac, bc := a.Elements(), b.Elements()
	if len(ac) != len(bc) {
		return false
	}
	for i := range ac {
		if !sameXML(ac[i], bc[i]) {
			return false
		}
	}
	return true
}

// mergeDirectoryVCard is the directory's fields followed by the user's
// other fields of v (nil: none).
func mergeDirectoryVCard(dir, v *xml.Element) *xml.Element {
	out := xml.New(NSVCard, "vCard")
	for _, c := range dir.Elements() {
		if isDirectoryField(c.Name.Local) {
			out.Add(c.Copy())
		}
	}
	if v != nil {
		for _, c := range v.Elements() {
			if !isDirectoryField(c.Name.Local) {
				out.Add(c.Copy())
			}
		}
	}
	return out
}

// SetDirectoryVCard brings a directory user's stored vCard up to date with
// their directory entry (dir, from server/directory.VCard), keeping the
// fields that are theirs. If it changed, their contacts get the new avatar
// hash.
func (s *Service) SetDirectoryVCard(bare string, dir *xml.Element) error {
	var stored *xml.Element
	old, _ := s.Store.VCard(bare)
	if len(old) > 0 {
		if v, err := newElementParser().parse(old); err == nil {
			stored = v
		}
	}
	data := mergeDirectoryVCard(dir, stored).Bytes("")
	if bytes.Equal(data, old) {
		return nil
	}
	if _, err := s.Store.Propose(store.VCardSet{User: bare, VCard: data}); err != nil {
		return err
	}
	s.photos.Delete(bare)
	s.rebroadcastAvatar(bare)
	return nil
}
