package shell

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/gliderlabs/ssh"

	"github.com/parley-xmpp/parley/commands"
	"github.com/parley-xmpp/parley/store"
)

// maxInputLine bounds one line read from standard input in exec and script
// mode (a command, or a secret).
const maxInputLine = commands.MaxLineLength

// lineReader reads bounded lines from a stream.
type lineReader struct {
	r *bufio.Reader
	// afterCR: the previous line ended with \r, so a \n that comes next
	// belongs to it. Remembered rather than peeked at: at a terminal Enter
	// sends \r alone, and peeking would wait for the next keystroke.
	afterCR bool
}

func newLineReader(r io.Reader) *lineReader { return &lineReader{r: bufio.NewReaderSize(r, 4096)} }

// next returns the next line without its end (\n, \r\n, or \r at a
// terminal); io.EOF when there is none.
func (l *lineReader) next() (string, error) {
	var b strings.Builder
	for {
		c, err := l.r.ReadByte()
		if err != nil {
			if err == io.EOF && b.Len() > 0 {
				return b.String(), nil
			}
			return "", err
		}
		if l.afterCR {
			l.afterCR = false
			if c == '\n' {
				continue
			}
		}
		switch c {
		case '\n':
			return b.String(), nil
		case '\r':
			l.afterCR = true
			return b.String(), nil
		case 0x7f, 0x08: // backspace at a terminal
			s := []rune(b.String())
			if len(s) > 0 {
				b.Reset()
				b.WriteString(string(s[:len(s)-1]))
			}
			continue
		case 0x03: // Ctrl-C at a terminal
			return "", errors.New("interrupted")
		}
		if b.Len() >= maxInputLine {
			return "", fmt.Errorf("input line is longer than %d bytes", maxInputLine)
		}
		b.WriteByte(c)
	}
}

// linePrompter reads secrets and answers from the next line of standard
// input. At a terminal (exec mode with ssh -t) it shows the prompt; secrets
// are not echoed.
type linePrompter struct {
	lines    *lineReader
	terminal bool
	out      io.Writer
}

func (p *linePrompter) Secret(prompt string) (string, error) {
	if p.terminal {
		fmt.Fprint(p.out, prompt)
		defer fmt.Fprint(p.out, "\r\n")
	}
	line, err := p.lines.next()
	if err == io.EOF {
		return "", errors.New("standard input ended before the expected line")
	}
	return line, err
}

// Ask reads the next line of standard input. At a terminal it shows the
// prompt and, since the client's terminal does not echo in exec mode,
// the answer once Enter is pressed.
func (p *linePrompter) Ask(prompt string) (string, error) {
	if p.terminal {
		fmt.Fprint(p.out, prompt)
	}
	line, err := p.lines.next()
	if p.terminal {
		fmt.Fprint(p.out, line+"\r\n")
	}
	if err == io.EOF {
		return "", errors.New("standard input ended before the expected line")
	}
	return line, err
}

func (p *linePrompter) Interactive() bool { return p.terminal }

// runExec runs the one command given on the ssh command line.
func (s *Server) runExec(sess ssh.Session, a store.Admin, terminal bool) int {
	var out io.Writer = sess
	var errOut io.Writer = sess.Stderr()
	if terminal {
		out = crlf{sess}
		errOut = out
	}
	p := &linePrompter{lines: newLineReader(sess), terminal: terminal, out: out}
	c := s.newCtx(sess, a, out, p)
	err := s.cfg.Tree.Run(c, sess.RawCommand())
	if err != nil && !errors.Is(err, commands.ErrExit) {
		fmt.Fprintln(errOut, oneLine(err))
		return 1
	}
	return 0
}

// runScript runs commands from standard input, one a line, stopping at the
// first failure. A command that needs a secret takes the next line.
func (s *Server) runScript(sess ssh.Session, a store.Admin) int {
	lines := newLineReader(sess)
	p := &linePrompter{lines: lines}
	c := s.newCtx(sess, a, sess, p)
	for n := 1; ; n++ {
		line, err := lines.next()
		if err == io.EOF {
			return 0
		}
		if err != nil {
			fmt.Fprintf(sess.Stderr(), "line %d: %v\n", n, err)
			return 1
		}
		if err := s.refresh(c); err != nil {
			fmt.Fprintln(sess.Stderr(), err)
			return 1
		}
		err = s.cfg.Tree.Run(c, line)
		if errors.Is(err, commands.ErrExit) {
			return 0
		}
		if err != nil {
			fmt.Fprintf(sess.Stderr(), "line %d: %s\n", n, oneLine(err))
			return 1
		}
	}
}

// crlf turns "\n" into "\r\n" for a terminal in raw mode on the client side.
type crlf struct{ w io.Writer }

func (c crlf) Write(p []byte) (int, error) {
	var b []byte
	prev := byte(0)
	for _, x := range p {
		if x == '\n' && prev != '\r' {
			b = append(b, '\r')
		}
		b = append(b, x)
		prev = x
	}
	if _, err := c.w.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}
