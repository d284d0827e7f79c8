package e2e

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Issue 9 item 5: no one can lock the admin out of SSH. These tests hold
// and guess from other loopback source addresses (every 127.x.y.z works;
// the appliance listens on 127.0.0.1) and log in with the real OpenSSH
// client.

// from makes l connect from a loopback source address (ssh -b).
func from(addr string, l login) login {
	l.opts = append([]string{"-b", addr}, l.opts...)
	return l
}

// holdFrom opens n TCP connections to the appliance's SSH port from the
// loopback address src; each sends an SSH version line when banner is set,
// then nothing. They are closed when the test ends.
func (a *appliance) holdFrom(t *testing.T, src string, n int, banner bool) []net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := 0; i < n; i++ {
		c, err := d.Dial("tcp", "127.0.0.1:"+a.port)
		if err != nil {
			t.Fatalf("holder %d from %s: %v", i, src, err)
		}
		conns = append(conns, c)
		if banner {
			c.Write([]byte("SSH-2.0-Holder_1.0\r\n"))
		}
	}
	return conns
}

// closedBy reports, for each connection, whether the appliance closed it
// within wait (read until EOF, or the deadline).
func closedBy(conns []net.Conn, wait time.Duration) []bool {
	closed := make([]bool, len(conns))
	var wg sync.WaitGroup
	deadline := time.Now().Add(wait)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(deadline)
			_, err := io.Copy(io.Discard, c)
			// EOF, or a reset when it closed with our bytes unread.
			closed[i] = !errors.Is(err, os.ErrDeadlineExceeded)
		}()
	}
	wg.Wait()
	return closed
}

func count(bs []bool, v bool) int {
	n := 0
	for _, b := range bs {
		if b == v {
			n++
		}
	}
	return n
}

// 75 idle unauthenticated connections from 127.0.0.2 (a global cap of 64
// kept everyone out): the appliance keeps 5 of them (per_source_max_startups),
// closes the rest at once, and the admin logs in from 127.0.0.1 with the
// OpenSSH client, by password and by key.
func TestSSHIdleHoldersDoNotLockAdminOut(t *testing.T) {
	t.Parallel()
	a := start(t, options{adminKey: true})
	holders := a.holdFrom(t, "127.0.0.2", 75, true)
	for i := 0; i < 3; i++ {
		mustOK(t, a.ssh(from("127.0.0.1", a.asAdmin()), "", "hostname"), "admin's password login during the hold")
	}
	mustOK(t, a.ssh(keyLogin("admin", a.key), "", "hostname"), "admin's key login during the hold")
	closed := closedBy(holders, 2*time.Second)
	if n := count(closed, false); n != 5 {
		t.Errorf("the appliance holds %d unauthenticated connections from 127.0.0.2, want 5 (per_source_max_startups)", n)
	}
	if rules := a.mustAdmin(t, "user rule"); !strings.Contains(rules, "max_startups             10:30:100") || !strings.Contains(rules, "per_source_max_startups  5") {
		t.Errorf("user rule does not show the startup limits:\n%s", rules)
	}
	// The limit is live: with per_source_max_startups 0, the same address
	// may hold up to max_startups' start.
	mustOK(t, a.admin("user rule per_source_max_startups 0"), "user rule per_source_max_startups 0")
	for _, c := range holders {
		c.Close()
	}
	time.Sleep(500 * time.Millisecond) // the appliance sees them end
	more := a.holdFrom(t, "127.0.0.6", 8, true)
	if n := count(closedBy(more, time.Second), false); n != 8 {
		t.Errorf("with per_source_max_startups 0, %d of 8 connections from one address are held, want 8", n)
	}
}

// max_failed_logins 5, then six wrong passwords from 127.0.0.3 (one a
// connection, with OpenSSH): before, the admin was locked out from every
// address for 15 minutes, keys included. Now the password still works from
// 127.0.0.1, the key works from 127.0.0.3 itself, and only passwords from
// 127.0.0.3 are held, which ssh explains.
func TestSSHPasswordGuessingDoesNotLockAdminOut(t *testing.T) {
	t.Parallel()
	a := start(t, options{adminKey: true})
	mustOK(t, a.admin("user rule max_failed_logins 5"), "user rule max_failed_logins 5")
	guess := func(password string) login {
		l := from("127.0.0.3", pw("admin", password))
		l.opts = append(l.opts, "-o", "PreferredAuthentications=password", "-o", "NumberOfPasswordPrompts=1")
		return l
	}
	for i := 1; i <= 6; i++ {
		loginRefused(t, a.ssh(guess("Wrong-guess-"+string(rune('0'+i))), "", "hostname"), "a wrong password from 127.0.0.3")
	}
	// The real admin, elsewhere, with the password.
	info := a.mustAdmin(t, "user info admin")
	if !strings.Contains(info, "Locked           : password logins from 127.0.0.3 until ") {
		t.Errorf("user info admin does not show the hold on 127.0.0.3:\n%s", info)
	}
	mustOK(t, a.ssh(from("127.0.0.1", a.asAdmin()), "", "hostname"), "admin's password from 127.0.0.1")
	// The real admin at the guesser's address, with a key.
	mustOK(t, a.ssh(from("127.0.0.3", keyLogin("admin", a.key)), "", "hostname"), "admin's key from 127.0.0.3")
	// The right password from there is held, and ssh says why and what works.
	kbd := from("127.0.0.3", a.asAdmin())
	kbd.opts = append(kbd.opts, "-o", "LogLevel=INFO", "-o", "PreferredAuthentications=keyboard-interactive", "-o", "NumberOfPasswordPrompts=1")
	r := a.ssh(kbd, "", "hostname")
	loginRefused(t, r, "admin's password from 127.0.0.3 while held")
	if !strings.Contains(r.stderr, "from 127.0.0.3") || !strings.Contains(r.stderr, "public-key logins still work") || !strings.Contains(r.stderr, "user unlock admin") {
		t.Errorf("ssh does not explain the hold:\n%s", r.stderr)
	}
	// By the password method, ssh shows the reason as a banner.
	pwm := guess(adminPassword)
	pwm.opts = append(pwm.opts, "-o", "LogLevel=INFO")
	r = a.ssh(pwm, "", "hostname")
	loginRefused(t, r, "admin's password (password method) from 127.0.0.3 while held")
	if !strings.Contains(r.stderr, "public-key logins still work") {
		t.Errorf("ssh does not show why the password is refused:\n%s", r.stderr)
	}
	// user unlock ends the lock and the source's password pause.
	if out := a.mustAdmin(t, "user unlock admin"); !strings.Contains(out, "127.0.0.3") {
		t.Errorf("user unlock admin does not name the address it unlocked: %q", out)
	}
	mustOK(t, a.ssh(from("127.0.0.3", a.asAdmin()), "", "hostname"), "admin's password from 127.0.0.3 after user unlock")
}

// A connection that never logs in is closed at the login grace time, and
// its address is then penalized (grace-exceeded: 20 s, above min 15 s):
// its new connections are refused while other addresses get in.
func TestSSHLoginGraceTime(t *testing.T) {
	t.Parallel()
	a := start(t, options{})
	mustOK(t, a.admin("user rule login_grace_time 2"), "user rule login_grace_time 2")
	if rules := a.mustAdmin(t, "user rule"); !strings.Contains(rules, "login_grace_time         2 seconds") {
		t.Fatalf("user rule does not show the grace time:\n%s", rules)
	}
	begin := time.Now()
	idle := a.holdFrom(t, "127.0.0.4", 1, true)
	if closed := closedBy(idle, 10*time.Second); !closed[0] {
		t.Fatal("an unauthenticated connection is still open after 10 s with login_grace_time 2")
	}
	if el := time.Since(begin); el < 1500*time.Millisecond || el > 5*time.Second {
		t.Fatalf("the unauthenticated connection was closed after %v, want about 2 s", el)
	}
	// Penalized: refused at once, without the SSH version line.
	again := a.holdFrom(t, "127.0.0.4", 1, false)
	again[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := again[0].Read(make([]byte, 64)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a new connection from the penalized address: read %d bytes, %v; want it closed at once", n, err)
	}
	mustOK(t, a.admin("hostname"), "admin from 127.0.0.1 while 127.0.0.4 is penalized")
}
