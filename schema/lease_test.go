package schema

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

func TestExclusiveAndCompareAndDelete(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	ctx := t.Context()
	if err := TryAcquire(ctx, rdb, "k", "a", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := TryAcquire(ctx, rdb, "k", "b", time.Minute); !errors.Is(err, ErrHeld) {
		t.Fatalf("second owner: err = %v, want ErrHeld", err)
	}
	if err := TryAcquire(ctx, rdb, "k", "a", time.Minute); err != nil {
		t.Fatalf("re-acquire by the owner: %v", err)
	}
	if ok, err := ReleaseLease(ctx, rdb, "k", "", "b"); err != nil || ok {
		t.Fatalf("release by a non-owner = %v, %v; want no-op", ok, err)
	}
	if o, _ := LeaseOwner(ctx, rdb, "k"); o != "a" {
		t.Fatalf("owner = %q, want a", o)
	}
	if ok, err := RenewLease(ctx, rdb, "k", "b", time.Minute); err != nil || ok {
		t.Fatalf("renew by a non-owner = %v, %v", ok, err)
	}
	if ok, err := ReleaseLease(ctx, rdb, "k", "", "a"); err != nil || !ok {
		t.Fatalf("release by the owner = %v, %v", ok, err)
	}
	if o, _ := LeaseOwner(ctx, rdb, "k"); o != "" {
		t.Fatalf("owner after release = %q", o)
	}
	if err := TryAcquire(ctx, rdb, "k", "", time.Minute); err == nil {
		t.Fatal("empty owner accepted")
	}
	if err := TryAcquire(ctx, rdb, "k", "a", 0); err == nil {
		t.Fatal("zero ttl accepted")
	}
}

func TestHeldOutlivesItsTTL(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	ttl := 150 * time.Millisecond
	h, err := Acquire(t.Context(), rdb, "held", "a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	// Several TTLs later the lease is still ours, because it is renewed.
	timer := time.NewTimer(5 * ttl)
	select {
	case <-h.Context().Done():
		t.Fatalf("lease lost: %v", context.Cause(h.Context()))
	case <-timer.C:
	}
	if o, _ := LeaseOwner(t.Context(), rdb, "held"); o != "a" {
		t.Fatalf("owner = %q after 5 TTLs, want a", o)
	}
	if err := h.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(t.Context()); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if h.Lost() {
		t.Fatal("released lease reported lost")
	}
	if o, _ := LeaseOwner(t.Context(), rdb, "held"); o != "" {
		t.Fatalf("owner after release = %q", o)
	}
}

func TestHeldReportsLoss(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	h, err := Acquire(t.Context(), rdb, "stolen", "a", 150*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(context.Background())
	// Someone else takes the key (as if ours had expired).
	if err := rdb.Set(t.Context(), "stolen", "b", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("loss not noticed")
	}
	if !h.Lost() || !errors.Is(context.Cause(h.Context()), ErrLost) {
		t.Fatalf("cause = %v, want ErrLost", context.Cause(h.Context()))
	}
	if err := h.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if o, _ := LeaseOwner(t.Context(), rdb, "stolen"); o != "b" {
		t.Fatalf("releasing a lost lease deleted the new owner's key (owner %q)", o)
	}
}
