package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/parley-xmpp/parley/server/status"
)

// CheckSearchLimit is how many user entries the check counts at most.
const CheckSearchLimit = 1000

// Check tries a directory step by step and reports each step: connect,
// TLS, bind, search and, given a user (the JID's user part in domain),
// that user's entry and the vCard it gives. It stops at the first failed
// step and reports whether every step passed. fixCmd is how the fixes name
// the setting command (e.g. "xmpp directory example.com").
func Check(ctx context.Context, cfg Config, domain, user, fixCmd string, report func(status.Step)) bool {
	if err := Validate(cfg); err != nil {
		report(status.Step{Verdict: status.Fail, Name: "settings", Detail: err.Error(), Fix: fixCmd + " ldap <url> base <dn>"})
		return false
	}
	c, _ := New(cfg)
	cfg = c.cfg
	addr := hostPort(c.u)
	deadline := time.Now().Add(cfg.DialTimeout + 3*cfg.OpTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}

	start := time.Now()
	d := net.Dialer{Deadline: time.Now().Add(cfg.DialTimeout)}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		report(status.Step{Verdict: status.Fail, Name: "connect " + addr, Detail: err.Error(),
			Fix: "check that the directory listens there and that no firewall is in the way, or correct the URL: " + fixCmd + " ldap <url> base <dn>"})
		return false
	}
	defer raw.Close()
	report(status.Step{Verdict: status.OK, Name: "connect " + addr, Detail: fmt.Sprintf("connected in %.1f ms", float64(time.Since(start).Microseconds())/1000)})
	raw.SetDeadline(deadline)

	tlsFail := func(err error) bool {
		fix := "check the directory's TLS set-up"
		var ua x509.UnknownAuthorityError
		var hn x509.HostnameError
		var ce *tls.CertificateVerificationError
		// StartTLS's errors reach here as text only (go-ldap formats them).
		switch msg := err.Error(); {
		case errors.As(err, &ua) || (errors.As(err, &ce) && errors.As(ce.Err, &ua)) || strings.Contains(msg, "certificate signed by unknown authority"):
			fix = "give the CA bundle that signed the directory's certificate: upload it over SFTP, then " + fixCmd + " trust <bundle>"
		case errors.As(err, &hn) || strings.Contains(msg, "certificate is valid for") || strings.Contains(msg, "certificate is not valid for"):
			fix = "use the host name the directory's certificate is for in the URL: " + fixCmd + " ldap <url> base <dn>"
		}
		report(status.Step{Verdict: status.Fail, Name: "TLS", Detail: err.Error(), Fix: fix})
		return false
	}
	var l *ldap.Conn
	trust := "the system roots"
	if cfg.Roots != nil {
		trust = "the trusted bundle"
	}
	switch {
	case c.u.Scheme == "ldaps":
		tc := tls.Client(raw, c.tlsConfig())
		if err := tc.Handshake(); err != nil {
			return tlsFail(err)
		}
		report(status.Step{Verdict: status.OK, Name: "TLS", Detail: fmt.Sprintf("ldaps: %s, certificate of %s verified by %s", tls.VersionName(tc.ConnectionState().Version), c.u.Hostname(), trust)})
		l = ldap.NewConn(tc, true)
		l.Start()
	default:
		l = ldap.NewConn(raw, false)
		l.Start()
		if cfg.StartTLS {
			if err := l.StartTLS(c.tlsConfig()); err != nil {
				return tlsFail(err)
			}
			st, _ := l.TLSConnectionState()
			report(status.Step{Verdict: status.OK, Name: "TLS", Detail: fmt.Sprintf("StartTLS: %s, certificate of %s verified by %s", tls.VersionName(st.Version), c.u.Hostname(), trust)})
		} else {
			report(status.Step{Verdict: status.Warn, Name: "TLS", Detail: "none: users' passwords would cross the network in clear text",
				Fix: fixCmd + " starttls on, or an ldaps:// URL"})
		}
	}
	defer l.Close()
	l.SetTimeout(cfg.OpTimeout)

	cn := &conn{l: l, raw: raw}
	if err := c.bindSearcher(cn); err != nil {
		report(status.Step{Verdict: status.Fail, Name: "bind as " + orAnonymous(cfg.BindDN), Detail: errors.Unwrap(err).Error() + ": " + detail(err),
			Fix: "give a DN and password the directory accepts: " + fixCmd + " ldap <url> base <dn> bind <dn>"})
		return false
	}
	report(status.Step{Verdict: status.OK, Name: "bind as " + orAnonymous(cfg.BindDN)})

	req := ldap.NewSearchRequest(cfg.Base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, CheckSearchLimit, int(cfg.OpTimeout/time.Second), false,
		cfg.UserFilter, []string{"1.1"}, nil)
	res, err := l.Search(req)
	n, more := 0, false
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded):
		// The directory's own size limit may be lower than ours.
		n, more = CheckSearchLimit, true
		if res != nil && len(res.Entries) > 0 {
			n = len(res.Entries)
		}
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
		report(status.Step{Verdict: status.Fail, Name: "search " + cfg.Base, Detail: "the base DN does not exist (or the bind DN may not see it)",
			Fix: "correct the base: " + fixCmd + " ldap <url> base <dn>"})
		return false
	case err != nil:
		report(status.Step{Verdict: status.Fail, Name: "search " + cfg.Base, Detail: err.Error(),
			Fix: "check the user filter (" + fixCmd + " user-filter <filter>) and the bind DN's rights"})
		return false
	default:
		n = len(res.Entries)
	}
	if n == 0 {
		report(status.Step{Verdict: status.Warn, Name: "search " + cfg.Base, Detail: "no entry matches " + cfg.UserFilter,
			Fix: "check the base and the user filter: " + fixCmd + " user-filter <filter>"})
	} else {
		count := fmt.Sprint(n)
		if more {
			count = "at least " + count
		}
		report(status.Step{Verdict: status.OK, Name: "search " + cfg.Base, Detail: count + " users match " + cfg.UserFilter})
	}
	if user == "" {
		return true
	}

	e, err := c.find(cn, user, domain)
	name := "user " + user + "@" + domain
	if err != nil {
		v := user
		if cfg.JIDFrom == "mail" {
			v = user + "@" + domain
		}
		fix := "check that the user's entry has " + cfg.JIDFrom + "=" + v + " and matches the user filter, or choose the attribute: " + fixCmd + " jid-from mail|uid|<attribute>"
		report(status.Step{Verdict: status.Fail, Name: name, Detail: detail(err) + " (filter " + c.Filter(user, domain) + ")", Fix: fix})
		return false
	}
	report(status.Step{Verdict: status.OK, Name: name, Detail: "found " + e.DN})
	lines := Summary(e)
	if len(lines) == 0 {
		report(status.Step{Verdict: status.Info, Name: "vCard", Detail: "the entry has none of cn, sn, givenName, mail, telephoneNumber, title, o, ou, jpegPhoto"})
	}
	for _, s := range lines {
		report(status.Step{Verdict: status.Info, Name: "vCard", Detail: s})
	}
	if cfg.GroupsBase != "" {
		cols, err := c.colleagues(cn, e, domain)
		if err != nil {
			report(status.Step{Verdict: status.Fail, Name: "roster groups", Detail: detail(err),
				Fix: "check the groups base and filter: " + fixCmd + " roster-groups <base> [<filter>]"})
			return false
		}
		groups := map[string]bool{}
		for _, col := range cols {
			for _, g := range col.Groups {
				groups[g] = true
			}
		}
		names := make([]string, 0, len(groups))
		for g := range groups {
			names = append(names, g)
		}
		sort.Strings(names)
		plural := func(n int, word string) string {
			if n == 1 {
				return "1 " + word
			}
			return fmt.Sprintf("%d %ss", n, word)
		}
		detail := plural(len(cols), "colleague") + " in " + plural(len(names), "group")
		if len(names) > 0 {
			detail += ": " + strings.Join(names, ", ")
		}
		report(status.Step{Verdict: status.OK, Name: "roster groups", Detail: detail})
	}
	return true
}

// detail is an error's text without the ErrUnavailable or
// ErrBadCredentials prefix.
func detail(err error) string {
	s := err.Error()
	for _, p := range []error{ErrUnavailable, ErrBadCredentials} {
		if errors.Is(err, p) && len(s) > len(p.Error())+2 {
			return s[len(p.Error())+2:]
		}
	}
	return s
}
