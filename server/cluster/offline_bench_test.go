package cluster

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/parley-xmpp/parley/store"
)

// BenchmarkOfflinePush: durable offline messages per second, as the
// store's BenchmarkProposeParallel measures them (64 proposers on 2 cores,
// one message each for one of 10,000 users), standalone (the store's own
// log: a synced bbolt transaction, group commit) and through the raft log
// of three loopback nodes, proposed on the leader and on a follower (which
// forwards to the leader and returns once its own store has applied the
// entry). Every proposal returns only once committed.
func BenchmarkOfflinePush(b *testing.B) {
	stanza := []byte(`<message from="a@example.lan/r" to="b@example.lan" type="chat"><body>hello there</body></message>`)
	run := func(b *testing.B, st *store.Store) {
		var n atomic.Int64
		b.SetParallelism(32)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				if _, err := st.Propose(store.OfflinePush{User: fmt.Sprintf("u%d@example.lan", i%10000), Stanza: stanza}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	}
	b.Run("standalone", func(b *testing.B) {
		st, err := store.Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		run(b, st)
	})
	for _, who := range []string{"leader", "follower"} {
		b.Run("3nodes/"+who, func(b *testing.B) {
			nodes := cluster3(b)
			l := leaderOf(nodes)
			n := l
			if who == "follower" {
				for _, x := range nodes {
					if x != l {
						n = x
						break
					}
				}
			}
			run(b, n.st)
		})
	}
}
