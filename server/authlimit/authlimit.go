// Package authlimit slows down password guessing against client logins
// (SASL) and component handshakes (XEP-0114), across connections.
//
// Every attempt takes a token from two buckets: one of its source address
// (an IPv6 address counts as its /64) and one of the account it names (the
// bare JID, or the component's address). A bucket holds Burst tokens and
// gets one back every Interval; an attempt that finds its bucket empty
// waits for the next token, and the token it will get is reserved at once,
// so that N connections in parallel wait N intervals, not one. Tokens are
// taken before the password is checked (the attempt is presumed to fail) and
// given back when it succeeds or is abandoned without a guess: a success
// takes nothing off the failures before it, so an attacker who holds one
// valid account gains nothing by logging in with it between guesses, and
// one account's success never helps another.
//
// An attempt whose turn is further away than it may wait (Config.MaxWait,
// and what is left of the connection's authentication time) is refused at
// once without checking the password: the caller answers
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
	"log"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// ErrThrottled is returned for an attempt refused because its turn is too
// far away.
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
	MaxWait    time.Duration // the longest an attempt waits for its turn
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
	log  *log.Logger

	// Now and Sleep are time.Now and time.Sleep; tests replace them.
	Now   func() time.Time
	Sleep func(time.Duration)

	mu       sync.Mutex
	addrs    table
	accounts table
}

// New returns a throttle with cfg; name prefixes its log lines (one per
// episode: when a key starts being throttled).
func New(cfg Config, name string, l *log.Logger) *Throttle {
	if cfg.Address.Burst < 1 {
		cfg.Address.Burst = 1
	}
	if cfg.Account.Burst < 1 {
		cfg.Account.Burst = 1
	}
	if cfg.MaxKeys < 1 {
		cfg.MaxKeys = Default.MaxKeys
	}
	t := &Throttle{cfg: cfg, name: name, log: l, Now: time.Now, Sleep: time.Sleep}
	t.addrs = table{rate: cfg.Address, keepFailures: cfg.CleanAfter, max: cfg.MaxKeys, m: map[string]*entry{}}
	t.accounts = table{rate: cfg.Account, max: cfg.MaxKeys, m: map[string]*entry{}}
	return t
}

// Config returns the limits in force.
func (t *Throttle) Config() Config { return t.cfg }

// AddressKey is the key an address counts under: the IP without zone, an
// IPv4-mapped address as IPv4, an IPv6 address as its /64 (one host's or
// one site's usual allocation). Anything unparsable is its own key.
func AddressKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		if ap, err2 := netip.ParseAddrPort(addr); err2 == nil {
			a = ap.Addr()
		} else {
			return addr
		}
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// Attempt is one authentication attempt: Begin, then Account once the name
// is known, then one of Succeeded, Failed or Abandoned (the first one
// counts; later calls do nothing, as do all on a nil Attempt).
type Attempt struct {
	t         *Throttle
	addr      string
	account   string
	clean     bool
	throttled bool
	holdsAddr bool
	holdsAcct bool
	done      bool
}

// Begin reserves the source address's next turn and waits for it. It
// returns ErrThrottled, after RefuseDelay, if the turn is more than maxWait
// (or Config.MaxWait) away.
func (t *Throttle) Begin(addr string, maxWait time.Duration) (*Attempt, error) {
	a, wait, err := t.begin(addr, maxWait)
	if err != nil {
		t.refused(maxWait)
		return a, err
	}
	if wait > 0 {
		t.Sleep(wait)
	}
	return a, nil
}

func (t *Throttle) begin(addr string, maxWait time.Duration) (*Attempt, time.Duration, error) {
	key := AddressKey(addr)
	a := &Attempt{t: t, addr: key}
	if maxWait > t.cfg.MaxWait {
		maxWait = t.cfg.MaxWait
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.Now().UnixNano()
	e := t.addrs.get(key, now)
	a.clean = e == nil
	if e == nil {
		e = t.addrs.add(key, now)
	}
	wait, ok := e.reserve(now, t.cfg.Address, maxWait, false)
	if wait > 0 || !ok {
		a.throttled = true
		t.episode(e, "address", key, t.cfg.Address)
	}
	if !ok {
		a.done = true
		return a, 0, ErrThrottled
	}
	a.holdsAddr = true
	return a, wait, nil
}

// Account reserves the account's next turn and waits for it. An attempt
// from a clean address waits at most Config.CleanWait and is never refused;
// others get ErrThrottled, after RefuseDelay, if the turn is more than
// maxWait (or Config.MaxWait) away. The caller checks the password only
// after Account returned nil.
func (a *Attempt) Account(name string, maxWait time.Duration) error {
	wait, err := a.account1(name, maxWait)
	if err != nil {
		if errors.Is(err, ErrThrottled) {
			a.t.refused(maxWait)
		}
		return err
	}
	if wait > 0 {
		a.t.Sleep(wait)
	}
	return nil
}

func (a *Attempt) account1(name string, maxWait time.Duration) (time.Duration, error) {
	t := a.t
	if a.done || a.holdsAcct {
		return 0, errors.New("authlimit: Account after the attempt ended, or twice")
	}
	if maxWait > t.cfg.MaxWait {
		maxWait = t.cfg.MaxWait
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.Now().UnixNano()
	e := t.accounts.get(name, now)
	if e == nil {
		e = t.accounts.add(name, now)
	}
	var (
		wait time.Duration
		ok   bool
	)
	if a.clean {
		wait, ok = e.reserve(now, t.cfg.Account, t.cfg.MaxWait, true)
		if wait > t.cfg.CleanWait {
			wait = t.cfg.CleanWait
		}
	} else {
		wait, ok = e.reserve(now, t.cfg.Account, maxWait, false)
	}
	if wait > 0 || !ok {
		a.throttled = true
		t.episode(e, "account", name, t.cfg.Account)
	}
	if !ok {
		return 0, ErrThrottled
	}
	a.account, a.holdsAcct = name, true
	return wait, nil
}

// refused waits RefuseDelay, at most maxWait.
func (t *Throttle) refused(maxWait time.Duration) {
	d := t.cfg.RefuseDelay
	if d > maxWait {
		d = maxWait
	}
	if d > 0 {
		t.Sleep(d)
	}
}

// Throttled reports whether the attempt had to wait or was refused (the
// caller logs single failures only while its keys are not throttled: the
// throttle logged the episode).
func (a *Attempt) Throttled() bool { return a != nil && a.throttled }

// Clean reports whether the attempt came from a clean address.
func (a *Attempt) Clean() bool { return a != nil && a.clean }

// Succeeded gives the attempt's tokens back: a success is not a failure.
// Earlier failures stay counted.
func (a *Attempt) Succeeded() { a.end(true, false) }

// Abandoned gives the tokens back for an attempt that tested no password
// (the client aborted it).
func (a *Attempt) Abandoned() { a.end(true, false) }

// Failed keeps the tokens taken and marks the address as not clean.
func (a *Attempt) Failed() { a.end(false, true) }

func (a *Attempt) end(refund, failed bool) {
	if a == nil || a.done {
		return
	}
	a.done = true
	t := a.t
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.Now().UnixNano()
	if a.holdsAddr {
		if e := t.addrs.m[a.addr]; e != nil {
			if refund {
				e.refund(t.cfg.Address)
			}
			if failed {
				e.lastFail = now
			}
		} else if failed { // forgotten meanwhile: remember the failure
			t.addrs.add(a.addr, now).lastFail = now
		}
	}
	if a.holdsAcct && refund {
		if e := t.accounts.m[a.account]; e != nil {
			e.refund(t.cfg.Account)
		}
	}
}

// episode logs once when a key starts being throttled.
func (t *Throttle) episode(e *entry, what, key string, r Rate) {
	if e.episode {
		return
	}
	e.episode = true
	if t.log != nil {
		t.log.Printf("%s: %s %s is over %d failed authentication attempts: further attempts wait their turn (one per %v, at most %v) or are refused", t.name, what, quoteKey(key), r.Burst, r.Interval, t.cfg.MaxWait)
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
// bucket is full again (one token comes back per Interval); the bucket is
// empty when tat is (Burst-1)·Interval or more ahead of now. Times are Unix
// nanoseconds: an entry is 24 bytes.
type entry struct {
	tat      int64
	lastFail int64 // 0: none
	episode  bool
}

// reserve takes the next token. wait is how long until it is there; if
// that is more than maxWait nothing is taken and ok is false, unless force
// (then tat is kept at most Burst+maxWait ahead).
func (e *entry) reserve(now int64, r Rate, maxWait time.Duration, force bool) (wait time.Duration, ok bool) {
	tat := max(e.tat, now)
	tau := int64(r.Burst-1) * int64(r.Interval)
	if w := tat - now - tau; w > 0 {
		wait = time.Duration(w)
	}
	if wait > maxWait && !force {
		return wait, false
	}
	tat += int64(r.Interval)
	if limit := now + tau + int64(r.Interval) + int64(maxWait); force && tat > limit {
		tat = limit
	}
	e.tat = tat
	return wait, true
}

func (e *entry) refund(r Rate) {
	e.tat -= int64(r.Interval)
}

// table is one map of buckets with its bound.
type table struct {
	rate         Rate
	keepFailures time.Duration // keep a key this long after its last failure
	max          int
	m            map[string]*entry
}

func (tb *table) expired(e *entry, now int64) bool {
	return e.tat <= now && (e.lastFail == 0 || now-e.lastFail >= int64(tb.keepFailures))
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
// earliest tat) until the table is at most 90 % full.
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
