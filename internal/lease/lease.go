package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrHeld is returned by TryAcquire when another owner holds the lease.
var ErrHeld = errors.New("lease: held by another owner")

// ErrLost is the cause of a Held's context when its lease was lost.
var ErrLost = errors.New("lease: lost")

var renewScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0`)

var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0`)

// TryAcquire takes the lease key for owner with the given TTL. It returns
// ErrHeld if someone else holds it. Taking a lease one already holds succeeds
// and refreshes its TTL.
func TryAcquire(ctx context.Context, rdb redis.UniversalClient, key, owner string, ttl time.Duration) error {
	if owner == "" {
		return errors.New("lease: empty owner")
	}
	if ttl < time.Millisecond {
		return fmt.Errorf("lease: ttl %v is below 1ms", ttl)
	}
	ok, err := rdb.SetNX(ctx, key, owner, ttl).Result()
	if err != nil {
		return fmt.Errorf("lease: acquire %s: %w", key, err)
	}
	if ok {
		return nil
	}
	renewed, err := Renew(ctx, rdb, key, owner, ttl)
	if err != nil {
		return err
	}
	if !renewed {
		return ErrHeld
	}
	return nil
}

// Renew extends the lease if owner still holds it and reports whether it did.
func Renew(ctx context.Context, rdb redis.UniversalClient, key, owner string, ttl time.Duration) (bool, error) {
	n, err := renewScript.Run(ctx, rdb, []string{key}, owner, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("lease: renew %s: %w", key, err)
	}
	return n == 1, nil
}

// Release deletes the lease if owner still holds it and reports whether it
// did. Releasing a lease that expired or passed to another owner is a no-op.
func Release(ctx context.Context, rdb redis.UniversalClient, key, owner string) (bool, error) {
	n, err := releaseScript.Run(ctx, rdb, []string{key}, owner).Int()
	if err != nil {
		return false, fmt.Errorf("lease: release %s: %w", key, err)
	}
	return n == 1, nil
}

// Owner returns the current owner of key, or "" if nobody holds it.
func Owner(ctx context.Context, rdb redis.UniversalClient, key string) (string, error) {
	v, err := rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("lease: owner of %s: %w", key, err)
	}
	return v, nil
}

// Held is a lease kept alive in the background until Release or loss.
type Held struct {
	rdb   redis.UniversalClient
	key   string
	owner string
	ttl   time.Duration

	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}
	once   sync.Once
}

// Acquire takes the lease (see TryAcquire) and keeps it alive until Release
// is called or it is lost. The returned Held's Context is cancelled with
// cause ErrLost when the lease is lost, and when parent is done.
func Acquire(parent context.Context, rdb redis.UniversalClient, key, owner string, ttl time.Duration) (*Held, error) {
	if err := TryAcquire(parent, rdb, key, owner, ttl); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(parent)
	h := &Held{rdb: rdb, key: key, owner: owner, ttl: ttl, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	go h.keepAlive()
	return h, nil
}

// Context is cancelled when the lease is lost (cause ErrLost), released, or
// when the parent context is done.
func (h *Held) Context() context.Context { return h.ctx }

// Lost reports whether the lease was lost rather than released.
func (h *Held) Lost() bool { return errors.Is(context.Cause(h.ctx), ErrLost) }

func (h *Held) keepAlive() {
	defer close(h.done)
	interval := h.ttl / 3
	lastOK := time.Now()
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(h.ctx, interval)
		ok, err := Renew(rctx, h.rdb, h.key, h.owner, h.ttl)
		cancel()
		switch {
		case err == nil && ok:
			lastOK = time.Now()
		case err == nil && !ok:
			h.cancel(ErrLost)
			return
		case time.Since(lastOK) >= h.ttl:
			h.cancel(fmt.Errorf("%w: %v", ErrLost, err))
			return
		}
		next := interval
		if err != nil {
			next = interval / 4
		}
		t.Reset(next)
	}
}

// Release stops renewing and deletes the lease if it is still ours. It is
// safe to call more than once. A failed delete is retried (every 100 ms,
// slowing to 500 ms) until ctx ends: during a Redis failover the delete
// fails for a few seconds, and a lease left behind blocks its project for
// a whole TTL (measured in e2e TestFailover: 30 s without a completed task
// after the primary was killed).
func (h *Held) Release(ctx context.Context) error {
	var err error
	h.once.Do(func() {
		h.cancel(context.Canceled)
		<-h.done
		delay := 100 * time.Millisecond
		for {
			if _, err = Release(ctx, h.rdb, h.key, h.owner); err == nil || errors.Is(err, redis.ErrClosed) {
				return
			}
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			delay = min(2*delay, 500*time.Millisecond)
		}
	})
	return err
}
