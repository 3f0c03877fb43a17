package schema

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/internal/redistest"
)

// TestAcquireUnlessCancelled: a task with a cancel mark takes nothing; an
// unmarked one takes the lease, which excludes every other task until it
// is released through a pipeline (ReleaseIn).
func TestAcquireUnlessCancelled(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	ctx := t.Context()
	p := sandboxq.Project{Name: "p"}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(MarkCancelled(ctx, rdb, "cancelled", p))
	for _, k := range []string{CancelKey("cancelled"), ProjectCancelKey(p, "cancelled")} {
		if ttl := rdb.TTL(ctx, k).Val(); ttl <= 0 {
			t.Fatalf("mark %s has TTL %v", k, ttl)
		}
	}
	if _, err := AcquireUnlessCancelled(ctx, rdb, p, "cancelled", time.Minute); !errors.Is(err, ErrCancelled) {
		t.Fatalf("marked task: err = %v, want ErrCancelled", err)
	}
	if n := rdb.Exists(ctx, LeaseKey(p)).Val(); n != 0 {
		t.Fatal("a cancelled task took the lease")
	}
	h, err := AcquireUnlessCancelled(ctx, rdb, p, "a", time.Minute)
	must(err)
	if _, err := AcquireUnlessCancelled(ctx, rdb, p, "b", time.Minute); !errors.Is(err, ErrHeld) {
		t.Fatalf("second task: err = %v, want ErrHeld", err)
	}
	if _, err := AcquireUnlessCancelled(ctx, rdb, p, "cancelled", time.Minute); !errors.Is(err, ErrCancelled) {
		t.Fatalf("marked task on a held lease: err = %v, want ErrCancelled", err)
	}
	var after func(context.Context) error
	_, err = rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		pl.Set(ctx, "other", "1", 0)
		after = h.ReleaseIn(ctx, pl)
		return nil
	})
	must(err)
	must(after(ctx))
	if o, _ := LeaseOwner(ctx, rdb, LeaseKey(p)); o != "" {
		t.Fatalf("after ReleaseIn the lease names %q", o)
	}
	if h.Context().Err() == nil {
		t.Fatal("the lease is still renewed after ReleaseIn")
	}
	must(h.Release(ctx)) // a no-op now
	h2, err := AcquireUnlessCancelled(ctx, rdb, p, "b", time.Minute)
	must(err)
	must(h2.Release(ctx))
}

// TestReleaseInRetriesAfterItsPipelineFailed: a release queued on a
// pipeline that failed is retried on its own.
func TestReleaseInRetriesAfterItsPipelineFailed(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	ctx := t.Context()
	h, err := Acquire(ctx, rdb, "k", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var after func(context.Context) error
	_, err = rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		after = h.ReleaseIn(ctx, pl)
		for _, c := range pl.(interface{ Cmds() []redis.Cmder }).Cmds() {
			c.SetErr(&netError{syscall.ECONNREFUSED})
		}
		return errors.New("broken connection")
	})
	if err == nil {
		t.Fatal("the pipeline did not fail")
	}
	if o, _ := LeaseOwner(ctx, rdb, "k"); o != "a" {
		t.Fatalf("owner after the failed pipeline = %q, want a", o)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := after(rctx); err != nil {
		t.Fatal(err)
	}
	if o, _ := LeaseOwner(ctx, rdb, "k"); o != "" {
		t.Fatalf("owner after the retried release = %q, want nobody", o)
	}
}
