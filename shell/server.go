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
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/parley-xmpp/parley/commands"
	"github.com/parley-xmpp/parley/store"
)

// Limits on SSH connections.
const (
	LoginGraceTime  = 30 * time.Second // to authenticate and open a session
	IdleTimeout     = 30 * time.Minute // no traffic at all
	MaxConnections  = 64               // open at once
	MaxAuthTries    = 6                // per connection
	FailedAuthDelay = 300 * time.Millisecond
)

// Config is what the SSH server needs.
type Config struct {
	Env     *commands.Env
	Tree    *commands.Tree
	HostKey gossh.Signer
	Log     *log.Logger
	// MaxUpload bounds one SFTP upload, in bytes.
	MaxUpload int64
}

// Server is the appliance's SSH server.
type Server struct {
	cfg   Config
	ssh   *ssh.Server
	conns atomic.Int64

	mu       sync.Mutex
	sessions map[string]int
}

type ctxKey string

const (
	keyAuthMethod ctxKey = "parley-auth"    // "password" or "publickey"
	keyStarted    ctxKey = "parley-started" // *atomic.Bool: a session began
)

// New builds the server.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, sessions: map[string]int{}}
	cfg.Env.Sessions = s.Sessions
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
			return &gossh.ServerConfig{MaxAuthTries: MaxAuthTries}
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

func (s *Server) onConn(ctx ssh.Context, conn net.Conn) net.Conn {
	if s.conns.Add(1) > MaxConnections {
		s.conns.Add(-1)
		s.cfg.Log.Printf("ssh: refused %s: %d connections already open", conn.RemoteAddr(), MaxConnections)
		return nil
	}
	started := new(atomic.Bool)
	ctx.SetValue(keyStarted, started)
	timer := time.AfterFunc(LoginGraceTime, func() {
		if !started.Load() {
			conn.Close()
		}
	})
	go func() {
		<-ctx.Done()
		timer.Stop()
		s.conns.Add(-1)
	}()
	return conn
}

// account returns the admin user if they may log in now.
func (s *Server) account(ctx ssh.Context) (store.Admin, bool) {
	a, err := s.cfg.Env.Store.Admin(ctx.User())
	if err != nil {
		return a, false
	}
	if a.Locked(time.Now()) {
		s.cfg.Log.Printf("ssh: login refused for %s from %s: locked until %s", a.Name, ctx.RemoteAddr(), a.LockedUntil.UTC().Format(time.RFC3339))
		return a, false
	}
	return a, true
}

// passwordChecks bounds how many argon2id checks (19 MiB each) run at once,
// so a flood of logins cannot exhaust memory.
var passwordChecks = make(chan struct{}, 4)

// checkPassword verifies a password for a login and records a failure.
func (s *Server) checkPassword(ctx ssh.Context, password string) bool {
	ok := s.verifyPassword(ctx, password)
	if !ok {
		time.Sleep(FailedAuthDelay) // outside the slot: slow the guesser, not others
	}
	return ok
}

func (s *Server) verifyPassword(ctx ssh.Context, password string) bool {
	passwordChecks <- struct{}{}
	defer func() { <-passwordChecks }()
	a, err := s.cfg.Env.Store.Admin(ctx.User())
	if err != nil {
		store.CheckPassword(dummyHash, password) // same cost as a real user
		s.cfg.Log.Printf("ssh: failed login for unknown user %q from %s", ctx.User(), ctx.RemoteAddr())
		return false
	}
	if a.Locked(time.Now()) {
		s.cfg.Log.Printf("ssh: login refused for %s from %s: locked", a.Name, ctx.RemoteAddr())
		return false
	}
	if !store.CheckPassword(a.PasswordHash, password) {
		s.cfg.Env.Store.Apply(store.Op{Kind: store.OpAdminLoginFail, Name: a.Name})
		s.cfg.Log.Printf("ssh: failed password for %s from %s", a.Name, ctx.RemoteAddr())
		return false
	}
	ctx.SetValue(keyAuthMethod, "password")
	return true
}

var dummyHash, _ = store.HashPassword("parley-dummy-password")

func (s *Server) passwordAuth(ctx ssh.Context, password string) bool {
	return s.checkPassword(ctx, password)
}

// keyboardAuth asks for the password; for a locked account it says so
// instead, which the OpenSSH client shows to the person logging in.
func (s *Server) keyboardAuth(ctx ssh.Context, challenge gossh.KeyboardInteractiveChallenge) bool {
	if a, err := s.cfg.Env.Store.Admin(ctx.User()); err == nil && a.Locked(time.Now()) {
		challenge("", fmt.Sprintf("Account %s is locked after too many failed logins until %s; an admin can run 'user unlock %s'.",
			a.Name, a.LockedUntil.UTC().Format("15:04:05 MST"), a.Name), nil, nil)
		time.Sleep(FailedAuthDelay)
		return false
	}
	answers, err := challenge("", "", []string{"Password: "}, []bool{false})
	if err != nil || len(answers) != 1 {
		return false
	}
	return s.checkPassword(ctx, answers[0])
}

func (s *Server) publicKeyAuth(ctx ssh.Context, key ssh.PublicKey) bool {
	a, ok := s.account(ctx)
	if !ok {
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

// begin marks the connection as logged in, records the login once, and
// counts the session for LOGGED-IN until the returned end is called.
func (s *Server) begin(sess ssh.Session) (a store.Admin, end func(), ok bool) {
	ctx := sess.Context()
	if st, ok := ctx.Value(keyStarted).(*atomic.Bool); ok && !st.Swap(true) {
		s.cfg.Env.Store.Apply(store.Op{Kind: store.OpAdminLoginOK, Name: sess.User()})
		s.cfg.Log.Printf("ssh: %s logged in from %s (%v)", sess.User(), sess.RemoteAddr(), ctx.Value(keyAuthMethod))
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
