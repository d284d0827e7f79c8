package router

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/parley-xmpp/parley/server/address"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
)

type fake struct {
	bare, res string
	avail     bool // what bind sets in the router
	prio      int
	replaced  atomic.Int32
	delivered atomic.Int32
	fail      bool // Deliver fails
	mu        sync.Mutex
	got       []*xml.Element
}

func (f *fake) Bare() string        { return f.bare }
func (f *fake) Resource() string    { return f.res }
func (f *fake) Full() string        { return f.bare + "/" + f.res }
func (f *fake) Domain() string      { return address.Domain(f.bare) }
func (f *fake) Replace()            { f.replaced.Add(1) }
func (f *fake) Close(*stream.Error) {}
func (f *fake) Out() *stream.Conn   { return nil }
func (f *fake) Value(key any) any   { return nil }
func (f *fake) SetValue(key, v any) {}
func (f *fake) Deliver(el *xml.Element) bool {
	if f.fail {
		return false
	}
	f.delivered.Add(1)
	f.mu.Lock()
	f.got = append(f.got, el)
	f.mu.Unlock()
	return true
}

func sess(bare, res string, avail bool, prio int) *fake {
	return &fake{bare: bare, res: res, avail: avail, prio: prio}
}

// bind binds a session with the presence it was made with.
func bind(r *Router, s *fake) {
	r.Bind(s)
	r.SetAvailable(s, s.avail, s.prio)
}

func resources(ss []Session) string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Resource())
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func TestBindUnbindReplace(t *testing.T) {
	r := New()
	a1 := sess("alice@a.lan", "phone", true, 0)
	a2 := sess("alice@a.lan", "desk", true, 0)
	r.Bind(a1)
	r.Bind(a2)
	if r.Session("alice@a.lan", "phone") != a1 || r.Session("alice@a.lan", "desk") != a2 {
		t.Fatal("lookup by full JID")
	}
	if r.Session("alice@a.lan", "none") != nil || r.Session("bob@a.lan", "phone") != nil {
		t.Fatal("unknown full JIDs have no session")
	}
	if got := resources(r.Sessions("alice@a.lan")); got != "desk,phone" {
		t.Fatalf("sessions %s", got)
	}
	// Binding the same session again is not a replacement.
	r.Bind(a1)
	if a1.replaced.Load() != 0 {
		t.Fatal("rebinding the same session replaced it")
	}
	// Another session on the same resource replaces the first.
	a1b := sess("alice@a.lan", "phone", false, 0)
	r.Bind(a1b)
	if a1.replaced.Load() != 1 || a1b.replaced.Load() != 0 {
		t.Fatalf("replace: old %d, new %d", a1.replaced.Load(), a1b.replaced.Load())
	}
	if r.Session("alice@a.lan", "phone") != a1b {
		t.Fatal("the new session is bound")
	}
	// The replaced session unbinding (as it closes) leaves the new one.
	r.Unbind(a1)
	if r.Session("alice@a.lan", "phone") != a1b {
		t.Fatal("unbinding a replaced session removed its successor")
	}
	r.Unbind(a1b)
	r.Unbind(a2)
	if len(r.Sessions("alice@a.lan")) != 0 || len(r.All()) != 0 {
		t.Fatal("all unbound")
	}
	r.Unbind(a2) // twice: harmless
	if total, by := r.Count(); total != 0 || len(by) != 0 {
		t.Fatalf("count %d %v", total, by)
	}
}

func TestCountByDomain(t *testing.T) {
	r := New()
	for i := 0; i < 10; i++ {
		r.Bind(sess(fmt.Sprintf("u%d@a.lan", i), "r", false, 0))
	}
	for i := 0; i < 3; i++ {
		r.Bind(sess("x@b.lan", fmt.Sprintf("r%d", i), false, 0))
	}
	r.Bind(sess("b.lan", "service", false, 0)) // a domain JID with a resource
	total, by := r.Count()
	if total != 14 || by["a.lan"] != 10 || by["b.lan"] != 4 || len(by) != 2 {
		t.Fatalf("total %d, by %v", total, by)
	}
	if len(r.All()) != 14 {
		t.Fatal("All")
	}
}

func TestTargets(t *testing.T) {
	type s struct {
		res   string
		avail bool
		prio  int
	}
	tests := []struct {
		name     string
		sessions []s
		typ      string
		want     string
	}{
		{"none bound", nil, "chat", ""},
		{"unavailable only", []s{{"a", false, 5}}, "chat", ""},
		{"one available", []s{{"a", true, 0}}, "chat", "a"},
		{"highest wins", []s{{"a", true, 1}, {"b", true, 5}, {"c", true, 3}}, "chat", "b"},
		{"highest wins, normal", []s{{"a", true, 1}, {"b", true, 5}}, "normal", "b"},
		{"ties all get it", []s{{"a", true, 5}, {"b", true, 5}, {"c", true, 3}}, "chat", "a,b"},
		{"negative excluded", []s{{"a", true, -1}}, "chat", ""},
		{"negative excluded among others", []s{{"a", true, -5}, {"b", true, 0}}, "normal", "b"},
		{"zero counts", []s{{"a", true, 0}, {"b", true, 0}}, "chat", "a,b"},
		{"unavailable high priority ignored", []s{{"a", false, 100}, {"b", true, 1}}, "chat", "b"},
		{"headline to all non-negative", []s{{"a", true, 1}, {"b", true, 5}, {"c", true, -1}, {"d", false, 9}}, "headline", "a,b"},
		{"headline, all negative", []s{{"a", true, -1}}, "headline", ""},
		{"max priority", []s{{"a", true, 127}, {"b", true, 126}}, "chat", "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New()
			for _, x := range tc.sessions {
				bind(r, sess("bob@a.lan", x.res, x.avail, x.prio))
			}
			bind(r, sess("other@a.lan", "z", true, 50)) // never a target
			if got := resources(r.Targets("bob@a.lan", tc.typ)); got != tc.want {
				t.Fatalf("targets %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAvailable(t *testing.T) {
	r := New()
	bind(r, sess("bob@a.lan", "a", true, -3))
	bind(r, sess("bob@a.lan", "b", false, 0))
	bind(r, sess("bob@a.lan", "c", true, 2))
	if got := resources(r.Available("bob@a.lan")); got != "a,c" {
		t.Fatalf("available %s", got)
	}
}

// TestConcurrent runs Bind, Unbind, Targets, Count and presence changes
// from many goroutines; run with -race.
func TestConcurrent(t *testing.T) {
	r := New()
	const users, workers, rounds = 20, 8, 300
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				bare := fmt.Sprintf("u%d@a.lan", (w*7+i)%users)
				s := sess(bare, fmt.Sprintf("r%d", i%3), i%2 == 0, i%5-1)
				r.Bind(s)
				r.SetAvailable(s, true, i%4)
				for _, t := range r.Targets(bare, "chat") {
					t.Deliver(nil)
				}
				r.Targets(fmt.Sprintf("u%d@a.lan", i%users), "headline")
				r.Session(bare, s.res)
				if i%10 == 0 {
					r.Count()
					r.All()
				}
				r.Unbind(s)
			}
		}(w)
	}
	wg.Wait()
	if total, _ := r.Count(); total != 0 {
		// Every session was unbound, or replaced and then its successor
		// unbound.
		left := r.All()
		for _, s := range left {
			t.Logf("left: %s/%s", s.Bare(), s.Resource())
		}
		t.Fatalf("%d sessions left", total)
	}
}
