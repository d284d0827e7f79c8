// Package limit holds the small tools every stream uses to keep a remote
// party within bounds (DESIGN.md, Seams, "Limits"): a token bucket for the
// stanzas a peer sends, and an episode logger, which writes one line when a
// limit is first hit and a summary when the episode ends, instead of one
// line per stanza.
package limit

import "time"

// Default stanza rate of a client session: sustained stanzas per second and
// the burst allowed above it. Server links and components get
// LinkFactor times as much (they carry many users' traffic).
const (
	DefaultRate  = 100
	DefaultBurst = 500
	LinkFactor   = 10
)

// Bucket is a token bucket: Burst tokens at most, refilled at Rate per
// second. It is not safe for concurrent use: each stream's read loop owns
// one. The zero Bucket is unlimited.
type Bucket struct {
	rate   float64 // tokens per nanosecond
	burst  float64
	tokens float64
	last   int64 // nanoseconds since epoch (monotonic)
}

// epoch is the origin of the monotonic clock readings buckets keep.
var epoch = time.Now()

// Now is the clock reading Take expects.
func Now() int64 { return int64(time.Since(epoch)) }

// NewBucket returns a full bucket. perSecond <= 0 means no limit; a burst
// below 1 is 1.
func NewBucket(perSecond float64, burst int) Bucket {
	var b Bucket
	b.Set(perSecond, burst)
	b.tokens = b.burst
	b.last = Now()
	return b
}

// Set changes the rate and burst, keeping the tokens there are (up to the
// new burst).
func (b *Bucket) Set(perSecond float64, burst int) {
	if perSecond <= 0 {
		b.rate, b.burst, b.tokens = 0, 0, 0
		return
	}
	if burst < 1 {
		burst = 1
	}
	b.rate = perSecond / float64(time.Second)
	b.burst = float64(burst)
	if b.tokens > b.burst {
		b.tokens = b.burst
	}
}

// Limited reports whether the bucket limits anything.
func (b *Bucket) Limited() bool { return b.rate > 0 }

// Take takes one token at clock reading now (Now()) and returns how long
// the caller must wait before going on: 0 while tokens are left. The token
// is taken either way (the bucket goes into debt), so a caller that waits
// the time returned and calls again keeps to the rate exactly.
func (b *Bucket) Take(now int64) time.Duration {
	if b.rate == 0 {
		return 0
	}
	if d := now - b.last; d > 0 {
		b.tokens += float64(d) * b.rate
		if b.tokens > b.burst {
			b.tokens = b.burst
		}
		b.last = now
	}
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate)
}

// Rate is the rate a setting gives (perSecond sustained, burst), times
// factor: the setting's value, or DefaultRate and DefaultBurst when it is
// nil or gives no rate.
func Rate(setting func() (perSecond float64, burst int), factor float64) (float64, int) {
	r, b := float64(DefaultRate), DefaultBurst
	if setting != nil {
		if sr, sb := setting(); sr > 0 {
			r, b = sr, sb
		}
	}
	return r * factor, int(float64(b) * factor)
}

// LinkRate is the rate of a server link or a component stream: the
// setting's value (already a link's rate), or the clients' default times
// LinkFactor when it is nil or gives no rate.
func LinkRate(setting func() (perSecond float64, burst int)) (float64, int) {
	if setting != nil {
		if r, b := setting(); r > 0 {
			return r, b
		}
	}
	return Rate(nil, LinkFactor)
}

// Pace is one stream's stanza rate: a Bucket whose setting is read again
// about once a second, so that a change (`xmpp limits stanza-rate`)
// reaches the streams already open. The stream's read loop owns it.
type Pace struct {
	setting   func() (perSecond float64, burst int)
	bucket    Bucket
	readAt    int64 // when the setting was last read (Now)
	perSecond float64
	burst     int
}

// NewPace returns a pace at setting's rate, its bucket full.
func NewPace(setting func() (perSecond float64, burst int)) Pace {
	p := Pace{setting: setting, readAt: Now()}
	p.perSecond, p.burst = setting()
	p.bucket = NewBucket(p.perSecond, p.burst)
	return p
}

// Take takes a token for one stanza and returns how long the stream must
// wait before going on (0: not at all), with the rate in force.
func (p *Pace) Take() (wait time.Duration, perSecond float64, burst int) {
	now := Now()
	if now-p.readAt > int64(time.Second) {
		p.readAt = now
		p.perSecond, p.burst = p.setting()
		p.bucket.Set(p.perSecond, p.burst)
	}
	return p.bucket.Take(now), p.perSecond, p.burst
}
