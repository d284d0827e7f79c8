package commands

import (
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/store"
)

// The SSH login rules: set, shown by `user rule`, kept in the store, and
// refused when out of range.
func TestUserRuleSSHLimits(t *testing.T) {
	f := newFixture(t)
	f.ok("user rule max_startups 20:50:200")
	f.ok("user rule per_source_max_startups 3")
	f.ok("user rule login_grace_time 30")
	f.ok("user rule per_source_penalty authfail:10 max:1h")
	f.ok("user rule max_failed_logins 5")
	l := f.env.Store.SSHLimits()
	if l.MaxStartups != (store.Startups{Start: 20, Rate: 50, Full: 200}) || l.PerSourceMaxStartups != 3 ||
		l.LoginGraceTime != 30*time.Second || l.Penalties.AuthFail != 10*time.Second || l.Penalties.Max != time.Hour ||
		l.Penalties.NoAuth != time.Second || l.MaxFailedLogins != 5 {
		t.Fatalf("stored limits: %+v", l)
	}
	out := f.ok("user rule")
	for _, want := range []string{
		"max_failed_logins        5 per address (then password logins from there locked for 15 minutes)\n",
		"max_startups             20:50:200\n",
		"per_source_max_startups  3\n",
		"login_grace_time         30 seconds\n",
		"per_source_penalty       authfail:10 noauth:1 grace-exceeded:20 min:15 max:3600\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("user rule lacks %q:\n%s", want, out)
		}
	}
	f.ok("user rule per_source_penalty off")
	if out := f.ok("user rule"); !strings.Contains(out, "per_source_penalty       off (authfail:10 noauth:1 grace-exceeded:20 min:15 max:3600 when on)\n") {
		t.Errorf("penalties off:\n%s", out)
	}
	f.ok("user rule per_source_penalty on")
	if p := f.env.Store.SSHLimits().Penalties; p.Off || p.AuthFail != 10*time.Second {
		t.Error("on lost the settings")
	}
	for _, tc := range []struct{ line, want string }{
		{"user rule max_startups 10:30", "user rule max_startups: \"10:30\" is not <start>:<rate>:<full> (e.g. 10:30:100) or one number"},
		{"user rule max_startups 100:30:10", "user rule max_startups: 100:30:10: full must not be below start"},
		{"user rule login_grace_time 0", "user rule login_grace_time: 0 is out of range: give 1 to 3600"},
		{"user rule per_source_penalty crash:5", "user rule per_source_penalty: \"crash:5\": give on, off, default or <key>:<seconds> with key one of authfail, noauth, grace-exceeded, min, max"},
		{"user rule per_source_penalty min:2h", "user rule per_source_penalty: min (2h0m0s) must not be above max (1h0m0s)"},
	} {
		if _, err := f.run(tc.line); err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.line, err, tc.want)
		}
	}
}

// fakeLogins stands in for the SSH server's login locks.
type fakeLogins struct {
	locks    []LoginLock
	unlocked []string
}

func (f *fakeLogins) Locks(user string) []LoginLock { return f.locks }
func (f *fakeLogins) Unlock(user string) []string {
	f.unlocked = append(f.unlocked, user)
	return []string{"127.0.0.3"}
}

// user info shows the per-address locks; user unlock ends them.
func TestUserInfoAndUnlockPerSource(t *testing.T) {
	f := newFixture(t)
	fl := &fakeLogins{locks: []LoginLock{
		{Source: "127.0.0.3", Failed: 1, Until: fixedNow.Add(10 * time.Minute)},
		{Source: "2001:db8::/64", Failed: 2},
	}}
	f.env.Logins = fl
	out := f.ok("user info root")
	if !strings.Contains(out, "Locked           : password logins from 127.0.0.3 until 2026-11-22T12:10:00Z\n") || !strings.Contains(out, "Failed logins    : 3\n") {
		t.Fatalf("user info:\n%s", out)
	}
	if out := f.ok("user unlock root"); out != "Password logins for root unlocked from 127.0.0.3\n" || len(fl.unlocked) != 1 {
		t.Fatalf("user unlock: %q %v", out, fl.unlocked)
	}
}
