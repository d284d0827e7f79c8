package shell

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"

	"github.com/gliderlabs/ssh"
	"github.com/pkg/sftp"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/store"
)

// handleSFTP serves the files area over SFTP. Every path goes through the
// area's os.Root: "..", absolute paths and symbolic links cannot leave it.
// Uploads land in a hidden temporary file and are renamed into place only
// when complete and within the size limit, so a failed or oversize upload
// leaves nothing behind. The area is flat: folders are refused (mkdir, a
// path into a folder), since commands name files by bare name. The audit
// role may only read.
func (s *Server) handleSFTP(sess ssh.Session) {
	a, end, ok := s.begin(sess)
	if !ok {
		return
	}
	defer end()
	h := &sftpHandler{srv: s, user: a.Name, from: remoteHost(sess), readOnly: a.Role == store.RoleAudit}
	rs := sftp.NewRequestServer(sess, sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h})
	if err := rs.Serve(); err != nil && !errors.Is(err, io.EOF) {
		logging.Problem(s.cfg.Log, "sftp: %s: %v", a.Name, err)
	}
	rs.Close()
}

type sftpHandler struct {
	srv      *Server
	user     string
	from     string
	readOnly bool
}

func (h *sftpHandler) area() *pki.Area { return h.srv.cfg.Env.Files }

func (h *sftpHandler) audit(action string, err error) {
	result := "ok"
	if err != nil {
		result = "failed: " + err.Error()
	}
	h.srv.cfg.Env.Store.AddAudit(store.AuditEntry{User: h.user, From: h.from, Action: "sftp " + action, Result: result})
}

var errReadOnly = fmt.Errorf("permission denied: the audit role can only read")

// errFlat refuses folders: the files area is flat, as on Cisco Meeting
// Server, because commands name files by bare name. It carries SFTP's
// permission-denied code (what OpenSSH's sftp prints); clients that show
// the server's message show it, and the audit trail records it.
func errFlat(name string) error {
	return deniedError(name + ": the files area is flat: folders are not allowed, give a bare file name (e.g. put cert.pem cert.pem)")
}

// deniedError is a message with SFTP's permission-denied code.
type deniedError string

func (e deniedError) Error() string { return string(e) }
func (e deniedError) Unwrap() error { return sftp.ErrSSHFxPermissionDenied }

// writable cleans a path the client wants to create or change. Hidden names
// are refused: the area keeps its temporary files under them. So are
// paths into a folder: the area is flat (errFlat).
func (h *sftpHandler) writable(p string) (string, error) {
	name, err := h.removable(p)
	if err == nil && strings.Contains(name, "/") {
		err = errFlat(name)
	}
	return name, err
}

// removable is writable for what is already there: files and folders
// made before the area was flat may still be removed or moved out.
func (h *sftpHandler) removable(p string) (string, error) {
	if h.readOnly {
		return "", errReadOnly
	}
	name := pki.Clean(p)
	if name == "." {
		return "", sftp.ErrSSHFxPermissionDenied
	}
	for _, part := range strings.Split(name, "/") {
		if strings.HasPrefix(part, ".") {
			return "", fmt.Errorf("%s: names starting with a dot are not allowed", p)
		}
	}
	return name, nil
}

func (h *sftpHandler) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	name := pki.Clean(r.Filepath)
	f, err := h.area().Root().Open(name)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file", r.Filepath)
	}
	return f, nil
}

func (h *sftpHandler) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	name, err := h.writable(r.Filepath)
	if err != nil {
		if errors.Is(err, sftp.ErrSSHFxPermissionDenied) && strings.Contains(name, "/") {
			h.audit("put "+name, err) // the one place OpenSSH's sftp users can read why
		}
		return nil, err
	}
	if st, err := h.area().Root().Lstat(name); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", r.Filepath)
	}
	tmp, f, err := h.area().CreateTemp(0o600)
	if err != nil {
		return nil, err
	}
	return &upload{h: h, name: name, tmp: tmp, f: f, limit: h.srv.cfg.MaxUpload}, nil
}

// upload is one file being written over SFTP.
type upload struct {
	h     *sftpHandler
	name  string
	tmp   string
	f     *os.File
	limit int64

	mu     sync.Mutex
	size   int64
	failed error
	closed bool
}

func (u *upload) WriteAt(p []byte, off int64) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.failed != nil {
		return 0, u.failed
	}
	if off < 0 || off+int64(len(p)) > u.limit {
		u.failed = fmt.Errorf("%s: upload is larger than the limit of %d bytes; nothing was stored", u.name, u.limit)
		return 0, u.failed
	}
	n, err := u.f.WriteAt(p, off)
	if err != nil {
		u.failed = err
	}
	if end := off + int64(n); end > u.size {
		u.size = end
	}
	return n, err
}

// Close publishes a complete upload atomically, or discards a failed one.
func (u *upload) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil
	}
	u.closed = true
	root := u.h.area().Root()
	err := u.failed
	if err == nil {
		err = u.f.Sync()
	}
	if cerr := u.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if err = root.Chmod(u.tmp, 0o600); err == nil {
			err = root.Rename(u.tmp, u.name)
		}
	}
	if err != nil {
		root.Remove(u.tmp)
	} else {
		u.h.area().SyncDir()
	}
	u.h.audit(fmt.Sprintf("put %s (%d bytes)", u.name, u.size), err)
	return err
}

func (h *sftpHandler) Filecmd(r *sftp.Request) error {
	root := h.area().Root()
	switch r.Method {
	case "Setstat":
		return nil // sizes, times and modes are the appliance's to keep
	case "Rename", "PosixRename":
		from, err := h.removable(r.Filepath)
		if err != nil {
			return err
		}
		to, err := h.writable(r.Target)
		if err != nil {
			return err
		}
		err = root.Rename(from, to)
		h.audit("rename "+from+" "+to, err)
		return err
	case "Remove":
		name, err := h.removable(r.Filepath)
		if err != nil {
			return err
		}
		if st, serr := root.Lstat(name); serr == nil && st.IsDir() {
			return fmt.Errorf("%s is a directory: use rmdir", r.Filepath)
		}
		err = root.Remove(name)
		h.audit("rm "+name, err)
		return err
	case "Mkdir":
		if h.readOnly {
			return errReadOnly
		}
		name := pki.Clean(r.Filepath)
		err := errFlat(name)
		h.audit("mkdir "+name, err)
		return err
	case "Rmdir":
		name, err := h.removable(r.Filepath)
		if err != nil {
			return err
		}
		err = root.Remove(name)
		h.audit("rmdir "+name, err)
		return err
	case "Symlink", "Link":
		return fmt.Errorf("links are not allowed in the files area: %w", sftp.ErrSSHFxPermissionDenied)
	}
	return sftp.ErrSSHFxOpUnsupported
}

type listing []fs.FileInfo

func (l listing) ListAt(out []fs.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	if n < len(out) {
		return n, io.EOF
	}
	return n, nil
}

func (h *sftpHandler) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	root := h.area().Root()
	name := pki.Clean(r.Filepath)
	switch r.Method {
	case "List":
		d, err := root.Open(name)
		if err != nil {
			return nil, err
		}
		defer d.Close()
		infos, err := d.Readdir(-1)
		if err != nil {
			return nil, err
		}
		var out listing
		for _, fi := range infos {
			if !strings.HasPrefix(fi.Name(), ".") {
				out = append(out, fi)
			}
		}
		return out, nil
	case "Stat":
		st, err := root.Stat(name)
		if err != nil {
			return nil, err
		}
		return listing{st}, nil
	case "Lstat":
		st, err := root.Lstat(name)
		if err != nil {
			return nil, err
		}
		return listing{st}, nil
	case "Readlink":
		return nil, fmt.Errorf("links are not allowed in the files area: %w", sftp.ErrSSHFxPermissionDenied)
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}
