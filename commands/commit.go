package commands

import (
	"context"
	"errors"
	"time"

	"github.com/parley-xmpp/parley/store"
)

// settleTimeout bounds how long a command waits for the engine to act on
// its change.
const settleTimeout = time.Minute

// commit writes one change, node-local settings (store.IsLocalKey) to
// this node only, everything else through the store's log, and waits
// until every watcher (the XMPP engine, the SSH server) has processed it:
// when a command that changed the configuration ends, the change is live.
func commit(c *Ctx, op store.Op) error {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	switch o := op.(type) {
	case store.ConfigSet:
		if store.IsLocalKey(o.Key) {
			if err := c.Store.SetLocal(o.Key, o.Value); err != nil {
				return err
			}
			return settled(c.Store.Settle(ctx, 0))
		}
	case store.ConfigDel:
		if store.IsLocalKey(o.Key) {
			if err := c.Store.DelLocal(o.Key); err != nil {
				return err
			}
			return settled(c.Store.Settle(ctx, 0))
		}
	}
	_, err := c.Store.ProposeSettled(ctx, op)
	return settled(err)
}

func settled(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("the change is stored, but the server has not applied it yet: see 'xmpp' for its state")
	}
	return err
}
