// Package shell owns the appliance's SSH face: the SSH server
// (gliderlabs/ssh), logins and lockout, the interactive shell (chzyer/readline)
// with history and completion, exec and script modes, and SFTP over the files
// area (pkg/sftp). It knows nothing of XMPP: it feeds lines to the command
// tree and prints what comes back.
package shell

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/parley-xmpp/parley/commands"
	"github.com/parley-xmpp/parley/server/limit"
	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/store"
)

// Limits on SSH connections. The limits on logging in (MaxStartups, per
// source, penalties, grace time, failed logins) are rules in the store:
// see store.SSHLimits and guard.go.
const (
	IdleTimeout      = 30 * time.Minute // no traffic at all
	MaxAuthenticated = 64               // logged-in connections open at once
	MaxAuthTries     = 6                // per connection
	FailedAuthDelay  = 300 * time.Millisecond
)

// Config is what the SSH server needs.
type Config struct {
	Env     *commands.Env
	Tree    *commands.Tree
	HostKey gossh.Signer
	Log     *slog.Logger
	// MaxUpload bounds one SFTP upload, in bytes.
	MaxUpload int64
}

// Server is the appliance's SSH server.
type Server struct {
	cfg    Config
	ssh    *ssh.Server
	guard  *guard
	authed atomic.Int64
	epi    func(kind, format string, args ...any) // one log line per kind and episode

	mu       sync.Mutex
	sessions map[string]int
}

type ctxKey string

const (
	keyAuthMethod ctxKey = "parley-auth" // "password" or "publickey"
	keyConn       ctxKey = "parley-conn" // *connState
)

// New builds the server.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, sessions: map[string]int{}}
	s.epi = episodeLog(cfg.Log)
	s.guard = newGuard(cfg.Env.Store.SSHLimits(), time.Now, rand.IntN, s.epi)
	cfg.Env.Store.Watch(func(c store.Change) {
		switch op := c.Op.(type) {
		case store.ConfigSet:
			if strings.HasPrefix(op.Key, "rule.") {
				s.guard.setLimits(cfg.Env.Store.SSHLimits())
			}
		case store.ConfigDel:
			if strings.HasPrefix(op.Key, "rule.") {
				s.guard.setLimits(cfg.Env.Store.SSHLimits())
			}
		case store.Restored:
			s.guard.setLimits(cfg.Env.Store.SSHLimits())
		}
	})
	cfg.Env.Sessions = s.Sessions
	cfg.Env.Logins = loginLocks{s.guard}
	srv := &ssh.Server{
		Version:                    "Parley",
		HostSigners:                []ssh.Signer{cfg.HostKey},
		Handler:                    s.handleSession,
		PasswordHandler:            s.passwordAuth,
		PublicKeyHandler:           s.publicKeyAuth,
		KeyboardInteractiveHandler: s.keyboardAuth,
		IdleTimeout:                IdleTimeout,
		ConnCallback:               s.onConn,
		SubsystemHandlers:          map[string]ssh.SubsystemHandler{"sftp": s.handleSFTP},
		ServerConfigCallback: func(ctx ssh.Context) *gossh.ServerConfig {
			st, _ := ctx.Value(keyConn).(*connState)
			return &gossh.ServerConfig{
				MaxAuthTries: MaxAuthTries,
				PreAuthConnCallback: func(c gossh.ServerPreAuthConn) {
					if st != nil {
						st.setPreAuth(c)
					}
				},
				AuthLogCallback: func(meta gossh.ConnMetadata, method string, err error) {
					if st != nil {
						s.authLog(st, meta.User(), method, err)
					}
				},
			}
		},
	}
	s.ssh = srv
	return s
}

// Serve accepts SSH connections on l until Close.
func (s *Server) Serve(l net.Listener) error { return s.ssh.Serve(l) }

// Close stops the server and drops its connections.
func (s *Server) Close() error { return s.ssh.Close() }

// Shutdown stops accepting and waits for open connections until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.ssh.Shutdown(ctx) }

// Sessions returns how many sessions each admin user has open.
func (s *Server) Sessions() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.sessions))
	for k, v := range s.sessions {
		out[k] = v
	}
	return out
}

func (s *Server) track(user string, d int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions[user] += d
	if s.sessions[user] <= 0 {
		delete(s.sessions, user)
	}
}

// Connection phases.
const (
	phasePreAuth = iota // counted by the guard as unauthenticated
	phaseAuthed         // logged in, counted in Server.authed
	phaseDone
)

// connState is one connection's way through the login.
type connState struct {
	src  source
	conn net.Conn

	mu          sync.Mutex
	phase       int
	timer       *time.Timer
	preAuth     gossh.ServerPreAuthConn
	tried       bool // a method other than "none"
	pwFailed    bool // a password or keyboard-interactive attempt failed
	bannerSent  bool
	sessionSeen bool // the login was recorded
}

func (st *connState) setPreAuth(c gossh.ServerPreAuthConn) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.preAuth = c
}

// firstNotice reports whether nothing was shown yet to the person logging
// in on this connection, and marks that something now is: a notice (the
// lock of password logins) is shown once, not at every password prompt.
func (st *connState) firstNotice() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	first := !st.bannerSent
	st.bannerSent = true
	return first
}

// banner shows msg to the person logging in, once per connection.
func (st *connState) banner(msg string) {
	st.mu.Lock()
	c := st.preAuth
	send := c != nil && !st.bannerSent
	st.bannerSent = true
	st.mu.Unlock()
	if send {
		c.SendAuthBanner(msg + "\n")
	}
}

// leave moves the connection out of phasePreAuth, to to; it reports
// whether it was there.
func (st *connState) leave(to int) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.phase != phasePreAuth {
		return false
	}
	st.phase = to
	if st.timer != nil {
		st.timer.Stop()
	}
	return true
}

func (s *Server) onConn(ctx ssh.Context, conn net.Conn) net.Conn {
	src := sourceOf(conn.RemoteAddr())
	why, until := s.guard.admit(src)
	switch why {
	case refusedPenalty:
		s.epi("refused-penalty", "ssh: refused %s: penalized until %s", src, until.UTC().Format(time.RFC3339))
		return nil
	case refusedPerSource:
		s.epi("refused-per-source", "ssh: refused %s: %d unauthenticated connections from it already (user rule per_source_max_startups)", src, s.guard.limits().PerSourceMaxStartups)
		return nil
	case refusedStartups:
		s.epi("refused-startups", "ssh: refused %s: too many unauthenticated connections (user rule max_startups %s)", src, s.guard.limits().MaxStartups)
		return nil
	}
	st := &connState{src: src, conn: conn}
	ctx.SetValue(keyConn, st)
	grace := s.guard.limits().LoginGraceTime
	st.mu.Lock()
	st.timer = time.AfterFunc(grace, func() {
		if st.leave(phaseDone) {
			s.guard.done(src, outGrace)
			s.epi("grace", "ssh: closed %s: not logged in within %v (user rule login_grace_time)", conn.RemoteAddr(), grace)
			conn.Close()
		}
	})
	st.mu.Unlock()
	context.AfterFunc(ctx, func() { s.closed(st) })
	return conn
}

// authLog follows every authentication attempt: a success takes the
// connection out of the unauthenticated count.
func (s *Server) authLog(st *connState, user, method string, err error) {
	if method == "none" {
		return
	}
	st.mu.Lock()
	st.tried = true
	if err != nil && (method == "password" || method == "keyboard-interactive") {
		st.pwFailed = true
	}
	st.mu.Unlock()
	if err != nil || !st.leave(phaseAuthed) {
		return
	}
	s.guard.done(st.src, outAuthenticated)
	s.guard.loggedIn(user, st.src)
	if n := s.authed.Add(1); n > MaxAuthenticated {
		s.epi("max-authenticated", "ssh: closed %s after login: %d logged-in connections already open", st.conn.RemoteAddr(), MaxAuthenticated)
		st.conn.Close()
	}
}

// closed accounts for a connection that ended.
func (s *Server) closed(st *connState) {
	st.mu.Lock()
	phase, tried, pwFailed := st.phase, st.tried, st.pwFailed
	st.phase = phaseDone
	if st.timer != nil {
		st.timer.Stop()
	}
	st.mu.Unlock()
	switch phase {
	case phaseAuthed:
		s.authed.Add(-1)
	case phasePreAuth:
		how := outNoAuth
		switch {
		case pwFailed:
			how = outAuthFail
		case tried:
			how = outKeyFail
		}
		s.guard.done(st.src, how)
	}
}

func connOf(ctx ssh.Context) *connState {
	st, _ := ctx.Value(keyConn).(*connState)
	return st
}

// passwordChecks bounds how many argon2id checks (19 MiB each) run at once,
// so a flood of logins cannot exhaust memory.
var passwordChecks = make(chan struct{}, 4)

// checkPassword verifies a password for a login, unless password logins
// of this user from this source are locked or paused: then it says why
// (through say, or an authentication banner) and fails without checking.
func (s *Server) checkPassword(ctx ssh.Context, password string, say func(string)) bool {
	st := connOf(ctx)
	if st == nil {
		return false
	}
	if ok, why := s.guard.passwordAllowed(ctx.User(), st.src); !ok {
		s.epi("password-refused", "ssh: password login for %q from %s refused: locked or paused", ctx.User(), ctx.RemoteAddr())
		if say != nil {
			say(why)
		} else {
			st.banner(why)
		}
		time.Sleep(FailedAuthDelay)
		return false
	}
	ok := s.verifyPassword(ctx, st, password)
	if !ok {
		time.Sleep(FailedAuthDelay) // outside the slot: slow the guesser, not others
	}
	return ok
}

func (s *Server) verifyPassword(ctx ssh.Context, st *connState, password string) bool {
	passwordChecks <- struct{}{}
	defer func() { <-passwordChecks }()
	a, err := s.cfg.Env.Store.Admin(ctx.User())
	if err != nil {
		store.CheckPassword(dummyHash, password) // same cost as a real user
		s.epi("failed-unknown", "ssh: failed login for unknown user %q from %s", ctx.User(), ctx.RemoteAddr())
		return false
	}
	if !store.CheckPassword(a.PasswordHash, password) {
		if s.guard.passwordFailed(a.Name, st.src) {
			logging.Problem(s.cfg.Log, "ssh: password logins for %s from %s locked for %v after %d failed logins (user rule max_failed_logins)", a.Name, st.src, store.LockoutPeriod, s.guard.limits().MaxFailedLogins)
		}
		s.epi("failed-password", "ssh: failed password for %s from %s", a.Name, ctx.RemoteAddr())
		return false
	}
	ctx.SetValue(keyAuthMethod, "password")
	return true
}

var dummyHash, _ = store.HashPassword("parley-dummy-password")

func (s *Server) passwordAuth(ctx ssh.Context, password string) bool {
	return s.checkPassword(ctx, password, nil)
}

// keyboardAuth asks for the password; when password logins are locked or
// paused it says so instead, which the OpenSSH client shows to the person
// logging in.
func (s *Server) keyboardAuth(ctx ssh.Context, challenge gossh.KeyboardInteractiveChallenge) bool {
	st := connOf(ctx)
	say := func(why string) {
		if st != nil && st.firstNotice() {
			challenge("", why, nil, nil)
		}
	}
	if st != nil {
		if ok, _ := s.guard.passwordAllowed(ctx.User(), st.src); !ok {
			return s.checkPassword(ctx, "", say)
		}
	}
	answers, err := challenge("", "", []string{"Password: "}, []bool{false})
	if err != nil || len(answers) != 1 {
		return false
	}
	return s.checkPassword(ctx, answers[0], say)
}

// publicKeyAuth accepts the user's authorized keys. Failed passwords never
// lock a key out: the guard's locks and pauses only hold passwords.
func (s *Server) publicKeyAuth(ctx ssh.Context, key ssh.PublicKey) bool {
	a, err := s.cfg.Env.Store.Admin(ctx.User())
	if err != nil {
		return false
	}
	want := key.Marshal()
	for _, k := range a.Keys {
		pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(k.Line))
		if err != nil {
			continue
		}
		if subtle.ConstantTimeCompare(pub.Marshal(), want) == 1 {
			ctx.SetValue(keyAuthMethod, "publickey")
			return true
		}
	}
	return false
}

// begin records the login once per connection, and counts the session
// for LOGGED-IN until the returned end is called.
func (s *Server) begin(sess ssh.Session) (a store.Admin, end func(), ok bool) {
	ctx := sess.Context()
	if st := connOf(ctx); st != nil {
		st.mu.Lock()
		first := !st.sessionSeen
		st.sessionSeen = true
		st.mu.Unlock()
		if first {
			s.cfg.Env.Store.RecordLogin(sess.User(), time.Now())
			logging.Major(s.cfg.Log, "ssh: %s logged in from %s (%v)", sess.User(), sess.RemoteAddr(), ctx.Value(keyAuthMethod))
		}
	}
	a, err := s.cfg.Env.Store.Admin(sess.User())
	if err != nil {
		fmt.Fprintf(sess.Stderr(), "user %s no longer exists\n", sess.User())
		sess.Exit(1)
		return a, nil, false
	}
	s.track(a.Name, 1)
	return a, func() { s.track(a.Name, -1) }, true
}

func remoteHost(sess ssh.Session) string {
	host, _, err := net.SplitHostPort(sess.RemoteAddr().String())
	if err != nil {
		return sess.RemoteAddr().String()
	}
	return host
}

func (s *Server) handleSession(sess ssh.Session) {
	a, end, ok := s.begin(sess)
	if !ok {
		return
	}
	defer end()

	pty, winCh, isPty := sess.Pty()
	passwordLogin := sess.Context().Value(keyAuthMethod) == "password"
	mustChange := passwordLogin && a.MustChangePassword(time.Now(), s.cfg.Env.Store.ConfigInt(store.RulePasswordAge))

	switch {
	case sess.RawCommand() != "":
		if mustChange {
			fmt.Fprintf(sess.Stderr(), "your password has expired: log in interactively (ssh -t) to set a new one\n")
			sess.Exit(1)
			return
		}
		code := s.runExec(sess, a, isPty)
		sess.Exit(code)
	case isPty:
		code := s.runInteractive(sess, a, pty, winCh, mustChange)
		sess.Exit(code)
	default:
		if mustChange {
			fmt.Fprintf(sess.Stderr(), "your password has expired: log in interactively (ssh -t) to set a new one\n")
			sess.Exit(1)
			return
		}
		sess.Exit(s.runScript(sess, a))
	}
}

// newCtx returns a command context for one caller.
func (s *Server) newCtx(sess ssh.Session, a store.Admin, out interface{ Write([]byte) (int, error) }, p commands.Prompter) *commands.Ctx {
	return &commands.Ctx{
		Env:    s.cfg.Env,
		User:   a.Name,
		Role:   a.Role,
		From:   remoteHost(sess),
		Out:    out,
		Prompt: p,
		Done:   sess.Context().Done(),
	}
}

// refresh re-reads the caller before each command, so a deleted user or a
// changed role takes effect at once.
func (s *Server) refresh(c *commands.Ctx) error {
	a, err := s.cfg.Env.Store.Admin(c.User)
	if err != nil {
		return fmt.Errorf("user %s no longer exists", c.User)
	}
	c.Role = a.Role
	return nil
}

func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " ")
}

// episodeLog logs refusals and failures once per kind and episode (then
// how many more), with the engine's episode logger; nil logs nothing.
func episodeLog(l *slog.Logger) func(kind, format string, args ...any) {
	if l == nil {
		return func(string, string, ...any) {}
	}
	e := limit.NewEpisodes(l)
	return func(kind, format string, args ...any) { e.Printf("ssh: "+kind, format, args...) }
}
