package maintenance_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/maintenance"
	"github.com/sandboxq/sandboxq/tasks"
)

// fireLog records the firings of several schedulers.
type fireLog struct {
	mu    sync.Mutex
	fires []procFire
}

type procFire struct {
	proc int
	maintenance.Fire
}

func (l *fireLog) hook(proc int) func(maintenance.Fire) {
	return func(f maintenance.Fire) {
		l.mu.Lock()
		l.fires = append(l.fires, procFire{proc, f})
		l.mu.Unlock()
	}
}

func (l *fireLog) snapshot() []procFire {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]procFire(nil), l.fires...)
}

// enqueuedSlots counts, per slot, the firings of typ that enqueued.
func (l *fireLog) enqueuedSlots(typ string) map[int64]int {
	out := map[int64]int{}
	for _, f := range l.snapshot() {
		if f.Type == typ && f.Enqueued {
			out[f.Slot.UnixMilli()]++
		}
	}
	return out
}

// runCounter is a handler that counts its runs per type.
type runCounter struct {
	mu   sync.Mutex
	runs map[string]int
}

func (c *runCounter) handle(_ context.Context, t *asynq.Task) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.runs == nil {
		c.runs = map[string]int{}
	}
	c.runs[t.Type()]++
	return nil
}

func (c *runCounter) count(typ string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs[typ]
}

// startSchedulers runs n Schedulers, each with its own Redis client as
// separate processes would have, until stop is called or the test ends.
func startSchedulers(t *testing.T, db *redistest.DB, n int, cfg maintenance.SchedulerConfig, log *fireLog) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		c := cfg
		c.Redis = db.Client(t)
		c.OnFire = log.hook(i)
		s, err := maintenance.NewScheduler(c)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := s.Run(ctx); err != nil {
				t.Errorf("scheduler %d: %v", i, err)
			}
		})
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

func (b *testBundle) counterServer(t *testing.T, rdb redis.UniversalClient, h asynq.HandlerFunc) {
	t.Helper()
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeMaintenanceCleanup, h)
	mux.HandleFunc(tasks.TypeMaintenanceReconcile, h)
	sb := *b
	sb.rdb = rdb
	sb.startServer(t, mux, tasks.QueueMaintenance)
}

func TestThreeSchedulersEnqueueEachSlotOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	db := redistest.New(t)
	rdb := db.Client(t)
	var runs runCounter
	b.counterServer(t, rdb, runs.handle)

	var log fireLog
	stop := startSchedulers(t, db, 3, maintenance.SchedulerConfig{
		CleanupSpec: "@every 1s", ReconcileSpec: "@every 1s",
		HeartbeatInterval: time.Second, Logger: b.logger,
	}, &log)

	// Both schedules of all three schedulers are registered where
	// Asynqmon's Schedulers page reads them.
	insp := asynq.NewInspectorFromRedisClient(rdb)
	testutil.Eventually(t, "six scheduler entries", 10*time.Second, func() bool {
		entries, err := insp.SchedulerEntries()
		if err != nil || len(entries) != 6 {
			return false
		}
		n := map[string]int{}
		for _, e := range entries {
			n[e.Task.Type()]++
			if e.Spec != "@every 1s" {
				return false
			}
		}
		return n[tasks.TypeMaintenanceCleanup] == 3 && n[tasks.TypeMaintenanceReconcile] == 3
	})
	testutil.Eventually(t, "ten slots of each type enqueued", 40*time.Second, func() bool {
		return len(log.enqueuedSlots(tasks.TypeMaintenanceCleanup)) >= 10 &&
			len(log.enqueuedSlots(tasks.TypeMaintenanceReconcile)) >= 10
	})
	stop()

	for _, typ := range []string{tasks.TypeMaintenanceCleanup, tasks.TypeMaintenanceReconcile} {
		// Exactly one firing per slot, across the three schedulers,
		// started the slot; every enqueue follows such a start, and
		// between two starts at most one enqueue succeeds.
		first := map[int64]int{}
		fired := map[int64]bool{}
		perProc := map[int]int{}
		enqueued, conflicts := 0, 0
		// An enqueue that ends within its own slot's second is in that
		// slot; no two may be.
		inSlot := map[int64]int{}
		for _, f := range log.snapshot() {
			if f.Type != typ {
				continue
			}
			if f.Err != nil {
				t.Errorf("%s: scheduler %d: %v", typ, f.proc, f.Err)
			}
			slot := f.Slot.UnixMilli()
			fired[slot] = true
			perProc[f.proc]++
			if f.First {
				first[slot]++
			}
			switch {
			case f.Enqueued:
				enqueued++
				if f.At.Before(f.Slot.Add(time.Second)) {
					inSlot[slot]++
				}
			default:
				conflicts++
			}
		}
		for slot := range fired {
			if first[slot] != 1 {
				t.Errorf("%s: slot %s was started %d times, want once", typ, time.UnixMilli(slot).UTC().Format(time.RFC3339), first[slot])
			}
			if inSlot[slot] > 1 {
				t.Errorf("%s: slot %s enqueued %d times", typ, time.UnixMilli(slot).UTC().Format(time.RFC3339), inSlot[slot])
			}
		}
		if enqueued > len(fired) || enqueued < 10 {
			t.Errorf("%s: %d enqueues over %d slots, want at least 10 and at most one per slot", typ, enqueued, len(fired))
		}
		// Every run was enqueued by a slot (a run still pending when the
		// next slot starts is replaced, so there may be fewer).
		testutil.Eventually(t, typ+" runs", 10*time.Second, func() bool { return runs.count(typ) >= 10 })
		if got := runs.count(typ); got > enqueued {
			t.Errorf("%s: %d runs for %d enqueues", typ, got, enqueued)
		}
		// The three schedulers all fired; all but one firing per slot
		// found the slot taken.
		for i := range 3 {
			if perProc[i] < 5 {
				t.Errorf("%s: scheduler %d fired %d times, want each to fire every slot", typ, i, perProc[i])
			}
		}
		if conflicts < enqueued {
			t.Errorf("%s: %d firings found their slot taken for %d slots; the schedulers did not compete", typ, conflicts, enqueued)
		}
		if t.Failed() {
			for _, f := range log.snapshot() {
				if f.Type == typ {
					t.Logf("%s: scheduler %d slot %s ended %s first=%v enqueued=%v err=%v", typ, f.proc,
						f.Slot.UTC().Format("15:04:05.000"), f.At.UTC().Format("15:04:05.000"), f.First, f.Enqueued, f.Err)
				}
			}
		}
	}
}

func TestScheduledFailureDoesNotBlockLaterSlots(t *testing.T) {
	t.Parallel()
	b := setup(t)
	db := redistest.New(t)
	rdb := db.Client(t)
	var mu sync.Mutex
	outcomes := []string{}
	b.counterServer(t, rdb, func(_ context.Context, task *asynq.Task) error {
		mu.Lock()
		defer mu.Unlock()
		if len(outcomes) == 0 {
			outcomes = append(outcomes, "failed")
			return fmt.Errorf("first run fails for good: %w", asynq.SkipRetry)
		}
		outcomes = append(outcomes, "ok")
		return nil
	})
	var log fireLog
	stop := startSchedulers(t, db, 1, maintenance.SchedulerConfig{
		CleanupSpec: "@every 1s", ReconcileSpec: maintenance.Off, Logger: b.logger,
	}, &log)
	testutil.Eventually(t, "a failed run followed by two good ones", 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(outcomes) >= 3
	})
	stop()
	mu.Lock()
	if outcomes[0] != "failed" || outcomes[1] != "ok" || outcomes[2] != "ok" {
		t.Errorf("outcomes %v", outcomes)
	}
	mu.Unlock()
	archived, err := asynq.NewInspectorFromRedisClient(rdb).ListArchivedTasks(tasks.QueueMaintenance)
	if err != nil {
		t.Fatal(err)
	}
	if len(archived) != 0 {
		t.Errorf("%d archived runs left; the next slot should have replaced the failed one", len(archived))
	}
}

func TestActiveRunSkipsSlotsWithoutOverlap(t *testing.T) {
	t.Parallel()
	b := setup(t)
	db := redistest.New(t)
	rdb := db.Client(t)
	release := make(chan struct{})
	started := make(chan struct{}, 16)
	var mu sync.Mutex
	running, maxRunning, runs := 0, 0, 0
	b.counterServer(t, rdb, func(ctx context.Context, _ *asynq.Task) error {
		mu.Lock()
		running++
		runs++
		first := runs == 1
		maxRunning = max(maxRunning, running)
		mu.Unlock()
		defer func() {
			mu.Lock()
			running--
			mu.Unlock()
		}()
		started <- struct{}{}
		if first {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	var log fireLog
	stop := startSchedulers(t, db, 2, maintenance.SchedulerConfig{
		CleanupSpec: "@every 1s", ReconcileSpec: maintenance.Off, Logger: b.logger,
	}, &log)
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("no scheduled run started")
	}
	// While the first run is active, two more slots pass without an
	// enqueue.
	firstSlot := int64(0)
	testutil.Eventually(t, "two slots skipped", 20*time.Second, func() bool {
		skipped := map[int64]bool{}
		for _, f := range log.snapshot() {
			switch {
			case f.Enqueued && firstSlot == 0:
				firstSlot = f.Slot.UnixMilli()
			case !f.Enqueued && firstSlot != 0 && f.Slot.UnixMilli() > firstSlot:
				skipped[f.Slot.UnixMilli()] = true
			}
		}
		return len(skipped) >= 2
	})
	if n := len(log.enqueuedSlots(tasks.TypeMaintenanceCleanup)); n != 1 {
		t.Fatalf("%d slots enqueued while the first run was active, want 1", n)
	}
	close(release)
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("no run after the active one finished")
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	if maxRunning != 1 {
		t.Fatalf("%d scheduled runs overlapped", maxRunning)
	}
}
