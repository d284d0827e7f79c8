package limit

import (
	"fmt"
	"github.com/parley-xmpp/parley/server/logging"
	"log/slog"
	"sync"
	"time"
)

// Episodes logs limits being hit, one line per episode: the first
// occurrence of a key is written as given; later ones are only counted,
// and a summary line says how many there were, once a minute while the
// episode lasts and once when it is over (no occurrence for Quiet). A
// flood of 20,000 refused stanzas writes two lines, not 20,000.
//
// The zero value is not usable: make one with NewEpisodes. It is safe for
// concurrent use; an occurrence that is only counted costs a map lookup
// under a lock, no formatting and no allocation.
type Episodes struct {
	log   *slog.Logger
	quiet time.Duration // an episode ends after this long without an occurrence
	every time.Duration // a long episode's summary interval
	now   func() time.Time

	mu   sync.Mutex
	open map[string]*episode
}

type episode struct {
	key       string
	start     time.Time // of the episode
	since     time.Time // of the period the count is for
	lastAt    time.Time // the latest occurrence
	count     int       // occurrences not yet in a line
	total     int
	timer     *time.Timer
	firstText string
}

// Defaults of NewEpisodes.
const (
	EpisodeQuiet   = 10 * time.Second
	EpisodeSummary = time.Minute
	// MaxEpisodes bounds the episodes open at once: keys beyond it share
	// one episode, so the table cannot grow without bound either.
	MaxEpisodes = 1024
)

// NewEpisodes returns an episode logger writing to l (nil: the standard
// logger) with the default quiet period and summary interval. Lines are
// written at level problems.
func NewEpisodes(l *slog.Logger) *Episodes {
	if l == nil {
		l = slog.Default()
	}
	return &Episodes{log: l, quiet: EpisodeQuiet, every: EpisodeSummary, now: time.Now, open: map[string]*episode{}}
}

// overflowKey is the shared episode of keys beyond MaxEpisodes.
const overflowKey = "limits: other limits hit"

// Printf records an occurrence of key (what limit, as the summary names
// it, e.g. "s2s: links that could not be set up"). The first occurrence of
// an episode is logged with format and args; later ones are counted.
// It reports whether this occurrence was logged.
func (e *Episodes) Printf(key, format string, args ...any) bool {
	now := e.now()
	e.mu.Lock()
	ep := e.open[key]
	if ep == nil && len(e.open) >= MaxEpisodes {
		key = overflowKey
		ep = e.open[key]
	}
	if ep != nil {
		ep.count++
		ep.total++
		ep.lastAt = now
		e.mu.Unlock()
		return false
	}
	ep = &episode{key: key, start: now, since: now, lastAt: now, total: 1}
	e.open[key] = ep
	ep.timer = time.AfterFunc(e.quiet, func() { e.tick(ep) })
	e.mu.Unlock()
	logging.Problem(e.log, format+" (further occurrences are counted: one summary a minute)", args...)
	return true
}

// Open reports how many episodes are open (for tests and status).
func (e *Episodes) Open() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.open)
}

// tick runs every quiet period of an open episode: the summary of a long
// one, or the end.
func (e *Episodes) tick(ep *episode) {
	now := e.now()
	var line string
	e.mu.Lock()
	switch {
	case now.Sub(ep.lastAt) >= e.quiet:
		if e.open[ep.key] == ep {
			delete(e.open, ep.key)
		}
		if ep.count > 0 {
			line = fmt.Sprintf("%s: %d more since %s; %d in all, over after %s", ep.key, ep.count, ep.since.UTC().Format("15:04:05"), ep.total,
				ep.lastAt.Sub(ep.start).Round(time.Second))
		}
	case now.Sub(ep.since) >= e.every && ep.count > 0:
		line = fmt.Sprintf("%s: %d more since %s, still going", ep.key, ep.count, ep.since.UTC().Format("15:04:05"))
		ep.count, ep.since = 0, now
		fallthrough
	default:
		ep.timer.Reset(e.quiet)
	}
	e.mu.Unlock()
	if line != "" {
		logging.Problem(e.log, "%s", line)
	}
}
