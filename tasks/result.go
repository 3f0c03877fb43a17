package tasks

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/sandboxq/sandboxq/internal/backoff"
	"github.com/sandboxq/sandboxq/schema"
)

var (
	// ErrTaskNotFound: no task with that id in that queue (never enqueued,
	// deleted, or gone after its Retention). It is asynq.ErrTaskNotFound,
	// so errors.Is matches either name.
	ErrTaskNotFound = asynq.ErrTaskNotFound
	// ErrTaskFinished is returned by Cancel for a task that has already
	// completed successfully.
	ErrTaskFinished = errors.New("task already completed")
	// ErrTaskArchived is returned by Cancel for a task that has already
	// failed and been archived without being cancelled; cancelling a task
	// that was cancelled before is not an error.
	ErrTaskArchived = errors.New("task already archived (failed)")
	// ErrCancelled matches a *TaskFailedError of a cancelled task.
	ErrCancelled = errors.New("cancelled")
)

// Task states as Result.State reports them (asynq's names).
const (
	StatePending     = "pending"
	StateActive      = "active"
	StateScheduled   = "scheduled"
	StateRetry       = "retry"
	StateArchived    = "archived"
	StateCompleted   = "completed"
	StateAggregating = "aggregating"
)

// Result is a task's state and, once it has one, its result.
type Result struct {
	ID    string `json:"id"`
	Queue string `json:"queue"`
	Type  string `json:"type"`
	State string `json:"state"`
	// Result is the JSON the handler wrote: the final result of a completed
	// task, the last progress of a running one. A result that is not JSON
	// appears as a JSON string.
	Result    json.RawMessage `json:"result,omitempty"`
	LastError string          `json:"last_error,omitempty"`
	Retried   int             `json:"retried"`
	MaxRetry  int             `json:"max_retry"`
	// Cancelled is true for an archived task that Cancel stopped.
	Cancelled     bool       `json:"cancelled,omitempty"`
	NextProcessAt *time.Time `json:"next_process_at,omitempty"`
	LastFailedAt  *time.Time `json:"last_failed_at,omitempty"`
	CompletedAt   *time.Time `json:"completed_at,omitempty"`
	// Attempts are the task's runs as its project's task index recorded
	// them. Status leaves it empty (it is polled by Wait); the HTTP API's
	// task read fills it through Client.Attempts.
	Attempts []Attempt `json:"attempts,omitempty"`
}

// TaskFailedError is a task that ended archived: it failed permanently,
// ran out of retries, or was cancelled.
type TaskFailedError struct {
	ID, Queue, Type string
	// LastErr is the task's last error message.
	LastErr string
	// Result is what the handler wrote before failing, if anything.
	Result    json.RawMessage
	Cancelled bool
}

func (e *TaskFailedError) Error() string {
	s := fmt.Sprintf("task %s %s (queue %s)", e.Type, e.ID, e.Queue)
	switch {
	case e.Cancelled:
		return s + " was cancelled"
	case e.LastErr == "":
		return s + " was archived"
	}
	return s + " failed: " + e.LastErr
}

// Is makes errors.Is(err, ErrCancelled) true for a cancelled task.
func (e *TaskFailedError) Is(target error) bool { return target == ErrCancelled && e.Cancelled }

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// info looks a task up, mapping a missing queue to ErrTaskNotFound.
func (c *Client) info(queue, id string) (*asynq.TaskInfo, error) {
	if queue == "" || id == "" {
		return nil, errors.New("tasks: queue and task id are required")
	}
	info, err := c.insp.GetTaskInfo(queue, id)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		return nil, fmt.Errorf("task %s in queue %s: %w", id, queue, ErrTaskNotFound)
	case err != nil:
		return nil, fmt.Errorf("task %s in queue %s: %w", id, queue, err)
	}
	return info, nil
}

// Status returns the task's current state and result.
func (c *Client) Status(ctx context.Context, queue, id string) (*Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	info, err := c.info(queue, id)
	if err != nil {
		return nil, err
	}
	res := &Result{
		ID:            info.ID,
		Queue:         info.Queue,
		Type:          info.Type,
		State:         info.State.String(),
		LastError:     info.LastErr,
		Retried:       info.Retried,
		MaxRetry:      info.MaxRetry,
		NextProcessAt: timePtr(info.NextProcessAt),
		LastFailedAt:  timePtr(info.LastFailedAt),
		CompletedAt:   timePtr(info.CompletedAt),
	}
	if len(info.Result) > 0 {
		if json.Valid(info.Result) {
			res.Result = json.RawMessage(info.Result)
		} else {
			res.Result, _ = json.Marshal(string(info.Result))
		}
	}
	if info.State == asynq.TaskStateArchived {
		cancelled, err := schema.IsCancelled(ctx, c.rdb, id)
		if err != nil {
			return nil, fmt.Errorf("task %s: read cancel mark: %w", id, err)
		}
		res.Cancelled = cancelled
	}
	return res, nil
}

// DefaultWaitPoll is how often Wait reads a task's state when no notice
// wakes it (see WithWaitPoll).
const DefaultWaitPoll = time.Second

// Wait waits until the task completes, is archived, or ctx ends. A
// completed task gives its Result; an archived one gives its Result and a
// *TaskFailedError with the last error; when ctx ends first, the last
// Result seen comes with ctx's error. A task that does not exist gives an
// error wrapping ErrTaskNotFound (note that a task enqueued with
// Retention(0) vanishes when it completes).
//
// Wait listens for the workers' notice that an attempt of the task ended
// (schema.TaskDoneChannel, on one subscription that all Waits of the
// Client share) and reads the task when it comes, and again at 1, 2, 4 …
// ms while asynq has not yet recorded the end. It also reads the task
// every wait poll (WithWaitPoll, default 1 s) and after the subscription
// is (re)established, so a lost notice costs time, never the outcome.
func (c *Client) Wait(ctx context.Context, queue, id string) (*Result, error) {
	w := c.done.watch(id)
	defer c.done.unwatch(w)
	timer := time.NewTimer(c.waitPoll)
	defer timer.Stop()
	var (
		last  *Result
		quick time.Duration // next fast re-read after a notice; 0: none
		heard bool
	)
	for {
		// Taken before the read: a resubscription after it wakes us.
		resub := c.done.resubscribed()
		res, err := c.Status(ctx, queue, id)
		if err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			return nil, err
		}
		last = res
		if ok, err := ended(res); ok {
			return res, err
		}
		quick = nextQuick(quick, heard, res.State, c.waitPoll)
		heard = false
		timer.Reset(cmp.Or(quick, c.waitPoll))
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-w.notice:
			heard = true
		case <-resub:
			// A notice may have been lost before the subscription was
			// confirmed: re-read as if one had been heard.
			heard = true
		case <-timer.C:
		}
	}
}

// ended reports whether res is a final state, and Wait's error for it.
func ended(res *Result) (bool, error) {
	switch res.State {
	case StateCompleted:
		return true, nil
	case StateArchived:
		return true, &TaskFailedError{
			ID: res.ID, Queue: res.Queue, Type: res.Type,
			LastErr: res.LastError, Result: res.Result, Cancelled: res.Cancelled,
		}
	}
	return false, nil
}

// nextQuick is the delay of Wait's next fast re-read: an attempt has ended
// (heard) but asynq records the task's new state only after the handler
// returns, so while the task is still active Wait looks again at 1 ms,
// then twice as late each time until the wait poll takes over. A task no
// longer active (retrying, say) waits for the next notice or poll.
func nextQuick(quick time.Duration, heard bool, state string, poll time.Duration) time.Duration {
	switch {
	case state != StateActive:
		return 0
	case heard:
		return time.Millisecond
	case quick > 0 && 2*quick < poll:
		return 2 * quick
	}
	return 0
}

// cancelSignalAfter is how long Cancel leaves a running task to the worker's
// own check of the cancel mark before it signals through asynq.
const cancelSignalAfter = 2 * time.Second

// Cancel stops a task for good. It sets the task's cancel mark
// (schema.MarkCancelled),
// then archives the task if it is waiting (pending, scheduled, retrying).
// If it is running, a sandboxq worker sees the mark, cancels the handler and
// archives the task with the error "cancelled"; should the task still run
// after cancelSignalAfter, Cancel also signals its worker through asynq
// (CancelProcessing) and archives the task when asynq moves it to retry.
// Cancel waits up to the cancel wait (WithCancelWait); if the task is still
// running then, Cancel returns nil and the mark stops the task at its next
// attempt.
//
// Cancelling a task that was cancelled before does nothing and returns
// nil; a completed task gives ErrTaskFinished, one that failed and was
// archived ErrTaskArchived, a missing one ErrTaskNotFound.
func (c *Client) Cancel(ctx context.Context, queue, id string) error {
	info, err := c.info(queue, id)
	if err != nil {
		return err
	}
	if ended, err := c.endedBeforeCancel(ctx, info, id); ended {
		return err
	}
	p, _ := ProjectOf(asynq.NewTaskWithHeaders(info.Type, info.Payload, info.Headers))
	if err := schema.MarkCancelled(ctx, c.rdb, id, p); err != nil {
		return fmt.Errorf("cancel task %s: set mark: %w", id, err)
	}
	return c.stopMarked(ctx, queue, id, info)
}

// endedBeforeCancel reports whether the task had ended before Cancel was
// called, and what Cancel then returns: ErrTaskFinished for a completed
// task, ErrTaskArchived for one that failed, nil for one cancelled before.
func (c *Client) endedBeforeCancel(ctx context.Context, info *asynq.TaskInfo, id string) (bool, error) {
	switch info.State {
	case asynq.TaskStateCompleted:
		return true, fmt.Errorf("cancel task %s: %w", id, ErrTaskFinished)
	case asynq.TaskStateArchived:
		cancelled, err := schema.IsCancelled(ctx, c.rdb, id)
		switch {
		case err != nil:
			return true, fmt.Errorf("cancel task %s: read mark: %w", id, err)
		case !cancelled:
			return true, fmt.Errorf("cancel task %s: %w", id, ErrTaskArchived)
		}
		return true, nil
	}
	return false, nil
}

// stopMarked brings a task whose cancel mark is set to an end: it archives
// a waiting task, and waits (up to the cancel wait) for a running one to
// notice the mark, signalling its worker through asynq if it does not.
func (c *Client) stopMarked(ctx context.Context, queue, id string, info *asynq.TaskInfo) error {
	start := time.Now()
	deadline := start.Add(c.cancelWait)
	var signalled time.Time
	delay := 10 * time.Millisecond
	for {
		done, err := c.cancelStep(ctx, queue, id, info, start, &signalled)
		if done {
			return err
		}
		if time.Now().After(deadline) {
			c.logger.WarnContext(ctx, "task still running after cancel; its next attempt will stop",
				slog.String("task_id", id), slog.String("queue", queue))
			return nil
		}
		if err := backoff.Sleep(ctx, delay); err != nil {
			return err
		}
		delay = min(2*delay, 200*time.Millisecond)
		info, err = c.insp.GetTaskInfo(queue, id)
		switch {
		case errors.Is(err, asynq.ErrTaskNotFound):
			return nil // deleted or revoked: it will not run again
		case err != nil:
			return fmt.Errorf("cancel task %s: %w", id, err)
		}
	}
}

// cancelStep acts once on a marked task in the state info gives, and
// reports whether Cancel is done (and with what).
func (c *Client) cancelStep(ctx context.Context, queue, id string, info *asynq.TaskInfo, start time.Time, signalled *time.Time) (bool, error) {
	switch info.State {
	case asynq.TaskStateCompleted:
		return true, fmt.Errorf("cancel task %s: %w", id, ErrTaskFinished)
	case asynq.TaskStateArchived:
		return true, nil
	case asynq.TaskStateActive:
		// A sandboxq worker notices the mark within its check interval and
		// ends the task as "cancelled" itself. Only if it has not done so
		// after cancelSignalAfter is the worker signalled through asynq
		// (which ends the attempt as "context canceled"), and again now and
		// then in case it missed that.
		if time.Since(start) >= cancelSignalAfter && (signalled.IsZero() || time.Since(*signalled) >= time.Second) {
			if err := c.insp.CancelProcessing(id); err != nil {
				return true, fmt.Errorf("cancel task %s: signal worker: %w", id, err)
			}
			*signalled = time.Now()
		}
		return false, nil
	default:
		err := c.insp.ArchiveTask(queue, id)
		if err == nil {
			// Its Waits hear of it at once (a lost notice costs them a poll).
			_ = schema.PublishTaskDone(context.WithoutCancel(ctx), c.rdb, queue, id).Err()
		}
		// Otherwise the task changed state under us (e.g. it just
		// started); look again.
		return err == nil || errors.Is(err, asynq.ErrTaskNotFound), nil
	}
}
