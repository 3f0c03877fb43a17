package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
)

// provider starts a local provider in the test process and returns it with
// the environment that points a worker at it.
func provider(t *testing.T, db *redistest.DB, rec *testutil.Recorder) (*local.Provider, map[string]string) {
	t.Helper()
	opts := local.Config{}
	if rec != nil {
		opts.Observe = rec.Add
	}
	lp, err := local.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lp.Close() })
	return lp, map[string]string{
		"REDIS_URL":                db.URL(),
		"COMPUTESDK_API_KEY":       lp.APIKey().Reveal(),
		"COMPUTESDK_GATEWAY_URL":   lp.URL(),
		"COMPUTESDK_GATEWAY_PATHS": "plural",
		"SANDBOXQ_CONCURRENCY":     "20",
	}
}

// TestExclusionAcrossWorkerProcesses: 300 mutating tasks over 10 projects,
// 3 worker processes with concurrency 20 each. The local provider records
// every request; no two mutations of one project may overlap, and every task
// completes.
func TestExclusionAcrossWorkerProcesses(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rec := &testutil.Recorder{}
	lp, env := provider(t, db, rec)
	for i := 0; i < 3; i++ {
		startWorker(t, env)
	}
	client := tasks.NewClient(db.Client(t))
	all := enqueueMutations(t, client, "", "p", 300, 10)
	waitAll(t, client, all)

	if counts := testutil.NoOverlappingMutations(t, rec.Snapshot()); len(counts) != 10 {
		t.Fatalf("mutations on %d sandboxes, want 10", len(counts))
	}
	for _, v := range lp.Sandboxes() {
		data, err := os.ReadFile(filepath.Join(v.Dir, "log.txt"))
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(data), "\n"); n != 10 {
			t.Errorf("project %s ran %d commands, want 10", v.Name, n)
		}
	}
}

// TestSIGTERMLosesNoTask: SIGTERM to a worker in the middle of a batch; every
// task either completed or went back to the queue and was completed by the
// next worker.
func TestSIGTERMLosesNoTask(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	_, env := provider(t, db, nil)
	env["SANDBOXQ_SHUTDOWN_TIMEOUT"] = "300ms"
	rdb := db.Client(t)
	client := tasks.NewClient(rdb)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	ctx := t.Context()
	var all []*tasks.Enqueued
	for i := 0; i < 80; i++ {
		e, err := client.RunCommand(ctx, tasks.CommandRun{Project: tasks.Project{Name: fmt.Sprintf("drain%d", i%8)}, Command: "sleep 0.4"})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, e)
	}
	a := startWorker(t, env)
	testutil.Eventually(t, "tasks to complete and others to run", 60*time.Second, func() bool {
		q, err := insp.GetQueueInfo(tasks.QueueDefault)
		return err == nil && q.Completed >= 5 && q.Active > 0
	})
	a.terminate(t)
	q, err := insp.GetQueueInfo(tasks.QueueDefault)
	if err != nil {
		t.Fatal(err)
	}
	if q.Completed >= len(all) {
		t.Fatal("every task finished before SIGTERM; nothing was interrupted")
	}
	t.Logf("after SIGTERM: %d completed, %d pending, %d retry, %d active", q.Completed, q.Pending, q.Retry, q.Active)
	startWorker(t, env)
	waitAll(t, client, all)
}

func waitAll(t *testing.T, client *tasks.Client, all []*tasks.Enqueued) {
	t.Helper()
	for _, e := range all {
		ctx, cancel := ctxTimeout(t, 2*time.Minute)
		res, err := client.Wait(ctx, e.Queue, e.ID)
		cancel()
		if err != nil {
			t.Fatalf("task %s %s: %v", e.Type, e.ID, err)
		}
		if res.State != tasks.StateCompleted {
			t.Fatalf("task %s: state %s", e.ID, res.State)
		}
	}
}

// enqueueMutations enqueues n mutating tasks (files:write, env:update and
// command:run in turn, the command appending its index to log.txt) over
// `projects` projects of namespace ns, named prefix0…, and returns them.
func enqueueMutations(t *testing.T, client *tasks.Client, ns, prefix string, n, projects int) []*tasks.Enqueued {
	t.Helper()
	ctx := t.Context()
	var all []*tasks.Enqueued
	for i := range n {
		p := tasks.Project{Namespace: ns, Name: fmt.Sprintf("%s%d", prefix, i%projects)}
		var e *tasks.Enqueued
		var err error
		switch i % 3 {
		case 0:
			var es []*tasks.Enqueued
			es, err = client.WriteFiles(ctx, tasks.FilesWrite{Project: p, Files: []tasks.File{{Path: fmt.Sprintf("f%d.txt", i), Content: "x"}}})
			if err == nil {
				e = es[0]
			}
		case 1:
			e, err = client.UpdateEnv(ctx, tasks.EnvUpdate{Project: p, Set: map[string]string{fmt.Sprintf("K%d", i): "v"}})
		default:
			e, err = client.RunCommand(ctx, tasks.CommandRun{Project: p, Command: fmt.Sprintf("echo %d >> log.txt", i)})
		}
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, e)
	}
	return all
}
