package router

import (
	"fmt"
	"sync"
	"testing"
)

func TestBindLimited(t *testing.T) {
	r := New()
	if !r.BindLimited(sess("a@x", "1", true, 0), 2) || !r.BindLimited(sess("b@x", "1", true, 0), 2) {
		t.Fatal("refused under the limit")
	}
	if r.BindLimited(sess("c@x", "1", true, 0), 2) {
		t.Fatal("a third session was bound with a limit of 2")
	}
	// Replacing a full JID is not a new session.
	if !r.BindLimited(sess("a@x", "1", true, 0), 2) || r.Len() != 2 {
		t.Fatalf("replacement refused or counted: len %d", r.Len())
	}
	r.Unbind(r.Session("b@x", "1"))
	if r.Len() != 1 || !r.BindLimited(sess("c@x", "1", true, 0), 2) {
		t.Fatalf("a freed slot is not reusable: len %d", r.Len())
	}
}

// Many logins at once never exceed the limit.
func TestBindLimitedConcurrent(t *testing.T) {
	r := New()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if r.BindLimited(sess(fmt.Sprintf("u%d@x", i), "r", true, 0), 50) {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	if ok != 50 || r.Len() != 50 {
		t.Fatalf("bound %d (len %d), want 50", ok, r.Len())
	}
	if total, _ := r.Count(); total != 50 {
		t.Fatalf("count %d", total)
	}
}

// One account may have MaxResources sessions; the next is refused with
// ErrTooManyResources, replacing one of them is not a new one, and
// another account is not affected.
func TestMaxResources(t *testing.T) {
	r := New()
	for i := 0; i < MaxResources; i++ {
		if err := r.BindChecked(sess("a@x", fmt.Sprint(i), true, 0), 0); err != nil {
			t.Fatalf("resource %d: %v", i, err)
		}
	}
	if err := r.BindChecked(sess("a@x", "one-more", true, 0), 0); err != ErrTooManyResources {
		t.Fatalf("one resource too many: %v, want ErrTooManyResources", err)
	}
	if err := r.BindChecked(sess("a@x", "0", true, 0), 0); err != nil {
		t.Fatalf("replacing a resource: %v", err)
	}
	if err := r.BindChecked(sess("b@x", "1", true, 0), 0); err != nil {
		t.Fatalf("another account: %v", err)
	}
	if err := r.BindChecked(sess("c@x", "1", true, 0), r.Len()); err != ErrTooManySessions {
		t.Fatalf("over the server's limit: %v, want ErrTooManySessions", err)
	}
	r.Unbind(r.Session("a@x", "5"))
	if err := r.BindChecked(sess("a@x", "one-more", true, 0), 0); err != nil {
		t.Fatalf("after one left: %v", err)
	}
}
