package c2s

import (
	"sync"
	"time"
)

// Throttle slows down authentication from addresses that keep failing:
// after FreeFailures failures within Window, each further attempt from that
// address waits, doubling up to MaxDelay.
type Throttle struct {
	FreeFailures int
	Window       time.Duration
	MaxDelay     time.Duration
	Sleep        func(time.Duration) // time.Sleep; replaceable in tests
	Now          func() time.Time    // time.Now; replaceable in tests

	mu   sync.Mutex
	seen map[string]*failures
}

type failures struct {
	n    int
	last time.Time
}

// MaxTracked bounds how many addresses the throttle remembers.
const MaxTracked = 100000

// NewThrottle returns a throttle with Parley's defaults: 3 free failures
// per 10 minutes, then 1 s, 2 s, 4 s … up to 8 s per attempt.
func NewThrottle() *Throttle {
	return &Throttle{FreeFailures: 3, Window: 10 * time.Minute, MaxDelay: 8 * time.Second, Sleep: time.Sleep, seen: map[string]*failures{}}
}

func (t *Throttle) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// Delay is how long the next attempt from ip waits.
func (t *Throttle) Delay(ip string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.seen[ip]
	if f == nil || t.now().Sub(f.last) > t.Window || f.n < t.FreeFailures {
		return 0
	}
	d := time.Second << (f.n - t.FreeFailures)
	if d > t.MaxDelay || d <= 0 {
		d = t.MaxDelay
	}
	return d
}

// Wait delays an attempt from ip as Delay says.
func (t *Throttle) Wait(ip string) {
	if d := t.Delay(ip); d > 0 {
		if t.Sleep != nil {
			t.Sleep(d)
		} else {
			time.Sleep(d)
		}
	}
}

// Fail records a failed attempt.
func (t *Throttle) Fail(ip string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if len(t.seen) >= MaxTracked { // bound memory: forget old entries
		for k, f := range t.seen {
			if now.Sub(f.last) > t.Window {
				delete(t.seen, k)
			}
		}
		// Still full (a spray of addresses within one window): drop some
		// at random rather than grow.
		for k := range t.seen {
			if len(t.seen) < MaxTracked*9/10 {
				break
			}
			delete(t.seen, k)
		}
	}
	if t.seen == nil {
		t.seen = map[string]*failures{}
	}
	f := t.seen[ip]
	if f == nil || now.Sub(f.last) > t.Window {
		f = &failures{}
		t.seen[ip] = f
	}
	f.n++
	f.last = now
}

// Success forgets an address's failures.
func (t *Throttle) Success(ip string) {
	t.mu.Lock()
	delete(t.seen, ip)
	t.mu.Unlock()
}
