package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// The interfaces below are what the handlers need of their peers, declared
// here where they are used. *gateway.Client, *gateway.Daemon and
// *events.Store satisfy them; tests pass fakes.

// Gateway finds, creates and destroys a project's sandbox (*gateway.Client).
type Gateway interface {
	Find(ctx context.Context, namespace, name string) (*gateway.Sandbox, error)
	FindOrCreate(ctx context.Context, namespace, name string, opts *gateway.CreateOptions) (*gateway.Sandbox, error)
	Destroy(ctx context.Context, sandboxID string) error
}

// Servers manages a sandbox's servers (part of *gateway.Daemon).
type Servers interface {
	GetServer(ctx context.Context, slug string) (*gateway.ServerInfo, error)
	StartServer(ctx context.Context, opts gateway.ServerStartOptions) (*gateway.ServerInfo, error)
	StopServer(ctx context.Context, slug string) error
	RestartServer(ctx context.Context, slug string) (*gateway.ServerInfo, error)
	DeleteServer(ctx context.Context, slug string) error
}

// Commands runs a command in a sandbox (part of *gateway.Daemon).
type Commands interface {
	RunCommand(ctx context.Context, req gateway.RunCommandRequest) (*gateway.CommandResult, error)
}

// Files writes and deletes a sandbox's files (part of *gateway.Daemon). It
// runs commands too: binary files are decoded in place by one.
type Files interface {
	BatchFiles(ctx context.Context, files []gateway.BatchFile) ([]gateway.BatchResult, error)
	WriteFile(ctx context.Context, path, content string) (*gateway.FileInfo, error)
	DeleteFile(ctx context.Context, path string) error
	Commands
}

// Env edits a sandbox's env files (part of *gateway.Daemon).
type Env interface {
	SetEnv(ctx context.Context, file string, vars map[string]string) ([]string, error)
	DeleteEnv(ctx context.Context, file string, keys []string) ([]string, error)
}

// Daemon is everything the handlers ask of a sandbox daemon.
type Daemon interface {
	Servers
	Files
	Env
}

// Registry records sandboxes and their use (part of *events.Store).
type Registry interface {
	Upsert(ctx context.Context, p tasks.Project, sandboxID, provider string) error
	UpsertReady(ctx context.Context, p tasks.Project, sandboxID, provider string) error
	Touch(ctx context.Context, p tasks.Project) error
	StopServers(ctx context.Context, p tasks.Project, sandboxID string) ([]tasks.Event, error)
	SandboxStatus(ctx context.Context, p tasks.Project, sandboxID, status, errMsg string) (*tasks.Event, error)
}

// EventStream is how a server wait follows a project's events (part of
// *events.Store): the stream position before a task acts, a request that
// the project's watcher polls fast, and the wait itself (events.WaitServer).
type EventStream interface {
	LastEventID(ctx context.Context, p tasks.Project) (string, error)
	Expedite(ctx context.Context, p tasks.Project) error
	WaitServer(ctx context.Context, p tasks.Project, slug, fromID string, until func(events.ServerState) bool) (events.ServerState, string, error)
}

// Store is the sandbox registry and event store (*events.Store).
type Store interface {
	Registry
	EventStream
}

// Locker takes a project's mutation lease for owner (a task id). The
// returned context ends if the lease is lost; release must be called. A
// project held by another owner beyond the wait gives ErrProjectBusy.
type Locker interface {
	Lock(ctx context.Context, p tasks.Project, owner string) (_ context.Context, release func(), _ error)
}

// Results reads the result an earlier attempt of a task wrote (nil if
// none), the checkpoint a retry resumes from.
type Results interface {
	Result(ctx context.Context, queue, id string) ([]byte, error)
}

var (
	_ Gateway = (*gateway.Client)(nil)
	_ Daemon  = (*gateway.Daemon)(nil)
	_ Store   = (*events.Store)(nil)
	_ Locker  = (*redisLocker)(nil)
	_ Results = inspectorResults{}
)

// clientDaemons returns the daemons of gw's sandboxes.
func clientDaemons(gw *gateway.Client) func(*gateway.Sandbox) Daemon {
	return func(sb *gateway.Sandbox) Daemon { return gw.Daemon(sb) }
}

// redisLocker is the default Locker: project leases in Redis
// (schema.Acquire), waited for up to wait. When this process holds the
// lease, each release wakes the longest waiter of this process; a lease
// held elsewhere is polled for in short jittered steps.
type redisLocker struct {
	rdb  redis.UniversalClient
	ttl  time.Duration
	wait time.Duration
	log  *slog.Logger

	mu    sync.Mutex
	local map[string]*localLease // by key: leases held or waited for here
}

// localLease is a lease this process holds (n times) or waits for: the
// waiters, in arrival order, each woken by one release.
type localLease struct {
	n       int
	waiters []chan struct{}
}

// Polls for a busy lease: 20–60 ms jittered (so that waiters on one project
// do not poll in lockstep) when another process holds it; when this process
// holds it a release wakes a waiter, and localPoll only covers a lease that
// expired or a wake that went to a waiter that left.
const (
	busyPoll   = 20 * time.Millisecond
	busyJitter = 40 * time.Millisecond
	localPoll  = 250 * time.Millisecond
)

// leaseKey is the Redis key of a project's mutation lease (schema.LeaseKey).
func leaseKey(p tasks.Project) string { return schema.LeaseKey(p) }

func (l *redisLocker) Lock(ctx context.Context, p tasks.Project, owner string) (context.Context, func(), error) {
	if owner == "" {
		owner = fmt.Sprintf("anon-%x", rand.Uint64())
	}
	key := schema.LeaseKey(p)
	return l.lock(ctx, p, key, func() (*schema.Held, error) {
		return schema.Acquire(ctx, l.rdb, key, owner, l.ttl)
	}, nil)
}

// lockTask takes the lease for task id unless the task is cancelled (one
// script: schema.AcquireUnlessCancelled), and hands its release to st's
// end-of-attempt pipeline when st is not nil.
func (l *redisLocker) lockTask(ctx context.Context, p tasks.Project, id string, st *attemptState) (context.Context, func(), error) {
	return l.lock(ctx, p, schema.LeaseKey(p), func() (*schema.Held, error) {
		return schema.AcquireUnlessCancelled(ctx, l.rdb, p, id, l.ttl)
	}, st)
}

func (l *redisLocker) lock(ctx context.Context, p tasks.Project, key string, acquire func() (*schema.Held, error), st *attemptState) (context.Context, func(), error) {
	deadline := time.Now().Add(l.wait)
	for {
		held, err := acquire()
		if err == nil {
			l.took(key)
			return held.Context(), l.releaser(ctx, p, key, held, st), nil
		}
		if errors.Is(err, schema.ErrCancelled) {
			return nil, nil, ErrCancelled
		}
		if !errors.Is(err, schema.ErrHeld) {
			return nil, nil, err
		}
		if !time.Now().Before(deadline) {
			return nil, nil, fmt.Errorf("%w (%s/%s)", ErrProjectBusy, p.Namespace, p.Name)
		}
		if !l.pause(ctx, key, time.Until(deadline)) {
			return nil, nil, ctxErr(ctx)
		}
	}
}

// releaser returns the release of held: at once, or, with st, queued on
// the end-of-attempt pipeline (schema.Held.ReleaseIn) with a retried release should
// that pipeline fail.
func (l *redisLocker) releaser(ctx context.Context, p tasks.Project, key string, held *schema.Held, st *attemptState) func() {
	warn := func(err error) {
		if err != nil {
			l.log.WarnContext(ctx, "release project lease", "namespace", p.Namespace, "name", p.Name, "err", err)
		}
	}
	var once sync.Once
	inPipeline := func(pctx context.Context, pl redis.Pipeliner) func() {
		done := held.ReleaseIn(pctx, pl)
		return func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			warn(done(rctx))
			l.released(key)
		}
	}
	return func() {
		once.Do(func() {
			if st != nil && st.join(inPipeline, true) {
				return
			}
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			warn(held.Release(rctx))
			l.released(key)
		})
	}
}

// took notes that this process holds key.
func (l *redisLocker) took(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.local == nil {
		l.local = make(map[string]*localLease)
	}
	ll := l.local[key]
	if ll == nil {
		ll = &localLease{}
		l.local[key] = ll
	}
	ll.n++
}

// released notes that this process released key and wakes its longest
// waiter here.
func (l *redisLocker) released(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ll := l.local[key]
	if ll == nil {
		return
	}
	ll.n--
	if len(ll.waiters) > 0 {
		ll.waiters[0] <- struct{}{} // buffered: never blocks
		ll.waiters = ll.waiters[1:]
	}
	l.forget(key, ll)
}

// forget drops key's entry when nobody here holds or waits for it.
func (l *redisLocker) forget(key string, ll *localLease) {
	if ll.n <= 0 && len(ll.waiters) == 0 {
		delete(l.local, key)
	}
}

// pause waits, at most limit, for the next chance to take the busy lease key:
// a release by this process, or the next poll. It reports false if ctx
// ended.
func (l *redisLocker) pause(ctx context.Context, key string, limit time.Duration) bool {
	d := busyPoll + time.Duration(rand.Int64N(int64(busyJitter)))
	var wake chan struct{}
	l.mu.Lock()
	if ll := l.local[key]; ll != nil && ll.n > 0 {
		d, wake = localPoll, make(chan struct{}, 1)
		ll.waiters = append(ll.waiters, wake)
	}
	l.mu.Unlock()
	if wake != nil {
		defer l.unwait(key, wake)
	}
	t := time.NewTimer(min(d, limit))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-wake:
	case <-t.C:
	}
	return true
}

// unwait removes a waiter that was not woken.
func (l *redisLocker) unwait(key string, wake chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ll := l.local[key]
	if ll == nil {
		return
	}
	ll.waiters = slices.DeleteFunc(ll.waiters, func(w chan struct{}) bool { return w == wake })
	l.forget(key, ll)
}

// inspectorResults is the default Results: asynq's task records.
type inspectorResults struct{ inspector *asynq.Inspector }

func (r inspectorResults) Result(_ context.Context, queue, id string) ([]byte, error) {
	info, err := r.inspector.GetTaskInfo(queue, id)
	if err != nil {
		return nil, err
	}
	return info.Result, nil
}

// previousResult reads the result an earlier attempt of this task wrote, so
// a retry can resume where it stopped. Any problem reading it means "start
// over", which is always safe because every step is idempotent.
func previousResult[R any](ctx context.Context, h *Handlers, queue, id string) *R {
	if queue == "" || id == "" {
		return nil
	}
	b, err := h.results.Result(ctx, queue, id)
	if err != nil || len(b) == 0 {
		return nil
	}
	var r R
	if err := json.Unmarshal(b, &r); err != nil {
		h.log.WarnContext(ctx, "ignoring unreadable previous result", "task_id", id, "err", err)
		return nil
	}
	return &r
}
