package im

import (
	"strings"

	"github.com/parley-xmpp/parley/server/xml"
)

// Service discovery's namespaces (XEP-0030).
const (
	NSDiscoInfo  = "http://jabber.org/protocol/disco#info"
	NSDiscoItems = "http://jabber.org/protocol/disco#items"
)

// discoModule answers disco#info and disco#items. What #info lists is what
// the modules registered (Module.Feature, Module.Identity).
func (s *Service) discoModule(m *Module) {
	m.IQ(GetSet, NSDiscoInfo, ToBare, FromClient|FromRemote, s.discoInfo)
	m.IQ(GetSet, NSDiscoInfo, ToServer, FromComponent, s.discoInfo)
	m.IQ(GetSet, NSDiscoItems, ToBare, FromClient|FromRemote, func(st *Stanza) {
		if st.Query().Get("node") != "" {
			st.Error("item-not-found", "")
			return
		}
		st.Reply(st.Result().Add(s.discoItems(st.To)))
	})
	// A component asks the server only, and about no node in particular.
	m.IQ(GetSet, NSDiscoItems, ToServer, FromComponent, func(st *Stanza) {
		st.Reply(st.Result().Add(s.discoItems(st.To)))
	})
	m.Identity(Server, "server", "im", "Parley")
	m.Identity(Account, "account", "registered", "")
	for _, e := range []Entity{Server, Account} {
		m.Feature(e, NSDiscoInfo)
		m.Feature(e, NSDiscoItems)
	}
}

// discoItems lists what is under an address: for a domain, the
// connected components beneath it (cb1.example.com under example.com).
func (s *Service) discoItems(to addr) *xml.Element {
	out := xml.New(NSDiscoItems, "query")
	if to.local == "" && s.Router.Components != nil {
		for _, c := range s.Router.Components.Connected() {
			if strings.HasSuffix(c, "."+to.domain) {
				out.Add(xml.New(NSDiscoItems, "item", "jid", c))
			}
		}
	}
	return out
}

// info is the disco#info of a server or an account: the identities and
// features the modules registered.
func (s *Service) info(e Entity, node string) *xml.Element {
	out := xml.New(NSDiscoInfo, "query", "node", node)
	for _, id := range s.reg.identities[e] {
		out.Add(xml.New(NSDiscoInfo, "identity", "category", id.category, "type", id.typ, "name", id.name))
	}
	for _, f := range s.reg.features[e] {
		out.Add(xml.New(NSDiscoInfo, "feature", "var", f))
	}
	return out
}

// serverInfo is the server's disco#info for a node ("" or the caps node),
// or nil if the node is unknown.
func (s *Service) serverInfo(node string) *xml.Element {
	if node != "" && node != CapsNode+"#"+s.caps {
		return nil
	}
	return s.info(Server, node)
}

func (s *Service) discoInfo(st *Stanza) {
	node := st.Query().Get("node")
	var out *xml.Element
	if st.target() == ToServer {
		out = s.serverInfo(node)
	} else if node == "" {
		out = s.info(Account, "")
	}
	if out == nil {
		st.Error("item-not-found", "")
		return
	}
	st.Reply(st.Result().Add(out))
}
