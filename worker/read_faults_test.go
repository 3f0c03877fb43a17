package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
	"github.com/sandboxq/sandboxq/worker"
)

// attemptCounter is a slog.Handler that counts the "task processed" line
// the worker logs once per attempt, by task id, and passes errors on.
type attemptCounter struct {
	mu   *sync.Mutex
	by   map[string]int
	next slog.Handler
}

func newAttemptCounter(next slog.Handler) *attemptCounter {
	return &attemptCounter{mu: new(sync.Mutex), by: map[string]int{}, next: next}
}

func (a *attemptCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (a *attemptCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "task processed" {
		r.Attrs(func(at slog.Attr) bool {
			if at.Key == "task_id" {
				a.mu.Lock()
				a.by[at.Value.String()]++
				a.mu.Unlock()
				return false
			}
			return true
		})
	}
	if r.Level >= slog.LevelError {
		return a.next.Handle(ctx, r)
	}
	return nil
}

func (a *attemptCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return &attemptCounter{mu: a.mu, by: a.by, next: a.next.WithAttrs(as)}
}

func (a *attemptCounter) WithGroup(g string) slog.Handler {
	return &attemptCounter{mu: a.mu, by: a.by, next: a.next.WithGroup(g)}
}

func (a *attemptCounter) attempts(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.by[id]
}

// TestReadFaultsAttemptHistogram: with the local provider failing 30 % of
// idempotent reads (find, find-or-create, server get/list) with 503, a run
// of 200 tasks (two sandbox:ensure and two identical server:start on each
// of 50 projects: find, find-or-create, get server, and the list servers
// of the watchers)
// all succeed and none uses more than 4 attempts, because a read retries
// inside the attempt (DESIGN.md §5). Every attempt is counted from the
// worker's own per-attempt log line, so busy projects and rate limits,
// which do not count against MaxRetry, count here.
func TestReadFaultsAttemptHistogram(t *testing.T) {
	t.Parallel()
	obs := &testutil.Recorder{}
	lp, gw := testutil.Provider(t, local.Config{Observe: obs.Add, Faults: local.Faults{
		Seed: 9, Errors: []local.Fault{{Rate: 0.3, Status: 503, Scope: local.ScopeReads}},
	}}, gateway.WithReadRetry(gateway.DefaultReadRetries, 5*time.Millisecond, 500*time.Millisecond))
	counter := newAttemptCounter(slog.NewTextHandler(t.Output(), nil))
	rdb := redistest.New(t).Client(t)
	b := &testBundle{lp: lp, gw: gw, rdb: rdb, client: tasks.NewClient(rdb), insp: asynq.NewInspectorFromRedisClient(rdb),
		obs: obs, t: t, logger: slog.New(counter)}
	b.startWorker(t, func(c *worker.Config) { c.Concurrency = 20 })

	ctx := t.Context()
	var all []*tasks.Enqueued
	for i := range 50 {
		p := proj(fmt.Sprintf("reads-%d", i))
		all = append(all,
			b.ok(b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: p})),
			b.ok(b.client.StartServer(ctx, tasks.ServerStart{Project: p, Slug: "web", Command: "sleep 300", WaitFor: tasks.WaitForRunning})),
			b.ok(b.client.StartServer(ctx, tasks.ServerStart{Project: p, Slug: "web", Command: "sleep 300", WaitFor: tasks.WaitForRunning})),
			b.ok(b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: p})),
		)
	}
	hist := map[int]int{}
	worst := 0
	for _, e := range all {
		b.mustSucceed(t, e, nil)
		n := counter.attempts(e.ID)
		hist[n]++
		worst = max(worst, n)
	}
	injected := 0
	for _, o := range obs.Snapshot() {
		if o.Injected && o.Status == 503 {
			injected++
		}
	}
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "%d tasks, %d injected 503s on reads\n attempts | tasks\n", len(all), injected)
	for _, n := range slices.Sorted(maps.Keys(hist)) {
		fmt.Fprintf(&tbl, " %8d | %5d\n", n, hist[n])
	}
	t.Log("attempt histogram\n" + tbl.String())
	if injected == 0 {
		t.Fatal("no fault was injected")
	}
	if hist[0] > 0 {
		t.Fatalf("%d tasks succeeded with no attempt logged: the count is broken", hist[0])
	}
	if worst > 4 {
		t.Fatalf("a task used %d attempts, want at most 4", worst)
	}
}
