package maintenance_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/maintenance"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

func TestCleanupDestroysIdleSandboxesOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	mux := asynq.NewServeMux()
	b.sandboxHandlers(t, mux)
	err := maintenance.Register(mux, maintenance.Config{Redis: b.rdb, Gateway: b.gw, Store: b.store, Client: b.client, Logger: b.logger})
	if err != nil {
		t.Fatal(err)
	}
	b.startServer(t, mux)
	ctx := t.Context()

	idleP, busyP := proj("idle"), proj("busy")
	var idleSB, busySB handlers.EnsureResult
	e, err := b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: idleP})
	b.mustSucceed(t, e, err, &idleSB)
	e, err = b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: busyP})
	b.mustSucceed(t, e, err, &busySB)
	// A real process in each sandbox.
	for _, p := range []tasks.Project{idleP, busyP} {
		e, err = b.client.StartServer(ctx, tasks.ServerStart{Project: p, Slug: "web", Command: "sleep 300", WaitFor: tasks.WaitForRunning})
		b.mustSucceed(t, e, err, nil)
	}
	view, ok := b.lp.Sandbox(idleSB.SandboxID)
	if !ok || len(view.PIDs) == 0 {
		t.Fatalf("idle sandbox %s has no processes: %+v", idleSB.SandboxID, view)
	}
	idlePIDs := view.PIDs

	// Registry: the idle project was last used two hours ago, the busy one
	// was created two hours ago and used just now.
	old := time.Now().Add(-2 * time.Hour)
	if err := b.storeAt(old).Upsert(ctx, idleP, idleSB.SandboxID, "local"); err != nil {
		t.Fatal(err)
	}
	if err := b.storeAt(old).Upsert(ctx, busyP, busySB.SandboxID, "local"); err != nil {
		t.Fatal(err)
	}
	if err := b.store.Touch(ctx, busyP); err != nil {
		t.Fatal(err)
	}

	var res maintenance.CleanupResult
	e, err = b.client.Enqueue(ctx, tasks.MaintenanceCleanup{IdleTTL: "1h"})
	b.mustSucceed(t, e, err, &res)
	if res.IdleTTL != "1h0m0s" || res.Idle != 1 || len(res.Enqueued) != 1 {
		t.Fatalf("cleanup result = %+v, want one idle sandbox with a 1h TTL", res)
	}
	got := res.Enqueued[0]
	if got.Namespace != idleP.Namespace || got.Name != idleP.Name || got.SandboxID != idleSB.SandboxID || got.TaskID == "" || got.Duplicate {
		t.Fatalf("enqueued = %+v, want a new destroy of %s", got, idleSB.SandboxID)
	}

	// The destroy it enqueued is an ordinary sandbox:destroy task.
	var destroyed handlers.DestroyResult
	b.mustSucceed(t, &tasks.Enqueued{ID: got.TaskID, Queue: tasks.QueueCritical, Type: tasks.TypeSandboxDestroy}, nil, &destroyed)
	if !destroyed.Destroyed || destroyed.SandboxID != idleSB.SandboxID {
		t.Fatalf("destroy result = %+v", destroyed)
	}
	if _, ok := b.lp.Sandbox(idleSB.SandboxID); ok {
		t.Fatalf("sandbox %s still exists after cleanup", idleSB.SandboxID)
	}
	for _, pid := range idlePIDs {
		testutil.Eventually(t, "process of the destroyed sandbox to exit", 10*time.Second, func() bool {
			return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
		})
	}
	if v, ok := b.lp.Sandbox(busySB.SandboxID); !ok || len(v.PIDs) == 0 {
		t.Fatalf("busy sandbox %s was touched: exists=%v %+v", busySB.SandboxID, ok, v)
	}

	// The registry learns of it (from the destroy handler or, at the
	// latest, from reconcile, which asks the gateway).
	var rr maintenance.ReconcileResult
	e, err = b.client.Enqueue(ctx, tasks.MaintenanceReconcile{})
	b.mustSucceed(t, e, err, &rr)
	if got := b.entry(t, idleP).Status; got != tasks.SandboxDestroyed {
		t.Fatalf("idle entry status = %q, want destroyed (reconcile %+v)", got, rr)
	}
	if got := b.entry(t, busyP).Status; got != tasks.SandboxReady {
		t.Fatalf("busy entry status = %q, want ready", got)
	}

	// A destroyed sandbox is not a candidate again; with the default TTL
	// (30 min) the busy one is not either.
	res = maintenance.CleanupResult{}
	e, err = b.client.Enqueue(ctx, tasks.MaintenanceCleanup{})
	b.mustSucceed(t, e, err, &res)
	if res.IdleTTL != "30m0s" || res.Idle != 0 || len(res.Enqueued) != 0 {
		t.Fatalf("second cleanup = %+v, want nothing to do", res)
	}
}

func TestCleanupEnqueuesOneDestroyPerProject(t *testing.T) {
	t.Parallel()
	b := setup(t)
	mux := asynq.NewServeMux()
	// Only the maintenance queue is served: the destroys stay pending.
	err := maintenance.Register(mux, maintenance.Config{Redis: b.rdb, Gateway: b.gw, IdleTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	b.startServer(t, mux, tasks.QueueMaintenance)
	ctx := t.Context()
	old := time.Now().Add(-3 * time.Hour)
	for _, name := range []string{"a", "b", "c"} {
		if err := b.storeAt(old).Upsert(ctx, proj(name), "sbx-"+name, "local"); err != nil {
			t.Fatal(err)
		}
	}
	var first, second maintenance.CleanupResult
	e, err := b.client.Enqueue(ctx, tasks.MaintenanceCleanup{})
	b.mustSucceed(t, e, err, &first)
	e, err = b.client.Enqueue(ctx, tasks.MaintenanceCleanup{})
	b.mustSucceed(t, e, err, &second)
	if len(first.Enqueued) != 3 || len(second.Enqueued) != 3 {
		t.Fatalf("enqueued %d then %d, want 3 and 3", len(first.Enqueued), len(second.Enqueued))
	}
	ids := map[string]string{}
	for _, d := range first.Enqueued {
		if d.Duplicate {
			t.Errorf("first run: %s is a duplicate", d.Name)
		}
		ids[d.Name] = d.TaskID
	}
	for _, d := range second.Enqueued {
		if !d.Duplicate || ids[d.Name] != d.TaskID {
			t.Errorf("second run: %+v, want the first run's task %s as a duplicate", d, ids[d.Name])
		}
	}
	pending, err := b.insp.ListPendingTasks(tasks.QueueCritical)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 3 {
		t.Fatalf("%d pending destroys, want 3", len(pending))
	}
}

func TestReconcile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	var mu sync.Mutex
	var claimed []tasks.Project
	mux := asynq.NewServeMux()
	b.sandboxHandlers(t, mux)
	err := maintenance.Register(mux, maintenance.Config{
		Redis: b.rdb, Gateway: b.gw, Logger: b.logger,
		StaleAfter: time.Hour,
		Claim: func(_ context.Context, p tasks.Project) error {
			mu.Lock()
			defer mu.Unlock()
			claimed = append(claimed, p)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	b.startServer(t, mux)

	live := func(name string) string {
		var r handlers.EnsureResult
		e, err := b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: proj(name)})
		b.mustSucceed(t, e, err, &r)
		return r.SandboxID
	}
	// alive: registered, exists, a server running, nobody watching.
	aliveID := live("alive")
	e, err := b.client.StartServer(ctx, tasks.ServerStart{Project: proj("alive"), Slug: "api", Command: "sleep 300", WaitFor: tasks.WaitForRunning})
	b.mustSucceed(t, e, err, nil)
	if err := b.store.Upsert(ctx, proj("alive"), aliveID, "local"); err != nil {
		t.Fatal(err)
	}
	// gone: registered as ready, but the gateway has no sandbox.
	if err := b.store.Upsert(ctx, proj("gone"), "sbx-gone", "local"); err != nil {
		t.Fatal(err)
	}
	// stale: destroyed two hours ago.
	staleStore := b.storeAt(time.Now().Add(-2 * time.Hour))
	if err := staleStore.Upsert(ctx, proj("stale"), "sbx-stale", "local"); err != nil {
		t.Fatal(err)
	}
	if _, err := staleStore.SandboxStatus(ctx, proj("stale"), "sbx-stale", tasks.SandboxDestroyed, ""); err != nil {
		t.Fatal(err)
	}
	// recent: destroyed just now, kept for StaleAfter.
	if err := b.store.Upsert(ctx, proj("recent"), "sbx-recent", "local"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.SandboxStatus(ctx, proj("recent"), "sbx-recent", tasks.SandboxDestroyed, ""); err != nil {
		t.Fatal(err)
	}
	// revived: marked destroyed, but the sandbox exists.
	revivedID := live("revived")
	if err := b.store.Upsert(ctx, proj("revived"), revivedID, "local"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.SandboxStatus(ctx, proj("revived"), revivedID, tasks.SandboxDestroyed, ""); err != nil {
		t.Fatal(err)
	}
	// replaced: the registry has an older sandbox id.
	replacedID := live("replaced")
	if err := b.store.Upsert(ctx, proj("replaced"), "sbx-old", "local"); err != nil {
		t.Fatal(err)
	}

	var res maintenance.ReconcileResult
	e, err = b.client.Enqueue(ctx, tasks.MaintenanceReconcile{})
	b.mustSucceed(t, e, err, &res)
	want := maintenance.ReconcileResult{Checked: 6, Alive: 3, MarkedDestroyed: 1, Removed: 1, Replaced: 1, Revived: 1, Claimed: 3, ServersUpdated: 1}
	if res.Checked != want.Checked || res.Alive != want.Alive || res.MarkedDestroyed != want.MarkedDestroyed ||
		res.Removed != want.Removed || res.Replaced != want.Replaced || res.Revived != want.Revived ||
		res.Claimed != want.Claimed || res.ServersUpdated != want.ServersUpdated || len(res.Failures) != 0 {
		t.Fatalf("reconcile = %+v\nwant      %+v", res, want)
	}

	if got := b.entry(t, proj("gone")); got.Status != tasks.SandboxDestroyed || got.LastEvent == nil || got.LastEvent.Status != tasks.SandboxDestroyed {
		t.Errorf("gone: %+v, want destroyed with its event", got)
	}
	if _, err := b.store.Get(ctx, proj("stale")); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("stale entry: err = %v, want it removed", err)
	}
	if got := b.entry(t, proj("recent")).Status; got != tasks.SandboxDestroyed {
		t.Errorf("recent: status %q, want it kept as destroyed", got)
	}
	if got := b.entry(t, proj("revived")).Status; got != tasks.SandboxReady {
		t.Errorf("revived: status %q, want ready", got)
	}
	if got := b.entry(t, proj("replaced")).SandboxID; got != replacedID {
		t.Errorf("replaced: sandbox id %q, want %q", got, replacedID)
	}
	alive := b.entry(t, proj("alive"))
	if st, ok := alive.Servers["api"]; !ok || st.Status == "" {
		t.Errorf("alive: servers %+v, want api refreshed from the daemon", alive.Servers)
	}
	mu.Lock()
	names := make([]string, 0, len(claimed))
	for _, p := range claimed {
		names = append(names, p.Name)
	}
	mu.Unlock()
	slices.Sort(names)
	if !slices.Equal(names, []string{"alive", "replaced", "revived"}) {
		t.Errorf("claimed %v, want the three live sandboxes", names)
	}

	// A second run finds the registry in line: nothing changes.
	res = maintenance.ReconcileResult{}
	e, err = b.client.Enqueue(ctx, tasks.MaintenanceReconcile{})
	b.mustSucceed(t, e, err, &res)
	if res.Checked != 5 || res.MarkedDestroyed+res.Removed+res.Replaced+res.Revived+res.ServersUpdated != 0 {
		t.Fatalf("second reconcile = %+v, want 5 checked and no change", res)
	}
}

func TestReconcileFailsWhenTheGatewayIsDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	mux := asynq.NewServeMux()
	if err := maintenance.Register(mux, maintenance.Config{Redis: b.rdb, Gateway: b.gw}); err != nil {
		t.Fatal(err)
	}
	b.startServer(t, mux)
	if err := b.store.Upsert(ctx, proj("p"), "sbx-p", "local"); err != nil {
		t.Fatal(err)
	}
	if err := b.lp.Close(); err != nil {
		t.Fatal(err)
	}
	e, err := b.client.Enqueue(ctx, tasks.MaintenanceReconcile{}, asynq.MaxRetry(0))
	tf := b.mustFail(t, e, err)
	if !containsAll(tf.LastErr, "reconcile", "1 of 1", "test/p") {
		t.Fatalf("error = %q, want it to name the run and the project", tf.LastErr)
	}
	var res maintenance.ReconcileResult
	if err := json.Unmarshal(tf.Result, &res); err != nil || res.Checked != 1 || len(res.Failures) != 1 {
		t.Fatalf("result of the failed run = %s (%v), want 1 checked and 1 failure", tf.Result, err)
	}
	// The entry is left alone: a gateway that cannot be reached says
	// nothing about the sandbox.
	if got := b.entry(t, proj("p")).Status; got != tasks.SandboxReady {
		t.Fatalf("status = %q, want ready", got)
	}
}

func TestRegisterValidates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, deps := range map[string]maintenance.Config{
		"no redis":     {Gateway: b.gw},
		"no gateway":   {Redis: b.rdb},
		"negative ttl": {Redis: b.rdb, Gateway: b.gw, IdleTTL: -time.Second},
	} {
		if err := maintenance.Register(asynq.NewServeMux(), deps); err == nil {
			t.Errorf("%s: Register succeeded", name)
		}
	}
	if err := maintenance.Register(nil, maintenance.Config{Redis: b.rdb, Gateway: b.gw}); err == nil {
		t.Error("nil mux: Register succeeded")
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestReconcileLeavesWatchedSandboxesToTheirWatcher: a sandbox a watcher
// follows is left alone until its recheck is due (set, spread over the
// next hour, by the first run that sees it watched),
// so 10,000 watched sandboxes do not cost the gateway 10,000 lookups at
// every run; once nobody watches it, every run asks again.
func TestReconcileLeavesWatchedSandboxesToTheirWatcher(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	mux := asynq.NewServeMux()
	b.sandboxHandlers(t, mux)
	if err := maintenance.Register(mux, maintenance.Config{Redis: b.rdb, Gateway: b.gw, Logger: b.logger}); err != nil {
		t.Fatal(err)
	}
	b.startServer(t, mux)
	p := proj("watched")
	var ens handlers.EnsureResult
	e, err := b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: p})
	b.mustSucceed(t, e, err, &ens)
	if err := b.store.Upsert(ctx, p, ens.SandboxID, "local"); err != nil {
		t.Fatal(err)
	}
	ok, err := schema.AcquireLease(ctx, b.rdb, schema.WatcherKey(p), schema.RegistryKey(p), "watcher-1", time.Minute)
	if err != nil || !ok {
		t.Fatalf("watcher lease: %v %v", ok, err)
	}
	run := func() maintenance.ReconcileResult {
		t.Helper()
		var res maintenance.ReconcileResult
		e, err := b.client.Enqueue(ctx, tasks.MaintenanceReconcile{})
		b.mustSucceed(t, e, err, &res)
		return res
	}
	if res := run(); res.Checked != 1 || res.Alive != 0 || res.Watched != 1 {
		t.Fatalf("first run = %+v, want the watched sandbox left to its watcher", res)
	}
	if got := b.entry(t, p).RecheckAt; time.Until(got) < 29*time.Minute || time.Until(got) > 91*time.Minute {
		t.Errorf("recheck at %v, want 30 to 90 min from now", got)
	}
	if res := run(); res.Checked != 1 || res.Alive != 0 || res.Watched != 1 {
		t.Fatalf("second run = %+v, want the watched sandbox left to its watcher", res)
	}
	// Its recheck falls due: the next run asks the gateway, and sets the
	// one after.
	if err := b.store.SetRecheck(ctx, p, time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if res := run(); res.Checked != 1 || res.Alive != 1 || res.Watched != 0 {
		t.Fatalf("run with the recheck due = %+v, want the sandbox asked about", res)
	}
	if got := b.entry(t, p).RecheckAt; time.Until(got) < 29*time.Minute {
		t.Errorf("recheck at %v after a check, want 30 to 90 min from now", got)
	}
	if _, err := schema.ReleaseLease(ctx, b.rdb, schema.WatcherKey(p), schema.RegistryKey(p), "watcher-1"); err != nil {
		t.Fatal(err)
	}
	if res := run(); res.Checked != 1 || res.Alive != 1 || res.Watched != 0 {
		t.Fatalf("run after the watcher left = %+v, want the sandbox asked about", res)
	}
}
