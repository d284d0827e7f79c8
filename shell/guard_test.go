package shell

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/store"
)

// fakeClock is the guard's injectable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// testGuard returns a guard with lim, a fake clock, and a "random" number
// the test sets.
func testGuard(lim store.SSHLimits) (*guard, *fakeClock, *int) {
	clk := &fakeClock{t: time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)}
	r := new(int)
	g := newGuard(lim, clk.now, func(n int) int { return *r % n }, nil)
	return g, clk, r
}

func noPenalties() store.SSHLimits {
	l := store.DefaultSSHLimits()
	l.Penalties.Off = true
	l.PerSourceMaxStartups = 0
	return l
}

func TestSourceOf(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"127.0.0.2:5555", "127.0.0.2"},
		{"[::ffff:192.0.2.7]:22", "192.0.2.7"},
		{"[2001:db8:1:2:aaaa::1]:40000", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:bbbb::9]:40001", "2001:db8:1:2::/64"},
		{"[2001:db8:1:3::1]:40000", "2001:db8:1:3::/64"},
	} {
		a, err := net.ResolveTCPAddr("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := sourceOf(a); string(got) != tc.want {
			t.Errorf("sourceOf(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
}

// MaxStartups start:rate:full: always below start, never at full, and in
// between refused when the random number falls under the linear chance.
func TestMaxStartupsRandomEarlyDrop(t *testing.T) {
	lim := noPenalties()
	lim.MaxStartups = store.Startups{Start: 2, Rate: 50, Full: 4}
	g, _, r := testGuard(lim)
	src := func(i int) source { return source(fmt.Sprintf("192.0.2.%d", i)) }
	*r = 0 // the most unlucky draw
	for i := 0; i < 2; i++ {
		if why, _ := g.admit(src(i)); why != admitted {
			t.Fatalf("connection %d below start refused: %s", i, why)
		}
	}
	// At 2 (start) the chance is 50 %: 49 is refused, 50 is not.
	*r = 49
	if why, _ := g.admit(src(2)); why != refusedStartups {
		t.Fatalf("at start with draw 49 of 50 %%: %q, want refused", why)
	}
	*r = 50
	if why, _ := g.admit(src(2)); why != admitted {
		t.Fatalf("at start with draw 50 of 50 %%: %q, want admitted", why)
	}
	// At 3 the chance is 75 %.
	*r = 74
	if why, _ := g.admit(src(3)); why != refusedStartups {
		t.Fatalf("at 3 with draw 74 of 75 %%: %q, want refused", why)
	}
	*r = 75
	if why, _ := g.admit(src(3)); why != admitted {
		t.Fatalf("at 3 with draw 75 of 75 %%: %q, want admitted", why)
	}
	// At full, always refused.
	*r = 99
	if why, _ := g.admit(src(4)); why != refusedStartups {
		t.Fatalf("at full: %q, want refused", why)
	}
	// A connection that logs in frees its slot.
	g.done(src(0), outAuthenticated)
	*r = 75
	if why, _ := g.admit(src(5)); why != admitted {
		t.Fatalf("after one logged in: %q, want admitted", why)
	}
	if u, s, _ := g.counts(); u != 4 || s != 4 {
		t.Fatalf("counts: %d unauthenticated from %d sources, want 4 and 4", u, s)
	}
}

// One address cannot take the slots: with the defaults, 70 connections
// from one address leave room for everyone else.
func TestPerSourceMaxStartups(t *testing.T) {
	g, _, r := testGuard(store.DefaultSSHLimits())
	*r = 0 // every random draw would refuse
	held := 0
	for i := 0; i < 70; i++ {
		if why, _ := g.admit("127.0.0.2"); why == admitted {
			held++
		} else if why != refusedPerSource {
			t.Fatalf("connection %d from one address refused for %q, want per-source", i, why)
		}
	}
	if held != 5 {
		t.Fatalf("one address holds %d unauthenticated connections, want 5", held)
	}
	for _, other := range []source{"127.0.0.1", "2001:db8::/64"} {
		if why, _ := g.admit(other); why != admitted {
			t.Fatalf("%s refused (%s) while 127.0.0.2 holds its 5", other, why)
		}
	}
	g.done("127.0.0.2", outAuthenticated)
	if why, _ := g.admit("127.0.0.2"); why != admitted {
		t.Fatalf("a freed per-source slot is not reusable: %s", why)
	}
	// Off: the source may hold everything up to start.
	lim := store.DefaultSSHLimits()
	lim.PerSourceMaxStartups = 0
	g.setLimits(lim)
	if why, _ := g.admit("127.0.0.2"); why != admitted {
		t.Fatalf("per_source_max_startups 0 still limits: %s", why)
	}
}

// Penalties accrue per connection, count down, are enforced from min and
// capped at max. Connections that never log in refuse the source's new
// connections; failed passwords pause only its passwords.
func TestPerSourcePenalties(t *testing.T) {
	lim := store.DefaultSSHLimits() // authfail:5 noauth:1 grace-exceeded:20 min:15 max:600
	lim.PerSourceMaxStartups = 0
	g, clk, r := testGuard(lim)
	*r = 99

	// noauth: 14 of 1 s do not reach min; the 15th does.
	for i := 0; i < 14; i++ {
		g.admit("198.51.100.1")
		g.done("198.51.100.1", outNoAuth)
	}
	if why, _ := g.admit("198.51.100.1"); why != admitted {
		t.Fatalf("refused (%s) with 14 s of penalty, below min", why)
	}
	g.done("198.51.100.1", outNoAuth)
	why, until := g.admit("198.51.100.1")
	if why != refusedPenalty || until != clk.t.Add(15*time.Second) {
		t.Fatalf("after 15 s of noauth penalty: %q until %v, want refused for 15 s", why, until)
	}
	if why, _ := g.admit("198.51.100.2"); why != admitted {
		t.Fatalf("another address refused: %s", why)
	}
	g.done("198.51.100.2", outAuthenticated)
	clk.advance(15 * time.Second)
	if why, _ := g.admit("198.51.100.1"); why != admitted {
		t.Fatalf("refused (%s) after the penalty ran out", why)
	}
	g.done("198.51.100.1", outAuthenticated)

	// grace-exceeded: 20 s, above min at once; accrues up to max.
	for i := 0; i < 100; i++ {
		g.done("198.51.100.3", outGrace) // as if admitted and closed at the grace time
		g.unauth++
		g.perSource["198.51.100.3"]++
	}
	if _, until := g.admit("198.51.100.3"); until != clk.t.Add(600*time.Second) {
		t.Fatalf("penalty until %v, want capped at max (600 s)", until)
	}

	// authfail: passwords paused, connections and keys still admitted.
	for i := 0; i < 3; i++ {
		if why, _ := g.admit("203.0.113.9"); why != admitted {
			t.Fatalf("failed passwords refused the connection: %s", why)
		}
		g.done("203.0.113.9", outAuthFail)
	}
	if why, _ := g.admit("203.0.113.9"); why != admitted {
		t.Fatalf("failed passwords refused the connection: %s", why)
	}
	ok, msg := g.passwordAllowed("admin", "203.0.113.9")
	if ok || !strings.Contains(msg, "public-key logins still work") {
		t.Fatalf("passwords from a penalized address: allowed %v, %q", ok, msg)
	}
	if ok, _ := g.passwordAllowed("admin", "203.0.113.10"); !ok {
		t.Fatal("passwords from another address paused")
	}
	// Failed public keys only cost nothing.
	g.done("203.0.113.9", outKeyFail)
	clk.advance(15 * time.Second)
	if ok, _ := g.passwordAllowed("admin", "203.0.113.9"); !ok {
		t.Fatal("passwords still paused after the penalty ran out")
	}

	// Off: nothing is recorded.
	lim.Penalties.Off = true
	g.setLimits(lim)
	for i := 0; i < 5; i++ {
		g.admit("198.51.100.4")
		g.done("198.51.100.4", outGrace)
	}
	if why, _ := g.admit("198.51.100.4"); why != admitted {
		t.Fatalf("penalties off, still refused: %s", why)
	}
}

// max_failed_logins counts per user and source: a guesser at one address
// locks only that user's passwords from that address.
func TestFailedLoginsPerSource(t *testing.T) {
	lim := store.DefaultSSHLimits()
	lim.Penalties.Off = true
	lim.MaxFailedLogins = 5
	g, clk, _ := testGuard(lim)
	for i := 1; i <= 6; i++ {
		locked := g.passwordFailed("admin", "127.0.0.3")
		if locked != (i == 5) {
			t.Fatalf("failure %d: locked %v", i, locked)
		}
	}
	ok, msg := g.passwordAllowed("admin", "127.0.0.3")
	if ok || !strings.Contains(msg, "user unlock admin") {
		t.Fatalf("admin from the guesser's address: allowed %v, %q", ok, msg)
	}
	if ok, _ := g.passwordAllowed("admin", "127.0.0.1"); !ok {
		t.Fatal("admin locked out from another address")
	}
	if ok, _ := g.passwordAllowed("alice", "127.0.0.3"); !ok {
		t.Fatal("another user locked out")
	}
	locks := g.locks("admin")
	if len(locks) != 1 || locks[0].Source != "127.0.0.3" || locks[0].Until != clk.t.Add(store.LockoutPeriod) || locks[0].Failed != 1 {
		t.Fatalf("locks: %+v", locks)
	}
	// A login (by key) does not end the lock; user unlock does.
	g.loggedIn("admin", "127.0.0.3")
	if ok, _ := g.passwordAllowed("admin", "127.0.0.3"); ok {
		t.Fatal("a key login ended the lock")
	}
	if srcs := g.unlock("admin"); len(srcs) != 1 || srcs[0] != "127.0.0.3" {
		t.Fatalf("unlock: %v", srcs)
	}
	if ok, _ := g.passwordAllowed("admin", "127.0.0.3"); !ok {
		t.Fatal("still locked after unlock")
	}
	// Failures far apart are not in a row; the lock runs out by itself.
	for i := 0; i < 4; i++ {
		g.passwordFailed("admin", "127.0.0.4")
	}
	clk.advance(store.LockoutPeriod)
	if g.passwordFailed("admin", "127.0.0.4") {
		t.Fatal("failures 15 minutes apart counted in a row")
	}
	for i := 0; i < 4; i++ {
		g.passwordFailed("admin", "127.0.0.4")
	}
	clk.advance(store.LockoutPeriod)
	if ok, _ := g.passwordAllowed("admin", "127.0.0.4"); !ok {
		t.Fatal("lock outlived its period")
	}
	// unlock also lifts the password pause of the user's sources.
	lim.Penalties.Off = false
	g.setLimits(lim)
	for i := 0; i < 3; i++ {
		g.admit("127.0.0.5")
		g.passwordFailed("admin", "127.0.0.5")
		g.done("127.0.0.5", outAuthFail)
	}
	if ok, _ := g.passwordAllowed("admin", "127.0.0.5"); ok {
		t.Fatal("no password pause after 3 failed connections")
	}
	// A key login there keeps the pause (and the record user unlock needs).
	g.loggedIn("admin", "127.0.0.5")
	if ok, _ := g.passwordAllowed("admin", "127.0.0.5"); ok {
		t.Fatal("a key login lifted the password pause")
	}
	g.unlock("admin")
	if ok, _ := g.passwordAllowed("admin", "127.0.0.5"); !ok {
		t.Fatal("user unlock did not lift the pause of the user's address")
	}
}

// The tables stay bounded: expired entries are swept, and when every entry
// is live, new sources are not recorded.
func TestGuardTablesBounded(t *testing.T) {
	lim := store.DefaultSSHLimits()
	lim.PerSourceMaxStartups = 0
	lim.MaxFailedLogins = 3
	g, clk, _ := testGuard(lim)
	for i := 0; i < maxSources+50; i++ {
		src := source(fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255))
		g.unauth++
		g.perSource[src]++
		g.done(src, outGrace)
		g.passwordFailed("admin", src)
	}
	if _, _, pen := g.counts(); pen != maxSources || len(g.fails) != maxSources {
		t.Fatalf("tables hold %d penalties and %d failure records, cap %d", pen, len(g.fails), maxSources)
	}
	clk.advance(store.LockoutPeriod + time.Second)
	g.unauth++
	g.perSource["192.0.2.1"]++
	g.done("192.0.2.1", outGrace)
	g.passwordFailed("admin", "192.0.2.1")
	if _, _, pen := g.counts(); pen != 1 || len(g.fails) != 1 {
		t.Fatalf("after expiry: %d penalties, %d failure records, want 1 and 1", pen, len(g.fails))
	}
	// Expired entries go within a minute even when the table is not full.
	clk.advance(store.LockoutPeriod + time.Minute)
	g.unauth++
	g.perSource["192.0.2.2"]++
	g.done("192.0.2.2", outNoAuth)
	if _, _, pen := g.counts(); pen != 1 {
		t.Fatalf("expired penalties kept: %d entries, want 1", pen)
	}
	if len(g.perSource) != 0 || g.unauth != 0 {
		t.Fatalf("startup counts left behind: %d, %v", g.unauth, g.perSource)
	}
}

func TestParseSSHRules(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		err  bool
	}{
		{"10:30:100", "10:30:100", false},
		{"20", "20:100:20", false},
		{"10:30", "", true},
		{"0:30:100", "", true},
		{"10:130:100", "", true},
		{"50:30:10", "", true},
		{"10:30:100000", "", true},
		{"a:b:c", "", true},
	} {
		m, err := store.ParseStartups(tc.in)
		if (err != nil) != tc.err || (err == nil && m.String() != tc.want) {
			t.Errorf("ParseStartups(%q) = %v, %v", tc.in, m, err)
		}
	}
	def := store.DefaultSSHLimits().Penalties
	for _, tc := range []struct {
		words []string
		want  string
		err   bool
	}{
		{nil, "authfail:5 noauth:1 grace-exceeded:20 min:15 max:600", false},
		{[]string{"authfail:30s", "max:1h"}, "authfail:30 noauth:1 grace-exceeded:20 min:15 max:3600", false},
		{[]string{"off"}, "off authfail:5 noauth:1 grace-exceeded:20 min:15 max:600", false},
		{[]string{"off", "on", "noauth:0"}, "authfail:5 noauth:0 grace-exceeded:20 min:15 max:600", false},
		{[]string{"min:700"}, "", true},
		{[]string{"crash:90"}, "", true},
		{[]string{"authfail:-1"}, "", true},
		{[]string{"authfail"}, "", true},
	} {
		p, err := store.ParsePenalties(def, tc.words)
		if (err != nil) != tc.err || (err == nil && p.String() != tc.want) {
			t.Errorf("ParsePenalties(%q) = %q, %v", tc.words, p, err)
		}
		if err == nil {
			back, err := store.ParsePenalties(def, strings.Fields(p.String()))
			if err != nil || back != p {
				t.Errorf("%q does not parse back: %v %v", p, back, err)
			}
		}
	}
}
