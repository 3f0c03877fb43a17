package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/sethvargo/go-envconfig"

	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
)

// runMainEnv makes the test binary run the worker's main instead of the
// tests, so that tests can run the real program as a process.
const runMainEnv = "SANDBOXQ_TEST_RUN_WORKER_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	if os.Getenv(servePIDEnv) == "1" {
		os.Exit(servePID())
	}
	redistest.Main(m)
}

func TestStartupErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no api key", map[string]string{}, nil, "COMPUTESDK_API_KEY is not set"},
		{"no api key mentions -dev", map[string]string{}, nil, "-dev"},
		{"bad paths", map[string]string{"COMPUTESDK_API_KEY": "k", "COMPUTESDK_GATEWAY_PATHS": "weird"}, nil, "COMPUTESDK_GATEWAY_PATHS"},
		{"bad queues", map[string]string{"COMPUTESDK_API_KEY": "k", "SANDBOXQ_QUEUES": "a=0"}, nil, "weight must be a positive integer"},
		{"bad log format", map[string]string{"COMPUTESDK_API_KEY": "k", "LOG_FORMAT": "xml"}, nil, "LOG_FORMAT"},
		{"bad duration", map[string]string{"COMPUTESDK_API_KEY": "k", "SANDBOXQ_SHUTDOWN_TIMEOUT": "soon"}, nil, "SANDBOXQ_SHUTDOWN_TIMEOUT"},
		{"unreachable redis", map[string]string{"COMPUTESDK_API_KEY": "k", "REDIS_URL": "redis://127.0.0.1:" + closedPort(t)}, nil, "cannot reach Redis at 127.0.0.1:"},
		{"stray argument", map[string]string{}, []string{"extra"}, "unexpected arguments"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			err := run(t.Context(), tc.args, envconfig.MapLookuper(tc.env), io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error()+stderr.String(), "computesdk_secret") {
				t.Fatal("the key was printed")
			}
		})
	}
}

// TestRunProcessesTasks runs the whole program in-process in -dev mode
// against the test's Redis and checks it processes a task and stops cleanly.
func TestRunProcessesTasks(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	var logs testutil.SyncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-dev"}, envconfig.MapLookuper(map[string]string{
			"REDIS_URL":              db.URL(),
			"DASHBOARD_ADDR":         "127.0.0.1:0",
			"LOG_FORMAT":             "json",
			"SANDBOXQ_LOCAL_API_KEY": "computesdk_secret_for_the_test",
		}), io.Discard, &logs)
	}()
	client := tasks.NewClient(db.Client(t))
	e, err := client.EnsureSandbox(t.Context(), tasks.SandboxEnsure{Project: tasks.Project{Name: "in-process"}})
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer wcancel()
	res, err := client.Wait(wctx, e.Queue, e.ID)
	if err != nil {
		t.Fatalf("wait: %v\nlogs:\n%s", err, logs.String())
	}
	if !strings.Contains(string(res.Result), `"created":true`) {
		t.Fatalf("result %s", res.Result)
	}
	// The dashboard, the sandbox page and the API answer on the address the
	// start-up line names.
	m := regexp.MustCompile(`"dashboard":"(http://127\.0\.0\.1:\d+)/monitoring/"`).FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no dashboard address in the start-up line:\n%s", logs.String())
	}
	for path, want := range map[string]string{
		"/healthz":                            "ok",
		"/monitoring/":                        "<html",
		"/api/sandboxes":                      "in-process",
		"/api/v1/projects/default/in-process": `"sandbox_id"`,
		"/metrics":                            "sandboxq_tasks_processed_total",
	} {
		resp, err := http.Get(m[1] + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, want 200 with %q:\n%.300s", path, resp.StatusCode, want, body)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	out := logs.String()
	for _, want := range []string{`"msg":"sandboxq worker starting"`, `"redis":"` + db.Addr, "local provider"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "computesdk_secret_for_the_test") {
		t.Fatal("the local API key was logged")
	}
}

func TestDevRedisUsesARunningRedis(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb, desc, closeFn, err := devRedis(t.Context(), db.Addr, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	if strings.Contains(desc, "embedded") {
		t.Fatalf("desc = %q, want the running Redis", desc)
	}
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestDevRedisStartsAnEmbeddedOne(t *testing.T) {
	t.Parallel()
	addr := "127.0.0.1:" + closedPort(t)
	var logs testutil.SyncBuffer
	rdb, desc, closeFn, err := devRedis(t.Context(), addr, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	if !strings.Contains(desc, "embedded") || !strings.Contains(logs.String(), "NOT DURABLE") {
		t.Fatalf("desc %q, logs %q", desc, logs.String())
	}
	// asynq works on it: enqueue and process one task.
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: 1, TaskCheckInterval: 20 * time.Millisecond, LogLevel: asynq.FatalLevel})
	got := make(chan string, 1)
	mux := asynq.NewServeMux()
	mux.HandleFunc("t", func(_ context.Context, tk *asynq.Task) error { got <- string(tk.Payload()); return nil })
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if _, err := asynq.NewClientFromRedisClient(rdb).Enqueue(asynq.NewTask("t", []byte("ping"))); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != "ping" {
			t.Fatalf("payload %q", p)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the embedded Redis did not serve asynq")
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	return port
}
