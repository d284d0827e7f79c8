package server

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/tlsrec"
	"github.com/parley-xmpp/parley/server/xml"
)

// The engine gives memory back once the process has been quiet for
// quietAfter after allocating at least releaseMin (its start-up counts),
// and at most once per releaseEvery; a busy process is left alone.
func TestReleaserQuietAfterBusy(t *testing.T) {
	var r releaser
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	alloc := uint64(100 << 20) // the start-up's
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	var releases []int
	step := func(sec int, allocatedThisSecond uint64) {
		alloc += allocatedThisSecond
		if r.check(at(sec), alloc, time.Second) {
			releases = append(releases, sec)
		}
	}
	sec := 0
	// Quiet after the start-up: its memory is given back once.
	for ; sec < 30; sec++ {
		step(sec, 1<<10)
	}
	// A burst: 20 s at 50 MiB/s, no release while busy.
	for ; sec < 50; sec++ {
		step(sec, 50<<20)
	}
	// Quiet (a little allocation, under quietRate): a release after
	// quietAfter, but not within releaseEvery of the last.
	for ; sec < 70; sec++ {
		step(sec, 100<<10)
	}
	// Another burst and quiet: held back until releaseEvery has passed.
	for ; sec < 75; sec++ {
		step(sec, 50<<20)
	}
	for ; sec < 200; sec++ {
		step(sec, 0)
	}
	// Two bursts a second apart: the second release waits for
	// releaseEvery after the first.
	q, every := int(quietAfter/time.Second), int(releaseEvery/time.Second)
	step(200, 50<<20)
	for sec = 201; sec < 201+q+1; sec++ {
		step(sec, 0)
	}
	step(sec, 50<<20)
	burst2 := sec
	for sec++; sec < 300; sec++ {
		step(sec, 0)
	}
	// The first check only reads; quiet from second 1.
	first := 1 + q
	want := []int{first, max(50+q, first+every), max(75+q, first+2*every), 201 + q}
	want = append(want, max(burst2+1+q, want[3]+every))
	if fmt.Sprint(releases) != fmt.Sprint(want) {
		t.Fatalf("releases at seconds %v, want %v", releases, want)
	}
	// Nothing allocated worth giving back: no release at all.
	var r2 releaser
	for sec := 0; sec < 100; sec++ {
		if r2.check(at(sec), uint64(sec)<<10, time.Second) {
			t.Fatalf("a release at second %d with nothing allocated", sec)
		}
	}
}

func TestCountEntries(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 700; i++ {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("a-rather-long-file-name-%04d", i)))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	for _, d := range []string{dir, "/proc/self/fd", t.TempDir()} {
		f, err := os.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		n, err := countEntries(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		f, _ = os.Open(d)
		names, _ := f.Readdirnames(-1)
		f.Close()
		if n != len(names) {
			t.Errorf("%s: counted %d entries, Readdirnames lists %d", d, n, len(names))
		}
	}
}

// TestIdleSessionsParked: idle client sessions over STARTTLS (TLS 1.3)
// hold no goroutine each (their connections are parked), and each one
// still gets what is sent to it, answers, and can be closed while parked.
func TestIdleSessionsParked(t *testing.T) {
	f := start(t)
	const n = 60
	var clients []*client
	for i := 0; i < n; i++ {
		c := f.dial()
		c.login("alice", "alice-password", fmt.Sprint("r", i))
		clients = append(clients, c)
	}
	sender := f.dial()
	sender.login("bob", "bob-password", "sender")
	waitFor(t, "every idle session parked", func() bool { return tlsrec.Parked() >= n })
	time.Sleep(3 * stream.WriterLinger / 2) // their writers end
	base := runtime.NumGoroutine()
	// One more idle session adds no goroutine that stays.
	extra := f.dial()
	extra.login("alice", "alice-password", "extra")
	waitFor(t, "the new session parked", func() bool { return tlsrec.Parked() >= n+1 })
	time.Sleep(3 * stream.WriterLinger / 2) // its writer ends too
	if g := runtime.NumGoroutine(); g > base {
		t.Fatalf("%d goroutines with one more idle session, %d before", g, base)
	}
	if base > n/2 {
		t.Fatalf("%d goroutines for %d idle sessions", base, n)
	}
	// A message to each wakes it; each answers a ping.
	for i, c := range clients {
		sender.send(fmt.Sprintf(`<message to='alice@example.lan/r%d' type='chat'><body>hello %d</body></message>`, i, i))
		el := c.expect("the message", func(el *xml.Element) bool { return el.Name.Local == "message" })
		if el.Child("", "body").Text() != fmt.Sprint("hello ", i) {
			t.Fatalf("session %d got %s", i, el)
		}
		if el := c.ping(fmt.Sprint("p", i)); el.Get("type") != "result" {
			t.Fatalf("session %d: %s", i, el)
		}
	}
	// Closed by the server while parked (a resource conflict): the old
	// session is told and ends; the new one is bound.
	waitFor(t, "parked again", func() bool { return tlsrec.Parked() >= n+1 })
	again := f.dial()
	again.login("alice", "alice-password", "r0")
	if got := clients[0].streamError(); got != "conflict" {
		t.Fatalf("the replaced parked session got %q", got)
	}
	if el := again.ping("after"); el.Get("type") != "result" {
		t.Fatal(el)
	}
	// The client goes away while parked: the session ends.
	clients[1].conn.Close()
	waitFor(t, "the hung-up session unbound", func() bool { return !f.bound("alice@example.lan", "r1") })
}
