package logging

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/parley-xmpp/parley/pki"
	"github.com/parley-xmpp/parley/store"
)

// Settings are this node's log settings, kept node-local in node.db (each
// node of a cluster has its own, as CMS's syslog settings are per node).
type Settings struct {
	Level   string   // none|major|problems|low-level|all ("": the default)
	Bodies  bool     // message bodies written at level all
	Enabled bool     // records go to the Servers
	Servers []Server // remote collectors
	Audit   string   // a file in the files area the audit trail is appended to ("": none)
}

// Store keys of the settings (store.IsLocalKey knows them).
const (
	KeyLevel   = store.LogLevel
	KeyBodies  = store.LogBodies
	KeyEnabled = store.SyslogEnabled
	KeyServers = store.SyslogServers
	KeyAudit   = store.SyslogAudit
)

// Config reads a configuration value.
type ConfigReader interface {
	Config(key string) (string, bool)
}

// LoadSettings reads the settings from the store.
func LoadSettings(st ConfigReader) Settings {
	var s Settings
	s.Level, _ = st.Config(KeyLevel)
	v, _ := st.Config(KeyBodies)
	s.Bodies = v == "on"
	v, _ = st.Config(KeyEnabled)
	s.Enabled = v == "true"
	v, _ = st.Config(KeyServers)
	s.Servers = ParseServers(v)
	s.Audit, _ = st.Config(KeyAudit)
	return s
}

// IsKey reports whether a configuration key is one of the log settings.
func IsKey(key string) bool {
	switch key {
	case KeyLevel, KeyBodies, KeyEnabled, KeyServers, KeyAudit:
		return true
	}
	return false
}

// Watch applies the settings now and after every change of them in st.
func (h *Hub) Watch(st *store.Store) {
	h.Apply(LoadSettings(st))
	st.Watch(func(c store.Change) {
		var key string
		switch op := c.Op.(type) {
		case store.ConfigSet:
			key = op.Key
		case store.ConfigDel:
			key = op.Key
		case store.Restored:
			h.Apply(LoadSettings(st))
			return
		}
		if c.Local && IsKey(key) {
			h.Apply(LoadSettings(st))
		}
	})
}

// Apply makes settings live: the level and body rule at once, remote
// collectors started and stopped (those already running are kept), the
// audit file opened or closed.
func (h *Hub) Apply(s Settings) {
	level := DefaultLevel
	if l, err := ParseLevel(s.Level); err == nil && s.Level != "" {
		level = l
	}
	h.SetLevel(level)
	h.SetBodies(s.Bodies)

	h.confMu.Lock()
	defer h.confMu.Unlock()
	old := *h.remotes.Load()
	var want []Server
	if s.Enabled {
		want = s.Servers
		if len(want) > MaxServers {
			want = want[:MaxServers]
		}
	}
	keep := map[Server]*remote{}
	for _, r := range old {
		keep[r.srv] = r
	}
	next := []*remote{}
	for _, srv := range want {
		if r, ok := keep[srv]; ok {
			next = append(next, r)
			delete(keep, srv)
			continue
		}
		next = append(next, newRemote(srv, h.cfg.TLSRoots))
	}
	h.remotes.Store(&next)
	for _, r := range keep {
		go r.close()
	}
	h.setAudit(s.Audit)
}

// Remotes reports the collectors records are sent to now.
func (h *Hub) Remotes() []RemoteStatus {
	var out []RemoteStatus
	for _, r := range *h.remotes.Load() {
		out = append(out, r.status())
	}
	return out
}

// Close stops the remote senders and closes the files.
func (h *Hub) Close() {
	h.confMu.Lock()
	defer h.confMu.Unlock()
	for _, r := range *h.remotes.Load() {
		r.close()
	}
	empty := []*remote{}
	h.remotes.Store(&empty)
	h.setAudit("")
	if h.cfg.File != nil {
		h.cfg.File.Close()
	}
}

// AuditMaxSize bounds the audit file: past it, the file is renamed to
// NAME.1 (replacing the previous one) and a new one begun.
const AuditMaxSize = pki.MaxFileSize / 2

// auditFile appends audit entries to a file of the files area.
type auditFile struct {
	mu   sync.Mutex
	root *os.Root
	name string
	f    *os.File
	size int64
	err  error // the last error, shown by `syslog`
}

// AuditFile is the audit file in use ("" if none) and its last error.
func (h *Hub) AuditFile() (string, error) {
	h.confMu.Lock()
	a := h.audit
	h.confMu.Unlock()
	if a == nil {
		return "", nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.name, a.err
}

// setAudit opens name as the audit file (confMu held).
func (h *Hub) setAudit(name string) {
	if h.audit != nil && h.audit.name == name {
		return
	}
	if h.audit != nil {
		h.audit.mu.Lock()
		if h.audit.f != nil {
			h.audit.f.Close()
		}
		h.audit.mu.Unlock()
		h.audit = nil
	}
	if name == "" || h.cfg.Files == nil {
		return
	}
	h.audit = &auditFile{root: h.cfg.Files.Root(), name: name}
}

// Audit appends an audit trail entry to the audit file, if there is one,
// and logs it at low-level.
func (h *Hub) Audit(e store.AuditEntry) {
	line := AuditLine(e)
	Low(h.Logger(), "audit: %s", line)
	h.confMu.Lock()
	a := h.audit
	h.confMu.Unlock()
	if a == nil {
		return
	}
	a.write(line + "\n")
}

// AuditLine is one entry as the audit file has it.
func AuditLine(e store.AuditEntry) string {
	t := e.Time
	if t.IsZero() {
		t = time.Now()
	}
	from := e.From
	if from == "" {
		from = "-"
	}
	return fmt.Sprintf("%s user=%s from=%s action=%s result=%s", t.UTC().Format(time.RFC3339), e.User, from,
		strconv.Quote(e.Action), strconv.Quote(e.Result))
}

func (a *auditFile) write(line string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f != nil && a.size+int64(len(line)) > AuditMaxSize {
		a.f.Close()
		a.f = nil
		if err := a.root.Rename(a.name, a.name+".1"); err != nil {
			a.err = err
		}
	}
	if a.f == nil {
		f, err := a.root.OpenFile(a.name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			a.err = err
			return
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			a.err = err
			return
		}
		a.f, a.size = f, st.Size()
	}
	n, err := a.f.WriteString(line)
	a.size += int64(n)
	a.err = err
}
