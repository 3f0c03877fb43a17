package handlers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/internal/backoff"
	"github.com/sandboxq/sandboxq/schema"
)

// ErrProjectBusy is returned when another task holds the project's lease for
// longer than the handler is willing to wait. The task is rescheduled after a
// short jittered delay and the attempt does not count against MaxRetry.
var ErrProjectBusy = errors.New("project busy: another task is mutating it")

// ErrCancelled is the reason a cancelled task ends with. It wraps
// asynq.SkipRetry, so the task is archived with "cancelled" as its last error
// and never retried.
var ErrCancelled = Permanent(errCancelled)

var errCancelled = errors.New("cancelled")

// Permanent marks err as not worth retrying: the task is archived at once,
// with err's message unchanged as its last error.
func Permanent(err error) error {
	if err == nil || errors.Is(err, asynq.SkipRetry) {
		return err
	}
	return permanentError{err}
}

type permanentError struct{ err error }

func (e permanentError) Error() string   { return e.err.Error() }
func (e permanentError) Unwrap() []error { return []error{e.err, asynq.SkipRetry} }

// Permanentf is Permanent(fmt.Errorf(format, args...)).
func Permanentf(format string, args ...any) error { return Permanent(fmt.Errorf(format, args...)) }

// permanentStatus lists the gateway and daemon statuses that no retry can
// fix (DESIGN.md §5).
var permanentStatus = map[int]bool{400: true, 401: true, 403: true, 404: true, 409: true, 413: true, 422: true}

// classify turns a gateway error into what the queue should do with it: a
// permanent error for statuses that a retry cannot fix, the error unchanged
// otherwise (RetryDelay and IsFailure read it).
func classify(err error) error {
	if err == nil {
		return nil
	}
	var apiErr *gateway.APIError
	if errors.As(err, &apiErr) && permanentStatus[apiErr.StatusCode] {
		return Permanent(err)
	}
	return err
}

// Policy holds the retry timing of the worker. The zero value is not useful;
// use DefaultPolicy.
type Policy struct {
	// Backoff is the exponential backoff of ordinary retries.
	Backoff backoff.Policy
	// MaxRetryAfter caps a server's Retry-After hint.
	MaxRetryAfter time.Duration
	// BusyDelay is the ceiling of the jittered delay before a task that found
	// its project busy runs again.
	BusyDelay time.Duration
}

// DefaultPolicy is DESIGN.md §5: exponential from 1 s, factor 2, full jitter,
// cap 2 min; Retry-After honoured up to 10 min; busy projects retried within
// 2 s.
func DefaultPolicy() Policy {
	return Policy{
		Backoff:       backoff.Policy{Base: time.Second, Factor: 2, Cap: 2 * time.Minute},
		MaxRetryAfter: 10 * time.Minute,
		BusyDelay:     2 * time.Second,
	}
}

// RetryDelay implements asynq.RetryDelayFunc: n is the number of times the
// task was retried so far.
func (p Policy) RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	if errors.Is(err, ErrProjectBusy) {
		return p.BusyDelay/4 + time.Duration(rand.Float64()*float64(p.BusyDelay*3/4))
	}
	if te, ok := errors.AsType[*gateway.ThrottledError](err); ok {
		// The shared gateway budget had no room: come back when it will.
		return min(te.RetryAfter, p.MaxRetryAfter) + time.Duration(rand.Float64()*float64(p.BusyDelay))
	}
	if ra := gateway.RetryAfter(err); ra > 0 {
		if ra > p.MaxRetryAfter {
			ra = p.MaxRetryAfter
		}
		return ra
	}
	return p.Backoff.Delay(n)
}

// IsFailure implements asynq's Config.IsFailure: a busy project, a rate limit
// (429, or the shared gateway budget out of room) and a lost lease are
// expected under load and do not count against the task's MaxRetry.
func IsFailure(err error) bool {
	if errors.Is(err, ErrProjectBusy) || errors.Is(err, schema.ErrLost) || errors.Is(err, gateway.ErrThrottled) {
		return false
	}
	var apiErr *gateway.APIError
	if errors.As(err, &apiErr) && apiErr.StatusCode == 429 {
		return false
	}
	return true
}

// ctxErr reports the error to return when ctx ended, keeping the cause (a
// lost lease) visible.
func ctxErr(ctx context.Context) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, ctx.Err()) {
		return cause
	}
	return ctx.Err()
}
