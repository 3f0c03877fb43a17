package events

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// TestWaitServerSkipsBadEntries checks that a stream entry that is not an
// event does not end a server wait (schema.Follow's rule).
func TestWaitServerSkipsBadEntries(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	p := tasks.Project{Name: "shop"}
	if err := s.Upsert(ctx, p, "sbx_1", "local"); err != nil {
		t.Fatal(err)
	}
	from, err := schema.LastEventID(ctx, s.rdb, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: schema.EventsKey(p), Values: map[string]any{"junk": "1"}}).Err(); err != nil {
		t.Fatal(err)
	}
	ready, err := s.ServerStatus(ctx, p, "", "web", ServerState{Status: sandboxq.ServerReady, Port: 3})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, id, err := WaitServer(wctx, s.rdb, p, "web", from, func(st ServerState) bool { return st.Status == sandboxq.ServerReady })
	if err != nil || id != ready.ID || st.Port != 3 {
		t.Fatalf("WaitServer = %+v, %q, %v; want the ready event %s", st, id, err, ready.ID)
	}
}
