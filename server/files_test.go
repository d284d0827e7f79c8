package server

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/store"
)

// openData opens a store and its files area in dir.
func openData(t testing.TB, dir string) (*store.Store, *pki.Area) {
	t.Helper()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	files, err := pki.OpenArea(filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	return st, files
}

// bareEngine is an engine on a store and files area of its own, with no
// domain: it serves nothing, but follows the store's changes.
func bareEngine(t *testing.T) (*Engine, *store.Store, *pki.Area) {
	t.Helper()
	st, files := openData(t, t.TempDir())
	e := New(Config{Store: st, Files: files, Version: "test", Log: logging.Discard()})
	e.Start()
	t.Cleanup(func() {
		e.Stop()
		files.Close()
		st.Close()
	})
	return e, st, files
}

func settle(t *testing.T, st *store.Store, op store.Op) {
	t.Helper()
	if _, err := st.ProposeSettled(context.Background(), op); err != nil {
		t.Fatal(err)
	}
}

func TestStoredFilesWrittenIntoTheArea(t *testing.T) {
	_, st, files := bareEngine(t)
	settle(t, st, store.FilePut{File: store.StoredFile{Name: "d.key", Data: []byte("KEY"), Mode: 0o600}})
	settle(t, st, store.FilePut{File: store.StoredFile{Name: "d.crt", Data: []byte("CERT"), Mode: 0o644}})
	for name, want := range map[string]struct {
		data string
		mode os.FileMode
	}{"d.key": {"KEY", 0o600}, "d.crt": {"CERT", 0o644}} {
		got, err := files.ReadFile(name)
		if err != nil || string(got) != want.data {
			t.Fatalf("%s = %q, %v", name, got, err)
		}
		st, _ := files.Root().Stat(name)
		if st.Mode().Perm() != want.mode {
			t.Errorf("%s has mode %o, want %o", name, st.Mode().Perm(), want.mode)
		}
	}

	// The same bytes again: the file is not written (its time stays).
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	os.Chtimes(filepath.Join(files.Dir(), "d.crt"), old, old)
	settle(t, st, store.FilePut{File: store.StoredFile{Name: "d.crt", Data: []byte("CERT"), Mode: 0o644}})
	if fi, _ := files.Root().Stat("d.crt"); !fi.ModTime().Equal(old) {
		t.Errorf("d.crt written again with the same bytes (mtime %v)", fi.ModTime())
	}
	// Other bytes under that name: replaced.
	settle(t, st, store.FilePut{File: store.StoredFile{Name: "d.crt", Data: []byte("CERT 2"), Mode: 0o644}})
	if got, _ := files.ReadFile("d.crt"); string(got) != "CERT 2" {
		t.Errorf("d.crt = %q after a new put", got)
	}
}

// A node that joins gets the files in the snapshot (Restored); a
// standalone appliance starting keeps a file the admin replaced by SFTP.
func TestStoredFilesAfterRestoreAndAtStart(t *testing.T) {
	_, a, _ := bareEngine(t)
	settle(t, a, store.FilePut{File: store.StoredFile{Name: "x.key", Data: []byte("KEY"), Mode: 0o600}})
	var snap bytes.Buffer
	if err := a.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	_, b, bFiles := bareEngine(t)
	if err := b.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	if err := b.Settle(context.Background(), b.AppliedIndex()); err != nil {
		t.Fatal(err)
	}
	if got, err := bFiles.ReadFile("x.key"); err != nil || string(got) != "KEY" {
		t.Fatalf("x.key after restore = %q, %v", got, err)
	}

	// Start, standalone: missing files written, others kept.
	st, files := openData(t, t.TempDir())
	defer st.Close()
	defer files.Close()
	settle(t, st, store.FilePut{File: store.StoredFile{Name: "a.crt", Data: []byte("STORED"), Mode: 0o644}})
	settle(t, st, store.FilePut{File: store.StoredFile{Name: "b.crt", Data: []byte("STORED"), Mode: 0o644}})
	if err := files.WriteFile("a.crt", []byte("UPLOADED"), 0o600, false); err != nil {
		t.Fatal(err)
	}
	e := New(Config{Store: st, Files: files, Version: "test", Log: logging.Discard()})
	e.Start()
	defer e.Stop()
	if got, _ := files.ReadFile("a.crt"); string(got) != "UPLOADED" {
		t.Errorf("a.crt = %q at a standalone start: the admin's upload must stay", got)
	}
	if got, _ := files.ReadFile("b.crt"); string(got) != "STORED" {
		t.Errorf("b.crt = %q at start: a missing file must be written", got)
	}
}

// Two nodes share the replicated dialback secret: a key made on one
// verifies on the other (TestDialbackKeySharedSecret in server/s2s checks
// the keys themselves).
func TestDialbackSecretShared(t *testing.T) {
	a, aStore, _ := bareEngine(t)
	b, bStore, _ := bareEngine(t)
	sa := a.dialbackSecret()
	if len(sa) != store.DialbackSecretSize {
		t.Fatalf("secret of %d bytes", len(sa))
	}
	if got, err := aStore.DialbackSecret(); err != nil || !bytes.Equal(got, sa) {
		t.Fatalf("the secret was not stored: %x, %v", got, err)
	}
	if !bytes.Equal(a.dialbackSecret(), sa) {
		t.Fatal("the secret changed between two keys")
	}
	// b was standalone with a secret of its own, then joins a's cluster
	// (a's snapshot): it uses the cluster's from then on.
	if bytes.Equal(b.dialbackSecret(), sa) {
		t.Fatal("two stores made the same secret")
	}
	var snap bytes.Buffer
	if err := aStore.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if err := bStore.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	if err := bStore.Settle(context.Background(), bStore.AppliedIndex()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.dialbackSecret(), sa) {
		t.Fatal("after joining, b does not use the cluster's secret")
	}
	// A second init (another node at once) keeps the first.
	settle(t, bStore, store.DialbackSecretInit{Secret: bytes.Repeat([]byte{9}, store.DialbackSecretSize)})
	if !bytes.Equal(b.dialbackSecret(), sa) {
		t.Fatal("a later init replaced the secret")
	}
}
