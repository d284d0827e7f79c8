package routes

import (
	"encoding/json"
	"reflect"
	"testing"
)

var sample = []op{
	{code: opReset},
	{code: opSyncReq},
	{code: opBind, bare: "alice@example.com", res: "phone-4f2a", at: 1765000000123456789},
	{code: opPresence, bare: "alice@example.com", res: "phone-4f2a", available: true, priority: -5,
		presence: []byte(`<presence xmlns="jabber:client"><show>away</show><c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="n" ver="QgayPKawpkPSDYmwT/WM94uAlu0="/></presence>`)},
	{code: opPresence, bare: "alice@example.com", res: "phone-4f2a"},
	{code: opUnbind, bare: "alice@example.com", res: "phone-4f2a"},
	{code: opCompUp, bare: "cb1.example.com"},
	{code: opCompDown, bare: "cb1.example.com"},
	{code: opSyncDone},
}

func TestWireRoundTrip(t *testing.T) {
	var b []byte
	for i := range sample {
		b = appendOp(b, &sample[i])
	}
	rd := reader{b: b}
	var got []op
	var o op
	for rd.next(&o) {
		got = append(got, o)
	}
	if rd.err != nil || !reflect.DeepEqual(got, sample) {
		t.Fatalf("%v\n got %+v\nwant %+v", rd.err, got, sample)
	}
	// Every truncation fails cleanly, never panics.
	for n := 0; n < len(b); n++ {
		rd := reader{b: b[:n]}
		for rd.next(&o) {
		}
	}
}

// jsonOp is what the same operation would be in JSON, for the comparison.
type jsonOp struct {
	Op        string `json:"op"`
	Bare      string `json:"bare"`
	Res       string `json:"res"`
	At        int64  `json:"at,omitempty"`
	Available bool   `json:"available,omitempty"`
	Priority  int    `json:"priority,omitempty"`
	Presence  []byte `json:"presence,omitempty"`
}

// BenchmarkWire: a bind in the binary encoding against JSON (go test
// -bench Wire -benchmem ./server/cluster/routes/).
func BenchmarkWire(b *testing.B) {
	bind := sample[2]
	j := jsonOp{Op: "bind", Bare: bind.bare, Res: bind.res, At: bind.at}
	b.Run("binary", func(b *testing.B) {
		var buf []byte
		var o op
		for i := 0; i < b.N; i++ {
			buf = appendOp(buf[:0], &bind)
			rd := reader{b: buf}
			rd.next(&o)
		}
		b.ReportMetric(float64(len(buf)), "bytes")
	})
	b.Run("json", func(b *testing.B) {
		var buf []byte
		var o jsonOp
		for i := 0; i < b.N; i++ {
			buf, _ = json.Marshal(&j)
			json.Unmarshal(buf, &o)
		}
		b.ReportMetric(float64(len(buf)), "bytes")
	})
}
