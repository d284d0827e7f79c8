package im

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/parley-xmpp/parley/server/c2s"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// Namespaces of the IQ handlers.
const (
	NSDiscoInfo  = "http://jabber.org/protocol/disco#info"
	NSDiscoItems = "http://jabber.org/protocol/disco#items"
	NSCaps       = "http://jabber.org/protocol/caps"
	NSPing       = "urn:xmpp:ping"
	NSVersion    = "jabber:iq:version"
	NSTime       = "urn:xmpp:time"
	NSLast       = "jabber:iq:last"
	NSVCard      = "vcard-temp"
	NSVCardX     = "vcard-temp:x:update"
	NSPrivate    = "jabber:iq:private"
	NSSession    = stream.NSSession
)

// CapsNode is the node of the server's entity capabilities (XEP-0115).
const CapsNode = "https://parley.example/caps"

// serverFeatures is what the server's disco#info lists.
var serverFeatures = []string{
	NSDiscoInfo, NSDiscoItems, NSPing, NSVersion, NSTime, NSLast, NSVCard, NSPrivate, NSRoster,
	"msgoffline", "urn:xmpp:delay", NSCaps,
}

var accountFeatures = []string{NSDiscoInfo, NSDiscoItems, NSVCard, NSLast, NSPing}

// CapsVer is the XEP-0115 verification string of the server's disco#info.
func CapsVer() string {
	var b strings.Builder
	b.WriteString("server/im//Parley<")
	f := append([]string(nil), serverFeatures...)
	sort.Strings(f)
	for _, x := range f {
		b.WriteString(x + "<")
	}
	sum := sha1.Sum([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// CapsFeature is the <c/> element servers may put in stream features.
func CapsFeature() []byte {
	return xml.New(NSCaps, "c", "hash", "sha-1", "node", CapsNode, "ver", CapsVer()).Bytes("")
}

func result(iq *xml.Element) *xml.Element {
	r := xml.New(stream.NSClient, "iq", "type", "result", "id", iq.Get("id"))
	r.Set("to", iq.Get("from"))
	r.Set("from", iq.Get("to"))
	return r
}

func (s *Service) handleIQ(sess *c2s.Session, iq *xml.Element, to addr, noTo bool) {
	typ := iq.Get("type")
	if iq.Get("id") == "" || (typ != "get" && typ != "set" && typ != "result" && typ != "error") {
		sess.Deliver(stream.ErrorReply(iq, "bad-request", "an iq needs an id and a type of get, set, result or error"))
		return
	}
	if (typ == "get" || typ == "set") && len(iq.Elements()) != 1 {
		sess.Deliver(stream.ErrorReply(iq, "bad-request", "a get or set iq has exactly one child element"))
		return
	}
	if !s.Hosted(to.domain) {
		s.toRemote(iq, to.domain)
		return
	}
	// To a full JID of a user: routed to that resource.
	if to.resource != "" && to.local != "" {
		s.iqToResource(iq, to)
		return
	}
	if typ == "result" || typ == "error" {
		return // answers to the server's own pings, or to nothing
	}
	if to.local != "" && to.bare != sess.Bare() && !s.accountExists(to.bare) {
		s.bounce(iq, "service-unavailable", "")
		return
	}
	q := iq.Elements()[0]
	own := noTo || to.bare == sess.Bare()
	reply := func(e *xml.Element) { sess.Deliver(e) }
	switch q.Name.Space {
	case NSRoster:
		if !own {
			reply(stream.ErrorReply(iq, "forbidden", "only your own roster"))
			return
		}
		s.rosterIQ(sess, iq, q)
	case NSSession:
		reply(result(iq))
	case NSVCard:
		if typ == "get" {
			s.vcardGet(reply, iq, to)
		} else {
			s.vcardSet(sess, iq, q, own)
		}
	case NSPrivate:
		s.private(sess, iq, q, own)
	default:
		if !s.serverIQ(reply, iq, q, to, sess.Bare()) {
			reply(stream.ErrorReply(iq, "service-unavailable", ""))
		}
	}
}

// serverIQ answers what the server answers for anyone, local or not, on
// a domain or an account's bare JID: ping, disco, version, time, last
// activity. requester is the asker's bare JID. It reports false for other
// namespaces.
func (s *Service) serverIQ(reply func(*xml.Element), iq, q *xml.Element, to addr, requester string) bool {
	typ := iq.Get("type")
	onDomain := to.local == ""
	switch q.Name.Space {
	case NSPing:
		reply(result(iq))
	case NSDiscoInfo:
		s.discoInfo(reply, iq, q, onDomain)
	case NSDiscoItems:
		if q.Get("node") != "" {
			reply(stream.ErrorReply(iq, "item-not-found", ""))
			return true
		}
		reply(result(iq).Add(s.discoItems(to, onDomain)))
	case NSVersion:
		if !onDomain || typ != "get" {
			reply(stream.ErrorReply(iq, "service-unavailable", ""))
			return true
		}
		reply(result(iq).Add(xml.New(NSVersion, "query").Add(
			xml.New(NSVersion, "name").AddText("Parley"),
			xml.New(NSVersion, "version").AddText(s.Version))))
	case NSTime:
		if !onDomain || typ != "get" {
			reply(stream.ErrorReply(iq, "service-unavailable", ""))
			return true
		}
		now := time.Now().UTC()
		reply(result(iq).Add(xml.New(NSTime, "time").Add(
			xml.New(NSTime, "tzo").AddText("+00:00"),
			xml.New(NSTime, "utc").AddText(now.Format("2006-01-02T15:04:05.000Z")))))
	case NSLast:
		s.lastActivity(reply, iq, to, requester)
	default:
		return false
	}
	return true
}

// discoItems lists what is under an address: for a domain, the
// connected components beneath it (cb1.example.com under example.com).
func (s *Service) discoItems(to addr, onDomain bool) *xml.Element {
	out := xml.New(NSDiscoItems, "query")
	if onDomain && s.Components != nil {
		for _, c := range s.Components.Connected() {
			if strings.HasSuffix(c, "."+to.domain) {
				out.Add(xml.New(NSDiscoItems, "item", "jid", c))
			}
		}
	}
	return out
}

// serverInfo is the server's disco#info for a node ("" or the caps node),
// or nil if the node is unknown.
func serverInfo(node string) *xml.Element {
	if node != "" && node != CapsNode+"#"+CapsVer() {
		return nil
	}
	out := xml.New(NSDiscoInfo, "query", "node", node)
	out.Add(xml.New(NSDiscoInfo, "identity", "category", "server", "type", "im", "name", "Parley"))
	for _, f := range serverFeatures {
		out.Add(xml.New(NSDiscoInfo, "feature", "var", f))
	}
	return out
}

func (s *Service) discoInfo(reply func(*xml.Element), iq, q *xml.Element, onDomain bool) {
	node := q.Get("node")
	out := xml.New(NSDiscoInfo, "query", "node", node)
	if onDomain {
		if out = serverInfo(node); out == nil {
			reply(stream.ErrorReply(iq, "item-not-found", ""))
			return
		}
	} else {
		if node != "" {
			reply(stream.ErrorReply(iq, "item-not-found", ""))
			return
		}
		out.Add(xml.New(NSDiscoInfo, "identity", "category", "account", "type", "registered"))
		for _, f := range accountFeatures {
			out.Add(xml.New(NSDiscoInfo, "feature", "var", f))
		}
	}
	reply(result(iq).Add(out))
}

// lastActivity answers jabber:iq:last: the server's uptime on a domain, a
// user's idle time to the user and to contacts subscribed to them.
func (s *Service) lastActivity(reply func(*xml.Element), iq *xml.Element, to addr, requester string) {
	if iq.Get("type") != "get" {
		reply(stream.ErrorReply(iq, "bad-request", ""))
		return
	}
	secs := int64(0)
	status := ""
	switch {
	case to.local == "":
		secs = int64(time.Since(s.Started).Seconds())
	case to.bare == requester || s.subscribedFrom(to.bare, requester):
		if len(s.Router.Available(to.bare)) == 0 {
			l, ok, _ := s.Store.Last(to.bare)
			if !ok {
				reply(stream.ErrorReply(iq, "service-unavailable", "no activity recorded"))
				return
			}
			secs, status = int64(time.Since(l.Time).Seconds()), l.Status
		}
	default:
		reply(stream.ErrorReply(iq, "forbidden", "you are not subscribed to this contact's presence"))
		return
	}
	reply(result(iq).Add(xml.New(NSLast, "query", "seconds", fmt.Sprint(secs)).AddText(status)))
}

// subscribedFrom reports whether who is subscribed to user's presence.
func (s *Service) subscribedFrom(user, who string) bool {
	it, ok, _ := s.Store.RosterItem(user, who)
	return ok && (it.Subscription == store.SubFrom || it.Subscription == store.SubBoth)
}

// vcardGet answers a vcard-temp get with the stored vCard (an empty one
// if none).
func (s *Service) vcardGet(reply func(*xml.Element), iq *xml.Element, to addr) {
	data, _ := s.Store.VCard(to.bare)
	if len(data) == 0 {
		reply(result(iq).Add(xml.New(NSVCard, "vCard")))
		return
	}
	v, err := newElementParser().parse(data)
	if err != nil {
		reply(stream.ErrorReply(iq, "internal-server-error", ""))
		return
	}
	reply(result(iq).Add(v))
}

// vcardSet stores the user's own vCard and broadcasts the new avatar hash.
func (s *Service) vcardSet(sess *c2s.Session, iq, q *xml.Element, own bool) {
	if !own {
		sess.Deliver(stream.ErrorReply(iq, "forbidden", "only your own vCard"))
		return
	}
	if q.Name.Local != "vCard" {
		sess.Deliver(stream.ErrorReply(iq, "bad-request", ""))
		return
	}
	data := q.Bytes("")
	if len(q.Children) == 0 {
		data = nil
	}
	if _, err := s.Store.Propose(store.VCardSet{User: sess.Bare(), VCard: data}); err != nil {
		sess.Deliver(stream.ErrorReply(iq, "not-acceptable", err.Error()))
		return
	}
	s.photos.Delete(sess.Bare())
	sess.Deliver(result(iq))
	// Contacts learn the new avatar hash (XEP-0153).
	for _, rs := range s.Router.Available(sess.Bare()) {
		own := rs.(*c2s.Session)
		if p := own.Presence(); p != nil {
			c := p.Copy()
			s.stampAvatar(own.Bare(), c)
			_, prio := own.Available()
			own.SetPresence(true, prio, c)
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

func (s *Service) private(sess *c2s.Session, iq, q *xml.Element, own bool) {
	if !own {
		sess.Deliver(stream.ErrorReply(iq, "forbidden", "only your own private storage"))
		return
	}
	kids := q.Elements()
	if len(kids) != 1 || kids[0].Name.Space == "" || kids[0].Name.Space == NSPrivate {
		sess.Deliver(stream.ErrorReply(iq, "not-acceptable", "private storage takes exactly one namespaced child"))
		return
	}
	k := kids[0]
	key := k.Name.Space + " " + k.Name.Local
	switch iq.Get("type") {
	case "get":
		data, _ := s.Store.Private(sess.Bare(), key)
		out := xml.New(NSPrivate, "query")
		if len(data) > 0 {
			if el, err := newElementParser().parse(data); err == nil {
				out.Add(el)
			}
		} else {
			out.Add(xml.New(k.Name.Space, k.Name.Local))
		}
		sess.Deliver(result(iq).Add(out))
	case "set":
		if _, err := s.Store.Propose(store.PrivateSet{User: sess.Bare(), Key: key, XML: k.Bytes("")}); err != nil {
			sess.Deliver(stream.ErrorReply(iq, "not-acceptable", err.Error()))
			return
		}
		sess.Deliver(result(iq))
	}
}
