package worker

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/schema"
)

// asynq polls: its processor asks every queue for a task (one dequeue
// script per queue) and, when none has one, sleeps for about
// TaskCheckInterval before it asks again, so an idle worker trades pickup
// latency against load on Redis. The worker turns that poll into a wait:
// asynq's server gets the worker's Redis client wrapped in an idleWaker,
// which watches the dequeue scripts go by. Once every served queue has
// answered "empty" since the last task, that last empty answer is held
// back while the worker blocks on the queues' wake lists (schema.WakeKey;
// producers push a token when they enqueue) for at most the task check
// interval; asynq then asks again at once. A pickup takes a round trip or
// two after the enqueue, and an idle worker makes a few round trips per
// interval. Tasks nobody announces — handed back at shutdown, enqueued by
// asynq's own scheduler or by other producers, or woken for a queue another
// worker serves while this one took a task of another queue — are found
// within the interval. asynq itself only sleeps idleSleep between looks.
const idleSleep = time.Millisecond

// idleWaker is the redis.UniversalClient asynq's server uses: the worker's
// client, with EvalSha and Eval watched for asynq's dequeue script.
type idleWaker struct {
	redis.UniversalClient
	keys     []string      // wake lists of the served queues
	interval time.Duration // longest wait without a token
	stop     <-chan struct{}

	mu    sync.Mutex
	empty map[string]bool // queues found empty since the last task or wait
}

func newIdleWaker(rdb redis.UniversalClient, queues map[string]int, interval time.Duration, stop <-chan struct{}) *idleWaker {
	names := make([]string, 0, len(queues))
	for q := range queues {
		names = append(names, q)
	}
	return &idleWaker{UniversalClient: rdb, keys: schema.WakeKeys(names), interval: interval, stop: stop, empty: make(map[string]bool)}
}

// dequeueQueue reports whether keys are those of asynq's dequeue script
// (pending, paused, active, lease of one queue) and names the queue.
func dequeueQueue(keys []string) (string, bool) {
	if len(keys) != 4 {
		return "", false
	}
	q, ok := schema.AsynqQueueOf(keys[0], "pending")
	return q, ok && keys[1] == schema.AsynqQueueKey(q, "paused") &&
		keys[2] == schema.AsynqQueueKey(q, "active") && keys[3] == schema.AsynqQueueKey(q, "lease")
}

// forwardQueue reports whether keys are those of asynq's forward script
// (the scheduled or retry set of one queue, then its pending list), which
// moves due tasks to the pending list, and names the queue.
func forwardQueue(keys []string) (string, bool) {
	if len(keys) != 2 {
		return "", false
	}
	q, ok := schema.AsynqQueueOf(keys[1], "pending")
	return q, ok && (keys[0] == schema.AsynqQueueKey(q, "scheduled") || keys[0] == schema.AsynqQueueKey(q, "retry"))
}

func (w *idleWaker) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	return w.watch(ctx, keys, func() *redis.Cmd { return w.UniversalClient.EvalSha(ctx, sha, keys, args...) })
}

func (w *idleWaker) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return w.watch(ctx, keys, func() *redis.Cmd { return w.UniversalClient.Eval(ctx, script, keys, args...) })
}

// watch runs a script: a dequeue's answer is recorded, and the one that
// finds the last served queue empty waits before it returns; a forward
// that moved tasks wakes a worker for them, since no producer announced
// them.
//
// The wait comes after the dequeue, never before: asynq computes a task's
// lease expiry just before each dequeue script, so a task taken right
// after a long wait would start with a lease already mostly spent. Waiting
// after an empty answer hands asynq "no task"; it asks again at once, with
// a fresh lease.
func (w *idleWaker) watch(ctx context.Context, keys []string, run func() *redis.Cmd) *redis.Cmd {
	if q, ok := dequeueQueue(keys); ok {
		cmd := run()
		if w.after(q, cmd.Err()) {
			w.wait()
			w.mu.Lock()
			clear(w.empty)
			w.mu.Unlock()
		}
		return cmd
	}
	cmd := run()
	if q, ok := forwardQueue(keys); ok {
		if n, err := cmd.Int(); err == nil && n > 0 {
			_, _ = w.UniversalClient.Pipelined(ctx, func(pl redis.Pipeliner) error {
				schema.Wake(ctx, pl, q)
				return nil
			})
		}
	}
	return cmd
}

// after records what a dequeue found — redis.Nil is an empty queue, a
// task clears the record, an error (NOSCRIPT before asynq's reload, a
// connection problem) says nothing — and reports whether every served
// queue has now been found empty since the last task or wait.
func (w *idleWaker) after(queue string, err error) (idle bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case errors.Is(err, redis.Nil):
		w.empty[queue] = true
	case err == nil:
		clear(w.empty)
	}
	return len(w.empty) >= len(w.keys)
}

// wait blocks on the wake lists until a token arrives, the interval
// passes or the worker stops. A failed BLPOP (Redis unreachable) waits out
// the interval, so that asynq does not ask again at once.
func (w *idleWaker) wait() {
	select {
	case <-w.stop:
		return
	default:
	}
	// The BLPOP cannot be interrupted, so it waits in slices: shutdown
	// waits for one slice at most.
	slice := min(w.interval, maxWakeSlice)
	deadline := time.Now().Add(w.interval)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		d := max(min(slice, left), time.Millisecond)
		err := w.blpop(d)
		switch {
		case err == nil:
			return
		case !errors.Is(err, redis.Nil):
			w.pause(left)
			return
		}
		select {
		case <-w.stop:
			return
		default:
		}
	}
}

// blpop pops a token from any of the wake lists, waiting at most d (at
// least 1 ms: a BLPOP timeout of 0 would block for ever). go-redis's BLPop
// rounds timeouts under a second up to one, so the command is sent as is,
// with the fractional seconds Redis 6 and later accept.
func (w *idleWaker) blpop(d time.Duration) error {
	args := make([]any, 0, len(w.keys)+2)
	args = append(args, "blpop")
	for _, k := range w.keys {
		args = append(args, k)
	}
	args = append(args, strconv.FormatFloat(max(d, time.Millisecond).Seconds(), 'f', 3, 64))
	return w.UniversalClient.Do(context.Background(), args...).Err()
}

// maxWakeSlice bounds one BLPOP of wait; it stays well under go-redis's
// default read timeout (3 s), which applies to a command sent with Do.
const maxWakeSlice = 250 * time.Millisecond

// pause sleeps d unless the worker stops first.
func (w *idleWaker) pause(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.stop:
	case <-t.C:
	}
}
