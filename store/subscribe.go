package store

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Directions of a RosterSubscribe.
const (
	// SubOutbound: From, a local user, sent the subscription presence to
	// To. From's roster changes, and To's too when To is local.
	SubOutbound = "outbound"
	// SubInbound: To, a local user, received it from From (a remote
	// user: a local sender's presence is SubOutbound).
	SubInbound = "inbound"
)

// RosterSubscribe is the intent op of one subscription presence
// (subscribe, subscribed, unsubscribe, unsubscribed; RFC 6121 §3 and
// Appendix A): the FSM reads both users' roster items and computes the
// new ones inside the transaction, so concurrent changes never lose each
// other's update. The response is a SubscribeResult: what changed and what
// the caller must send.
type RosterSubscribe struct {
	From      string `json:"from"` // bare JIDs
	To        string `json:"to"`
	Type      string `json:"type"`
	Direction string `json:"direction"`
	FromLocal bool   `json:"from_local,omitempty"` // From is hosted here
	ToLocal   bool   `json:"to_local,omitempty"`   // To is hosted here
	// Stanza is the presence as delivered to To (from and to set), kept
	// with a subscribe request until To answers; one longer than
	// MaxRequestBytes is kept as a plain request.
	Stanza          []byte `json:"stanza,omitempty"`
	MaxRequestBytes int    `json:"max_request_bytes,omitempty"`
	// MaxStrangerRequests caps the requests from remote senders not in
	// To's roster that may wait in it; more are dropped.
	MaxStrangerRequests int `json:"max_stranger_requests,omitempty"`
}

// RosterChange is one side of a subscription change: a user's item for
// the other party, before and after.
type RosterChange struct {
	User          string
	Before, After RosterItem
	Existed       bool  // the item existed before
	Stored        bool  // After was written (push it, unless hidden)
	Err           error // writing failed (the roster is full); the rest went on
}

// PresenceNote asks the caller to send every available resource's
// presence of Of to To (or unavailable presence, if not Available).
type PresenceNote struct {
	Of, To    string
	Available bool
}

// SubscribeResult is a RosterSubscribe's response.
type SubscribeResult struct {
	Sender   RosterChange // From's item for To (SubOutbound)
	Receiver RosterChange // To's item for From (To local)
	// AutoReply: To had already approved From; To's server answers
	// "subscribed" for To instead of delivering the request. When From is
	// local (SubOutbound) the answer is applied to From's roster in the
	// same op (Sender is the item after it) and Replied is set; a remote
	// From's server gets the answer from the caller.
	AutoReply bool
	Replied   bool
	Deliver   bool // deliver the stanza to To's available resources
	Dropped   bool // a stranger's request over the cap: nothing changed
	// Presence is what to send after delivering, in order.
	Presence []PresenceNote
}

// RosterSet is a roster set (RFC 6121 §2.3) of one item's name and groups:
// the FSM keeps the item's subscription state as it is now. The response
// is the stored RosterItem.
type RosterSet struct {
	User   string   `json:"user"`
	JID    string   `json:"jid"`
	Name   string   `json:"name,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

func (RosterSubscribe) Kind() OpKind { return "roster.subscribe" }
func (RosterSet) Kind() OpKind       { return "roster.set" }

func (o RosterSet) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	if o.User == "" || o.JID == "" {
		return nil, errors.New("roster.set needs a user and a JID")
	}
	it, ok, err := getRosterItem(tx, o.User, o.JID)
	if err != nil {
		return nil, err
	}
	if !ok {
		it = RosterItem{JID: o.JID, Subscription: SubNone}
	}
	it.Name, it.Groups, it.Hidden = o.Name, o.Groups, false
	return it, putRosterItem(tx, o.User, it)
}

// Subscribe proposes a RosterSubscribe and returns its result.
func (s *Store) Subscribe(op RosterSubscribe) (SubscribeResult, error) {
	r, err := s.Propose(op)
	if err != nil {
		return SubscribeResult{}, err
	}
	res, _ := r.Response.(SubscribeResult)
	return res, nil
}

func (o RosterSubscribe) apply(tx *bolt.Tx, _ time.Time) (any, error) {
	var res SubscribeResult
	switch o.Type {
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
	default:
		return nil, fmt.Errorf("roster.subscribe: bad type %q", o.Type)
	}
	if o.From == "" || o.To == "" || o.From == o.To {
		return nil, errors.New("roster.subscribe needs two different bare JIDs")
	}
	switch o.Direction {
	case SubOutbound:
		if err := o.outbound(tx, &res); err != nil {
			return nil, err
		}
		if o.ToLocal {
			if err := o.inbound(tx, &res); err != nil {
				return nil, err
			}
			if res.AutoReply {
				return res, autoReplied(tx, &res)
			}
		}
	case SubInbound:
		return res, o.inbound(tx, &res)
	default:
		return nil, fmt.Errorf("roster.subscribe: bad direction %q", o.Direction)
	}
	return res, nil
}

// side reads user's item for jid (a new one with subscription none if
// there is none).
func side(tx *bolt.Tx, user, jid string) (RosterChange, error) {
	it, ok, err := getRosterItem(tx, user, jid)
	if !ok {
		it = RosterItem{JID: jid, Subscription: SubNone}
	}
	return RosterChange{User: user, Before: cloneItem(it), After: it, Existed: ok}, err
}

// store writes c.After; a full roster is reported in c.Err, not as the
// op's error, as the sender's side must not undo the receiver's.
func (c *RosterChange) store(tx *bolt.Tx) error {
	err := putRosterItem(tx, c.User, c.After)
	if errors.Is(err, ErrFull) {
		c.Err = err
		return nil
	}
	c.Stored = err == nil
	return err
}

// storeIfChanged writes c.After unless it is c.Before.
func (c *RosterChange) storeIfChanged(tx *bolt.Tx) error {
	if sameItem(c.Before, c.After) {
		return nil
	}
	return c.store(tx)
}

// outbound applies the presence to the sender's own roster (RFC 6121
// §3.1.2, §3.1.5, §3.2.2, §3.3.2).
func (o RosterSubscribe) outbound(tx *bolt.Tx, res *SubscribeResult) error {
	c, err := side(tx, o.From, o.To)
	if err != nil {
		return err
	}
	it := &c.After
	switch o.Type {
	case "subscribe":
		if it.Subscription == SubTo || it.Subscription == SubBoth {
			break // already subscribed: nothing changes on the user's side
		}
		it.Ask, it.Hidden = true, false
	case "unsubscribe":
		it.Ask = false
		it.Subscription = dropTo(it.Subscription)
	case "subscribed":
		if it.PendingIn {
			it.Subscription = addFrom(it.Subscription)
		}
		it.PendingIn, it.PendingInMsg, it.Hidden = false, nil, false
	case "unsubscribed":
		it.Subscription = dropFrom(it.Subscription)
		it.PendingIn, it.PendingInMsg = false, nil
	}
	res.Sender = c
	return res.Sender.storeIfChanged(tx)
}

// inbound applies the presence to the receiver's roster (RFC 6121 §3, the
// contact's side) and says whether to deliver it and what presence
// follows.
func (o RosterSubscribe) inbound(tx *bolt.Tx, res *SubscribeResult) error {
	user, from := o.To, o.From
	c, err := side(tx, user, from)
	if err != nil {
		return err
	}
	ct, before := &c.After, c.Before
	deliver := true
	switch o.Type {
	case "subscribe":
		if ct.Subscription == SubFrom || ct.Subscription == SubBoth {
			// Already approved: answer for the user (RFC 6121 §3.1.3).
			deliver = false
			res.AutoReply = true
			break
		}
		if !c.Existed && !o.FromLocal && o.MaxStrangerRequests > 0 && strangerRequests(tx, user) >= o.MaxStrangerRequests {
			// Requests from other servers cannot fill the roster.
			res.Receiver, res.Dropped = c, true
			return nil
		}
		if !c.Existed || (before.Subscription == SubNone && !before.Ask && before.Hidden) {
			ct.Hidden = true
		}
		ct.PendingIn = true
		ct.PendingInMsg = o.Stanza
		if o.MaxRequestBytes > 0 && len(ct.PendingInMsg) > o.MaxRequestBytes {
			ct.PendingInMsg = nil // kept as a plain request
		}
	case "unsubscribe":
		ct.Subscription = dropFrom(ct.Subscription)
		ct.PendingIn, ct.PendingInMsg = false, nil
		if before.Subscription == SubFrom || before.Subscription == SubBoth {
			// The user's presence no longer goes to the sender (§3.3.3).
			res.Presence = append(res.Presence, PresenceNote{Of: user, To: from, Available: false})
		}
	case "subscribed":
		if !ct.Ask {
			deliver = false // nothing was asked: ignore (RFC 6121 §3.1.6)
			break
		}
		ct.Ask = false
		ct.Subscription = addTo(ct.Subscription)
		if o.FromLocal { // a remote sender's server sends its presence
			res.Presence = append(res.Presence, PresenceNote{Of: from, To: user, Available: true})
		}
	case "unsubscribed":
		ct.Ask = false
		ct.Subscription = dropTo(ct.Subscription)
		if o.FromLocal {
			res.Presence = append(res.Presence, PresenceNote{Of: from, To: user, Available: false})
		}
	}
	res.Deliver = deliver
	res.Receiver = c
	if !c.Existed && ct.Subscription == SubNone && !ct.PendingIn {
		return nil // nothing worth a new item
	}
	return res.Receiver.storeIfChanged(tx)
}

// autoReplied applies the answer "subscribed" of a contact who had
// already approved the sender (RFC 6121 §3.1.3) to the sender's item, in
// the op of the request: the sender had asked, so it is now subscribed.
func autoReplied(tx *bolt.Tx, res *SubscribeResult) error {
	c := &res.Sender
	res.Replied = true
	if !c.After.Ask {
		return nil
	}
	c.After.Ask = false
	c.After.Subscription = addTo(c.After.Subscription)
	return c.storeIfChanged(tx)
}

// RosterRemove is the intent op of a roster remove (RFC 6121 §2.5.2): in
// one transaction, the user's subscriptions with the contact are
// cancelled both ways (an "unsubscribe" if the user is subscribed to the
// contact or asked to be, an "unsubscribed" if the contact is subscribed
// to the user or asked to be), each applied to the contact's roster too
// when the contact is an account here, and the item is deleted. A missing
// or hidden item is ErrNotFound and changes nothing. The response is a
// RemoveResult.
type RosterRemove struct {
	User string `json:"user"`
	JID  string `json:"jid"`
	// ContactLocal: the contact's domain is hosted here (its roster
	// changes too, if the account exists).
	ContactLocal bool `json:"contact_local,omitempty"`
}

// RemoveResult is what a RosterRemove did: the item removed, and the
// outcome of each cancellation it sent (nil: not sent), for the caller to
// deliver as for any subscription presence.
type RemoveResult struct {
	Item         RosterItem
	Unsubscribe  *SubscribeResult
	Unsubscribed *SubscribeResult
}

func (RosterRemove) Kind() OpKind { return "roster.remove" }

func (o RosterRemove) apply(tx *bolt.Tx, at time.Time) (any, error) {
	if o.User == "" || o.JID == "" || o.User == o.JID {
		return nil, errors.New("roster.remove needs two different bare JIDs")
	}
	it, ok, err := getRosterItem(tx, o.User, o.JID)
	if err != nil {
		return nil, err
	}
	if !ok || it.Hidden {
		return nil, fmt.Errorf("roster item %s: %w", o.JID, ErrNotFound)
	}
	res := RemoveResult{Item: it}
	// The contact's side changes only for an account that exists here
	// (a subscription presence to a missing local account goes nowhere).
	toLocal := o.ContactLocal && tx.Bucket(bucketAccounts).Get([]byte(o.JID)) != nil
	cancel := func(typ string) (*SubscribeResult, error) {
		r, err := RosterSubscribe{From: o.User, To: o.JID, Type: typ, Direction: SubOutbound, FromLocal: true, ToLocal: toLocal}.apply(tx, at)
		if err != nil {
			return nil, err
		}
		sr := r.(SubscribeResult)
		return &sr, nil
	}
	if it.Subscription == SubTo || it.Subscription == SubBoth || it.Ask {
		if res.Unsubscribe, err = cancel("unsubscribe"); err != nil {
			return nil, err
		}
	}
	if it.Subscription == SubFrom || it.Subscription == SubBoth || it.PendingIn {
		if res.Unsubscribed, err = cancel("unsubscribed"); err != nil {
			return nil, err
		}
	}
	if _, err := (RosterDel{User: o.User, JID: o.JID}).apply(tx, at); err != nil {
		return nil, err
	}
	return res, nil
}

// strangerRequests counts the requests waiting in user's roster from
// entities not otherwise in it (the hidden items).
func strangerRequests(tx *bolt.Tx, user string) int {
	b := tx.Bucket(bucketRosters).Bucket([]byte(user))
	if b == nil {
		return 0
	}
	n := 0
	b.ForEach(func(k, v []byte) error {
		var it RosterItem
		if jsonUnmarshal(v, &it) == nil && it.Hidden && it.PendingIn {
			n++
		}
		return nil
	})
	return n
}

func cloneItem(it RosterItem) RosterItem {
	it.Groups = slices.Clone(it.Groups)
	it.PendingInMsg = bytes.Clone(it.PendingInMsg)
	return it
}

func sameItem(a, b RosterItem) bool {
	return a.JID == b.JID && a.Name == b.Name && a.Subscription == b.Subscription && a.Ask == b.Ask &&
		a.PendingIn == b.PendingIn && a.Hidden == b.Hidden && slices.Equal(a.Groups, b.Groups) &&
		bytes.Equal(a.PendingInMsg, b.PendingInMsg)
}

// Subscription state changes (RFC 6121 §3, Appendix A).
func addTo(sub string) string {
	switch sub {
	case SubNone:
		return SubTo
	case SubFrom:
		return SubBoth
	}
	return sub
}

func addFrom(sub string) string {
	switch sub {
	case SubNone:
		return SubFrom
	case SubTo:
		return SubBoth
	}
	return sub
}

func dropTo(sub string) string {
	switch sub {
	case SubTo:
		return SubNone
	case SubBoth:
		return SubFrom
	}
	return sub
}

func dropFrom(sub string) string {
	switch sub {
	case SubFrom:
		return SubNone
	case SubBoth:
		return SubTo
	}
	return sub
}
