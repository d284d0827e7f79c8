// Package authlimit slows down password guessing against client logins
// (SASL) and component handshakes (XEP-0114), across connections.
//
// Every attempt takes a token from two buckets: one of its source address
// (an IPv6 address counts as its /64) and one of the account it names (the
// bare JID, or the component's address). A bucket holds Burst tokens and
// gets one back every Interval. The token is taken before the password is
// checked — the attempt is presumed to fail — and given back when it
// succeeds, or when it is abandoned without testing a password. So the
// attempts in progress at once from an address are at most the tokens it
// has: 50 parallel connections do not make 50 guesses, they make as many as
// the bucket holds, then one per Interval. A success takes nothing off the
// failures before it: an attacker who holds one valid account gains nothing
// by logging in with it between guesses, and one account's success never
// helps another.
//
// An attempt that finds no token waits for one — given back by an attempt
// in progress that succeeds (legitimate logins in parallel from one address
// wait milliseconds), or refilled — for at most Config.MaxWait and what is
// left of the connection's authentication time. Beyond that it is refused
// without its password being checked, after RefuseDelay: the caller answers
// temporary-auth-failure (RFC 6120 §6.5.12) or ends the stream.
//
// The account's bucket slows, it does not lock out: an attempt from a clean
// address (no failure from it for CleanAfter, and no other attempt of it in
// progress) waits at most CleanWait for the account and is never refused
// because of it, so an attacker elsewhere cannot keep the real user out. An
// attacker's address is clean for its first guess only, so many addresses
// buy one guess each per CleanAfter beyond the account's own rate.
//
// Memory is bounded: each table holds at most MaxKeys keys; entries whose
// bucket is full again (and, for addresses, whose last failure is older than
// CleanAfter) are forgotten first, then the least throttled ones.
package authlimit

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/parley-xmpp/parley/server/limit"
	"github.com/parley-xmpp/parley/server/logging"
)

// ErrThrottled is returned for an attempt refused because no token came
// within the time it may wait.
var ErrThrottled = errors.New("too many failed authentication attempts: try again later")

// Rate is a token bucket: Burst attempts at once, then one per Interval.
type Rate struct {
	Burst    int
	Interval time.Duration
}

// Config sets the limits.
type Config struct {
	Address    Rate          // per source address (IPv6: per /64)
	Account    Rate          // per account or component
	MaxWait    time.Duration // the longest an attempt waits for a token
	CleanWait  time.Duration // the longest a clean address's attempt waits for the account
	CleanAfter time.Duration // an address with no failure for this long is clean again
	// RefuseDelay is how long a refused attempt waits before it is told
	// (at most what it may wait): a connection cannot spin through
	// refusals faster than that.
	RefuseDelay time.Duration
	MaxKeys     int // per table (addresses, accounts)
}

// Default is Parley's setting: per address 5 failed attempts at once, then
// one per 10 s (8,640 a day); per account 10, then one per 20 s; a wait of
// at most 10 s, 3 s for the account from a clean address; a refusal after
// 1 s.
var Default = Config{
	Address:     Rate{Burst: 5, Interval: 10 * time.Second},
	Account:     Rate{Burst: 10, Interval: 20 * time.Second},
	MaxWait:     10 * time.Second,
	CleanWait:   3 * time.Second,
	CleanAfter:  15 * time.Minute,
	RefuseDelay: time.Second,
	MaxKeys:     100000,
}

// Throttle holds the buckets of one service (client logins, or component
// handshakes). It is safe for concurrent use.
type Throttle struct {
	cfg  Config
	name string // for the log: "c2s", "component"
	log  *slog.Logger

	// Now is time.Now. Wait waits d, or until wake is closed (a token may
	// have come back), and reports whether it was woken; tests replace
	// both.
	Now  func() time.Time
	Wait func(d time.Duration, wake <-chan struct{}) (woken bool)

	mu       sync.Mutex
	addrs    table
	accounts table
}

// New returns a throttle with cfg; name prefixes its log lines (one per
// episode: when a key starts being throttled).
func New(cfg Config, name string, l *slog.Logger) *Throttle {
	if cfg.Address.Burst < 1 {
		cfg.Address.Burst = 1
	}
	if cfg.Account.Burst < 1 {
		cfg.Account.Burst = 1
	}
	if cfg.MaxKeys < 1 {
		cfg.MaxKeys = Default.MaxKeys
	}
	t := &Throttle{cfg: cfg, name: name, log: l, Now: time.Now, Wait: realWait}
	t.addrs = table{what: "address", rate: cfg.Address, keepFailures: cfg.CleanAfter, max: cfg.MaxKeys, m: map[string]*entry{}}
	t.accounts = table{what: "account", rate: cfg.Account, max: cfg.MaxKeys, m: map[string]*entry{}}
	return t
}

func realWait(d time.Duration, wake <-chan struct{}) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-wake:
		return true
	case <-tm.C:
		return false
	}
}

// Config returns the limits in force.
func (t *Throttle) Config() Config { return t.cfg }

// Attempt is one authentication attempt: Begin, then Account once the name
// is known, then one of Succeeded, Failed or Abandoned (the first one
// counts; later calls do nothing, as do all on a nil Attempt).
type Attempt struct {
	t         *Throttle
	addr      *entry
	acct      *entry
	addrKey   string
	acctKey   string
	clean     bool
	throttled bool
	done      bool
}

// Begin takes a token of the source address, waiting for one at most
// maxWait (and Config.MaxWait). It returns ErrThrottled, after
// RefuseDelay, if none came.
func (t *Throttle) Begin(addr string, maxWait time.Duration) (*Attempt, error) {
	a := &Attempt{t: t, addrKey: limit.Source(addr)}
	maxWait = min(maxWait, t.cfg.MaxWait)
	e, err := t.take(a, &t.addrs, a.addrKey, maxWait, false, true)
	if err != nil {
		a.done = true
		t.refused(maxWait)
		return a, err
	}
	a.addr = e
	return a, nil
}

// Account takes a token of the account. An attempt from a clean address
// waits at most Config.CleanWait and is never refused; others wait at most
// maxWait (and Config.MaxWait) and get ErrThrottled, after RefuseDelay, if
// no token came. The caller checks the password only after Account
// returned nil.
func (a *Attempt) Account(name string, maxWait time.Duration) error {
	t := a.t
	if a.done || a.acct != nil {
		return errors.New("authlimit: Account after the attempt ended, or twice")
	}
	maxWait = min(maxWait, t.cfg.MaxWait)
	wait, force := maxWait, false
	if a.clean {
		wait, force = min(t.cfg.CleanWait, t.cfg.MaxWait), true
	}
	e, err := t.take(a, &t.accounts, name, wait, force, false)
	if err != nil {
		t.refused(maxWait)
		return err
	}
	a.acct, a.acctKey = e, name
	return nil
}

// take takes a token of key in tb, waiting for one at most maxWait; with
// force, it takes one anyway when the wait is over. first marks the
// address step, where cleanliness is decided.
func (t *Throttle) take(a *Attempt, tb *table, key string, maxWait time.Duration, force, first bool) (*entry, error) {
	t.mu.Lock()
	start := t.Now().UnixNano()
	budget := maxWait
	for {
		now := t.Now().UnixNano()
		e := tb.get(key, now)
		if e == nil {
			if first {
				a.clean = true
			}
			e = tb.add(key, now)
		}
		first = false
		refill, ok := e.try(now, tb.rate)
		if ok {
			e.inflight++
			t.mu.Unlock()
			return e, nil
		}
		// Logged only when failures emptied the bucket: when attempts
		// in progress hold the tokens (many good logins at once from
		// one address, a NAT), they come back as those succeed.
		if e.failedOut(now, tb.rate) {
			a.throttled = true
			t.episode(e, tb, key)
		}
		left := min(budget, time.Duration(start+int64(maxWait)-now))
		// Refuse at once when no token can come in time: none refills,
		// and no attempt in progress may give one back. A forced take
		// waits all it may first: slowed, not refused.
		if left <= 0 || !force && refill > left && e.inflight == 0 {
			if force {
				e.force(now, tb.rate, maxWait)
				e.inflight++
				t.mu.Unlock()
				return e, nil
			}
			t.mu.Unlock()
			return nil, ErrThrottled
		}
		if e.wake == nil {
			e.wake = make(chan struct{})
		}
		wake := e.wake
		d := min(refill, left)
		t.mu.Unlock()
		before := t.Now()
		if t.Wait(d, wake) {
			budget -= max(t.Now().Sub(before), 0)
		} else {
			budget -= d
		}
		t.mu.Lock()
	}
}

// Throttled reports whether the attempt waited or was refused because
// failures had emptied a bucket (the caller logs single failures only
// while its keys are not throttled: the throttle logged the episode).
func (a *Attempt) Throttled() bool { return a != nil && a.throttled }

// Clean reports whether the attempt came from a clean address.
func (a *Attempt) Clean() bool { return a != nil && a.clean }

// Succeeded gives the attempt's tokens back: a success is not a failure.
// Earlier failures stay counted.
func (a *Attempt) Succeeded() { a.end(true) }

// Abandoned gives the tokens back for an attempt that tested no password
// (the client aborted it).
func (a *Attempt) Abandoned() { a.end(true) }

// Failed keeps the tokens taken and marks the address as not clean.
func (a *Attempt) Failed() { a.end(false) }

func (a *Attempt) end(refund bool) {
	if a == nil || a.done {
		return
	}
	a.done = true
	t := a.t
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.Now().UnixNano()
	if e := a.addr; e != nil {
		e.release(refund, t.cfg.Address)
		if !refund {
			e.lastFail = now
			// Forgotten meanwhile: remember the failure.
			if cur := t.addrs.m[a.addrKey]; cur == nil {
				t.addrs.add(a.addrKey, now).lastFail = now
			} else {
				cur.lastFail = now
			}
		}
	}
	if e := a.acct; e != nil {
		e.release(refund, t.cfg.Account)
	}
}

// refused waits RefuseDelay, at most maxWait.
func (t *Throttle) refused(maxWait time.Duration) {
	if d := min(t.cfg.RefuseDelay, maxWait); d > 0 {
		t.Wait(d, nil)
	}
}

// episode logs once when a key starts being throttled.
func (t *Throttle) episode(e *entry, tb *table, key string) {
	if e.episode {
		return
	}
	e.episode = true
	if t.log != nil {
		logging.Problem(t.log, "%s: %s %s is over %d failed authentication attempts: further attempts wait their turn (one per %v, at most %v) or are refused", t.name, tb.what, quoteKey(key), tb.rate.Burst, tb.rate.Interval, t.cfg.MaxWait)
	}
}

func quoteKey(k string) string {
	if len(k) > 80 {
		k = k[:80] + "…"
	}
	return fmt.Sprintf("%q", k)
}

// Stats returns how many addresses and accounts are remembered.
func (t *Throttle) Stats() (addresses, accounts int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.addrs.m), len(t.accounts.m)
}

// entry is one key's bucket, in the GCRA form: tat is the time at which the
// bucket is full again (one token comes back per Interval); it is empty when
// tat is (Burst-1)·Interval or more ahead of now. Times are Unix
// nanoseconds.
type entry struct {
	tat      int64
	lastFail int64 // 0: none
	inflight int32 // attempts holding a token, not ended
	episode  bool
	wake     chan struct{} // closed when a token comes back early
}

// try takes a token if there is one; otherwise refill is how long until
// one comes back by itself.
func (e *entry) try(now int64, r Rate) (refill time.Duration, ok bool) {
	tat := max(e.tat, now)
	tau := int64(r.Burst-1) * int64(r.Interval)
	if w := tat - now - tau; w > 0 {
		return time.Duration(w), false
	}
	e.tat = tat + int64(r.Interval)
	return 0, true
}

// failedOut reports whether the bucket would still be empty with every
// attempt in progress given back: ended failures emptied it.
func (e *entry) failedOut(now int64, r Rate) bool {
	tau := int64(r.Burst-1) * int64(r.Interval)
	return e.tat-int64(e.inflight)*int64(r.Interval)-now > tau
}

// force takes a token that is not there, keeping the debt bounded.
func (e *entry) force(now int64, r Rate, maxWait time.Duration) {
	tau := int64(r.Burst-1) * int64(r.Interval)
	e.tat = min(max(e.tat, now)+int64(r.Interval), now+tau+int64(r.Interval)+int64(maxWait))
}

// release ends an attempt holding a token: with refund the token comes
// back. Waiters are woken either way (they may now refuse at once).
func (e *entry) release(refund bool, r Rate) {
	e.inflight--
	if refund {
		e.tat -= int64(r.Interval)
	}
	if e.wake != nil {
		close(e.wake)
		e.wake = nil
	}
}

// table is one map of buckets with its bound.
type table struct {
	what         string // "address", "account"
	rate         Rate
	keepFailures time.Duration // keep a key this long after its last failure
	max          int
	m            map[string]*entry
}

func (tb *table) expired(e *entry, now int64) bool {
	return e.inflight == 0 && e.tat <= now && (e.lastFail == 0 || now-e.lastFail >= int64(tb.keepFailures))
}

// get returns the live entry of key, or nil (an expired one is forgotten:
// its episode is over).
func (tb *table) get(key string, now int64) *entry {
	e := tb.m[key]
	if e != nil && tb.expired(e, now) {
		delete(tb.m, key)
		return nil
	}
	return e
}

func (tb *table) add(key string, now int64) *entry {
	if len(tb.m) >= tb.max {
		tb.shrink(now)
	}
	e := &entry{tat: now}
	tb.m[key] = e
	return e
}

// shrink forgets the expired entries, then the least throttled ones (the
// earliest tat) until the table is at most 90 % full. An attempt holding a
// token of a forgotten entry gives it back to nobody.
func (tb *table) shrink(now int64) {
	for k, e := range tb.m {
		if tb.expired(e, now) {
			delete(tb.m, k)
		}
	}
	target := tb.max * 9 / 10
	if len(tb.m) <= target {
		return
	}
	type kv struct {
		k   string
		tat int64
	}
	all := make([]kv, 0, len(tb.m))
	for k, e := range tb.m {
		all = append(all, kv{k, e.tat})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].tat < all[j].tat })
	for _, x := range all[:len(all)-target] {
		delete(tb.m, x.k)
	}
}
