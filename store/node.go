package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// NodeFileName is the node-local store's bbolt file inside the data
// directory. What is in it belongs to this node only: it never goes
// through the log and is not in snapshots.
//
//   - shell history, per admin user: what was typed on this appliance;
//   - last login, per admin user: a login counter of this appliance (it
//     changes at every login, which must not cost a replicated write);
//   - the audit trail (since schema 5): what was done on this appliance,
//     by whom; a read-only command costs no replicated write, and the
//     trail is written even when the cluster has no quorum;
//   - node-local settings (IsLocalKey): xmpp.listen names this node's
//     addresses or interfaces, hostname is this node's prompt,
//     xmpp.enabled says whether the engine runs on this node (CMS's
//     xmpp enable/disable act where they are typed), cluster.trust names
//     the bundle this node trusts its peers by;
//   - whether this node is in a cluster (SetClustered): the guard that
//     keeps local commits out of a cluster's store.
const NodeFileName = "node.db"

var (
	nodeConfig  = []byte("config")
	nodeHistory = []byte("history")
	nodeLogins  = []byte("logins")
	nodeAudit   = []byte("audit")
	nodeMeta    = []byte("meta")

	keyClustered = []byte("clustered")
)

// ClusterTrust is the node-local setting naming the cluster trust bundle
// (xmpp cluster trust), a file in the files area.
const ClusterTrust = "cluster.trust"

// ClusterPort is the node-local setting of the cluster listener's port
// (xmpp cluster port); unset: the cluster package's default.
const ClusterPort = "cluster.port"

// MetricsListen is the node-local setting of the address the Prometheus
// metrics are served on (metrics listen); unset: nowhere.
const MetricsListen = "metrics.listen"

// IsLocalKey reports whether a configuration key is node-local: set with
// SetLocal, never through the log.
func IsLocalKey(key string) bool {
	switch key {
	case XMPPListen, XMPPEnabled, ConfigHostname, ClusterTrust, ClusterPort, MetricsListen,
		LogLevel, LogBodies, SyslogEnabled, SyslogServers, SyslogAudit:
		return true
	}
	return false
}

func openNode(dir string) (*bolt.DB, error) {
	db, err := openBolt(filepath.Join(dir, NodeFileName))
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{nodeConfig, nodeHistory, nodeLogins, nodeAudit, nodeMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// moveNodeLocal is the migration to schema 4: shell history, admins' last
// login and node-local settings move from the replicated file to node.db.
// node.db is written (and synced) first; if the replicated file's
// transaction then fails, running it again copies the same data again.
// A restored snapshot (restored) is not this node's: what it holds of
// node-local data is dropped, not copied into node.db.
func (s *Store) moveNodeLocal(tx *bolt.Tx, restored bool) error {
	cfg := tx.Bucket(bucketConfig)
	admins := tx.Bucket(bucketAdmins)
	hist := tx.Bucket(bucketHistory)
	type login struct {
		LastLogin time.Time `json:"last_login"`
	}
	rewrite := map[string][]byte{}
	err := s.node.Update(func(ntx *bolt.Tx) error {
		if err := cfg.ForEach(func(k, v []byte) error {
			if IsLocalKey(string(k)) && !restored {
				return ntx.Bucket(nodeConfig).Put(k, v)
			}
			return nil
		}); err != nil {
			return err
		}
		if err := admins.ForEach(func(k, v []byte) error {
			var l login
			var a Admin
			if err := json.Unmarshal(v, &l); err != nil {
				return fmt.Errorf("admin %s: %w", k, err)
			}
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("admin %s: %w", k, err)
			}
			if !l.LastLogin.IsZero() && !restored {
				if err := putJSON(ntx.Bucket(nodeLogins), string(k), l.LastLogin); err != nil {
					return err
				}
			}
			data, err := json.Marshal(a) // without last_login
			rewrite[string(k)] = data
			return err
		}); err != nil {
			return err
		}
		if hist == nil || restored {
			return nil
		}
		return hist.ForEach(func(user, _ []byte) error {
			from := hist.Bucket(user)
			if from == nil {
				return nil
			}
			to, err := ntx.Bucket(nodeHistory).CreateBucketIfNotExists(user)
			if err != nil {
				return err
			}
			return copySeq(from, to)
		})
	})
	if err != nil {
		return err
	}
	for k, v := range rewrite {
		if err := admins.Put([]byte(k), v); err != nil {
			return err
		}
	}
	var local [][]byte
	cfg.ForEach(func(k, _ []byte) error {
		if IsLocalKey(string(k)) {
			local = append(local, append([]byte(nil), k...))
		}
		return nil
	})
	for _, k := range local {
		if err := cfg.Delete(k); err != nil {
			return err
		}
	}
	if hist != nil {
		return tx.DeleteBucket(bucketHistory)
	}
	return nil
}

// copySeq copies a sequence-keyed bucket's entries into to, and keeps
// to's sequence at least from's, so later appends do not reuse keys.
func copySeq(from, to *bolt.Bucket) error {
	if err := from.ForEach(func(k, v []byte) error { return to.Put(k, v) }); err != nil {
		return err
	}
	return to.SetSequence(max(to.Sequence(), from.Sequence()))
}

// SetLocal sets a node-local setting (IsLocalKey) on this node only.
// Watchers get a Change with Local set and a ConfigSet op.
func (s *Store) SetLocal(key, value string) error {
	return s.setLocal(ConfigSet{Key: key, Value: value}, key, []byte(value))
}

// DelLocal deletes a node-local setting.
func (s *Store) DelLocal(key string) error {
	return s.setLocal(ConfigDel{Key: key}, key, nil)
}

func (s *Store) setLocal(op Op, key string, value []byte) error {
	if !IsLocalKey(key) {
		return fmt.Errorf("store: %s is not a node-local setting", key)
	}
	err := s.node.Update(func(tx *bolt.Tx) error {
		if value == nil {
			return tx.Bucket(nodeConfig).Delete([]byte(key))
		}
		return tx.Bucket(nodeConfig).Put([]byte(key), value)
	})
	if err != nil {
		return err
	}
	s.notes.enqueue([]Change{{Time: time.Now().UTC(), Op: op, Local: true}}, 0)
	return nil
}

// localConfig returns a node-local setting and whether it is set.
func (s *Store) localConfig(key string) (string, bool) {
	var v []byte
	s.node.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(nodeConfig).Get([]byte(key)); b != nil {
			v = append([]byte(nil), b...)
		}
		return nil
	})
	return string(v), v != nil
}

// AddHistory appends a line to an admin user's shell history on this
// node, keeping the last HistoryLimit lines.
func (s *Store) AddHistory(user, line string) error {
	return s.node.Update(func(tx *bolt.Tx) error {
		h, err := tx.Bucket(nodeHistory).CreateBucketIfNotExists([]byte(user))
		if err != nil {
			return err
		}
		n, _ := h.NextSequence()
		if err := h.Put(seqKey(n), []byte(line)); err != nil {
			return err
		}
		return trimSeq(h, n, HistoryLimit)
	})
}

// History returns a user's shell history on this node, oldest first.
func (s *Store) History(user string) ([]string, error) {
	var out []string
	err := s.node.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(nodeHistory).Bucket([]byte(user))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out = append(out, string(v))
			return nil
		})
	})
	return out, err
}

// RecordLogin records an admin user's successful login on this node.
func (s *Store) RecordLogin(user string, at time.Time) error {
	return s.node.Update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(nodeLogins), user, at.UTC())
	})
}

// lastLogin returns an admin user's last login on this node.
func (s *Store) lastLogin(user string) time.Time {
	var t time.Time
	s.node.View(func(tx *bolt.Tx) error {
		_, err := getJSON(tx.Bucket(nodeLogins), user, &t)
		return err
	})
	return t
}

// dropNodeUser deletes a deleted admin user's node-local data.
func (s *Store) dropNodeUser(user string) {
	s.node.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(nodeHistory).Bucket([]byte(user)) != nil {
			tx.Bucket(nodeHistory).DeleteBucket([]byte(user))
		}
		return tx.Bucket(nodeLogins).Delete([]byte(user))
	})
}

// schema5Keys are the settings that became node-local in schema 5.
var schema5Keys = []string{ConfigHostname, XMPPEnabled}

// moveNodeLocal5 is the migration to schema 5: hostname and xmpp.enabled
// and the audit trail move from the replicated file to node.db, as in
// moveNodeLocal (node.db first; running it again copies the same data
// again). A restored snapshot's are dropped.
func (s *Store) moveNodeLocal5(tx *bolt.Tx, restored bool) error {
	cfg := tx.Bucket(bucketConfig)
	audit := tx.Bucket(bucketAudit)
	if !restored {
		err := s.node.Update(func(ntx *bolt.Tx) error {
			for _, k := range schema5Keys {
				if v := cfg.Get([]byte(k)); v != nil {
					if err := ntx.Bucket(nodeConfig).Put([]byte(k), v); err != nil {
						return err
					}
				}
			}
			if audit == nil {
				return nil
			}
			return copySeq(audit, ntx.Bucket(nodeAudit))
		})
		if err != nil {
			return err
		}
	}
	for _, k := range schema5Keys {
		if err := cfg.Delete([]byte(k)); err != nil {
			return err
		}
	}
	if audit != nil {
		return tx.DeleteBucket(bucketAudit)
	}
	return nil
}

// AddAudit appends an entry to this node's audit trail, keeping the last
// AuditLimit entries; a zero Time is now. It never goes through the log:
// it works on a cluster node without quorum. The function given to
// OnAudit is then called with the entry.
func (s *Store) AddAudit(e AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	err := s.node.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(nodeAudit)
		n, _ := b.NextSequence()
		if err := putJSON(b, string(seqKey(n)), e); err != nil {
			return err
		}
		return trimSeq(b, n, AuditLimit)
	})
	if fn := s.onAudit.Load(); err == nil && fn != nil {
		(*fn)(e)
	}
	return err
}

// OnAudit sets a function called with every audit entry written (the
// log's audit file, `syslog audit add`); nil: none.
func (s *Store) OnAudit(fn func(AuditEntry)) {
	if fn == nil {
		s.onAudit.Store(nil)
		return
	}
	s.onAudit.Store(&fn)
}

// Audit returns the last n entries of this node's audit trail, oldest
// first.
func (s *Store) Audit(n int) ([]AuditEntry, error) {
	var out []AuditEntry
	err := s.node.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(nodeAudit).Cursor()
		for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	slices.Reverse(out)
	return out, err
}

// ErrClusterLogDown is what the store's own log answers on a node that is
// in a cluster (SetClustered): its changes go through the cluster's log,
// and one committed here would put the store ahead of that log (the
// leader's entry at that index would then be skipped on this node).
var ErrClusterLogDown = errors.New("this node is in a cluster whose log is not running: the change was not made; see xmpp cluster status (xmpp cluster disable takes the node out of the cluster)")

// SetClustered records in node.db whether this node is in a cluster: the
// cluster sets it when it initializes, joins or starts with raft state,
// and clears it when the node leaves (xmpp cluster disable). While it is
// set, the store's own log refuses every proposal (ErrClusterLogDown),
// also across restarts and before the cluster has started; node-local
// writes (SetLocal, history, logins, the audit trail) go on.
func (s *Store) SetClustered(on bool) error {
	err := s.node.Update(func(tx *bolt.Tx) error {
		if on {
			return tx.Bucket(nodeMeta).Put(keyClustered, []byte("true"))
		}
		return tx.Bucket(nodeMeta).Delete(keyClustered)
	})
	if err == nil {
		s.member.Store(on)
	}
	return err
}

// loadClustered reads the mark SetClustered keeps.
func (s *Store) loadClustered() error {
	return s.node.View(func(tx *bolt.Tx) error {
		s.member.Store(tx.Bucket(nodeMeta).Get(keyClustered) != nil)
		return nil
	})
}
