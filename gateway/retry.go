package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/sandboxq/sandboxq/internal/backoff"
)

// Defaults of the in-call retry of idempotent reads (DESIGN.md §5).
const (
	DefaultReadRetries    = 2
	DefaultReadRetryBase  = 150 * time.Millisecond
	DefaultReadRetryTotal = 2 * time.Second
)

// readRetry is how an idempotent read retries inside one call.
type readRetry struct {
	retries int           // extra requests after the first
	base    time.Duration // ceiling of the first wait; doubles per retry
	total   time.Duration // no retry starts later than this after the first request
	// sleep waits d or until ctx ends; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
}

func defaultReadRetry() readRetry {
	return readRetry{retries: DefaultReadRetries, base: DefaultReadRetryBase, total: DefaultReadRetryTotal, sleep: backoff.Sleep}
}

// WithReadRetry sets how the idempotent reads (Find, FindOrCreate,
// Daemon.GetServer, Daemon.ListServers, Daemon.Health) retry inside one
// call on a transport error, 502, 503 or 504: at most retries more
// requests, the n-th after a wait drawn from [w/2, w] with w = base·2ⁿ⁻¹,
// and none that would start later than total after the first request.
// Defaults 2, 150 ms, 2 s. retries 0 turns the retry off.
func WithReadRetry(retries int, base, total time.Duration) Option {
	return func(c *Client) error {
		switch {
		case retries < 0 || retries > 10:
			return fmt.Errorf("WithReadRetry: retries must be between 0 and 10, got %d", retries)
		case retries > 0 && base <= 0:
			return fmt.Errorf("WithReadRetry: base wait must be positive, got %v", base)
		case retries > 0 && total < base:
			return fmt.Errorf("WithReadRetry: total %v is below the base wait %v", total, base)
		}
		c.t.read.retries, c.t.read.base, c.t.read.total = retries, base, total
		return nil
	}
}

// retryableRead reports whether a read that failed with err may be sent
// again at once: a transport error (not the caller's cancellation, which
// do reports as ctx.Err()) or a 502, 503 or 504. A 429, a 500 and the
// other statuses are left to the task's own retry.
func retryableRead(err error) bool {
	if te, ok := errors.AsType[*transportError](err); ok {
		return te.retryable()
	}
	if ae, ok := errors.AsType[*APIError](err); ok {
		switch ae.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
	}
	return false
}

// wait returns the wait before retry n (1-based): full-range jitter in
// the upper half of base·2ⁿ⁻¹.
func (rr readRetry) wait(n int) time.Duration {
	w := rr.base << (n - 1)
	half := w / 2
	return half + rand.N(w-half+1)
}

// doRead sends an idempotent request, retrying it as readRetry says. The
// caller's cancellation ends it at once and is returned as such.
func (t *transport) doRead(ctx context.Context, r *request, try func() (*response, error)) (*response, error) {
	start := time.Now()
	var waited time.Duration // the waits so far: a lower bound of the time spent, whatever sleep does
	for n := 1; ; n++ {
		resp, err := try()
		if err == nil || n > t.read.retries || !retryableRead(err) || ctx.Err() != nil {
			return resp, err
		}
		d := t.read.wait(n)
		if max(time.Since(start), waited)+d > t.read.total {
			return nil, err
		}
		waited += d
		t.logger.DebugContext(ctx, "gateway read retry",
			slog.String("op", r.op), slog.Int("retry", n), slog.Duration("wait", d), slog.String("err", err.Error()))
		if serr := t.read.sleep(ctx, d); serr != nil {
			return nil, fmt.Errorf("gateway: %s: %w", r.op, serr)
		}
	}
}
