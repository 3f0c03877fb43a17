package events

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

func TestWaitServer(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	p := tasks.Project{Name: "shop"}
	if err := s.Upsert(ctx, p, "sbx_1", "local"); err != nil {
		t.Fatal(err)
	}
	// A ready from before fromID does not count.
	if _, err := s.ServerStatus(ctx, p, "", "web", ServerState{Status: sandboxq.ServerReady}); err != nil {
		t.Fatal(err)
	}
	from, err := schema.LastEventID(ctx, s.rdb, p)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		st   ServerState
		id   string
		seen []string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var seen []string
		st, id, err := WaitServer(ctx, s.rdb, p, "web", from, func(st ServerState) bool {
			seen = append(seen, st.Status)
			return st.Status == sandboxq.ServerReady || st.Status == sandboxq.ServerFailed
		})
		done <- result{st, id, seen, err}
	}()
	for _, st := range []string{sandboxq.ServerStopped, sandboxq.ServerStarting} {
		if _, err := s.ServerStatus(ctx, p, "", "web", ServerState{Status: st}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ServerStatus(ctx, p, "", "api", ServerState{Status: sandboxq.ServerReady}); err != nil {
		t.Fatal(err)
	}
	last, err := s.ServerStatus(ctx, p, "", "web", ServerState{Status: sandboxq.ServerReady, URL: "http://127.0.0.1:1", Port: 1})
	if err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(waitTimeout):
		t.Fatal("WaitServer did not return")
	}
	if r.err != nil || r.id != last.ID || r.st.Port != 1 || !slices.Equal(r.seen, []string{"stopped", "starting", "ready"}) {
		t.Fatalf("WaitServer = %+v", r)
	}

	// Destroyed while waiting.
	from = last.ID
	go func() {
		_, _, err := WaitServer(ctx, s.rdb, p, "web", from, func(ServerState) bool { return false })
		done <- result{err: err}
	}()
	if _, err := s.SandboxStatus(ctx, p, "", tasks.SandboxDestroyed, ""); err != nil {
		t.Fatal(err)
	}
	if r := <-done; !errors.Is(r.err, ErrSandboxDestroyed) {
		t.Fatalf("destroyed: %v", r.err)
	}

	// The caller's deadline.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, _, err := WaitServer(short, s.rdb, p, "web", "$", func(ServerState) bool { return true }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	if _, _, err := WaitServer(ctx, s.rdb, p, "", "0", nil); err == nil {
		t.Fatal("WaitServer without slug accepted")
	}
}

func TestExpediteSetsWaitingKey(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	p := tasks.Project{Name: "shop"}
	if err := Expedite(t.Context(), s.rdb, p, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	ttl, err := s.rdb.PTTL(t.Context(), schema.WaitingKey(p)).Result()
	if err != nil || ttl <= 0 || ttl > 30*time.Second {
		t.Fatalf("waiting key ttl %v, %v", ttl, err)
	}
	if err := Expedite(t.Context(), s.rdb, tasks.Project{Name: "a b"}, time.Second); err == nil {
		t.Fatal("invalid project accepted")
	}
}
