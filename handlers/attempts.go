package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
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

// attemptState is where process leaves the task's final result, so that
// Attempts writes it in the same round trip as the attempt record.
type attemptState struct {
	result []byte // nil: no final result
}

// Attempts records every attempt of a project task (start, duration,
// error) in the project's task index (schema.RecordAttempt) and announces
// its end on schema.TaskDoneChannel, which tasks.Client.Wait listens to.
// The record and the notice share one pipelined round trip with the
// task's final result, which the handler hands over instead of writing it
// itself: an attempt that ends with a result costs no extra round trip;
// one without a result costs the record and notice alone. A task without
// a project gets the notice alone. Attempts that did not run (project
// busy, gateway throttled) are neither recorded nor announced; asynq does
// not count them either, and they never end a task.
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
			resErr, recErr := writeAttempt(ctx, rdb, p, queue, id, st.result, a, record)
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

// writeAttempt writes the final result (if any) and the attempt record and
// end notice (if record) in one pipeline, and returns the error of the
// result and of the record. A record that
// could not be written only costs the timeline an attempt; a result that
// could not be written fails the attempt, as with asynq's ResultWriter.
func writeAttempt(ctx context.Context, rdb redis.UniversalClient, p tasks.Project, queue, id string, result []byte, a schema.Attempt, record bool) (resErr, recErr error) {
	if result == nil && !record {
		return nil, nil
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var (
		res *redis.IntCmd
		rec *redis.Cmd
	)
	_, err := rdb.Pipelined(wctx, func(pl redis.Pipeliner) error {
		if result != nil {
			// What asynq's ResultWriter does: HSET of the task's "result".
			res = pl.HSet(wctx, schema.AsynqTaskKey(queue, id), "result", result)
		}
		if record {
			rec = schema.RecordAttempt(wctx, pl, p, id, a)
			announce(wctx, pl, queue, id)
		}
		return nil
	})
	if res != nil {
		resErr = res.Err()
	}
	if rec != nil {
		recErr = rec.Err()
	}
	if err != nil && resErr == nil && recErr == nil {
		// The pipeline failed as a whole (e.g. Redis unreachable).
		resErr, recErr = err, err
		if result == nil {
			resErr = nil
		}
	}
	return resErr, recErr
}

// handOver gives the task's final result to Attempts when it runs the
// task; it reports false when it does not (then the caller writes it).
func handOver(ctx context.Context, result any) (bool, error) {
	st, ok := ctx.Value(attemptKey{}).(*attemptState)
	if !ok {
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
