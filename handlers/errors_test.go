package handlers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/internal/backoff"
	"github.com/sandboxq/sandboxq/schema"
)

func apiErr(status int, retryAfter time.Duration) error {
	return fmt.Errorf("op: %w", &gateway.APIError{Op: "x", StatusCode: status, Message: "m", RetryAfter: retryAfter})
}

func TestClassify(t *testing.T) {
	t.Parallel()
	for _, status := range []int{400, 401, 403, 404, 409, 413, 422} {
		if err := classify(apiErr(status, 0)); !errors.Is(err, asynq.SkipRetry) {
			t.Errorf("status %d: want permanent, got %v", status, err)
		}
	}
	for _, status := range []int{408, 425, 429, 500, 502, 503, 504} {
		if err := classify(apiErr(status, 0)); errors.Is(err, asynq.SkipRetry) {
			t.Errorf("status %d: want retryable, got permanent", status)
		}
	}
	if classify(nil) != nil {
		t.Error("classify(nil) != nil")
	}
	transport := errors.New("dial tcp: connection refused")
	if errors.Is(classify(transport), asynq.SkipRetry) {
		t.Error("transport error classified permanent")
	}
}

func TestPermanentKeepsMessageAndCause(t *testing.T) {
	t.Parallel()
	base := apiErr(400, 0)
	p := Permanent(base)
	if p.Error() != base.Error() {
		t.Errorf("message changed: %q", p.Error())
	}
	var ae *gateway.APIError
	if !errors.As(p, &ae) || !errors.Is(p, asynq.SkipRetry) {
		t.Error("Permanent lost its cause or SkipRetry")
	}
	if Permanent(p) != p || Permanent(nil) != nil {
		t.Error("Permanent is not idempotent")
	}
	if !errors.Is(ErrCancelled, asynq.SkipRetry) || ErrCancelled.Error() != "cancelled" {
		t.Errorf("ErrCancelled = %v", ErrCancelled)
	}
}

func TestIsFailure(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("x: %w", ErrProjectBusy), false},
		{apiErr(429, time.Second), false},
		{fmt.Errorf("renew: %w", schema.ErrLost), false},
		{apiErr(503, 0), true},
		{errors.New("boom"), true},
		{context.DeadlineExceeded, true},
	}
	for _, c := range cases {
		if got := IsFailure(c.err); got != c.want {
			t.Errorf("IsFailure(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	p.Backoff.Rand = func() float64 { return 1 }
	if d := p.RetryDelay(0, apiErr(503, 0), nil); d != time.Second {
		t.Errorf("first retry = %v, want 1s ceiling", d)
	}
	if d := p.RetryDelay(20, apiErr(503, 0), nil); d != 2*time.Minute {
		t.Errorf("late retry = %v, want the 2m cap", d)
	}
	if d := p.RetryDelay(0, apiErr(429, 7*time.Second), nil); d != 7*time.Second {
		t.Errorf("Retry-After 7s gave %v", d)
	}
	if d := p.RetryDelay(0, apiErr(503, time.Hour), nil); d != 10*time.Minute {
		t.Errorf("Retry-After 1h gave %v, want the 10m cap", d)
	}
	for i := 0; i < 100; i++ {
		d := p.RetryDelay(5, fmt.Errorf("%w", ErrProjectBusy), nil)
		if d < p.BusyDelay/4 || d > p.BusyDelay {
			t.Fatalf("busy delay %v outside [%v, %v]", d, p.BusyDelay/4, p.BusyDelay)
		}
	}
	p.Backoff = backoff.Policy{Base: time.Second, Cap: time.Minute}
	if d := p.RetryDelay(3, errors.New("x"), nil); d < 0 || d > 8*time.Second {
		t.Errorf("jittered delay %v outside [0, 8s]", d)
	}
}

func TestOutcome(t *testing.T) {
	t.Parallel()
	cases := map[string]error{
		OutcomeOK:        nil,
		OutcomeBusy:      fmt.Errorf("w: %w", ErrProjectBusy),
		OutcomeCancelled: ErrCancelled,
		OutcomeFailed:    Permanent(errors.New("bad")),
		OutcomeRetry:     errors.New("flaky"),
	}
	for want, err := range cases {
		if got := Outcome(err); got != want {
			t.Errorf("Outcome(%v) = %s, want %s", err, got, want)
		}
	}
}

func TestCapOutput(t *testing.T) {
	t.Parallel()
	short := "hello"
	if got, cut := capOutput(short); got != short || cut {
		t.Errorf("short output changed: %q %v", got, cut)
	}
	long := strings.Repeat("é", MaxCommandOutput) // 2 bytes per rune
	got, cut := capOutput(long)
	if !cut || len(got) > MaxCommandOutput || !strings.HasPrefix(long, got) || len(got)%2 != 0 {
		t.Errorf("capOutput cut at %d bytes (cut=%v), want ≤ %d on a rune boundary", len(got), cut, MaxCommandOutput)
	}
}
