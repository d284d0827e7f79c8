package im

// modules are the IM core's modules, in the order they register: the
// server's and accounts' disco#info list features in this order, and the
// stream features are offered in it. A new XEP is a file with its
// ModuleFunc, and a line here.
var modules = []ModuleFunc{
	(*Service).sessionModule,  // session.go: legacy session establishment (RFC 3921)
	(*Service).discoModule,    // disco.go: service discovery (XEP-0030)
	(*Service).pingModule,     // ping.go: XMPP ping (XEP-0199)
	(*Service).versionModule,  // version.go: software version (XEP-0092)
	(*Service).timeModule,     // time.go: entity time (XEP-0202)
	(*Service).lastModule,     // last.go: last activity (XEP-0012)
	(*Service).vcardModule,    // vcard.go: vcard-temp (XEP-0054) and avatar hashes (XEP-0153)
	(*Service).privateModule,  // private.go: private XML storage (XEP-0049)
	(*Service).rosterModule,   // roster.go: the roster, with versioning (RFC 6121 §2)
	(*Service).offlineModule,  // offline.go: offline messages (XEP-0160, XEP-0203)
	(*Service).presenceModule, // presence.go: presence and subscriptions (RFC 6121 §3, §4)
	(*Service).capsModule,     // caps.go: the server's entity capabilities (XEP-0115)
}
