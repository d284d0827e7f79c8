package store

import (
	"errors"
	"strings"
	"testing"
)

func TestDirectorySetDel(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	d := Directory{Domain: "example.com", URL: "ldap://127.0.0.1:389", Base: "dc=example,dc=com", BindDN: "cn=reader,dc=example,dc=com", BindPassword: "s3cret", StartTLS: true}
	if _, err := s.Propose(DirectorySet{Directory: d}); err != nil {
		t.Fatal(err)
	}
	got, ok := s.DirectoryOf("example.com")
	if !ok || got.BindPassword != "s3cret" || got.Filter() != DefaultUserFilter || got.Attribute() != "mail" || !got.StartTLS || got.Changed.IsZero() {
		t.Fatalf("DirectoryOf = %+v, %v", got, ok)
	}
	if _, ok := s.DirectoryOf("example.org"); ok {
		t.Fatal("example.org has no directory")
	}
	for _, bad := range []Directory{
		{Domain: "example.com", URL: "http://x", Base: "dc=x"},
		{Domain: "example.com", URL: "ldap://x"},
		{Domain: "example.com", URL: "ldaps://x", Base: "dc=x", StartTLS: true},
		{Domain: "example.com", URL: "ldap://x", Base: "dc=x", UserFilter: strings.Repeat("a", MaxDirectoryField+1)},
	} {
		if _, err := s.Propose(DirectorySet{Directory: bad}); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if got, _ := s.DirectoryOf("example.com"); got.URL != d.URL {
		t.Fatalf("a refused set changed the directory: %+v", got)
	}
	if _, err := s.Propose(DirectoryDel{Domain: "example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Propose(DirectoryDel{Domain: "example.com"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second del: %v", err)
	}
	all, err := s.Directories()
	if err != nil || len(all) != 0 {
		t.Fatalf("Directories = %v, %v", all, err)
	}
	// xmpp reset forgets directories with the domains.
	s.Propose(DirectorySet{Directory: d})
	if _, err := s.Propose(XMPPReset{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.DirectoryOf("example.com"); ok {
		t.Fatal("xmpp reset kept the directory")
	}
}

func TestDirectoryRoster(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	prop := func(op Op) DirectoryRosterResult {
		t.Helper()
		r, err := s.Propose(op)
		if err != nil {
			t.Fatal(err)
		}
		res, _ := r.Response.(DirectoryRosterResult)
		return res
	}
	item := func(user, jid string) (RosterItem, bool) {
		_, items, _ := s.Roster(user)
		for _, it := range items {
			if it.JID == jid {
				return it, true
			}
		}
		return RosterItem{}, false
	}
	for _, j := range []string{"alice@x.lan", "bob@x.lan"} {
		if _, err := s.Propose(AccountCreate{Accounts: []Account{{JID: j, Directory: true}}}); err != nil {
			t.Fatal(err)
		}
	}
	// carol has the user in her roster already, made by herself.
	s.Propose(AccountCreate{Accounts: []Account{{JID: "carol@x.lan"}}})
	s.Propose(RosterPut{User: "alice@x.lan", Item: RosterItem{JID: "carol@x.lan", Name: "My Carol", Subscription: SubTo, Groups: []string{"Mine"}}})

	res := prop(DirectoryRoster{User: "alice@x.lan", UserName: "Alice", Contacts: []SharedContact{
		{JID: "bob@x.lan", Name: "Bob", Groups: []string{"staff"}},
		{JID: "carol@x.lan", Name: "Carol", Groups: []string{"staff"}},
		{JID: "dave@x.lan", Name: "Dave", Groups: []string{"staff", "ops"}}, // no account yet: alice's side only
	}})
	if len(res.Stored) != 5 {
		t.Fatalf("stored %d changes, want 5 (alice: bob, carol, dave; bob and carol: alice): %+v", len(res.Stored), res.Stored)
	}
	if it, ok := item("alice@x.lan", "bob@x.lan"); !ok || it.Subscription != SubBoth || !it.Directory || it.Groups[0] != "staff" || it.Name != "Bob" {
		t.Fatalf("alice's bob: %+v", it)
	}
	if it, ok := item("bob@x.lan", "alice@x.lan"); !ok || it.Subscription != SubBoth || it.Name != "Alice" {
		t.Fatalf("bob's alice: %+v", it)
	}
	if it, _ := item("alice@x.lan", "carol@x.lan"); it.Directory || it.Name != "My Carol" || it.Subscription != SubBoth || it.Groups[0] != "Mine" {
		t.Fatalf("alice's own carol: %+v", it)
	}
	if _, ok := item("dave@x.lan", "alice@x.lan"); ok {
		t.Fatal("dave has no account: no roster")
	}
	// The same again changes nothing.
	if res := prop(DirectoryRoster{User: "alice@x.lan", UserName: "Alice", Contacts: []SharedContact{
		{JID: "bob@x.lan", Name: "Bob", Groups: []string{"staff"}}, {JID: "carol@x.lan", Name: "Carol", Groups: []string{"staff"}},
		{JID: "dave@x.lan", Name: "Dave", Groups: []string{"staff", "ops"}}}}); len(res.Stored)+len(res.Removed) != 0 {
		t.Fatalf("a repeat changed %+v", res)
	}
	// bob leaves the group: gone from both rosters; carol's item is alice's own and stays.
	res = prop(DirectoryRoster{User: "alice@x.lan", UserName: "Alice", Contacts: []SharedContact{{JID: "dave@x.lan", Name: "Dave", Groups: []string{"ops"}}}})
	if len(res.Removed) != 2 {
		t.Fatalf("removed %+v, want alice's bob and bob's alice", res.Removed)
	}
	if _, ok := item("alice@x.lan", "bob@x.lan"); ok {
		t.Fatal("alice still has bob")
	}
	if _, ok := item("bob@x.lan", "alice@x.lan"); ok {
		t.Fatal("bob still has alice")
	}
	if _, ok := item("alice@x.lan", "carol@x.lan"); !ok {
		t.Fatal("alice's own item for carol went")
	}
}
