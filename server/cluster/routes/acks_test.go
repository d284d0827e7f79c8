package routes

import (
	"slices"
	"testing"
	"time"

	"github.com/parley-xmpp/parley/server/cluster"
	"github.com/parley-xmpp/parley/server/cluster/routes/memmesh"
)

func (s *sess) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, el := range s.got {
		out = append(out, el.Get("id"))
	}
	slices.Sort(out)
	return out
}

// TestLostFrameRoutedAgain: a stanza lost on the link (written into a
// connection that broke) shows as a gap when the next one arrives; the
// receiving node names it, and the sending node routes it again: the
// recipient gets every message, none is stored or bounced, and nothing
// waits for an acknowledgement any more.
func TestLostFrameRoutedAgain(t *testing.T) {
	net, a, b, _ := cluster3(t)
	bob := b.bind("bob@a.lan", "desk", 1)
	net.Settle(t)
	a.r.Route(msg("chat", "bob@a.lan/desk", "1"), jid("bob@a.lan/desk"))
	net.Lose("a", "b", 1)
	a.r.Route(msg("chat", "bob@a.lan", "2"), jid("bob@a.lan"))
	a.r.Route(msg("chat", "bob@a.lan/desk", "3"), jid("bob@a.lan/desk"))
	eventually(t, "bob gets the lost message as well", func() bool { return bob.count() == 3 })
	if got := bob.ids(); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("bob got %v", got)
	}
	eventually(t, "every stanza acknowledged", func() bool { return a.t.Pending("b") == 0 })
	if a.offline.count()+b.offline.count() != 0 || len(a.bounced.conds)+len(b.bounced.conds) != 0 {
		t.Fatal("stored or bounced")
	}
}

// TestNodeGoneRoutesAgain: stanzas forwarded to a node that then becomes
// unreachable before it handled them are routed again by the sender: the
// recipient's entries on that node are gone, so the messages are stored
// offline (the recipient reconnects somewhere and gets them); an IQ is
// bounced to its sender; nothing is lost.
func TestNodeGoneRoutesAgain(t *testing.T) {
	net, a, b, _ := cluster3(t)
	b.bind("bob@a.lan", "desk", 1)
	net.Settle(t)
	net.Lose("a", "b", 3)
	a.r.Route(msg("chat", "bob@a.lan/desk", "1"), jid("bob@a.lan/desk"))
	a.r.Route(msg("normal", "bob@a.lan", "2"), jid("bob@a.lan"))
	iq := msg("", "bob@a.lan/desk", "3")
	iq.Name.Local = "iq"
	iq.Set("type", "get")
	a.r.Route(iq, jid("bob@a.lan/desk"))
	if n := a.t.Pending("b"); n != 3 {
		t.Fatalf("%d stanzas await b's acknowledgement, want 3", n)
	}
	net.Members("a", "c")
	a.t.routedAgain()
	eventually(t, "the messages stored on a", func() bool { return a.offline.count() == 2 })
	eventually(t, "the iq bounced", func() bool {
		a.bounced.mu.Lock()
		defer a.bounced.mu.Unlock()
		return slices.Equal(a.bounced.conds, []string{"iq service-unavailable"})
	})
	if n := a.t.Pending("b"); n != 0 {
		t.Fatalf("%d stanzas still await b", n)
	}
}

// TestUnacknowledgedRoutedAgain: the last stanzas before a connection
// broke leave no gap to see (nothing follows them); unacknowledged after
// AckTimeout, they are routed again, and reach the recipient.
func TestUnacknowledgedRoutedAgain(t *testing.T) {
	net := memmesh.New()
	short := func(c *Config) { c.AckTimeout = 200 * time.Millisecond }
	a, b := newNodeWith(t, net, "a", short), newNodeWith(t, net, "b", short)
	net.Members("a", "b")
	bob := b.bind("bob@a.lan", "desk", 1)
	net.Settle(t)
	net.Lose("a", "b", 1)
	a.r.Route(msg("chat", "bob@a.lan/desk", "1"), jid("bob@a.lan/desk"))
	if bob.count() != 0 || a.t.Pending("b") != 1 {
		t.Fatal("the stanza was not lost as the test means")
	}
	eventually(t, "bob gets it after the timeout", func() bool { return bob.count() == 1 })
	eventually(t, "acknowledged", func() bool { return a.t.Pending("b") == 0 })
	if a.offline.count() != 0 {
		t.Fatal("stored as well")
	}
}

// TestGotTracked: the receiving side's numbering: from 1 (numbers before
// the first seen are lost), a gap is named (and widened past maxLost
// gaps), a number seen before is not handled twice, a new numbering (the
// sender forgot this node and starts afresh) starts again.
func TestGotTracked(t *testing.T) {
	tb := &Table{}
	for _, c := range []struct {
		id, seq uint64
		ok      bool
		lost    []gap
	}{
		{7, 1, true, nil},
		{7, 2, true, nil},
		{7, 2, false, nil},
		{7, 5, true, []gap{{from: 3, to: 4}}},
		{7, 3, false, []gap{{from: 3, to: 4}}},
		{7, 6, true, []gap{{from: 3, to: 4}}},
		{9, 1, true, nil},
		{11, 3, true, []gap{{from: 1, to: 2}}},
	} {
		if ok := tb.gotTracked("x", c.id, c.seq); ok != c.ok {
			t.Fatalf("%d/%d: %v", c.id, c.seq, ok)
		}
		r := tb.receivedOf("x")
		if !slices.Equal(r.lost, c.lost) {
			t.Fatalf("after %d/%d: lost %v, want %v", c.id, c.seq, r.lost, c.lost)
		}
	}
	for i := uint64(0); i < maxLost+5; i++ {
		tb.gotTracked("x", 11, 12+2*i)
	}
	r := tb.receivedOf("x")
	if len(r.lost) != maxLost || r.lost[maxLost-1].to != 12+2*(maxLost+4)-1 {
		t.Fatalf("%d gaps, last %v", len(r.lost), r.lost[len(r.lost)-1])
	}
}

// TestReconnectProbe: the last stanza before a connection broke is lost
// and nothing follows it; when the connection is made again, the sending
// node's probe shows the gap, and the stanza is routed again at once (not
// after AckTimeout).
func TestReconnectProbe(t *testing.T) {
	net, a, b, _ := cluster3(t)
	bob := b.bind("bob@a.lan", "desk", 1)
	net.Settle(t)
	net.Lose("a", "b", 1)
	a.r.Route(msg("chat", "bob@a.lan/desk", "1"), jid("bob@a.lan/desk"))
	if bob.count() != 0 {
		t.Fatal("not lost")
	}
	start := time.Now()
	net.Reconnected("a", "b")
	eventually(t, "bob gets it after the reconnection", func() bool { return bob.count() == 1 })
	if d := time.Since(start); d > AckTimeout/2 {
		t.Fatalf("routed again after %v: by the timeout, not the probe", d)
	}
	eventually(t, "probe and stanza acknowledged", func() bool { return a.t.Pending("b") == 0 })
}

// TestReconnectResync: a route change lost on a broken connection (bob's
// bind on b never reaches a) is sent again when b's connection to a is
// made again: b sends its whole share.
func TestReconnectResync(t *testing.T) {
	net, a, b, _ := cluster3(t)
	net.LoseOn("b", "a", cluster.ChanRoutes, 2) // the bind and the presence
	b.bind("bob@a.lan", "desk", 1)
	net.Settle(t)
	if _, ok := a.t.Resource("bob@a.lan", "desk"); ok {
		t.Fatal("not lost")
	}
	net.Reconnected("b", "a")
	eventually(t, "a learns of bob/desk", func() bool {
		n, ok := a.t.Resource("bob@a.lan", "desk")
		return ok && n == "b"
	})
}
