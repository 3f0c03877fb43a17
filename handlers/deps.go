package handlers

import (
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
// (schema.Acquire), waited for up to wait in short jittered polls.
type redisLocker struct {
	rdb  redis.UniversalClient
	ttl  time.Duration
	wait time.Duration
	log  *slog.Logger
}

// leaseKey is the Redis key of a project's mutation lease (schema.LeaseKey).
func leaseKey(p tasks.Project) string { return schema.LeaseKey(p) }

func (l *redisLocker) Lock(ctx context.Context, p tasks.Project, owner string) (context.Context, func(), error) {
	if owner == "" {
		owner = fmt.Sprintf("anon-%x", rand.Uint64())
	}
	key := schema.LeaseKey(p)
	deadline := time.Now().Add(l.wait)
	for {
		held, err := schema.Acquire(ctx, l.rdb, key, owner, l.ttl)
		if err == nil {
			release := func() {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				if err := held.Release(rctx); err != nil {
					l.log.WarnContext(ctx, "release project lease", "namespace", p.Namespace, "name", p.Name, "err", err)
				}
			}
			return held.Context(), release, nil
		}
		if !errors.Is(err, schema.ErrHeld) {
			return nil, nil, err
		}
		if !time.Now().Before(deadline) {
			return nil, nil, fmt.Errorf("%w (%s/%s)", ErrProjectBusy, p.Namespace, p.Name)
		}
		// Jittered so that waiters on one project do not poll in lockstep.
		wait := 20*time.Millisecond + time.Duration(rand.Int64N(int64(40*time.Millisecond)))
		if !pause(ctx, wait) {
			return nil, nil, ctxErr(ctx)
		}
	}
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
