package main

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/sandboxq/sandboxq/internal/asynqlog"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
)

func TestMain(m *testing.M) {
	redis.SetLogger(quietRedisLogger{})
	redistest.Main(m)
}

// cli is one invocation of run.
type cli struct {
	redisURL string               // REDIS_URL in the environment ("" = unset)
	stdin    string               // standard input
	stderr   *testutil.SyncBuffer // optional: a buffer the test watches while run runs
}

type cliResult struct {
	code           int
	stdout, stderr string
}

func (c cli) run(t *testing.T, args ...string) cliResult {
	t.Helper()
	env := map[string]string{"REDIS_URL": c.redisURL}
	var stdout testutil.SyncBuffer
	stderr := c.stderr
	if stderr == nil {
		stderr = &testutil.SyncBuffer{}
	}
	code := run(t.Context(), args, func(k string) string { return env[k] }, strings.NewReader(c.stdin), &stdout, stderr)
	r := cliResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
	t.Logf("enqueue %s → exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// must runs the CLI and fails the test unless it exits with want.
func (c cli) must(t *testing.T, want int, args ...string) cliResult {
	t.Helper()
	r := c.run(t, args...)
	if r.code != want {
		t.Fatalf("enqueue %s: exit %d, want %d; stderr: %s", strings.Join(args, " "), r.code, want, r.stderr)
	}
	return r
}

// closedPortURL returns a redis:// URL of a loopback port nothing listens
// on.
func closedPortURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "redis://" + addr
}

// pendingTasks returns the pending tasks of queue.
func pendingTasks(t *testing.T, db *redistest.DB, queue string) []*asynq.TaskInfo {
	t.Helper()
	insp := asynq.NewInspectorFromRedisClient(db.Client(t))
	list, err := insp.ListPendingTasks(queue)
	if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
		t.Fatalf("list pending tasks of %s: %v", queue, err)
	}
	return list
}

// onlyPending returns the one pending task of queue and its decoded
// payload.
func onlyPending(t *testing.T, db *redistest.DB, queue string) (*asynq.TaskInfo, tasks.Payload) {
	t.Helper()
	list := pendingTasks(t, db, queue)
	if len(list) != 1 {
		t.Fatalf("queue %s has %d pending tasks, want 1", queue, len(list))
	}
	p, err := tasks.DecodePayload(list[0].Type, list[0].Payload, list[0].Headers)
	if err != nil {
		t.Fatalf("decode payload of %s: %v", list[0].Type, err)
	}
	return list[0], p
}

// decodeOne decodes stdout as exactly one JSON object and returns it.
func decodeOne(t *testing.T, stdout string) map[string]json.RawMessage {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	var m map[string]json.RawMessage
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("stdout is not a JSON object: %v\n%s", err, stdout)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err == nil {
		t.Fatalf("stdout holds more than one JSON value: %s", stdout)
	}
	if rest := stdout[dec.InputOffset():]; strings.TrimSpace(rest) != "" {
		t.Fatalf("stdout has text after the JSON object: %q", rest)
	}
	return m
}

// checkKeys fails unless m has exactly the keys want.
func checkKeys(t *testing.T, m map[string]json.RawMessage, want ...string) {
	t.Helper()
	if len(m) != len(want) {
		t.Errorf("JSON keys: got %d (%v), want %v", len(m), keysOf(m), want)
	}
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON object has no %q key (keys %v)", k, keysOf(m))
		}
	}
}

func keysOf(m map[string]json.RawMessage) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func str(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("%s is not a JSON string: %v", raw, err)
	}
	return s
}

// startWorker runs a real asynq server on db's queues with h as the
// handler of every task type; it is shut down when the test ends.
func startWorker(t *testing.T, db *redistest.DB, h asynq.HandlerFunc) {
	t.Helper()
	srv := asynq.NewServerFromRedisClient(db.Client(t), asynq.Config{
		Queues:            tasks.DefaultQueues,
		Concurrency:       2,
		TaskCheckInterval: 10 * time.Millisecond,
		ShutdownTimeout:   5 * time.Second,
		Logger:            asynqlog.New(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))),
	})
	if err := srv.Start(h); err != nil {
		t.Fatalf("start asynq server: %v", err)
	}
	t.Cleanup(srv.Shutdown)
}
