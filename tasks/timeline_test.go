package tasks_test

import (
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// TestIndexRoundTrips counts the round trips of enqueues with a go-redis
// hook: a pending task costs one round trip after asynq's enqueue, which
// wakes an idle worker (schema.Wake) and, for a task with a project,
// records it in the project's index; a deduplicated type adds nothing, its
// index record and wake-up ride in the pipeline of the dedup record.
func TestIndexRoundTrips(t *testing.T) {
	t.Parallel()
	b := setup(t)
	trips := &testutil.Trips{}
	b.rdb.AddHook(trips)
	ctx := t.Context()
	p := tasks.Project{Namespace: "rt", Name: "shop"}
	count := func(pl tasks.Payload) (int, *tasks.Enqueued) {
		t.Helper()
		trips.Reset()
		e, err := b.client.Enqueue(ctx, pl)
		if err != nil {
			t.Fatal(err)
		}
		return trips.Count(), e
	}
	// The first enqueue of a queue also registers it; count the second.
	count(tasks.CommandRun{Project: p, Command: "true"})
	count(tasks.MaintenanceCleanup{})
	withProject, _ := count(tasks.CommandRun{Project: p, Command: "true"})
	withoutProject, _ := count(tasks.MaintenanceCleanup{})
	t.Logf("round trips per enqueue: %d with the project index, %d without a project", withProject, withoutProject)
	if withProject != withoutProject {
		t.Errorf("the index costs %d round trips per enqueue, want 0 (it shares the wake-up's)", withProject-withoutProject)
	}
	if got := trips.With(schema.TasksKey(p)); len(got) != 0 {
		t.Errorf("an enqueue without a project touched the index: %v", got)
	}
	if got := trips.With(schema.WakeKey(tasks.QueueMaintenance)); len(got) != 1 {
		t.Errorf("wake-up round trips of an enqueue without a project: %v", got)
	}
	count(tasks.CommandRun{Project: p, Command: "true"})
	idx := trips.With(schema.TasksKey(p))
	if len(idx) != 1 || !testutil.HasCommand(idx[0], schema.WakeKey(tasks.QueueDefault)) {
		t.Errorf("index round trips of one enqueue, want one carrying the wake-up: %v", idx)
	}
	if _, err := b.client.Enqueue(ctx, tasks.CommandRun{Project: p, Command: "true"}, asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := trips.With(schema.WakeKey(tasks.QueueDefault)); len(got) != 1 {
		t.Errorf("a scheduled task woke a worker: %d wake-ups, want the 1 of the pending task", len(got))
	}

	n, ens := count(tasks.SandboxEnsure{Project: p})
	idx = trips.With(schema.TasksKey(p))
	if len(idx) != 1 || !testutil.HasCommand(idx[0], schema.DedupKey(tasks.TypeSandboxEnsure, p)) {
		t.Errorf("the index record of a deduplicated enqueue is not in the dedup record's pipeline: %v", idx)
	}
	t.Logf("round trips of a deduplicated enqueue: %d", n)

	recs, err := b.client.ProjectTasks(ctx, p, tasks.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 || recs[0].ID != ens.ID || recs[0].State != tasks.StatePending || recs[0].Type != tasks.TypeSandboxEnsure {
		t.Errorf("ProjectTasks: %+v", recs)
	}
	if _, err := b.client.ProjectTasks(ctx, p, tasks.ListOptions{State: "bogus"}); err == nil {
		t.Error("state bogus accepted")
	}
	if _, err := b.client.Retry(ctx, ens.Queue, ens.ID); err == nil {
		t.Error("retry of a pending task accepted")
	}
}
