package im

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/server/metrics"
	"github.com/parley-xmpp/parley/server/router"
	"github.com/parley-xmpp/parley/server/stream"
	"github.com/parley-xmpp/parley/server/xml"
	"github.com/parley-xmpp/parley/store"
)

// offlineModule keeps messages for accounts with no session to take them
// (the router's Offline: XEP-0160, with a delay stamp, XEP-0203) and
// delivers them when a session becomes available (flushOffline, from the
// presence module).
func (s *Service) offlineModule(m *Module) {
	s.Router.Offline = offlineStore{s}
	m.Feature(Server, "msgoffline")
	m.Feature(Server, "urn:xmpp:delay")
	m.OnUnbound(s.waitFlush)
}

// offlineStore is the router's Offline.
type offlineStore struct{ s *Service }

func (o offlineStore) Exists(bare string) bool { return o.s.accountExists(bare) }

func (o offlineStore) Store(el *xml.Element, to router.JID) {
	o.s.storeOffline(el, addr{bare: to.Bare, resource: to.Resource, domain: to.Domain, local: to.Local})
}

// storeOffline keeps a message for an offline user (XEP-0160), durably,
// with a delay stamp; a full queue bounces it.
func (s *Service) storeOffline(el *xml.Element, to addr) {
	// Nothing without a body or a payload worth keeping (chat states alone).
	keep := false
	for _, c := range el.Elements() {
		keep = keep || c.Name.Space != nsChatStates
	}
	if !keep {
		return
	}
	// The recipient may have come online since the targets were chosen;
	// initial presence flushes under the same lock, so look again here.
	mu := s.offlineLock(to.bare)
	mu.Lock()
	defer mu.Unlock()
	typ := el.Get("type")
	if typ == "" {
		typ = "normal"
	}
	if s.Router.DeliverMessage(el, to.bare, typ) {
		return
	}
	c := el.Copy()
	c.Add(xml.New("urn:xmpp:delay", "delay", "from", to.domain, "stamp", time.Now().UTC().Format("2006-01-02T15:04:05.000Z")).AddText("Offline storage"))
	// Once: a commit whose outcome is unknown (the leader of a cluster
	// died meanwhile) is settled rather than bounced, so the message is
	// neither lost nor stored twice.
	ctx, cancel := context.WithTimeout(context.Background(), offlineStoreWait)
	_, err := s.Store.ProposeOnce(ctx, store.OfflinePush{User: to.bare, Stanza: c.Bytes(stream.NSClient)})
	cancel()
	if err != nil {
		s.logLimit("im: offline messages for "+to.bare+" not stored", "im: offline message for %s not stored: %v", to.bare, err)
		if errors.Is(err, store.ErrFull) {
			s.bounce(el, "service-unavailable", "the recipient's offline storage is full")
			return
		}
		// The log did not commit it (in a cluster: no quorum): the
		// sender may try again later.
		s.bounce(el, "resource-constraint", "the recipient is offline and the message could not be stored now: try again later")
	} else {
		metrics.OfflineStored()
	}
}

// The offline flush (XEP-0160): stored messages go to a session that
// became available, at the pace its writer takes them, and are deleted
// from the store only once written. A flush fills the session's queue up
// to flushHigh bytes, waits for the writer to bring it down to flushLow,
// and goes on, a page of the store at a time, so live traffic keeps room
// in the queue and a slow client is never overflowed by its own backlog.
// If the session ends first, what was not written stays stored and goes
// to another available resource of the user, or to the next login.
// offlineStoreWait bounds how long storing an offline message may settle
// a commit whose outcome is unknown (store.ProposeOnce).
const offlineStoreWait = 5 * time.Second

const (
	flushHigh = 512 << 10
	flushLow  = 128 << 10
	flushPage = 64 // messages read from the store at a time
)

// flusher is one running flush. It is the Pacer of the session's
// connection: the writer tells it what was written and when to go on.
type flusher struct {
	s       *Service
	sess    router.Session
	out     *stream.Conn
	written atomic.Uint64 // the highest sequence number written
	again   atomic.Bool   // a message was stored meanwhile (OfflineStored): look again at the end
	wake    chan struct{}
	done    chan struct{} // closed when the flush is over and its deletions made
}

func (f *flusher) Written(seq uint64) {
	f.written.Store(seq)
	f.poke()
}

func (f *flusher) Low() { f.poke() }

func (f *flusher) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// flushOffline starts delivering stored messages to a session that became
// available with a non-negative priority. There is one flush per user at a
// time: a second session gets what the first cannot take.
func (s *Service) flushOffline(sess router.Session) {
	bare := sess.Bare()
	s.flushMu.Lock()
	if s.flushing[bare] != nil || sess.Out().Closing() {
		s.flushMu.Unlock()
		return
	}
	mu := s.offlineLock(bare)
	mu.Lock()
	page, err := s.Store.OfflineAfter(bare, 0, flushPage)
	mu.Unlock()
	if err != nil || len(page) == 0 {
		s.flushMu.Unlock()
		if err != nil {
			logging.Problem(s.Log, "im: offline messages of %s cannot be read: %v", bare, err)
		}
		return
	}
	if s.flushing == nil {
		s.flushing = map[string]*flusher{}
	}
	f := &flusher{s: s, sess: sess, out: sess.Out(), wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.flushing[bare] = f
	s.flushMu.Unlock()
	go f.run(page)
}

// run sends the stored messages, page after page, as the writer takes
// them, deleting what was written as it goes.
func (f *flusher) run(page []store.OfflineMessage) {
	defer close(f.done)
	s, bare := f.s, f.sess.Bare()
	f.out.SetPacer(f, flushLow)
	var queued, deleted uint64 // the last sequence number queued, and deleted
	var sent []uint64          // the sequence numbers queued and not yet counted as delivered
	more := len(page) == flushPage
	ended := false
	outDone := f.out.Done()
	for !ended {
		for len(page) > 0 && f.out.Queued() < flushHigh {
			if !f.out.SendTracked(page[0].Stanza, page[0].Seq) {
				ended = true // the session is closing: the rest stays stored
				break
			}
			queued, page = page[0].Seq, page[1:]
			sent = append(sent, queued)
		}
		if len(page) == 0 && more && !ended {
			var err error
			page, err = s.Store.OfflineAfter(bare, queued, flushPage)
			if err != nil {
				logging.Problem(s.Log, "im: offline messages of %s cannot be read: %v", bare, err)
			}
			more = len(page) == flushPage
			if len(page) > 0 {
				continue
			}
		}
		if w := f.written.Load(); w > deleted {
			f.delete(w)
			deleted = w
			sent = delivered(sent, w)
		}
		if len(page) == 0 && !more && deleted >= queued {
			break // all written and deleted
		}
		select {
		case <-f.wake:
		case <-outDone:
			ended = true
		}
	}
	if ended {
		<-outDone // no more Written calls after this
	}
	f.out.SetPacer(nil, 0)
	if w := f.written.Load(); w > deleted {
		f.delete(w)
		delivered(sent, w)
	}
	s.flushMu.Lock()
	delete(s.flushing, bare)
	s.flushMu.Unlock()
	if !ended && f.again.Load() {
		s.OfflineStored(bare)
	}
	if ended {
		// What was not written goes to another available resource, if
		// there is one; otherwise it waits for the next login.
		for _, t := range s.Router.Targets(bare, "normal") {
			if t != f.sess && !t.Out().Closing() {
				s.flushOffline(t)
				break
			}
		}
	}
}

// OfflineStored is told of every message stored offline once the store
// has committed it (on every node of a cluster). When the user has a
// session here that takes messages, the message goes to it at once: on a
// cluster, the node that stored it may not have known yet of a session
// bound here a moment before, and that session's flush, at its initial
// presence, may have read the store before the message was committed.
// Standalone, storing and the flush are ordered by the offline lock, and
// nothing is found here.
func (s *Service) OfflineStored(bare string) {
	if !s.Router.HasAvailable(bare) {
		return // the common case, on every node: the user is not here
	}
	targets := s.Router.Targets(bare, "normal")
	if len(targets) == 0 {
		return
	}
	s.flushMu.Lock()
	if f := s.flushing[bare]; f != nil {
		f.again.Store(true)
		s.flushMu.Unlock()
		return
	}
	s.flushMu.Unlock()
	for _, t := range targets {
		if !t.Out().Closing() {
			s.flushOffline(t)
			return
		}
	}
}

// delivered counts the messages of sent (sequence numbers, increasing)
// up to written as delivered, and returns the rest.
func delivered(sent []uint64, written uint64) []uint64 {
	n := 0
	for n < len(sent) && sent[n] <= written {
		n++
	}
	metrics.OfflineDelivered(n)
	return sent[n:]
}

// waitFlush waits for the flush to a session that ended, if one runs: its
// last deletions are made before the session is gone (and before the
// engine stops and closes the store).
func (s *Service) waitFlush(sess router.Session) {
	s.flushMu.Lock()
	f := s.flushing[sess.Bare()]
	s.flushMu.Unlock()
	if f != nil && f.sess == sess {
		<-f.done
	}
}

// delete removes the stored messages up to seq: they are written.
func (f *flusher) delete(seq uint64) {
	if _, err := f.s.Store.Propose(store.OfflineDel{User: f.sess.Bare(), Through: seq}); err != nil {
		logging.Problem(f.s.Log, "im: delivered offline messages of %s not deleted: %v", f.sess.Bare(), err)
	}
}
