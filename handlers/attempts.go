package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// maxAttemptError bounds the error text kept per attempt.
const maxAttemptError = 2048

// attemptKey carries an *attemptState from Attempts to process.
type attemptKey struct{}

// attemptState is where process leaves the task's final result, and the
// handler the other writes that end its attempt (the registry touch, the
// project lease's release), so that Attempts sends them in the same round
// trip as the attempt record.
type attemptState struct {
	result []byte // nil: no final result

	mu sync.Mutex
	// touches and releases each queue their writes on the end-of-attempt
	// pipeline and return what to do once it ran. Releases go last.
	touches, releases []endWrite
	sealed            bool // the pipeline was sent: nothing more joins it
}

// join adds w to the touches (or, if release, the releases) of the
// pipeline. It reports false if the pipeline was already sent; the caller
// then writes on its own.
func (st *attemptState) join(w endWrite, release bool) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.sealed {
		return false
	}
	if release {
		st.releases = append(st.releases, w)
	} else {
		st.touches = append(st.touches, w)
	}
	return true
}

// seal returns the writes handed over and closes the state to more.
func (st *attemptState) seal() []endWrite {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.sealed = true
	return slices.Concat(st.touches, st.releases)
}

// endWrite queues a write on the end-of-attempt pipeline pl and returns
// the function to call after pl ran.
type endWrite func(ctx context.Context, pl redis.Pipeliner) (after func())

// attemptFrom returns the attempt state Attempts put in ctx, or nil.
func attemptFrom(ctx context.Context) *attemptState {
	st, _ := ctx.Value(attemptKey{}).(*attemptState)
	return st
}

// Attempts records every attempt of a project task (start, duration,
// error) in the project's task index (schema.RecordAttempt) and announces
// its end on schema.TaskDoneChannel, which tasks.Client.Wait listens to.
// The record and the notice share one pipelined round trip with the
// task's final result, the project's registry touch and the release of the
// project lease, which the handler hands over instead of writing them
// itself. A task without a project gets the notice alone. Attempts that
// did not run (project busy, gateway throttled) are neither recorded nor
// announced; asynq does not count them either, and they never end a task.
func Attempts(rdb redis.UniversalClient, logger *slog.Logger) asynq.MiddlewareFunc {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			id, _ := asynq.GetTaskID(ctx)
			queue, _ := asynq.GetQueueName(ctx)
			p, ok := tasks.ProjectOf(t)
			if !ok || id == "" || queue == "" {
				err := next.ProcessTask(ctx, t)
				if id != "" && queue != "" && ran(err) {
					announceAlone(ctx, rdb, queue, id, logger)
				}
				return err
			}
			st := &attemptState{}
			start := time.Now()
			err := next.ProcessTask(context.WithValue(ctx, attemptKey{}, st), t)
			a := schema.Attempt{StartedAt: start.UTC(), DurationMS: time.Since(start).Milliseconds()}
			record := ran(err)
			if record && err != nil {
				a.Error = truncate(err.Error(), maxAttemptError)
			}
			resErr, recErr := writeAttempt(ctx, rdb, p, queue, id, st, a, record)
			if recErr != nil {
				logger.WarnContext(ctx, "record task attempt", slog.String("task_id", id), slog.String("err", recErr.Error()))
			}
			if resErr != nil && err == nil {
				err = fmt.Errorf("write result: %w", resErr)
			}
			return err
		})
	}
}

// ran reports whether an attempt ran (and may have ended the task): not
// one turned away by a busy project or the gateway's rate limit.
func ran(err error) bool {
	switch Outcome(err) {
	case OutcomeBusy, OutcomeThrottled:
		return false
	}
	return true
}

// announce queues on pl the notice that an attempt of task id has ended
// (schema.PublishTaskDone), which wakes the task's waiters. A lost notice
// costs a waiter latency (it polls as a fallback), never an outcome.
func announce(ctx context.Context, pl redis.Pipeliner, queue, id string) {
	schema.PublishTaskDone(ctx, pl, queue, id)
}

// announceAlone sends the notice of a task that has no attempt record.
func announceAlone(ctx context.Context, rdb redis.UniversalClient, queue, id string, logger *slog.Logger) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := schema.PublishTaskDone(actx, rdb, queue, id).Err(); err != nil {
		logger.WarnContext(ctx, "announce task attempt end", slog.String("task_id", id), slog.String("err", err.Error()))
	}
}

// writeAttempt writes the final result (if any), the attempt record and
// end notice (if record), and the writes handed over in st (touches, then
// lease releases) in one pipeline, and returns the error of the result and
// of the record. A record that could not be written only costs the
// timeline an attempt; a result that could not be written fails the
// attempt, as with asynq's ResultWriter. The handed-over writes deal with
// their own errors after the pipeline ran (a lease release is retried).
func writeAttempt(ctx context.Context, rdb redis.UniversalClient, p tasks.Project, queue, id string, st *attemptState, a schema.Attempt, record bool) (resErr, recErr error) {
	ends := st.seal()
	if st.result == nil && !record && len(ends) == 0 {
		return nil, nil
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var (
		res   *redis.IntCmd
		rec   *redis.Cmd
		after = make([]func(), 0, len(ends))
	)
	cmds, err := rdb.Pipelined(wctx, func(pl redis.Pipeliner) error {
		if st.result != nil {
			// What asynq's ResultWriter does: HSET of the task's "result".
			res = pl.HSet(wctx, schema.AsynqTaskKey(queue, id), "result", st.result)
		}
		if record {
			rec = schema.RecordAttempt(wctx, pl, p, id, a)
			announce(wctx, pl, queue, id)
		}
		for _, end := range ends {
			after = append(after, end(wctx, pl))
		}
		return nil
	})
	for _, f := range after {
		f()
	}
	if res != nil {
		resErr = res.Err()
	}
	if rec != nil {
		recErr = rec.Err()
	}
	if err != nil && !anyFailed(cmds) {
		// The pipeline failed as a whole, leaving no command an error.
		if res != nil {
			resErr = err
		}
		if rec != nil {
			recErr = err
		}
	}
	return resErr, recErr
}

func anyFailed(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if c.Err() != nil {
			return true
		}
	}
	return false
}

// handOver gives the task's final result to Attempts when it runs the
// task; it reports false when it does not (then the caller writes it).
func handOver(ctx context.Context, result any) (bool, error) {
	st := attemptFrom(ctx)
	if st == nil {
		return false, nil
	}
	b, err := json.Marshal(result)
	if err != nil {
		return true, fmt.Errorf("encode result: %w", err)
	}
	st.result = b
	return true, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
