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
// error) in the project's task index (schema.RecordAttempt). The record
// shares one pipelined round trip with the task's final result, which
// the handler hands over instead of writing it itself: an attempt that
// ends with a result costs no extra round trip; one without a result costs
// the record alone. Attempts that did not run (project busy, gateway
// throttled) are not recorded; asynq does not count them either.
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
				return next.ProcessTask(ctx, t)
			}
			st := &attemptState{}
			start := time.Now()
			err := next.ProcessTask(context.WithValue(ctx, attemptKey{}, st), t)
			a := schema.Attempt{StartedAt: start.UTC(), DurationMS: time.Since(start).Milliseconds()}
			record := true
			switch Outcome(err) {
			case OutcomeBusy, OutcomeThrottled:
				record = false
			case OutcomeOK:
			default:
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

// writeAttempt writes the final result (if any) and the attempt record (if
// record) in one pipeline, and returns the error of each. A record that
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
