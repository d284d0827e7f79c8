package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// A snapshot taken while proposals keep arriving holds every change that
// was acknowledged before Snapshot started, and restoring it loses none.
func TestSnapshotUnderLoadKeepsEveryAcknowledgedChange(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	const writers = 8
	var (
		mu    sync.Mutex
		acked []string // keys whose proposal returned without error
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("load.%d.%d", w, i)
				if _, err := s.Propose(ConfigSet{Key: key, Value: "v"}); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, key)
				mu.Unlock()
			}
		}()
	}
	var snaps []struct {
		before []string
		data   []byte
	}
	for round := 0; round < 5; round++ {
		for {
			mu.Lock()
			n := len(acked)
			mu.Unlock()
			if n > (round+1)*50 {
				break
			}
		}
		mu.Lock()
		before := append([]string(nil), acked...)
		mu.Unlock()
		var buf bytes.Buffer
		if err := s.Snapshot(&buf); err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, struct {
			before []string
			data   []byte
		}{before, buf.Bytes()})
	}
	close(stop)
	wg.Wait()

	for i, sn := range snaps {
		path := filepath.Join(t.TempDir(), "x.bak")
		if err := os.WriteFile(path, sn.data, 0o600); err != nil {
			t.Fatal(err)
		}
		info, err := InspectSnapshot(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Schema != SchemaVersion || info.Applied < uint64(len(sn.before)) {
			t.Errorf("snapshot %d: %+v, %d acknowledged before it", i, info, len(sn.before))
		}
		r := open(t, t.TempDir())
		if err := r.Restore(bytes.NewReader(sn.data)); err != nil {
			t.Fatal(err)
		}
		for _, k := range sn.before {
			if v, ok := r.Config(k); !ok || v != "v" {
				t.Fatalf("snapshot %d: %s was acknowledged before the snapshot but is not in it (%d acknowledged)", i, k, len(sn.before))
			}
		}
		r.Close()
	}
}

func TestInspectSnapshotCounts(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	mustApply(t, s, DomainPrimary{Name: "example.com"})
	mustApply(t, s, AccountCreate{Accounts: []Account{{JID: "a@example.com"}, {JID: "b@example.com"}}})
	mustApply(t, s, ComponentAdd{Component: Component{Name: "cb1", Domain: "example.com", Secret: "s"}})
	path := filepath.Join(t.TempDir(), "x.bak")
	f, _ := os.Create(path)
	if err := s.Snapshot(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	info, err := InspectSnapshot(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Domains != 1 || info.Accounts != 2 || info.Components != 1 {
		t.Errorf("%+v", info)
	}
	os.WriteFile(path, []byte("junk"), 0o600)
	if _, err := InspectSnapshot(path); err == nil {
		t.Error("junk inspected as a snapshot")
	}
	if s.Clustered() {
		t.Error("a standalone store says it is clustered")
	}
	s.SetLog(&recorder{})
	if !s.Clustered() {
		t.Error("a store with another log says it is standalone")
	}
	s.SetLog(nil)
}
