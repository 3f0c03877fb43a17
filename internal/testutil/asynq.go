package testutil

import (
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// StartAsynq runs a real asynq server over rdb with h as its handler until
// the test ends. Zero fields of cfg get quick test values: new tasks are
// checked for every 20 ms and delayed ones every 100 ms, a failed task is
// retried after 50 ms, and shutdown waits at most 5 s.
func StartAsynq(tb testing.TB, rdb redis.UniversalClient, h asynq.Handler, cfg asynq.Config) {
	tb.Helper()
	if cfg.TaskCheckInterval == 0 {
		cfg.TaskCheckInterval = 20 * time.Millisecond
	}
	if cfg.DelayedTaskCheckInterval == 0 {
		cfg.DelayedTaskCheckInterval = 100 * time.Millisecond
	}
	if cfg.RetryDelayFunc == nil {
		cfg.RetryDelayFunc = func(int, error, *asynq.Task) time.Duration { return 50 * time.Millisecond }
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	srv := asynq.NewServerFromRedisClient(rdb, cfg)
	if err := srv.Start(h); err != nil {
		tb.Fatalf("start asynq server: %v", err)
	}
	tb.Cleanup(srv.Shutdown)
}
