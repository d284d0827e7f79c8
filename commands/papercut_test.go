package commands

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

// portEngine fails to listen on busy ports, as the engine reconciles, and
// clears its last error when a reconcile succeeds.
type portEngine struct {
	mu   sync.Mutex
	st   status.XMPP
	busy map[string]bool
}

func (e *portEngine) Status() status.XMPP     { e.mu.Lock(); defer e.mu.Unlock(); return e.st }
func (e *portEngine) UserSessions(string) int { return 0 }

func (e *portEngine) watch(s *store.Store) {
	s.Watch(func(c store.Change) {
		cfg, _ := s.XMPP()
		e.mu.Lock()
		defer e.mu.Unlock()
		if p := cfg.PortC2S; e.busy[strconv.Itoa(p)] {
			e.st.LastError, e.st.LastErrorAt = "listen tcp :"+strconv.Itoa(p)+": bind: address already in use", time.Now()
			return
		}
		e.st.LastError, e.st.LastErrorAt = "", time.Time{}
	})
}

// Paper cut 1: a change the engine cannot apply fails the command with
// the engine's reason, in one line, and the previous setting is kept.
func TestPaperCutEngineRefusalFailsTheCommand(t *testing.T) {
	f := newFixture(t)
	eng := &portEngine{busy: map[string]bool{"2222": true}}
	eng.watch(f.env.Store)
	f.env.XMPP = eng
	f.ok("xmpp domain example.com")
	_, err := f.run("xmpp port c2s 2222")
	if err == nil || strings.Contains(err.Error(), "\n") ||
		err.Error() != "xmpp port: the server cannot apply it: listen tcp :2222: bind: address already in use; the previous setting is kept" {
		t.Fatalf("xmpp port c2s 2222 on a busy port: %v", err)
	}
	cfg, _ := f.env.Store.XMPP()
	if cfg.PortC2S != 5222 {
		t.Errorf("c2s port %d after a refused change, want 5222 kept", cfg.PortC2S)
	}
	if st := eng.Status(); st.LastError != "" {
		t.Errorf("last error %q after the previous setting came back", st.LastError)
	}
	if out := f.ok("xmpp"); !strings.Contains(out, "Last error          : none") {
		t.Errorf("xmpp after the refusal:\n%s", out)
	}
	f.ok("xmpp port c2s 2223")
}
