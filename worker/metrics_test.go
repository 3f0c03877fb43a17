package worker_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/tasks"
	"github.com/sandboxq/sandboxq/worker"
)

// TestMetricsRegisteredOnceAndMeasured: New registers the gateway, watcher
// and task series on Config.Metrics; the gateway client it was given is
// measured without the caller wiring anything; a second New on the same
// registry fails, naming the metrics, instead of sharing them silently.
func TestMetricsRegisteredOnceAndMeasured(t *testing.T) {
	t.Parallel()
	b := setup(t)
	reg := prometheus.NewRegistry()
	b.startWorker(t, func(c *worker.Config) { c.Metrics = reg })

	b.mustSucceed(t, b.ok(b.client.EnsureSandbox(t.Context(), tasks.SandboxEnsure{Project: tasks.Project{Name: "metrics"}})), nil)

	_, err := worker.New(worker.Config{Redis: b.rdb, Gateway: b.gw, Metrics: reg})
	if err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Fatalf("second New on one registry: err = %v, want a metrics registration error", err)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	found := false
	for _, mf := range mfs {
		registered[mf.GetName()] = true
		if mf.GetName() != gateway.MetricRequestDuration {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" && l.GetValue() == "find" && m.GetHistogram().GetSampleCount() > 0 {
					found = true
				}
			}
		}
	}
	for _, name := range []string{handlers.MetricTasksProcessed, events.MetricWatchersHeld} {
		if !registered[name] {
			t.Errorf("%s not registered", name)
		}
	}
	if !found {
		t.Errorf("%s has no find request: the worker's gateway is not measured", gateway.MetricRequestDuration)
	}
}
