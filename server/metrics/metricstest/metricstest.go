// Package metricstest reads Parley's metrics in tests of the packages that
// count (router, c2s, im, the engine …): a test takes a Value before and
// after the thing happens and checks the difference.
package metricstest

import (
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/parley-xmpp/parley/server/metrics"
)

// Value is the current value of the process-wide metric name (a
// counter's or gauge's value, a histogram's sample count) with the given
// label pairs ("kind", "message", "outcome", "local"); 0 when no such
// series exists.
func Value(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	if len(labels)%2 != 0 {
		t.Fatalf("metricstest.Value(%s): labels come in pairs", name)
	}
	mfs, err := metrics.NewExporter(nil, nil, "", nil).Registry().Gather()
	if err != nil {
		t.Fatalf("gathering the metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matches(m, labels) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				case m.Histogram != nil:
					return float64(m.Histogram.GetSampleCount())
				}
			}
		}
	}
	return 0
}

func matches(m *dto.Metric, labels []string) bool {
	for i := 0; i < len(labels); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
