package pki

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// KeyType names the kind of private key to generate.
type KeyType string

// Key types accepted by GenerateKey and the key: attribute.
const (
	KeyRSA2048   KeyType = "rsa2048"
	KeyRSA4096   KeyType = "rsa4096"
	KeyECDSAP256 KeyType = "ecdsa-p256"
)

// DefaultKeyType is used when a Request names no key type.
const DefaultKeyType = KeyRSA2048

// Validity bounds of a self-signed certificate, in days.
const (
	DefaultDays = 365
	MaxDays     = 3650
)

// Request is what `pki csr` / `pki selfsigned` are asked for.
type Request struct {
	CN, O, OU, L, ST, C string
	DNSNames            []string
	IPs                 []net.IP
	Key                 KeyType // default KeyRSA2048
	Days                int     // validity for selfsigned, default 365, 1..3650
}

// attrSpec describes one NAME:VALUE attribute of `pki csr`.
type attrSpec struct {
	name   string // canonical spelling, used in messages
	maxLen int    // RFC 5280 upper bound in characters; 0 when not a subject attribute
}

// attrSpecs is keyed by the lower-cased attribute name.
var attrSpecs = map[string]attrSpec{
	"cn":             {"CN", 64},
	"o":              {"O", 64},
	"ou":             {"OU", 64},
	"l":              {"L", 128},
	"st":             {"ST", 128},
	"c":              {"C", 2},
	"subjectaltname": {"subjectAltName", 0},
	"san":            {"subjectAltName", 0},
	"key":            {"key", 0},
	"days":           {"days", 0},
}

const attrList = "use CN, O, OU, L, ST, C, subjectAltName, key or days"

// ParseAttributes parses command arguments such as "CN:xmpp.example.com",
// "O:Example Inc.", "C:NO", "subjectAltName:a.example.com,10.0.0.1",
// "key:ecdsa-p256" or "days:730" into a Request. Names are case-insensitive.
// The returned Request has Key and Days filled with their defaults when not
// given. Errors are one line naming the bad argument and the fix.
func ParseAttributes(args []string) (Request, error) {
	var req Request
	seen := map[string]bool{}
	for _, arg := range args {
		name, value, ok := strings.Cut(arg, ":")
		if !ok {
			return Request{}, fmt.Errorf("%q: attributes are NAME:VALUE, e.g. CN:xmpp.example.com (%s)", arg, attrList)
		}
		spec, known := attrSpecs[strings.ToLower(strings.TrimSpace(name))]
		if !known {
			return Request{}, fmt.Errorf("unknown attribute %q: %s", name, attrList)
		}
		if seen[spec.name] {
			return Request{}, fmt.Errorf("attribute %q given twice", spec.name)
		}
		seen[spec.name] = true
		value = strings.TrimSpace(value)
		if value == "" {
			return Request{}, fmt.Errorf("%s: empty value", spec.name)
		}
		if err := checkText(spec.name, value); err != nil {
			return Request{}, err
		}
		if spec.maxLen > 0 && spec.name != "C" {
			if n := utf8.RuneCountInString(value); n > spec.maxLen {
				return Request{}, fmt.Errorf("%s: %d characters, at most %d are allowed (RFC 5280)", spec.name, n, spec.maxLen)
			}
		}
		switch spec.name {
		case "CN":
			req.CN = value
		case "O":
			req.O = value
		case "OU":
			req.OU = value
		case "L":
			req.L = value
		case "ST":
			req.ST = value
		case "C":
			c, err := parseCountry(value)
			if err != nil {
				return Request{}, err
			}
			req.C = c
		case "subjectAltName":
			dns, ips, err := parseSANs(value)
			if err != nil {
				return Request{}, err
			}
			req.DNSNames, req.IPs = dns, ips
		case "key":
			kt, err := ParseKeyType(value)
			if err != nil {
				return Request{}, err
			}
			req.Key = kt
		case "days":
			d, err := strconv.Atoi(value)
			if err != nil || d < 1 || d > MaxDays {
				return Request{}, fmt.Errorf("days:%s: give a whole number of days from 1 to %d, e.g. days:730", value, MaxDays)
			}
			req.Days = d
		}
	}
	if req.CN == "" {
		return Request{}, errors.New("CN is required (CN:xmpp.example.com)")
	}
	if req.Key == "" {
		req.Key = DefaultKeyType
	}
	if req.Days == 0 {
		req.Days = DefaultDays
	}
	return req, nil
}

// ParseKeyType accepts rsa, rsa2048, rsa4096, ecdsa and ecdsa-p256
// (case-insensitive).
func ParseKeyType(s string) (KeyType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "rsa", "rsa2048", "rsa-2048":
		return KeyRSA2048, nil
	case "rsa4096", "rsa-4096":
		return KeyRSA4096, nil
	case "ecdsa", "ecdsa-p256", "ecdsap256", "ec", "p256", "p-256":
		return KeyECDSAP256, nil
	}
	return "", fmt.Errorf("key:%s: unknown key type: use key:rsa2048 (the default), key:rsa4096 or key:ecdsa-p256", s)
}

// checkText refuses invalid UTF-8 and control characters in a value.
func checkText(name, value string) error {
	if !utf8.ValidString(value) {
		return fmt.Errorf("%s: the value is not valid UTF-8", name)
	}
	for _, r := range value {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s: control characters (such as %U) are not allowed", name, r)
		}
	}
	return nil
}

func parseCountry(v string) (string, error) {
	if len(v) == 2 && isASCIILetter(v[0]) && isASCIILetter(v[1]) {
		return strings.ToUpper(v), nil
	}
	return "", fmt.Errorf("C:%s: the country must be a two-letter ISO 3166 code such as C:NO", v)
}

func isASCIILetter(b byte) bool { return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' }

// parseSANs splits a comma-separated subjectAltName value. IPv4 and IPv6
// literals become IPs (an optional "IP:" prefix forces that), everything else
// must be a DNS name (an optional "DNS:" prefix is accepted). Duplicates are
// dropped; DNS names are lower-cased.
func parseSANs(v string) ([]string, []net.IP, error) {
	var dns []string
	var ips []net.IP
	seen := map[string]bool{}
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			return nil, nil, fmt.Errorf("subjectAltName:%s: empty entry; separate names with single commas, e.g. subjectAltName:a.example.com,b.example.com", v)
		}
		forceIP, forceDNS := false, false
		switch {
		case hasPrefixFold(e, "ip:"):
			e, forceIP = strings.TrimSpace(e[3:]), true
		case hasPrefixFold(e, "dns:"):
			e, forceDNS = strings.TrimSpace(e[4:]), true
		}
		if !forceDNS {
			lit := strings.TrimSuffix(strings.TrimPrefix(e, "["), "]")
			if ip := net.ParseIP(lit); ip != nil && !strings.Contains(lit, "%") {
				if ip4 := ip.To4(); ip4 != nil && !strings.Contains(lit, ":") {
					ip = ip4
				}
				if key := "ip " + ip.String(); !seen[key] {
					seen[key] = true
					ips = append(ips, ip)
				}
				continue
			}
			if forceIP {
				return nil, nil, fmt.Errorf("subjectAltName: %q is not an IPv4 or IPv6 address", e)
			}
		}
		if err := CheckDNSName(e); err != nil {
			return nil, nil, fmt.Errorf("subjectAltName: %v", err)
		}
		name := strings.ToLower(e)
		if key := "dns " + name; !seen[key] {
			seen[key] = true
			dns = append(dns, name)
		}
	}
	return dns, ips, nil
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// CheckDNSName reports whether name is usable as a DNS subjectAltName: ASCII
// letters, digits and hyphens in dot-separated labels of 1 to 63 characters
// that neither start nor end with a hyphen, at most 253 characters in all,
// an optional leading "*." wildcard, and a last label that is not all digits.
// The error names the bad entry.
func CheckDNSName(name string) error {
	bad := func(why string) error { return fmt.Errorf("%q is not a valid DNS name or IP address: %s", name, why) }
	if name == "" {
		return bad("it is empty")
	}
	if len(name) > 253 {
		return bad(fmt.Sprintf("%d characters, at most 253 are allowed", len(name)))
	}
	rest := name
	if strings.HasPrefix(rest, "*.") {
		rest = rest[2:]
		if !strings.Contains(rest, ".") {
			return bad("a wildcard needs at least two labels after it, e.g. *.example.com")
		}
	}
	labels := strings.Split(rest, ".")
	for i, l := range labels {
		switch {
		case l == "" && i == len(labels)-1 && i > 0:
			return bad("remove the trailing dot")
		case l == "":
			return bad("empty label (two dots in a row, or a leading dot)")
		case len(l) > 63:
			return bad(fmt.Sprintf("label %q is longer than 63 characters", l))
		case l[0] == '-' || l[len(l)-1] == '-':
			return bad(fmt.Sprintf("label %q starts or ends with a hyphen", l))
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if c == '*' {
				return bad("a wildcard is only allowed as the whole first label, e.g. *.example.com")
			}
			if c >= utf8.RuneSelf {
				return bad("non-ASCII characters: use the punycode (xn--) form of the name")
			}
			if !(isASCIILetter(c) || '0' <= c && c <= '9' || c == '-') {
				return bad(fmt.Sprintf("character %q is not allowed (letters, digits, hyphens and dots only)", c))
			}
		}
	}
	if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" {
		return bad("the last label is all digits")
	}
	return nil
}

// normalize checks a Request built by hand and fills defaults.
func (r Request) normalize() (Request, error) {
	if r.CN == "" && len(r.DNSNames) == 0 && len(r.IPs) == 0 {
		return r, errors.New("CN is required (CN:xmpp.example.com)")
	}
	if r.Key == "" {
		r.Key = DefaultKeyType
	}
	if r.Days == 0 {
		r.Days = DefaultDays
	}
	if r.Days < 1 || r.Days > MaxDays {
		return r, fmt.Errorf("days:%d: give a whole number of days from 1 to %d, e.g. days:730", r.Days, MaxDays)
	}
	if r.C != "" {
		c, err := parseCountry(r.C)
		if err != nil {
			return r, err
		}
		r.C = c
	}
	for _, d := range r.DNSNames {
		if err := CheckDNSName(d); err != nil {
			return r, fmt.Errorf("subjectAltName: %v", err)
		}
	}
	// With no SANs, a CN that is a DNS name becomes the one DNS SAN: clients
	// (and XMPP peers, RFC 6125) match names against SANs only.
	if len(r.DNSNames) == 0 && len(r.IPs) == 0 && CheckDNSName(r.CN) == nil {
		r.DNSNames = []string{strings.ToLower(r.CN)}
	}
	return r, nil
}
