package server

import (
	"crypto/rand"
	"errors"

	"github.com/parley-xmpp/parley/server/logging"
	"github.com/parley-xmpp/parley/store"
)

// The files the configuration uses (store.FilePut) are written into this
// node's files area, where the engine, the cluster transport and the
// shell read them: at each FilePut, after a restore (a node that joins a
// cluster gets them in the snapshot) and at start. A file already there
// with the same bytes is left alone (its modification time too); one that
// differs is replaced (the store's copy is the cluster's), and the log
// says so. At the start of a standalone appliance only missing files are
// written: a file the admin replaced over SFTP stays as it is, as it did
// before the store held copies.

// putFile writes one stored file into the files area if it is missing or,
// unless onlyMissing, different.
func (e *Engine) putFile(f store.StoredFile, onlyMissing bool) {
	had := e.cfg.Files.Exists(f.Name)
	if had && onlyMissing {
		return
	}
	changed, err := e.cfg.Files.Put(f.Name, f.Data, f.Mode)
	switch {
	case err != nil:
		logging.Problem(e.cfg.Log, "xmpp: writing %s from the replicated store into the files area: %v", f.Name, err)
	case changed && had:
		logging.Major(e.cfg.Log, "xmpp: %s in the files area replaced by the copy in the replicated store", f.Name)
	}
}

// putFiles writes every stored file into the files area (at start and
// after a restore).
func (e *Engine) putFiles(onlyMissing bool) {
	fs, err := e.cfg.Store.StoredFiles()
	if err != nil {
		logging.Problem(e.cfg.Log, "xmpp: reading the replicated files: %v", err)
		return
	}
	for _, f := range fs {
		e.putFile(f, onlyMissing)
	}
}

// dialbackSecret is the cluster's dialback secret (server/s2s asks for it
// when it makes or checks a key): the one in the store, proposed there
// the first time it is needed. If it cannot be stored (no cluster leader),
// a secret of this process is used meanwhile: its keys verify on this
// node only.
func (e *Engine) dialbackSecret() []byte {
	if s := e.secret.Load(); s != nil {
		return *s
	}
	s, err := e.cfg.Store.DialbackSecret()
	if errors.Is(err, store.ErrNoSecret) {
		fresh := make([]byte, store.DialbackSecretSize)
		rand.Read(fresh)
		if _, perr := e.cfg.Store.Propose(store.DialbackSecretInit{Secret: fresh}); perr != nil {
			logging.Problem(e.cfg.Log, "xmpp: storing the dialback secret: %v; this node uses its own until it can", perr)
			return e.localSecret()
		}
		s, err = e.cfg.Store.DialbackSecret() // the first one proposed, maybe another node's
	}
	if err != nil {
		logging.Problem(e.cfg.Log, "xmpp: reading the dialback secret: %v", err)
		return e.localSecret()
	}
	e.secret.Store(&s)
	return s
}

// localSecret is this process's fallback dialback secret.
func (e *Engine) localSecret() []byte {
	e.localOnce.Do(func() {
		e.local = make([]byte, store.DialbackSecretSize)
		rand.Read(e.local)
	})
	return e.local
}
