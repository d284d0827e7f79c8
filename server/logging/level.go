// Package logging owns Parley's log: levels named as CommuniGate Pro names
// them (none, major, problems, low-level, all) on top of log/slog, records
// tagged with the XMPP connection they belong to (XMPPI client, XMPPS
// incoming server, XMPPO outgoing server, XMPPC component, with the
// connection's id and peer address), and where records go: standard error,
// a rotating file in the data directory, the last lines kept in memory for
// the shell's `syslog` and `syslog follow`, and remote syslog collectors
// (RFC 5424 over UDP, TCP or TLS). The Hub is the one slog.Handler the
// whole process logs through; its level and its remote collectors change
// live.
//
// It lives under server/ because the top level of the repository is fixed;
// it knows nothing of the engine: the shell logs through a plain
// *slog.Logger and commands reach the Hub through a small interface.
package logging

import (
	"fmt"
	"log/slog"
	"strings"
)

// Levels, from the least to the most verbose setting. A record is written
// when its level is at or above the Hub's. Every slog level maps onto one
// of them: Error and above is major, Warn problems, Info and Debug
// low-level, below Debug all.
const (
	// LevelAll: every stanza read from a connection.
	LevelAll slog.Level = slog.LevelDebug - 4
	// LevelLow (low-level): protocol steps (a stream negotiated, a
	// session bound or closed, a link idle).
	LevelLow slog.Level = slog.LevelDebug
	// LevelProblems: non-fatal errors (a failed login, a peer that cannot
	// be reached, a limit hit). The default.
	LevelProblems slog.Level = slog.LevelWarn
	// LevelMajor: major events and delivery reports (a login, a server
	// link up or down, a component connected, a node joined).
	LevelMajor slog.Level = slog.LevelError
	// LevelNone as a setting: nothing is logged.
	LevelNone slog.Level = slog.LevelError + 100
)

// DefaultLevel is the level until `xmpp log level` sets one.
const DefaultLevel = LevelProblems

// LevelNames are the settings of `xmpp log level`, least verbose first.
var LevelNames = []string{"none", "major", "problems", "low-level", "all"}

// ParseLevel reads a level setting.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "none":
		return LevelNone, nil
	case "major":
		return LevelMajor, nil
	case "problems":
		return LevelProblems, nil
	case "low-level":
		return LevelLow, nil
	case "all":
		return LevelAll, nil
	}
	return 0, fmt.Errorf("unknown log level %q: use one of %s", s, strings.Join(LevelNames, ", "))
}

// LevelName is the setting's name of a threshold (as ParseLevel reads it).
func LevelName(l slog.Level) string {
	switch {
	case l >= LevelNone:
		return "none"
	case l >= LevelMajor:
		return "major"
	case l >= LevelProblems:
		return "problems"
	case l >= LevelLow:
		return "low-level"
	}
	return "all"
}

// recordName is how a record's level is written in a line.
func recordName(l slog.Level) string {
	switch {
	case l >= LevelMajor:
		return "MAJOR"
	case l >= LevelProblems:
		return "PROBLEM"
	case l >= slog.LevelInfo:
		return "INFO"
	case l >= LevelLow:
		return "LOW"
	}
	return "ALL"
}

// severity is the RFC 5424 severity of a record: major notice (5),
// problems warning (4), low-level informational (6), all debug (7).
func severity(l slog.Level) int {
	switch {
	case l >= LevelMajor:
		return 5
	case l >= LevelProblems:
		return 4
	case l >= LevelLow:
		return 6
	}
	return 7
}
