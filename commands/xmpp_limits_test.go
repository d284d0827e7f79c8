package commands

import (
	"strings"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/status"
	"github.com/parley-xmpp/parley/store"
)

func TestXMPPLimitsShow(t *testing.T) {
	f := newFixture(t)
	golden(t, "xmpp-limits-no-engine", f.ok("xmpp limits"))
	f.env.XMPP = &fakeEngine{st: status.XMPP{PreAuth: 3, PreAuthLimit: 500, PreAuthPerAddress: 100, OpenFiles: 37, FileLimit: 2000,
		IdleTimeout: 5 * time.Minute, MaxStanza: 256 << 10}}
	golden(t, "xmpp-limits", f.ok("xmpp limits"))
	f.ok("xmpp limits pre-auth 1000 per-address 20")
	f.ok("xmpp limits stanza-rate 2.5 burst 10")
	f.ok("xmpp max-sessions 5000")
	golden(t, "xmpp-limits-set", f.ok("xmpp limits"))
}

func TestXMPPLimitsSet(t *testing.T) {
	f := newFixture(t)
	get := func(key string) string {
		v, ok := f.env.Store.Config(key)
		if !ok {
			return "(unset)"
		}
		return v
	}
	tests := []struct {
		line, out  string
		key, value string
	}{
		{"xmpp limits pre-auth 2000 per-address 50", "Connections not yet authenticated: at most 2000 in all, 50 per address\n", store.XMPPPreAuth, "2000"},
		{"xmpp limits pre-auth 3000", "Connections not yet authenticated: at most 3000 in all, 50 per address\n", store.XMPPPreAuthPerAddress, "50"},
		{"xmpp limits pre-auth auto per-address 100", "Connections not yet authenticated: at most auto in all, 100 per address\n", store.XMPPPreAuth, "(unset)"},
		{"xmpp limits pre-auth 1 per-address 1", "at most 1 in all, 1 per address\n", store.XMPPPreAuthPerAddress, "1"},
		{"xmpp limits stanza-rate 50 burst 200", "Each client session: at most 50 stanzas per second, burst 200\n", store.XMPPStanzaBurst, "200"},
		{"xmpp limits stanza-rate 0.5", "Each client session: at most 0.5 stanzas per second, burst 200\n", store.XMPPStanzaRate, "0.5"},
		{"xmpp limits stanza-rate 100000 burst 1000000", "burst 1000000\n", store.XMPPStanzaRate, "100000"},
	}
	for _, tc := range tests {
		if out := f.ok(tc.line); !strings.HasSuffix(out, tc.out) || strings.Count(out, "\n") != 1 {
			t.Errorf("%s printed %q, want %q", tc.line, out, tc.out)
		}
		if got := get(tc.key); got != tc.value {
			t.Errorf("%s: %s = %q, want %q", tc.line, tc.key, got, tc.value)
		}
	}
	f.ok("xmpp limits pre-auth 400 per-address 40")
	f.ok("xmpp limits stanza-rate 20 burst 30")
	bad := []struct{ line, want string }{
		{"xmpp limits pre-auth", "xmpp limits pre-auth: missing <n|auto>; usage: xmpp limits pre-auth <n>|auto [per-address <n>]"},
		{"xmpp limits pre-auth 0", "xmpp limits pre-auth: the limit 0 would refuse everything: give 1 to 1000000, or auto"},
		{"xmpp limits pre-auth lots", `xmpp limits pre-auth: the limit must be a whole number from 1 to 1000000, or auto, not "lots"`},
		{"xmpp limits pre-auth 1000001", "the limit 1000001 is more than 1000000"},
		{"xmpp limits pre-auth -1", "must be a whole number"},
		{"xmpp limits pre-auth 100 per-address", "xmpp limits pre-auth: per-address needs a number; usage: xmpp limits pre-auth <n>|auto [per-address <n>]"},
		{"xmpp limits pre-auth 100 per-ip 5", `xmpp limits pre-auth: expected per-address, not "per-ip"; usage:`},
		{"xmpp limits pre-auth 100 per-address 0", "per-address 0 would refuse everything: give 1 to 1000000"},
		{"xmpp limits pre-auth 100 per-address 200", "xmpp limits pre-auth: per-address 200 is more than the limit in all (100): give per-address 100 or less"},
		{"xmpp limits pre-auth 100 per-address 5 more", `unexpected argument "more"`},
		{"xmpp limits stanza-rate", "missing <per-second>"},
		{"xmpp limits stanza-rate 0", "xmpp limits stanza-rate: the rate is stanzas per second from 0.1 to 100000, e.g. 100 or 2.5, not \"0\""},
		{"xmpp limits stanza-rate 0.01", "from 0.1 to 100000"},
		{"xmpp limits stanza-rate 1e3", "from 0.1 to 100000"},
		{"xmpp limits stanza-rate NaN", "from 0.1 to 100000"},
		{"xmpp limits stanza-rate 100001", "from 0.1 to 100000"},
		{"xmpp limits stanza-rate fast", `not "fast"`},
		{"xmpp limits stanza-rate 10 burst 0", "xmpp limits stanza-rate: burst 0 would refuse everything: give 1 to 1000000"},
		{"xmpp limits stanza-rate 10 burst", "burst needs a number"},
		{"xmpp limits stanza-rate 10 bursts 5", `expected burst, not "bursts"`},
		{"xmpp limits frob", `xmpp limits: unknown subcommand "frob"; use one of: pre-auth, stanza-rate`},
	}
	for _, tc := range bad {
		f.refuse(tc.line, tc.want)
	}
	cfg := f.config()
	if cfg.PreAuth != 400 || cfg.PreAuthPerAddress != 40 || cfg.StanzaRate != 20 || cfg.StanzaBurst != 30 {
		t.Errorf("config after refusals: %+v", cfg)
	}
	// Changes are audited, refusals too.
	entries, _ := f.env.Store.Audit(100)
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action+" => "+e.Result)
	}
	all := strings.Join(actions, "\n")
	for _, want := range []string{"xmpp limits pre-auth 400 per-address 40 => ok", "xmpp limits stanza-rate 20 burst 30 => ok",
		"xmpp limits pre-auth 100 per-address 200 => failed: xmpp limits pre-auth: per-address 200 is more"} {
		if !strings.Contains(all, want) {
			t.Errorf("audit trail lacks %q:\n%s", want, all)
		}
	}
	// Roles: appadmin may change limits, every role may look.
	if _, err := f.runAs("ops", store.RoleAppAdmin, "xmpp limits pre-auth 500"); err != nil {
		t.Errorf("appadmin: %v", err)
	}
	if _, err := f.runAs("aud", store.RoleAudit, "xmpp limits pre-auth 600"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("audit role changed a limit: %v", err)
	}
	if _, err := f.runAs("aud", store.RoleAudit, "xmpp limits"); err != nil {
		t.Errorf("audit role cannot look: %v", err)
	}
}

func TestHealthOpenFiles(t *testing.T) {
	f := newFixture(t)
	f.env.XMPP = &fakeEngine{st: status.XMPP{OpenFiles: 120, FileLimit: 2000}}
	if out := f.ok("health"); !strings.Contains(out, "OK    open files             120 of 2000 (6%)") {
		t.Errorf("health:\n%s", out)
	}
	f.env.XMPP = &fakeEngine{st: status.XMPP{OpenFiles: 1700, FileLimit: 2000}}
	out := f.ok("health") // a warning, not a failure
	if !strings.Contains(out, "WARN  open files             1700 of 2000 (85%): near the limit") || !strings.Contains(out, "LimitNOFILE") {
		t.Errorf("health:\n%s", out)
	}
}
