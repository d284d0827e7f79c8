package status

import (
	"testing"
	"time"
)

func TestSortSessions(t *testing.T) {
	s := []Session{{JID: "b@x/1", Node: "n2"}, {JID: "c@x/1"}, {JID: "a@x/1", Node: "n3"}, {JID: "a@x/2"}, {JID: "a@x/1", Node: "n2"}}
	SortSessions(s)
	want := []string{"a@x/2 ", "c@x/1 ", "a@x/1 n2", "a@x/1 n3", "b@x/1 n2"}
	for i, w := range want {
		if got := s[i].JID + " " + s[i].Node; got != w {
			t.Errorf("%d: %q, want %q", i, got, w)
		}
	}
}

func TestSortConnections(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	c := []Connection{{Kind: ConnComponent, Since: t0}, {Kind: ConnClient, Since: t0.Add(time.Second)}, {Kind: ConnPreLogin, Since: t0},
		{Kind: ConnClient, Since: t0}, {Kind: ConnServerOut, Since: t0}, {Kind: ConnServerIn, Since: t0}}
	SortConnections(c)
	want := []ConnKind{ConnPreLogin, ConnClient, ConnClient, ConnServerIn, ConnServerOut, ConnComponent}
	for i, w := range want {
		if c[i].Kind != w {
			t.Errorf("%d: %s, want %s", i, c[i].Kind, w)
		}
	}
	if !c[1].Since.Equal(t0) {
		t.Errorf("clients not oldest first: %+v", c[1:3])
	}
}
