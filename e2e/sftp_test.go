package e2e

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// filesOnDisk lists every entry of the files area on disk, hidden ones too.
func (a *appliance) filesOnDisk(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(a.filesDir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// sftpListing is the names an sftp `ls -1` printed (the batch echo lines,
// which start with "sftp>", left out).
func sftpListing(out string) []string {
	var names []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "sftp>") {
			names = append(names, l)
		}
	}
	return names
}

// Issue item 5: put, get, ls, rename and rm with the OpenSSH sftp client,
// on the same port and credentials as the shell.
func TestSFTPFileOperations(t *testing.T) {
	t.Parallel()
	a := start(t, options{adminKey: true})
	local := t.TempDir()
	data := randomBytes(t, 300_000)
	writeFile(t, local, "data.bin", data)

	for _, l := range []login{a.asAdmin(), keyLogin("admin", a.key)} {
		r := a.sftp(t, l, local, "put data.bin\nls -1\nget data.bin back.bin\n")
		if r.code != 0 {
			t.Fatalf("sftp put/ls/get: %v", r)
		}
		if got := sftpListing(r.stdout); strings.Join(got, " ") != "data.bin" {
			t.Fatalf("ls after put shows %q, want data.bin:\n%s", got, r.stdout)
		}
		back, err := os.ReadFile(filepath.Join(local, "back.bin"))
		if err != nil || !bytes.Equal(back, data) {
			t.Fatalf("the file got back differs from the one put (%d bytes, want %d): %v", len(back), len(data), err)
		}
		onDisk, err := os.ReadFile(filepath.Join(a.filesDir(), "data.bin"))
		if err != nil || !bytes.Equal(onDisk, data) {
			t.Fatalf("files/data.bin on disk differs from the upload: %v", err)
		}
	}
	// Commands see what SFTP put.
	if out := a.mustAdmin(t, "pki list"); !strings.Contains(out, "data.bin") {
		t.Fatalf("pki list does not show the uploaded file:\n%s", out)
	}

	r := a.sftp(t, a.asAdmin(), local, "rename data.bin renamed.bin\nls -1\n")
	if r.code != 0 {
		t.Fatalf("sftp rename: %v", r)
	}
	if got := sftpListing(r.stdout); strings.Join(got, " ") != "renamed.bin" {
		t.Fatalf("ls after rename shows %q, want renamed.bin", got)
	}
	r = a.sftp(t, a.asAdmin(), local, "rm renamed.bin\nls -1\n")
	if r.code != 0 {
		t.Fatalf("sftp rm: %v", r)
	}
	if got := sftpListing(r.stdout); len(got) != 0 {
		t.Fatalf("ls after rm shows %q, want nothing", got)
	}
	if got := a.filesOnDisk(t); len(got) != 0 {
		t.Fatalf("files area on disk after rm: %q, want empty", got)
	}
}

// Issue item 5: "..", absolute paths and symbolic links cannot leave the
// files area.
func TestSFTPEscapeAttempts(t *testing.T) {
	t.Parallel()
	a := start(t, options{})
	local := t.TempDir()
	writeFile(t, local, "x.txt", []byte("escape attempt\n"))
	a.put(t, a.asAdmin(), filepath.Join(local, "x.txt"))
	// Links planted on the appliance's disk (not over SFTP), pointing out.
	if err := os.Symlink("/etc/passwd", filepath.Join(a.filesDir(), "passwd-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../parley.db", filepath.Join(a.filesDir(), "db-link")); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(os.TempDir(), "parley-e2e-escape-"+filepath.Base(local))
	t.Cleanup(func() { os.Remove(outside) })

	reads := []struct{ name, batch, local string }{
		{"GetDotDotDatabase", "get ../parley.db got-db\n", "got-db"},
		{"GetDeepDotDot", "get ../../../../../../etc/passwd got-passwd1\n", "got-passwd1"},
		{"GetAbsolutePath", "get /etc/passwd got-passwd2\n", "got-passwd2"},
		{"GetSymlinkToEtcPasswd", "get passwd-link got-passwd3\n", "got-passwd3"},
		{"GetSymlinkToDatabase", "get db-link got-db2\n", "got-db2"},
		{"GetHostKey", "get ../ssh_host_ed25519_key got-key\n", "got-key"},
	}
	for _, c := range reads {
		t.Run(c.name, func(t *testing.T) {
			r := a.sftp(t, a.asAdmin(), local, c.batch)
			if r.code == 0 {
				t.Fatalf("%s succeeded: %v", strings.TrimSpace(c.batch), r)
			}
			if got, err := os.ReadFile(filepath.Join(local, c.local)); err == nil && len(got) > 0 {
				t.Fatalf("%s brought back %d bytes from outside the files area", strings.TrimSpace(c.batch), len(got))
			}
		})
	}

	writes := []struct{ name, batch string }{
		{"PutDotDot", "put x.txt ../escape\n"},
		{"PutDeepDotDot", "put x.txt ../../../../escape2\n"},
		{"PutAbsolute", "put x.txt " + outside + "\n"},
		{"PutThroughSymlink", "put x.txt passwd-link\n"},
		{"RenameOut", "rename x.txt ../renamed-out\n"},
	}
	for _, c := range writes {
		t.Run(c.name, func(t *testing.T) {
			// These may be refused or land inside the files area; either
			// way nothing may be written outside it.
			a.sftp(t, a.asAdmin(), local, c.batch)
			for _, p := range []string{
				filepath.Join(a.dataDir, "escape"), filepath.Join(a.work, "escape"), filepath.Join(a.dataDir, "escape2"),
				filepath.Join(a.dataDir, "renamed-out"), outside, "/escape", "/escape2",
			} {
				if _, err := os.Lstat(p); err == nil {
					t.Fatalf("%s wrote %s, outside the files area", strings.TrimSpace(c.batch), p)
				}
			}
			passwd, err := os.ReadFile("/etc/passwd")
			if err != nil || bytes.Contains(passwd, []byte("escape attempt")) {
				t.Fatalf("%s wrote through the symbolic link to /etc/passwd", strings.TrimSpace(c.batch))
			}
		})
	}

	links := []struct{ name, batch, link string }{
		{"SymlinkRefused", "ln -s x.txt soft-link\n", "soft-link"},
		{"SymlinkOutRefused", "ln -s /etc/passwd soft-link2\n", "soft-link2"},
		{"HardLinkRefused", "ln x.txt hard-link\n", "hard-link"},
	}
	for _, c := range links {
		t.Run(c.name, func(t *testing.T) {
			r := a.sftp(t, a.asAdmin(), local, c.batch)
			if r.code == 0 {
				t.Fatalf("%s succeeded: %v", strings.TrimSpace(c.batch), r)
			}
			if _, err := os.Lstat(filepath.Join(a.filesDir(), c.link)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("%s created %s in the files area (%v)", strings.TrimSpace(c.batch), c.link, err)
			}
		})
	}

	t.Run("HiddenNamesRefused", func(t *testing.T) {
		if r := a.sftp(t, a.asAdmin(), local, "put x.txt .hidden\n"); r.code == 0 {
			t.Fatalf("put to a hidden name succeeded: %v", r)
		}
		if _, err := os.Lstat(filepath.Join(a.filesDir(), ".hidden")); err == nil {
			t.Fatal("a hidden file was written")
		}
	})

	t.Run("CommandsRefuseTheLinks", func(t *testing.T) {
		mustFail(t, a.admin("pki inspect passwd-link"), "pki inspect of a link to /etc/passwd", "pki inspect")
		mustFail(t, a.admin("user sshkey add admin db-link"), "sshkey add from a link to the store", "user sshkey add")
	})
}

// Issue item 5: an upload over the limit fails cleanly and leaves nothing,
// not even a hidden temporary file; one exactly at the limit is stored.
func TestSFTPOversizeUpload(t *testing.T) {
	t.Parallel()
	const limit = 65536
	a := start(t, options{maxUpload: limit})
	local := t.TempDir()
	writeFile(t, local, "big.bin", randomBytes(t, 4*limit+123))
	writeFile(t, local, "limit.bin", randomBytes(t, limit))
	writeFile(t, local, "over.bin", randomBytes(t, limit+1))

	for _, name := range []string{"big.bin", "over.bin"} {
		r := a.sftp(t, a.asAdmin(), local, "put "+name+"\n")
		if r.code == 0 {
			t.Fatalf("put %s over the %d-byte limit succeeded: %v", name, limit, r)
		}
		r = a.sftp(t, a.asAdmin(), local, "ls -1\n")
		if r.code != 0 || len(sftpListing(r.stdout)) != 0 {
			t.Fatalf("ls after the failed upload of %s: %v", name, r)
		}
		if got := a.filesOnDisk(t); len(got) != 0 {
			t.Fatalf("the failed upload of %s left %q in the files area (temporary files included)", name, got)
		}
	}
	if out := a.mustAdmin(t, "audit"); !strings.Contains(out, "sftp put big.bin") || !strings.Contains(out, "larger than the limit") {
		t.Fatalf("the audit trail does not record the refused upload:\n%s", out)
	}

	if r := a.sftp(t, a.asAdmin(), local, "put limit.bin\n"); r.code != 0 {
		t.Fatalf("put of exactly %d bytes: %v", limit, r)
	}
	if got := strings.Join(a.filesOnDisk(t), " "); got != "limit.bin" {
		t.Fatalf("files area after the upload at the limit: %q, want limit.bin", got)
	}
}

// Issue item 5 with roles: the audit role may read the files area but not
// change it.
func TestSFTPAuditRoleReadOnly(t *testing.T) {
	t.Parallel()
	a := start(t, options{})
	a.addUser(t, "aud", "audit", "Audit-password-1")
	aud := pw("aud", "Audit-password-1")
	local := t.TempDir()
	writeFile(t, local, "shared.txt", []byte("shared\n"))
	writeFile(t, local, "mine.txt", []byte("mine\n"))
	a.put(t, a.asAdmin(), filepath.Join(local, "shared.txt"))

	dl := t.TempDir()
	if r := a.sftp(t, aud, dl, "ls -1\nget shared.txt\n"); r.code != 0 || !strings.Contains(r.stdout, "shared.txt") {
		t.Fatalf("audit user ls/get: %v", r)
	}
	if got, _ := os.ReadFile(filepath.Join(dl, "shared.txt")); string(got) != "shared\n" {
		t.Fatalf("audit user got %q", got)
	}
	for _, batch := range []string{"put mine.txt\n", "rm shared.txt\n", "rename shared.txt moved.txt\n", "mkdir sub\n"} {
		if r := a.sftp(t, aud, local, batch); r.code == 0 {
			t.Fatalf("audit user %s: succeeded: %v", strings.TrimSpace(batch), r)
		}
	}
	if got := strings.Join(a.filesOnDisk(t), " "); got != "shared.txt" {
		t.Fatalf("files area after the audit user's attempts: %q, want shared.txt alone", got)
	}
}
