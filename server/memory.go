package server

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Giving memory back while idle. Go's collector lets the heap grow to
// twice what is live before it collects (GOGC=100), and returns freed
// pages to the system only gradually: after a burst (a login storm, a
// flood of messages, the start-up's loading of the store) an idle
// appliance kept that headroom, about as much again as its sessions
// really hold. When the process has been quiet for a second after
// allocating at least releaseMin, the engine collects and returns what is
// free at once, at most once per releaseEvery: a release costs one
// collection (which that much allocation would soon have caused anyway)
// and the page faults of taking the memory again. Nothing on the stanza
// path pays for it: the engine only reads the runtime's count of
// allocated bytes twice a second.
const (
	quietCheckEvery = 500 * time.Millisecond
	quietAfter      = time.Second     // quiet this long before memory is given back
	quietRate       = 1 << 20         // bytes allocated per second that still count as quiet (idle sessions parking after a burst allocate a little)
	releaseMin      = 8 << 20         // allocated since the last release, for another to be worth it
	releaseEvery    = 5 * time.Second // at most one release this often
)

// releaser decides, from the process's cumulative allocated bytes read at
// each check, when a quiet process gives its free memory back.
type releaser struct {
	started    bool
	last       uint64    // allocated bytes at the last check
	atRelease  uint64    // allocated bytes at the last release
	quietSince time.Time // zero: not quiet
	released   time.Time
}

// check takes one reading; it reports whether to release now.
func (r *releaser) check(now time.Time, allocated uint64, every time.Duration) bool {
	if !r.started {
		// What the start-up allocated counts: once quiet, a process
		// that loaded a large store gives back what loading it left.
		r.started, r.last = true, allocated
		return false
	}
	delta := allocated - r.last
	r.last = allocated
	if float64(delta) > quietRate*every.Seconds() {
		r.quietSince = time.Time{}
		return false
	}
	if r.quietSince.IsZero() {
		r.quietSince = now
	}
	if now.Sub(r.quietSince) < quietAfter || allocated-r.atRelease < releaseMin ||
		(!r.released.IsZero() && now.Sub(r.released) < releaseEvery) {
		return false
	}
	r.released, r.atRelease = now, allocated
	return true
}

// releaseWhenQuiet runs until the engine stops.
func (e *Engine) releaseWhenQuiet() {
	defer e.wg.Done()
	t := time.NewTicker(quietCheckEvery)
	defer t.Stop()
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	var r releaser
	for {
		select {
		case <-e.stop:
			return
		case now := <-t.C:
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 {
				return // not this runtime's metric: nothing to go by
			}
			if r.check(now, sample[0].Value.Uint64(), quietCheckEvery) {
				// Two collections: what sync.Pools hold (record and read
				// buffers a burst used) survives one, in their victim
				// caches.
				runtime.GC()
				debug.FreeOSMemory()
			}
		}
	}
}
