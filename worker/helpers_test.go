package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/internal/backoff"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
	"github.com/sandboxq/sandboxq/worker"
)

func TestMain(m *testing.M) { redistest.Main(m) }

type testBundle struct {
	lp     *local.Provider
	gw     *gateway.Client
	rdb    redis.UniversalClient
	client *tasks.Client
	insp   *asynq.Inspector
	obs    *testutil.Recorder
	logger *slog.Logger
	t      testing.TB
}

func setup(t testing.TB) *testBundle {
	t.Helper()
	obs := &testutil.Recorder{}
	lp, gw := testutil.Provider(t, local.Config{Observe: obs.Add})
	rdb := redistest.New(t).Client(t)
	client := tasks.NewClient(rdb)
	t.Cleanup(func() { _ = client.Close() })
	return &testBundle{
		lp: lp, gw: gw, rdb: rdb,
		client: client,
		insp:   asynq.NewInspectorFromRedisClient(rdb),
		obs:    obs,
		t:      t,
		logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// fastPolicy retries quickly so that tests of retries finish in seconds.
func fastPolicy() *handlers.Policy {
	return &handlers.Policy{
		Backoff:       backoff.Policy{Base: 20 * time.Millisecond, Cap: 200 * time.Millisecond},
		MaxRetryAfter: 2 * time.Second,
		BusyDelay:     200 * time.Millisecond,
	}
}

// startWorker runs a worker until the test ends or stop is called; stop
// returns once the worker has shut down.
func (b *testBundle) startWorker(t *testing.T, mutate func(*worker.Config)) (stop func()) {
	t.Helper()
	cfg := worker.Config{
		Redis:           b.rdb,
		Gateway:         b.gw,
		Logger:          b.logger,
		Concurrency:     10,
		ShutdownTimeout: 5 * time.Second,
		// Retries in these tests back off for tens of milliseconds;
		// the default (1 s) would make them wait for the forwarder.
		DelayedTaskCheckInterval: 100 * time.Millisecond,
		Policy:                   fastPolicy(),
		Handlers:                 handlers.Config{PollInterval: 50 * time.Millisecond, LeaseWait: time.Second},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	w, err := worker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// wait waits for a task to finish and returns its final state.
func (b *testBundle) wait(t *testing.T, e *tasks.Enqueued) (*tasks.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	res, err := b.client.Wait(ctx, e.Queue, e.ID)
	if errors.Is(err, context.DeadlineExceeded) {
		st, _ := b.client.Status(context.Background(), e.Queue, e.ID)
		t.Fatalf("task %s %s did not finish: %+v", e.Type, e.ID, st)
	}
	return res, err
}

// mustSucceed waits for the task and decodes its result into v.
func (b *testBundle) mustSucceed(t *testing.T, e *tasks.Enqueued, v any) *tasks.Result {
	t.Helper()
	res, err := b.wait(t, e)
	if err != nil {
		t.Fatalf("task %s %s: %v", e.Type, e.ID, err)
	}
	if v != nil {
		if err := json.Unmarshal(res.Result, v); err != nil {
			t.Fatalf("decode result %s: %v", res.Result, err)
		}
	}
	return res
}

// mustFail waits for the task to end archived and returns the failure.
func (b *testBundle) mustFail(t *testing.T, e *tasks.Enqueued) *tasks.TaskFailedError {
	t.Helper()
	_, err := b.wait(t, e)
	var tf *tasks.TaskFailedError
	if !errors.As(err, &tf) {
		t.Fatalf("task %s %s: want it archived, got %v", e.Type, e.ID, err)
	}
	return tf
}

// ok fails the test if an enqueue failed.
func (b *testBundle) ok(e *tasks.Enqueued, err error) *tasks.Enqueued {
	b.t.Helper()
	if err != nil {
		b.t.Fatal(err)
	}
	return e
}

func proj(name string) tasks.Project { return tasks.Project{Namespace: "test", Name: name} }

func ptr[T any](v T) *T { return &v }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
