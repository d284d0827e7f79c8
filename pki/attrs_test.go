package pki

import (
	"net"
	"reflect"
	"strings"
	"testing"
)

func TestParseAttributesGood(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want Request
	}{
		{
			name: "CN only gets defaults",
			args: []string{"CN:xmpp.example.com"},
			want: Request{CN: "xmpp.example.com", Key: KeyRSA2048, Days: 365},
		},
		{
			name: "everything",
			args: []string{"CN:xmpp.example.com", "O:Example Inc.", "OU:IT", "L:Oslo", "ST:Viken", "C:no",
				"subjectAltName:a.example.com,B.Example.com,10.0.0.1,2001:db8::1", "key:ecdsa-p256", "days:730"},
			want: Request{CN: "xmpp.example.com", O: "Example Inc.", OU: "IT", L: "Oslo", ST: "Viken", C: "NO",
				DNSNames: []string{"a.example.com", "b.example.com"},
				IPs:      []net.IP{net.ParseIP("10.0.0.1").To4(), net.ParseIP("2001:db8::1")},
				Key:      KeyECDSAP256, Days: 730},
		},
		{
			name: "case-insensitive names and aliases",
			args: []string{"cn:Parley Server", "SUBJECTALTNAME:*.example.com,example.com", "Key:RSA", "DAYS:1"},
			want: Request{CN: "Parley Server", DNSNames: []string{"*.example.com", "example.com"}, Key: KeyRSA2048, Days: 1},
		},
		{
			name: "ecdsa alias, rsa4096, prefixes and duplicates",
			args: []string{"key:ecdsa", "CN:x.example.com", "subjectAltName:DNS:x.example.com, IP:[::1],x.example.com"},
			want: Request{CN: "x.example.com", DNSNames: []string{"x.example.com"}, IPs: []net.IP{net.ParseIP("::1")}, Key: KeyECDSAP256, Days: 365},
		},
		{
			name: "rsa4096 and maximum days",
			args: []string{"CN:x", "key:rsa4096", "days:3650"},
			want: Request{CN: "x", Key: KeyRSA4096, Days: 3650},
		},
		{
			name: "value with colon and surrounding spaces",
			args: []string{"CN: xmpp.example.com ", "O:Example: The Company"},
			want: Request{CN: "xmpp.example.com", O: "Example: The Company", Key: KeyRSA2048, Days: 365},
		},
		{
			name: "limits are in characters",
			args: []string{"CN:" + strings.Repeat("é", 64)},
			want: Request{CN: strings.Repeat("é", 64), Key: KeyRSA2048, Days: 365},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAttributes(tt.args)
			if err != nil {
				t.Fatalf("ParseAttributes(%q): %v", tt.args, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseAttributes(%q)\n got %+v\nwant %+v", tt.args, got, tt.want)
			}
		})
	}
}

func TestParseAttributesBad(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // substring of the error
	}{
		{"unknown attribute", []string{"CN:x", "XX:y"}, `unknown attribute "XX": use CN, O, OU, L, ST, C, subjectAltName, key or days`},
		{"country too long", []string{"CN:x", "C:NOR"}, "C:NOR: the country must be a two-letter ISO 3166 code such as C:NO"},
		{"country with digit", []string{"CN:x", "C:N1"}, "C:N1: the country must be a two-letter ISO 3166 code"},
		{"country non-ASCII", []string{"CN:x", "C:NØ"}, "two-letter ISO 3166 code"},
		{"missing CN", []string{"O:Example Inc."}, "CN is required (CN:xmpp.example.com)"},
		{"no arguments", nil, "CN is required"},
		{"duplicate", []string{"CN:a", "cn:b"}, `attribute "CN" given twice`},
		{"duplicate SAN alias", []string{"CN:a", "san:a.example.com", "subjectAltName:b.example.com"}, `attribute "subjectAltName" given twice`},
		{"empty value", []string{"CN:"}, "CN: empty value"},
		{"blank value", []string{"CN:x", "O:   "}, "O: empty value"},
		{"SAN empty label", []string{"CN:x", "subjectAltName:a..b"}, `"a..b" is not a valid DNS name`},
		{"SAN leading hyphen", []string{"CN:x", "subjectAltName:ok.example,-bad.example"}, `"-bad.example"`},
		{"SAN trailing hyphen", []string{"CN:x", "subjectAltName:bad-.example"}, `"bad-.example"`},
		{"SAN underscore", []string{"CN:x", "subjectAltName:_xmpp.example.com"}, `"_xmpp.example.com"`},
		{"SAN wildcard inside", []string{"CN:x", "subjectAltName:a.*.example.com"}, "wildcard"},
		{"SAN bare wildcard", []string{"CN:x", "subjectAltName:*.com"}, "wildcard"},
		{"SAN long label", []string{"CN:x", "subjectAltName:" + strings.Repeat("a", 64) + ".example"}, "longer than 63"},
		{"SAN too long", []string{"CN:x", "subjectAltName:" + strings.Repeat(strings.Repeat("a", 60)+".", 5) + "example"}, "at most 253"},
		{"SAN empty entry", []string{"CN:x", "subjectAltName:a.example.com,,b.example.com"}, "empty entry"},
		{"SAN bad IP", []string{"CN:x", "subjectAltName:10.0.0.256"}, `"10.0.0.256"`},
		{"SAN forced IP", []string{"CN:x", "subjectAltName:IP:host.example"}, `"host.example" is not an IPv4 or IPv6 address`},
		{"SAN non-ASCII", []string{"CN:x", "subjectAltName:bücher.example"}, "punycode"},
		{"SAN trailing dot", []string{"CN:x", "subjectAltName:a.example.com."}, "trailing dot"},
		{"too-long CN", []string{"CN:" + strings.Repeat("a", 65)}, "CN: 65 characters, at most 64 are allowed"},
		{"too-long O", []string{"CN:x", "O:" + strings.Repeat("a", 65)}, "O: 65 characters, at most 64"},
		{"too-long L", []string{"CN:x", "L:" + strings.Repeat("a", 129)}, "L: 129 characters, at most 128"},
		{"too-long ST", []string{"CN:x", "ST:" + strings.Repeat("a", 129)}, "ST: 129 characters, at most 128"},
		{"control character", []string{"CN:x\x1b[31m"}, "CN: control characters"},
		{"invalid UTF-8", []string{"CN:x\xff"}, "not valid UTF-8"},
		{"no colon", []string{"CN=xmpp.example.com"}, `"CN=xmpp.example.com": attributes are NAME:VALUE`},
		{"bad key", []string{"CN:x", "key:dsa"}, "key:dsa: unknown key type"},
		{"days zero", []string{"CN:x", "days:0"}, "days:0: give a whole number of days from 1 to 3650"},
		{"days too many", []string{"CN:x", "days:3651"}, "from 1 to 3650"},
		{"days not a number", []string{"CN:x", "days:a year"}, "days:a year:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAttributes(tt.args)
			if err == nil {
				t.Fatalf("ParseAttributes(%q): no error, want %q", tt.args, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseAttributes(%q) = %q, want it to contain %q", tt.args, err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is more than one line: %q", err)
			}
		})
	}
}

func TestCheckDNSName(t *testing.T) {
	good := []string{"localhost", "xmpp.example.com", "*.example.com", "a-b.c-d.example", "xn--bcher-kva.example", "1.example.com", strings.Repeat("a", 63) + ".example"}
	for _, n := range good {
		if err := CheckDNSName(n); err != nil {
			t.Errorf("CheckDNSName(%q) = %v, want nil", n, err)
		}
	}
	bad := []string{"", ".example.com", "a..b", "-a.example", "a-.example", "a_b.example", "*", "*.com", "a.*.example", "**.example.com", "1.2.3.4", "exa mple.com", "example.com."}
	for _, n := range bad {
		if err := CheckDNSName(n); err == nil {
			t.Errorf("CheckDNSName(%q) = nil, want an error", n)
		}
	}
}
