package im

import (
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
	if _, err := s.Store.Propose(store.VCardSet{User: sess.Bare(), VCard: data}); err != nil {
		st.Error("not-acceptable", err.Error())
		return
	}
	s.photos.Delete(sess.Bare())
	st.Reply(st.Result())
	// Contacts learn the new avatar hash (XEP-0153).
	for _, own := range s.Router.Available(sess.Bare()) {
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
