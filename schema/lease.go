package schema

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/internal/backoff"
)

// Leases.
//
// A lease is a string key whose value is its owner's id, with a lifetime.
// sandboxq has two kinds, one family of scripts: the project lease
// (LeaseKey, owner a task id, taken by a handler around its gateway
// mutations) and the watcher lease (WatcherKey, owner a worker process,
// taken by the process that watches the project's sandbox). A watcher lease
// also records its owner in the registry hash (field "watcher"), which is
// why acquire and release take an optional second key.
//
// Every script compares the owner first: renew extends and release deletes
// only a lease the caller still holds, so a lease that expired and passed
// to someone else is never touched. All keys of one call share the
// project's hash tag, so each script runs on one cluster slot.

// ErrHeld is returned by TryAcquire when another owner holds the lease.
var ErrHeld = errors.New("lease: held by another owner")

// ErrLost is the cause of a Held's context when its lease was lost.
var ErrLost = errors.New("lease: lost")

// leaseAcquire takes (or keeps) a lease. KEYS lease [, registry hash]; ARGV
// owner, ttl ms. With a registry hash that exists, its "watcher" field is
// set to the owner when the lease is newly taken. Returns 1 if held.
var leaseAcquire = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], 'watcher', ARGV[1]) end
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`)

// leaseRenew extends a lease its owner still holds. KEYS lease; ARGV owner,
// ttl ms. Returns 1 if it did.
var leaseRenew = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)

// leaseRelease deletes a lease its owner still holds (compare-and-delete).
// KEYS lease [, registry hash]; ARGV owner. With a registry hash, its
// "watcher" field is cleared if it names the owner. Returns 1 if it did.
var leaseRelease = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if KEYS[2] and redis.call('HGET', KEYS[2], 'watcher') == ARGV[1] then redis.call('HSET', KEYS[2], 'watcher', '') end
  return 1
end
return 0`)

// leaseAcquireTask takes (or keeps) a project lease for a task unless the
// task is cancelled. KEYS lease, ProjectCancelKey of the task; ARGV owner,
// ttl ms. Returns -1 (and takes nothing) if the cancel mark exists, 1 if
// held, 0 if another owner holds the lease.
var leaseAcquireTask = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`)

var leaseScripts = []*redis.Script{leaseAcquire, leaseRenew, leaseRelease}

// AcquireLease takes key for owner with lifetime ttl, or keeps it if owner
// already holds it (refreshing the lifetime), and reports whether owner
// holds it now. With a registry key (RegistryKey of the same project), an
// existing registry entry records the owner in its "watcher" field.
func AcquireLease(ctx context.Context, rdb redis.Scripter, key, registry, owner string, ttl time.Duration) (bool, error) {
	n, err := leaseAcquire.Run(ctx, rdb, leaseKeys(key, registry), owner, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("lease: acquire %s: %w", key, err)
	}
	return n == 1, nil
}

// RenewLease extends the lease if owner still holds it and reports whether
// it did.
func RenewLease(ctx context.Context, rdb redis.Scripter, key, owner string, ttl time.Duration) (bool, error) {
	n, err := leaseRenew.Run(ctx, rdb, []string{key}, owner, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("lease: renew %s: %w", key, err)
	}
	return n == 1, nil
}

// ReleaseLease deletes the lease if owner still holds it and reports whether
// it did; with a registry key it also clears the owner from the registry
// entry. Releasing a lease that expired or passed to another owner is a
// no-op.
func ReleaseLease(ctx context.Context, rdb redis.Scripter, key, registry, owner string) (bool, error) {
	n, err := leaseRelease.Run(ctx, rdb, leaseKeys(key, registry), owner).Int()
	if err != nil {
		return false, fmt.Errorf("lease: release %s: %w", key, err)
	}
	return n == 1, nil
}

func leaseKeys(key, registry string) []string {
	if registry == "" {
		return []string{key}
	}
	return []string{key, registry}
}

// LeaseOwner returns the current owner of key, or "" if nobody holds it.
func LeaseOwner(ctx context.Context, rdb redis.UniversalClient, key string) (string, error) {
	v, err := rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("lease: owner of %s: %w", key, err)
	}
	return v, nil
}

// LeaseOp is one lease of a batch: its key, and for acquire and release the
// registry key of the same project ("" for none).
type LeaseOp struct {
	Key      string
	Registry string
}

// AcquireLeases is AcquireLease for many leases in one pipeline (one round
// trip per cluster node). held[i] says whether owner holds ops[i] now.
func AcquireLeases(ctx context.Context, rdb redis.UniversalClient, ops []LeaseOp, owner string, ttl time.Duration) (held []bool, err error) {
	return runLeaseBatch(ctx, rdb, len(ops), func(pl redis.Pipeliner, i int) *redis.Cmd {
		return leaseAcquire.EvalSha(ctx, pl, leaseKeys(ops[i].Key, ops[i].Registry), owner, ttl.Milliseconds())
	})
}

// RenewLeases is RenewLease for many leases in one pipeline. held[i] is
// false when keys[i] is gone or owned by someone else (the lease is lost).
func RenewLeases(ctx context.Context, rdb redis.UniversalClient, keys []string, owner string, ttl time.Duration) (held []bool, err error) {
	return runLeaseBatch(ctx, rdb, len(keys), func(pl redis.Pipeliner, i int) *redis.Cmd {
		return leaseRenew.EvalSha(ctx, pl, []string{keys[i]}, owner, ttl.Milliseconds())
	})
}

// ReleaseLeases is ReleaseLease for many leases in one pipeline.
func ReleaseLeases(ctx context.Context, rdb redis.UniversalClient, ops []LeaseOp, owner string) error {
	_, err := runLeaseBatch(ctx, rdb, len(ops), func(pl redis.Pipeliner, i int) *redis.Cmd {
		return leaseRelease.EvalSha(ctx, pl, leaseKeys(ops[i].Key, ops[i].Registry), owner)
	})
	return err
}

// runLeaseBatch runs n lease scripts by EVALSHA in one pipeline; if the
// server does not know a script (first use, restart, SCRIPT FLUSH) it loads
// the lease scripts and runs the pipeline once more. A reply that is not 1
// (including a per-command error) counts as not held.
func runLeaseBatch(ctx context.Context, rdb redis.UniversalClient, n int, cmd func(redis.Pipeliner, int) *redis.Cmd) ([]bool, error) {
	if n == 0 {
		return nil, nil
	}
	res := make([]*redis.Cmd, n)
	for attempt := 0; ; attempt++ {
		cmds, err := rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
			for i := range n {
				res[i] = cmd(pl, i)
			}
			return nil
		})
		if errors.Is(err, redis.Nil) {
			err = nil
		}
		if !noScript(cmds) || attempt > 0 {
			if err != nil {
				return nil, err
			}
			held := make([]bool, n)
			for i, c := range res {
				v, cerr := c.Int()
				held[i] = cerr == nil && v == 1
			}
			return held, nil
		}
		for _, sc := range leaseScripts {
			if err := sc.Load(ctx, rdb).Err(); err != nil {
				return nil, err
			}
		}
	}
}

func noScript(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if c.Err() != nil && redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			return true
		}
	}
	return false
}

// TryAcquire takes the lease key for owner with the given TTL. It returns
// ErrHeld if someone else holds it. Taking a lease one already holds
// succeeds and refreshes its TTL.
func TryAcquire(ctx context.Context, rdb redis.UniversalClient, key, owner string, ttl time.Duration) error {
	if owner == "" {
		return errors.New("lease: empty owner")
	}
	if ttl < time.Millisecond {
		return fmt.Errorf("lease: ttl %v is below 1ms", ttl)
	}
	ok, err := AcquireLease(ctx, rdb, key, "", owner, ttl)
	if err != nil {
		return err
	}
	if !ok {
		return ErrHeld
	}
	return nil
}

// ErrCancelled is returned by AcquireUnlessCancelled when the task has a
// cancel mark.
var ErrCancelled = errors.New("lease: task cancelled")

// Held is a lease kept alive in the background until Release or loss.
type Held struct {
	rdb   redis.UniversalClient
	key   string
	owner string
	ttl   time.Duration

	ctx      context.Context
	cancel   context.CancelCauseFunc
	done     chan struct{}
	stopOnce sync.Once
	once     sync.Once
}

// Acquire takes the lease (see TryAcquire) and keeps it alive until Release
// is called or it is lost. The returned Held's Context is cancelled with
// cause ErrLost when the lease is lost, and when parent is done.
func Acquire(parent context.Context, rdb redis.UniversalClient, key, owner string, ttl time.Duration) (*Held, error) {
	if err := TryAcquire(parent, rdb, key, owner, ttl); err != nil {
		return nil, err
	}
	return hold(parent, rdb, key, owner, ttl), nil
}

// AcquireUnlessCancelled is Acquire of project p's lease (LeaseKey) by task
// id, which also checks the task's cancel mark (ProjectCancelKey) in the
// same script and round trip: a marked task gets ErrCancelled and takes
// nothing; a lease held by another task gives ErrHeld.
func AcquireUnlessCancelled(parent context.Context, rdb redis.UniversalClient, p sandboxq.Project, id string, ttl time.Duration) (*Held, error) {
	if id == "" {
		return nil, errors.New("lease: empty owner")
	}
	if ttl < time.Millisecond {
		return nil, fmt.Errorf("lease: ttl %v is below 1ms", ttl)
	}
	key := LeaseKey(p)
	n, err := leaseAcquireTask.Run(parent, rdb, []string{key, ProjectCancelKey(p, id)}, id, ttl.Milliseconds()).Int()
	switch {
	case err != nil:
		return nil, fmt.Errorf("lease: acquire %s: %w", key, err)
	case n < 0:
		return nil, ErrCancelled
	case n == 0:
		return nil, ErrHeld
	}
	return hold(parent, rdb, key, id, ttl), nil
}

// hold starts keeping a lease just taken alive.
func hold(parent context.Context, rdb redis.UniversalClient, key, owner string, ttl time.Duration) *Held {
	ctx, cancel := context.WithCancelCause(parent)
	h := &Held{rdb: rdb, key: key, owner: owner, ttl: ttl, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	go h.keepAlive()
	return h
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
		ok, err := RenewLease(rctx, h.rdb, h.key, h.owner, h.ttl)
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
// safe to call more than once; ctx bounds the Redis call.
func (h *Held) Release(ctx context.Context) error {
	h.stop()
	var err error
	h.once.Do(func() { err = h.release(ctx) })
	return err
}

// stop ends the renewals and waits for them to end.
func (h *Held) stop() {
	h.stopOnce.Do(func() {
		h.cancel(context.Canceled)
		<-h.done
	})
}

// ReleaseIn stops renewing and queues the release (the compare-and-delete,
// sent as EVAL so that it needs no NOSCRIPT reload) on pl, so that it
// shares a round trip with other writes. After pl has run, call the
// returned function: if the queued release failed it releases with
// retries, as Release does, bounded by ctx; it returns the error left.
func (h *Held) ReleaseIn(ctx context.Context, pl redis.Pipeliner) func(ctx context.Context) error {
	h.stop()
	cmd := leaseRelease.Eval(ctx, pl, []string{h.key}, h.owner)
	return func(ctx context.Context) error {
		if cmd.Err() == nil && cmd.Val() != nil { // ran: released, or not ours
			h.once.Do(func() {})
			return nil
		}
		return h.Release(ctx)
	}
}

// release deletes the lease if it is still ours, retrying a failed delete
// (every 100 ms, slowing to 500 ms) until ctx ends: during a Redis failover
// the delete fails for a few seconds, and a lease left behind blocks its
// project for a whole TTL (e2e TestFailover measured 30 s without a
// completed task after the primary was killed).
func (h *Held) release(ctx context.Context) error {
	delay := 100 * time.Millisecond
	for {
		_, err := ReleaseLease(ctx, h.rdb, h.key, "", h.owner)
		if err == nil || errors.Is(err, redis.ErrClosed) {
			return err
		}
		if backoff.Sleep(ctx, delay) != nil {
			return err
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}
