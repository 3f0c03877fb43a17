package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// Outcomes of a task attempt, as logged and counted.
const (
	OutcomeOK        = "ok"
	OutcomeRetry     = "retry"
	OutcomeBusy      = "busy"
	OutcomeFailed    = "failed"
	OutcomeCancelled = "cancelled"
	OutcomeThrottled = "throttled" // the shared gateway rate limit had no room
)

// Outcome classifies the error a handler returned.
func Outcome(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, ErrProjectBusy):
		return OutcomeBusy
	case errors.Is(err, gateway.ErrThrottled):
		return OutcomeThrottled
	case errors.Is(err, errCancelled):
		return OutcomeCancelled
	case errors.Is(err, asynq.SkipRetry):
		return OutcomeFailed
	}
	return OutcomeRetry
}

// Recover turns a panic in a handler into an error, so one bad task cannot
// take the worker down. The stack goes to the log; the task is retried.
func Recover(logger *slog.Logger) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) (err error) {
			defer func() {
				if r := recover(); r != nil {
					id, _ := asynq.GetTaskID(ctx)
					logger.ErrorContext(ctx, "task handler panicked", "task_type", t.Type(), "task_id", id, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
					err = fmt.Errorf("handler panicked: %v", r)
				}
			}()
			return next.ProcessTask(ctx, t)
		})
	}
}

// Logging logs one line per attempt: task type, id, queue, project, attempt,
// duration and outcome. It never logs payload contents.
func Logging(logger *slog.Logger) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			start := time.Now()
			err := next.ProcessTask(ctx, t)
			id, _ := asynq.GetTaskID(ctx)
			queue, _ := asynq.GetQueueName(ctx)
			retried, _ := asynq.GetRetryCount(ctx)
			attrs := []any{
				slog.String("task_type", t.Type()),
				slog.String("task_id", id),
				slog.String("queue", queue),
				slog.Int("attempt", retried+1),
				slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
				slog.String("outcome", Outcome(err)),
			}
			if p, ok := tasks.ProjectOf(t); ok {
				attrs = append(attrs, slog.String("namespace", p.Namespace), slog.String("name", p.Name))
			}
			level := slog.LevelInfo
			switch Outcome(err) {
			case OutcomeRetry, OutcomeFailed:
				level = slog.LevelWarn
				attrs = append(attrs, slog.String("err", err.Error()))
			case OutcomeBusy, OutcomeThrottled:
				level = slog.LevelDebug
			}
			logger.Log(ctx, level, "task processed", attrs...)
			return err
		})
	}
}

// Cancellation makes cancellation through tasks.Client.Cancel final.
//
// asynq's own CancelProcessing cancels the handler's context, and asynq then
// retries the task whatever the handler returns. So tasks.Client.Cancel only
// sets a cancel mark in Redis; Cancellation notices the mark (it checks the
// tasks running in this process every Interval), cancels the handler's own
// context and ends the task with ErrCancelled, which archives it with the
// reason "cancelled". A task whose mark is set before it starts does not
// start at all: Cancellation checks the mark first, except for the types
// whose handler takes the project lease before any change (leaseFirst),
// where the default Locker checks it in the script that takes the lease,
// saving a round trip (another Locker gets the check made before it).
type Cancellation struct {
	rdb      redis.UniversalClient
	interval time.Duration
	log      *slog.Logger

	mu     sync.Mutex
	active map[string]context.CancelCauseFunc
}

// NewCancellation returns a Cancellation that checks for marks every
// interval (500 ms if zero).
func NewCancellation(rdb redis.UniversalClient, interval time.Duration, logger *slog.Logger) *Cancellation {
	if interval <= 0 {
		interval = 500 * time.Millisecond
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Cancellation{rdb: rdb, interval: interval, log: logger, active: make(map[string]context.CancelCauseFunc)}
}

// Middleware wraps handlers so that they can be cancelled.
func (c *Cancellation) Middleware(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		if id == "" {
			return next.ProcessTask(ctx, t)
		}
		if leaseFirst[t.Type()] {
			ctx = context.WithValue(ctx, startCheckKey{}, &startCheck{id: id, c: c})
		} else if c.marked(ctx, id) {
			return ErrCancelled
		}
		hctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		c.mu.Lock()
		c.active[id] = cancel
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			delete(c.active, id)
			c.mu.Unlock()
		}()
		err := next.ProcessTask(hctx, t)
		if errors.Is(context.Cause(hctx), errCancelled) {
			return ErrCancelled
		}
		return err
	})
}

// Run checks the marks of running tasks until ctx is done.
func (c *Cancellation) Run(ctx context.Context) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.check(ctx)
	}
}

func (c *Cancellation) check(ctx context.Context) {
	c.mu.Lock()
	ids := make([]string, 0, len(c.active))
	for id := range c.active {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, c.interval)
	defer cancel()
	marked, err := schema.CancelledAmong(cctx, c.rdb, ids)
	if err != nil {
		c.log.WarnContext(ctx, "check cancel marks", "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range marked {
		if cancel, ok := c.active[id]; ok {
			cancel(errCancelled)
		}
	}
}

func (c *Cancellation) marked(ctx context.Context, id string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ok, err := schema.IsCancelled(ctx, c.rdb, id)
	return err == nil && ok
}

// leaseFirst are the task types whose handler takes the project lease
// (owner the task id) before it changes anything, and holds it to its end.
var leaseFirst = map[string]bool{
	tasks.TypeSandboxEnsure:  true,
	tasks.TypeSandboxDestroy: true,
	tasks.TypeFilesWrite:     true,
	tasks.TypeServerStop:     true,
	tasks.TypeCommandRun:     true,
	tasks.TypeEnvUpdate:      true,
}

// startCheck is the check of a task's cancel mark that Cancellation leaves
// to the task's first lock (Handlers.lock).
type startCheck struct {
	id    string
	c     *Cancellation
	taken atomic.Bool
}

type startCheckKey struct{}

// takeStartCheck returns the pending start check in ctx, once.
func takeStartCheck(ctx context.Context) *startCheck {
	sc, _ := ctx.Value(startCheckKey{}).(*startCheck)
	if sc == nil || sc.taken.Swap(true) {
		return nil
	}
	return sc
}
