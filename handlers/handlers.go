package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/tasks"
)

// Config configures the task handlers. Gateway is required, and Redis
// unless both Locks and Results are set; every other field has the default
// its comment states.
type Config struct {
	// Gateway finds, creates and destroys sandboxes (a *gateway.Client).
	Gateway Gateway
	// Daemons returns the client of a sandbox's daemon (default: the
	// Gateway's own Daemon, when Gateway is a *gateway.Client; required
	// otherwise).
	Daemons func(*gateway.Sandbox) Daemon
	// Redis holds the project leases and the task records the default
	// Locks and Results use.
	Redis  redis.UniversalClient
	Logger *slog.Logger // default: discard

	// Locks takes the project leases (default: leases in Redis, see
	// LeaseTTL and LeaseWait).
	Locks Locker
	// Results reads a task's previous result, the checkpoint of
	// files:write and workflow:run (default: asynq's task records in Redis).
	Results Results

	// LeaseTTL is the lifetime of a project lease between renewals
	// (default 30 s; renewed every TTL/3 while held).
	LeaseTTL time.Duration
	// LeaseWait is how long a task waits for a busy project before it is
	// rescheduled without counting as a failure (default 3 s).
	LeaseWait time.Duration
	// CacheTTL is how long a project's sandbox lookup is remembered in this
	// process (default 10 s; a negative value disables the cache).
	CacheTTL time.Duration
	// PollInterval is how often a waiting server:start or server:restart
	// reads the server's status (default 250 ms).
	PollInterval time.Duration
	// DefaultWaitTimeout bounds the wait for a server when the payload does
	// not (default 10 min).
	DefaultWaitTimeout time.Duration

	// Store, if set, is the sandbox registry and event store (an
	// *events.Store): sandbox:ensure records the sandbox there,
	// sandbox:destroy marks it destroyed, every project task updates its
	// last-used time, and server:start and server:restart wait for the
	// server through the project's event stream instead of polling the
	// daemon (PollInterval then only paces a direct read every
	// FallbackRead, in case no watcher runs).
	Store Store
	// Claim, if set, is called after sandbox:ensure so that a watcher
	// starts on the sandbox at once (events.Manager.Claim).
	Claim func(ctx context.Context, p tasks.Project) error
	// FallbackRead is how often a wait through events also reads the
	// server's status directly (default 15 s).
	FallbackRead time.Duration
	// WaitByPolling makes server waits poll the daemon even with a Store,
	// for deployments that run no watchers.
	WaitByPolling bool
}

func (c *Config) withDefaults() error {
	if err := c.withPeers(); err != nil {
		return err
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 30 * time.Second
	}
	if c.LeaseWait == 0 {
		c.LeaseWait = 3 * time.Second
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = 10 * time.Second
	}
	if c.PollInterval == 0 {
		c.PollInterval = 250 * time.Millisecond
	}
	if c.DefaultWaitTimeout == 0 {
		c.DefaultWaitTimeout = 10 * time.Minute
	}
	if c.FallbackRead == 0 {
		c.FallbackRead = 15 * time.Second
	}
	if c.LeaseTTL < 30*time.Millisecond {
		return fmt.Errorf("handlers: LeaseTTL %v is too short", c.LeaseTTL)
	}
	if c.Locks == nil {
		c.Locks = &redisLocker{rdb: c.Redis, ttl: c.LeaseTTL, wait: c.LeaseWait, log: c.Logger}
	}
	if c.Results == nil {
		c.Results = inspectorResults{asynq.NewInspectorFromRedisClient(c.Redis)}
	}
	return nil
}

// withPeers checks the required peers and fills Daemons in. A nil pointer
// in an interface field counts as unset.
func (c *Config) withPeers() error {
	if gw, ok := c.Gateway.(*gateway.Client); ok {
		if gw == nil {
			c.Gateway = nil
		} else if c.Daemons == nil {
			c.Daemons = clientDaemons(gw)
		}
	}
	if st, ok := c.Store.(*events.Store); ok && st == nil {
		c.Store = nil
	}
	switch {
	case c.Gateway == nil:
		return errors.New("handlers: Config.Gateway is required")
	case c.Daemons == nil:
		return errors.New("handlers: Config.Daemons is required with a Gateway that is not a *gateway.Client")
	case c.Redis == nil && (c.Locks == nil || c.Results == nil):
		return errors.New("handlers: Config.Redis is required")
	}
	return nil
}

// Handlers runs every sandboxq task type against the gateway.
type Handlers struct {
	cfg      Config
	log      *slog.Logger
	gw       Gateway
	resolver *resolver
	results  Results
	// decoded, if set, is called after each payload is decoded (tests
	// observe when a waiting task decodes its payload).
	decoded func(taskType string)
}

// New returns the handlers for cfg.
func New(cfg Config) (*Handlers, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	return &Handlers{
		cfg:      cfg,
		log:      cfg.Logger,
		gw:       cfg.Gateway,
		resolver: newResolver(cfg.Gateway, cfg.CacheTTL),
		results:  cfg.Results,
	}, nil
}

// Register adds a handler for every task type to mux. It panics, like
// asynq.ServeMux.Handle, if a type is already registered.
func (h *Handlers) Register(mux *asynq.ServeMux) {
	register(mux, h, h.ensure)
	register(mux, h, h.destroy)
	register(mux, h, h.filesWrite)
	register(mux, h, h.serverStart)
	register(mux, h, h.serverStop)
	register(mux, h, h.serverRestart)
	register(mux, h, h.commandRun)
	register(mux, h, h.envUpdate)
	register(mux, h, h.workflowRun)
}

// Task is a decoded task as a handler sees it.
type Task[P tasks.Payload] struct {
	Payload P
	ID      string
	Queue   string
	Retried int
	result  io.Writer // nil: results are not kept
	// leased is set when process already holds the lease of the payload's
	// project for this task (see leaseFirst).
	leased bool
}

// SetResult writes v as the task's JSON result. The result is last-value:
// each call replaces the previous one, which is how progress is reported
// while the task runs.
func (t *Task[P]) SetResult(v any) error {
	if t.result == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	_, err = t.result.Write(b)
	return err
}

// Func is a typed handler: it returns the task's final result, or an error.
type Func[P tasks.Payload] func(ctx context.Context, t *Task[P]) (any, error)

// taskMeta is what asynq tells a handler about its task besides the task.
type taskMeta struct {
	id, queue string
	retried   int
	result    io.Writer // nil: results are not kept
}

// register adds fn under P's type name.
func register[P tasks.Payload](mux *asynq.ServeMux, h *Handlers, fn Func[P]) {
	var zero P
	mux.HandleFunc(zero.TypeName(), func(ctx context.Context, raw *asynq.Task) error {
		meta := taskMeta{}
		meta.id, _ = asynq.GetTaskID(ctx)
		meta.queue, _ = asynq.GetQueueName(ctx)
		meta.retried, _ = asynq.GetRetryCount(ctx)
		if rw := raw.ResultWriter(); rw != nil {
			meta.result = rw
		}
		return process(ctx, h, raw, meta, fn)
	})
}

// process decodes raw and runs fn on it. A non-nil result is written as the
// task result even when fn also fails, so a failed task still shows what it
// saw (a server's exit code, a command's output). For the types leaseFirst
// names, the project lease is taken before the payload is decoded.
func process[P tasks.Payload](ctx context.Context, h *Handlers, raw *asynq.Task, meta taskMeta, fn Func[P]) error {
	lctx, leased, release, err := h.leaseFirst(ctx, raw, meta.id)
	if err != nil {
		return err
	}
	release = sync.OnceFunc(release)
	defer release() // also if fn panics: the lease must not outlive the attempt
	p, err := tasks.Decode[P](raw)
	if err != nil {
		return Permanent(err)
	}
	if h.decoded != nil {
		h.decoded(raw.Type())
	}
	if proj, ok := tasks.ProjectOfPayload(p); leased != nil && (!ok || proj != *leased) {
		// The scan and the decoder disagree (a pathological payload): the
		// handler takes the decoded project's lease itself.
		release()
		lctx, leased = ctx, nil
	}
	t := &Task[P]{Payload: p, ID: meta.id, Queue: meta.queue, Retried: meta.retried, result: meta.result, leased: leased != nil}
	result, err := fn(lctx, t)
	release()
	if h.cfg.Store != nil && err == nil {
		if proj, ok := tasks.ProjectOfPayload(p); ok && raw.Type() != tasks.TypeSandboxDestroy {
			h.touch(ctx, proj)
		}
	}
	if result != nil && t.result != nil {
		handed, werr := handOver(ctx, result)
		if !handed {
			werr = t.SetResult(result)
		}
		if werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// leaseFirst takes the project lease of a files:write task before its
// payload is decoded: the project comes from a streaming scan of the
// payload (tasks.ProjectOf), so a chunk that waits for a busy project, or
// is sent back because the project stayed busy, holds only its encoded
// payload and never its decoded files. It returns the lease's context and
// project (nil when no lease was taken: other types, and payloads the scan
// cannot read, which Decode then reports) and its release.
func (h *Handlers) leaseFirst(ctx context.Context, raw *asynq.Task, owner string) (context.Context, *tasks.Project, func(), error) {
	if raw.Type() != tasks.TypeFilesWrite {
		return ctx, nil, func() {}, nil
	}
	proj, ok := tasks.ProjectOf(raw)
	if !ok {
		return ctx, nil, func() {}, nil
	}
	lctx, release, err := h.lock(ctx, proj, owner)
	if err != nil {
		return nil, nil, nil, err
	}
	return lctx, &proj, release, nil
}

// lock takes the project's lease for owner through Config.Locks, in a
// span of its own. The returned context is cancelled if the lease is lost;
// release must be called. The first lock of a task whose cancel mark
// Cancellation left unchecked (a leaseFirst type) checks it: the default
// Locker in the script that takes the lease, and hands the release to the
// end-of-attempt pipeline (Attempts); another Locker after a read of the
// mark. A marked task gets ErrCancelled and no lease.
func (h *Handlers) lock(ctx context.Context, p tasks.Project, owner string) (_ context.Context, _ func(), err error) {
	span := leaseWaitSpan(ctx, p)
	defer func() { endLeaseWait(span, err) }()
	if sc := takeStartCheck(ctx); sc != nil {
		if rl, ok := h.cfg.Locks.(*redisLocker); ok && sc.id == owner {
			return rl.lockTask(ctx, p, owner, attemptFrom(ctx))
		}
		if sc.c.marked(ctx, sc.id) {
			return nil, nil, ErrCancelled
		}
	}
	return h.cfg.Locks.Lock(ctx, p, owner)
}

// withSandbox resolves the project's sandbox (creating it if create) and
// calls fn with it. If fn fails in a way that says a remembered sandbox is
// stale, the sandbox is looked up afresh and fn runs once more on the new one.
func (h *Handlers) withSandbox(ctx context.Context, p tasks.Project, create bool, fn func(*gateway.Sandbox, Daemon) error) error {
	sb, fromCache, err := h.resolver.lookup(ctx, p, create, false)
	if err != nil {
		return classify(err)
	}
	if sb == nil {
		return Permanent(errNoSandbox)
	}
	if !fromCache && create {
		// The lookup may have created the sandbox: make sure the registry
		// (and so a watcher) knows it.
		if err := h.record(ctx, p, sb); err != nil {
			return err
		}
	}
	err = fn(sb, h.cfg.Daemons(sb))
	if err == nil || !fromCache || !gateway.IsStaleSandbox(err) {
		return classify(err)
	}
	h.resolver.forget(p)
	fresh, _, lerr := h.resolver.lookup(ctx, p, create, true)
	if lerr != nil {
		return classify(lerr)
	}
	if fresh == nil {
		return Permanent(errNoSandbox)
	}
	if create {
		if err := h.record(ctx, p, fresh); err != nil {
			return err
		}
	}
	if fresh.SandboxID == sb.SandboxID && fresh.Token == sb.Token {
		return classify(err)
	}
	return classify(fn(fresh, h.cfg.Daemons(fresh)))
}

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

// touch records that the project was used now. A project the registry does
// not know (its sandbox was never ensured through sandboxq) is left alone.
// When Attempts runs the task and the Store can queue the touch on a
// pipeline (events.Store.TouchIn), it joins the end-of-attempt pipeline.
func (h *Handlers) touch(ctx context.Context, p tasks.Project) {
	warn := func(err error) {
		if err != nil && !errors.Is(err, events.ErrNotFound) {
			h.log.WarnContext(ctx, "record last use", "namespace", p.Namespace, "name", p.Name, "err", err)
		}
	}
	if ts, ok := h.cfg.Store.(pipelineToucher); ok {
		st := attemptFrom(ctx)
		if st != nil && st.join(func(pctx context.Context, pl redis.Pipeliner) func() {
			check := ts.TouchIn(pctx, pl, p)
			return func() { warn(check()) }
		}, false) {
			return
		}
	}
	warn(h.cfg.Store.Touch(ctx, p))
}

// pipelineToucher is a Store that can queue a touch on a pipeline
// (*events.Store).
type pipelineToucher interface {
	TouchIn(ctx context.Context, pl redis.Pipeliner, p tasks.Project) func() error
}
