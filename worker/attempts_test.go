package worker_test

import (
	"strings"
	"testing"

	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// attemptTrips returns the round trips that record an attempt of a task of
// p (those carrying an attempt's JSON).
func attemptTrips(trips *testutil.Trips, p tasks.Project) [][][]string {
	var out [][][]string
	for _, trip := range trips.With(schema.TaskInfoKey(p)) {
		for _, cmd := range trip {
			if strings.Contains(strings.Join(cmd, " "), `"started_at"`) {
				out = append(out, trip)
				break
			}
		}
	}
	return out
}

// TestAttemptRecordRoundTrips counts the worker's round trips with a
// go-redis hook: the attempt record of a task that ends with a result
// travels in the same pipeline as the result (which the worker writes in
// one round trip anyway), so it costs none extra; the result is not
// written on its own besides. The same holds for a failed attempt (its
// handler's result, even an empty one, is written as before). Only an
// attempt whose handler writes no result at all (a payload that cannot be
// decoded) costs its record alone. The notice that the attempt ended
// (schema.TaskDoneChannel) rides in the same pipeline.
func TestAttemptRecordRoundTrips(t *testing.T) {
	t.Parallel()
	b := setup(t)
	trips := &testutil.Trips{}
	b.rdb.AddHook(trips)
	b.startWorker(t, nil)
	p := proj("attempts")
	b.mustSucceed(t, b.ok(b.client.EnsureSandbox(t.Context(), tasks.SandboxEnsure{Project: p})), nil)

	trips.Reset()
	e := b.ok(b.client.RunCommand(t.Context(), tasks.CommandRun{Project: p, Command: "echo hi"}))
	b.mustSucceed(t, e, nil)
	rec := attemptTrips(trips, p)
	if len(rec) != 1 {
		t.Fatalf("%d round trips record the attempt, want 1: %v", len(rec), rec)
	}
	taskKey := schema.AsynqTaskKey(e.Queue, e.ID)
	if !testutil.HasCommand(rec[0], "hset", taskKey, "result") {
		t.Errorf("the attempt record is not pipelined with the result: %v", rec[0])
	}
	if !testutil.HasCommand(rec[0], "publish", schema.TaskDoneChannel) {
		t.Errorf("the end notice is not pipelined with the attempt record: %v", rec[0])
	}
	var results int
	for _, trip := range trips.With(taskKey) {
		if testutil.HasCommand(trip, "hset", taskKey, "result") {
			results++
		}
	}
	if results != 1 {
		t.Errorf("the result was written in %d round trips, want 1", results)
	}
	atts, err := b.client.Attempts(t.Context(), e.Queue, e.ID)
	if err != nil || len(atts) != 1 || atts[0].Error != "" || atts[0].StartedAt.IsZero() {
		t.Errorf("attempts %+v, %v", atts, err)
	}

	none := proj("attempts-nosandbox")
	trips.Reset()
	f := b.ok(b.client.RunCommand(t.Context(), tasks.CommandRun{Project: none, Command: "true", Ensure: ptr(false)}))
	b.mustFail(t, f)
	// The handler's (empty) result is written as before, and the record
	// shares its round trip.
	if rec := attemptTrips(trips, none); len(rec) != 1 || !testutil.HasCommand(rec[0], "hset", schema.AsynqTaskKey(f.Queue, f.ID), "result") {
		t.Errorf("the failed attempt: %d round trips %v, want 1 with the result", len(rec), rec)
	}
	atts, err = b.client.Attempts(t.Context(), f.Queue, f.ID)
	if err != nil || len(atts) != 1 || atts[0].Error == "" {
		t.Errorf("attempts of the failed task %+v, %v", atts, err)
	}
}
