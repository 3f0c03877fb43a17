package dashboard_test

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandboxq/sandboxq/dashboard"
	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/internal/asynqlog"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
)

// worker is a real asynq server running sandboxq's handlers against the
// local provider, with the metrics middleware.
type worker struct {
	lp      *local.Provider
	gw      *gateway.Client
	metrics *handlers.Metrics
	events  *events.Metrics
}

// startWorker runs the worker until the test ends. extra registers more
// task types on its mux.
func (b *testBundle) startWorker(t *testing.T, reg prometheus.Registerer, extra func(*asynq.ServeMux)) *worker {
	t.Helper()
	m, err := handlers.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	gm, err := gateway.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	em, err := events.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	lp, gw := testutil.Provider(t, local.Config{}, gateway.WithMetrics(gm))
	h, err := handlers.New(handlers.Config{Gateway: gw, Redis: b.rdb, Logger: b.logger, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mux := asynq.NewServeMux()
	// The test panics on purpose; its stack trace is not worth logging.
	mux.Use(handlers.Recover(slog.New(slog.DiscardHandler)), m.Middleware())
	h.Register(mux)
	if extra != nil {
		extra(mux)
	}
	testutil.StartAsynq(t, b.rdb, mux, asynq.Config{
		Concurrency: 4,
		Queues:      maps.Clone(tasks.DefaultQueues),
		IsFailure:   handlers.IsFailure,
		Logger:      asynqlog.New(b.logger),
		LogLevel:    asynq.ErrorLevel,
	})
	return &worker{lp: lp, gw: gw, metrics: m, events: em}
}

// wait returns a function that waits for an enqueued task to finish and
// returns the task's error, if any: b.wait(t)(b.client.Enqueue(...)).
func (b *testBundle) wait(t *testing.T) func(*tasks.Enqueued, error) (*tasks.Result, error) {
	return func(e *tasks.Enqueued, err error) (*tasks.Result, error) {
		t.Helper()
		if err != nil {
			t.Fatalf("enqueue: %v", err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		res, err := b.client.Wait(ctx, e.Queue, e.ID)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("task %s %s did not finish", e.Type, e.ID)
		}
		return res, err
	}
}

// testTask is a task type of the test's own.
type testTask struct{ typ string }

func (p testTask) TypeName() string { return p.typ }
func (testTask) Validate() error    { return nil }
func (testTask) Options() []asynq.Option {
	return []asynq.Option{asynq.Queue(tasks.QueueDefault), asynq.MaxRetry(3), asynq.Retention(time.Hour)}
}

func TestMetricsAfterTasksRan(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b := setup(t, func(o *dashboard.Config) { o.Metrics = reg; o.Auth = testAuth() })
	var busyOnce atomic.Bool
	w := b.startWorker(t, reg, func(mux *asynq.ServeMux) {
		mux.HandleFunc("test:busy", func(context.Context, *asynq.Task) error {
			if busyOnce.CompareAndSwap(false, true) {
				return handlers.ErrProjectBusy
			}
			return nil
		})
		mux.HandleFunc("test:fail", func(context.Context, *asynq.Task) error {
			return handlers.Permanentf("nothing to be done")
		})
		mux.HandleFunc("test:panic", func(context.Context, *asynq.Task) error { panic("boom") })
	})
	ctx := t.Context()

	// Real tasks against the local provider.
	wait := b.wait(t)
	if _, err := wait(b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: proj("m")})); err != nil {
		t.Fatal(err)
	}
	if _, err := wait(b.client.RunCommand(ctx, tasks.CommandRun{Project: proj("m"), Command: "echo hi"})); err != nil {
		t.Fatal(err)
	}
	if _, err := wait(b.client.Enqueue(ctx, testTask{"test:busy"})); err != nil {
		t.Fatal(err)
	}
	if _, err := wait(b.client.Enqueue(ctx, testTask{"test:fail"})); err == nil {
		t.Fatal("test:fail succeeded")
	}
	if _, err := wait(b.client.Enqueue(ctx, testTask{"test:panic"}, asynq.MaxRetry(0))); err == nil {
		t.Fatal("test:panic succeeded")
	}

	// The hooks the events Manager calls.
	if err := b.store.Upsert(ctx, proj("m"), "sbx", "local"); err != nil {
		t.Fatal(err)
	}
	ev, err := b.store.ServerStatus(ctx, proj("m"), "sbx", "web", events.ServerState{Status: "ready", UpdatedAt: time.Now()})
	if err != nil || ev == nil {
		t.Fatalf("ServerStatus: %v %v", ev, err)
	}
	w.events.EventEmitted(*ev)
	w.events.LeaseLost()
	w.events.LeaseLost()
	w.events.SetWatchersFunc(func() int { return 7 })

	body := b.get(t, "/metrics", bearer("tok-123456"))
	for _, re := range []string{
		// handler duration and outcome by task type
		`sandboxq_task_duration_seconds_count\{task_type="sandbox:ensure"\} 1\n`,
		`sandboxq_task_duration_seconds_bucket\{task_type="command:run",le="\+Inf"\} 1\n`,
		`sandboxq_tasks_processed_total\{outcome="ok",task_type="sandbox:ensure"\} 1\n`,
		`sandboxq_tasks_processed_total\{outcome="ok",task_type="command:run"\} 1\n`,
		`sandboxq_tasks_processed_total\{outcome="busy",task_type="test:busy"\} 1\n`,
		`sandboxq_tasks_processed_total\{outcome="ok",task_type="test:busy"\} 1\n`,
		`sandboxq_tasks_processed_total\{outcome="failed",task_type="test:fail"\} 1\n`,
		`sandboxq_tasks_processed_total\{outcome="retry",task_type="test:panic"\} 1\n`,
		`sandboxq_project_busy_total\{task_type="test:busy"\} 1\n`,
		// gateway requests by operation and status class
		`sandboxq_gateway_request_duration_seconds_count\{op="find_or_create",status="2xx"\} [1-9]`,
		`sandboxq_gateway_request_duration_seconds_count\{op="daemon\.[a-z_]+",status="2xx"\} [1-9]`,
		// watchers, events, lease losses
		`sandboxq_watchers_held 7\n`,
		`sandboxq_events_emitted_total\{type="server.status_changed"\} 1\n`,
		`sandboxq_watcher_leases_lost_total 2\n`,
		// asynq queue series
		`asynq_tasks_processed_total\{queue="critical"\} 1\n`,
		`asynq_tasks_processed_total\{queue="default"\} [4-9]\n`,
		`asynq_tasks_failed_total\{queue="default"\} [2-9]\n`,
		`asynq_tasks_enqueued_total\{queue="default",state="archived"\} 2\n`,
		`asynq_tasks_enqueued_total\{queue="critical",state="completed"\} 1\n`,
		`asynq_queue_size\{queue="default"\} [0-9]+\n`,
		`asynq_queue_latency_seconds\{queue="critical"\} `,
		`asynq_queue_paused_total\{queue="default"\} 0\n`,
		// runtime
		`go_goroutines `,
		`process_resident_memory_bytes `,
	} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("/metrics has no line matching %s", re)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
	// No label carries a project or a sandbox id.
	mustNotContain(t, "/metrics", body, `"m"`, "team-a", "sbx")

	// A second dashboard on the same registry needs the first closed.
	if _, err := dashboard.New(dashboard.Config{Redis: b.rdb, Metrics: reg}); err == nil {
		t.Error("two dashboards registered on one registry")
	}
	if err := b.dash.Close(); err != nil {
		t.Fatal(err)
	}
	d2, err := dashboard.New(dashboard.Config{Redis: b.rdb, Metrics: reg})
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	_ = d2.Close()
}

// TestMetricsRegisterOnce: each package's series are registered once per
// registry; a second registration is an error and leaves the first
// counting. The methods are no-ops on nil Metrics, and Metrics without a
// registry still count.
func TestMetricsRegisterOnce(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	em, err := events.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handlers.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := gateway.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := events.NewMetrics(reg); err == nil {
		t.Error("events metrics registered twice on one registry")
	}
	if _, err := handlers.NewMetrics(reg); err == nil {
		t.Error("handlers metrics registered twice on one registry")
	}
	if _, err := gateway.NewMetrics(reg); err == nil {
		t.Error("gateway metrics registered twice on one registry")
	}
	em.LeaseLost()
	em.LeaseLost()
	em.SetWatchersFunc(func() int { return 3 })
	var nilEvents *events.Metrics
	nilEvents.LeaseLost()
	nilEvents.EventEmitted(tasks.Event{})
	var nilGateway *gateway.Metrics
	nilGateway.Observe("find", 200, time.Millisecond)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				got[mf.GetName()] += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[mf.GetName()] += m.GetGauge().GetValue()
			}
		}
	}
	if got[events.MetricLeasesLost] != 2 || got[events.MetricWatchersHeld] != 3 {
		t.Fatalf("gathered %v", got)
	}
	// Unregistered metrics still count, without panicking.
	unregistered, err := events.NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	unregistered.LeaseLost()
}
