package dashboard

import (
	"strings"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// TestTimelineShowsEveryAttempt checks a task that failed twice and then
// succeeded: each attempt with its error, merged with an event by time,
// newest first, each task step linking to Asynqmon.
func TestTimelineShowsEveryAttempt(t *testing.T) {
	t.Parallel()
	d := &Dashboard{rootPath: "/monitoring"}
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	rec := tasks.TaskRecord{
		ID: "t1", Queue: "default", Type: "server:start", State: tasks.StateCompleted, EnqueuedAt: t0,
		Attempts: []tasks.Attempt{
			{StartedAt: t0.Add(1 * time.Second), DurationMS: 100, Error: "first error"},
			{StartedAt: t0.Add(3 * time.Second), DurationMS: 100, Error: "second error"},
			{StartedAt: t0.Add(5 * time.Second), DurationMS: 100},
		},
	}
	ev := schema.Event{Type: schema.EventServerStatusChanged, ServerName: "web", Status: "ready", Timestamp: t0.Add(5050 * time.Millisecond)}
	items := d.timeline([]tasks.TaskRecord{rec}, []schema.Event{ev})
	var got []string
	for _, it := range items {
		got = append(got, it.Title+"|"+it.Detail)
		if it.Kind == "task" && it.Link != "/monitoring/queues/default/tasks/t1" {
			t.Errorf("%s links to %q", it.Title, it.Link)
		}
	}
	want := []string{
		"server:start done|3 attempt(s)",
		"server web ready|",
		"server:start attempt 3 started|",
		"server:start attempt 2 failed, retried|second error",
		"server:start attempt 2 started|",
		"server:start attempt 1 failed, retried|first error",
		"server:start attempt 1 started|",
		"server:start enqueued|queue default",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("timeline:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
