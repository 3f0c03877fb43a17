package tasks_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// TestClientEventsSkipsBadEntries checks that Client.Events follows the
// stream past an entry that is not an event (schema.Follow's rule) and
// delivers events appended while it waits.
func TestClientEventsSkipsBadEntries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := tasks.Project{Namespace: "default", Name: "shop"}
	add := func(values map[string]any) string {
		t.Helper()
		id, err := b.rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: schema.EventsKey(p), Values: values}).Result()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	event := func(status string) map[string]any {
		raw, _ := json.Marshal(tasks.Event{Type: tasks.EventServerStatusChanged, Namespace: p.Namespace, Name: p.Name, ServerName: "web", Status: status})
		return map[string]any{schema.EventField: string(raw)}
	}
	first := add(event("starting"))
	add(map[string]any{"junk": "1"})
	add(map[string]any{schema.EventField: "{not json"})
	second := add(event("running"))

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	evs, errc := b.client.Events(ctx, p.Namespace, p.Name, "0")
	next := func() tasks.Event {
		t.Helper()
		select {
		case e, ok := <-evs:
			if !ok {
				t.Fatalf("stream ended: %v", <-errc)
			}
			return e
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
		return tasks.Event{}
	}
	if e := next(); e.ID != first || e.Status != "starting" {
		t.Fatalf("first = %+v", e)
	}
	if e := next(); e.ID != second || e.Status != "running" {
		t.Fatalf("second = %+v (a bad entry was not skipped)", e)
	}
	third := add(event("ready"))
	if e := next(); e.ID != third {
		t.Fatalf("third = %+v", e)
	}
	cancel()
	for range evs {
	}
	if err := <-errc; err != nil {
		t.Fatalf("error after cancel: %v", err)
	}
}
