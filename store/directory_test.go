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
