package directory

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Bounds of roster groups: groups a user's colleagues are taken from, the
// colleagues in all, and how long a member's look-up is remembered.
const (
	MaxGroups      = 50
	MaxColleagues  = 1000
	memberCacheTTL = 10 * time.Minute
	memberCacheMax = 20000
)

// Colleague is a user who shares directory groups with another: their JID
// (in the same domain), their name and the names of the groups shared.
type Colleague struct {
	JID, Name string
	Groups    []string
}

type member struct {
	jid, name string // jid "" if the DN is no user of the domain
	at        time.Time
}

// DefaultGroupFilter selects groups when Config.GroupFilter is empty.
const DefaultGroupFilter = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))"

// Colleagues returns the users of domain who share a group (under
// Config.GroupsBase) with the entry e, by JID; nil if no groups base is
// set. Members that are not users (the user filter) or not of the domain
// are left out; at most MaxGroups groups and MaxColleagues colleagues.
func (c *Client) Colleagues(ctx context.Context, e *Entry, domain string) ([]Colleague, error) {
	if c.cfg.GroupsBase == "" {
		return nil, nil
	}
	var out []Colleague
	err := c.with(ctx, func(cn *conn) error {
		var err error
		out, err = c.colleagues(cn, e, domain)
		return err
	})
	return out, err
}

func (c *Client) colleagues(cn *conn, e *Entry, domain string) ([]Colleague, error) {
	filter := c.cfg.GroupFilter
	if filter == "" {
		filter = DefaultGroupFilter
	}
	dn := ldap.EscapeFilter(e.DN)
	byJID := map[string]*Colleague{}
	err := func() error {
		req := ldap.NewSearchRequest(c.cfg.GroupsBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, MaxGroups, int(c.cfg.OpTimeout/time.Second), false,
			"(&"+filter+"(|(member="+dn+")(uniqueMember="+dn+")))", []string{"cn", "member", "uniqueMember"}, nil)
		res, err := cn.l.Search(req)
		if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
			if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
				return unavailable("the groups base %s does not exist in the directory", c.cfg.GroupsBase)
			}
			return unavailable("group search: %v", err)
		}
		if res == nil {
			return nil
		}
		for _, g := range res.Entries {
			name := g.GetAttributeValue("cn")
			if name == "" {
				continue
			}
			for _, m := range append(g.GetAttributeValues("member"), g.GetAttributeValues("uniqueMember")...) {
				if i := strings.LastIndex(m, "#'"); i > 0 { // uniqueMember's optional UID
					m = m[:i]
				}
				if strings.EqualFold(m, e.DN) {
					continue
				}
				u, err := c.member(cn, m, domain)
				if err != nil {
					return err
				}
				if u.jid == "" {
					continue
				}
				col := byJID[u.jid]
				if col == nil {
					if len(byJID) >= MaxColleagues {
						continue
					}
					col = &Colleague{JID: u.jid, Name: u.name}
					byJID[u.jid] = col
				}
				if !contains(col.Groups, name) {
					col.Groups = append(col.Groups, name)
				}
			}
		}
		return nil
	}()
	if err != nil {
		return nil, err
	}
	out := make([]Colleague, 0, len(byJID))
	for _, col := range byJID {
		sort.Strings(col.Groups)
		out = append(out, *col)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].JID < out[j].JID })
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// member looks up a member DN (remembered for memberCacheTTL): its JID if
// it is a user of domain.
func (c *Client) member(cn *conn, dn, domain string) (member, error) {
	key := strings.ToLower(dn) + "\x00" + domain
	c.mu.Lock()
	m, ok := c.members[key]
	c.mu.Unlock()
	if ok && time.Since(m.at) < memberCacheTTL {
		return m, nil
	}
	req := ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, int(c.cfg.OpTimeout/time.Second), false,
		c.cfg.UserFilter, []string{c.cfg.JIDFrom, "cn", "displayName"}, nil)
	res, err := cn.l.Search(req)
	m = member{at: time.Now()}
	switch {
	case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject), ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidDNSyntax):
	case err != nil:
		return m, unavailable("member %s: %v", dn, err)
	case len(res.Entries) == 1:
		u := res.Entries[0]
		v := strings.ToLower(u.GetAttributeValue(c.cfg.JIDFrom))
		if strings.EqualFold(c.cfg.JIDFrom, "mail") {
			if strings.HasSuffix(v, "@"+strings.ToLower(domain)) {
				m.jid = v
			}
		} else if v != "" && !strings.Contains(v, "@") {
			m.jid = v + "@" + domain
		}
		m.name = u.GetAttributeValue("cn")
		if m.name == "" {
			m.name = u.GetAttributeValue("displayName")
		}
	}
	c.mu.Lock()
	if c.members == nil || len(c.members) >= memberCacheMax {
		c.members = map[string]member{}
	}
	c.members[key] = m
	c.mu.Unlock()
	return m, nil
}

// MaxUsers bounds Users: the users a sync reads from the directory.
const MaxUsers = 100000

// usersTimeout bounds the whole paged search of Users.
const usersTimeout = 2 * time.Minute

// Users returns the JIDs of the directory's users in domain (the user
// filter, the JID attribute: a mail address in the domain, or the user
// part), read with a paged search; truncated if there were more than max.
func (c *Client) Users(ctx context.Context, domain string, max int) (jids []string, truncated bool, err error) {
	if max <= 0 || max > MaxUsers {
		max = MaxUsers
	}
	err = c.withFor(ctx, usersTimeout, func(cn *conn) error {
		req := ldap.NewSearchRequest(c.cfg.Base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, max+1, int(usersTimeout/time.Second), false,
			c.cfg.UserFilter, []string{c.cfg.JIDFrom}, nil)
		res, err := cn.l.SearchWithPaging(req, 500)
		if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
			if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
				return unavailable("the base DN %s does not exist in the directory", c.cfg.Base)
			}
			return unavailable("search: %v", err)
		}
		if err != nil {
			truncated = true
		}
		if res == nil {
			return nil
		}
		for _, e := range res.Entries {
			if len(jids) == max {
				truncated = true
				break
			}
			v := strings.ToLower(e.GetAttributeValue(c.cfg.JIDFrom))
			switch {
			case strings.EqualFold(c.cfg.JIDFrom, "mail"):
				if strings.HasSuffix(v, "@"+strings.ToLower(domain)) {
					jids = append(jids, v)
				}
			case v != "" && !strings.Contains(v, "@"):
				jids = append(jids, v+"@"+domain)
			}
		}
		return nil
	})
	c.record(err)
	sort.Strings(jids)
	return jids, truncated, err
}
