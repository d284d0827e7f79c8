package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func prop(s *Store, op Op) error {
	_, err := s.Propose(op)
	return err
}

func mustApply(t *testing.T, s *Store, op Op) {
	t.Helper()
	if err := prop(s, op); err != nil {
		t.Fatalf("apply %s: %v", op.Kind(), err)
	}
}

func mustApplyAt(t *testing.T, s *Store, at time.Time, op Op) {
	t.Helper()
	if _, err := s.ProposeAt(at, op); err != nil {
		t.Fatalf("apply %s: %v", op.Kind(), err)
	}
}

func admin(name, role string) Op {
	return AdminCreate{Admin: Admin{Name: name, Role: role, PasswordHash: "h"}}
}

func TestPersistsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	s.SetLocal(ConfigHostname, "alpha")
	mustApply(t, s, admin("root", RoleAdmin))
	s.AddHistory("root", "user list")
	s.AddAudit(AuditEntry{User: "root", Action: "hostname alpha", Result: "ok"})
	s.Close()

	s = open(t, dir)
	defer s.Close()
	if h, _ := s.Config(ConfigHostname); h != "alpha" {
		t.Errorf("hostname = %q after reopen", h)
	}
	if _, err := s.Admin("root"); err != nil {
		t.Errorf("admin lost: %v", err)
	}
	if h, _ := s.History("root"); len(h) != 1 || h[0] != "user list" {
		t.Errorf("history = %q", h)
	}
	if a, _ := s.Audit(10); len(a) != 1 || a[0].Action != "hostname alpha" || a[0].Time.IsZero() {
		t.Errorf("audit = %+v", a)
	}
	if v, _ := s.Schema(); v != SchemaVersion {
		t.Errorf("schema = %d", v)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put([]byte("schema"), []byte("99")) })
	s.Close()
	_, err := Open(dir)
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("want a newer-schema error, got %v", err)
	}
}

func TestSecondProcessRefused(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	start := time.Now()
	_, err := Open(dir)
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("second open did not time out")
	}
}

func TestAdminRules(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	mustApply(t, s, admin("root", RoleAdmin))
	mustApply(t, s, admin("aud", RoleAudit))

	tests := []struct {
		name string
		op   Op
		want error
	}{
		{"duplicate", admin("root", RoleAdmin), ErrExists},
		{"delete last admin", AdminDelete{Name: "root"}, ErrLastAdmin},
		{"delete unknown", AdminDelete{Name: "nobody"}, ErrNotFound},
		{"password unknown", AdminPassword{Name: "nobody", Hash: "x"}, ErrNotFound},
		{"delete key out of range", AdminKeyDel{Name: "root", Index: 3}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := prop(s, tc.op)
			if err == nil {
				t.Fatal("want an error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// Nothing above changed the users.
	all, _ := s.Admins()
	if len(all) != 2 {
		t.Fatalf("admins = %d", len(all))
	}
	// With a second admin, the first may go.
	mustApply(t, s, admin("root2", RoleAdmin))
	mustApply(t, s, AdminDelete{Name: "root"})
}

func TestPasswordExpiry(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := Admin{PasswordChanged: t0}
	if a.MustChangePassword(t0.AddDate(5, 0, 0), 0) {
		t.Error("no age rule, yet expired")
	}
	if a.MustChangePassword(t0.AddDate(0, 0, 89), 90) || !a.MustChangePassword(t0.AddDate(0, 0, 90), 90) {
		t.Error("age rule of 90 days misapplied")
	}
	a.Expired = true
	if !a.MustChangePassword(t0, 0) {
		t.Error("expired flag ignored")
	}
}

func TestKeys(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	mustApply(t, s, admin("root", RoleAdmin))
	mustApply(t, s, AdminKeyAdd{Name: "root", Line: "ssh-ed25519 AAAA one"})
	mustApply(t, s, AdminKeyAdd{Name: "root", Line: "ssh-ed25519 BBBB two"})
	if err := prop(s, AdminKeyAdd{Name: "root", Line: "ssh-ed25519 AAAA one"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate key: %v", err)
	}
	mustApply(t, s, AdminKeyDel{Name: "root", Index: 1})
	a, _ := s.Admin("root")
	if len(a.Keys) != 1 || a.Keys[0].Line != "ssh-ed25519 BBBB two" {
		t.Fatalf("keys = %+v", a.Keys)
	}
}

func TestHistoryAndAuditBounded(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	for i := 0; i < HistoryLimit+20; i++ {
		s.AddHistory("root", fmt.Sprint("cmd ", i))
	}
	h, _ := s.History("root")
	if len(h) != HistoryLimit || h[0] != "cmd 20" || h[len(h)-1] != fmt.Sprint("cmd ", HistoryLimit+19) {
		t.Fatalf("history: %d lines, first %q", len(h), h[0])
	}
	for i := 0; i < 5; i++ {
		if err := s.AddAudit(AuditEntry{User: "u", Action: fmt.Sprint("a", i)}); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := s.Audit(2)
	if len(a) != 2 || a[0].Action != "a3" || a[1].Action != "a4" {
		t.Fatalf("last two audit entries = %+v", a)
	}
}

func TestDeleteDropsHistory(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	mustApply(t, s, admin("root", RoleAdmin))
	mustApply(t, s, admin("bob", RoleAudit))
	s.AddHistory("bob", "user list")
	mustApply(t, s, AdminDelete{Name: "bob"})
	if h, _ := s.History("bob"); len(h) != 0 {
		t.Fatalf("history survived delete: %q", h)
	}
}

// Two writers at once never lose or corrupt a change.
func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if err := prop(s, admin(fmt.Sprintf("u%d-%d", w, i), RoleAudit)); err != nil {
					t.Error(err)
				}
				s.RecordLogin("u0-0", time.Now())
			}
		}(w)
	}
	wg.Wait()
	s.Close()
	s = open(t, dir)
	defer s.Close()
	all, _ := s.Admins()
	if len(all) != 100 {
		t.Fatalf("admins = %d, want 100", len(all))
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestWatchSeesAppliedOps(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	var seen []OpKind
	s.Watch(func(c Change) { seen = append(seen, c.Op.Kind()) })
	mustApply(t, s, ConfigSet{Key: "k", Value: "v"})
	prop(s, AdminDelete{Name: "nobody"}) // fails: not seen
	s.Settle(context.Background(), 0)
	if len(seen) != 1 || seen[0] != (ConfigSet{}).Kind() {
		t.Fatalf("seen = %v", seen)
	}
}

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := HashPassword("correct horse")
	if h == h2 {
		t.Error("same hash twice: no salt")
	}
	if strings.Contains(h, "correct") || !strings.HasPrefix(h, "$argon2id$") {
		t.Errorf("hash %q", h)
	}
	if !CheckPassword(h, "correct horse") || CheckPassword(h, "correct horsE") || CheckPassword(h, "") {
		t.Error("CheckPassword wrong")
	}
	for _, bad := range []string{"", "plain", "$argon2id$v=19$m=99999999,t=1,p=1$AAAA$AAAA", "$bcrypt$x"} {
		if CheckPassword(bad, "x") {
			t.Errorf("accepted against %q", bad)
		}
	}
	if _, err := HashPassword(strings.Repeat("x", MaxPasswordLength+1)); err == nil {
		t.Error("oversize password hashed")
	}
}

func TestFileMode(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	s.Close()
	st, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("store file mode %v", st.Mode().Perm())
	}
}

func BenchmarkApplyConfigSet(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := prop(s, ConfigSet{Key: "k", Value: fmt.Sprint(i)}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckPassword(b *testing.B) {
	h, _ := HashPassword("correct horse battery")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		CheckPassword(h, "correct horse battery")
	}
}
