package maintenance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/robfig/cron/v3"

	"github.com/sandboxq/sandboxq/internal/asynqlog"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// Defaults of SchedulerConfig.
const (
	DefaultCleanupSpec   = "*/10 * * * *"
	DefaultReconcileSpec = "*/5 * * * *"
	// Off as a spec disables that schedule.
	Off = "off"
)

// scheduledMaxRetry is the MaxRetry of scheduled runs: the next slot
// supersedes a run still retrying, so long retry chains are pointless.
const scheduledMaxRetry = 3

// SchedulerConfig configures a Scheduler. Redis is required; every other
// field has the default its comment states.
type SchedulerConfig struct {
	// Redis is asynq's Redis. The Scheduler does not close it.
	Redis redis.UniversalClient
	// CleanupSpec and ReconcileSpec are cron specs (5 fields, or
	// descriptors such as "@hourly" and "@every 30s"), or Off. Defaults:
	// DefaultCleanupSpec (every 10 min), DefaultReconcileSpec (every 5 min).
	CleanupSpec, ReconcileSpec string
	// CleanupIdleTTL is the idle_ttl of scheduled cleanups; 0 leaves it to
	// the handler's default (Config.IdleTTL).
	CleanupIdleTTL time.Duration
	// Location is the time zone of the specs (default UTC).
	Location *time.Location
	// HeartbeatInterval is how often the schedule is written to Redis,
	// where Asynqmon's Schedulers page reads it (default 10 s, asynq's). It
	// must be a whole number of seconds: asynq stores it as an expiry in
	// seconds.
	HeartbeatInterval time.Duration
	// Logger receives warnings and a debug line per firing (default:
	// discard).
	Logger *slog.Logger
	// OnFire, if set, is called after every firing of a schedule in this
	// process, from the firing goroutine. It must not block.
	OnFire func(Fire)
}

// Fire reports one firing of a schedule in one process.
type Fire struct {
	// Type is the task type.
	Type string
	// Slot is the schedule slot the firing belongs to.
	Slot time.Time
	// First is true for the one firing per slot, across processes, that
	// started the slot: it removed the previous slot's task.
	First bool
	// At is when the enqueue attempt ended.
	At time.Time
	// Enqueued is true when this process enqueued the slot's task. It is
	// false with a nil Err when the slot already had its task (another
	// process was first) or the previous run is still active.
	Enqueued bool
	Err      error
}

// Scheduler enqueues maintenance:cleanup and maintenance:reconcile on
// their cron specs so that each schedule slot is enqueued once however many
// processes run a Scheduler. See the package doc for how.
type Scheduler struct {
	cfg     SchedulerConfig
	log     *slog.Logger
	entries []*entry
	started atomic.Bool
}

// withDefaults checks the required fields, fills the zero values with
// their documented defaults, then validates the result. The specs are
// parsed by NewScheduler.
func (c *SchedulerConfig) withDefaults() error {
	if c.Redis == nil {
		return errors.New("maintenance: SchedulerConfig.Redis is required")
	}
	if c.CleanupSpec == "" {
		c.CleanupSpec = DefaultCleanupSpec
	}
	if c.ReconcileSpec == "" {
		c.ReconcileSpec = DefaultReconcileSpec
	}
	if c.Location == nil {
		c.Location = time.UTC
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c.validate()
}

// validate reports a HeartbeatInterval that is not a whole number of
// seconds and a negative CleanupIdleTTL.
func (c *SchedulerConfig) validate() error {
	if c.HeartbeatInterval < 0 || c.HeartbeatInterval%time.Second != 0 {
		return fmt.Errorf("maintenance: HeartbeatInterval %v must be a whole number of seconds", c.HeartbeatInterval)
	}
	if c.CleanupIdleTTL < 0 {
		return errors.New("maintenance: CleanupIdleTTL must not be negative")
	}
	return nil
}

// NewScheduler checks cfg; nothing runs until Run.
func NewScheduler(cfg SchedulerConfig) (*Scheduler, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	s := &Scheduler{cfg: cfg, log: cfg.Logger.With("component", "maintenance.scheduler")}
	cleanup := tasks.MaintenanceCleanup{}
	if cfg.CleanupIdleTTL > 0 {
		cleanup.IdleTTL = cfg.CleanupIdleTTL.String()
	}
	for _, e := range []struct {
		field, spec string
		payload     tasks.Payload
	}{
		{"CleanupSpec", cfg.CleanupSpec, cleanup},
		{"ReconcileSpec", cfg.ReconcileSpec, tasks.MaintenanceReconcile{}},
	} {
		if strings.EqualFold(strings.TrimSpace(e.spec), Off) {
			continue
		}
		ent, err := s.newEntry(e.spec, e.payload)
		if err != nil {
			return nil, fmt.Errorf("maintenance: %s %q: %w", e.field, e.spec, err)
		}
		s.entries = append(s.entries, ent)
	}
	return s, nil
}

// entry is one schedule: its own asynq.Scheduler, so that the enqueue hooks
// know which schedule fired.
type entry struct {
	s       *Scheduler
	typ     string
	spec    string
	sched   cron.Schedule
	task    *asynq.Task
	opts    []asynq.Option
	taskID  string
	slotKey string
	insp    *asynq.Inspector

	// firing is held from beforeEnqueue to afterEnqueue, which asynq
	// calls in that order from one goroutine per firing: firings of this
	// schedule in this process do not overlap, and slot is the one
	// beforeEnqueue computed.
	firing sync.Mutex
	slot   time.Time
	first  bool
}

func (s *Scheduler) newEntry(spec string, p tasks.Payload) (*entry, error) {
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, err
	}
	t, err := tasks.New(p)
	if err != nil {
		return nil, err
	}
	typ := p.TypeName()
	e := &entry{
		s: s, typ: typ, spec: spec, sched: sched,
		task:    asynq.NewTask(typ, t.Payload()),
		taskID:  "scheduled:" + typ,
		slotKey: schema.SlotKey(typ),
		insp:    asynq.NewInspectorFromRedisClient(s.cfg.Redis),
	}
	// The options are given to Register (not baked into the task) so that
	// Asynqmon's Schedulers page lists them. Retention keeps a finished
	// run, and with it its task id, until the next slot replaces it.
	e.opts = []asynq.Option{
		asynq.Queue(tasks.QueueMaintenance),
		asynq.TaskID(e.taskID),
		asynq.MaxRetry(scheduledMaxRetry),
		asynq.Timeout(tasks.TimeoutMaintenance),
		asynq.Retention(tasks.DefaultRetention),
	}
	return e, nil
}

// Run starts the schedules and blocks until ctx is done; it then stops
// them, waiting for a firing in progress. It returns an error if a
// schedule cannot start, and may be called once.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("maintenance: Scheduler.Run called twice")
	}
	var running []*asynq.Scheduler
	stop := func() {
		var wg sync.WaitGroup
		for _, sc := range running {
			wg.Go(sc.Shutdown)
		}
		wg.Wait()
	}
	for _, e := range s.entries {
		sc := asynq.NewSchedulerFromRedisClient(s.cfg.Redis, &asynq.SchedulerOpts{
			HeartbeatInterval: s.cfg.HeartbeatInterval,
			Logger:            quietLogger{asynqlog.New(s.log)},
			LogLevel:          asynq.WarnLevel,
			Location:          s.cfg.Location,
			PreEnqueueFunc:    e.beforeEnqueue,
			PostEnqueueFunc:   e.afterEnqueue,
		})
		if _, err := sc.Register(e.spec, e.task, e.opts...); err != nil {
			stop()
			return fmt.Errorf("maintenance: schedule %s: %w", e.typ, err)
		}
		if err := sc.Start(); err != nil {
			stop()
			return fmt.Errorf("maintenance: start %s schedule: %w", e.typ, err)
		}
		running = append(running, sc)
		s.log.InfoContext(ctx, "schedule started", "task_type", e.typ, "spec", e.spec)
	}
	<-ctx.Done()
	stop()
	return nil
}

// slotOf returns the slot a firing at now belongs to: the latest
// activation of sched at or before now. "@every d" schedules activate
// relative to each process's start, so their slots are the multiples of d
// instead, which every process agrees on.
func slotOf(sched cron.Schedule, now time.Time) time.Time {
	if c, ok := sched.(cron.ConstantDelaySchedule); ok {
		return now.Truncate(c.Delay)
	}
	for span := time.Minute; span <= 8*366*24*time.Hour; span *= 2 {
		t := sched.Next(now.Add(-span))
		if t.IsZero() || t.After(now) {
			continue
		}
		for {
			n := sched.Next(t)
			if n.IsZero() || n.After(now) {
				return t
			}
			t = n
		}
	}
	return now.Truncate(time.Minute)
}

// rolloverWait bounds how long a firing waits for the slot's first firing
// to finish removing the previous task.
const rolloverWait = 5 * time.Second

// beforeEnqueue runs in every process at every firing, just before asynq
// enqueues the task with its fixed id. The first firing of a new slot
// removes the previous slot's task (finished, or not yet started) while
// the others of the slot wait for it, so that after the removal exactly
// one enqueue of the slot, from whichever process, succeeds and every
// other one conflicts with it.
func (e *entry) beforeEnqueue(*asynq.Task, []asynq.Option) {
	e.firing.Lock()
	slot := slotOf(e.sched, time.Now().In(e.s.cfg.Location))
	e.slot, e.first = slot, false
	ctx, cancel := context.WithTimeout(context.Background(), rolloverWait+5*time.Second)
	defer cancel()
	rdb, key, ms := e.s.cfg.Redis, []string{e.slotKey}, slot.UnixMilli()
	res, err := schema.AdvanceSlot.Run(ctx, rdb, key, ms, schema.SlotMarkerTTL.Milliseconds()).Int()
	if err != nil {
		e.s.log.WarnContext(ctx, "advance schedule slot", "task_type", e.typ, "slot", slot, "err", err)
		return
	}
	switch res {
	case 1:
		e.first = true
		err := e.insp.DeleteTask(tasks.QueueMaintenance, e.taskID)
		switch {
		case err == nil, errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		default:
			// Active: the previous run is still going; this slot's
			// enqueues conflict with it and the slot is skipped.
			e.s.log.WarnContext(ctx, "previous scheduled run still active; slot skipped", "task_type", e.typ, "slot", slot, "err", err)
		}
		if err := schema.FinishSlot.Run(ctx, rdb, key, ms, schema.SlotMarkerTTL.Milliseconds()).Err(); err != nil && !errors.Is(err, redis.Nil) {
			e.s.log.WarnContext(ctx, "finish schedule slot", "task_type", e.typ, "slot", slot, "err", err)
		}
	case 2:
		rolling := strconv.FormatInt(ms, 10) + ":rolling"
		deadline := time.Now().Add(rolloverWait)
		for time.Now().Before(deadline) {
			v, err := rdb.Get(ctx, e.slotKey).Result()
			if err != nil || v != rolling {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		e.s.log.WarnContext(ctx, "schedule slot rollover did not finish in time", "task_type", e.typ, "slot", slot)
	}
}

// afterEnqueue reports the firing.
func (e *entry) afterEnqueue(_ *asynq.TaskInfo, err error) {
	f := Fire{Type: e.typ, Slot: e.slot, First: e.first, At: time.Now()}
	e.firing.Unlock()
	switch {
	case err == nil:
		f.Enqueued = true
		e.s.log.Debug("scheduled task enqueued", "task_type", e.typ, "slot", f.Slot)
	case errors.Is(err, asynq.ErrTaskIDConflict):
		// Another process enqueued this slot, or the previous run is active.
	default:
		f.Err = err
		e.s.log.Warn("enqueue scheduled task", "task_type", e.typ, "slot", f.Slot, "err", err)
	}
	if e.s.cfg.OnFire != nil {
		e.s.cfg.OnFire(f)
	}
}

// quietLogger drops the error asynq's Scheduler logs at shutdown when its
// Redis client is shared (it refuses to close a client it does not own,
// which is what we want).
type quietLogger struct{ asynq.Logger }

func (q quietLogger) Error(args ...any) {
	if strings.Contains(fmt.Sprint(args...), "redis connection is shared") {
		return
	}
	q.Logger.Error(args...)
}
