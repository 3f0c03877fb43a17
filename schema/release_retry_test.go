package schema

import (
	"context"
	"errors"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/internal/redistest"
)

// failReleases fails the first n EVAL/EVALSHA calls of the release script
// with "connection refused", as a client sees a primary that just died.
type failReleases struct{ n atomic.Int32 }

func (f *failReleases) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f *failReleases) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if len(args) > 1 && args[1] == leaseRelease.Hash() && f.n.Add(-1) >= 0 {
			err := &netError{syscall.ECONNREFUSED}
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (f *failReleases) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

type netError struct{ err error }

func (e *netError) Error() string { return e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

// TestHeldReleaseRetriesThroughAnOutage: a release that fails for a few
// attempts (a Redis failover) is retried within its context, so the lease
// does not block its project for a whole TTL.
func TestHeldReleaseRetriesThroughAnOutage(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	fail := &failReleases{}
	fail.n.Store(3)
	rdb.AddHook(fail)
	h, err := Acquire(t.Context(), rdb, "k", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := h.Release(ctx); err != nil {
		t.Fatalf("Release through a 3-attempt outage: %v", err)
	}
	if owner, err := LeaseOwner(t.Context(), rdb, "k"); err != nil || owner != "" {
		t.Fatalf("after Release the lease names %q (%v), want nobody", owner, err)
	}
}

// TestHeldReleaseGivesUpWithItsContext: a release that keeps failing ends
// with the caller's context and returns the last error.
func TestHeldReleaseGivesUpWithItsContext(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	fail := &failReleases{}
	fail.n.Store(1 << 20)
	rdb.AddHook(fail)
	h, err := Acquire(t.Context(), rdb, "k", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := h.Release(ctx); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Release = %v, want the connection error", err)
	}
}
