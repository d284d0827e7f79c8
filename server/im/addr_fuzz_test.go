package im

import (
	"strings"
	"testing"
	"unicode/utf8"

	"mellium.im/xmpp/jid"
)

// FuzzParseAddr: the address parsing every stanza goes through never
// panics, and what it accepts is normalized for good: its parts put
// together re-parse to the same parts (with and without the cache), the
// bare JID is local@domain, and jid.Parse agrees.
func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{
		"alice@example.lan",
		"alice@example.lan/phone",
		"ALICE@Example.LAN/Phone",
		"example.lan",
		"example.lan.",
		"room@conference.example.lan/nick with spaces",
		"juliet@example.com/foo@bar/baz",
		"@example.lan",
		"alice@",
		"a@b@c",
		"/res",
		"alice@[::1]",
		"alice@192.0.2.1/r",
		"ⅷ@example.lan",
		"ﬀ@éxample.lan/ﬀ",
		"xn--mnchen-3ya.de",
		"München.de/Ⅸ",
		"\u00a0@example.lan",
		"a@" + strings.Repeat("x", 1100),
		"user\u200d@example.lan",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := parseAddr(s)
		if !ok {
			// Refused: invalid, or normalized to something that would
			// not parse to itself again.
			if j, err := jid.Parse(s); err == nil && stable(j.String()) {
				t.Fatalf("parseAddr refused %q, which normalizes to the stable %q", s, j)
			}
			return
		}
		if a.domain == "" {
			t.Fatalf("%q: no domain", s)
		}
		want := a.domain
		if a.local != "" {
			want = a.local + "@" + a.domain
		}
		if a.bare != want {
			t.Fatalf("%q: bare %q, want %q", s, a.bare, want)
		}
		for _, p := range []string{a.local, a.domain, a.resource} {
			if !utf8.ValidString(p) {
				t.Fatalf("%q: a part is not UTF-8: %+v", s, a)
			}
		}
		again, ok := parseAddr(s) // from the cache
		if !ok || again != a {
			t.Fatalf("%q parsed twice: %+v then %+v", s, a, again)
		}
		full := a.full()
		b, ok := parseAddr(full)
		if !ok || b != a {
			t.Fatalf("%q → %q → %+v (ok %v), want %+v", s, full, b, ok, a)
		}
		j, err := jid.Parse(full)
		if err != nil || j.String() != full || j.Bare().String() != a.bare {
			t.Fatalf("jid.Parse(%q) = %v, %v: not the normalized address", full, j, err)
		}
	})
}
