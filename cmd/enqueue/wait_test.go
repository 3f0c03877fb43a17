package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
)

// sameJSON fails unless got and want are equal JSON values.
func sameJSON(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %q is not JSON: %v", what, got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s: got %s, want %s", what, got, want)
	}
}

func TestWaitCompleted(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	const result = `{"sandbox_id":"sb-1","provider":"local","created":true,"status":"ready"}`
	startWorker(t, db, func(ctx context.Context, task *asynq.Task) error {
		_, err := task.ResultWriter().Write([]byte(result))
		return err
	})
	c := cli{redisURL: db.URL()}

	r := c.must(t, exitOK, "ensure", "--name", "shop", "--wait")
	sameJSON(t, "stdout", []byte(r.stdout), result)
	if !strings.Contains(r.stdout, "\n  ") {
		t.Errorf("stdout is not indented for humans: %q", r.stdout)
	}
	if n := strings.Count(r.stderr, "completed"); n != 1 {
		t.Errorf("stderr says completed %d times, want once: %q", n, r.stderr)
	}

	r = c.must(t, exitOK, "ensure", "--name", "shop", "--wait", "--json")
	m := decodeOne(t, r.stdout)
	checkKeys(t, m, "id", "queue", "type", "duplicate", "state", "result", "error")
	sameJSON(t, "result", m["result"], result)
	if s := str(t, m["state"]); s != tasks.StateCompleted {
		t.Errorf("state %q, want completed", s)
	}
	if string(m["error"]) != "null" || string(m["duplicate"]) != "false" {
		t.Errorf("error %s duplicate %s, want null and false (the first ensure has finished)", m["error"], m["duplicate"])
	}

	// status of the finished task, found without --queue.
	id := str(t, m["id"])
	st := decodeOne(t, c.must(t, exitOK, "status", id, "--json").stdout)
	if str(t, st["state"]) != tasks.StateCompleted || str(t, st["queue"]) != tasks.QueueCritical {
		t.Errorf("status: %v", st)
	}
	sameJSON(t, "status result", st["result"], result)
	human := c.must(t, exitOK, "status", id)
	var res tasks.Result
	if err := json.Unmarshal([]byte(human.stdout), &res); err != nil || res.ID != id || res.State != tasks.StateCompleted {
		t.Errorf("human status %q: %+v, %v", human.stdout, res, err)
	}

	// A completed task cannot be cancelled.
	cr := c.must(t, exitFailed, "cancel", id)
	if !strings.Contains(cr.stderr, "already completed") {
		t.Errorf("cancel of a completed task: stderr %q", cr.stderr)
	}
}

func TestWaitFailed(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	startWorker(t, db, func(ctx context.Context, task *asynq.Task) error {
		return fmt.Errorf("gateway said 422: template node-99 does not exist: %w", asynq.SkipRetry)
	})
	c := cli{redisURL: db.URL()}

	r := c.must(t, exitFailed, "run", "--name", "shop", "--wait", "--", "true")
	if !strings.Contains(r.stderr, "template node-99 does not exist") {
		t.Errorf("stderr %q lacks the task's error", r.stderr)
	}

	r = c.must(t, exitFailed, "run", "--name", "shop", "--wait", "--json", "--", "true")
	m := decodeOne(t, r.stdout)
	checkKeys(t, m, "id", "queue", "type", "duplicate", "state", "result", "error")
	if s := str(t, m["state"]); s != tasks.StateArchived {
		t.Errorf("state %q, want archived", s)
	}
	if e := str(t, m["error"]); !strings.Contains(e, "template node-99 does not exist") {
		t.Errorf("error %q lacks the task's error", e)
	}
	// status of an archived task exits 1 too.
	c.must(t, exitFailed, "status", str(t, m["id"]))
	// A failed, archived task cannot be cancelled: exit 1 naming why.
	cr := c.must(t, exitFailed, "cancel", str(t, m["id"]))
	if !strings.Contains(cr.stderr, "already archived (failed)") || strings.Contains(cr.stdout, "cancelled") {
		t.Errorf("cancel of a failed task: stdout %q stderr %q", cr.stdout, cr.stderr)
	}
}

func TestWaitTimeout(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	release := make(chan struct{})
	started := make(chan string, 1)
	startWorker(t, db, func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		started <- id
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	t.Cleanup(func() { close(release) }) // before the worker's Shutdown
	r := cli{redisURL: db.URL()}.must(t, exitTimeout, "start-server", "--name", "shop", "--slug", "web", "--command", "sleep 1d", "--wait", "--timeout", "1s", "--json")
	m := decodeOne(t, r.stdout)
	if e := str(t, m["error"]); e != "wait timed out after 1s" {
		t.Errorf("error %q, want the wait timeout", e)
	}
	select {
	case id := <-started:
		if id != str(t, m["id"]) {
			t.Errorf("the handler ran %s, the CLI waited for %s", id, m["id"])
		}
	default:
		// The worker had not picked the task up within the second; the
		// timeout still holds.
	}
	if !strings.Contains(r.stderr, "--timeout 1s") {
		t.Errorf("stderr %q does not explain the timeout", r.stderr)
	}
}

// TestWaitProgress checks that while waiting the CLI prints each progress
// result the handler records, and the final result on stdout.
func TestWaitProgress(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	stderr := &testutil.SyncBuffer{}
	startWorker(t, db, func(ctx context.Context, task *asynq.Task) error {
		w := task.ResultWriter()
		if _, err := w.Write([]byte(`{"slug":"web","status":"installing"}`)); err != nil {
			return err
		}
		// Go on only once the CLI has shown the progress.
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for !strings.Contains(stderr.String(), `progress {"slug":"web","status":"installing"}`) {
			select {
			case <-ctx.Done():
				return errors.New("the CLI never printed the progress")
			case <-tick.C:
			}
		}
		_, err := w.Write([]byte(`{"slug":"web","status":"ready","url":"http://127.0.0.1:3000","port":3000}`))
		return err
	})
	r := cli{redisURL: db.URL(), stderr: stderr}.must(t, exitOK, "start-server", "--name", "shop", "--slug", "web", "--command", "node .", "--wait")
	sameJSON(t, "stdout", []byte(r.stdout), `{"slug":"web","status":"ready","url":"http://127.0.0.1:3000","port":3000}`)
	if !strings.Contains(r.stderr, ": active\n") {
		t.Errorf("stderr %q does not show the active state", r.stderr)
	}
}

func TestCancelPending(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	c := cli{redisURL: db.URL()}
	id := strings.TrimSpace(c.must(t, exitOK, "ensure", "--name", "shop").stdout)
	if n := len(pendingTasks(t, db, tasks.QueueCritical)); n != 1 {
		t.Fatalf("%d pending tasks, want 1", n)
	}

	m := decodeOne(t, c.must(t, exitOK, "cancel", id, "--json").stdout)
	checkKeys(t, m, "id", "queue", "type", "duplicate", "state", "result", "error")
	if str(t, m["state"]) != tasks.StateArchived || str(t, m["error"]) != "cancelled" {
		t.Errorf("cancel --json: state %s error %s, want archived and cancelled", m["state"], m["error"])
	}
	if n := len(pendingTasks(t, db, tasks.QueueCritical)); n != 0 {
		t.Errorf("%d pending tasks after cancel, want 0", n)
	}
	info, err := asynq.NewInspectorFromRedisClient(db.Client(t)).GetTaskInfo(tasks.QueueCritical, id)
	if err != nil || info.State != asynq.TaskStateArchived {
		t.Errorf("task after cancel: %v, %v; want archived", info, err)
	}

	// status --wait of a cancelled task does not wait: exit 1 at once.
	st := decodeOne(t, c.must(t, exitFailed, "status", id, "--wait", "--json").stdout)
	if str(t, st["error"]) != "cancelled" {
		t.Errorf("status error %s, want cancelled", st["error"])
	}
	// A new ensure is a new task, not a duplicate of the cancelled one.
	again := decodeOne(t, c.must(t, exitOK, "ensure", "--name", "shop", "--json").stdout)
	if str(t, again["id"]) == id || string(again["duplicate"]) != "false" {
		t.Errorf("ensure after cancel: %v", again)
	}
}

func TestStatusAndCancelUnknownTask(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	c := cli{redisURL: db.URL()}
	r := c.must(t, exitFailed, "status", "no-such-task")
	if !strings.Contains(r.stderr, "critical, default, maintenance") {
		t.Errorf("stderr %q does not name the queues searched", r.stderr)
	}
	c.must(t, exitFailed, "status", "no-such-task", "--queue", "default")
	c.must(t, exitFailed, "cancel", "no-such-task")
}

func TestStatusPending(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	c := cli{redisURL: db.URL()}
	id := strings.TrimSpace(c.must(t, exitOK, "env", "--name", "shop", "--set", "A=1").stdout)
	m := decodeOne(t, c.must(t, exitOK, "status", "--queue", "default", id, "--json").stdout)
	checkKeys(t, m, "id", "queue", "type", "duplicate", "state", "result", "error")
	if str(t, m["state"]) != tasks.StatePending || str(t, m["type"]) != tasks.TypeEnvUpdate {
		t.Errorf("status: %v", m)
	}
}
