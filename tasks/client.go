package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/sandboxq/sandboxq/schema"
	"go.opentelemetry.io/otel/trace"

	"github.com/sandboxq/sandboxq/internal/backoff"
)

// Client enqueues tasks, waits for them and cancels them. It is safe for
// concurrent use.
type Client struct {
	rdb        redis.UniversalClient
	aq         *asynq.Client
	insp       *asynq.Inspector
	logger     *slog.Logger
	cancelWait time.Duration
	waitPoll   time.Duration
	tracer     trace.Tracer
	done       *doneHub
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) ClientOption {
	return func(c *Client) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithCancelWait sets how long Cancel waits for a running task to stop
// (default 10 s). Non-positive values are ignored.
func WithCancelWait(d time.Duration) ClientOption {
	return func(c *Client) {
		if d > 0 {
			c.cancelWait = d
		}
	}
}

// WithWaitPoll sets how often Wait reads a task's state when no notice
// from a worker wakes it (default DefaultWaitPoll). Non-positive values
// are ignored.
func WithWaitPoll(d time.Duration) ClientOption {
	return func(c *Client) {
		if d > 0 {
			c.waitPoll = d
		}
	}
}

// NewClient returns a Client over rdb, which must point at the Redis (and
// database) the workers use. The caller keeps ownership of rdb and closes
// it after the Client is no longer used. rdb must not be nil.
func NewClient(rdb redis.UniversalClient, opts ...ClientOption) *Client {
	if rdb == nil {
		panic("tasks.NewClient: nil redis client")
	}
	c := &Client{
		rdb:        rdb,
		aq:         asynq.NewClientFromRedisClient(rdb),
		insp:       asynq.NewInspectorFromRedisClient(rdb),
		logger:     slog.New(slog.DiscardHandler),
		cancelWait: 10 * time.Second,
		waitPoll:   DefaultWaitPoll,
		tracer:     defaultTracer(),
	}
	for _, o := range opts {
		o(c)
	}
	c.done = newDoneHub(rdb, c.logger)
	return c
}

// Close releases the Client: it closes the subscription that Wait opened,
// and Waits still running go on polling. It does not close the Redis
// client given to NewClient. Close may be called more than once.
func (c *Client) Close() error {
	c.done.close()
	return nil
}

// Enqueued says where a task went.
type Enqueued struct {
	ID    string `json:"id"`
	Queue string `json:"queue"`
	Type  string `json:"type"`
	// Duplicate is true when no task was created because the project
	// already had a live task of this type (see Enqueue).
	Duplicate bool `json:"duplicate"`
}

// dedupTypes are the types enqueued at most once per project at a time.
var dedupTypes = map[string]bool{TypeSandboxEnsure: true, TypeSandboxDestroy: true}

// Enqueue validates p and enqueues it with its type's default options
// followed by opts.
//
// sandbox:ensure and sandbox:destroy are deduplicated per project: while
// the project has a task of the same type that is pending, scheduled,
// retrying or active, Enqueue returns that task with Duplicate set instead
// of creating another. Once that task has completed or been archived, the
// next Enqueue creates a new task at once.
func (c *Client) Enqueue(ctx context.Context, p Payload, opts ...asynq.Option) (e *Enqueued, err error) {
	if isNil(p) {
		return nil, errors.New("tasks: Enqueue of a nil payload")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ctx, span := c.startProducer(ctx, p)
	defer func() { endProducer(span, e, err) }()
	task, err := New(p, opts...)
	if err != nil {
		return nil, err
	}
	task = withTraceContext(ctx, task, p, opts)
	if hp, ok := p.(hasProject); ok && dedupTypes[p.TypeName()] {
		var all []asynq.Option
		if o, ok := p.(optioner); ok {
			all = o.Options()
		}
		return c.enqueueUnique(ctx, p.TypeName(), hp.Normalize(), task, append(all, opts...))
	}
	info, err := c.aq.EnqueueContext(ctx, task)
	if err != nil {
		return nil, fmt.Errorf("enqueue %s: %w", p.TypeName(), err)
	}
	proj, hasProj := ProjectOfPayload(p)
	c.announce(ctx, proj, hasProj, info)
	return &Enqueued{ID: info.ID, Queue: info.Queue, Type: info.Type}, nil
}

// announce records a new task in its project's task index (if it has a
// project) and, if it is pending, wakes an idle worker of its queue
// (schema.Wake): one round trip. The task exists already, so a failure is
// logged, not returned; a worker finds the task at its next poll anyway.
func (c *Client) announce(ctx context.Context, proj Project, hasProj bool, info *asynq.TaskInfo) {
	wake := info.State == asynq.TaskStatePending
	if !hasProj && !wake {
		return
	}
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := c.rdb.Pipelined(ictx, func(pl redis.Pipeliner) error {
		if hasProj {
			schema.IndexTask(ictx, pl, proj, info.ID, info.Queue, info.Type, time.Now())
		}
		if wake {
			schema.Wake(ictx, pl, info.Queue)
		}
		return nil
	})
	if err != nil {
		c.logger.WarnContext(ctx, "record task in project index and wake a worker", slog.String("task_id", info.ID), slog.String("err", err.Error()))
	}
}

// EnsureSandbox enqueues sandbox:ensure (deduplicated, see Enqueue).
func (c *Client) EnsureSandbox(ctx context.Context, p SandboxEnsure, opts ...asynq.Option) (*Enqueued, error) {
	return c.Enqueue(ctx, p, opts...)
}

// DestroySandbox enqueues sandbox:destroy (deduplicated, see Enqueue).
func (c *Client) DestroySandbox(ctx context.Context, p SandboxDestroy, opts ...asynq.Option) (*Enqueued, error) {
	return c.Enqueue(ctx, p, opts...)
}

// StartServer enqueues server:start.
func (c *Client) StartServer(ctx context.Context, p ServerStart, opts ...asynq.Option) (*Enqueued, error) {
	return c.Enqueue(ctx, p, opts...)
}

// StopServer enqueues server:stop.
func (c *Client) StopServer(ctx context.Context, p ServerStop, opts ...asynq.Option) (*Enqueued, error) {
	return c.Enqueue(ctx, p, opts...)
}

// RestartServer enqueues server:restart.
func (c *Client) RestartServer(ctx context.Context, p ServerRestart, opts ...asynq.Option) (*Enqueued, error) {
	return c.Enqueue(ctx, p, opts...)
}

// RunCommand enqueues command:run.
func (c *Client) RunCommand(ctx context.Context, p CommandRun, opts ...asynq.Option) (*Enqueued, error) {
	return c.Enqueue(ctx, p, opts...)
}

// UpdateEnv enqueues env:update.
func (c *Client) UpdateEnv(ctx context.Context, p EnvUpdate, opts ...asynq.Option) (*Enqueued, error) {
	return c.Enqueue(ctx, p, opts...)
}

// RunWorkflow enqueues workflow:run.
func (c *Client) RunWorkflow(ctx context.Context, p WorkflowRun, opts ...asynq.Option) (*Enqueued, error) {
	return c.Enqueue(ctx, p, opts...)
}

// WriteFiles enqueues files:write for p's files, split into as many tasks
// as the per-task limits need (MaxTaskContentBytes of content,
// MaxFilesPerTask files; a file larger than MaxTaskContentBytes travels
// alone). Files keep their order; every file is in exactly one task. The
// whole set is validated before anything is enqueued. If enqueueing fails
// part-way, the tasks already enqueued are returned with the error.
func (c *Client) WriteFiles(ctx context.Context, p FilesWrite, opts ...asynq.Option) ([]*Enqueued, error) {
	p = normalize(p)
	if err := p.Project.Validate(); err != nil {
		return nil, err
	}
	if err := checkFiles(p.Files, false); err != nil {
		return nil, err
	}
	chunks := splitFiles(p.Files)
	if len(chunks) > 1 {
		for _, o := range opts {
			if o.Type() == asynq.TaskIDOpt {
				return nil, errors.New("tasks: WriteFiles: a TaskID option cannot name the several tasks a large file set is split into")
			}
		}
	}
	out := make([]*Enqueued, 0, len(chunks))
	for _, files := range chunks {
		q := p
		q.Files = files
		e, err := c.Enqueue(ctx, q, opts...)
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
	return out, nil
}

// splitFiles packs files, in order, into chunks within the per-task limits.
func splitFiles(files []File) [][]File {
	var chunks [][]File
	var cur []File
	size := 0
	flush := func() {
		if len(cur) > 0 {
			chunks = append(chunks, cur)
			cur, size = nil, 0
		}
	}
	for _, f := range files {
		n := f.Size()
		if n > MaxTaskContentBytes {
			flush()
			chunks = append(chunks, []File{f})
			continue
		}
		if size+n > MaxTaskContentBytes || len(cur) == MaxFilesPerTask {
			flush()
		}
		cur = append(cur, f)
		size += n
	}
	flush()
	return chunks
}

// Dedup key states.
const (
	markCreating = "creating"
	markEnqueued = "enqueued"
)

type dedupMark struct {
	ID    string `json:"id"`
	Queue string `json:"queue"`
	State string `json:"state"`
}

func (m dedupMark) String() string {
	b, _ := json.Marshal(m)
	return string(b)
}

func (c *Client) cas(ctx context.Context, key, old, new string, ttl time.Duration) (bool, error) {
	return schema.CompareAndSet(ctx, c.rdb, key, old, new, ttl)
}

// enqueueUnique enqueues task unless the project already has a live task of
// its type. See doc.go for the algorithm.
func (c *Client) enqueueUnique(ctx context.Context, typ string, proj Project, task *asynq.Task, opts []asynq.Option) (*Enqueued, error) {
	key := schema.DedupKey(typ, proj)
	queue, id, processAt := scanOptions(opts)
	if id == "" {
		id = uuid.NewString()
	}
	ttl := schema.DedupTTL
	if d := time.Until(processAt); d > 0 {
		ttl += d
	}
	claim := dedupMark{ID: id, Queue: queue, State: markCreating}.String()
	delay := 2 * time.Millisecond
	for {
		cur, err := c.rdb.Get(ctx, key).Result()
		switch {
		case errors.Is(err, redis.Nil):
			cur = ""
		case err != nil:
			return nil, fmt.Errorf("enqueue %s: read %s: %w", typ, key, err)
		}
		if cur != "" {
			var m dedupMark
			if json.Unmarshal([]byte(cur), &m) == nil && m.ID != "" && m.Queue != "" {
				live, err := c.isLive(m.Queue, m.ID)
				if err != nil {
					return nil, fmt.Errorf("enqueue %s: look up task %s: %w", typ, m.ID, err)
				}
				if live {
					return &Enqueued{ID: m.ID, Queue: m.Queue, Type: typ, Duplicate: true}, nil
				}
				if m.State == markCreating {
					// Another producer is enqueueing right now.
					if err := backoff.Sleep(ctx, delay); err != nil {
						return nil, err
					}
					delay = min(2*delay, 50*time.Millisecond)
					continue
				}
			}
			// Otherwise the key names a finished or vanished task (or is
			// garbage): replace it.
		}
		won, err := c.cas(ctx, key, cur, claim, schema.DedupClaimTTL)
		if err != nil {
			return nil, fmt.Errorf("enqueue %s: claim %s: %w", typ, key, err)
		}
		if won {
			return c.enqueueClaimed(ctx, typ, proj, key, claim, task, id, ttl)
		}
		// Someone changed the key between our GET and the claim; look again.
	}
}

// enqueueClaimed enqueues task under id while this producer holds the dedup
// key, then records the task in the key and in the project's task index.
func (c *Client) enqueueClaimed(ctx context.Context, typ string, proj Project, key, claim string, task *asynq.Task, id string, ttl time.Duration) (*Enqueued, error) {
	ectx, cancel := context.WithTimeout(ctx, schema.DedupClaimTTL/2)
	info, err := c.aq.EnqueueContext(ectx, task, asynq.TaskID(id))
	cancel()
	// The key must be settled even if the caller's context ends now.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer scancel()
	if err != nil {
		if _, rerr := c.cas(sctx, key, claim, "", 0); rerr != nil {
			c.logger.WarnContext(ctx, "release dedup claim", slog.String("key", key), slog.String("err", rerr.Error()))
		}
		return nil, fmt.Errorf("enqueue %s: %w", typ, err)
	}
	done := dedupMark{ID: info.ID, Queue: info.Queue, State: markEnqueued}.String()
	// The dedup record, the project's task index and the wake-up share one
	// round trip.
	var set *redis.Cmd
	_, err = c.rdb.Pipelined(sctx, func(pl redis.Pipeliner) error {
		set = schema.CompareAndSetCmd(sctx, pl, key, claim, done, ttl)
		schema.IndexTask(sctx, pl, proj, info.ID, info.Queue, info.Type, time.Now())
		if info.State == asynq.TaskStatePending {
			schema.Wake(sctx, pl, info.Queue)
		}
		return nil
	})
	if err != nil {
		c.logger.WarnContext(ctx, "record dedup key and project index", slog.String("task_id", info.ID), slog.String("err", err.Error()))
	}
	if ok, err := set.Int(); err != nil || ok != 1 {
		// Producers that see the claim still find the task by its id.
		c.logger.WarnContext(ctx, "record dedup key", slog.String("key", key), slog.String("task_id", info.ID), slog.Any("err", err))
	}
	return &Enqueued{ID: info.ID, Queue: info.Queue, Type: info.Type}, nil
}

// isLive reports whether the task is pending, scheduled, retrying,
// aggregating or active.
func (c *Client) isLive(queue, id string) (bool, error) {
	info, err := c.insp.GetTaskInfo(queue, id)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	switch info.State {
	case asynq.TaskStateCompleted, asynq.TaskStateArchived:
		return false, nil
	}
	return true, nil
}

// scanOptions returns the queue, task id and process time that opts give,
// the last of each winning, as asynq does.
func scanOptions(opts []asynq.Option) (queue, id string, processAt time.Time) {
	queue = "default" // asynq's default queue
	for _, o := range opts {
		switch o.Type() {
		case asynq.QueueOpt:
			if v, ok := o.Value().(string); ok {
				queue = v
			}
		case asynq.TaskIDOpt:
			if v, ok := o.Value().(string); ok {
				id = v
			}
		case asynq.ProcessAtOpt:
			if v, ok := o.Value().(time.Time); ok {
				processAt = v
			}
		case asynq.ProcessInOpt:
			if v, ok := o.Value().(time.Duration); ok {
				processAt = time.Now().Add(v)
			}
		}
	}
	return queue, id, processAt
}
