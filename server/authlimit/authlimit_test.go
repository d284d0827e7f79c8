package authlimit

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// testConfig: 3 at once then one per second per address, 4 then one per 2 s
// per account, waits of at most 5 s (1 s for a clean address).
var testConfig = Config{
	Address:    Rate{Burst: 3, Interval: time.Second},
	Account:    Rate{Burst: 4, Interval: 2 * time.Second},
	MaxWait:    5 * time.Second,
	CleanWait:  time.Second,
	CleanAfter: time.Minute,
	MaxKeys:    1000,
}

type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(d time.Duration) {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
}

func newTest(cfg Config) (*Throttle, *clock, *sleeps, *bytes.Buffer) {
	var logs bytes.Buffer
	th := New(cfg, "test", log.New(&logs, "", 0))
	clk := &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := &sleeps{}
	th.Now, th.Sleep = clk.Now, s.sleep
	return th, clk, s, &logs
}

// try is one whole attempt: address, account, then failed or succeeded. It
// returns the total wait asked for, and whether it was refused.
func try(t *testing.T, th *Throttle, s *sleeps, addr, account string, ok bool) (time.Duration, bool) {
	t.Helper()
	s.mu.Lock()
	n := len(s.d)
	s.mu.Unlock()
	a, err := th.Begin(addr, time.Minute)
	if err == nil {
		err = a.Account(account, time.Minute)
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
	var total time.Duration
	s.mu.Lock()
	for _, d := range s.d[n:] {
		total += d
	}
	s.mu.Unlock()
	return total, err != nil
}

// Parallel attempts from one address share its bucket: 50 connections at
// the same instant get the burst at once, then one turn per interval up to
// the longest wait, and the rest are refused — N connections get N times
// the delay, not N times the rate.
func TestParallelAttemptsShareTheAddress(t *testing.T) {
	th, clk, s, logs := newTest(testConfig)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		refused int
	)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			a, err := th.Begin("192.0.2.1", time.Minute)
			if errors.Is(err, ErrThrottled) {
				mu.Lock()
				refused++
				mu.Unlock()
				return
			}
			if err := a.Account(fmt.Sprintf("user%d@example.lan", i), time.Minute); err != nil {
				t.Error(err)
				return
			}
			a.Failed()
		}(i)
	}
	wg.Wait()
	sort.Slice(s.d, func(i, j int) bool { return s.d[i] < s.d[j] })
	// 3 at once (no sleep), then turns 1 s … 5 s away.
	want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second, 5 * time.Second}
	if fmt.Sprint(s.d) != fmt.Sprint(want) || refused != 50-3-5 {
		t.Fatalf("waits %v and %d refused, want %v and %d refused", s.d, refused, want, 50-3-5)
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), `address "192.0.2.1"`) {
		t.Fatalf("want one log line for the episode, got:\n%s", logs.String())
	}
	// Once the waits are over the address gets one turn per interval.
	clk.advance(5 * time.Second)
	if d, refused := try(t, th, s, "192.0.2.1", "x@example.lan", false); refused || d != time.Second {
		t.Fatalf("after the waits: wait %v refused %v, want 1s", d, refused)
	}
	// Another address is not concerned.
	if d, refused := try(t, th, s, "192.0.2.2", "x@example.lan", false); refused || d != 0 {
		t.Fatalf("another address: wait %v refused %v", d, refused)
	}
}

// A success takes nothing off the failures before it: an attacker holding
// one valid account cannot reset its address by logging in with it between
// guesses, and the success of one account never resets another's.
func TestSuccessOfAnotherAccountDoesNotReset(t *testing.T) {
	th, _, s, _ := newTest(testConfig)
	const addr = "198.51.100.7"
	for i := 0; i < 3; i++ {
		if d, r := try(t, th, s, addr, "alice@example.lan", false); d != 0 || r {
			t.Fatalf("free failure %d: wait %v refused %v", i, d, r)
		}
	}
	// Logging in as mallory (valid) from the same address does not free
	// it: it waits its turn like any attempt, and gives back only its own.
	for i := 0; i < 3; i++ {
		d, r := try(t, th, s, addr, "mallory@example.lan", true)
		if r || d != time.Second {
			t.Fatalf("success %d: wait %v refused %v, want 1s (the address has used its burst)", i, d, r)
		}
	}
	if d, r := try(t, th, s, addr, "alice@example.lan", false); r || d != time.Second {
		t.Fatalf("guess after the successes: wait %v refused %v, want 1s", d, r)
	}
	// The account's failures are not reset by another account's success
	// from another, clean address either.
	other, _, s2, _ := newTest(testConfig)
	for i := 0; i < 4; i++ {
		try(t, other, s2, fmt.Sprintf("203.0.113.%d", 10+i), "alice@example.lan", false) // clean addresses, one guess each
	}
	if d, r := try(t, other, s2, "203.0.113.99", "bob@example.lan", true); d != 0 || r {
		t.Fatalf("bob: wait %v refused %v", d, r)
	}
	a, err := other.Begin("203.0.113.10", time.Minute) // not clean: it failed
	if err != nil {
		t.Fatal(err)
	}
	if w, err := a.account1("alice@example.lan", time.Minute); err != nil || w != 2*time.Second {
		t.Fatalf("alice's account after bob's success: wait %v, %v; want 2s", w, err)
	}
}

// Many addresses against one account: the account's bucket bounds them
// (beyond each address's first, clean, guess), and the real user from a
// clean address is only slowed, never refused, however hard the account is
// hammered.
func TestAccountAcrossAddresses(t *testing.T) {
	th, clk, s, logs := newTest(testConfig)
	const victim = "alice@example.lan"
	addrs := []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "2001:db8::1"}
	for _, a := range addrs { // one clean guess each
		try(t, th, s, a, victim, false)
	}
	guesses, refused := 0, 0
	for round := 0; round < 10; round++ {
		for _, a := range addrs {
			for j := 0; j < 3; j++ {
				at, err := th.Begin(a, time.Minute)
				if err != nil {
					refused++
					continue
				}
				if at.Clean() {
					t.Fatalf("%s is clean after a failure", a)
				}
				if err := at.Account(victim, time.Minute); err != nil {
					refused++
					at.Failed()
					continue
				}
				guesses++
				at.Failed()
			}
		}
		clk.advance(time.Second)
	}
	// In 10 s: 5 clean guesses, then what the account allows: its burst
	// less those 5 spent … at most 10 s / 2 s + 5 s of waits / 2 s more.
	if guesses > 4+5+2 || guesses < 4 {
		t.Fatalf("%d guesses against the account in 10 s from 5 addresses (%d refused)", guesses, refused)
	}
	if !strings.Contains(logs.String(), `account "alice@example.lan"`) {
		t.Fatalf("no episode logged for the account:\n%s", logs.String())
	}
	// The real user from an address that never failed: slowed at most
	// CleanWait, never refused, and in.
	at, err := th.Begin("192.0.2.200", time.Minute)
	if err != nil || !at.Clean() {
		t.Fatalf("a new address: %v, clean %v", err, at.Clean())
	}
	w, err := at.account1(victim, time.Minute)
	if err != nil || w > testConfig.CleanWait {
		t.Fatalf("the real user: wait %v, %v; want at most %v and no refusal", w, err, testConfig.CleanWait)
	}
	at.Succeeded()
	// A second attempt from the same address while the first is in
	// progress is not clean: many connections from one fresh address buy
	// one clean turn, not many.
	a1, _ := th.Begin("192.0.2.201", time.Minute)
	a2, _ := th.Begin("192.0.2.201", time.Minute)
	if !a1.Clean() || a2.Clean() {
		t.Fatalf("parallel attempts of a new address: clean %v, %v; want true, false", a1.Clean(), a2.Clean())
	}
}

// An address or account that stopped failing is forgotten once its bucket
// is full again (an address after CleanAfter): clean, and no memory used.
func TestExpiry(t *testing.T) {
	th, clk, s, _ := newTest(testConfig)
	for i := 0; i < 6; i++ {
		try(t, th, s, "192.0.2.9", "alice@example.lan", false)
		clk.advance(time.Second)
	}
	clk.advance(testConfig.CleanAfter)
	if d, r := try(t, th, s, "192.0.2.9", "alice@example.lan", false); d != 0 || r {
		t.Fatalf("after CleanAfter: wait %v refused %v", d, r)
	}
	a, _ := th.Begin("192.0.2.9", time.Minute)
	if a.Clean() {
		t.Fatal("clean right after a failure")
	}
	a.Abandoned()
	clk.advance(testConfig.CleanAfter + time.Minute)
	a, _ = th.Begin("192.0.2.9", time.Minute)
	if !a.Clean() {
		t.Fatal("not clean again after CleanAfter without failures")
	}
	a.Succeeded()
}

// Abandoned (an aborted SASL exchange) and Succeeded give the token back.
func TestRefunds(t *testing.T) {
	th, _, s, _ := newTest(testConfig)
	for i := 0; i < 20; i++ {
		a, err := th.Begin("192.0.2.1", time.Minute)
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
	if len(s.d) != 0 {
		t.Fatalf("waits %v for attempts that all gave their tokens back", s.d)
	}
}

// A refusal is told after RefuseDelay (at most what the caller may wait),
// so that a connection cannot spin through refusals.
func TestRefuseDelay(t *testing.T) {
	cfg := testConfig
	cfg.RefuseDelay = 700 * time.Millisecond
	th, _, s, _ := newTest(cfg)
	for i := 0; i < 3+5; i++ {
		if _, err := th.Begin("192.0.2.1", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	s.d = nil
	if _, err := th.Begin("192.0.2.1", time.Minute); !errors.Is(err, ErrThrottled) {
		t.Fatal(err)
	}
	if _, err := th.Begin("192.0.2.1", 300*time.Millisecond); !errors.Is(err, ErrThrottled) {
		t.Fatal(err)
	}
	if fmt.Sprint(s.d) != "[700ms 300ms]" {
		t.Fatalf("refusals waited %v, want [700ms 300ms]", s.d)
	}
}

// The longest wait is what the caller has left, and the configured one.
func TestMaxWaitFromCaller(t *testing.T) {
	th, _, _, _ := newTest(testConfig)
	for i := 0; i < 3; i++ {
		a, _ := th.Begin("192.0.2.1", time.Minute)
		a.Failed()
	}
	if _, err := th.Begin("192.0.2.1", 500*time.Millisecond); !errors.Is(err, ErrThrottled) {
		t.Fatalf("a turn 1 s away with 0.5 s left: %v, want ErrThrottled", err)
	}
	if a, err := th.Begin("192.0.2.1", 2*time.Second); err != nil {
		t.Fatal(err)
	} else {
		a.Failed()
	}
}

// The tables stay bounded under a spray of addresses and account names, and
// what is dropped first is the least throttled.
func TestMemoryBound(t *testing.T) {
	th, clk, s, _ := newTest(testConfig)
	// A hammered key first.
	for i := 0; i < 8; i++ {
		try(t, th, s, "192.0.2.1", "alice@example.lan", false)
	}
	for i := 0; i < 5*testConfig.MaxKeys; i++ {
		a, err := th.Begin(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Account(fmt.Sprintf("u%d@example.lan", i), time.Minute); err != nil {
			t.Fatal(err)
		}
		a.Failed()
		if i%1000 == 0 {
			clk.advance(time.Millisecond)
		}
	}
	addrs, accounts := th.Stats()
	if addrs > testConfig.MaxKeys || accounts > testConfig.MaxKeys {
		t.Fatalf("%d addresses and %d accounts remembered, more than %d", addrs, accounts, testConfig.MaxKeys)
	}
	if a, _ := th.Begin("192.0.2.1", time.Minute); a.Clean() {
		t.Fatal("the spray made the hammered address clean")
	}
}

func TestAddressKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":                   "192.0.2.1",
		"::ffff:192.0.2.1":            "192.0.2.1",
		"2001:db8:1:2:3:4:5:6":        "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1":        "2001:db8:1:2::/64",
		"fe80::1%eth0":                "fe80::/64",
		"192.0.2.1:5222":              "192.0.2.1",
		"pipe":                        "pipe",
		"[2001:db8:1:2:3:4:5:6]:5222": "2001:db8:1:2::/64",
	} {
		if got := AddressKey(in); got != want {
			t.Errorf("AddressKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	th := New(testConfig, "test", nil)
	th.Sleep = func(time.Duration) {}
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
