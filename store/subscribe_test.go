package store

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// TestSubscribeTransitions checks RosterSubscribe against RFC 6121
// (Appendix A's state tables and §3's rules), from the point of view of
// alice (a@x) and bob (b@x), both local unless the case says otherwise.
func TestSubscribeTransitions(t *testing.T) {
	const A, B, R = "a@x", "b@x", "romeo@remote"
	item := func(jid, sub string, mods ...func(*RosterItem)) *RosterItem {
		it := &RosterItem{JID: jid, Subscription: sub}
		for _, m := range mods {
			m(it)
		}
		return it
	}
	ask := func(it *RosterItem) { it.Ask = true }
	pending := func(it *RosterItem) { it.PendingIn = true; it.PendingInMsg = []byte("<req/>") }
	hidden := func(it *RosterItem) { it.Hidden = true }
	named := func(it *RosterItem) { it.Name = "Friend"; it.Groups = []string{"G"} }
	out := func(from, to, typ string) RosterSubscribe {
		return RosterSubscribe{From: from, To: to, Type: typ, Direction: SubOutbound, FromLocal: true, ToLocal: true, Stanza: []byte("<req/>"), MaxRequestBytes: 100, MaxStrangerRequests: 2}
	}
	in := func(from, to, typ string) RosterSubscribe {
		return RosterSubscribe{From: from, To: to, Type: typ, Direction: SubInbound, ToLocal: true, Stanza: []byte("<req/>"), MaxRequestBytes: 100, MaxStrangerRequests: 2}
	}
	tests := []struct {
		name      string
		a, b      *RosterItem // a: A's item for the other party; b: B's item for A (or R's side for remote cases: b is A's item for R)
		op        RosterSubscribe
		wantA     *RosterItem // A's item for B after (nil: none)
		wantB     *RosterItem // B's item for A after
		deliver   bool
		autoReply bool
		dropped   bool
		presence  []PresenceNote
		storedA   bool
		storedB   bool
	}{
		// Outbound subscribe (§3.1.2) and its inbound side (§3.1.3).
		{name: "subscribe none/none", op: out(A, B, "subscribe"),
			wantA: item(B, SubNone, ask), wantB: item(A, SubNone, pending, hidden), deliver: true, storedA: true, storedB: true},
		{name: "subscribe again while asking", a: item(B, SubNone, ask), b: item(A, SubNone, pending, hidden), op: out(A, B, "subscribe"),
			wantA: item(B, SubNone, ask), wantB: item(A, SubNone, pending, hidden), deliver: true},
		{name: "subscribe to a contact who has the user in the roster", a: item(B, SubNone, named), b: item(A, SubNone, named), op: out(A, B, "subscribe"),
			wantA: item(B, SubNone, ask, named), wantB: item(A, SubNone, pending, named), deliver: true, storedA: true, storedB: true},
		{name: "subscribe already subscribed: auto-reply", a: item(B, SubTo), b: item(A, SubFrom), op: out(A, B, "subscribe"),
			wantA: item(B, SubTo), wantB: item(A, SubFrom), autoReply: true},
		{name: "subscribe after an earlier approval: auto-reply in the same op", a: item(B, SubNone), b: item(A, SubFrom), op: out(A, B, "subscribe"),
			wantA: item(B, SubTo), wantB: item(A, SubFrom), autoReply: true, storedA: true},
		// Approval (§3.1.5, §3.1.6).
		{name: "subscribed approves a pending request", a: item(B, SubNone, pending, hidden), b: item(A, SubNone, ask), op: out(A, B, "subscribed"),
			wantA: item(B, SubFrom), wantB: item(A, SubTo), deliver: true, storedA: true, storedB: true,
			presence: []PresenceNote{{Of: A, To: B, Available: true}}},
		{name: "subscribed with both ways", a: item(B, SubTo, pending), b: item(A, SubFrom, ask), op: out(A, B, "subscribed"),
			wantA: item(B, SubBoth), wantB: item(A, SubBoth), deliver: true, storedA: true, storedB: true,
			presence: []PresenceNote{{Of: A, To: B, Available: true}}},
		{name: "subscribed nothing was asked", op: out(A, B, "subscribed"),
			wantA: nil, wantB: nil, deliver: false},
		// Cancelling (§3.2, §3.3).
		{name: "unsubscribe from both", a: item(B, SubBoth), b: item(A, SubBoth), op: out(A, B, "unsubscribe"),
			wantA: item(B, SubFrom), wantB: item(A, SubTo), deliver: true, storedA: true, storedB: true,
			presence: []PresenceNote{{Of: B, To: A, Available: false}}},
		{name: "unsubscribe while asking", a: item(B, SubNone, ask), b: item(A, SubNone, pending, hidden), op: out(A, B, "unsubscribe"),
			wantA: item(B, SubNone), wantB: item(A, SubNone, hidden), deliver: true, storedA: true, storedB: true},
		{name: "unsubscribed from both", a: item(B, SubBoth), b: item(A, SubBoth), op: out(A, B, "unsubscribed"),
			wantA: item(B, SubTo), wantB: item(A, SubFrom), deliver: true, storedA: true, storedB: true,
			presence: []PresenceNote{{Of: A, To: B, Available: false}}},
		{name: "unsubscribed denies a request", a: item(B, SubNone, pending, hidden), b: item(A, SubNone, ask), op: out(A, B, "unsubscribed"),
			wantA: item(B, SubNone, hidden), wantB: item(A, SubNone), deliver: true, storedA: true, storedB: true,
			presence: []PresenceNote{{Of: A, To: B, Available: false}}},
		{name: "unsubscribe without an item", op: out(A, B, "unsubscribe"), deliver: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, t.TempDir())
			defer s.Close()
			if tc.a != nil {
				mustApply(t, s, RosterPut{User: A, Item: *tc.a})
			}
			if tc.b != nil {
				mustApply(t, s, RosterPut{User: B, Item: *tc.b})
			}
			res, err := s.Subscribe(tc.op)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				user, jid string
				want      *RosterItem
			}{{A, B, tc.wantA}, {B, A, tc.wantB}} {
				got, ok, _ := s.RosterItem(c.user, c.jid)
				if (c.want == nil) != !ok || (ok && !sameItem(got, *c.want)) {
					t.Errorf("%s's item: %+v (%v), want %+v", c.user, got, ok, c.want)
				}
			}
			if res.Deliver != tc.deliver || res.AutoReply != tc.autoReply || res.Dropped != tc.dropped {
				t.Errorf("deliver %v auto-reply %v dropped %v", res.Deliver, res.AutoReply, res.Dropped)
			}
			if res.Sender.Stored != tc.storedA || res.Receiver.Stored != tc.storedB {
				t.Errorf("stored: sender %v receiver %v", res.Sender.Stored, res.Receiver.Stored)
			}
			if !reflect.DeepEqual(res.Presence, tc.presence) {
				t.Errorf("presence %+v, want %+v", res.Presence, tc.presence)
			}
		})
	}

	t.Run("auto-reply of a remote contact is left to its server", func(t *testing.T) {
		s := open(t, t.TempDir())
		defer s.Close()
		mustApply(t, s, RosterPut{User: A, Item: *item(R, SubFrom)})
		res, err := s.Subscribe(in(R, A, "subscribe"))
		if err != nil || !res.AutoReply || res.Replied || res.Deliver {
			t.Errorf("inbound subscribe from an approved remote contact: %+v %v", res, err)
		}
	})

	t.Run("remote requests are capped and bounded", func(t *testing.T) {
		s := open(t, t.TempDir())
		defer s.Close()
		for i := 0; i < 2; i++ {
			op := in(fmt.Sprintf("s%d@remote", i), A, "subscribe")
			if i == 1 {
				op.Stanza = make([]byte, 101) // too long: kept as a plain request
			}
			if res, err := s.Subscribe(op); err != nil || !res.Deliver || res.Dropped {
				t.Fatalf("request %d: %+v %v", i, res, err)
			}
		}
		if it, _, _ := s.RosterItem(A, "s1@remote"); !it.PendingIn || it.PendingInMsg != nil || !it.Hidden {
			t.Errorf("long request: %+v", it)
		}
		res, err := s.Subscribe(in(R, A, "subscribe"))
		if err != nil || !res.Dropped || res.Deliver {
			t.Errorf("third stranger: %+v %v", res, err)
		}
		if _, ok, _ := s.RosterItem(A, R); ok {
			t.Error("a dropped request was stored")
		}
		// A contact already in the roster is no stranger.
		mustApply(t, s, RosterPut{User: A, Item: *item(R, SubNone)})
		if res, _ := s.Subscribe(in(R, A, "subscribe")); res.Dropped || !res.Receiver.Stored || res.Receiver.After.Hidden {
			t.Errorf("known contact: %+v", res)
		}
		// A remote subscribed: no presence note (its server sends it).
		mustApply(t, s, RosterPut{User: A, Item: *item("j@remote", SubNone, ask)})
		if res, _ := s.Subscribe(in("j@remote", A, "subscribed")); len(res.Presence) != 0 || res.Receiver.After.Subscription != SubTo {
			t.Errorf("remote subscribed: %+v", res)
		}
	})

	t.Run("outbound to a remote contact changes only the sender", func(t *testing.T) {
		s := open(t, t.TempDir())
		defer s.Close()
		op := out(A, R, "subscribe")
		op.ToLocal = false
		res, err := s.Subscribe(op)
		if err != nil || !res.Sender.Stored || res.Receiver.User != "" || res.Deliver {
			t.Errorf("%+v %v", res, err)
		}
		if _, ok, _ := s.RosterItem(R, A); ok {
			t.Error("the remote side was stored")
		}
	})

	t.Run("a full roster on one side does not undo the other", func(t *testing.T) {
		s := open(t, t.TempDir())
		defer s.Close()
		for i := 0; i < MaxRosterItems; i++ {
			mustApply(t, s, RosterPut{User: A, Item: RosterItem{JID: fmt.Sprintf("c%d@x", i), Subscription: SubNone}})
		}
		res, err := s.Subscribe(out(A, B, "subscribe"))
		if err != nil || !errors.Is(res.Sender.Err, ErrFull) || res.Sender.Stored || !res.Receiver.Stored {
			t.Errorf("%+v %v", res, err)
		}
	})

	t.Run("bad ops", func(t *testing.T) {
		s := open(t, t.TempDir())
		defer s.Close()
		for _, op := range []RosterSubscribe{
			{From: A, To: A, Type: "subscribe", Direction: SubOutbound},
			{From: A, To: B, Type: "probe", Direction: SubOutbound},
			{From: A, To: B, Type: "subscribe", Direction: "sideways"},
		} {
			if _, err := s.Subscribe(op); err == nil {
				t.Errorf("%+v applied", op)
			}
		}
	})
}

func TestRosterSet(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	mustApply(t, s, RosterPut{User: "a@x", Item: RosterItem{JID: "b@x", Subscription: SubFrom, PendingIn: true, Hidden: true}})
	r, err := s.Propose(RosterSet{User: "a@x", JID: "b@x", Name: "Bob", Groups: []string{"G"}})
	want := RosterItem{JID: "b@x", Name: "Bob", Subscription: SubFrom, PendingIn: true, Groups: []string{"G"}}
	if err != nil || !sameItem(r.Response.(RosterItem), want) {
		t.Errorf("%+v %v", r.Response, err)
	}
	if it, _, _ := s.RosterItem("a@x", "b@x"); !sameItem(it, want) {
		t.Errorf("stored %+v", it)
	}
	r, _ = s.Propose(RosterSet{User: "a@x", JID: "c@x"})
	if it := r.Response.(RosterItem); it.Subscription != SubNone || it.JID != "c@x" {
		t.Errorf("new item %+v", it)
	}
}

// TestRosterRemove checks the roster remove intent op (RFC 6121 §2.5.2):
// both cancellations and the delete in one op, the contact's roster
// changed only for an existing local account, nothing changed for a
// missing or hidden item.
func TestRosterRemove(t *testing.T) {
	const A, B, R = "a@x", "b@x", "romeo@remote"
	s := open(t, t.TempDir())
	defer s.Close()
	mustApply(t, s, AccountCreate{Accounts: []Account{{JID: A}, {JID: B}}})
	mustApply(t, s, RosterPut{User: A, Item: RosterItem{JID: B, Subscription: SubBoth}})
	mustApply(t, s, RosterPut{User: B, Item: RosterItem{JID: A, Subscription: SubBoth}})

	r, err := s.Propose(RosterRemove{User: A, JID: B, ContactLocal: true})
	if err != nil {
		t.Fatal(err)
	}
	res := r.Response.(RemoveResult)
	if res.Item.Subscription != SubBoth || res.Unsubscribe == nil || res.Unsubscribed == nil {
		t.Fatalf("both ways were not cancelled: %+v", res)
	}
	if res.Unsubscribe.Receiver.After.Subscription != SubTo || res.Unsubscribed.Receiver.After.Subscription != SubNone {
		t.Errorf("contact's side: after unsubscribe %q, after unsubscribed %q; want to, none",
			res.Unsubscribe.Receiver.After.Subscription, res.Unsubscribed.Receiver.After.Subscription)
	}
	if _, ok, _ := s.RosterItem(A, B); ok {
		t.Error("the item is still in the user's roster")
	}
	if it, ok, _ := s.RosterItem(B, A); !ok || it.Subscription != SubNone {
		t.Errorf("contact's item %+v (found %v), want subscription none", it, ok)
	}

	// Missing and hidden items: ErrNotFound, nothing changes.
	if _, err := s.Propose(RosterRemove{User: A, JID: B, ContactLocal: true}); !errors.Is(err, ErrNotFound) {
		t.Errorf("removing a missing item: %v, want ErrNotFound", err)
	}
	mustApply(t, s, RosterPut{User: A, Item: RosterItem{JID: R, Subscription: SubNone, Hidden: true, PendingIn: true}})
	ver, _, _ := s.Roster(A)
	if _, err := s.Propose(RosterRemove{User: A, JID: R}); !errors.Is(err, ErrNotFound) {
		t.Errorf("removing a hidden item: %v, want ErrNotFound", err)
	}
	if v, _, _ := s.Roster(A); v != ver {
		t.Errorf("a refused remove changed the roster version %d → %d", ver, v)
	}

	// A remote contact: only the user's side; the cancellation the
	// contact's server must get is in the result.
	mustApply(t, s, RosterPut{User: A, Item: RosterItem{JID: R, Subscription: SubFrom}})
	r, err = s.Propose(RosterRemove{User: A, JID: R})
	if err != nil {
		t.Fatal(err)
	}
	res = r.Response.(RemoveResult)
	if res.Unsubscribe != nil || res.Unsubscribed == nil || res.Unsubscribed.Receiver.Stored {
		t.Errorf("remote contact: %+v", res)
	}
	// A local contact whose account is gone gets no item.
	mustApply(t, s, RosterPut{User: A, Item: RosterItem{JID: "gone@x", Subscription: SubTo}})
	if _, err := s.Propose(RosterRemove{User: A, JID: "gone@x", ContactLocal: true}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.RosterItem("gone@x", A); ok {
		t.Error("a remove created a roster item for a missing account")
	}
}
