package authlimit

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/parley-xmpp/parley/server/logging"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fake is a throttle on a test clock: its waits return at once, recorded,
// and move the clock on by what they waited unless frozen.
type fake struct {
	*Throttle
	mu     sync.Mutex
	now    time.Time
	frozen bool
	waits  []time.Duration
	logs   bytes.Buffer
}

func newFake(cfg Config) *fake {
	f := &fake{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	f.Throttle = New(cfg, "test", logging.NewWriter(&f.logs, logging.LevelLow))
	f.Throttle.Now = func() time.Time {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.now
	}
	f.Throttle.Wait = func(d time.Duration, _ <-chan struct{}) bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.waits = append(f.waits, d)
		if !f.frozen {
			f.now = f.now.Add(d)
		}
		return false
	}
	return f
}

func (f *fake) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// waited is the sum of the waits since mark (a length of f.waits).
func (f *fake) waited(mark int) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var d time.Duration
	for _, w := range f.waits[mark:] {
		d += w
	}
	return d
}

func (f *fake) mark() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waits)
}

// try is one whole attempt: address, account, then failed or succeeded. It
// returns what it waited, and whether it was refused.
func (f *fake) try(t *testing.T, addr, account string, ok bool) (time.Duration, bool) {
	t.Helper()
	m := f.mark()
	a, err := f.Begin(addr, time.Minute)
	if err == nil {
		if err = a.Account(account, time.Minute); err != nil {
			a.Failed()
		}
	}
	if err != nil && !errors.Is(err, ErrThrottled) {
		t.Fatal(err)
	}
	if err == nil {
		if ok {
			a.Succeeded()
		} else {
			a.Failed()
		}
	}
	return f.waited(m), err != nil
}

// testConfig: 3 at once then one per second per address, 4 then one per 2 s
// per account, waits of at most 5 s (1 s for a clean address's account).
var testConfig = Config{
	Address:    Rate{Burst: 3, Interval: time.Second},
	Account:    Rate{Burst: 4, Interval: 2 * time.Second},
	MaxWait:    5 * time.Second,
	CleanWait:  time.Second,
	CleanAfter: time.Minute,
	MaxKeys:    1000,
}

// realTime is testConfig scaled down to run on the real clock.
func realTime(burst int, interval, maxWait time.Duration) *Throttle {
	return New(Config{
		Address:    Rate{Burst: burst, Interval: interval},
		Account:    Rate{Burst: 1000, Interval: time.Millisecond},
		MaxWait:    maxWait,
		CleanWait:  maxWait,
		CleanAfter: time.Minute,
		MaxKeys:    1000,
	}, "test", nil)
}

// Parallel guesses from one address share its bucket: 50 connections make
// the burst at once, then one per interval, and the rest are refused — N
// connections get N times the delay, not N times the rate.
func TestParallelGuessesShareTheAddress(t *testing.T) {
	const iv = 50 * time.Millisecond
	th := realTime(3, iv, 4*iv)
	var guesses, refused atomic.Int32
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			a, err := th.Begin("192.0.2.1", time.Minute)
			if errors.Is(err, ErrThrottled) {
				refused.Add(1)
				return
			}
			if err := a.Account(fmt.Sprintf("user%d@example.lan", i), time.Minute); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(5 * time.Millisecond) // the password check
			guesses.Add(1)
			a.Failed()
		}(i)
	}
	wg.Wait()
	took := time.Since(start)
	max := 3 + int32(took/iv) + 1
	if g := guesses.Load(); g < 3 || g > max || g+refused.Load() != 50 {
		t.Fatalf("%d guesses and %d refused in %v, want 3 to %d guesses (3 at once, then one per %v), the rest refused", g, refused.Load(), took, max, iv)
	}
}

// Parallel logins that succeed (a NAT, the load generator) hardly wait: a
// success gives its token back at once, and waiters are woken for it.
func TestParallelSuccessesDoNotWait(t *testing.T) {
	th := realTime(3, 10*time.Second, 5*time.Second)
	var logs bytes.Buffer // written only through the logger, which serializes
	th.log = logging.NewWriter(&logs, logging.LevelLow)
	var ok, refused atomic.Int32
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			a, err := th.Begin("192.0.2.1", time.Minute)
			if err != nil {
				refused.Add(1)
				return
			}
			if err := a.Account(fmt.Sprintf("user%d@example.lan", i), time.Minute); err != nil {
				refused.Add(1)
				return
			}
			time.Sleep(time.Millisecond)
			ok.Add(1)
			a.Succeeded()
		}(i)
	}
	wg.Wait()
	if took := time.Since(start); ok.Load() != 200 || took > 3*time.Second {
		t.Fatalf("200 parallel good logins from one address: %d in, %d refused, in %v", ok.Load(), refused.Load(), took)
	}
	// Nobody failed: nothing may say so in the log.
	if l := logs.String(); l != "" {
		t.Fatalf("good logins logged as failed attempts:\n%s", l)
	}
}

// A waiter is woken when an attempt in progress ends: it gets the token a
// success gives back, or it is refused at once if the attempt failed and
// no token can refill in time.
func TestWaitersWokenByTheEnd(t *testing.T) {
	th := realTime(1, 10*time.Second, 2*time.Second)
	for _, success := range []bool{true, false} {
		addr := fmt.Sprintf("192.0.2.%d", map[bool]int{true: 1, false: 2}[success])
		first, err := th.Begin(addr, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error)
		start := time.Now()
		go func() {
			a, err := th.Begin(addr, time.Minute)
			if err == nil {
				a.Failed()
			}
			done <- err
		}()
		time.Sleep(50 * time.Millisecond)
		if success {
			first.Succeeded()
		} else {
			first.Failed()
		}
		err = <-done
		took := time.Since(start)
		switch {
		case success && err != nil, !success && !errors.Is(err, ErrThrottled):
			t.Fatalf("first attempt success %v: the waiter got %v", success, err)
		case took > time.Second:
			t.Fatalf("first attempt success %v: the waiter took %v, want it woken", success, took)
		}
	}
}

// A success takes nothing off the failures before it: an attacker holding
// one valid account cannot free its address by logging in with it between
// guesses, and the success of one account never resets another.
func TestSuccessOfAnotherAccountDoesNotReset(t *testing.T) {
	f := newFake(testConfig)
	f.frozen = true
	const addr = "198.51.100.7"
	for i := 0; i < 3; i++ {
		if d, r := f.try(t, addr, "alice@example.lan", false); d != 0 || r {
			t.Fatalf("free failure %d: wait %v refused %v", i, d, r)
		}
	}
	if _, r := f.try(t, addr, "alice@example.lan", false); !r {
		t.Fatal("a fourth guess at once was not refused")
	}
	// One token refills; mallory (valid) logs in with it, again and again.
	f.advance(time.Second)
	for i := 0; i < 5; i++ {
		if _, r := f.try(t, addr, "mallory@example.lan", true); r {
			t.Fatalf("mallory's login %d refused", i)
		}
	}
	// That freed nothing but the token mallory gave back.
	if _, r := f.try(t, addr, "alice@example.lan", false); r {
		t.Fatal("the refilled token was not there")
	}
	if _, r := f.try(t, addr, "alice@example.lan", false); !r {
		t.Fatal("mallory's successes gave the address more than its one refilled token")
	}
	// Nor does bob's success, from another address, touch alice's account.
	g := newFake(testConfig)
	g.frozen = true
	for i := 0; i < 4; i++ {
		g.try(t, fmt.Sprintf("203.0.113.%d", 10+i), "alice@example.lan", false) // clean addresses, one guess each
	}
	if d, r := g.try(t, "203.0.113.99", "bob@example.lan", true); d != 0 || r {
		t.Fatalf("bob: wait %v refused %v", d, r)
	}
	if _, r := g.try(t, "203.0.113.10", "alice@example.lan", false); !r { // not clean: it failed
		t.Fatal("alice's account had a token again after bob's success")
	}
}

// Many addresses against one account: the account's bucket bounds them
// (beyond each address's first, clean, guess), and the real user from a
// clean address is only slowed, never refused, however hard the account is
// hammered.
func TestAccountAcrossAddresses(t *testing.T) {
	f := newFake(testConfig)
	f.frozen = true // time moves only by the rounds below
	const victim = "alice@example.lan"
	addrs := []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "2001:db8::1"}
	guesses := 0
	for _, a := range addrs { // one clean guess each, never refused
		if _, r := f.try(t, a, victim, false); r {
			t.Fatalf("the clean guess from %s was refused", a)
		}
		guesses++
	}
	for round := 0; round < 10; round++ {
		for _, a := range addrs {
			for j := 0; j < 3; j++ {
				at, err := f.Begin(a, time.Minute)
				if err != nil {
					continue
				}
				if at.Clean() {
					t.Fatalf("%s is clean after a failure", a)
				}
				if err := at.Account(victim, time.Minute); err == nil {
					guesses++
				}
				at.Failed()
			}
		}
		f.advance(time.Second)
	}
	// In 10 s: the account's 4 at once and 5 refills, one more clean
	// guess forced beyond them.
	if guesses > 4+5+1 {
		t.Fatalf("%d guesses against the account in 10 s from 5 addresses", guesses)
	}
	if !strings.Contains(f.logs.String(), `account "alice@example.lan"`) || !strings.Contains(f.logs.String(), `address "192.0.2.1"`) {
		t.Fatalf("the episodes are not logged:\n%s", f.logs.String())
	}
	// The real user, from an address that never failed: slowed at most
	// CleanWait, never refused.
	m := f.mark()
	at, err := f.Begin("192.0.2.200", time.Minute)
	if err != nil || !at.Clean() {
		t.Fatalf("a new address: %v, clean %v", err, at.Clean())
	}
	if err := at.Account(victim, time.Minute); err != nil || f.waited(m) > testConfig.CleanWait {
		t.Fatalf("the real user: %v after %v; want in, after at most %v", err, f.waited(m), testConfig.CleanWait)
	}
	at.Succeeded()
	// A second attempt from one address while the first is in progress is
	// not clean: many connections from one fresh address buy one clean
	// turn, not many.
	a1, _ := f.Begin("192.0.2.201", time.Minute)
	a2, _ := f.Begin("192.0.2.201", time.Minute)
	if !a1.Clean() || a2.Clean() {
		t.Fatalf("parallel attempts of a new address: clean %v, %v; want true, false", a1.Clean(), a2.Clean())
	}
}

// An address or account that stopped failing is forgotten once its bucket
// is full again (an address after CleanAfter): clean, and no memory used.
func TestExpiry(t *testing.T) {
	f := newFake(testConfig)
	for i := 0; i < 6; i++ {
		f.try(t, "192.0.2.9", "alice@example.lan", false)
	}
	f.advance(testConfig.CleanAfter)
	if d, r := f.try(t, "192.0.2.9", "alice@example.lan", false); d != 0 || r {
		t.Fatalf("after CleanAfter: wait %v refused %v", d, r)
	}
	a, _ := f.Begin("192.0.2.9", time.Minute)
	if a.Clean() {
		t.Fatal("clean right after a failure")
	}
	a.Abandoned()
	f.advance(testConfig.CleanAfter + time.Minute)
	a, _ = f.Begin("192.0.2.9", time.Minute)
	if !a.Clean() {
		t.Fatal("not clean again after CleanAfter without failures")
	}
	a.Succeeded()
}

// Abandoned (an aborted SASL exchange) and Succeeded give the token back.
func TestRefunds(t *testing.T) {
	f := newFake(testConfig)
	for i := 0; i < 20; i++ {
		a, err := f.Begin("192.0.2.1", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			a.Abandoned()
		} else {
			if err := a.Account("alice@example.lan", time.Minute); err != nil {
				t.Fatal(err)
			}
			a.Succeeded()
		}
		a.Failed() // after the end: ignored
	}
	if len(f.waits) != 0 {
		t.Fatalf("waits %v for attempts that all gave their tokens back", f.waits)
	}
}

// A sequential guesser waits one interval per guess once the burst is
// spent; a turn further than the caller may wait is refused at once.
func TestSequentialWaitsAndMaxWait(t *testing.T) {
	f := newFake(testConfig)
	for i := 0; i < 3; i++ {
		f.try(t, "192.0.2.1", "alice@example.lan", false)
	}
	if d, r := f.try(t, "192.0.2.1", "alice@example.lan", false); r || d != time.Second {
		t.Fatalf("the fourth guess: waited %v, refused %v; want 1s", d, r)
	}
	if _, err := f.Begin("192.0.2.1", 500*time.Millisecond); !errors.Is(err, ErrThrottled) {
		t.Fatalf("a token 1 s away with 0.5 s to wait: %v, want ErrThrottled", err)
	}
}

// A refusal is told after RefuseDelay (at most what the caller may wait),
// so that a connection cannot spin through refusals.
func TestRefuseDelay(t *testing.T) {
	cfg := testConfig
	cfg.RefuseDelay = 700 * time.Millisecond
	f := newFake(cfg)
	f.frozen = true
	for i := 0; i < 3; i++ {
		a, err := f.Begin("192.0.2.1", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		a.Failed()
	}
	m := f.mark()
	if _, err := f.Begin("192.0.2.1", 300*time.Millisecond); !errors.Is(err, ErrThrottled) {
		t.Fatal(err)
	}
	if got := fmt.Sprint(f.waits[m:]); got != "[300ms]" {
		t.Fatalf("the refusal waited %v, want [300ms] (what the caller could wait)", got)
	}
}

// The tables stay bounded under a spray of addresses and account names, and
// what is dropped first is the least throttled.
func TestMemoryBound(t *testing.T) {
	f := newFake(testConfig)
	f.frozen = true
	for i := 0; i < 8; i++ { // a hammered key first
		f.try(t, "192.0.2.1", "alice@example.lan", false)
	}
	for i := 0; i < 5*testConfig.MaxKeys; i++ {
		a, err := f.Begin(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Account(fmt.Sprintf("u%d@example.lan", i), time.Minute); err != nil {
			t.Fatal(err)
		}
		a.Failed()
		if i%1000 == 0 {
			f.advance(time.Millisecond)
		}
	}
	addrs, accounts := f.Stats()
	if addrs > testConfig.MaxKeys || accounts > testConfig.MaxKeys {
		t.Fatalf("%d addresses and %d accounts remembered, more than %d", addrs, accounts, testConfig.MaxKeys)
	}
	if a, _ := f.Begin("192.0.2.1", time.Minute); a.Clean() {
		t.Fatal("the spray made the hammered address clean")
	}
}

func TestConcurrentUse(t *testing.T) {
	th := realTime(2, time.Millisecond, 3*time.Millisecond)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				a, err := th.Begin(fmt.Sprintf("10.0.0.%d", g%3), time.Minute)
				if err != nil {
					continue
				}
				if a.Account(fmt.Sprintf("u%d", i%7), time.Minute) != nil {
					a.Failed()
					continue
				}
				switch i % 3 {
				case 0:
					a.Succeeded()
				case 1:
					a.Failed()
				default:
					a.Abandoned()
				}
			}
		}(g)
	}
	wg.Wait()
}
