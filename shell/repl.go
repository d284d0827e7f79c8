package shell

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/chzyer/readline"
	"github.com/gliderlabs/ssh"

	"github.com/parley-xmpp/parley/commands"
	"github.com/parley-xmpp/parley/store"
)

// terminal adapts an SSH session with a pty to readline: its own width and
// no raw-mode calls on the server process's own terminal.
type terminal struct {
	mu       sync.Mutex
	width    int
	onResize func()
}

func (t *terminal) getWidth() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.width <= 0 {
		return 80
	}
	return t.width
}

func (t *terminal) setWidth(w int) {
	t.mu.Lock()
	t.width = w
	f := t.onResize
	t.mu.Unlock()
	if f != nil {
		f()
	}
}

// completer offers command words, argument values and file names.
type completer struct {
	tree  *commands.Tree
	env   *commands.Env
	role  func() string
	files func() []string
}

func (c *completer) Do(line []rune, pos int) ([][]rune, int) {
	text := string(line[:pos])
	partial := ""
	if i := strings.LastIndexAny(text, " \t"); i >= 0 {
		partial = text[i+1:]
	} else {
		partial = text
	}
	var out [][]rune
	for _, cand := range c.tree.Complete(text, c.role(), c.files) {
		out = append(out, []rune(cand[len(partial):]+" "))
	}
	return out, len([]rune(partial))
}

type noEcho struct{}

// Paint shows nothing of a secret, only the line end once Enter is pressed.
func (noEcho) Paint(line []rune, pos int) []rune {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		return []rune{'\n'}
	}
	return nil
}

type noComplete struct{}

func (noComplete) Do([]rune, int) ([][]rune, int) { return nil, 0 }

// rlPrompter reads secrets through readline without echo, and answers
// with echo.
type rlPrompter struct {
	rl  *readline.Instance
	cfg *readline.Config
}

func (p *rlPrompter) Secret(prompt string) (string, error) {
	cfg := p.cfg.Clone()
	cfg.Prompt = prompt
	cfg.Painter = noEcho{}
	cfg.AutoComplete = noComplete{}
	cfg.HistoryLimit = -1
	cfg.InterruptPrompt = "^C"
	cfg.EOFPrompt = ""
	b, err := p.rl.ReadPasswordWithConfig(cfg)
	if errors.Is(err, readline.ErrInterrupt) {
		return "", errors.New("cancelled")
	}
	return string(b), err
}

// Ask reads a line with echo (the default painter), without completion or
// history.
func (p *rlPrompter) Ask(prompt string) (string, error) {
	cfg := p.cfg.Clone()
	cfg.Prompt = prompt
	cfg.AutoComplete = noComplete{}
	cfg.HistoryLimit = -1
	cfg.InterruptPrompt = "^C"
	cfg.EOFPrompt = ""
	b, err := p.rl.ReadPasswordWithConfig(cfg)
	if errors.Is(err, readline.ErrInterrupt) {
		return "", errors.New("cancelled")
	}
	return string(b), err
}

func (p *rlPrompter) Interactive() bool { return true }

func (s *Server) runInteractive(sess ssh.Session, a store.Admin, pty ssh.Pty, winCh <-chan ssh.Window, mustChange bool) int {
	term := &terminal{width: pty.Window.Width}
	go func() {
		for w := range winCh {
			term.setWidth(w.Width)
		}
	}()
	out := crlf{sess}
	var role struct {
		sync.Mutex
		v string
	}
	role.v = a.Role
	cfg := &readline.Config{
		Prompt:              commands.Hostname(s.cfg.Env.Store) + "> ",
		Stdin:               io.NopCloser(sess),
		Stdout:              out,
		Stderr:              out,
		HistoryLimit:        store.HistoryLimit,
		InterruptPrompt:     "^C",
		EOFPrompt:           "exit",
		FuncIsTerminal:      func() bool { return true },
		FuncMakeRaw:         func() error { return nil },
		FuncExitRaw:         func() error { return nil },
		FuncGetWidth:        term.getWidth,
		FuncOnWidthChanged:  func(f func()) { term.mu.Lock(); term.onResize = f; term.mu.Unlock() },
		ForceUseInteractive: true,
		AutoComplete: &completer{
			tree: s.cfg.Tree,
			env:  s.cfg.Env,
			role: func() string { role.Lock(); defer role.Unlock(); return role.v },
			files: func() []string {
				entries, _ := s.cfg.Env.Files.List()
				names := make([]string, len(entries))
				for i, e := range entries {
					names[i] = e.Name
				}
				return names
			},
		},
	}
	rl, err := readline.NewEx(cfg)
	if err != nil {
		fmt.Fprintf(out, "cannot start the shell: %v\n", err)
		return 1
	}
	defer rl.Close()
	if hist, err := s.cfg.Env.Store.History(a.Name); err == nil {
		for _, h := range hist {
			rl.SaveHistory(h)
		}
	}
	p := &rlPrompter{rl: rl, cfg: cfg}
	c := s.newCtx(sess, a, out, p)

	if mustChange && !s.forcePasswordChange(c, out) {
		return 1
	}
	fmt.Fprintf(out, "Parley %s. Type 'help' for commands, Tab to complete, Ctrl-D or 'exit' to leave.\n", s.cfg.Env.Version)
	for {
		rl.SetPrompt(commands.Hostname(s.cfg.Env.Store) + "> ")
		line, err := rl.Readline()
		if errors.Is(err, readline.ErrInterrupt) {
			continue // Ctrl-C clears the line
		}
		if err != nil { // Ctrl-D, or the connection went away
			return 0
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		s.cfg.Env.Store.AddHistory(a.Name, line)
		if err := s.refresh(c); err != nil {
			fmt.Fprintln(out, err)
			return 1
		}
		role.Lock()
		role.v = c.Role
		role.Unlock()
		err = s.cfg.Tree.Run(c, line)
		if errors.Is(err, commands.ErrExit) {
			return 0
		}
		if err != nil {
			fmt.Fprintln(out, oneLine(err))
		}
	}
}

// forcePasswordChange makes the user set a new password before anything
// else; it gives three tries.
func (s *Server) forcePasswordChange(c *commands.Ctx, out io.Writer) bool {
	fmt.Fprintf(out, "Your password has expired: choose a new one.\n")
	for try := 0; try < 3; try++ {
		hash, err := commands.NewPassword(c, c.User, "New password: ")
		if err != nil {
			fmt.Fprintln(out, oneLine(err))
			continue
		}
		if _, err := s.cfg.Env.Store.Propose(store.AdminPassword{Name: c.User, Hash: hash}); err != nil {
			fmt.Fprintln(out, oneLine(err))
			return false
		}
		s.cfg.Env.Store.AddAudit(store.AuditEntry{User: c.User, From: c.From, Action: "passwd (expired password)", Result: "ok"})
		fmt.Fprintf(out, "Password changed.\n")
		return true
	}
	return false
}
