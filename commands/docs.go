package commands

import (
	"fmt"
	"strings"
)

// Markdown renders the command reference (docs/commands.md) from the tree,
// so the reference cannot drift from the commands.
func (t *Tree) Markdown() string {
	var b strings.Builder
	b.WriteString("# Parley command reference\n\n")
	b.WriteString("Generated from the command tree by `make docs`; do not edit by hand.\n\n")
	b.WriteString("Every command runs the same way in the interactive shell (`ssh -p 2222 admin@host`), in exec mode\n")
	b.WriteString("(`ssh -p 2222 admin@host 'COMMAND'`) and in script mode (commands on standard input, one a line).\n")
	b.WriteString("A command that asks for a password reads it without echo at a terminal, or from the next line of\n")
	b.WriteString("standard input in exec and script mode. Exit status is 0 on success and 1 on the first failure.\n\n")
	b.WriteString("| command | role | summary |\n|---|---|---|\n")
	for _, cmd := range t.cmds {
		fmt.Fprintf(&b, "| [`%s`](#%s) | %s | %s |\n", cell(cmd.Usage()), anchor(cmd), cmd.Perm, cell(prose(cmd.Summary)))
	}
	for _, cmd := range t.cmds {
		fmt.Fprintf(&b, "\n## %s\n\n```\n%s\n```\n\n%s.\n", cmd.Name(), cmd.Usage(), prose(strings.TrimSuffix(cmd.Summary, ".")))
		if cmd.Help != "" {
			fmt.Fprintf(&b, "\n%s\n", helpMarkdown(cmd.Help))
		}
		fmt.Fprintf(&b, "\nRole: %s.", cmd.Perm)
		if cmd.QueryWithoutArgs {
			b.WriteString(" Without arguments it only shows, and every role may run it.")
		}
		b.WriteString("\n")
		if cmd.Example != "" {
			fmt.Fprintf(&b, "\nExample:\n\n```\n%s\n```\n", cmd.Example)
		}
	}
	return b.String()
}

func anchor(cmd *Command) string { return strings.Join(cmd.Words, "-") }

// prose escapes what Markdown would take for HTML: "<name>" is text here.
func prose(s string) string { return strings.ReplaceAll(s, "<", `\<`) }

// cell escapes the pipes of a table cell (also inside code spans).
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// helpMarkdown renders a command's help: lines indented by two spaces
// (a sample of output) become a code block, the rest is prose.
func helpMarkdown(help string) string {
	var out []string
	inCode := false
	for _, line := range strings.Split(help, "\n") {
		code := strings.HasPrefix(line, "  ")
		switch {
		case code && !inCode:
			out = append(out, "", "```")
		case !code && inCode:
			out = append(out, "```", "")
		}
		inCode = code
		if code {
			out = append(out, strings.TrimPrefix(line, "  "))
		} else {
			out = append(out, prose(line))
		}
	}
	if inCode {
		out = append(out, "```")
	}
	return strings.Join(out, "\n")
}
