package logging

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Defaults of the local log file: log/parley.log in the data directory, cut
// at 10 MiB, with parley.log.1 … parley.log.4 kept (at most 50 MiB).
const (
	DefaultFileDir  = "log"
	DefaultFileName = "parley.log"
	DefaultMaxSize  = 10 << 20
	DefaultKeep     = 4
)

// Rotating is a log file of bounded size: when a write would take it over
// MaxSize, it is renamed to NAME.1 (NAME.1 to NAME.2 and so on, the
// oldest of Keep generations removed) and a new one begun. A single write
// larger than MaxSize still goes whole into a fresh file.
type Rotating struct {
	path    string
	maxSize int64
	keep    int

	mu   sync.Mutex
	f    *os.File
	size int64
}

// NewRotating opens (or creates) the file at path, appending, with its
// directory (mode 0750; the file 0640).
func NewRotating(path string, maxSize int64, keep int) (*Rotating, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if keep < 0 {
		keep = 0
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	r := &Rotating{path: path, maxSize: maxSize, keep: keep}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

// Path is the current file's path.
func (r *Rotating) Path() string { return r.path }

func (r *Rotating) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, st.Size()
	return nil
}

// Write appends p, rotating first if p would take the file over the limit.
func (r *Rotating) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	if r.size > 0 && r.size+int64(len(p)) > r.maxSize {
		if err := r.rotate(); err != nil {
			return 0, fmt.Errorf("rotating %s: %w", r.path, err)
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

// rotate shifts the generations and opens a fresh file.
func (r *Rotating) rotate() error {
	r.f.Close()
	r.f = nil
	if r.keep == 0 {
		if err := os.Remove(r.path); err != nil && !os.IsNotExist(err) {
			return err
		}
		return r.open()
	}
	os.Remove(fmt.Sprintf("%s.%d", r.path, r.keep))
	for i := r.keep - 1; i >= 1; i-- {
		old := fmt.Sprintf("%s.%d", r.path, i)
		if _, err := os.Stat(old); err == nil {
			if err := os.Rename(old, fmt.Sprintf("%s.%d", r.path, i+1)); err != nil {
				return err
			}
		}
	}
	if err := os.Rename(r.path, r.path+".1"); err != nil && !os.IsNotExist(err) {
		return err
	}
	return r.open()
}

// Close closes the file.
func (r *Rotating) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
