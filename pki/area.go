package pki

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// MaxFileSize bounds every file in the files area: uploads over SFTP and the
// files the commands read. Keys, certificates, bundles and CSV imports all fit
// well below it.
const MaxFileSize = 16 << 20

// Area is the files area: the one directory that SFTP exposes and that
// commands name files in by bare name. Every access goes through an os.Root,
// so no name ("..", absolute paths, symbolic links) can reach outside it.
type Area struct {
	dir  string
	root *os.Root
}

// OpenArea opens (creating it if needed) the files area at dir.
func OpenArea(dir string) (*Area, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("files area: %w", err)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("files area: %w", err)
	}
	return &Area{dir: dir, root: r}, nil
}

// Dir is the directory on disk.
func (a *Area) Dir() string { return a.dir }

// Root is the jail every access goes through.
func (a *Area) Root() *os.Root { return a.root }

// Close releases the area.
func (a *Area) Close() error { return a.root.Close() }

// CheckName reports whether name is a bare file name a command may use:
// not empty, no path separators, not "." or "..", not hidden, printable.
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("file name is empty")
	case len(name) > 255:
		return errors.New("file name is longer than 255 characters")
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("%q: give a bare file name from the files area, without a path", name)
	case name == "." || name == "..":
		return fmt.Errorf("%q is not a file name", name)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("%q: file names must not start with a dot", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%q: file name has a control character", name)
		}
	}
	return nil
}

// ReadFile reads a file by bare name, refusing files over MaxFileSize.
func (a *Area) ReadFile(name string) ([]byte, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	f, err := a.root.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: no such file in the files area (upload it with sftp, see 'pki list')", name)
		}
		return nil, fmt.Errorf("%s: %v", name, unwrapPath(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: larger than %d MiB", name, MaxFileSize>>20)
	}
	return data, nil
}

// Exists reports whether a file of that name is in the area.
func (a *Area) Exists(name string) bool {
	_, err := a.root.Lstat(name)
	return err == nil
}

// WriteFile writes a file durably and atomically: to a hidden temporary file
// first, synced, then renamed into place. With exclusive, an existing file of
// that name makes it fail and nothing is written.
func (a *Area) WriteFile(name string, data []byte, perm os.FileMode, exclusive bool) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if exclusive && a.Exists(name) {
		return fmt.Errorf("%s already exists in the files area: remove or rename it first, or choose another name", name)
	}
	tmp, f, err := a.CreateTemp(perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = a.root.Rename(tmp, name)
	}
	if err != nil {
		a.root.Remove(tmp)
		return fmt.Errorf("%s: %v", name, unwrapPath(err))
	}
	return a.SyncDir()
}

// Put makes name hold data with permissions perm, as WriteFile does, but
// only when it does not already: a file with those bytes is left as it is
// (its modification time unchanged), its permissions corrected if they
// differ. changed reports whether anything was written.
func (a *Area) Put(name string, data []byte, perm os.FileMode) (changed bool, err error) {
	if err := CheckName(name); err != nil {
		return false, err
	}
	if st, err := a.root.Lstat(name); err == nil && st.Mode().IsRegular() && st.Size() == int64(len(data)) {
		if old, err := a.ReadFile(name); err == nil && bytes.Equal(old, data) {
			if st.Mode().Perm() == perm.Perm() {
				return false, nil
			}
			if err := a.root.Chmod(name, perm.Perm()); err != nil {
				return false, fmt.Errorf("%s: %v", name, unwrapPath(err))
			}
			return true, nil
		}
	}
	return true, a.WriteFile(name, data, perm, false)
}

// CreateTemp creates a hidden temporary file in the area's top directory.
// Hidden files are not listed and cannot be named by commands.
func (a *Area) CreateTemp(perm os.FileMode) (string, *os.File, error) {
	var b [8]byte
	rand.Read(b[:])
	name := ".tmp-" + hex.EncodeToString(b[:])
	f, err := a.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	return name, f, err
}

// SyncDir syncs the area's directory so renames and removals are durable.
func (a *Area) SyncDir() error {
	d, err := a.root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Remove deletes a file by bare name.
func (a *Area) Remove(name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if err := a.root.Remove(name); err != nil {
		return fmt.Errorf("%s: %v", name, unwrapPath(err))
	}
	return a.SyncDir()
}

// Entry is one visible file of the area's top directory.
type Entry struct {
	Name    string
	Size    int64
	ModTime time.Time
}

// List returns the regular, visible files of the area's top directory by name.
func (a *Area) List() ([]Entry, error) {
	d, err := a.root.Open(".")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	infos, err := d.Readdir(-1)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, fi := range infos {
		if strings.HasPrefix(fi.Name(), ".") || !fi.Mode().IsRegular() {
			continue
		}
		out = append(out, Entry{Name: fi.Name(), Size: fi.Size(), ModTime: fi.ModTime()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Clean turns a client-supplied SFTP path into a name relative to the area's
// root: "/" is the root, "." and ".." are resolved lexically and can never rise
// above the root. The os.Root underneath still refuses symbolic links that
// lead outside.
func Clean(p string) string {
	c := path.Clean("/" + p)
	c = strings.TrimPrefix(c, "/")
	if c == "" {
		return "."
	}
	return c
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
