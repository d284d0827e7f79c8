package store

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func TestFilePutStoresAndReplaces(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	if _, err := s.StoredFile("a.key"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("before any put: %v", err)
	}
	if fs, err := s.StoredFiles(); err != nil || len(fs) != 0 {
		t.Fatalf("before any put: %v %v", fs, err)
	}
	mustApply(t, s, FilePut{File: StoredFile{Name: "a.key", Data: []byte("KEY 1"), Mode: 0o600}})
	mustApply(t, s, FilePut{File: StoredFile{Name: "a.crt", Data: []byte("CERT"), Mode: 0o644}})
	mustApply(t, s, FilePut{File: StoredFile{Name: "a.key", Data: []byte("KEY 2"), Mode: 0o600}})
	f, err := s.StoredFile("a.key")
	if err != nil || string(f.Data) != "KEY 2" || f.Mode != 0o600 {
		t.Fatalf("a.key = %+v, %v", f, err)
	}
	fs, _ := s.StoredFiles()
	if len(fs) != 2 || fs[0].Name != "a.crt" || fs[1].Name != "a.key" {
		t.Fatalf("files = %+v", fs)
	}
}

func TestFilePutBounds(t *testing.T) {
	s := fast(open(t, t.TempDir()))
	defer s.Close()
	for _, tc := range []struct {
		name string
		f    StoredFile
	}{
		{"path", StoredFile{Name: "../etc/passwd", Data: []byte("x"), Mode: 0o600}},
		{"absolute", StoredFile{Name: "/etc/passwd", Data: []byte("x"), Mode: 0o600}},
		{"hidden", StoredFile{Name: ".tmp-1", Data: []byte("x"), Mode: 0o600}},
		{"empty name", StoredFile{Data: []byte("x"), Mode: 0o600}},
		{"control", StoredFile{Name: "a\nb", Data: []byte("x"), Mode: 0o600}},
		{"mode not a file's", StoredFile{Name: "a", Data: []byte("x"), Mode: 0o4755}},
		{"owner cannot read", StoredFile{Name: "a", Data: []byte("x"), Mode: 0o044}},
		{"too large", StoredFile{Name: "big.pem", Data: make([]byte, MaxStoredFile+1), Mode: 0o644}},
	} {
		if err := prop(s, FilePut{File: tc.f}); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if fs, _ := s.StoredFiles(); len(fs) != 0 {
		t.Fatalf("refused puts stored %d files", len(fs))
	}
	if err := prop(s, FilePut{File: StoredFile{Name: "max.pem", Data: make([]byte, MaxStoredFile), Mode: 0o644}}); err != nil {
		t.Fatalf("a file of exactly MaxStoredFile: %v", err)
	}

	// Full: the files no domain names make room; named ones stay.
	mustApply(t, s, DomainPrimary{Name: "example.com", Certs: &Domain{Key: "f1", Cert: "f2"}})
	for i := 1; i < MaxStoredFiles; i++ {
		mustApply(t, s, FilePut{File: StoredFile{Name: fmt.Sprintf("f%d", i), Data: []byte("x"), Mode: 0o600}})
	}
	if fs, _ := s.StoredFiles(); len(fs) != MaxStoredFiles {
		t.Fatalf("%d files stored, want %d", len(fs), MaxStoredFiles)
	}
	mustApply(t, s, FilePut{File: StoredFile{Name: "f1", Data: []byte("replaced at the limit"), Mode: 0o600}})
	mustApply(t, s, FilePut{File: StoredFile{Name: "new", Data: []byte("y"), Mode: 0o600}})
	fs, _ := s.StoredFiles()
	var names []string
	for _, f := range fs {
		names = append(names, f.Name)
	}
	if fmt.Sprint(names) != "[f1 f2 new]" {
		t.Fatalf("after the put over the limit: %v", names)
	}
	// Every stored file named by a domain: full.
	for i := 3; i <= MaxStoredFiles; i++ {
		n := fmt.Sprintf("d%d.example", i)
		mustApply(t, s, DomainPut{Domain: Domain{Name: n, Key: n, Cert: "f2"}})
		mustApply(t, s, FilePut{File: StoredFile{Name: n, Data: []byte("k"), Mode: 0o600}})
	}
	mustApply(t, s, DomainPut{Domain: Domain{Name: "other.example", Key: "new", Cert: "f2"}})
	if err := prop(s, FilePut{File: StoredFile{Name: "one-more", Data: []byte("z"), Mode: 0o600}}); !errors.Is(err, ErrFull) {
		t.Fatalf("a put over the limit with every file named: %v", err)
	}
}

func TestDialbackSecretInitKeepsTheFirst(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	if _, err := s.DialbackSecret(); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("before init: %v", err)
	}
	if err := prop(s, DialbackSecretInit{Secret: []byte("short")}); err == nil {
		t.Error("a short secret was accepted")
	}
	one, two := bytes.Repeat([]byte{1}, DialbackSecretSize), bytes.Repeat([]byte{2}, DialbackSecretSize)
	mustApply(t, s, DialbackSecretInit{Secret: one})
	mustApply(t, s, DialbackSecretInit{Secret: two})
	got, err := s.DialbackSecret()
	if err != nil || !bytes.Equal(got, one) {
		t.Fatalf("secret = %x, %v; want the first", got, err)
	}
	// XMPPReset clears the XMPP configuration, not the secret.
	mustApply(t, s, XMPPReset{})
	if got, _ := s.DialbackSecret(); !bytes.Equal(got, one) {
		t.Fatalf("after xmpp reset: %x", got)
	}
}

// restoredCopy is a new store restored from a's snapshot (closed at the
// end of the test).
func restoredCopy(t *testing.T, a *Store) *Store {
	t.Helper()
	var snap bytes.Buffer
	if err := a.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	b := open(t, t.TempDir())
	t.Cleanup(func() { b.Close() })
	if err := b.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	return b
}

// The new buckets travel in a snapshot like every other.
func TestFilesAndSecretInSnapshot(t *testing.T) {
	a := open(t, t.TempDir())
	defer a.Close()
	mustApply(t, a, FilePut{File: StoredFile{Name: "a.key", Data: []byte("KEY"), Mode: 0o600}})
	mustApply(t, a, DialbackSecretInit{Secret: bytes.Repeat([]byte{7}, DialbackSecretSize)})
	b := restoredCopy(t, a)
	if f, err := b.StoredFile("a.key"); err != nil || string(f.Data) != "KEY" || f.Mode != 0o600 {
		t.Fatalf("a.key after restore = %+v, %v", f, err)
	}
	if s, err := b.DialbackSecret(); err != nil || s[0] != 7 {
		t.Fatalf("secret after restore = %x, %v", s, err)
	}
	sameDump(t, dump(t, a), dump(t, b))
}
