package dashboard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/internal/eventhub"
	"github.com/sandboxq/sandboxq/tasks"
)

// Defaults of Config.
const (
	DefaultRootPath = "/monitoring"
	DefaultRefresh  = 5 * time.Second
)

// Registry is where the dashboard registers its queue collector and which
// /metrics serves: a *prometheus.Registry fits.
type Registry interface {
	prometheus.Registerer
	prometheus.Gatherer
}

// Config configures a Dashboard. Redis is required; every other field has
// the default its comment states.
type Config struct {
	// Redis is asynq's and the registry's Redis. The Dashboard does not
	// close it.
	Redis redis.UniversalClient
	// RootPath is where Asynqmon is mounted (default "/monitoring"; it is
	// served under RootPath+"/"). It must start with "/" and must not be
	// one of the dashboard's own paths.
	RootPath string
	// ReadOnly makes Asynqmon view-only: nil (the default) means true. With
	// false, operators can delete, archive, run and cancel tasks and pause
	// queues.
	ReadOnly *bool
	// Auth protects every path but /healthz. Without credentials the
	// dashboard answers only requests that arrive on a loopback address.
	Auth Auth
	// ListenAddr is the address the dashboard is served on, checked with
	// CheckListen by New. Embedders that mount the handler in a server of
	// their own may leave it empty; requests on non-loopback addresses are
	// refused without credentials all the same.
	ListenAddr string
	// Store is the sandbox registry (default events.NewStore(Redis, {})).
	Store *events.Store
	// Metrics is served on /metrics; New registers the asynq queue
	// collector on it (and the Go and process collectors if it has none).
	// Default: a new registry. Pass the registry the worker's series are
	// registered on (worker.Config.Metrics) to serve them too.
	Metrics Registry
	// Ready is called by /readyz after a Redis PING (e.g. "is the asynq
	// server running?"); nil means Redis alone decides.
	Ready func(ctx context.Context) error
	// PrometheusAddr, if set, is the Prometheus server Asynqmon queries for
	// its time-series charts.
	PrometheusAddr string
	// Refresh is the auto-refresh period of the /sandboxes page (default
	// 5 s; negative disables it).
	Refresh time.Duration
	// Tasks reads a project's task index for the project page (default
	// tasks.NewClient(Redis)).
	Tasks TaskLister
	// ServerLogs, if set, reads a server's recent output for the project
	// page; without it the page shows no logs.
	ServerLogs ServerLogsFunc
	// Logger receives warnings (default: discard).
	Logger *slog.Logger
	// Now is the clock for idle times (default time.Now).
	Now func() time.Time
}

// withDefaults checks the required fields, fills the zero values with
// their documented defaults, then validates the result. RootPath is
// checked and cleaned by New.
func (c *Config) withDefaults() error {
	if c.Redis == nil {
		return errors.New("dashboard: Config.Redis is required")
	}
	if c.Store == nil {
		c.Store = events.NewStore(c.Redis, events.StoreConfig{})
	}
	if c.Tasks == nil {
		c.Tasks = tasks.NewClient(c.Redis)
	}
	if c.Refresh == 0 {
		c.Refresh = DefaultRefresh
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
	return c.validate()
}

// validate reports half-configured credentials and a non-loopback
// ListenAddr without them.
func (c *Config) validate() error {
	if err := c.Auth.Validate(); err != nil {
		return err
	}
	if c.ListenAddr != "" {
		return CheckListen(c.ListenAddr, c.Auth)
	}
	return nil
}

// Dashboard is the operations HTTP handler: Asynqmon under RootPath,
// /healthz, /readyz, /metrics, /sandboxes and /api/sandboxes.
type Dashboard struct {
	rdb      redis.UniversalClient
	store    *events.Store
	rootPath string
	readOnly bool
	auth     *authenticator
	ready    func(context.Context) error
	refresh  time.Duration
	log      *slog.Logger
	now      func() time.Time

	tasks      TaskLister
	serverLogs ServerLogsFunc
	hub        *eventhub.Hub
	closing    context.Context // ends with EndStreams
	endClosing context.CancelFunc
	endOnce    sync.Once

	handler    http.Handler
	registry   Registry
	registered []prometheus.Collector
	closeOnce  sync.Once
}

// reservedPaths are the dashboard's own paths, which RootPath must not
// shadow.
var reservedPaths = []string{"/", "/healthz", "/readyz", "/metrics", "/sandboxes", "/api"}

// New checks opts and builds the handler; nothing runs in the background.
func New(opts Config) (*Dashboard, error) {
	if err := opts.withDefaults(); err != nil {
		return nil, err
	}
	root, err := cleanRootPath(opts.RootPath)
	if err != nil {
		return nil, err
	}
	d := &Dashboard{
		rdb:      opts.Redis,
		store:    opts.Store,
		rootPath: root,
		readOnly: opts.ReadOnly == nil || *opts.ReadOnly,
		auth:     newAuthenticator(opts.Auth),
		ready:    opts.Ready,
		refresh:  opts.Refresh,
		log:      opts.Logger,
		now:      opts.Now,
		registry: opts.Metrics,

		tasks:      opts.Tasks,
		serverLogs: opts.ServerLogs,
		hub:        eventhub.New(opts.Redis, opts.Logger),
	}
	d.closing, d.endClosing = context.WithCancel(context.Background())
	if err := d.registerCollectors(); err != nil {
		d.endClosing()
		return nil, err
	}

	monitor := asynqmon.New(asynqmon.Options{
		RootPath:          root,
		RedisConnOpt:      sharedClient{opts.Redis},
		PayloadFormatter:  asynqmon.PayloadFormatterFunc(FormatPayload),
		ResultFormatter:   asynqmon.ResultFormatterFunc(FormatResult),
		PrometheusAddress: opts.PrometheusAddr,
		ReadOnly:          d.readOnly,
	})
	// asynqmon's Close would close the Redis client it was given, which is
	// the caller's; it holds nothing else, so it is never called.

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", d.healthz)
	mux.HandleFunc("GET /readyz", d.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.registry, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      promLogger{d.log},
	}))
	mux.HandleFunc("GET /api/sandboxes", d.apiSandboxes)
	mux.HandleFunc("GET /sandboxes", d.sandboxesPage)
	mux.HandleFunc("GET /sandboxes/{namespace}/{name}", d.projectPage)
	mux.HandleFunc("GET /api/sandboxes/{namespace}/{name}/stream", d.projectStream)
	mux.HandleFunc("GET /{$}", d.index)
	mux.Handle(root+"/", d.guardReadOnly(monitor))

	// Writes (only possible with ReadOnly false) must come from the
	// dashboard's own pages: a browser holding basic-auth credentials would
	// otherwise let any site post to it.
	d.handler = d.protect(http.NewCrossOriginProtection().Handler(mux))
	return d, nil
}

// CheckRootPath reports whether New would refuse p as Config.RootPath,
// without building anything.
func CheckRootPath(p string) error {
	_, err := cleanRootPath(p)
	return err
}

// cleanRootPath applies the RootPath rules.
func cleanRootPath(p string) (string, error) {
	if p == "" {
		return DefaultRootPath, nil
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("dashboard: RootPath %q must start with /", p)
	}
	if strings.ContainsAny(p, "{}?#% \t\n") {
		return "", fmt.Errorf("dashboard: RootPath %q must be a plain path", p)
	}
	p = strings.TrimRight(p, "/")
	for _, r := range reservedPaths {
		if p == strings.TrimRight(r, "/") || (r != "/" && strings.HasPrefix(p+"/", r+"/")) {
			return "", fmt.Errorf("dashboard: RootPath %q collides with the dashboard's own %s", p+"/", r)
		}
	}
	return p, nil
}

// registerCollectors adds the queue collector, and the Go and process
// collectors unless the registry already has them.
func (d *Dashboard) registerCollectors() error {
	queue := NewQueueCollector(d.rdb)
	if err := d.registry.Register(queue); err != nil {
		return fmt.Errorf("dashboard: register queue metrics: %w", err)
	}
	d.registered = append(d.registered, queue)
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		err := d.registry.Register(c)
		if err == nil {
			d.registered = append(d.registered, c)
			continue
		}
		if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok {
			d.unregister()
			return fmt.Errorf("dashboard: register runtime metrics: %w", err)
		}
	}
	return nil
}

func (d *Dashboard) unregister() {
	for _, c := range d.registered {
		d.registry.Unregister(c)
	}
	d.registered = nil
}

// ServeHTTP implements http.Handler.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.handler.ServeHTTP(w, r) }

// Close unregisters the dashboard's collectors, so a later New may use the
// same registry. It does not close Redis. Close it after the HTTP server
// serving the dashboard has shut down.
func (d *Dashboard) Close() error {
	d.EndStreams()
	d.closeOnce.Do(d.unregister)
	return nil
}

// RootPath returns where Asynqmon is mounted, without a trailing slash.
func (d *Dashboard) RootPath() string { return d.rootPath }

// protect applies the security headers, the loopback rule and auth.
// /healthz is open: it says only that the process answers.
func (d *Dashboard) protect(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		if r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		if !d.auth.enabled && !fromLoopback(r) {
			http.Error(w, "the dashboard has no credentials configured and answers on loopback addresses only", http.StatusForbidden)
			return
		}
		if !d.auth.allowed(r) {
			d.auth.challenge(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// guardReadOnly refuses every method but GET and HEAD under RootPath when
// read-only. Asynqmon refuses its mutating API calls itself; this also
// covers anything it might add.
func (d *Dashboard) guardReadOnly(next http.Handler) http.Handler {
	if !d.readOnly {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the dashboard is read-only: "+r.Method+" is not allowed", http.StatusMethodNotAllowed)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (d *Dashboard) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz answers 200 when Redis answers a PING and Ready (if any) passes,
// else 503 saying which check failed.
func (d *Dashboard) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	checks := map[string]string{"redis": "ok"}
	ok := true
	if err := d.rdb.Ping(ctx).Err(); err != nil {
		checks["redis"], ok = "unreachable: "+err.Error(), false
	}
	if d.ready != nil {
		checks["worker"] = "ok"
		if err := d.ready(ctx); err != nil {
			checks["worker"], ok = err.Error(), false
		}
	}
	status, word := http.StatusOK, "ok"
	if !ok {
		status, word = http.StatusServiceUnavailable, "unavailable"
		d.log.WarnContext(r.Context(), "not ready", "checks", checks)
	}
	writeJSON(w, status, map[string]any{"status": word, "checks": checks})
}

func (d *Dashboard) index(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/sandboxes", http.StatusFound)
}

// sharedClient hands asynqmon the caller's Redis client instead of
// connection options, so the dashboard opens no connections of its own.
type sharedClient struct{ c redis.UniversalClient }

func (s sharedClient) MakeRedisClient() any { return s.c }

// promLogger routes promhttp's errors (a queue that cannot be read) to the
// dashboard's logger.
type promLogger struct{ l *slog.Logger }

func (p promLogger) Println(v ...any) { p.l.Warn("metrics collection", "err", fmt.Sprint(v...)) }
