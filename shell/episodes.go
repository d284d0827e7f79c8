package shell

import (
	"fmt"
	"log"
	"sync"
	"time"
)

// episodeGap is the least time between two log lines of one kind: a flood
// of refused connections or failed logins logs one line per episode, then
// how many more there were.
const episodeGap = 10 * time.Second

// episodes rate-limits log lines by kind (a fixed set of names, so the map
// stays small).
type episodes struct {
	mu   sync.Mutex
	last map[string]time.Time
	more map[string]int
}

// logf returns a function that logs one line per kind and episode.
func (e *episodes) logf(l *log.Logger) func(kind, format string, args ...any) {
	return func(kind, format string, args ...any) {
		if l == nil {
			return
		}
		now := time.Now()
		e.mu.Lock()
		if e.last == nil {
			e.last, e.more = map[string]time.Time{}, map[string]int{}
		}
		prev, seen := e.last[kind]
		if seen && now.Sub(prev) < episodeGap {
			e.more[kind]++
			e.mu.Unlock()
			return
		}
		more := e.more[kind]
		e.last[kind], e.more[kind] = now, 0
		e.mu.Unlock()
		msg := fmt.Sprintf(format, args...)
		if more > 0 {
			msg += fmt.Sprintf(" (and %d more like it in the last %v)", more, now.Sub(prev).Round(time.Second))
		}
		l.Print(msg)
	}
}
