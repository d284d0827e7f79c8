package e2e

import (
	"strings"
	"testing"

	"github.com/parley-xmpp/parley/server/directory/ldaptest"
)

// TestClusterDirectory (issue 13 on a cluster): the directory settings are
// replicated and every node talks to the directory itself. A directory is
// set on node 1 (uid as the JID's local part); a user logs in to node 3
// with their directory password and gets their vCard; two members of a
// directory group, on node 1 and node 3, find each other in their
// rosters (the group's roster op proposed on followers crosses the wire)
// and see each other's presence.
func TestClusterDirectory(t *testing.T) {
	needXMPPClients(t)
	if !ldaptest.Available() {
		t.Fatal("slapd is not installed: make deps installs it (packages slapd, ldap-utils)")
	}
	local, nodes := startClusterNodes(t, 3)
	formCluster(t, local, nodes)
	one, three := nodes[1], nodes[3]
	srv := ldaptest.Start(t, "127.0.11.40")
	users := ldaptest.Users()
	alice, bob := users[0], users[1]

	out := mustOK(t, one.ssh(one.asAdmin(), "xmpp directory "+clusterDomain+" ldap "+srv.URL()+" base "+ldaptest.People+" bind "+ldaptest.ReaderDN+"\n"+
		ldaptest.ReaderPW+"\nxmpp directory "+clusterDomain+" jid-from uid\nxmpp directory "+clusterDomain+" roster-groups "+ldaptest.Groups+"\n", ""), "xmpp directory set-up on node 1")
	if !strings.Contains(out, clusterDomain+" takes its accounts from "+srv.URL()) {
		t.Fatalf("set-up output:\n%s", out)
	}
	for _, x := range nodes[1:4] {
		x.waitOutput(t, "xmpp directory", srv.URL())
	}
	// Node 3 checks the directory itself.
	out = mustOK(t, three.admin("xmpp directory "+clusterDomain+" test bob"), "directory test on node 3")
	if !strings.Contains(out, "bob@"+clusterDomain+" can log in with their directory password") {
		t.Fatalf("xmpp directory test bob on node 3:\n%s", out)
	}

	b := three.xmpp().login(t, "bob@"+clusterDomain+"/three", bob.Password, clientOpts{})
	if v := b.do(t, map[string]any{"op": "vcard_get", "to": "bob@" + clusterDomain}); v.FN != "Bob Builder" {
		t.Fatalf("bob's vCard on node 3: FN %q", v.FN)
	}
	three.xmpp().loginFails(t, "bob@"+clusterDomain, "not-bobs-password", clientOpts{})

	a := one.xmpp().login(t, "alice@"+clusterDomain+"/one", alice.Password, clientOpts{})
	if it, ok := a.session.Items["bob@"+clusterDomain]; !ok || it.Subscription != "both" || strings.Join(it.Groups, ",") != "staff" {
		t.Fatalf("alice's roster on node 1: %+v", a.session.Items)
	}
	a.wait(t, "bob's presence from node 3", func(e *xev) bool {
		return e.Ev == "presence" && bareOf(e.From) == "bob@"+clusterDomain && e.Type != "unavailable"
	})
	for _, x := range nodes[1:4] {
		if out := x.mustAdmin(t, "xmpp user list "+clusterDomain); !strings.Contains(out, "bob@"+clusterDomain) || !strings.Contains(out, "directory") {
			t.Fatalf("xmpp user list on node %d:\n%s", x.n, out)
		}
	}
}
