package im

import (
	"strings"
	"testing"

	"github.com/parley-xmpp/parley/server/xml"
)

func TestDirectoryVCardFields(t *testing.T) {
	p := func(s string) *xml.Element { return parse(t, s) }
	dir := p(`<vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><EMAIL><INTERNET/><USERID>alice@example.lan</USERID></EMAIL><PHOTO><TYPE>image/jpeg</TYPE><BINVAL>AAAA</BINVAL></PHOTO><NICKNAME>old</NICKNAME></vCard>`)
	for _, c := range []struct {
		set, changed string
	}{
		{`<vCard xmlns='vcard-temp'><NICKNAME>ally</NICKNAME></vCard>`, ""},
		{`<vCard xmlns='vcard-temp'><FN> Alice Liddell </FN><NICKNAME>ally</NICKNAME></vCard>`, ""},
		{"<vCard xmlns='vcard-temp'><PHOTO>\n <TYPE>image/jpeg</TYPE>\n <BINVAL>AA\nAA</BINVAL></PHOTO></vCard>", ""},
		{`<vCard xmlns='vcard-temp'><FN>Someone Else</FN></vCard>`, "FN"},
		{`<vCard xmlns='vcard-temp'><TITLE>Boss</TITLE></vCard>`, "TITLE"}, // the directory has none: still its field
		{`<vCard xmlns='vcard-temp'><EMAIL><INTERNET/><USERID>alice@example.lan</USERID></EMAIL><EMAIL><USERID>me@home.lan</USERID></EMAIL></vCard>`, "EMAIL"},
		{`<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>BBBB</BINVAL></PHOTO></vCard>`, "PHOTO"},
	} {
		if got := changedDirectoryField(dir, p(c.set)); got != c.changed {
			t.Errorf("%s: changed %q, want %q", c.set, got, c.changed)
		}
	}
	merged := string(mergeDirectoryVCard(dir, p(`<vCard xmlns='vcard-temp'><FN>x</FN><NICKNAME>ally</NICKNAME><URL>https://a.lan</URL></vCard>`)).Bytes(""))
	for _, want := range []string{"<FN>Alice Liddell</FN>", "<USERID>alice@example.lan</USERID>", "<BINVAL>AAAA</BINVAL>", "<NICKNAME>ally</NICKNAME>", "<URL>https://a.lan</URL>"} {
		if !strings.Contains(merged, want) {
			t.Errorf("merged lacks %s: %s", want, merged)
		}
	}
	if strings.Contains(merged, "<FN>x</FN>") || strings.Contains(merged, "old") {
		t.Errorf("merged kept what it should not: %s", merged)
	}
}
