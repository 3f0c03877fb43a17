package tasks_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/tasks"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// bundle is what a test against Redis gets: its own database, a Client and
// an Inspector over it.
type bundle struct {
	db     *redistest.DB
	rdb    *redis.Client
	client *tasks.Client
	insp   *asynq.Inspector
}

func setup(t *testing.T, opts ...tasks.ClientOption) *bundle {
	t.Helper()
	db := redistest.New(t)
	rdb := db.Client(t)
	c := tasks.NewClient(rdb, opts...)
	t.Cleanup(func() { c.Close() })
	return &bundle{db: db, rdb: rdb, client: c, insp: asynq.NewInspectorFromRedisClient(rdb)}
}

type nopLogger struct{}

func (nopLogger) Debug(...any) {}
func (nopLogger) Info(...any)  {}
func (nopLogger) Warn(...any)  {}
func (nopLogger) Error(...any) {}
func (nopLogger) Fatal(...any) {}

// serve runs an asynq server with mux on the test's database until the test
// ends. Failed tasks are retried only after an hour, so a test sees every
// retry decision in Redis instead of a second run.
func (b *bundle) serve(t *testing.T, mux *asynq.ServeMux) {
	t.Helper()
	srv := asynq.NewServerFromRedisClient(b.rdb, asynq.Config{
		Concurrency:       4,
		Queues:            tasks.DefaultQueues,
		TaskCheckInterval: 20 * time.Millisecond,
		RetryDelayFunc:    func(int, error, *asynq.Task) time.Duration { return time.Hour },
		ShutdownTimeout:   5 * time.Second,
		Logger:            nopLogger{},
		LogLevel:          asynq.FatalLevel,
	})
	if err := srv.Start(mux); err != nil {
		t.Fatalf("start asynq server: %v", err)
	}
	t.Cleanup(srv.Shutdown)
}

// waitCtx is a context for a Wait or Cancel call with a generous deadline.
func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
