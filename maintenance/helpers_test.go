package maintenance_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/internal/asynqlog"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
)

func TestMain(m *testing.M) { redistest.Main(m) }

type testBundle struct {
	lp     *local.Provider
	gw     *gateway.Client
	rdb    redis.UniversalClient
	client *tasks.Client
	store  *events.Store
	insp   *asynq.Inspector
	logger *slog.Logger
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	lp, gw := testutil.Provider(t, local.Config{})
	rdb := redistest.New(t).Client(t)
	return &testBundle{
		lp: lp, gw: gw, rdb: rdb,
		client: tasks.NewClient(rdb),
		store:  events.NewStore(rdb, events.StoreConfig{}),
		insp:   asynq.NewInspectorFromRedisClient(rdb),
		logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// startServer runs an asynq server over mux until the test ends. It serves
// the given queues, or sandboxq's default ones.
func (b *testBundle) startServer(t *testing.T, mux *asynq.ServeMux, queues ...string) {
	t.Helper()
	qs := maps.Clone(tasks.DefaultQueues)
	if len(queues) > 0 {
		qs = map[string]int{}
		for _, q := range queues {
			qs[q] = 1
		}
	}
	testutil.StartAsynq(t, b.rdb, mux, asynq.Config{
		Concurrency: 8,
		Queues:      qs,
		IsFailure:   handlers.IsFailure,
		Logger:      asynqlog.New(b.logger),
		LogLevel:    asynq.WarnLevel,
	})
}

// sandboxHandlers registers sandboxq's task handlers on mux.
func (b *testBundle) sandboxHandlers(t *testing.T, mux *asynq.ServeMux) {
	t.Helper()
	h, err := handlers.New(handlers.Config{Gateway: b.gw, Redis: b.rdb, Logger: b.logger, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h.Register(mux)
}

// mustSucceed waits for the task and decodes its result into v.
func (b *testBundle) mustSucceed(t *testing.T, e *tasks.Enqueued, err error, v any) {
	t.Helper()
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	res, err := b.client.Wait(ctx, e.Queue, e.ID)
	if err != nil {
		t.Fatalf("task %s %s: %v", e.Type, e.ID, err)
	}
	if v != nil {
		if err := json.Unmarshal(res.Result, v); err != nil {
			t.Fatalf("decode result %s: %v", res.Result, err)
		}
	}
}

// mustFail waits for the task to end archived.
func (b *testBundle) mustFail(t *testing.T, e *tasks.Enqueued, err error) *tasks.TaskFailedError {
	t.Helper()
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	_, err = b.client.Wait(ctx, e.Queue, e.ID)
	tf, ok := errors.AsType[*tasks.TaskFailedError](err)
	if !ok {
		t.Fatalf("task %s %s: want it archived, got %v", e.Type, e.ID, err)
	}
	return tf
}

// storeAt is a Store whose clock says at.
func (b *testBundle) storeAt(at time.Time) *events.Store {
	return events.NewStore(b.rdb, events.StoreConfig{Now: func() time.Time { return at }})
}

func (b *testBundle) entry(t *testing.T, p tasks.Project) *events.Entry {
	t.Helper()
	e, err := b.store.Get(t.Context(), p)
	if err != nil {
		t.Fatalf("registry entry of %s/%s: %v", p.Namespace, p.Name, err)
	}
	return e
}

func proj(name string) tasks.Project { return tasks.Project{Namespace: "test", Name: name} }
