package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// dump lists every key and value of every bucket (nested ones too, with
// their sequences) of the replicated store, in order.
func dump(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	var walk func(path string, b *bolt.Bucket) error
	walk = func(path string, b *bolt.Bucket) error {
		out = append(out, fmt.Sprintf("%s seq=%d", path, b.Sequence()))
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return walk(path+"/"+string(k), b.Bucket(k))
			}
			out = append(out, fmt.Sprintf("%s/%q=%q", path, k, v))
			return nil
		})
	}
	err := s.view(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error { return walk(string(name), b) })
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameDump(t *testing.T, a, b []string) {
	t.Helper()
	if strings.Join(a, "\n") == strings.Join(b, "\n") {
		return
	}
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			t.Fatalf("stores differ at line %d:\n%s\n%s", i, x, y)
		}
	}
}

// recorder is a Log that keeps every committed entry with its index, as
// a replicated log would, and commits through the store's local log.
type recorder struct {
	inner Log
	mu    sync.Mutex
	log   map[uint64][]byte
}

func (r *recorder) Commit(entry []byte) (uint64, any, error) {
	idx, resp, err := r.inner.Commit(entry)
	if idx != 0 {
		r.mu.Lock()
		r.log[idx] = entry
		r.mu.Unlock()
	}
	return idx, resp, err
}

// someOps exercises every op kind, failures included.
func someOps(t *testing.T, n int) []Op {
	acct, err := NewAccount("alice@example.com", "password-1")
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := NewAccount("bob@example.com", "password-2")
	ops := []Op{
		ConfigSet{Key: XMPPPortC2S, Value: "5333"},
		ConfigSet{Key: XMPPEnabled, Value: "true"}, // node-local: fails
		ConfigDel{Key: "nothing"},
		AdminCreate{Admin: Admin{Name: "root", Role: RoleAdmin, PasswordHash: "h"}},
		AdminCreate{Admin: Admin{Name: "root", Role: RoleAdmin, PasswordHash: "h"}}, // ErrExists
		AdminCreate{Admin: Admin{Name: "aud", Role: RoleAudit, PasswordHash: "h"}},
		AdminPassword{Name: "aud", Hash: "h2"},
		AdminExpire{Name: "aud"},
		AdminKeyAdd{Name: "root", Line: "ssh-ed25519 AAAA one"},
		AdminKeyAdd{Name: "root", Line: "ssh-ed25519 BBBB two"},
		AdminKeyDel{Name: "root", Index: 1},
		AdminKeyDel{Name: "root", Index: 9}, // fails
		AdminUnlock{Name: "aud"},
		AdminDelete{Name: "aud"},
		AdminDelete{Name: "root"},                                                         // ErrLastAdmin
		AuditAdd{Entry: AuditEntry{User: "root", Action: "hostname alpha", Result: "ok"}}, // a no-op since schema 5
		DomainPrimary{Name: "example.com", Certs: &Domain{Key: "k", Cert: "c"}},
		DomainPut{Domain: Domain{Name: "example.org", Key: "k2", Cert: "c2", Bundle: "b"}},
		DomainDel{Name: "nowhere"}, // ErrNotFound
		ComponentAdd{Component: Component{Name: "cb1", Domain: "example.com", Secret: "s"}},
		ComponentAdd{Component: Component{Name: "cb2", Domain: "example.com", Secret: "s"}},
		ComponentDel{Name: "cb2"},
		AccountCreate{Accounts: []Account{acct, bob}},
		AccountCreate{Accounts: []Account{{JID: "new@example.com"}, acct}}, // ErrExists: new@ not created either
		AccountPassword{Account: bob},
		RosterSubscribe{From: acct.JID, To: bob.JID, Type: "subscribe", Direction: SubOutbound, FromLocal: true, ToLocal: true, Stanza: []byte("<presence type='subscribe'/>")},
		RosterSubscribe{From: bob.JID, To: acct.JID, Type: "subscribed", Direction: SubOutbound, FromLocal: true, ToLocal: true},
		RosterSet{User: acct.JID, JID: bob.JID, Name: "Bob", Groups: []string{"Friends"}},
		RosterSubscribe{From: "romeo@remote.example", To: acct.JID, Type: "subscribe", Direction: SubInbound, ToLocal: true, MaxStrangerRequests: 100},
		RosterPut{User: acct.JID, Item: RosterItem{JID: "carol@example.org", Subscription: SubBoth, Groups: []string{"G"}}},
		RosterDel{User: acct.JID, JID: "carol@example.org"},
		RosterDel{User: acct.JID, JID: "carol@example.org"}, // ErrNotFound
		VCardSet{User: acct.JID, VCard: []byte("<vCard/>")},
		PrivateSet{User: acct.JID, Key: "storage:bookmarks", XML: []byte("<storage/>")},
		LastSet{User: acct.JID, Status: "bye"},
		DomainDel{Name: "example.org"},
		FilePut{File: StoredFile{Name: "k", Data: []byte("KEY"), Mode: 0o600}},
		FilePut{File: StoredFile{Name: "c", Data: []byte("CERT"), Mode: 0o644}},
		FilePut{File: StoredFile{Name: "c", Data: []byte("CERT 2"), Mode: 0o644}},
		FilePut{File: StoredFile{Name: "../x", Data: []byte("no"), Mode: 0o600}}, // fails
		DialbackSecretInit{Secret: bytes.Repeat([]byte{1}, DialbackSecretSize)},
		DialbackSecretInit{Secret: bytes.Repeat([]byte{2}, DialbackSecretSize)}, // kept the first
		DirectorySet{Directory: Directory{Domain: "example.com", URL: "ldap://127.0.0.1", Base: "dc=example,dc=com", BindDN: "cn=a", BindPassword: "pw"}},
		DirectorySet{Directory: Directory{Domain: "example.com", URL: "http://x", Base: "dc=x"}}, // fails
		DirectorySet{Directory: Directory{Domain: "example.org", URL: "ldaps://ldap.example.org", Base: "dc=example,dc=org"}},
		DirectoryDel{Domain: "example.org"},
		DirectoryDel{Domain: "example.org"}, // ErrNotFound
		DirectoryRoster{User: acct.JID, UserName: "Alice", Contacts: []SharedContact{{JID: bob.JID, Name: "Bob", Groups: []string{"staff"}}}},
	}
	for i := 0; i < n; i++ {
		ops = append(ops, OfflinePush{User: bob.JID, Stanza: []byte(fmt.Sprintf("<message id='%d'/>", i))})
	}
	ops = append(ops, OfflineDel{User: bob.JID, Through: uint64(n / 2)}, AccountDelete{JID: "nobody@example.com"})
	return ops
}

func TestReplayGivesIdenticalBuckets(t *testing.T) {
	a := open(t, t.TempDir())
	defer a.Close()
	rec := &recorder{inner: a.local, log: map[uint64][]byte{}}
	a.SetLog(rec)
	ops := someOps(t, 200)
	// The fixed part in order, the offline pushes concurrently (so that
	// they are committed in batches), then the rest.
	fixed, pushes := ops[:len(ops)-202], ops[len(ops)-202:len(ops)-2]
	for _, op := range fixed {
		a.Propose(op)
	}
	var wg sync.WaitGroup
	for _, op := range pushes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Propose(op); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, op := range ops[len(ops)-2:] {
		a.Propose(op)
	}
	if n := a.AppliedIndex(); n != uint64(len(ops)) || len(rec.log) != len(ops) {
		t.Fatalf("applied index %d, %d entries recorded, %d proposed", n, len(rec.log), len(ops))
	}

	// Replay into an empty store: one entry at a time, then in batches.
	for _, batch := range []int{1, 7} {
		b := open(t, t.TempDir())
		for i := uint64(1); i <= uint64(len(ops)); i += uint64(batch) {
			var entries [][]byte
			for j := i; j < i+uint64(batch) && j <= uint64(len(ops)); j++ {
				entries = append(entries, rec.log[j])
			}
			if batch == 1 {
				b.Apply(i, entries[0])
			} else {
				b.ApplyBatch(i, entries)
			}
		}
		sameDump(t, dump(t, a), dump(t, b))
		// Entries at or below the applied index are skipped.
		b.Apply(1, rec.log[1])
		b.ApplyBatch(3, [][]byte{rec.log[3], rec.log[4]})
		sameDump(t, dump(t, a), dump(t, b))
		b.Close()
	}
	if _, err := a.Account("new@example.com"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a failed account.create left an account behind: %v", err)
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	a := open(t, t.TempDir())
	defer a.Close()
	for _, op := range someOps(t, 20) {
		a.Propose(op)
	}
	var snap bytes.Buffer
	if err := a.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	b := open(t, dir)
	defer b.Close()
	b.SetLocal(ConfigHostname, "other")
	mustApply(t, b, AdminCreate{Admin: Admin{Name: "someone", Role: RoleAdmin, PasswordHash: "h"}})
	b.AddHistory("someone", "kept: node-local")
	var restored atomic.Int32
	b.Watch(func(c Change) {
		if _, ok := c.Op.(Restored); ok && c.Index == a.AppliedIndex() {
			restored.Add(1)
		}
	})
	// Readers and writers keep going while the store is swapped.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				b.XMPP()
				b.Admins()
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
				b.Propose(ConfigSet{Key: "x", Value: fmt.Sprint(i)})
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	if err := b.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
	// Again with nothing else going on: b is a's copy.
	if err := b.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	sameDump(t, dump(t, a), dump(t, b))
	if err := b.Settle(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if restored.Load() != 2 {
		t.Error("watchers were not told of the restore")
	}
	if h, _ := b.History("someone"); len(h) != 1 {
		t.Errorf("node-local history after restore: %q", h)
	}
	// The store goes on from the snapshot's index.
	r, err := b.Propose(ConfigSet{Key: "after", Value: "restore"})
	if err != nil || r.Index != a.AppliedIndex()+1 {
		t.Fatalf("propose after restore: index %d, %v", r.Index, err)
	}
	b.Close()
	b = open(t, dir)
	if v, _ := b.Config("after"); v != "restore" {
		t.Error("restored store lost a change after reopening")
	}
	if v, _ := b.Config(XMPPPortC2S); v != "5333" {
		t.Errorf("xmpp.port.c2s %q after restore", v)
	}
	if v, _ := b.Config(ConfigHostname); v != "other" {
		t.Errorf("hostname %q after restore: it is node-local", v)
	}

	// Garbage is refused and the store stays as it was.
	if err := b.Restore(strings.NewReader("not a bolt file")); err == nil {
		t.Error("restore of garbage worked")
	}
	if v, _ := b.Config("after"); v != "restore" {
		t.Error("a refused restore changed the store")
	}
}

func TestGroupCommit(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	mustApply(t, s, AccountCreate{Accounts: []Account{{JID: "taken@example.com"}}})
	const n = 200
	var wg sync.WaitGroup
	errs := make([]error, n)
	idx := make([]uint64, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var op Op = OfflinePush{User: fmt.Sprintf("u%d@example.com", i%10), Stanza: []byte(fmt.Sprint(i))}
			if i%10 == 0 { // fails, in whatever batch it lands
				op = AccountCreate{Accounts: []Account{{JID: fmt.Sprintf("new%d@example.com", i)}, {JID: "taken@example.com"}}}
			}
			r, err := s.Propose(op)
			errs[i], idx[i] = err, r.Index
			// Returned: durable, so visible to a new read transaction.
			if err == nil && s.AppliedIndex() < r.Index {
				t.Errorf("proposal %d returned before index %d was applied", i, r.Index)
			}
		}()
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for i := 0; i < n; i++ {
		if i%10 == 0 {
			if !errors.Is(errs[i], ErrExists) {
				t.Errorf("proposal %d: %v, want ErrExists", i, errs[i])
			}
		} else if errs[i] != nil {
			t.Errorf("proposal %d: %v", i, errs[i])
		}
		if idx[i] == 0 || seen[idx[i]] {
			t.Errorf("proposal %d: index %d", i, idx[i])
		}
		seen[idx[i]] = true
	}
	total := 0
	for u := 0; u < 10; u++ {
		m, _ := s.Offline(fmt.Sprintf("u%d@example.com", u))
		total += len(m)
	}
	if total != n-n/10 {
		t.Errorf("%d offline messages stored, want %d", total, n-n/10)
	}
	if all, _ := s.Accounts(""); len(all) != 1 {
		t.Errorf("accounts = %d: a failed op was partly applied", len(all))
	}
	if got := s.AppliedIndex(); got != n+1 {
		t.Errorf("applied index %d, want %d", got, n+1)
	}
}

func TestBatchFailureIsIsolated(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	mustApply(t, s, AccountCreate{Accounts: []Account{{JID: "taken@example.com"}}})
	enc := func(op Op) []byte {
		data, err := EncodeEntry(Entry{Time: time.Unix(1e9, 0), ID: "x", Op: op})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	res := s.ApplyBatch(2, [][]byte{
		enc(OfflinePush{User: "a@example.com", Stanza: []byte("1")}),
		enc(AccountCreate{Accounts: []Account{{JID: "new@example.com"}, {JID: "taken@example.com"}}}),
		[]byte("garbage"),
		enc(OfflinePush{User: "a@example.com", Stanza: []byte("2")}),
		enc(AdminDelete{Name: "nobody"}),
	})
	for i, want := range []error{nil, ErrExists, errors.New("any"), nil, ErrNotFound} {
		if got := res[i].Err; (got == nil) != (want == nil) || (want != nil && want.Error() != "any" && !errors.Is(got, want)) {
			t.Errorf("entry %d: %v, want %v", i, got, want)
		}
		if res[i].Index != uint64(2+i) {
			t.Errorf("entry %d: index %d", i, res[i].Index)
		}
	}
	if m, _ := s.Offline("a@example.com"); len(m) != 2 || m[0].Seq != 1 || m[1].Seq != 2 {
		t.Errorf("offline = %+v", m)
	}
	if _, err := s.Account("new@example.com"); err == nil {
		t.Error("the failed op was partly applied")
	}
	if s.AppliedIndex() != 6 {
		t.Errorf("applied index %d", s.AppliedIndex())
	}
}

func goroutineID() string {
	b := make([]byte, 64)
	return strings.Fields(string(b[:runtime.Stack(b, false)]))[1]
}

func TestWatchersInOrderOffTheProposer(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	var mu sync.Mutex
	var got []uint64
	var onProposer atomic.Int32
	proposers := sync.Map{}
	s.Watch(func(c Change) {
		if _, ok := proposers.Load(goroutineID()); ok {
			onProposer.Add(1)
		}
		mu.Lock()
		got = append(got, c.Index)
		mu.Unlock()
		if c.Time.IsZero() {
			t.Error("a change without its time")
		}
	})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			proposers.Store(goroutineID(), true)
			for i := 0; i < 25; i++ {
				s.Propose(ConfigSet{Key: fmt.Sprint("k", w), Value: fmt.Sprint(i)})
				s.Propose(AdminDelete{Name: "nobody"}) // fails: not told
			}
		}()
	}
	wg.Wait()
	if err := s.Settle(context.Background(), s.AppliedIndex()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 200 || !sort.SliceIsSorted(got, func(i, j int) bool { return got[i] < got[j] }) {
		t.Errorf("watchers saw %d changes, in order: %v", len(got), sort.SliceIsSorted(got, func(i, j int) bool { return got[i] < got[j] }))
	}
	if onProposer.Load() != 0 {
		t.Errorf("%d changes were told on a proposer's goroutine", onProposer.Load())
	}
}

func TestSettleWaitsForWatchers(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	var done atomic.Bool
	s.Watch(func(c Change) {
		time.Sleep(50 * time.Millisecond)
		done.Store(true)
	})
	if _, err := s.ProposeSettled(context.Background(), ConfigSet{Key: "k", Value: "v"}); err != nil {
		t.Fatal(err)
	}
	if !done.Load() {
		t.Error("ProposeSettled returned before the watcher ran")
	}
	done.Store(false)
	if err := s.SetLocal(XMPPListen, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	s.Settle(context.Background(), 0)
	if !done.Load() {
		t.Error("Settle returned before the watcher saw the node-local change")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := s.Settle(ctx, 1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("settle on a future index: %v", err)
	}
}

func TestDecodeGarbage(t *testing.T) {
	good, err := EncodeEntry(Entry{Time: time.Unix(1, 0), ID: "id", Op: ConfigSet{Key: "k", Value: "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := DecodeEntry(good); err != nil || e.Op != (ConfigSet{Key: "k", Value: "v"}) || !e.Time.Equal(time.Unix(1, 0)) || e.ID != "id" {
		t.Fatalf("round trip: %+v %v", e, err)
	}
	again, _ := EncodeEntry(Entry{Time: time.Unix(1, 0), ID: "id", Op: ConfigSet{Key: "k", Value: "v"}})
	if !bytes.Equal(good, again) {
		t.Error("encoding is not deterministic")
	}
	for _, bad := range []string{
		"", "garbage", "{}", "[]", "null",
		`{"kind":"no.such.op","time":"2026-01-01T00:00:00Z","id":"x","op":{}}`,
		`{"kind":"config.set","time":"2026-01-01T00:00:00Z","id":"x"}`,
		`{"kind":"config.set","time":"2026-01-01T00:00:00Z","id":"x","op":"str"}`,
		`{"kind":"config.set","time":"2026-01-01T00:00:00Z","id":"x","op":{"key":5}}`,
		`{"kind":"config.set","time":"yesterday","id":"x","op":{}}`,
		`{"kind":"config.set","extra":1,"op":{}}`,
		`{"kind":"restore","time":"2026-01-01T00:00:00Z","id":"x","op":{}}`,
	} {
		if _, err := DecodeEntry([]byte(bad)); err == nil {
			t.Errorf("decoded %q", bad)
		}
	}
	if _, err := EncodeEntry(Entry{Op: Restored{}}); err == nil {
		t.Error("a restore was encoded as a log entry")
	}
	s := open(t, t.TempDir())
	defer s.Close()
	if _, err := s.Apply(1, []byte("garbage")); err == nil {
		t.Error("the FSM applied garbage")
	}
	if _, err := s.Apply(2, []byte(`{"kind":"no.such.op","time":"2026-01-01T00:00:00Z","id":"x","op":{}}`)); err == nil || !strings.Contains(err.Error(), "unknown operation") {
		t.Errorf("unknown op: %v", err)
	}
	if s.AppliedIndex() != 2 {
		t.Errorf("applied index %d after two bad entries", s.AppliedIndex())
	}
}

// writeSchema3 builds a data directory as Parley with schema 3 left it:
// history, last logins and xmpp.listen in the one file.
func writeSchema3(t *testing.T, dir string) {
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		meta, _ := tx.CreateBucket(bucketMeta)
		meta.Put([]byte("schema"), []byte("3"))
		for _, b := range [][]byte{bucketConfig, bucketAdmins, bucketAudit, bucketHistory, bucketDomains, bucketAccounts,
			bucketRosters, bucketOffline, bucketVCards, bucketPrivate, bucketLast, bucketComponents} {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		cfg := tx.Bucket(bucketConfig)
		cfg.Put([]byte(XMPPListen), []byte("127.0.0.1 eth0"))
		cfg.Put([]byte(XMPPEnabled), []byte("true"))
		cfg.Put([]byte(ConfigHostname), []byte("old"))
		tx.Bucket(bucketAdmins).Put([]byte("root"), []byte(`{"name":"root","role":"admin","password_hash":"h","password_changed":"2025-01-01T00:00:00Z","last_login":"2026-02-03T04:05:06Z","created":"2025-01-01T00:00:00Z"}`))
		tx.Bucket(bucketAdmins).Put([]byte("aud"), []byte(`{"name":"aud","role":"audit","password_hash":"h","password_changed":"2025-01-01T00:00:00Z","created":"2025-01-01T00:00:00Z"}`))
		h, _ := tx.Bucket(bucketHistory).CreateBucket([]byte("root"))
		for i := 0; i < 3; i++ {
			n, _ := h.NextSequence()
			h.Put(seqKey(n), []byte(fmt.Sprint("cmd ", i)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestMigrationMovesNodeLocalData(t *testing.T) {
	dir := t.TempDir()
	writeSchema3(t, dir)
	s := open(t, dir)
	if v, _ := s.Schema(); v != SchemaVersion {
		t.Errorf("schema %d", v)
	}
	check := func() {
		t.Helper()
		if h, _ := s.History("root"); strings.Join(h, ",") != "cmd 0,cmd 1,cmd 2" {
			t.Errorf("history %q", h)
		}
		a, err := s.Admin("root")
		if err != nil || !a.LastLogin.Equal(time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)) || a.PasswordHash != "h" {
			t.Errorf("root: %+v %v", a, err)
		}
		if all, _ := s.Admins(); len(all) != 2 || !all[0].LastLogin.IsZero() || all[1].LastLogin.IsZero() {
			t.Errorf("admins: %+v", all)
		}
		if v, ok := s.Config(XMPPListen); !ok || v != "127.0.0.1 eth0" {
			t.Errorf("xmpp.listen = %q", v)
		}
		if cfg, _ := s.XMPP(); strings.Join(cfg.Listen, " ") != "127.0.0.1 eth0" || !cfg.Enabled {
			t.Errorf("xmpp: %+v", cfg)
		}
		// Nothing node-local is left in the replicated file.
		for _, line := range dump(t, s) {
			if strings.Contains(line, "last_login") || strings.Contains(line, XMPPListen) || strings.HasPrefix(line, "history") {
				t.Errorf("node-local data in the replicated store: %s", line)
			}
		}
	}
	check()
	// More history goes on after the old lines.
	s.AddHistory("root", "cmd 3")
	if h, _ := s.History("root"); len(h) != 4 || h[3] != "cmd 3" {
		t.Errorf("history after migration: %q", h)
	}
	s.Close()
	s = open(t, dir) // nothing more to migrate
	defer s.Close()
	if h, _ := s.History("root"); len(h) != 4 {
		t.Errorf("history after reopening: %q", h)
	}
	// Deleting an admin deletes their node-local data.
	mustApply(t, s, AdminCreate{Admin: Admin{Name: "root2", Role: RoleAdmin, PasswordHash: "h"}})
	mustApply(t, s, AdminDelete{Name: "root"})
	if h, _ := s.History("root"); len(h) != 0 || !s.lastLogin("root").IsZero() {
		t.Errorf("a deleted admin's history: %q", h)
	}
	if err := prop(s, ConfigSet{Key: XMPPListen, Value: "x"}); err == nil {
		t.Error("a node-local key went through the log")
	}
}

func TestEntryCarriesTheTime(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	at := time.Date(2020, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	mustApplyAt(t, s, at, LastSet{User: "u@example.com"})
	if l, _, _ := s.Last("u@example.com"); !l.Time.Equal(at) || l.Time.Location() != time.UTC {
		t.Errorf("last = %v", l.Time)
	}
	data, _ := json.Marshal(ConfigSet{Key: "k"})
	if !bytes.Contains(data, []byte(`"key":"k"`)) {
		t.Errorf("payload %s", data)
	}
}

func BenchmarkProposeParallel(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var n atomic.Int64
	stanza := []byte(`<message from="a@example.lan/r" to="b@example.lan" type="chat"><body>hello there</body></message>`)
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := s.Propose(OfflinePush{User: fmt.Sprintf("u%d@example.lan", i%10000), Stanza: stanza}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}
