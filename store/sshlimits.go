package store

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Config keys of the SSH login limits (`user rule …`). Unset keys take the
// defaults in DefaultSSHLimits.
const (
	RuleMaxStartups          = "rule.max_startups"            // "start:rate:full"
	RulePerSourceMaxStartups = "rule.per_source_max_startups" // n, 0 off
	RuleLoginGraceTime       = "rule.login_grace_time"        // seconds
	RulePerSourcePenalty     = "rule.per_source_penalty"      // "authfail:5 noauth:1 …" or "off"
)

// Startups is OpenSSH's MaxStartups start:rate:full: above Start
// unauthenticated connections, a new one is refused with a probability of
// Rate percent, rising linearly to 100 % at Full.
type Startups struct {
	Start, Rate, Full int
}

// MaxStartupsLimit bounds Full: each unauthenticated connection costs a
// goroutine, buffers and a file descriptor.
const MaxStartupsLimit = 10000

func (m Startups) String() string { return fmt.Sprintf("%d:%d:%d", m.Start, m.Rate, m.Full) }

// ParseStartups reads "start:rate:full", or "n" (a hard limit: n:100:n).
func ParseStartups(s string) (Startups, error) {
	parts := strings.Split(s, ":")
	var nums []int
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return Startups{}, fmt.Errorf("%q is not <start>:<rate>:<full> (e.g. 10:30:100) or one number", s)
		}
		nums = append(nums, n)
	}
	var m Startups
	switch len(nums) {
	case 1:
		m = Startups{nums[0], 100, nums[0]}
	case 3:
		m = Startups{nums[0], nums[1], nums[2]}
	default:
		return Startups{}, fmt.Errorf("%q is not <start>:<rate>:<full> (e.g. 10:30:100) or one number", s)
	}
	switch {
	case m.Start < 1:
		return Startups{}, fmt.Errorf("%s: start must be at least 1", s)
	case m.Rate > 100:
		return Startups{}, fmt.Errorf("%s: rate is a percentage, 0 to 100", s)
	case m.Full < m.Start:
		return Startups{}, fmt.Errorf("%s: full must not be below start", s)
	case m.Full > MaxStartupsLimit:
		return Startups{}, fmt.Errorf("%s: full must be at most %d", s, MaxStartupsLimit)
	}
	return m, nil
}

// Penalties is OpenSSH's PerSourcePenalties: each way a connection can end
// unauthenticated adds time to its source's penalty, which counts down
// and is enforced once it reaches Min, for at most Max.
//
// Parley splits what a penalty blocks so that a key login is never refused
// because of password failures: AuthFail (a connection that ended after
// failed password or keyboard-interactive attempts) pauses password logins
// from the source, while public keys still get through; NoAuth (a
// connection that ended without trying to authenticate) and Grace (one
// still unauthenticated at the login grace time) refuse the source's new
// connections, as OpenSSH does.
type Penalties struct {
	Off                               bool
	AuthFail, NoAuth, Grace, Min, Max time.Duration
}

// penaltyKeys name the Penalties fields as OpenSSH spells them.
var penaltyKeys = []string{"authfail", "noauth", "grace-exceeded", "min", "max"}

func (p *Penalties) field(key string) *time.Duration {
	switch key {
	case "authfail":
		return &p.AuthFail
	case "noauth":
		return &p.NoAuth
	case "grace-exceeded":
		return &p.Grace
	case "min":
		return &p.Min
	case "max":
		return &p.Max
	}
	return nil
}

// String is every setting in seconds, e.g. "authfail:5 noauth:1
// grace-exceeded:20 min:15 max:600", after "off" when penalties are off; it
// parses back with ParsePenalties.
func (p Penalties) String() string {
	var parts []string
	if p.Off {
		parts = append(parts, "off")
	}
	for _, k := range penaltyKeys {
		parts = append(parts, fmt.Sprintf("%s:%d", k, int(p.field(k).Seconds())))
	}
	return strings.Join(parts, " ")
}

// MaxPenalty bounds every penalty setting.
const MaxPenalty = 24 * time.Hour

// ParsePenalties applies words to base, in order: "off", "on" (enable,
// with the settings kept), "default", or key:duration where the duration is
// seconds or a Go duration ("5", "30s", "10m").
func ParsePenalties(base Penalties, words []string) (Penalties, error) {
	p := base
	for _, w := range words {
		switch w {
		case "off":
			p.Off = true
			continue
		case "on":
			p.Off = false
			continue
		case "default":
			p = DefaultSSHLimits().Penalties
			continue
		}
		key, val, ok := strings.Cut(w, ":")
		f := p.field(key)
		if !ok || f == nil {
			return base, fmt.Errorf("%q: give on, off, default or <key>:<seconds> with key one of %s", w, strings.Join(penaltyKeys, ", "))
		}
		d, err := parseSeconds(val)
		if err != nil || d < 0 || d > MaxPenalty {
			return base, fmt.Errorf("%q: the time must be seconds or a duration such as 30s or 10m, at most %v", w, MaxPenalty)
		}
		*f = d
	}
	if p.Min > p.Max {
		return base, fmt.Errorf("min (%v) must not be above max (%v)", p.Min, p.Max)
	}
	return p, nil
}

func parseSeconds(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	return d.Truncate(time.Second), nil
}

// SSHLimits are the rules for SSH logins.
type SSHLimits struct {
	MaxStartups          Startups
	PerSourceMaxStartups int // 0: no per-source limit
	LoginGraceTime       time.Duration
	Penalties            Penalties
	MaxFailedLogins      int // per user and source; 0: off
}

// MaxLoginGraceTime bounds `user rule login_grace_time`.
const MaxLoginGraceTime = time.Hour

// DefaultSSHLimits are the rules until `user rule` changes them:
// OpenSSH's MaxStartups and PerSourcePenalties defaults; five
// unauthenticated connections per source, half of the point where random
// drops begin, so one address alone can never make others wait; and a
// minute to log in.
func DefaultSSHLimits() SSHLimits {
	return SSHLimits{
		MaxStartups:          Startups{Start: 10, Rate: 30, Full: 100},
		PerSourceMaxStartups: 5,
		LoginGraceTime:       60 * time.Second,
		Penalties: Penalties{
			AuthFail: 5 * time.Second,
			NoAuth:   1 * time.Second,
			Grace:    20 * time.Second,
			Min:      15 * time.Second,
			Max:      600 * time.Second,
		},
	}
}

// SSHLimits returns the SSH login rules, defaults filled in. A value that
// does not parse (it cannot be set so) counts as unset.
func (s *Store) SSHLimits() SSHLimits {
	l := DefaultSSHLimits()
	if v, ok := s.Config(RuleMaxStartups); ok {
		if m, err := ParseStartups(v); err == nil {
			l.MaxStartups = m
		}
	}
	if v, ok := s.Config(RulePerSourceMaxStartups); ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			l.PerSourceMaxStartups = n
		}
	}
	if n := s.ConfigInt(RuleLoginGraceTime); n > 0 && time.Duration(n)*time.Second <= MaxLoginGraceTime {
		l.LoginGraceTime = time.Duration(n) * time.Second
	}
	if v, ok := s.Config(RulePerSourcePenalty); ok {
		if p, err := ParsePenalties(l.Penalties, strings.Fields(v)); err == nil {
			l.Penalties = p
		}
	}
	l.MaxFailedLogins = s.ConfigInt(RuleMaxFailedLogins)
	return l
}
