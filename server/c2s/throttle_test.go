package c2s

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestThrottle() (*Throttle, *clock, *[]time.Duration) {
	clk := &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	var slept []time.Duration
	th := NewThrottle()
	th.Now = clk.Now
	th.Sleep = func(d time.Duration) { slept = append(slept, d) }
	return th, clk, &slept
}

func TestThrottleDoublesUpToCap(t *testing.T) {
	th, _, slept := newTestThrottle()
	const ip = "192.0.2.1"
	var got []time.Duration
	for i := 0; i < 9; i++ {
		got = append(got, th.Delay(ip))
		th.Wait(ip)
		th.Fail(ip)
	}
	want := []time.Duration{0, 0, 0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delays %v, want %v", got, want)
	}
	if fmt.Sprint(*slept) != fmt.Sprint(want[3:]) {
		t.Fatalf("slept %v, want %v (no sleep for free attempts)", *slept, want[3:])
	}
	// Far past the cap the shift must not overflow into no delay at all.
	for i := 0; i < 100; i++ {
		th.Fail(ip)
	}
	if d := th.Delay(ip); d != 8*time.Second {
		t.Fatalf("after 109 failures: %v", d)
	}
	// Another address is not affected.
	if d := th.Delay("192.0.2.2"); d != 0 {
		t.Fatalf("other address delayed %v", d)
	}
}

func TestThrottleWindowExpires(t *testing.T) {
	th, clk, _ := newTestThrottle()
	const ip = "2001:db8::1"
	for i := 0; i < 5; i++ {
		th.Fail(ip)
	}
	if d := th.Delay(ip); d != 4*time.Second {
		t.Fatalf("delay %v", d)
	}
	clk.advance(th.Window - time.Second)
	if d := th.Delay(ip); d != 4*time.Second {
		t.Fatalf("still in the window: %v", d)
	}
	// The window counts from the last failure.
	th.Fail(ip)
	clk.advance(th.Window - time.Second)
	if d := th.Delay(ip); d != 8*time.Second {
		t.Fatalf("window restarted by a failure: %v", d)
	}
	clk.advance(2 * time.Second)
	if d := th.Delay(ip); d != 0 {
		t.Fatalf("after the window: %v", d)
	}
	// A failure after the window starts counting from one again.
	th.Fail(ip)
	th.Fail(ip)
	th.Fail(ip)
	if d := th.Delay(ip); d != time.Second {
		t.Fatalf("counting restarted: %v", d)
	}
}

func TestThrottleSuccessResets(t *testing.T) {
	th, _, slept := newTestThrottle()
	const ip = "198.51.100.7"
	for i := 0; i < 6; i++ {
		th.Fail(ip)
	}
	th.Success(ip)
	if d := th.Delay(ip); d != 0 {
		t.Fatalf("after success: %v", d)
	}
	th.Wait(ip)
	if len(*slept) != 0 {
		t.Fatalf("slept %v", *slept)
	}
}

func TestThrottleZeroValueAndConcurrency(t *testing.T) {
	th := &Throttle{FreeFailures: 1, Window: time.Minute, MaxDelay: time.Millisecond, Sleep: func(time.Duration) {}}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			ip := fmt.Sprintf("10.0.0.%d", g%3)
			for i := 0; i < 200; i++ {
				th.Wait(ip)
				th.Fail(ip)
				if i%50 == 0 {
					th.Success(ip)
				}
			}
		}(g)
	}
	wg.Wait()
}

func TestThrottleBounded(t *testing.T) {
	th := NewThrottle()
	for i := 0; i < MaxTracked+500; i++ {
		th.Fail(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
	}
	th.mu.Lock()
	n := len(th.seen)
	th.mu.Unlock()
	if n > MaxTracked {
		t.Fatalf("throttle remembers %d addresses, more than %d", n, MaxTracked)
	}
}
