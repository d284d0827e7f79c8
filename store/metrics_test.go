package store

import (
	"testing"

	"github.com/parley-xmpp/parley/server/metrics/metricstest"
)

// TestCommitLatencyObserved: every proposal through the local log is one
// sample of parley_store_commit_duration_seconds, failed ones included
// (they waited for the log as well).
func TestCommitLatencyObserved(t *testing.T) {
	s := open(t, t.TempDir())
	before := metricstest.Value(t, "parley_store_commit_duration_seconds")
	if _, err := s.Propose(ConfigSet{Key: "xmpp.port.c2s", Value: "5222"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Propose(AccountDelete{JID: "nobody@a.lan"}); err == nil {
		t.Fatal("deleting an account that does not exist succeeded")
	}
	if got := metricstest.Value(t, "parley_store_commit_duration_seconds") - before; got != 2 {
		t.Fatalf("%v samples, want 2", got)
	}
}
