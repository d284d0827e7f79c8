package status

import (
	"reflect"
	"testing"
	"time"
)

func TestSortLinks(t *testing.T) {
	links := []Link{
		{Local: "b.lan", Remote: "a.lan", Direction: In},
		{Local: "a.lan", Remote: "c.lan", Direction: In},
		{Local: "a.lan", Remote: "c.lan", Direction: Out},
		{Local: "a.lan", Remote: "b.lan", Direction: In},
	}
	SortLinks(links)
	want := []Link{
		{Local: "a.lan", Remote: "b.lan", Direction: In},
		{Local: "a.lan", Remote: "c.lan", Direction: Out},
		{Local: "a.lan", Remote: "c.lan", Direction: In},
		{Local: "b.lan", Remote: "a.lan", Direction: In},
	}
	if !reflect.DeepEqual(links, want) {
		t.Errorf("got %v, want %v", links, want)
	}
}

func TestSortFailures(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	f := []Failure{{Remote: "old", At: t0}, {Remote: "new", At: t0.Add(time.Minute)}, {Remote: "mid", At: t0.Add(time.Second)}}
	SortFailures(f)
	if f[0].Remote != "new" || f[1].Remote != "mid" || f[2].Remote != "old" {
		t.Errorf("not newest first: %v", f)
	}
}
