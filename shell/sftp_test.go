package shell

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkg/sftp"
)

// Paper cut 5: the files area is flat. mkdir and uploads into a folder
// (put x ../../etc/x.txt used to create files/etc/x.txt) are refused with
// a message saying so; a folder made before can still be emptied and
// removed.
// sftpClient logs user in and opens an SFTP client, closed at the end.
func (ts *testServer) sftpClient(t *testing.T, user, password string) *sftp.Client {
	t.Helper()
	fc, err := sftp.NewClient(ts.client(t, user, password))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fc.Close() })
	return fc
}

func TestSFTPRefusesFolders(t *testing.T) {
	ts := start(t, 64<<10)
	fc := ts.sftpClient(t, "admin", adminPassword)
	files := filepath.Join(ts.dir, "files")
	// OpenSSH's sftp (and this client) show the code, permission
	// denied; the message is for clients that show it, and the audit trail.
	if err := fc.Mkdir("sub"); !errors.Is(err, os.ErrPermission) {
		t.Errorf("mkdir: %v", err)
	}
	if _, serr := os.Stat(filepath.Join(files, "sub")); serr == nil {
		t.Error("mkdir created a folder")
	}
	for _, p := range []string{"../../etc/x.txt", "sub/x.txt", "/a/b/c.pem"} {
		f, err := fc.Create(p)
		if err == nil {
			f.Write([]byte("x"))
			err = f.Close()
		}
		if !errors.Is(err, os.ErrPermission) {
			t.Errorf("put %s: %v", p, err)
		}
	}
	entries, _ := os.ReadDir(files)
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("left in the files area: %s", e.Name())
		}
	}
	// Into the root by an absolute or a ".." path is still a bare name.
	f, err := fc.Create("/../root.pem")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("x"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fc.Rename("root.pem", "sub/moved.pem"); !errors.Is(err, os.ErrPermission) {
		t.Errorf("rename into a folder: %v", err)
	}
	// A folder from before: its file moves out, it is removed.
	os.MkdirAll(filepath.Join(files, "old"), 0o700)
	os.WriteFile(filepath.Join(files, "old", "k.pem"), []byte("k"), 0o600)
	if err := fc.Rename("old/k.pem", "k.pem"); err != nil {
		t.Errorf("moving a file out of an old folder: %v", err)
	}
	if err := fc.RemoveDirectory("old"); err != nil {
		t.Errorf("rmdir of an old folder: %v", err)
	}
	audit, _ := ts.st.Audit(20)
	var trail []string
	for _, e := range audit {
		trail = append(trail, e.Action+": "+e.Result)
	}
	all := strings.Join(trail, "\n")
	for _, want := range []string{
		"sftp mkdir sub: failed: sub: the files area is flat: folders are not allowed, give a bare file name (e.g. put cert.pem cert.pem)",
		"sftp put etc/x.txt: failed: etc/x.txt: the files area is flat",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("audit trail lacks %q:\n%s", want, all)
		}
	}
	// The message itself, as the handler returns it.
	h := &sftpHandler{srv: ts.srv}
	if err := h.Filecmd(&sftp.Request{Method: "Mkdir", Filepath: "/x"}); err == nil || !strings.Contains(err.Error(), "x: the files area is flat: folders are not allowed") {
		t.Errorf("Mkdir: %v", err)
	}
}
