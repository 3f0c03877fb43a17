package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
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
	"github.com/sandboxq/sandboxq/internal/promreg"
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

	// Concurrency is the number of tasks processed at once (default 20;
	// 1 to MaxConcurrency).
	Concurrency int
	// Queues maps queue names to priority weights (default
	// tasks.DefaultQueues). Weights are positive and the map must hold
	// every queue of RequiredQueues.
	Queues map[string]int
	// ShutdownTimeout is how long running tasks may finish after shutdown
	// starts before they are handed back to the queue (default 30 s).
	// Negative durations here and in the nested configs are refused; zero
	// is always the field's default.
	ShutdownTimeout time.Duration
	// TaskCheckInterval is how long an idle worker waits for a wake-up
	// before it looks for work anyway (default DefaultTaskCheckInterval).
	// Producers using tasks.Client wake an idle worker when they enqueue
	// (schema.WakeKey), so this bounds only the pickup of tasks nobody
	// announced: due retries and scheduled tasks, other producers' tasks.
	// Each look asks every queue, one round trip each.
	TaskCheckInterval time.Duration
	// DelayedTaskCheckInterval is how often retries and scheduled tasks
	// that are due are moved to their queue (default
	// DefaultDelayedTaskCheckInterval); two round trips per queue each time.
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
	// registry, served on /metrics). New registers them once, measuring
	// every request of Gateway; a registry that already has them (another
	// Worker's) makes New fail.
	Metrics *prometheus.Registry
	// TracerProvider receives the spans of task attempts, of the producer
	// API's requests and of the enqueues they make (default: the global
	// provider for attempts, none for the API). Gateway calls are traced
	// by the Gateway client's own gateway.WithTracing.
	TracerProvider trace.TracerProvider
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
	stopWaking   chan struct{} // closed when Run stops fetching: idle waits end
	handlers     *handlers.Handlers
	cancellation *handlers.Cancellation
	store        *events.Store
	manager      *events.Manager // nil when watchers are disabled
	scheduler    *maintenance.Scheduler
	dash         *dashboard.Dashboard
	api          *api.API
	apiClient    *tasks.Client // the API's producer; its Waits' subscription
	http         http.Handler
	listener     net.Listener
	metrics      *promreg.Batch // the series New registered
	running      atomic.Bool
}

// New builds a Worker. Nothing runs until Run, but the HTTP listener (if
// HTTP.Addr is set) is opened here, so Addr is known at once and a taken
// port is an error from New.
//
// New never panics on a bad Config: every failure, including a panic of a
// component it builds, is returned as an error, and what New opened before
// it failed is closed again. Range errors are *ConfigError.
func New(cfg Config) (*Worker, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	if cfg.Watchers.OwnerID == "" {
		cfg.Watchers.OwnerID = defaultOwnerID()
	}
	w := &Worker{cfg: cfg, log: cfg.Logger.With("component", "worker")}
	if err := recoverBuild(w.build); err != nil {
		w.close()
		if w.metrics != nil {
			w.metrics.Undo()
		}
		return nil, err
	}
	return w, nil
}

// recoverBuild runs build and turns a panic into an error, so that a
// component that panics on input it does not accept (asynqmon does on a
// RootPath it cannot mount, http.ServeMux on a conflicting pattern) fails
// New instead of the embedding process.
func recoverBuild(build func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("worker: %v", r)
		}
	}()
	return build()
}

// build creates the components of w from w.cfg; on error the caller closes
// what was opened.
func (w *Worker) build() error {
	w.metrics = promreg.NewBatch(w.cfg.Metrics)
	m, err := newMetrics(w.metrics)
	if err != nil {
		return err
	}
	// Every gateway and daemon request of this worker is measured.
	w.cfg.Gateway = w.cfg.Gateway.Measured(m.gateway)
	w.store = events.NewStore(w.cfg.Redis, events.StoreConfig{})
	claim, err := w.buildWatchers(m.events)
	if err != nil {
		return err
	}
	if err := w.buildTasks(m.tasks, claim); err != nil {
		return err
	}
	return w.buildHTTP()
}

// buildWatchers creates the watcher manager unless watchers are disabled,
// and returns its Claim (nil without watchers).
func (w *Worker) buildWatchers(metrics *events.Metrics) (claim func(context.Context, tasks.Project) error, err error) {
	cfg := w.cfg
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
	return claim, nil
}

// buildTasks creates the handlers, their mux, the schedule and the asynq
// server.
func (w *Worker) buildTasks(metrics *handlers.Metrics, claim func(context.Context, tasks.Project) error) (err error) {
	cfg, log := w.cfg, w.log

	hcfg := cfg.Handlers
	hcfg.Gateway, hcfg.Redis, hcfg.Logger = cfg.Gateway, cfg.Redis, cfg.Logger.With("component", "handlers")
	hcfg.Store, hcfg.Claim = w.store, claim
	// Without watchers nothing records server events: waits poll.
	hcfg.WaitByPolling = hcfg.WaitByPolling || cfg.Watchers.Disabled
	if w.handlers, err = handlers.New(hcfg); err != nil {
		return err
	}
	w.cancellation = handlers.NewCancellation(cfg.Redis, 0, log)
	w.mux = asynq.NewServeMux()
	w.mux.Use(handlers.Tracing(cfg.TracerProvider), handlers.Attempts(cfg.Redis, log), handlers.Recover(log), handlers.Logging(log), metrics.Middleware(), w.cancellation.Middleware)
	w.handlers.Register(w.mux)
	if err := maintenance.Register(w.mux, maintenance.Config{
		Redis: cfg.Redis, Gateway: cfg.Gateway, Store: w.store, IdleTTL: cfg.Maintenance.IdleTTL,
		Claim: claim, Logger: cfg.Logger.With("component", "maintenance"),
	}); err != nil {
		return err
	}
	if !cfg.Maintenance.Disabled {
		if w.scheduler, err = maintenance.NewScheduler(maintenance.SchedulerConfig{
			Redis: cfg.Redis, CleanupSpec: cfg.Maintenance.CleanupSpec, ReconcileSpec: cfg.Maintenance.ReconcileSpec,
			Logger: cfg.Logger.With("component", "scheduler"),
		}); err != nil {
			return err
		}
	}

	policy := *cfg.Policy
	w.stopWaking = make(chan struct{})
	waker := newIdleWaker(cfg.Redis, cfg.Queues, cfg.TaskCheckInterval, w.stopWaking)
	w.server = asynq.NewServerFromRedisClient(waker, asynq.Config{
		Concurrency:              cfg.Concurrency,
		Queues:                   cfg.Queues,
		ShutdownTimeout:          cfg.ShutdownTimeout,
		TaskCheckInterval:        idleSleep, // the waker waits (wake.go)
		DelayedTaskCheckInterval: cfg.DelayedTaskCheckInterval,
		RetryDelayFunc:           policy.RetryDelay,
		IsFailure:                handlers.IsFailure,
		Logger:                   asynqlog.New(cfg.Logger),
		LogLevel:                 asynq.WarnLevel,
	})
	return nil
}

// buildHTTP creates the dashboard and the API and opens the listener.
func (w *Worker) buildHTTP() (err error) {
	cfg := w.cfg
	if w.dash, err = dashboard.New(dashboard.Config{
		Redis: cfg.Redis, RootPath: cfg.HTTP.DashboardPath, ReadOnly: cfg.HTTP.ReadOnly, Auth: cfg.HTTP.Auth,
		ListenAddr: cfg.HTTP.Addr, Store: w.store, Metrics: cfg.Metrics, PrometheusAddr: cfg.HTTP.PrometheusAddr,
		Ready: w.ready, Logger: cfg.Logger.With("component", "dashboard"), ServerLogs: serverLogs(cfg.Gateway),
	}); err != nil {
		if strings.Contains(err.Error(), "RootPath") {
			return &ConfigError{Field: "HTTP.DashboardPath", Value: fmt.Sprintf("%q", cfg.HTTP.DashboardPath), Reason: strings.TrimPrefix(err.Error(), "dashboard: ")}
		}
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", w.dash)
	if !cfg.HTTP.APIDisabled {
		w.apiClient = tasks.NewClient(cfg.Redis, tasks.WithTracerProvider(cfg.TracerProvider))
		if w.api, err = api.New(api.Config{
			Client: w.apiClient, Redis: cfg.Redis, Store: w.store, Tokens: cfg.HTTP.APITokens,
			Gateway: cfg.Gateway, ListenAddr: cfg.HTTP.Addr, Logger: cfg.Logger.With("component", "api"),
			Queues: slices.Collect(maps.Keys(cfg.Queues)), TracerProvider: cfg.TracerProvider,
		}); err != nil {
			return err
		}
		mux.Handle(api.Prefix+"/", w.api)
	}
	if w.http, err = newGuard(cfg.HTTP, mux); err != nil {
		return err
	}
	if cfg.HTTP.Addr != "" {
		if w.listener, err = net.Listen("tcp", cfg.HTTP.Addr); err != nil {
			return &ConfigError{Field: "HTTP.Addr", Value: cfg.HTTP.Addr, Reason: "cannot listen: " + err.Error(), Err: err}
		}
	}
	return nil
}

// close releases what New opened when Run will not.
func (w *Worker) close() {
	if w.listener != nil {
		_ = w.listener.Close()
	}
	if w.api != nil {
		_ = w.api.Close()
	}
	if w.apiClient != nil {
		_ = w.apiClient.Close()
	}
	if w.dash != nil {
		_ = w.dash.Close()
	}
}

// Mux is the worker's ServeMux. Embedders may register their own task types
// and middleware on it before Run; sandboxq's types are already there.
func (w *Worker) Mux() *asynq.ServeMux { return w.mux }

// Handler is the dashboard and producer API as one http.Handler, for
// embedders that serve it themselves (HTTP.Addr empty). It carries the
// same Host allowlist and cross-origin protection as the listener (see
// HTTPConfig.AllowedHosts); embedders set the server's own timeouts.
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
				w.dash.EndStreams()
				if w.api != nil {
					_ = w.api.Close()
				}
			}))
		})
	}
	<-ctx.Done()
	w.log.InfoContext(bg, "worker shutting down", "shutdown_timeout", w.cfg.ShutdownTimeout)
	w.running.Store(false)
	close(w.stopWaking)
	w.server.Stop()
	w.server.Shutdown()
	stopBG()
	wg.Wait()
	return errors.Join(errs...)
}

// Ping reports whether the worker's Redis answers.
func (w *Worker) Ping() error { return w.server.Ping() }

// metrics are the worker's Prometheus series, each owned by the package
// that measures it and registered here once.
type metrics struct {
	gateway *gateway.Metrics
	events  *events.Metrics
	tasks   *handlers.Metrics
}

// newMetrics registers every series on reg; a registry that already has
// them (another Worker's) is an error, not a silent share.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var m metrics
	var err error
	if m.gateway, err = gateway.NewMetrics(reg); err != nil {
		return nil, err
	}
	if m.events, err = events.NewMetrics(reg); err != nil {
		return nil, err
	}
	if m.tasks, err = handlers.NewMetrics(reg); err != nil {
		return nil, err
	}
	return &m, nil
}
