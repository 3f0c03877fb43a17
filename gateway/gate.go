package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Gate is consulted around every gateway call (not daemon calls): Wait
// before the request is sent, Pause after the gateway answered 429 with a
// Retry-After. A shared rate limit (gateway/ratelimit) implements it so
// that every worker process spends one budget.
type Gate interface {
	// Wait blocks until the call may go. An error aborts the call; it
	// should wrap ErrThrottled when the call was refused for want of
	// capacity, so the task is rescheduled without counting as a failure.
	Wait(ctx context.Context, op string) error
	// Pause is told that the gateway asked for no calls during d.
	Pause(ctx context.Context, d time.Duration)
}

// ErrThrottled is wrapped by the errors of a Gate that refused a call: the
// shared budget of gateway calls had no room within the caller's wait.
var ErrThrottled = errors.New("gateway call throttled by the shared rate limit")

// ThrottledError is a refused call with the time after which a new attempt
// is worth making. errors.Is(err, ErrThrottled) holds for it.
type ThrottledError struct {
	Op         string
	RetryAfter time.Duration
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("gateway: %s: %v (retry in %v)", e.Op, ErrThrottled, e.RetryAfter.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrThrottled) true.
func (e *ThrottledError) Is(target error) bool { return target == ErrThrottled }

// WithGate puts g in front of every gateway call of the client. nil
// disables it.
func WithGate(g Gate) Option {
	return func(c *Client) error {
		c.gate = g
		return nil
	}
}

// gatedRequest runs one gateway call through the client's Gate, if any.
func (c *Client) gatedRequest(ctx context.Context, op string, call func() (*response, error)) (*response, error) {
	if c.gate == nil {
		return call()
	}
	if err := c.gate.Wait(ctx, op); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("gateway: %s: %w", op, ctx.Err())
		}
		return nil, err
	}
	resp, err := call()
	if apiErr, ok := errors.AsType[*APIError](err); ok && apiErr.StatusCode == 429 && apiErr.RetryAfter > 0 {
		c.gate.Pause(ctx, apiErr.RetryAfter)
	}
	return resp, err
}
