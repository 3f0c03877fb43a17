package dashboard_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/dashboard"
	"github.com/sandboxq/sandboxq/internal/secret"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/maintenance"
	"github.com/sandboxq/sandboxq/tasks"
)

// enqueueSecrets enqueues tasks whose payloads hold file contents and env
// values, and returns those values and the tasks.
func enqueueSecrets(t *testing.T, b *testBundle) ([]string, []*tasks.Enqueued) {
	t.Helper()
	ctx := t.Context()
	p := proj("shop")
	var out []*tasks.Enqueued
	add := func(e *tasks.Enqueued, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	add(b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: p, Envs: map[string]string{"API_KEY": "SECRET-ENSURE-ENV"}}))
	fs, err := b.client.WriteFiles(ctx, tasks.FilesWrite{Project: p, Files: []tasks.File{
		{Path: "/app/.env.local", Content: "SECRET-FILE-CONTENT"},
		{Path: "/app/big.bin", Content: strings.Repeat("SECRET-BIG-CONTENT ", 5000)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, fs...)
	add(b.client.StartServer(ctx, tasks.ServerStart{Project: p, Slug: "web", Command: "npm run dev", Env: map[string]string{"DB_PASSWORD": "SECRET-SERVER-ENV"}}))
	add(b.client.UpdateEnv(ctx, tasks.EnvUpdate{Project: p, Set: map[string]string{"STRIPE_KEY": "SECRET-ENV-SET"}}))
	add(b.client.RunCommand(ctx, tasks.CommandRun{Project: p, Command: "make seed", Env: map[string]string{"SEED_TOKEN": "SECRET-COMMAND-ENV"}}))
	s1, _ := tasks.NewStep(tasks.FilesWrite{Files: []tasks.File{{Path: "/w.txt", Content: "SECRET-STEP-FILE"}}})
	s2, _ := tasks.NewStep(tasks.EnvUpdate{Set: map[string]string{"STEP_VAR": "SECRET-STEP-ENV"}})
	add(b.client.RunWorkflow(ctx, tasks.WorkflowRun{Project: p, Steps: []tasks.Step{s1, s2}}))
	return []string{"SECRET-ENSURE-ENV", "SECRET-FILE-CONTENT", "SECRET-BIG-CONTENT", "SECRET-SERVER-ENV",
		"SECRET-ENV-SET", "SECRET-COMMAND-ENV", "SECRET-STEP-FILE", "SECRET-STEP-ENV"}, out
}

type queuesResponse struct {
	Queues []struct {
		Queue string `json:"queue"`
		Size  int    `json:"size"`
	} `json:"queues"`
}

type tasksResponse struct {
	Tasks []struct {
		ID      string `json:"id"`
		Type    string `json:"type"`
		Payload string `json:"payload"`
	} `json:"tasks"`
}

func TestAsynqmonListsQueuesAndShowsRedactedPayloads(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	secrets, enqueued := enqueueSecrets(t, b)

	var qs queuesResponse
	b.getJSON(t, "/monitoring/api/queues", nil, &qs)
	sizes := map[string]int{}
	for _, q := range qs.Queues {
		sizes[q.Queue] = q.Size
	}
	if sizes[tasks.QueueCritical] != 1 || sizes[tasks.QueueDefault] != len(enqueued)-1 {
		t.Fatalf("queues %+v, want critical with 1 task and default with %d", qs, len(enqueued)-1)
	}

	var all []string
	for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault} {
		var ts tasksResponse
		b.getJSON(t, "/monitoring/api/queues/"+q+"/pending_tasks", nil, &ts)
		for _, task := range ts.Tasks {
			all = append(all, task.Payload)
		}
	}
	// The single-task view too, for every task.
	for _, e := range enqueued {
		var one struct {
			Payload string `json:"payload"`
		}
		b.getJSON(t, "/monitoring/api/queues/"+e.Queue+"/tasks/"+e.ID, nil, &one)
		all = append(all, one.Payload)
	}
	shown := strings.Join(all, "\n")
	mustNotContain(t, "Asynqmon payloads", shown, secrets...)
	mustContain(t, "Asynqmon payloads", shown,
		`"API_KEY"`, `"DB_PASSWORD"`, `"STRIPE_KEY"`, `"SEED_TOKEN"`, `"STEP_VAR"`, // env names
		`"content": "[19 bytes]"`, `"content": "[95000 bytes]"`, `"content": "[16 bytes]"`, // sizes
		`"path": "/app/big.bin"`, // the compressed payload, decompressed
		"\n  \"name\": \"shop\"", // pretty-printed
	)
}

func TestAsynqmonDeepLinksAndRootPath(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *dashboard.Config) { o.RootPath = "/ops/queues/" })
	if _, err := b.client.EnsureSandbox(t.Context(), tasks.SandboxEnsure{Project: proj("p")}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/ops/queues", "/ops/queues/", "/ops/queues/queues/critical?status=pending", "/ops/queues/servers"} {
		body := b.get(t, path, nil)
		mustContain(t, path, body, `window.FLAG_ROOT_PATH="\/ops\/queues"`, `<script src="/ops/queues/static/js/`, `<div id="root">`)
	}
	var qs queuesResponse
	b.getJSON(t, "/ops/queues/api/queues", nil, &qs)
	if len(qs.Queues) != 1 || qs.Queues[0].Queue != tasks.QueueCritical {
		t.Fatalf("queues %+v", qs)
	}
	if status, _, _ := b.request(t, http.MethodGet, "/monitoring/api/queues", nil); status == http.StatusOK {
		t.Fatal("the default path answers although RootPath moved it")
	}

	for _, bad := range []string{"monitoring", "/metrics", "/api", "/api/x", "/", "/a b"} {
		_, err := dashboard.New(dashboard.Config{Redis: b.rdb, RootPath: bad})
		if err == nil || !strings.Contains(err.Error(), "RootPath") {
			t.Errorf("RootPath %q: err = %v", bad, err)
		}
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *dashboard.Config) { o.Auth = testAuth() })
	protected := []string{"/monitoring/", "/monitoring/api/queues", "/metrics", "/readyz", "/sandboxes", "/api/sandboxes", "/", "/sandboxes/team-a/web"}
	for _, path := range protected {
		for name, auth := range map[string]func(*http.Request){
			"none":           nil,
			"wrong password": basicAuth("ops", "s3cret-pas"),
			"wrong user":     basicAuth("root", "s3cret-pass"),
			"wrong token":    bearer("tok-12345"),
			"token as basic": basicAuth("tok-123456", ""),
			"basic as token": bearer("s3cret-pass"),
		} {
			status, h, body := b.request(t, http.MethodGet, path, auth)
			if status != http.StatusUnauthorized {
				t.Errorf("GET %s with %s credentials: %d, want 401", path, name, status)
				continue
			}
			if got := strings.Join(h.Values("WWW-Authenticate"), ", "); !strings.Contains(got, "Basic realm=") || !strings.Contains(got, "Bearer realm=") {
				t.Errorf("GET %s: WWW-Authenticate %q", path, got)
			}
			mustNotContain(t, "401 body", body, "s3cret-pass", "tok-123456")
		}
		for name, auth := range map[string]func(*http.Request){"basic": basicAuth("ops", "s3cret-pass"), "bearer": bearer("tok-123456")} {
			if status, _, body := b.request(t, http.MethodGet, path, auth); status != http.StatusOK {
				t.Errorf("GET %s with %s auth: %d %s", path, name, status, body)
			}
		}
	}
	// Liveness needs no credentials.
	if status, _, body := b.request(t, http.MethodGet, "/healthz", nil); status != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", status, body)
	}

	// Only a bearer token configured.
	tb := setup(t, func(o *dashboard.Config) { o.Auth = dashboard.Auth{BearerToken: secret.New("only-token")} })
	if status, _, _ := tb.request(t, http.MethodGet, "/metrics", basicAuth("", "only-token")); status != http.StatusUnauthorized {
		t.Errorf("token via basic auth: %d, want 401", status)
	}
	tb.get(t, "/metrics", bearer("only-token"))
}

func TestReadOnly(t *testing.T) {
	t.Parallel()
	for _, readOnly := range []bool{true, false} {
		t.Run(fmt.Sprintf("ReadOnly=%v", readOnly), func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(o *dashboard.Config) {
				if !readOnly {
					o.ReadOnly = ptr(false)
				}
			})
			ctx := t.Context()
			var ids []string
			for _, name := range []string{"a", "b", "c"} {
				e, err := b.client.RunCommand(ctx, tasks.CommandRun{Project: proj(name), Command: "true"})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, e.ID)
			}
			base := "/monitoring/api/queues/" + tasks.QueueDefault
			calls := []struct{ method, path, after string }{
				{http.MethodPost, base + "/pending_tasks/" + ids[0] + ":archive", asynq.TaskStateArchived.String()},
				{http.MethodDelete, base + "/pending_tasks/" + ids[1], "gone"},
				{http.MethodPost, "/monitoring/api/queues/" + tasks.QueueDefault + ":pause", ""},
			}
			for _, c := range calls {
				status, _, body := b.request(t, c.method, c.path, nil)
				if readOnly && status != http.StatusMethodNotAllowed {
					t.Errorf("%s %s: %d %s, want 405", c.method, c.path, status, body)
				}
				if !readOnly && status >= 300 {
					t.Errorf("%s %s: %d %s, want success", c.method, c.path, status, body)
				}
			}
			states := map[string]string{}
			for _, id := range ids {
				info, err := b.insp.GetTaskInfo(tasks.QueueDefault, id)
				switch {
				case errors.Is(err, asynq.ErrTaskNotFound):
					states[id] = "gone"
				case err != nil:
					t.Fatal(err)
				default:
					states[id] = info.State.String()
				}
			}
			want := map[string]string{ids[0]: "pending", ids[1]: "pending", ids[2]: "pending"}
			if !readOnly {
				want = map[string]string{ids[0]: "archived", ids[1]: "gone", ids[2]: "pending"}
			}
			for id, w := range want {
				if states[id] != w {
					t.Errorf("task %s is %s, want %s", id, states[id], w)
				}
			}
			info, err := b.insp.GetQueueInfo(tasks.QueueDefault)
			if err != nil {
				t.Fatal(err)
			}
			if info.Paused == readOnly {
				t.Errorf("queue paused = %v", info.Paused)
			}
			if !readOnly {
				// A write from another site is refused even with writes on.
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.srv.URL+"/monitoring/api/queues/"+tasks.QueueDefault+":resume", nil)
				req.Header.Set("Sec-Fetch-Site", "cross-site")
				resp, err := b.srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("cross-site POST: %d, want 403", resp.StatusCode)
				}
			}
		})
	}
}

func TestCheckListen(t *testing.T) {
	t.Parallel()
	auth := testAuth()
	for _, tc := range []struct {
		addr   string
		auth   dashboard.Auth
		errHas string
	}{
		{"127.0.0.1:8080", dashboard.Auth{}, ""},
		{"localhost:8080", dashboard.Auth{}, ""},
		{"[::1]:8080", dashboard.Auth{}, ""},
		{"127.0.0.2:0", dashboard.Auth{}, ""},
		{"0.0.0.0:8080", dashboard.Auth{}, "without credentials"},
		{":8080", dashboard.Auth{}, "every interface"},
		{"[::]:8080", dashboard.Auth{}, "every interface"},
		{"10.1.2.3:8080", dashboard.Auth{}, "not a loopback address"},
		{"dash.example.com:443", dashboard.Auth{}, "not a loopback address"},
		{"0.0.0.0:8080", auth, ""},
		{"0.0.0.0:8080", dashboard.Auth{BearerToken: secret.New("t")}, ""},
		{"0.0.0.0:8080", dashboard.Auth{Username: "ops"}, "needs a password"},
		{"127.0.0.1:8080", dashboard.Auth{Password: secret.New("p")}, "needs a username"},
		{"127.0.0.1:8080", dashboard.Auth{Username: "a:b", Password: secret.New("p")}, "':'"},
		{"8080", dashboard.Auth{}, "listen address"},
	} {
		err := dashboard.CheckListen(tc.addr, tc.auth)
		switch {
		case tc.errHas == "" && err != nil:
			t.Errorf("CheckListen(%q): %v", tc.addr, err)
		case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
			t.Errorf("CheckListen(%q) = %v, want an error with %q", tc.addr, err, tc.errHas)
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = rdb.Close() })
	_, err := dashboard.New(dashboard.Config{Redis: rdb, ListenAddr: "0.0.0.0:8080"})
	if err == nil || !strings.Contains(err.Error(), "refusing to serve on 0.0.0.0:8080 without credentials") {
		t.Fatalf("New on a public address without auth: %v", err)
	}
	d, err := dashboard.New(dashboard.Config{Redis: rdb, ListenAddr: "0.0.0.0:8080", Auth: auth})
	if err != nil {
		t.Fatalf("New with auth: %v", err)
	}
	_ = d.Close()
}

// requestOn sends r to the dashboard as if it had arrived on local.
func requestOn(d http.Handler, local net.Addr, auth func(*http.Request)) int {
	r := httptest.NewRequest(http.MethodGet, "/api/sandboxes", nil)
	r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, local))
	if auth != nil {
		auth(r)
	}
	w := httptest.NewRecorder()
	d.ServeHTTP(w, r)
	return w.Code
}

func TestNoCredentialsMeansLoopbackOnly(t *testing.T) {
	t.Parallel()
	open := setup(t, nil)
	public := &net.TCPAddr{IP: net.ParseIP("10.0.0.5"), Port: 8080}
	loop := &net.TCPAddr{IP: net.IPv6loopback, Port: 8080}
	if got := requestOn(open.dash, public, nil); got != http.StatusForbidden {
		t.Errorf("no auth, public address: %d, want 403", got)
	}
	if got := requestOn(open.dash, loop, nil); got != http.StatusOK {
		t.Errorf("no auth, loopback: %d, want 200", got)
	}
	closed := setup(t, func(o *dashboard.Config) { o.Auth = testAuth() })
	if got := requestOn(closed.dash, public, nil); got != http.StatusUnauthorized {
		t.Errorf("auth, public address, no credentials: %d, want 401", got)
	}
	if got := requestOn(closed.dash, public, bearer("tok-123456")); got != http.StatusOK {
		t.Errorf("auth, public address, credentials: %d, want 200", got)
	}
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	var workerErr error
	b := setup(t, func(o *dashboard.Config) {
		o.Ready = func(context.Context) error { return workerErr }
	})
	var ok struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	b.getJSON(t, "/readyz", nil, &ok)
	if ok.Status != "ok" || ok.Checks["redis"] != "ok" || ok.Checks["worker"] != "ok" {
		t.Fatalf("readyz = %+v", ok)
	}

	stopped := setup(t, func(o *dashboard.Config) {
		o.Ready = func(context.Context) error { return errors.New("asynq server is not running") }
	})
	status, _, body := stopped.request(t, http.MethodGet, "/readyz", nil)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "asynq server is not running") {
		t.Fatalf("worker down: %d %s", status, body)
	}

	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = down.Close() })
	d, err := dashboard.New(dashboard.Config{Redis: down})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	w := httptest.NewRecorder()
	d.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `"redis": "unreachable`) {
		t.Fatalf("redis down: %d %s", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	d.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("healthz with redis down: %d", w.Code)
	}
}

func TestSchedulesShowInAsynqmon(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	sc, err := maintenance.NewScheduler(maintenance.SchedulerConfig{
		Redis: b.rdb, CleanupIdleTTL: 45 * time.Minute, HeartbeatInterval: time.Second, Logger: b.logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("scheduler: %v", err)
		}
	})
	var got []string
	testutil.Eventually(t, "scheduler entries in Asynqmon", 15*time.Second, func() bool {
		var r struct {
			Entries []struct {
				TaskType    string   `json:"task_type"`
				TaskPayload string   `json:"task_payload"`
				Spec        string   `json:"spec"`
				Options     []string `json:"options"`
			} `json:"entries"`
		}
		b.getJSON(t, "/monitoring/api/scheduler_entries", nil, &r)
		got = got[:0]
		for _, e := range r.Entries {
			got = append(got, e.TaskType+" | "+e.Spec+" | "+strings.Join(strings.Fields(e.TaskPayload), "")+" | "+strings.Join(e.Options, ","))
		}
		slices.Sort(got)
		return len(got) == 2
	})
	// (asynq's Inspector does not parse TaskID back from the stored
	// options, so Asynqmon lists the others.)
	want := []string{
		`maintenance:cleanup | */10 * * * * | {"idle_ttl":"45m0s"} | Queue("maintenance"),MaxRetry(3),Timeout(10m0s),Retention(24h0m0s)`,
		`maintenance:reconcile | */5 * * * * | {} | Queue("maintenance"),MaxRetry(3),Timeout(10m0s),Retention(24h0m0s)`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("entries\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
