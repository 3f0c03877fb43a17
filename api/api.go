package api

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/internal/access"
	"github.com/sandboxq/sandboxq/internal/config"
	"github.com/sandboxq/sandboxq/internal/eventhub"
	"github.com/sandboxq/sandboxq/internal/secret"
	"github.com/sandboxq/sandboxq/tasks"
)

// Prefix is the path under which the API serves its routes. Mount the
// handler there: mux.Handle(api.Prefix+"/", a).
const Prefix = "/api/v1"

// Defaults of Config.
const (
	DefaultMaxBody            = 16 << 20
	DefaultHeartbeat          = 15 * time.Second
	DefaultIdempotencyTTL     = 24 * time.Hour
	DefaultMaxWait            = 60 * time.Second
	DefaultPollInterval       = 25 * time.Millisecond
	DefaultEventsPollInterval = time.Second
	DefaultMaxStream          = time.Hour
)

// Config configures an API. Client and Redis are required; every other
// field has the default its comment states.
type Config struct {
	// Client enqueues, inspects and cancels tasks. Every rule of the Go
	// producer API (validation, defaults, deduplication, splitting of large
	// file sets) holds because every request goes through it.
	Client *tasks.Client
	// Redis is the Redis the Client and the workers use: it holds the
	// idempotency records and the projects' event streams.
	Redis redis.UniversalClient
	// Store is the project registry. Nil: GET /projects/{namespace}/{name}
	// answers 503 (the event stream works without it).
	Store *events.Store
	// Gateway serves the read-through routes (sandbox, servers/{slug},
	// files, env); see readthrough.go. Nil: they answer 503.
	Gateway Gateway
	// Tokens are the bearer tokens a request may carry (any one of them).
	// Empty: no authentication, which is only allowed on a loopback
	// ListenAddr.
	Tokens []secret.Secret
	// ListenAddr, if set, is the address the API is served on; New refuses
	// a non-loopback address without Tokens (see CheckListen).
	ListenAddr string
	// Queues are the queues this deployment's workers serve; ?queue= must
	// name one of them (default: the keys of tasks.DefaultQueues). A task
	// in any other queue would wait forever.
	Queues []string
	// MaxBody caps a request body in bytes (default DefaultMaxBody, 16 MiB);
	// larger bodies get 413.
	MaxBody int64
	// Logger receives logs (default: discard). Tokens and request bodies
	// are never logged.
	Logger *slog.Logger
	// Heartbeat is the interval of SSE comment lines that keep idle event
	// streams (and the proxies on their way) alive (default 15 s).
	Heartbeat time.Duration
	// IdempotencyTTL is how long the answer to a POST with an
	// Idempotency-Key is kept and replayed (default 24 h).
	IdempotencyTTL time.Duration
	// MaxWait caps the ?wait= of GET /tasks/{queue}/{id} (default 60 s).
	MaxWait time.Duration
	// PollInterval is unused: a long-polling GET waits with
	// tasks.Client.Wait, which hears the worker's notice and polls only as
	// a fallback (tasks.WithWaitPoll).
	//
	// Deprecated: set the fallback on the Client with tasks.WithWaitPoll.
	PollInterval time.Duration
	// EventsPollInterval is how often an event stream re-reads the
	// project's Redis stream without a pub/sub wake-up, covering events
	// appended without a publish and messages lost while the subscription
	// reconnects (default 1 s).
	EventsPollInterval time.Duration
	// MaxStream is the longest an event stream stays open (default 1 h);
	// the client then reconnects with Last-Event-ID and misses nothing.
	MaxStream time.Duration
	// TracerProvider, if set, makes every request a server span that
	// continues an incoming traceparent (see trace.go). Nil: no spans.
	TracerProvider trace.TracerProvider
}

// withDefaults checks the required fields, fills the zero values with
// their documented defaults, then validates the result.
func (c *Config) withDefaults() error {
	if c.Client == nil {
		return errors.New("api: Config.Client is required")
	}
	if c.Redis == nil {
		return errors.New("api: Config.Redis is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if len(c.Queues) == 0 {
		c.Queues = slices.Collect(maps.Keys(tasks.DefaultQueues))
	}
	c.Queues = slices.Clone(c.Queues)
	slices.Sort(c.Queues)
	config.FillDefaults(c.durations())
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	return c.validate()
}

func (c *Config) durations() []config.Duration {
	return []config.Duration{
		config.Field("Heartbeat", &c.Heartbeat, DefaultHeartbeat),
		config.Field("IdempotencyTTL", &c.IdempotencyTTL, DefaultIdempotencyTTL),
		config.Field("MaxWait", &c.MaxWait, DefaultMaxWait),
		config.Field("PollInterval", &c.PollInterval, DefaultPollInterval),
		config.Field("EventsPollInterval", &c.EventsPollInterval, DefaultEventsPollInterval),
		config.Field("MaxStream", &c.MaxStream, DefaultMaxStream),
	}
}

// validate reports the first field that is out of range, naming it.
func (c *Config) validate() error {
	for i, t := range c.Tokens {
		if t.IsZero() {
			return fmt.Errorf("api: Config.Tokens[%d] is empty", i)
		}
	}
	if c.ListenAddr != "" {
		if err := CheckListen(c.ListenAddr, c.Tokens); err != nil {
			return err
		}
	}
	if d, bad := config.Negative(c.durations()); bad {
		return fmt.Errorf("api: Config.%s %v is negative", d.Name, *d.Value)
	}
	if c.MaxBody < 0 {
		return fmt.Errorf("api: Config.MaxBody %d is negative", c.MaxBody)
	}
	return nil
}

// CheckListen refuses to serve the API on a non-loopback address without
// at least one token. addr is host:port; an empty host (":8080") means
// every interface and is not loopback.
func CheckListen(addr string, tokens []secret.Secret) error {
	for _, t := range tokens {
		if !t.IsZero() {
			return nil
		}
	}
	loopback, err := access.LoopbackAddr(addr)
	if err != nil {
		return fmt.Errorf("api: listen %w", err)
	}
	if loopback {
		return nil
	}
	return fmt.Errorf("api: refusing to serve on %q without a token: it is not a loopback address; configure at least one API token or listen on 127.0.0.1", addr)
}

// API is the HTTP producer API. It is an http.Handler for the paths under
// Prefix; it is safe for concurrent use.
type API struct {
	opts   Config
	log    *slog.Logger
	mux    *http.ServeMux
	tokens []access.Digest
	hub    *eventhub.Hub

	handler http.Handler // serve, traced if configured

	closing context.Context
	close   context.CancelFunc
	// streams counts open event streams and long polls.
	streams atomic.Int64
}

// route is one entry of the route table. path is relative to Prefix.
type route struct {
	method, path string
	handle       http.HandlerFunc
}

// routes is the route table: New registers it and the OpenAPI test checks
// the document against it.
func (a *API) routes() []route {
	return []route{
		{http.MethodPost, "/tasks/{type}", a.enqueue},
		{http.MethodGet, "/tasks/{queue}/{id}", a.getTask},
		{http.MethodDelete, "/tasks/{queue}/{id}", a.cancelTask},
		{http.MethodPost, "/tasks/{queue}/{id}/retry", a.retryTask},
		{http.MethodGet, "/projects/{namespace}/{name}", a.getProject},
		{http.MethodGet, "/projects/{namespace}/{name}/events", a.projectEvents},
		{http.MethodGet, "/projects/{namespace}/{name}/sandbox", a.getSandbox},
		{http.MethodGet, "/projects/{namespace}/{name}/servers/{slug}", a.getServer},
		{http.MethodGet, "/projects/{namespace}/{name}/servers/{slug}/logs", a.getServerLogs},
		{http.MethodGet, "/projects/{namespace}/{name}/tasks", a.projectTasks},
		{http.MethodGet, "/projects/{namespace}/{name}/files", a.getFile},
		{http.MethodGet, "/projects/{namespace}/{name}/env", a.getEnv},
		{http.MethodGet, "/openapi.json", a.openAPI},
	}
}

// New returns the API. Nothing runs until requests arrive; Close ends
// open event streams and long polls.
func New(opts Config) (*API, error) {
	if err := opts.withDefaults(); err != nil {
		return nil, err
	}
	a := &API{opts: opts, log: opts.Logger.With("component", "api"), mux: http.NewServeMux()}
	a.closing, a.close = context.WithCancel(context.Background())
	a.hub = eventhub.New(opts.Redis, a.log)
	for _, t := range opts.Tokens {
		a.tokens = append(a.tokens, access.DigestOf(t.Reveal()))
	}
	for _, rt := range a.routes() {
		a.mux.HandleFunc(rt.method+" "+Prefix+rt.path, rt.handle)
	}
	a.mux.HandleFunc("/", a.notFound)
	a.handler = a.traced(http.HandlerFunc(a.serve), opts.TracerProvider)
	return a, nil
}

// Close ends the API's open event streams and long polls (which would
// otherwise hold http.Server.Shutdown until its deadline) and its Redis
// subscription. Register it with http.Server.RegisterOnShutdown. Requests
// after Close still work, but event streams end at once.
func (a *API) Close() error {
	a.close()
	a.hub.Close()
	return nil
}

// ServeHTTP authenticates the request and routes it.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.handler.ServeHTTP(w, r) }

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	scope, msg := a.authenticate(r)
	if msg != "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sandboxq"`)
		writeError(w, http.StatusUnauthorized, msg, "")
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), scopeKey{}, scope))
	a.mux.ServeHTTP(w, r)
}

type scopeKey struct{}

// authenticate checks the bearer token. It returns the scope of the token
// (its hash, which keeps idempotency keys of different tokens apart), or
// the message of a 401.
func (a *API) authenticate(r *http.Request) (scope, msg string) {
	if len(a.tokens) == 0 {
		return "", ""
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", "missing bearer token: send the header Authorization: Bearer <token>"
	}
	tok, ok := access.BearerToken(h)
	if !ok {
		return "", "the Authorization header must be Bearer <token>"
	}
	match := access.Match(tok, a.tokens)
	if match < 0 {
		return "", "invalid bearer token"
	}
	return hex.EncodeToString(a.tokens[match][:]), ""
}

func scopeOf(ctx context.Context) string {
	s, _ := ctx.Value(scopeKey{}).(string)
	return s
}

// notFound answers paths that no route matches: 405 with Allow when
// another method of the path has a route, else 404.
func (a *API) notFound(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		c := r.Clone(r.Context())
		c.Method = m
		if _, pattern := a.mux.Handler(c); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", ")), "")
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no route for %s %s (the API lives under %s/, see %s/openapi.json)", r.Method, r.URL.Path, Prefix, Prefix), "")
}

// errorBody is the JSON of every error answer.
type errorBody struct {
	Error string `json:"error"`
	// Field names the offending input (a payload field path such as
	// "files[2].path", a query parameter or a header) when there is one.
	Field string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"internal error: cannot encode the answer"}`)
	}
	writeRaw(w, status, b)
}

func writeRaw(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg, field string) {
	writeJSON(w, status, errorBody{Error: msg, Field: field})
}

// answerCancelled answers a request whose context ended before it was
// answered. Most often the client has gone and nobody reads it, but the
// server also ends the context itself (a body read that timed out), and a
// handler that wrote nothing would send net/http's default 200.
func answerCancelled(w http.ResponseWriter) {
	writeError(w, http.StatusServiceUnavailable, "the request was cancelled before it was answered; retry it", "")
}

// internalError logs err and answers 500 without its details.
func (a *API) internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	if r.Context().Err() != nil {
		// The client went away, or the server ended the request: no log
		// line, but an answer all the same.
		answerCancelled(w)
		return
	}
	a.log.ErrorContext(r.Context(), what, slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("err", err.Error()))
	writeError(w, http.StatusInternalServerError, what+": internal error (see the server log)", "")
}

// withClosing returns a context that ends with ctx or when the API is
// closed.
func (a *API) withClosing(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(a.closing, cancel)
	return ctx, func() { stop(); cancel() }
}
