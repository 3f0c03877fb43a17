package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/internal/asynqlog"
	"github.com/sandboxq/sandboxq/tasks"
)

// Config configures a Worker. Redis and Gateway are required; every other
// field has the default its comment states.
type Config struct {
	// Redis holds the queue and the state. The Worker does not close it.
	Redis redis.UniversalClient
	// Gateway is the ComputeSDK gateway (or the local provider).
	Gateway *gateway.Client
	// Logger receives structured logs (default: discard).
	Logger *slog.Logger

	// Concurrency is the number of tasks processed at once (default 20).
	Concurrency int
	// Queues maps queue names to priority weights (default
	// tasks.DefaultQueues).
	Queues map[string]int
	// ShutdownTimeout is how long running tasks may finish after shutdown
	// starts before they are handed back to the queue (default 30 s).
	ShutdownTimeout time.Duration
	// TaskCheckInterval is how often an idle worker looks for work
	// (default 20 ms, so an idle worker picks a task up within tens of
	// milliseconds; asynq's own default is 1 s).
	TaskCheckInterval time.Duration
	// DelayedTaskCheckInterval is how often retries and scheduled tasks
	// that are due are moved to their queue (default 250 ms).
	DelayedTaskCheckInterval time.Duration

	// Handlers tunes the task handlers; its Gateway, Redis and Logger are
	// taken from this Config.
	Handlers handlers.Config
	// Policy is the retry timing (default handlers.DefaultPolicy()).
	Policy *handlers.Policy
}

func (c *Config) withDefaults() error {
	if c.Redis == nil {
		return errors.New("worker: Config.Redis is required")
	}
	if c.Gateway == nil {
		return errors.New("worker: Config.Gateway is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Concurrency == 0 {
		c.Concurrency = 20
	}
	if c.Concurrency < 0 {
		return fmt.Errorf("worker: Concurrency %d is negative", c.Concurrency)
	}
	if len(c.Queues) == 0 {
		c.Queues = maps.Clone(tasks.DefaultQueues)
	}
	for q, w := range c.Queues {
		if q == "" || w <= 0 {
			return fmt.Errorf("worker: queue %q has weight %d; names must be non-empty and weights positive", q, w)
		}
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.TaskCheckInterval == 0 {
		c.TaskCheckInterval = 20 * time.Millisecond
	}
	if c.DelayedTaskCheckInterval == 0 {
		c.DelayedTaskCheckInterval = 250 * time.Millisecond
	}
	if c.Policy == nil {
		p := handlers.DefaultPolicy()
		c.Policy = &p
	}
	return nil
}

// Worker processes sandboxq tasks: an asynq server with sandboxq's handlers
// and middleware on a ServeMux that embedders may extend.
type Worker struct {
	cfg      Config
	log      *slog.Logger
	mux      *asynq.ServeMux
	server   *asynq.Server
	handlers *handlers.Handlers

	cancellation *handlers.Cancellation
}

// New builds a Worker; nothing runs until Run.
func New(cfg Config) (*Worker, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	hcfg := cfg.Handlers
	hcfg.Gateway, hcfg.Redis, hcfg.Logger = cfg.Gateway, cfg.Redis, cfg.Logger.With("component", "handlers")
	h, err := handlers.New(hcfg)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "worker")
	mux := asynq.NewServeMux()
	cancellation := handlers.NewCancellation(cfg.Redis, 0, log)
	mux.Use(handlers.Recover(log), handlers.Logging(log), cancellation.Middleware)
	h.Register(mux)

	policy := *cfg.Policy
	server := asynq.NewServerFromRedisClient(cfg.Redis, asynq.Config{
		Concurrency:              cfg.Concurrency,
		Queues:                   cfg.Queues,
		ShutdownTimeout:          cfg.ShutdownTimeout,
		TaskCheckInterval:        cfg.TaskCheckInterval,
		DelayedTaskCheckInterval: cfg.DelayedTaskCheckInterval,
		RetryDelayFunc:           policy.RetryDelay,
		IsFailure:                handlers.IsFailure,
		Logger:                   asynqlog.New(cfg.Logger),
		LogLevel:                 asynq.WarnLevel,
	})
	return &Worker{cfg: cfg, log: log, mux: mux, server: server, handlers: h, cancellation: cancellation}, nil
}

// Mux is the worker's ServeMux. Embedders may register their own task types
// and middleware on it before Run; sandboxq's types are already there.
func (w *Worker) Mux() *asynq.ServeMux { return w.mux }

// Run processes tasks until ctx is done, then shuts down gracefully: it stops
// fetching, lets running tasks finish for up to ShutdownTimeout and hands the
// rest back to the queue, where another worker picks them up.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.server.Start(w.mux); err != nil {
		return fmt.Errorf("worker: start: %w", err)
	}
	w.log.InfoContext(ctx, "worker started", "concurrency", w.cfg.Concurrency, "queues", w.cfg.Queues)
	// The cancellation checker outlives ctx until the server has shut down:
	// tasks still running during the shutdown can still be cancelled.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { w.cancellation.Run(bg) })
	<-ctx.Done()
	w.log.InfoContext(bg, "worker shutting down", "shutdown_timeout", w.cfg.ShutdownTimeout)
	w.server.Stop()
	w.server.Shutdown()
	stopBG()
	wg.Wait()
	return nil
}

// Ping reports whether the worker's Redis answers.
func (w *Worker) Ping() error { return w.server.Ping() }
