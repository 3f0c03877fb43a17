package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/maintenance"
	"github.com/sandboxq/sandboxq/tasks"
)

// TestTopologies runs the same behaviour on standalone Redis, a Redis
// Cluster (3 primaries, 1 replica each) and a Sentinel-managed primary: the
// README quick start flow, ensure dedup, per-project exclusion across three
// worker processes, the HTTP API, Asynqmon, the scheduler, cancel and
// watcher takeover. Each topology starts once; its behaviours run one after
// another on an emptied topology.
func TestTopologies(t *testing.T) {
	t.Parallel()
	behaviours := []struct {
		name string
		run  func(*testing.T, *topology)
	}{
		{"quickstart", quickStartFlow},
		{"dedup", ensureDedup},
		{"exclusion", exclusionAcrossProcesses},
		{"api", httpAPI},
		{"asynqmon", asynqmonQueues},
		{"scheduler", schedulerOncePerSlot},
		{"cancel", cancelRunning},
		{"notice", waitHearsNotice},
		{"watchers", watcherTakeover},
		{"scripts", luaScripts},
	}
	for _, name := range []string{"standalone", "cluster", "sentinel"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tp := startTopology(t, name)
			for _, b := range behaviours {
				t.Run(b.name, func(t *testing.T) {
					tp.fresh(t)
					b.run(t, tp)
				})
			}
		})
	}
}

func waitDone(t *testing.T, client *tasks.Client, e *tasks.Enqueued, v any) *tasks.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	res, err := client.Wait(ctx, e.Queue, e.ID)
	if err != nil {
		t.Fatalf("task %s %s: %v", e.Type, e.ID, err)
	}
	if v != nil {
		if err := json.Unmarshal(res.Result, v); err != nil {
			t.Fatalf("task %s result %s: %v", e.ID, res.Result, err)
		}
	}
	return res
}

// quickStartFlow: ensure, write a small HTTP app, start it and fetch its
// URL, destroy; through tasks.Client and a worker.
func quickStartFlow(t *testing.T, tp *topology) {
	_, gw, _ := localProvider(t)
	runWorker(t, tp.rdb, gw, nil)
	client := tasks.NewClient(tp.rdb)
	ctx := t.Context()
	p := tasks.Project{Namespace: "topo", Name: "quick"}
	e, err := client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: p})
	if err != nil {
		t.Fatal(err)
	}
	var ensured struct {
		SandboxID string `json:"sandbox_id"`
		Created   bool   `json:"created"`
	}
	waitDone(t, client, e, &ensured)
	if ensured.SandboxID == "" || !ensured.Created {
		t.Fatalf("ensure result %+v", ensured)
	}
	app := `import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"hello from ` + tp.name + `\n")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`
	es, err := client.WriteFiles(ctx, tasks.FilesWrite{Project: p, Files: []tasks.File{{Path: "/app/server.py", Content: app}}})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, client, es[0], nil)
	e, err = client.StartServer(ctx, tasks.ServerStart{Project: p, Slug: "web", Command: "python3 server.py", Path: "/app"})
	if err != nil {
		t.Fatal(err)
	}
	var started struct{ Status, URL string }
	waitDone(t, client, e, &started)
	if started.Status != "ready" || started.URL == "" {
		t.Fatalf("server:start result %+v", started)
	}
	resp, err := http.Get(started.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from "+tp.name+"\n" {
		t.Fatalf("server answered %q", body)
	}
	e, err = client.DestroySandbox(ctx, tasks.SandboxDestroy{Project: p})
	if err != nil {
		t.Fatal(err)
	}
	var destroyed struct{ Destroyed bool }
	if waitDone(t, client, e, &destroyed); !destroyed.Destroyed {
		t.Fatal("destroy result: not destroyed")
	}
	if _, err := http.Get(started.URL); err == nil {
		t.Fatalf("%s still answers after destroy", started.URL)
	}
}

// ensureDedup: 50 concurrent sandbox:ensure of one project make one task.
func ensureDedup(t *testing.T, tp *topology) {
	client := tasks.NewClient(tp.rdb)
	p := tasks.Project{Namespace: "topo", Name: "dedup"}
	ids := make([]*tasks.Enqueued, 50)
	errs := make([]error, 50)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() { ids[i], errs[i] = client.EnsureSandbox(t.Context(), tasks.SandboxEnsure{Project: p}) })
	}
	wg.Wait()
	created := 0
	for i, e := range ids {
		if errs[i] != nil {
			t.Fatalf("enqueue %d: %v", i, errs[i])
		}
		if e.ID != ids[0].ID {
			t.Fatalf("enqueue %d got task %s, enqueue 0 got %s", i, e.ID, ids[0].ID)
		}
		if !e.Duplicate {
			created++
		}
	}
	q, err := asynq.NewInspectorFromRedisClient(tp.rdb).GetQueueInfo(tasks.QueueCritical)
	if err != nil {
		t.Fatal(err)
	}
	if created != 1 || q.Size != 1 {
		t.Fatalf("%d enqueues not duplicate, queue holds %d; want 1 and 1", created, q.Size)
	}
}

// exclusionAcrossProcesses: 90 mutating tasks over 6 projects, three
// cmd/worker processes; the provider sees no two mutations of one sandbox
// overlap, and every task completes.
func exclusionAcrossProcesses(t *testing.T, tp *topology) {
	lp, _, rec := localProvider(t)
	env := workerEnv(tp, lp)
	for range 3 {
		startWorker(t, env)
	}
	client := tasks.NewClient(tp.rdb)
	all := enqueueMutations(t, client, "topo", "x", 90, 6)
	waitAll(t, client, all)
	if counts := testutil.NoOverlappingMutations(t, rec.Snapshot()); len(counts) != 6 {
		t.Fatalf("mutations on %d sandboxes, want 6", len(counts))
	}
}

// httpAPI: enqueue, Idempotency-Key replay, long-poll to completion, and an
// SSE stream resumed with Last-Event-ID.
func httpAPI(t *testing.T, tp *topology) {
	_, gw, _ := localProvider(t)
	w := runWorker(t, tp.rdb, gw, nil)
	srv := httptest.NewServer(w.Handler())
	t.Cleanup(srv.Close)
	post := func() (int, map[string]any, http.Header) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/tasks/sandbox:ensure",
			strings.NewReader(`{"namespace":"topo","name":"api"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "ensure-api-1")
		return doJSON(t, req)
	}
	code, first, _ := post()
	if code != http.StatusAccepted || first["id"] == "" {
		t.Fatalf("enqueue: %d %v", code, first)
	}
	code, again, h := post()
	if code != http.StatusAccepted || again["id"] != first["id"] || h.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %v %v; want the first answer replayed", code, again, h)
	}
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/v1/tasks/%s/%s?wait=60s", srv.URL, first["queue"], first["id"]), nil)
	if code, st, _ := doJSON(t, req); code != http.StatusOK || st["state"] != tasks.StateCompleted {
		t.Fatalf("long-poll: %d %v", code, st)
	}
	evs := readSSE(t, srv.URL+"/api/v1/projects/topo/api/events?from=0", "", 2)
	resumed := readSSE(t, srv.URL+"/api/v1/projects/topo/api/events", evs[0].id, 1)
	if resumed[0].id != evs[1].id {
		t.Fatalf("resumed after %s at %s, want %s", evs[0].id, resumed[0].id, evs[1].id)
	}
}

func doJSON(t *testing.T, req *http.Request) (int, map[string]any, http.Header) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: %d, body not JSON: %v", req.Method, req.URL, resp.StatusCode, err)
	}
	return resp.StatusCode, out, resp.Header
}

type sseEvent struct{ id, typ string }

// readSSE reads n events from an SSE stream (resumed after lastID when set).
func readSSE(t *testing.T, url, lastID string, n int) []sseEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(resp.Body)
	for len(out) < n && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			cur.typ = strings.TrimPrefix(line, "event: ")
		case line == "" && cur.id != "":
			out = append(out, cur)
			cur = sseEvent{}
		}
	}
	if len(out) < n {
		t.Fatalf("SSE %s: %d events, want %d (%v)", url, len(out), n, sc.Err())
	}
	return out
}

// asynqmonQueues: Asynqmon, mounted by the worker, lists both queues with
// their sizes.
func asynqmonQueues(t *testing.T, tp *topology) {
	_, gw, _ := localProvider(t)
	client := tasks.NewClient(tp.rdb)
	if _, err := client.EnsureSandbox(t.Context(), tasks.SandboxEnsure{Project: tasks.Project{Namespace: "topo", Name: "mon"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.RunCommand(t.Context(), tasks.CommandRun{Project: tasks.Project{Namespace: "topo", Name: "mon"}, Command: "true"}); err != nil {
		t.Fatal(err)
	}
	// A worker that processes nothing (its queues are paused) but serves
	// Asynqmon.
	insp := asynq.NewInspectorFromRedisClient(tp.rdb)
	for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault} {
		if err := insp.PauseQueue(q); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = insp.UnpauseQueue(q) })
	}
	w := runWorker(t, tp.rdb, gw, nil)
	srv := httptest.NewServer(w.Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/monitoring/api/queues")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var qs struct {
		Queues []struct {
			Queue string `json:"queue"`
			Size  int    `json:"size"`
		} `json:"queues"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&qs); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET queues: %d %v", resp.StatusCode, err)
	}
	sizes := map[string]int{}
	for _, q := range qs.Queues {
		sizes[q.Queue] = q.Size
	}
	if sizes[tasks.QueueCritical] != 1 || sizes[tasks.QueueDefault] != 1 {
		t.Fatalf("Asynqmon queues %+v, want critical and default with 1 task each", qs.Queues)
	}
}

// schedulerOncePerSlot: three schedulers firing every second enqueue each
// slot of each schedule once.
func schedulerOncePerSlot(t *testing.T, tp *topology) {
	var mu sync.Mutex
	enq := map[string]map[int64]int{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for range 3 {
		s, err := maintenance.NewScheduler(maintenance.SchedulerConfig{
			Redis: tp.rdb, CleanupSpec: "@every 1s", ReconcileSpec: "@every 1s", HeartbeatInterval: time.Second,
			OnFire: func(f maintenance.Fire) {
				mu.Lock()
				defer mu.Unlock()
				if f.Err != nil {
					t.Errorf("%s slot %v: %v", f.Type, f.Slot, f.Err)
				}
				if enq[f.Type] == nil {
					enq[f.Type] = map[int64]int{}
				}
				if f.Enqueued {
					enq[f.Type][f.Slot.UnixMilli()]++
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := s.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("scheduler: %v", err)
			}
		})
	}
	testutil.Eventually(t, "4 slots of each schedule enqueued", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(enq[tasks.TypeMaintenanceCleanup]) >= 4 && len(enq[tasks.TypeMaintenanceReconcile]) >= 4
	})
	cancel()
	wg.Wait()
	for typ, slots := range enq {
		for slot, n := range slots {
			if n != 1 {
				t.Errorf("%s slot %d enqueued %d times", typ, slot, n)
			}
		}
	}
}

// waitHearsNotice: the worker's end-of-attempt notice (published in the
// attempt's pipeline, keyless, which a Cluster pipeline routes apart) wakes
// Wait on every topology. The Client's fallback poll is an hour, and its
// subscription is up (the ensure's Wait opened it) before the command is
// even picked up, so only the notice can end the second Wait in time.
func waitHearsNotice(t *testing.T, tp *topology) {
	_, gw, _ := localProvider(t)
	runWorker(t, tp.rdb, gw, nil)
	client := tasks.NewClient(tp.rdb, tasks.WithWaitPoll(time.Hour))
	t.Cleanup(func() { _ = client.Close() })
	p := tasks.Project{Namespace: "topo", Name: "notice"}
	e, err := client.EnsureSandbox(t.Context(), tasks.SandboxEnsure{Project: p})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, client, e, nil)
	e, err = client.RunCommand(t.Context(), tasks.CommandRun{Project: p, Command: "echo noticed"})
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Stdout string `json:"stdout"`
	}
	if waitDone(t, client, e, &out); !strings.Contains(out.Stdout, "noticed") {
		t.Fatalf("command result %+v", out)
	}
}

// cancelRunning: Cancel stops a running task for good.
func cancelRunning(t *testing.T, tp *topology) {
	_, gw, _ := localProvider(t)
	runWorker(t, tp.rdb, gw, nil)
	client := tasks.NewClient(tp.rdb)
	e, err := client.RunCommand(t.Context(), tasks.CommandRun{Project: tasks.Project{Namespace: "topo", Name: "cancel"}, Command: "sleep 60"})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the task to run", 60*time.Second, func() bool {
		st, err := client.Status(t.Context(), e.Queue, e.ID)
		return err == nil && st.State == tasks.StateActive
	})
	if err := client.Cancel(t.Context(), e.Queue, e.ID); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, err := client.Wait(ctx, e.Queue, e.ID)
	if res == nil || res.State != tasks.StateArchived || !res.Cancelled {
		t.Fatalf("after cancel: %+v, %v; want archived and cancelled", res, err)
	}
}
