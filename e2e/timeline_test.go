package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
)

// timelineEnv is a worker process (with its HTTP API) over a local
// provider run by the test, a Go client, and what the CLI needs.
type timelineEnv struct {
	lp     *local.Provider
	env    map[string]string // the worker's (and the CLI's) environment
	client *tasks.Client
	api    string // http://127.0.0.1:port
	token  string
}

func startTimeline(t *testing.T) *timelineEnv {
	t.Helper()
	db := redistest.New(t)
	lp, env := provider(t, db, nil)
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	env["API_TOKENS"] = hex.EncodeToString(tok)
	w := startWorker(t, env)
	m := regexp.MustCompile(`"dashboard":"(http://127\.0\.0\.1:\d+)/`).FindStringSubmatch(w.Logs())
	if m == nil {
		t.Fatalf("no HTTP address in the worker's start-up line:\n%s", w.Logs())
	}
	return &timelineEnv{lp: lp, env: env, client: tasks.NewClient(db.Client(t)), api: m[1], token: env["API_TOKENS"]}
}

// cli runs cmd/enqueue with the worker's environment and returns its exit
// code and stdout.
func (e *timelineEnv) cli(t *testing.T, ctx context.Context, args ...string) (int, string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "enqueue"), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range e.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("enqueue %v: %v", args, err)
	}
	if code != 0 {
		t.Logf("enqueue %v exited %d; stderr:\n%s", args, code, stderr.String())
	}
	return code, stdout.String()
}

// call makes an authenticated API request and decodes the JSON answer.
func (e *timelineEnv) call(t *testing.T, method, path, body string, want int, v any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.api+"/api/v1"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: HTTP %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// TestFailedServerLogs: a server that writes "boom" (and the value of one
// of its env variables) to stderr and exits 2. The task's result, the
// failed event, `enqueue logs` and the logs route all show "boom"; the env
// value is masked in the result and the event.
func TestFailedServerLogs(t *testing.T) {
	t.Parallel()
	e := startTimeline(t)
	ctx, cancel := ctxTimeout(t, 2*time.Minute)
	defer cancel()
	p := tasks.Project{Namespace: "tl", Name: "crash"}
	ens, err := e.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: p})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Wait(ctx, ens.Queue, ens.ID); err != nil {
		t.Fatal(err)
	}
	st, err := e.client.StartServer(ctx, tasks.ServerStart{
		Project: p, Slug: "web", Command: `echo "boom $SECRET_WORD" >&2; exit 2`,
		Env: map[string]string{"SECRET_WORD": "hush-hush-value"},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.client.Wait(ctx, st.Queue, st.ID)
	if _, ok := errors.AsType[*tasks.TaskFailedError](err); !ok {
		t.Fatalf("server:start: want it archived, got %v (%+v)", err, res)
	}
	var sr struct{ Status, Logs string }
	if err := json.Unmarshal(res.Result, &sr); err != nil {
		t.Fatal(err)
	}
	if sr.Status != "failed" || !strings.Contains(sr.Logs, "boom [redacted]") || strings.Contains(sr.Logs, "hush-hush") {
		t.Errorf("result %s: want status failed and logs with the masked boom line", res.Result)
	}

	var failed *tasks.Event
	testutil.Eventually(t, "the failed event", 30*time.Second, func() bool {
		evs, err := e.client.ReadEvents(ctx, p, "0", 100)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(evs, func(ev tasks.Event) bool { return ev.ServerName == "web" && ev.Status == "failed" })
		if i >= 0 {
			failed = &evs[i]
		}
		return failed != nil
	})
	if !strings.Contains(failed.Logs, "boom [redacted]") || strings.Contains(failed.Logs, "hush-hush") {
		t.Errorf("failed event logs %q: want the masked boom line", failed.Logs)
	}

	code, out := e.cli(t, ctx, "logs", "--namespace", "tl", "--name", "crash", "--slug", "web")
	if code != 0 || !strings.Contains(out, "boom") {
		t.Errorf("enqueue logs: exit %d, stdout %q", code, out)
	}
	var lv struct{ Slug, Logs string }
	e.call(t, http.MethodGet, "/projects/tl/crash/servers/web/logs?tail=5", "", http.StatusOK, &lv)
	if lv.Slug != "web" || !strings.Contains(lv.Logs, "boom") {
		t.Errorf("logs route: %+v", lv)
	}
	e.call(t, http.MethodGet, "/projects/tl/crash/servers/web/logs?tail=0", "", http.StatusBadRequest, nil)
	e.call(t, http.MethodGet, "/projects/tl/crash/servers/nope/logs", "", http.StatusNotFound, nil)
}

// TestProjectTimeline: tasks for two projects through the Go client, the
// CLI and the API, one of which fails twice (the daemon answers 503) and
// then succeeds. `enqueue list` and the tasks route list exactly the
// project's tasks, the retried one with three attempts and both errors;
// the task read has the attempts too; retry re-runs an archived task.
func TestProjectTimeline(t *testing.T) {
	t.Parallel()
	e := startTimeline(t)
	ctx, cancel := ctxTimeout(t, 3*time.Minute)
	defer cancel()
	a, b := tasks.Project{Namespace: "tl", Name: "alpha"}, tasks.Project{Namespace: "tl", Name: "beta"}
	want := map[tasks.Project][]string{} // task ids per project
	add := func(p tasks.Project) func(*tasks.Enqueued, error) *tasks.Enqueued {
		return func(en *tasks.Enqueued, err error) *tasks.Enqueued {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.client.Wait(ctx, en.Queue, en.ID); err != nil {
				t.Fatalf("%s %s: %v", en.Type, en.ID, err)
			}
			want[p] = append(want[p], en.ID)
			return en
		}
	}
	for _, p := range []tasks.Project{a, b} {
		add(p)(e.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: p}))
		add(p)(e.client.RunCommand(ctx, tasks.CommandRun{Project: p, Command: "echo go-" + p.Name}))
		code, out := e.cli(t, ctx, "run", "--namespace", p.Namespace, "--name", p.Name, "--command", "echo cli", "--wait", "--json")
		var o tasks.Enqueued
		if code != 0 || json.Unmarshal([]byte(out), &o) != nil {
			t.Fatalf("enqueue run: exit %d, %s", code, out)
		}
		want[p] = append(want[p], o.ID)
		var en tasks.Enqueued
		e.call(t, http.MethodPost, "/tasks/command:run", `{"namespace":"tl","name":"`+p.Name+`","command":"echo api"}`, http.StatusAccepted, &en)
		add(p)(&en, nil)
	}

	// The flaky task: every daemon request fails until it has failed twice.
	// The 503s carry Retry-After: 2s, which the worker honours, so the
	// faults are off well before the third attempt.
	fault := local.Fault{Rate: 1, Status: http.StatusServiceUnavailable, Scope: local.ScopeDaemon, RetryAfter: 2 * time.Second}
	if err := e.lp.SetFaults(local.Faults{Errors: []local.Fault{fault}}); err != nil {
		t.Fatal(err)
	}
	flaky, err := e.client.RunCommand(ctx, tasks.CommandRun{Project: a, Command: "echo third time"})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "two failed attempts", time.Minute, func() bool {
		r, err := e.client.Status(ctx, flaky.Queue, flaky.ID)
		return err == nil && r.Retried >= 2
	})
	if err := e.lp.SetFaults(local.Faults{}); err != nil {
		t.Fatal(err)
	}
	add(a)(flaky, nil)

	// An archived task, retried from the API and from the CLI.
	bad := add(b)(e.client.RunCommand(ctx, tasks.CommandRun{Project: b, Command: "echo fine"}))
	e.call(t, http.MethodPost, "/tasks/"+bad.Queue+"/"+bad.ID+"/retry", "", http.StatusConflict, nil)
	failing, err := e.client.RunCommand(ctx, tasks.CommandRun{Project: b, Command: "exit 7"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Wait(ctx, failing.Queue, failing.ID); err == nil {
		t.Fatal("exit 7 completed")
	}
	want[b] = append(want[b], failing.ID)
	var again tasks.Enqueued
	e.call(t, http.MethodPost, "/tasks/"+failing.Queue+"/"+failing.ID+"/retry", "", http.StatusAccepted, &again)
	if again.ID == failing.ID || again.Type != tasks.TypeCommandRun || again.Duplicate {
		t.Errorf("retry answer %+v", again)
	}
	want[b] = append(want[b], again.ID)
	code, out := e.cli(t, ctx, "retry", failing.ID, "--json")
	var cliAgain tasks.Enqueued
	if code != 0 || json.Unmarshal([]byte(out), &cliAgain) != nil || cliAgain.ID == "" || cliAgain.ID == again.ID {
		t.Fatalf("enqueue retry: exit %d, %s", code, out)
	}
	want[b] = append(want[b], cliAgain.ID)

	for _, p := range []tasks.Project{a, b} {
		var view struct{ Tasks []tasks.TaskRecord }
		e.call(t, http.MethodGet, "/projects/tl/"+p.Name+"/tasks?limit=100", "", http.StatusOK, &view)
		checkTimeline(t, "tasks route of "+p.Name, view.Tasks, want[p])
		code, out := e.cli(t, ctx, "list", "--namespace", "tl", "--name", p.Name, "--json")
		var listed struct{ Tasks []tasks.TaskRecord }
		if code != 0 || json.Unmarshal([]byte(out), &listed) != nil {
			t.Fatalf("enqueue list: exit %d, %s", code, out)
		}
		checkTimeline(t, "enqueue list of "+p.Name, listed.Tasks, want[p])
		if p == a {
			checkFlaky(t, listed.Tasks, flaky.ID)
		}
	}
	code, out = e.cli(t, ctx, "list", "--namespace", "tl", "--name", "alpha")
	if code != 0 || !strings.Contains(out, flaky.ID) || strings.Count(out, "error: ") != 2 {
		t.Errorf("enqueue list (text): exit %d:\n%s", code, out)
	}
	var archived struct{ Tasks []tasks.TaskRecord }
	e.call(t, http.MethodGet, "/projects/tl/beta/tasks?state=archived", "", http.StatusOK, &archived)
	if len(archived.Tasks) == 0 || slices.ContainsFunc(archived.Tasks, func(r tasks.TaskRecord) bool { return r.State != "archived" }) {
		t.Errorf("state=archived gave %+v", archived.Tasks)
	}
	e.call(t, http.MethodGet, "/projects/tl/beta/tasks?state=nope", "", http.StatusBadRequest, nil)

	var read struct{ Attempts []tasks.Attempt }
	e.call(t, http.MethodGet, "/tasks/"+flaky.Queue+"/"+flaky.ID, "", http.StatusOK, &read)
	if len(read.Attempts) != 3 {
		t.Errorf("task read: %d attempts, want 3: %+v", len(read.Attempts), read.Attempts)
	}
}

// checkTimeline wants exactly the ids of want (in any order: tasks
// enqueued in the same millisecond tie), newest first.
func checkTimeline(t *testing.T, what string, got []tasks.TaskRecord, want []string) {
	t.Helper()
	var ids []string
	for i, r := range got {
		ids = append(ids, r.ID)
		if i > 0 && r.EnqueuedAt.After(got[i-1].EnqueuedAt) {
			t.Errorf("%s: not newest first at %d", what, i)
		}
	}
	if !sameSet(ids, want) {
		t.Errorf("%s: ids %v, want %v", what, ids, want)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// checkFlaky wants the flaky task completed after three attempts, the
// first two with an error.
func checkFlaky(t *testing.T, recs []tasks.TaskRecord, id string) {
	t.Helper()
	i := slices.IndexFunc(recs, func(r tasks.TaskRecord) bool { return r.ID == id })
	if i < 0 {
		t.Fatalf("flaky task %s not listed", id)
	}
	r := recs[i]
	if r.State != "completed" || len(r.Attempts) != 3 {
		t.Fatalf("flaky task: state %s, %d attempts: %+v", r.State, len(r.Attempts), r.Attempts)
	}
	for n, at := range r.Attempts {
		if (n < 2) != (at.Error != "") || at.StartedAt.IsZero() {
			t.Errorf("attempt %d: %+v", n+1, at)
		}
		if n > 0 && at.StartedAt.Before(r.Attempts[n-1].StartedAt) {
			t.Errorf("attempts out of order: %+v", r.Attempts)
		}
	}
	if !strings.Contains(r.Attempts[0].Error, "503") {
		t.Errorf("first error %q does not name the 503", r.Attempts[0].Error)
	}
}
