package store

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"
)

// Entry is one change as the log carries it: the envelope (kind, time,
// request id) and the typed payload.
type Entry struct {
	Kind OpKind
	Time time.Time // when it was proposed, UTC; the FSM's only clock
	ID   string    // request id, unique per proposal
	Once bool      // applied only if no entry with this ID was (ProposeOnce)
	Op   Op
}

// wireEntry is Entry's encoding: JSON with the fields in this order, the
// payload as its own JSON object. encoding/json writes struct fields in
// declaration order and map keys sorted, so one Entry always encodes to
// the same bytes.
type wireEntry struct {
	Kind OpKind          `json:"kind"`
	Time time.Time       `json:"time"`
	ID   string          `json:"id"`
	Once bool            `json:"once,omitempty"`
	Op   json.RawMessage `json:"op"`
}

// EncodeEntry encodes an entry for the log.
func EncodeEntry(e Entry) ([]byte, error) {
	if e.Op == nil {
		return nil, errors.New("store: entry without an op")
	}
	if e.Kind == "" {
		e.Kind = e.Op.Kind()
	}
	if e.Kind != e.Op.Kind() {
		return nil, fmt.Errorf("store: entry of kind %q carries a %q op", e.Kind, e.Op.Kind())
	}
	if _, ok := opTypes[e.Kind]; !ok {
		return nil, fmt.Errorf("store: %q is not a log operation", e.Kind)
	}
	op, err := json.Marshal(e.Op)
	if err != nil {
		return nil, err
	}
	if e.Once && e.ID == "" {
		return nil, errors.New("store: an entry applied once needs its request id")
	}
	return json.Marshal(wireEntry{Kind: e.Kind, Time: e.Time.UTC(), ID: e.ID, Once: e.Once, Op: op})
}

// DecodeEntry decodes a log entry. An unknown kind, or anything that is
// not an entry, is an error.
func DecodeEntry(data []byte) (Entry, error) {
	var w wireEntry
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Entry{}, fmt.Errorf("store: bad log entry: %w", err)
	}
	t, ok := opTypes[w.Kind]
	if !ok {
		return Entry{}, fmt.Errorf("store: unknown operation %q in the log (written by a newer parley?)", w.Kind)
	}
	if len(w.Op) == 0 || w.Op[0] != '{' {
		return Entry{}, fmt.Errorf("store: log entry %q without its payload", w.Kind)
	}
	p := reflect.New(t)
	if err := json.Unmarshal(w.Op, p.Interface()); err != nil {
		return Entry{}, fmt.Errorf("store: bad %s payload: %w", w.Kind, err)
	}
	return Entry{Kind: w.Kind, Time: w.Time, ID: w.ID, Once: w.Once, Op: p.Elem().Interface().(Op)}, nil
}

// newRequestID returns a random request id.
func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
