package maintenance

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/tasks"
)

// Defaults of Config.
const (
	DefaultIdleTTL    = 30 * time.Minute
	DefaultStaleAfter = 24 * time.Hour
	// DefaultWatchedRecheck is how often, on average, reconcile asks the
	// gateway about a sandbox a watcher follows.
	DefaultWatchedRecheck = time.Hour
)

// pageSize is how many registry entries a run reads at a time.
const pageSize = 200

// Config is what the maintenance handlers need. Redis is required; Gateway
// is required for reconcile. Every other field has the default its comment
// states.
type Config struct {
	Redis redis.UniversalClient
	// Gateway is asked whether each registered sandbox still exists.
	Gateway *gateway.Client
	// Store is the registry (default events.NewStore(Redis, {})).
	Store *events.Store
	// Client enqueues sandbox:destroy (default tasks.NewClient(Redis)).
	Client *tasks.Client
	// IdleTTL is the idle time after which cleanup destroys a sandbox when
	// the task's payload names none (default 30 min).
	IdleTTL time.Duration
	// StaleAfter is how long reconcile keeps the entry of a destroyed
	// sandbox after its last update (default 24 h); older ones are removed.
	StaleAfter time.Duration
	// WatchedRecheck is how often, on average, reconcile asks the gateway
	// about a sandbox that a watcher follows (default 1 h): the watcher's
	// WebSocket already says whether it lives, so checking it at every run
	// would only load the gateway. Each check schedules the next between
	// 0.5 and 1.5 times this later, so the checks spread over time.
	WatchedRecheck time.Duration
	// Claim, if set, is called by reconcile for a live sandbox that no
	// process watches (events.Manager.Claim).
	Claim func(ctx context.Context, p tasks.Project) error
	// Logger receives one line per run and warnings (default: discard).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// withDefaults checks the required fields, fills the zero values with
// their documented defaults, then validates the result.
func (c *Config) withDefaults() error {
	if c.Redis == nil {
		return errors.New("maintenance: Config.Redis is required")
	}
	if c.Gateway == nil {
		return errors.New("maintenance: Config.Gateway is required")
	}
	if c.Store == nil {
		c.Store = events.NewStore(c.Redis, events.StoreConfig{})
	}
	if c.Client == nil {
		c.Client = tasks.NewClient(c.Redis)
	}
	if c.IdleTTL == 0 {
		c.IdleTTL = DefaultIdleTTL
	}
	if c.StaleAfter == 0 {
		c.StaleAfter = DefaultStaleAfter
	}
	if c.WatchedRecheck == 0 {
		c.WatchedRecheck = DefaultWatchedRecheck
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c.validate()
}

// validate reports a negative IdleTTL or StaleAfter.
func (c *Config) validate() error {
	if c.IdleTTL < 0 || c.StaleAfter < 0 || c.WatchedRecheck < 0 {
		return errors.New("maintenance: IdleTTL, StaleAfter and WatchedRecheck must not be negative")
	}
	return nil
}

// Register adds the maintenance:cleanup and maintenance:reconcile handlers
// to mux. It panics, like asynq.ServeMux.Handle, if a type is already
// registered.
func Register(mux *asynq.ServeMux, deps Config) error {
	if mux == nil {
		return errors.New("maintenance: Register: nil ServeMux")
	}
	if err := deps.withDefaults(); err != nil {
		return err
	}
	r := &runner{deps: deps, log: deps.Logger.With("component", "maintenance")}
	mux.HandleFunc(tasks.TypeMaintenanceCleanup, r.cleanupTask)
	mux.HandleFunc(tasks.TypeMaintenanceReconcile, r.reconcileTask)
	return nil
}

type runner struct {
	deps Config
	log  *slog.Logger
}

// DestroyEnqueued is one sandbox cleanup asked to destroy.
type DestroyEnqueued struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	SandboxID string    `json:"sandbox_id"`
	LastUsed  time.Time `json:"last_used"`
	TaskID    string    `json:"task_id"`
	// Duplicate is true when a sandbox:destroy of the project was already
	// pending; TaskID is that task.
	Duplicate bool `json:"duplicate"`
}

// Failure is a project a run could not handle.
type Failure struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Error     string `json:"error"`
}

// CleanupResult is the result of maintenance:cleanup.
type CleanupResult struct {
	IdleTTL string    `json:"idle_ttl"`
	Cutoff  time.Time `json:"cutoff"`
	// Idle counts the live sandboxes found idle past the cutoff.
	Idle      int               `json:"idle"`
	Enqueued  []DestroyEnqueued `json:"enqueued"`
	Failures  []Failure         `json:"failures,omitempty"`
	Truncated bool              `json:"truncated,omitempty"`
}

// maxListed caps the per-project lists of a result, which asynq keeps in
// Redis; counts stay exact.
const maxListed = 1000

func (r *runner) cleanupTask(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.MaintenanceCleanup](t)
	if err != nil {
		return err
	}
	ttl := p.IdleTTLDuration()
	if ttl == 0 {
		ttl = r.deps.IdleTTL
	}
	res, err := r.cleanup(ctx, ttl)
	if werr := writeResult(t, res); werr != nil && err == nil {
		err = werr
	}
	return err
}

// cleanup enqueues sandbox:destroy for every live sandbox whose last use
// is older than ttl. Each candidate is read again just before its destroy
// is enqueued, so a sandbox used while the run pages is left alone.
func (r *runner) cleanup(ctx context.Context, ttl time.Duration) (*CleanupResult, error) {
	start := r.deps.Now()
	cutoff := start.Add(-ttl)
	res := &CleanupResult{IdleTTL: ttl.String(), Cutoff: cutoff.UTC(), Enqueued: []DestroyEnqueued{}}
	cursor := ""
	for {
		entries, next, err := r.deps.Store.List(ctx, events.ListOptions{IdleSince: cutoff, Cursor: cursor, Limit: pageSize})
		if err != nil {
			return res, fmt.Errorf("cleanup: list idle sandboxes: %w", err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			if !live(e.Status) {
				continue
			}
			p := e.Project()
			cur, err := r.deps.Store.Get(ctx, p)
			if errors.Is(err, events.ErrNotFound) {
				continue
			}
			if err != nil {
				res.fail(p, err)
				continue
			}
			if !live(cur.Status) || !cur.LastUsed.Before(cutoff) {
				continue // destroyed or used meanwhile
			}
			res.Idle++
			enq, err := r.deps.Client.DestroySandbox(ctx, tasks.SandboxDestroy{Project: p})
			if err != nil {
				res.fail(p, err)
				continue
			}
			if len(res.Enqueued) < maxListed {
				res.Enqueued = append(res.Enqueued, DestroyEnqueued{
					Namespace: p.Namespace, Name: p.Name, SandboxID: cur.SandboxID,
					LastUsed: cur.LastUsed, TaskID: enq.ID, Duplicate: enq.Duplicate,
				})
			} else {
				res.Truncated = true
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	r.log.InfoContext(ctx, "cleanup done", "idle_ttl", ttl, "idle", res.Idle,
		"enqueued", len(res.Enqueued), "failures", len(res.Failures), "duration", time.Since(start))
	if len(res.Failures) > 0 {
		f := res.Failures[0]
		return res, fmt.Errorf("cleanup: %d idle sandboxes could not be handled; first: %s/%s: %s",
			len(res.Failures), f.Namespace, f.Name, f.Error)
	}
	return res, nil
}

func (res *CleanupResult) fail(p tasks.Project, err error) {
	if len(res.Failures) < maxListed {
		res.Failures = append(res.Failures, Failure{Namespace: p.Namespace, Name: p.Name, Error: err.Error()})
	} else {
		res.Truncated = true
	}
}

// live reports whether a registry status is of a sandbox that exists.
func live(status string) bool {
	return status != tasks.SandboxDestroyed
}

// ReconcileResult is the result of maintenance:reconcile.
type ReconcileResult struct {
	// Checked counts the registry entries looked at.
	Checked int `json:"checked"`
	// Watched counts, of Checked, the entries left alone because a
	// watcher follows their sandbox and their recheck is not due
	// (Config.WatchedRecheck).
	Watched int `json:"watched"`
	// Alive counts sandboxes the gateway still has.
	Alive int `json:"alive"`
	// MarkedDestroyed counts entries the gateway no longer has, now
	// marked destroyed.
	MarkedDestroyed int `json:"marked_destroyed"`
	// Removed counts entries of sandboxes destroyed more than StaleAfter
	// ago, dropped from the registry.
	Removed int `json:"removed"`
	// Replaced counts projects whose sandbox id changed (re-created
	// outside sandboxq); the entry now names the new one.
	Replaced int `json:"replaced"`
	// Revived counts entries marked destroyed or error whose sandbox the
	// gateway has again (or still), now marked ready.
	Revived int `json:"revived"`
	// Claimed counts live sandboxes without a watcher handed to Claim.
	Claimed int `json:"claimed"`
	// ServersUpdated counts server status changes folded in for sandboxes
	// nobody watches.
	ServersUpdated int `json:"servers_updated"`
	// Unchecked counts, of Checked, the entries that could not be checked
	// for a transient reason (the gateway or Redis failed); they are left
	// as they were and checked again by the next run. Their errors are in
	// Failures, with those of permanent failures.
	Unchecked int       `json:"unchecked"`
	Failures  []Failure `json:"failures,omitempty"`
	Truncated bool      `json:"truncated,omitempty"`
}

func (res *ReconcileResult) fail(p tasks.Project, err error) {
	if len(res.Failures) < maxListed {
		res.Failures = append(res.Failures, Failure{Namespace: p.Namespace, Name: p.Name, Error: err.Error()})
	} else {
		res.Truncated = true
	}
}

func (r *runner) reconcileTask(ctx context.Context, t *asynq.Task) error {
	if _, err := tasks.Decode[tasks.MaintenanceReconcile](t); err != nil {
		return err
	}
	res, err := r.reconcile(ctx)
	if werr := writeResult(t, res); werr != nil && err == nil {
		err = werr
	}
	return err
}

// reconcile compares every registry entry with the gateway. A run that
// checked what it could succeeds: an entry that could not be checked for a
// transient reason is counted in Unchecked and left to the next run. The
// run fails when an entry met a permanent gateway error (archived at once:
// a retry cannot help) or when no entry at all could be checked (the
// gateway is down; the task retries).
func (r *runner) reconcile(ctx context.Context) (*ReconcileResult, error) {
	start := r.deps.Now()
	res := &ReconcileResult{}
	var permanent error
	cursor := ""
	for {
		entries, next, err := r.deps.Store.List(ctx, events.ListOptions{Cursor: cursor, Limit: pageSize})
		if err != nil {
			return res, fmt.Errorf("reconcile: list sandboxes: %w", err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			res.Checked++
			err := r.reconcileOne(ctx, e, start, res)
			switch {
			case err == nil:
			case ctx.Err() != nil:
				return res, ctx.Err()
			case permanentGatewayError(err):
				permanent = cmp.Or(permanent, fmt.Errorf("%s/%s: %w", e.Namespace, e.Name, err))
				res.fail(e.Project(), err)
			default:
				res.Unchecked++
				res.fail(e.Project(), err)
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	r.log.InfoContext(ctx, "reconcile done", "checked", res.Checked, "watched", res.Watched, "unchecked", res.Unchecked, "alive", res.Alive,
		"marked_destroyed", res.MarkedDestroyed, "removed", res.Removed, "replaced", res.Replaced,
		"revived", res.Revived, "claimed", res.Claimed, "failures", len(res.Failures), "duration", time.Since(start))
	switch {
	case permanent != nil:
		return res, fmt.Errorf("reconcile: %w (%w)", permanent, asynq.SkipRetry)
	case res.Unchecked > 0 && res.Unchecked == res.Checked:
		f := res.Failures[0]
		return res, fmt.Errorf("reconcile: %d of %d entries could not be checked; first: %s/%s: %s",
			res.Unchecked, res.Checked, f.Namespace, f.Name, f.Error)
	}
	return res, nil
}

// permanentGatewayError reports whether err is a gateway answer that no
// retry can change (400, 401, 403, …; DESIGN.md §5).
func permanentGatewayError(err error) bool {
	ae, ok := errors.AsType[*gateway.APIError](err)
	return ok && !ae.Retryable()
}

// reconcileOne brings one entry in line with the gateway. Only a failed
// gateway lookup or registry write is an error; a failed claim or server
// refresh is logged and left to the watcher and the next run.
func (r *runner) reconcileOne(ctx context.Context, e events.Entry, now time.Time, res *ReconcileResult) error {
	p := e.Project()
	if r.leftToWatcher(ctx, e, now) {
		res.Watched++
		return nil
	}
	sb, err := r.deps.Gateway.Find(ctx, p.Namespace, p.Name)
	if err != nil {
		return fmt.Errorf("find: %w", err)
	}
	if sb == nil {
		if e.Status != tasks.SandboxDestroyed {
			if _, err := r.deps.Store.SandboxStatus(ctx, p, e.SandboxID, tasks.SandboxDestroyed, ""); err != nil {
				return fmt.Errorf("mark destroyed: %w", err)
			}
			res.MarkedDestroyed++
			return nil
		}
		if !e.UpdatedAt.IsZero() && now.Sub(e.UpdatedAt) > r.deps.StaleAfter {
			if err := r.deps.Store.Remove(ctx, p); err != nil {
				return fmt.Errorf("remove stale entry: %w", err)
			}
			res.Removed++
		}
		return nil
	}
	res.Alive++
	switch {
	case sb.SandboxID != e.SandboxID:
		if err := r.deps.Store.Upsert(ctx, p, sb.SandboxID, sb.Provider); err != nil {
			return fmt.Errorf("record new sandbox id: %w", err)
		}
		res.Replaced++
	case e.Status == tasks.SandboxDestroyed || e.Status == tasks.SandboxError:
		if _, err := r.deps.Store.SandboxStatus(ctx, p, sb.SandboxID, tasks.SandboxReady, ""); err != nil {
			return fmt.Errorf("mark ready: %w", err)
		}
		res.Revived++
	}
	if e.Watcher != "" {
		r.scheduleRecheck(ctx, p, now)
		return nil
	}
	// Nobody watches it: refresh its servers here, then hand it to a
	// watcher.
	if n, err := r.refreshServers(ctx, p, sb); err != nil {
		r.log.WarnContext(ctx, "reconcile: refresh servers", "namespace", p.Namespace, "name", p.Name, "err", err)
	} else {
		res.ServersUpdated += n
	}
	if r.deps.Claim != nil {
		if err := r.deps.Claim(ctx, p); err != nil {
			r.log.WarnContext(ctx, "reconcile: claim watcher", "namespace", p.Namespace, "name", p.Name, "err", err)
		} else {
			res.Claimed++
		}
	}
	return nil
}

// leftToWatcher reports whether e's sandbox is watched and its recheck is
// not due: its watcher is the source then. An entry seen watched for the
// first time gets its recheck time, spread over the next hour.
func (r *runner) leftToWatcher(ctx context.Context, e events.Entry, now time.Time) bool {
	if e.Watcher == "" {
		return false
	}
	if e.RecheckAt.IsZero() {
		r.scheduleRecheck(ctx, e.Project(), now)
		return true
	}
	return now.Before(e.RecheckAt)
}

// scheduleRecheck sets when the next run asks the gateway about p's
// watched sandbox again: between 0.5 and 1.5 WatchedRecheck from now. A
// failure is logged; the entry is then checked at the next run.
func (r *runner) scheduleRecheck(ctx context.Context, p tasks.Project, now time.Time) {
	d := r.deps.WatchedRecheck/2 + time.Duration(rand.Int64N(int64(r.deps.WatchedRecheck)+1))
	if err := r.deps.Store.SetRecheck(ctx, p, now.Add(d)); err != nil {
		r.log.WarnContext(ctx, "reconcile: schedule recheck", "namespace", p.Namespace, "name", p.Name, "err", err)
	}
}

// refreshServers folds the daemon's server list into the registry and
// returns how many servers changed.
func (r *runner) refreshServers(ctx context.Context, p tasks.Project, sb *gateway.Sandbox) (int, error) {
	servers, err := r.deps.Gateway.Daemon(sb).ListServers(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range servers {
		ev, err := r.deps.Store.ServerStatus(ctx, p, sb.SandboxID, s.Slug, events.ServerState{
			Status: s.Status, URL: s.URL, Port: s.Port, ExitCode: s.ExitCode, Error: s.Error,
			UpdatedAt: r.deps.Now(),
		})
		if err != nil {
			return n, err
		}
		if ev != nil {
			n++
		}
	}
	return n, nil
}

// writeResult writes v as the task's JSON result.
func writeResult(t *asynq.Task, v any) error {
	if t.ResultWriter() == nil || v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if _, err := t.ResultWriter().Write(b); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}
