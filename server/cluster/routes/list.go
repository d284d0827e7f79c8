package routes

// EachRemote calls fn with every resource bound on the other nodes, for
// status (xmpp sessions). fn runs under a shard's read lock: it must not
// call the table.
func (t *Table) EachRemote(fn func(node, bare, resource string, available bool, priority int)) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		for bare, list := range sh.users {
			for _, r := range list {
				fn(r.node, bare, r.res, r.available, r.priority)
			}
		}
		sh.mu.RUnlock()
	}
}
