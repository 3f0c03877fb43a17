package worker_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
	"github.com/sandboxq/sandboxq/worker"
)

const appPy = `import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"hello " + os.environ.get("GREETING", "").encode())
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`

func TestEveryTaskTypeEndToEnd(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startWorker(t, nil)
	ctx := t.Context()
	p := proj("all-types")

	var ens handlers.EnsureResult
	b.mustSucceed(t, b.ok(b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: p})), &ens)
	if !ens.Created || ens.SandboxID == "" {
		t.Fatalf("first ensure = %+v, want created", ens)
	}
	var again handlers.EnsureResult
	b.mustSucceed(t, b.ok(b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: p})), &again)
	if again.Created || again.SandboxID != ens.SandboxID {
		t.Fatalf("second ensure = %+v, want the same sandbox, not created", again)
	}

	es, err := b.client.WriteFiles(ctx, tasks.FilesWrite{Project: p, Files: []tasks.File{
		{Path: "/app/app.py", Content: appPy},
		{Path: "/app/notes.txt", Content: "notes"},
	}})
	if err != nil || len(es) != 1 {
		t.Fatalf("WriteFiles = %v, %v", es, err)
	}
	var fr handlers.FilesResult
	b.mustSucceed(t, es[0], &fr)
	if fr.Written != 2 || fr.Bytes != int64(len(appPy)+5) {
		t.Fatalf("files result = %+v", fr)
	}
	view, _ := b.lp.Sandbox(ens.SandboxID)
	if got, err := os.ReadFile(filepath.Join(view.Dir, "app", "notes.txt")); err != nil || string(got) != "notes" {
		t.Fatalf("notes.txt = %q, %v", got, err)
	}

	var env handlers.EnvResult
	b.mustSucceed(t, b.ok(b.client.UpdateEnv(ctx, tasks.EnvUpdate{Project: p, File: "app/.env", Set: map[string]string{"GREETING": "world", "X": "y"}})), &env)
	if strings.Join(sortedCopy(env.Set), ",") != "GREETING,X" {
		t.Fatalf("env result = %+v", env)
	}
	b.mustSucceed(t, b.ok(b.client.UpdateEnv(ctx, tasks.EnvUpdate{Project: p, File: "app/.env", Remove: []string{"X"}})), nil)

	var srv handlers.ServerResult
	b.mustSucceed(t, b.ok(b.client.StartServer(ctx, tasks.ServerStart{Project: p, Slug: "web", Command: "python3 app.py", Path: "/app", EnvFile: ".env"})), &srv)
	if srv.Status != sandboxq.ServerReady || srv.URL == "" || srv.Action != "started" {
		t.Fatalf("server:start result = %+v", srv)
	}
	if body := get(t, srv.URL); body != "hello world" {
		t.Fatalf("server answered %q", body)
	}
	pids := view.PIDs
	if v, _ := b.lp.Sandbox(ens.SandboxID); len(v.PIDs) == 0 {
		t.Fatal("no server process recorded")
	} else {
		pids = v.PIDs
	}

	// The same start again leaves the running server alone.
	var same handlers.ServerResult
	b.mustSucceed(t, b.ok(b.client.StartServer(ctx, tasks.ServerStart{Project: p, Slug: "web", Command: "python3 app.py", Path: "/app", EnvFile: ".env"})), &same)
	if same.Action != "unchanged" || same.URL != srv.URL {
		t.Fatalf("second server:start = %+v, want unchanged", same)
	}
	if v, _ := b.lp.Sandbox(ens.SandboxID); fmt.Sprint(v.PIDs) != fmt.Sprint(pids) {
		t.Fatalf("pids changed from %v to %v: the server was started twice", pids, v.PIDs)
	}

	var cmd handlers.CommandResult
	b.mustSucceed(t, b.ok(b.client.RunCommand(ctx, tasks.CommandRun{Project: p, Command: "cat notes.txt; echo err >&2", Cwd: "/app"})), &cmd)
	if cmd.ExitCode != 0 || cmd.Stdout != "notes" || cmd.Stderr != "err\n" {
		t.Fatalf("command result = %+v", cmd)
	}
	tf := b.mustFail(t, b.ok(b.client.RunCommand(ctx, tasks.CommandRun{Project: p, Command: "echo partial; exit 3"})))
	if !strings.Contains(tf.LastErr, "exited with code 3") || !strings.Contains(string(tf.Result), `"stdout":"partial\n"`) {
		t.Fatalf("failed command: %+v result %s", tf, tf.Result)
	}
	b.mustSucceed(t, b.ok(b.client.RunCommand(ctx, tasks.CommandRun{Project: p, Command: "exit 4", FailOnNonzero: ptr(false)})), &cmd)
	if cmd.ExitCode != 4 {
		t.Fatalf("exit code = %d, want 4", cmd.ExitCode)
	}

	var restarted handlers.ServerResult
	b.mustSucceed(t, b.ok(b.client.RestartServer(ctx, tasks.ServerRestart{Project: p, Slug: "web"})), &restarted)
	if restarted.Status != sandboxq.ServerReady {
		t.Fatalf("restart result = %+v", restarted)
	}
	var stopped handlers.ServerResult
	b.mustSucceed(t, b.ok(b.client.StopServer(ctx, tasks.ServerStop{Project: p, Slug: "web"})), &stopped)
	if stopped.Status != sandboxq.ServerStopped {
		t.Fatalf("stop result = %+v", stopped)
	}

	var d handlers.DestroyResult
	b.mustSucceed(t, b.ok(b.client.DestroySandbox(ctx, tasks.SandboxDestroy{Project: p})), &d)
	if !d.Destroyed || d.SandboxID != ens.SandboxID {
		t.Fatalf("destroy = %+v", d)
	}
	if _, err := os.Stat(view.Dir); !os.IsNotExist(err) {
		t.Fatalf("sandbox dir still there: %v", err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d still alive after destroy", pid)
		}
	}
	b.mustSucceed(t, b.ok(b.client.DestroySandbox(ctx, tasks.SandboxDestroy{Project: p})), &d)
	if d.Destroyed {
		t.Fatalf("destroying a missing sandbox = %+v, want destroyed=false", d)
	}
	// Without ensure, a task on a project with no sandbox fails at once.
	tf = b.mustFail(t, b.ok(b.client.RunCommand(ctx, tasks.CommandRun{Project: p, Command: "true", Ensure: ptr(false)})))
	if tf.LastErr == "" || !strings.Contains(tf.LastErr, "no sandbox") {
		t.Fatalf("no-ensure failure = %+v", tf)
	}
}

func TestServerFailureEndsTaskWithExitCode(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startWorker(t, nil)
	e := b.ok(b.client.StartServer(t.Context(), tasks.ServerStart{Project: proj("crash"), Slug: "bad", Command: "echo dying >&2; exit 7"}))
	tf := b.mustFail(t, e)
	if !strings.Contains(tf.LastErr, `server "bad" failed with exit code 7`) {
		t.Fatalf("last error = %q", tf.LastErr)
	}
	if !strings.Contains(string(tf.Result), `"exit_code":7`) || !strings.Contains(string(tf.Result), `"status":"failed"`) {
		t.Fatalf("result = %s", tf.Result)
	}
	st, _ := b.client.Status(t.Context(), e.Queue, e.ID)
	if st.Retried != 0 {
		t.Fatalf("a failed server was retried %d times", st.Retried)
	}
}

// TestProjectExclusion runs 300 mutating tasks over 10 projects on three
// workers with concurrency 20 each, and checks with the provider's own record
// that no two mutations of one project ever overlapped.
func TestProjectExclusion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := 0; i < 3; i++ {
		b.startWorker(t, func(c *worker.Config) { c.Concurrency = 20 })
	}
	ctx := t.Context()
	var all []*tasks.Enqueued
	for i := 0; i < 300; i++ {
		p := proj(fmt.Sprintf("excl-%d", i%10))
		var e *tasks.Enqueued
		var err error
		switch i % 3 {
		case 0:
			var es []*tasks.Enqueued
			es, err = b.client.WriteFiles(ctx, tasks.FilesWrite{Project: p, Files: []tasks.File{{Path: fmt.Sprintf("f/%d.txt", i), Content: "x"}}})
			if err == nil {
				e = es[0]
			}
		case 1:
			e, err = b.client.UpdateEnv(ctx, tasks.EnvUpdate{Project: p, Set: map[string]string{fmt.Sprintf("K%d", i): "v"}})
		case 2:
			e, err = b.client.RunCommand(ctx, tasks.CommandRun{Project: p, Command: fmt.Sprintf("echo %d >> log.txt", i)})
		}
		all = append(all, b.ok(e, err))
	}
	for _, e := range all {
		b.mustSucceed(t, e, nil)
	}
	// Every mutation of a sandbox must end before the next one starts.
	counts := testutil.NoOverlappingMutations(t, b.obs.Snapshot())
	if len(counts) != 10 {
		t.Fatalf("mutations seen on %d sandboxes, want 10", len(counts))
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	if total < 300 {
		t.Fatalf("only %d mutations observed for 300 tasks", total)
	}
	// Every command ran exactly once per project.
	for i := 0; i < 10; i++ {
		var view local.SandboxView
		for _, v := range b.lp.Sandboxes() {
			if v.Name == fmt.Sprintf("excl-%d", i) {
				view = v
			}
		}
		data, err := os.ReadFile(filepath.Join(view.Dir, "log.txt"))
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(data), "\n"); n != 10 {
			t.Errorf("project excl-%d ran %d commands, want 10", i, n)
		}
	}
}

// TestRetriesUnderFaults: with 30% of provider calls failing with 503 and
// 10% with 429 + Retry-After: 1, 200 tasks all succeed.
func TestRetriesUnderFaults(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := b.lp.SetFaults(local.Faults{Seed: 1, Errors: []local.Fault{
		{Rate: 0.3, Status: 503},
		{Rate: 0.1 / 0.7, Status: 429, RetryAfter: time.Second}, // 10% of all calls
	}}); err != nil {
		t.Fatal(err)
	}
	b.startWorker(t, func(c *worker.Config) { c.Concurrency = 20 })
	ctx := t.Context()
	var all []*tasks.Enqueued
	for i := 0; i < 200; i++ {
		p := proj(fmt.Sprintf("faulty-%d", i%20))
		es, err := b.client.WriteFiles(ctx, tasks.FilesWrite{Project: p, Files: []tasks.File{{Path: fmt.Sprintf("%d.txt", i), Content: "x"}}})
		all = append(all, b.ok(es[0], err))
	}
	retried := 0
	for _, e := range all {
		res := b.mustSucceed(t, e, nil)
		retried += res.Retried
	}
	var injected503, injected429 int
	for _, o := range b.obs.Snapshot() {
		if o.Injected && o.Status == 503 {
			injected503++
		}
		if o.Injected && o.Status == 429 {
			injected429++
		}
	}
	if injected503 == 0 || injected429 == 0 {
		t.Fatalf("faults were not injected: 503×%d 429×%d", injected503, injected429)
	}
	t.Logf("200 tasks done; injected 503×%d 429×%d; retries counted against MaxRetry: %d", injected503, injected429, retried)
	if retried > injected503 {
		t.Fatalf("%d counted retries exceed the %d injected 503s: 429s were counted too", retried, injected503)
	}
}

// TestRateLimitsAndBusyDoNotCount: tasks with MaxRetry 1 go through many
// 429s and busy projects and still end with no retry counted, because
// neither counts as a failure. (asynq archives a task whose counted retries
// reached MaxRetry whatever the error, so MaxRetry 0 would archive at the
// first busy project.)
func TestRateLimitsAndBusyDoNotCount(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startWorker(t, func(c *worker.Config) {
		c.Concurrency = 20
		c.Handlers.LeaseWait = 50 * time.Millisecond // make busy projects common
	})
	ctx := t.Context()
	p := proj("limits")
	b.mustSucceed(t, b.ok(b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: p})), nil)
	if err := b.lp.SetFaults(local.Faults{Seed: 2, Errors: []local.Fault{{Rate: 0.4, Status: 429, RetryAfter: time.Second, Scope: local.ScopeDaemon}}}); err != nil {
		t.Fatal(err)
	}
	var all []*tasks.Enqueued
	for i := 0; i < 30; i++ {
		e, err := b.client.RunCommand(ctx, tasks.CommandRun{Project: p, Command: "sleep 0.05"}, asynq.MaxRetry(1))
		all = append(all, b.ok(e, err))
	}
	for _, e := range all {
		res := b.mustSucceed(t, e, nil)
		if res.Retried != 0 {
			t.Errorf("task %s: retried counted %d", e.ID, res.Retried)
		}
	}
	limited := 0
	for _, o := range b.obs.Snapshot() {
		if o.Injected && o.Status == 429 {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("no 429 was injected")
	}
}

// TestPermanentErrorsArchiveAtOnce: a daemon 400 (a path that escapes the
// sandbox through a symlink) archives the task on its first attempt with a
// message naming the cause.
func TestPermanentErrorsArchiveAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startWorker(t, nil)
	ctx := t.Context()
	p := proj("escape")
	outside := t.TempDir()
	b.mustSucceed(t, b.ok(b.client.RunCommand(ctx, tasks.CommandRun{Project: p, Command: "ln -s " + outside + " out"})), nil)
	es, err := b.client.WriteFiles(ctx, tasks.FilesWrite{Project: p, Files: []tasks.File{{Path: "ok.txt", Content: "fine"}, {Path: "out/pwned.txt", Content: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	tf := b.mustFail(t, es[0])
	if !strings.Contains(tf.LastErr, "out/pwned.txt") {
		t.Fatalf("last error %q does not name the path", tf.LastErr)
	}
	st, _ := b.client.Status(ctx, es[0].Queue, es[0].ID)
	if st.Retried != 0 {
		t.Fatalf("retried %d times, want archived at once", st.Retried)
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 0 {
		t.Fatalf("something was written outside the sandbox: %v", entries)
	}
}

func TestWorkflowRunsInOrderAndResumes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	p := proj("flow")
	steps := []tasks.Step{
		mustStep(t, tasks.FilesWrite{Project: p, Files: []tasks.File{{Path: "/app/app.py", Content: appPy}}}),
		mustStep(t, tasks.CommandRun{Project: p, Command: "sleep 3; echo slept > /dev/null", Cwd: "/app"}),
		mustStep(t, tasks.ServerStart{Project: p, Slug: "web", Command: "python3 app.py", Path: "/app"}),
	}
	e := b.ok(b.client.RunWorkflow(ctx, tasks.WorkflowRun{Project: p, Steps: steps}))

	// Worker A runs the workflow until it is inside the second step, then
	// shuts down with a short timeout: asynq hands the task back.
	stopA := b.startWorker(t, func(c *worker.Config) { c.ShutdownTimeout = 100 * time.Millisecond })
	testutil.Eventually(t, "the second step to start", 30*time.Second, func() bool {
		for _, o := range b.obs.Snapshot() {
			if strings.HasSuffix(o.Path, "/run/command") {
				return true
			}
		}
		// The command request is observed only when it ends; look at the
		// checkpoint instead.
		st, err := b.client.Status(ctx, e.Queue, e.ID)
		return err == nil && strings.Contains(string(st.Result), `{"type":"command:run","status":"running"}`)
	})
	stopA()

	b.startWorker(t, nil)
	var wr handlers.WorkflowResult
	b.mustSucceed(t, e, &wr)
	for i, s := range wr.Steps {
		if s.Status != handlers.StepDone {
			t.Fatalf("step %d = %+v", i, s)
		}
	}
	var srv handlers.ServerResult
	if err := jsonUnmarshal(wr.Steps[2].Result, &srv); err != nil || srv.Status != sandboxq.ServerReady {
		t.Fatalf("server step result %s: %v", wr.Steps[2].Result, err)
	}
	if body := get(t, srv.URL); !strings.HasPrefix(body, "hello") {
		t.Fatalf("server answered %q", body)
	}
	batches := 0
	for _, o := range b.obs.Snapshot() {
		if strings.HasSuffix(o.Path, "/files/batch") {
			batches++
		}
	}
	if batches != 1 {
		t.Fatalf("files were written %d times; the finished step was redone", batches)
	}
}

func TestCancelActiveTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startWorker(t, nil)
	ctx := t.Context()
	e := b.ok(b.client.RunCommand(ctx, tasks.CommandRun{Project: proj("cancel"), Command: "sleep 60"}))
	testutil.Eventually(t, "the task to be active", 30*time.Second, func() bool {
		st, err := b.client.Status(ctx, e.Queue, e.ID)
		return err == nil && st.State == tasks.StateActive
	})
	if err := b.client.Cancel(ctx, e.Queue, e.ID); err != nil {
		t.Fatal(err)
	}
	tf := b.mustFail(t, e)
	if !errors.Is(tf, tasks.ErrCancelled) || tf.LastErr != "cancelled" {
		t.Fatalf("cancelled task = %+v", tf)
	}
	st, _ := b.client.Status(ctx, e.Queue, e.ID)
	if st.Retried != 0 {
		t.Fatalf("cancelled task was retried %d times", st.Retried)
	}
}

// TestShutdownLosesNoTask: a worker stopped in the middle of a batch hands
// unfinished tasks back; a second worker completes every one.
func TestShutdownLosesNoTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	var all []*tasks.Enqueued
	for i := 0; i < 60; i++ {
		e, err := b.client.RunCommand(ctx, tasks.CommandRun{Project: proj(fmt.Sprintf("drain-%d", i%6)), Command: "sleep 0.3"})
		all = append(all, b.ok(e, err))
	}
	stopA := b.startWorker(t, func(c *worker.Config) { c.ShutdownTimeout = 200 * time.Millisecond })
	testutil.Eventually(t, "some tasks to complete", 30*time.Second, func() bool {
		n := 0
		for _, e := range all {
			if st, err := b.client.Status(ctx, e.Queue, e.ID); err == nil && st.State == tasks.StateCompleted {
				n++
			}
		}
		return n >= 5
	})
	stopA()
	b.startWorker(t, nil)
	for _, e := range all {
		b.mustSucceed(t, e, nil)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := map[string]worker.Config{
		"Redis is required":   {Gateway: b.gw},
		"Gateway is required": {Redis: b.rdb},
		"Config.Concurrency":  {Redis: b.rdb, Gateway: b.gw, Concurrency: -1},
		"weight":              {Redis: b.rdb, Gateway: b.gw, Queues: map[string]int{"q": 0}},
	}
	for want, cfg := range cases {
		if _, err := worker.New(cfg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(%s): err = %v", want, err)
		}
	}
}

func mustStep(t *testing.T, p tasks.Payload) tasks.Step {
	t.Helper()
	s, err := tasks.NewStep(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	// A zombie (exited, not yet reaped by its parent) is gone too.
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(data))
	return len(fields) > 2 && fields[2] != "Z"
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}
