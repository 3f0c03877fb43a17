package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/sandboxq/sandboxq/api"
	"github.com/sandboxq/sandboxq/dashboard"
	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/internal/asynqlog"
	"github.com/sandboxq/sandboxq/maintenance"
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

	// Watchers, Maintenance and HTTP configure the event watchers, the
	// periodic tasks and the dashboard/API server.
	Watchers    WatcherConfig
	Maintenance MaintenanceConfig
	HTTP        HTTPConfig
	// Metrics receives the worker's Prometheus series (default: a new
	// registry, served on /metrics).
	Metrics *prometheus.Registry
	// TracerProvider receives the spans of task attempts, of the producer
	// API's requests and of the enqueues they make (default: the global
	// provider for attempts, none for the API). Gateway calls are traced
	// by the Gateway client's own gateway.WithTracing.
	TracerProvider trace.TracerProvider
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
	if c.Watchers.OwnerID == "" {
		c.Watchers.OwnerID = defaultOwnerID()
	}
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
	return nil
}

// Worker processes sandboxq tasks: an asynq server with sandboxq's handlers
// and middleware on a ServeMux that embedders may extend, the per-sandbox
// watchers, the periodic maintenance schedule, and the dashboard and
// producer API.
type Worker struct {
	cfg          Config
	log          *slog.Logger
	mux          *asynq.ServeMux
	server       *asynq.Server
	handlers     *handlers.Handlers
	cancellation *handlers.Cancellation
	store        *events.Store
	manager      *events.Manager // nil when watchers are disabled
	scheduler    *maintenance.Scheduler
	dash         *dashboard.Dashboard
	api          *api.API
	http         http.Handler
	listener     net.Listener
	running      atomic.Bool
}

// New builds a Worker. Nothing runs until Run, but the HTTP listener (if
// HTTP.Addr is set) is opened here, so Addr is known at once and a taken
// port is an error from New.
func New(cfg Config) (w *Worker, err error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	if cfg.HTTP.Addr != "" {
		if err := dashboard.CheckListen(cfg.HTTP.Addr, cfg.HTTP.Auth); err != nil {
			return nil, err
		}
		if !cfg.HTTP.APIDisabled {
			if err := api.CheckListen(cfg.HTTP.Addr, cfg.HTTP.APITokens); err != nil {
				return nil, err
			}
		}
	}
	log := cfg.Logger.With("component", "worker")
	w = &Worker{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			w.close()
		}
	}()

	metrics := handlers.NewMetrics(cfg.Metrics)
	w.store = events.NewStore(cfg.Redis, events.StoreOptions{})
	var claim func(context.Context, tasks.Project) error
	if !cfg.Watchers.Disabled {
		wc := cfg.Watchers
		ecfg := events.Config{
			Redis: cfg.Redis, Gateway: cfg.Gateway, Store: w.store,
			Logger:  cfg.Logger.With("component", "events"),
			OwnerID: wc.OwnerID, Cap: wc.Cap, LeaseTTL: wc.LeaseTTL, ClaimInterval: wc.ClaimInterval,
			FastPoll: wc.FastPoll, SlowPoll: wc.SlowPoll, EventsAddr: wc.EventsAddr,
			OnEvent: metrics.EventEmitted, OnLeaseLost: metrics.LeaseLost,
		}
		if !wc.AccessToken.IsZero() {
			token := wc.AccessToken
			ecfg.EventsToken = func(*gateway.Sandbox) string { return token.Reveal() }
		}
		if w.manager, err = events.NewManager(ecfg); err != nil {
			return nil, err
		}
		metrics.SetWatchersFunc(w.manager.Held)
		claim = w.manager.Claim
	}

	hcfg := cfg.Handlers
	hcfg.Gateway, hcfg.Redis, hcfg.Logger = cfg.Gateway, cfg.Redis, cfg.Logger.With("component", "handlers")
	hcfg.Store, hcfg.Claim = w.store, claim
	// Without watchers nothing records server events: waits poll.
	hcfg.WaitByPolling = hcfg.WaitByPolling || cfg.Watchers.Disabled
	if w.handlers, err = handlers.New(hcfg); err != nil {
		return nil, err
	}
	w.cancellation = handlers.NewCancellation(cfg.Redis, 0, log)
	w.mux = asynq.NewServeMux()
	w.mux.Use(handlers.Tracing(cfg.TracerProvider), handlers.Recover(log), handlers.Logging(log), metrics.Middleware(), w.cancellation.Middleware)
	w.handlers.Register(w.mux)
	if err := maintenance.Register(w.mux, maintenance.Deps{
		Redis: cfg.Redis, Gateway: cfg.Gateway, Store: w.store, IdleTTL: cfg.Maintenance.IdleTTL,
		Claim: claim, Logger: cfg.Logger.With("component", "maintenance"),
	}); err != nil {
		return nil, err
	}
	if !cfg.Maintenance.Disabled {
		if w.scheduler, err = maintenance.NewScheduler(maintenance.SchedulerConfig{
			Redis: cfg.Redis, CleanupSpec: cfg.Maintenance.CleanupSpec, ReconcileSpec: cfg.Maintenance.ReconcileSpec,
			Logger: cfg.Logger.With("component", "scheduler"),
		}); err != nil {
			return nil, err
		}
	}

	policy := *cfg.Policy
	w.server = asynq.NewServerFromRedisClient(cfg.Redis, asynq.Config{
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

	if w.dash, err = dashboard.New(dashboard.Options{
		Redis: cfg.Redis, RootPath: cfg.HTTP.DashboardPath, ReadOnly: cfg.HTTP.ReadOnly, Auth: cfg.HTTP.Auth,
		ListenAddr: cfg.HTTP.Addr, Store: w.store, Metrics: cfg.Metrics, PrometheusAddr: cfg.HTTP.PrometheusAddr,
		Ready: w.ready, Logger: cfg.Logger.With("component", "dashboard"),
	}); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/", w.dash)
	if !cfg.HTTP.APIDisabled {
		if w.api, err = api.New(api.Options{
			Client: tasks.NewClient(cfg.Redis, tasks.WithTracerProvider(cfg.TracerProvider)), Redis: cfg.Redis, Store: w.store, Tokens: cfg.HTTP.APITokens,
			ListenAddr: cfg.HTTP.Addr, Logger: cfg.Logger.With("component", "api"), TracerProvider: cfg.TracerProvider,
		}); err != nil {
			return nil, err
		}
		mux.Handle(api.Prefix+"/", w.api)
	}
	w.http = mux
	if cfg.HTTP.Addr != "" {
		if w.listener, err = net.Listen("tcp", cfg.HTTP.Addr); err != nil {
			return nil, fmt.Errorf("worker: listen on %s: %w", cfg.HTTP.Addr, err)
		}
	}
	return w, nil
}

// close releases what New opened when Run will not.
func (w *Worker) close() {
	if w.listener != nil {
		_ = w.listener.Close()
	}
	if w.api != nil {
		_ = w.api.Close()
	}
	if w.dash != nil {
		_ = w.dash.Close()
	}
}

// Mux is the worker's ServeMux. Embedders may register their own task types
// and middleware on it before Run; sandboxq's types are already there.
func (w *Worker) Mux() *asynq.ServeMux { return w.mux }

// Handler is the dashboard and producer API as one http.Handler, for
// embedders that serve it themselves (HTTP.Addr empty).
func (w *Worker) Handler() http.Handler { return w.http }

// Addr is the address the HTTP server listens on ("" without one).
func (w *Worker) Addr() string {
	if w.listener == nil {
		return ""
	}
	return w.listener.Addr().String()
}

// Store is the sandbox registry and event store.
func (w *Worker) Store() *events.Store { return w.store }

func (w *Worker) ready(ctx context.Context) error {
	if !w.running.Load() {
		return errors.New("worker is not processing tasks")
	}
	return nil
}

// Run processes tasks, runs the watchers, the schedule and the HTTP server
// until ctx is done, then shuts down gracefully: it stops fetching, lets
// running tasks finish for up to ShutdownTimeout and hands the rest back to
// the queue, where another worker picks them up; watchers release their
// leases so other processes take over at once.
func (w *Worker) Run(ctx context.Context) error {
	defer w.close()
	if err := w.server.Start(w.mux); err != nil {
		return fmt.Errorf("worker: start: %w", err)
	}
	w.running.Store(true)
	w.log.InfoContext(ctx, "worker started", "concurrency", w.cfg.Concurrency, "queues", w.cfg.Queues,
		"watchers", !w.cfg.Watchers.Disabled, "http", w.Addr())

	// The HTTP server and the schedule stop when ctx is done; the
	// cancellation checker and the watchers outlive it until the task
	// processor has shut down, so tasks still running during the shutdown
	// can still be cancelled and still see their servers' events.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	var errs []error
	var mu sync.Mutex
	fail := func(name string, err error) {
		if err != nil && !errors.Is(err, context.Canceled) {
			mu.Lock()
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			mu.Unlock()
			// /readyz says so: the process goes on processing tasks, but
			// without this service it is not what it should be.
			w.running.Store(false)
			w.log.ErrorContext(ctx, "service stopped", "service", name, "err", err)
		}
	}
	wg.Go(func() { w.cancellation.Run(bg) })
	if w.manager != nil {
		// Watchers too outlive ctx until running tasks are done: a
		// server:start still waiting during the shutdown needs their events.
		wg.Go(func() { fail("watchers", w.manager.Run(bg)) })
	}
	if w.scheduler != nil {
		wg.Go(func() { fail("scheduler", w.scheduler.Run(ctx)) })
	}
	if w.listener != nil {
		l := w.listener
		wg.Go(func() {
			fail("http", serveHTTP(ctx, l, w.http, func() {
				if w.api != nil {
					_ = w.api.Close()
				}
			}))
		})
	}
	<-ctx.Done()
	w.log.InfoContext(bg, "worker shutting down", "shutdown_timeout", w.cfg.ShutdownTimeout)
	w.running.Store(false)
	w.server.Stop()
	w.server.Shutdown()
	stopBG()
	wg.Wait()
	return errors.Join(errs...)
}

// Ping reports whether the worker's Redis answers.
func (w *Worker) Ping() error { return w.server.Ping() }
