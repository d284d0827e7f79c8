package commands

import (
	"sort"
	"strings"
	"unicode/utf8"
)

// MaxLineLength bounds one command line.
const MaxLineLength = 4096

// Tokenize splits a command line into words. Words are separated by spaces
// or tabs; double or single quotes may appear anywhere in a word and group
// spaces into it (O:"Example Inc." is the word O:Example Inc.); a backslash
// outside single quotes escapes the next character. A line starting with #
// is a comment.
func Tokenize(line string) ([]string, error) {
	if len(line) > MaxLineLength {
		return nil, errorf("command line is longer than %d characters", MaxLineLength)
	}
	if !utf8.ValidString(line) {
		return nil, errorf("command line is not valid UTF-8")
	}
	if strings.HasPrefix(strings.TrimSpace(line), "#") {
		return nil, nil
	}
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
		quote rune
		esc   bool
	)
	for _, r := range line {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case quote != 0:
			if r == quote {
				quote = 0
			} else if r == '\\' && quote == '"' {
				esc = true
			} else {
				cur.WriteRune(r)
			}
		case r == '\\':
			esc, in = true, true
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case r < 0x20 || r == 0x7f:
			return nil, errorf("command line has a control character (0x%02x)", r)
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, errorf("unterminated %c quote in the command line", quote)
	}
	if esc {
		return nil, errorf("the command line ends with a backslash")
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// Quote returns s as one word the tokenizer reads back as s.
func Quote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'\\#") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// Complete returns the completions for the last, partial word of line (the
// text before the cursor): command words, enumerated values, or names from
// files for arguments that take a file. Each result is the whole word.
func (t *Tree) Complete(line string, role string, files func() []string) []string {
	// Split leniently: completion must not fail on a half-typed quote.
	words := strings.Fields(line)
	partial := ""
	if len(words) > 0 && !strings.HasSuffix(line, " ") && !strings.HasSuffix(line, "\t") {
		partial = words[len(words)-1]
		words = words[:len(words)-1]
	}
	seen := map[string]bool{}
	var out []string
	addIf := func(w string) {
		if strings.HasPrefix(w, partial) && !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	// Next command word of any command extending words.
	for _, cmd := range t.cmds {
		if len(cmd.Words) > len(words) && equalWords(cmd.Words[:len(words)], words) && (cmd.Perm.Allows(role) || cmd.QueryWithoutArgs) {
			addIf(cmd.Words[len(words)])
		}
	}
	// Arguments of the command the words name.
	if cmd, args, _ := t.Lookup(words); cmd != nil && len(cmd.Words) <= len(words) {
		if len(cmd.Args) > 0 {
			a := cmd.Args[min0(len(args), len(cmd.Args)-1)]
			if len(args) < len(cmd.Args) || a.Repeat {
				switch a.Kind {
				case ArgEnum:
					for _, v := range a.Values {
						addIf(v)
					}
				case ArgFile:
					if files != nil {
						for _, f := range files() {
							addIf(f)
						}
					}
				}
			}
		}
	}
	sort.Strings(out)
	return out
}
