package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// appendEvent writes an event to the project's stream in the format the
// watchers use, and returns its id.
func appendEvent(t *testing.T, rdb redis.UniversalClient, e tasks.Event) string {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	id, err := rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: schema.EventsKey(e.Project()), Values: map[string]any{schema.EventField: string(b)}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestWatchHistory(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.Client(t)
	code := 7
	ev := func(status string) tasks.Event {
		return tasks.Event{Type: tasks.EventServerStatusChanged, Namespace: "default", Name: "shop", SandboxID: "sbx_1",
			Timestamp: time.Now().UTC(), ServerName: "web", Status: status}
	}
	id1 := appendEvent(t, rdb, ev("starting"))
	appendEvent(t, rdb, ev("ready"))
	failed := ev("failed")
	failed.ExitCode = &code
	appendEvent(t, rdb, failed)
	c := cli{redisURL: db.URL()}

	r := c.must(t, exitOK, "watch", "--name", "shop", "--since", "0", "--no-follow", "--json")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(lines), r.stdout)
	}
	var last tasks.Event
	if err := json.Unmarshal([]byte(lines[2]), &last); err != nil || last.Status != "failed" || last.ExitCode == nil || *last.ExitCode != 7 || last.ID == "" {
		t.Fatalf("last line %s: %+v %v", lines[2], last, err)
	}
	r = c.must(t, exitOK, "watch", "--name", "shop", "--since", id1, "--no-follow")
	if strings.Contains(r.stdout, "starting") || !strings.Contains(r.stdout, "ready") || !strings.Contains(r.stdout, "exit code 7") {
		t.Fatalf("human output after %s:\n%s", id1, r.stdout)
	}
	c.must(t, exitUsage, "watch", "--no-follow")
	c.must(t, exitUsage, "watch", "--name", "bad name")
}

func TestWatchFollows(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	rdb := db.Client(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr testutil.SyncBuffer
	env := map[string]string{"REDIS_URL": db.URL()}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"watch", "--namespace", "acme", "--name", "live", "--json"}, func(k string) string { return env[k] }, strings.NewReader(""), &stdout, &stderr)
	}()
	// Events appended while it runs are printed; keep appending until one
	// shows, since the watch may start reading after the first append.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stdout.String(), `"status":"ready"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no event printed; stderr: %s", stderr.String())
		}
		appendEvent(t, rdb, tasks.Event{Type: tasks.EventServerStatusChanged, Namespace: "acme", Name: "live", SandboxID: "sbx_2", Timestamp: time.Now(), ServerName: "web", Status: "ready"})
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d after interrupt", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("watch did not stop")
	}
}
