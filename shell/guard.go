package shell

import (
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/parley-xmpp/parley/commands"
	"github.com/parley-xmpp/parley/server/limit"
	"github.com/parley-xmpp/parley/store"
)

// The guard decides, as OpenSSH's sshd does, who may start an SSH login
// and who may try a password:
//
//   - MaxStartups: above start unauthenticated connections, a new one is
//     refused with a probability rising from rate % to 100 % at full;
//   - PerSourceMaxStartups: one source (an IPv4 address, an IPv6 /64) holds
//     at most so many unauthenticated connections;
//   - PerSourcePenalties: a source whose connections end unauthenticated
//     accrues penalty time, enforced once it reaches min. Connections that
//     never tried to log in or that sat until the grace time get the
//     source's new connections refused; connections that failed passwords
//     get its password logins paused, never its public-key logins;
//   - max_failed_logins: password logins of one user from one source are
//     locked for store.LockoutPeriod after that many failures in a row, so
//     a guesser elsewhere never locks the real user out.
//
// Every table is bounded: the startup counts by full, the penalty and
// failure tables by maxSources, and expired entries are swept.

// source is where a connection comes from: an IPv4 address, or the /64 of
// an IPv6 one (a host usually owns a whole /64).
type source string

func sourceOf(addr net.Addr) source { return source(limit.Source(addr.String())) }

// maxSources bounds the penalty table and the failed-login table.
const maxSources = 10000

// A full table is swept at most once a second; any table once a minute.
const (
	sweepFull  = time.Second
	sweepEvery = time.Minute
)

// outcome is how a connection left the unauthenticated state.
type outcome int

const (
	outAuthenticated outcome = iota
	outNoAuth                // closed without trying a method
	outAuthFail              // closed after failed password attempts
	outKeyFail               // closed after failed public keys only
	outGrace                 // still unauthenticated at the grace time
)

// refusal says why admit refused a connection ("" when it did not).
type refusal string

const (
	admitted         refusal = ""
	refusedPenalty   refusal = "penalty"
	refusedPerSource refusal = "per-source"
	refusedStartups  refusal = "startups"
)

// window is one penalty: enforced from when its accrued time reached min
// until it ends.
type window struct {
	until    time.Time
	enforced bool
}

func (w *window) on(now time.Time) bool { return w.enforced && now.Before(w.until) }

// add accrues d, capped at max ahead of now; it reports whether the
// penalty became enforced.
func (w *window) add(now time.Time, d, min, max time.Duration) bool {
	if !now.Before(w.until) {
		*w = window{until: now}
	}
	w.until = w.until.Add(d)
	if cap := now.Add(max); w.until.After(cap) {
		w.until = cap
	}
	if !w.enforced && w.until.Sub(now) >= min && w.until.After(now) {
		w.enforced = true
		return true
	}
	return false
}

type penalty struct {
	conn     window // refuses new connections
	password window // refuses password and keyboard-interactive logins
}

type failKey struct {
	user string
	src  source
}

// failures are one user's failed passwords from one source.
type failures struct {
	n      int // in a row
	last   time.Time
	locked time.Time // password logins refused until then
}

type guard struct {
	now  func() time.Time
	rand func(n int) int // in [0, n)
	logf func(kind, format string, args ...any)

	mu        sync.Mutex
	lim       store.SSHLimits
	unauth    int
	perSource map[source]int
	penalties map[source]*penalty
	fails     map[failKey]*failures
	swept     time.Time
}

func newGuard(lim store.SSHLimits, now func() time.Time, rand func(int) int, logf func(kind, format string, args ...any)) *guard {
	if logf == nil {
		logf = func(string, string, ...any) {}
	}
	return &guard{now: now, rand: rand, logf: logf, lim: lim,
		perSource: map[source]int{}, penalties: map[source]*penalty{}, fails: map[failKey]*failures{}}
}

func (g *guard) setLimits(lim store.SSHLimits) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lim = lim
	if lim.Penalties.Off {
		clear(g.penalties)
	}
}

func (g *guard) limits() store.SSHLimits {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lim
}

// admit decides on a new connection from src. Admitted, it counts as
// unauthenticated until done is called for it.
func (g *guard) admit(src source) (refusal, time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if p := g.penalties[src]; p != nil && p.conn.on(now) {
		return refusedPenalty, p.conn.until
	}
	if n := g.lim.PerSourceMaxStartups; n > 0 && g.perSource[src] >= n {
		return refusedPerSource, time.Time{}
	}
	if g.drop() {
		return refusedStartups, time.Time{}
	}
	g.unauth++
	g.perSource[src]++
	return admitted, time.Time{}
}

// drop is MaxStartups' random early drop.
func (g *guard) drop() bool {
	m := g.lim.MaxStartups
	switch {
	case g.unauth < m.Start:
		return false
	case g.unauth >= m.Full:
		return true
	}
	p := m.Rate + (100-m.Rate)*(g.unauth-m.Start)/(m.Full-m.Start)
	return g.rand(100) < p
}

// done ends an admitted connection's unauthenticated time and penalizes
// its source for how it ended.
func (g *guard) done(src source, how outcome) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.unauth--
	if g.perSource[src]--; g.perSource[src] <= 0 {
		delete(g.perSource, src)
	}
	pen := g.lim.Penalties
	if pen.Off {
		return
	}
	var w *window
	var d time.Duration
	var what string
	switch how {
	case outNoAuth:
		d, what = pen.NoAuth, "connections closed without trying to log in"
	case outGrace:
		d, what = pen.Grace, "connections that did not log in within the grace time"
	case outAuthFail:
		d, what = pen.AuthFail, "failed passwords"
	default:
		return
	}
	if d <= 0 {
		return
	}
	now := g.now()
	g.sweep(now, sweepEvery)
	p := g.penalties[src]
	if p == nil {
		if len(g.penalties) >= maxSources {
			g.sweep(now, sweepFull)
		}
		if len(g.penalties) >= maxSources {
			g.logf("penalty-overflow", "ssh: penalty table full (%d sources): %s not penalized", maxSources, src)
			return
		}
		p = &penalty{}
		g.penalties[src] = p
	}
	if how == outAuthFail {
		w = &p.password
	} else {
		w = &p.conn
	}
	if w.add(now, d, pen.Min, pen.Max) {
		if how == outAuthFail {
			g.logf("penalty", "ssh: password logins from %s paused until %s for %s (public keys still accepted)", src, w.until.UTC().Format(time.RFC3339), what)
		} else {
			g.logf("penalty", "ssh: connections from %s refused until %s for %s", src, w.until.UTC().Format(time.RFC3339), what)
		}
	}
}

// sweep drops what has expired, if the last sweep is at least gap ago;
// g.mu is held.
func (g *guard) sweep(now time.Time, gap time.Duration) {
	if now.Sub(g.swept) < gap {
		return
	}
	g.swept = now
	for src, p := range g.penalties {
		if !now.Before(p.conn.until) && !now.Before(p.password.until) {
			delete(g.penalties, src)
		}
	}
	for k, f := range g.fails {
		if f.expired(now) {
			delete(g.fails, k)
		}
	}
}

func (f *failures) expired(now time.Time) bool {
	return !now.Before(f.locked) && now.Sub(f.last) >= store.LockoutPeriod
}

// passwordAllowed says whether user may try a password from src now, and
// if not, why, in words for the person logging in.
func (g *guard) passwordAllowed(user string, src source) (bool, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if f := g.fails[failKey{user, src}]; f != nil && now.Before(f.locked) {
		return false, fmt.Sprintf("Password logins for %s from %s are locked after too many failed logins until %s; public-key logins still work, and an admin can run 'user unlock %s'.",
			user, src, f.locked.UTC().Format("15:04:05 MST"), user)
	}
	if p := g.penalties[src]; p != nil && p.password.on(now) {
		return false, fmt.Sprintf("Password logins from %s are paused after repeated failures until %s; public-key logins still work, and an admin can run 'user unlock %s'.",
			src, p.password.until.UTC().Format("15:04:05 MST"), user)
	}
	return true, ""
}

// passwordFailed counts a wrong password for an existing user from src;
// it reports whether that locked the user's password logins from there.
func (g *guard) passwordFailed(user string, src source) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	k := failKey{user, src}
	g.sweep(now, sweepEvery)
	f := g.fails[k]
	if f == nil {
		if len(g.fails) >= maxSources {
			g.sweep(now, sweepFull)
		}
		if len(g.fails) >= maxSources {
			g.logf("fail-overflow", "ssh: failed-login table full (%d entries): failure of %s from %s not counted", maxSources, user, src)
			return false
		}
		f = &failures{}
		g.fails[k] = f
	}
	if now.Sub(f.last) >= store.LockoutPeriod {
		f.n = 0 // "in a row" means within a lockout period of each other
	}
	f.n++
	f.last = now
	if max := g.lim.MaxFailedLogins; max > 0 && f.n >= max {
		f.locked = now.Add(store.LockoutPeriod)
		f.n = 0
		return true
	}
	return false
}

// loggedIn clears user's run of failures from src. A lock or password
// pause in force stays (a key login proves the user is there, not that the
// guesser is not), and so does the record, for user unlock to find.
func (g *guard) loggedIn(user string, src source) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := failKey{user, src}
	f := g.fails[k]
	if f == nil {
		return
	}
	now := g.now()
	if p := g.penalties[src]; now.Before(f.locked) || p != nil && p.password.on(now) {
		f.n = 0
	} else {
		delete(g.fails, k)
	}
}

// locks lists user's sources with failures or locks, by source.
func (g *guard) locks(user string) []commands.LoginLock {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	var out []commands.LoginLock
	for k, f := range g.fails {
		if k.user != user || f.expired(now) {
			continue
		}
		l := commands.LoginLock{Source: string(k.src), Failed: f.n}
		if now.Before(f.locked) {
			l.Until = f.locked
		}
		if p := g.penalties[k.src]; p != nil && p.password.on(now) && p.password.until.After(l.Until) {
			l.Until = p.password.until
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Source < out[j].Source })
	return out
}

// unlock forgets user's failures and locks, and lifts the password pause
// of the sources they came from; it returns those sources.
func (g *guard) unlock(user string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var srcs []string
	for k := range g.fails {
		if k.user != user {
			continue
		}
		delete(g.fails, k)
		if p := g.penalties[k.src]; p != nil {
			p.password = window{}
		}
		srcs = append(srcs, string(k.src))
	}
	sort.Strings(srcs)
	return srcs
}

// counts returns the unauthenticated connections, and how many sources
// hold some, for tests and status.
func (g *guard) counts() (unauth, sources, penalized int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.unauth, len(g.perSource), len(g.penalties)
}

// loginLocks shows the guard to the commands.
type loginLocks struct{ g *guard }

func (l loginLocks) Locks(user string) []commands.LoginLock { return l.g.locks(user) }
func (l loginLocks) Unlock(user string) []string            { return l.g.unlock(user) }
