package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq/schema"
)

// StateCancelled is the state ProjectTasks reports for an archived task
// that Cancel stopped.
const StateCancelled = "cancelled"

// ErrNotRetryable is returned by Retry for a task that is not archived or
// cancelled (it is still live, or it completed).
var ErrNotRetryable = errors.New("task is not archived or cancelled")

// Attempt is one run of a task: when it started, how long it ran and the
// error it ended with ("" for the attempt that succeeded).
type Attempt struct {
	StartedAt  time.Time `json:"started_at"`
	DurationMS int64     `json:"duration_ms"`
	Error      string    `json:"error,omitempty"`
}

// TaskRecord is one task of a project's timeline.
type TaskRecord struct {
	ID         string    `json:"id"`
	Queue      string    `json:"queue"`
	Type       string    `json:"type"`
	State      string    `json:"state"`
	EnqueuedAt time.Time `json:"enqueued_at"`
	Attempts   []Attempt `json:"attempts"`
	// Result is the task's result as Status gives it (the HTTP API
	// redacts it as it does every result).
	Result    json.RawMessage `json:"result,omitempty"`
	LastError string          `json:"last_error,omitempty"`
}

// ListOptions select the tasks ProjectTasks returns.
type ListOptions struct {
	// State keeps only tasks in this state (one of the State* values,
	// StateCancelled included); "" keeps every task.
	State string
	// Limit is the most tasks returned (default 50, at most
	// schema.TaskIndexCap).
	Limit int
}

// ListStates are the states ListOptions.State accepts.
var ListStates = []string{StatePending, StateScheduled, StateRetry, StateActive, StateCompleted, StateArchived, StateCancelled, StateAggregating}

// ProjectTasks returns the project's tasks from its task index, newest
// first: every task enqueued for it by any producer while it is kept
// (the last schema.TaskIndexCap, for schema.TaskIndexTTL), with each
// attempt the workers recorded. Tasks that asynq no longer holds (past
// their Retention, or deleted) are left out.
func (c *Client) ProjectTasks(ctx context.Context, p Project, opts ListOptions) ([]TaskRecord, error) {
	p = p.Normalize()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if opts.State != "" && !validState(opts.State) {
		return nil, &ValidationError{Field: "state", Message: fmt.Sprintf("%q is not one of %v", opts.State, ListStates)}
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, schema.TaskIndexCap)
	out := []TaskRecord{}
	const page = 100
	for offset := 0; offset < schema.TaskIndexCap && len(out) < limit; offset += page {
		entries, err := schema.ReadTaskIndex(ctx, c.rdb, p, offset, page)
		if err != nil {
			return nil, fmt.Errorf("read task index of %s/%s: %w", p.Namespace, p.Name, err)
		}
		for _, e := range entries {
			rec, ok, err := c.record(ctx, e)
			if err != nil {
				return nil, err
			}
			if ok && (opts.State == "" || rec.State == opts.State) {
				out = append(out, rec)
				if len(out) == limit {
					break
				}
			}
		}
		if len(entries) < page {
			break
		}
	}
	return out, nil
}

func validState(s string) bool {
	for _, v := range ListStates {
		if v == s {
			return true
		}
	}
	return false
}

// record joins an index entry with the task's state in asynq; ok is false
// when asynq no longer holds the task.
func (c *Client) record(ctx context.Context, e schema.IndexedTask) (TaskRecord, bool, error) {
	res, err := c.Status(ctx, e.Queue, e.ID)
	if errors.Is(err, ErrTaskNotFound) {
		return TaskRecord{}, false, nil
	}
	if err != nil {
		return TaskRecord{}, false, err
	}
	rec := TaskRecord{
		ID: e.ID, Queue: e.Queue, Type: res.Type, State: res.State,
		EnqueuedAt: e.EnqueuedAt.UTC(), Attempts: attemptsOf(e.Attempts),
		Result: res.Result, LastError: res.LastError,
	}
	if res.Cancelled {
		rec.State = StateCancelled
	}
	return rec, true, nil
}

func attemptsOf(in []schema.Attempt) []Attempt {
	out := make([]Attempt, len(in))
	for i, a := range in {
		out[i] = Attempt{StartedAt: a.StartedAt.UTC(), DurationMS: a.DurationMS, Error: a.Error}
	}
	return out
}

// Attempts returns the attempts recorded for a task of a project (none for
// a task without a project, or one its project's index no longer holds).
func (c *Client) Attempts(ctx context.Context, queue, id string) ([]Attempt, error) {
	info, err := c.info(queue, id)
	if err != nil {
		return nil, err
	}
	p, ok := ProjectOf(asynq.NewTaskWithHeaders(info.Type, info.Payload, info.Headers))
	if !ok {
		return []Attempt{}, nil
	}
	e, ok, err := schema.ReadTaskEntry(ctx, c.rdb, p, id)
	if err != nil || !ok {
		return []Attempt{}, err
	}
	return attemptsOf(e.Attempts), nil
}

// Retry enqueues an archived or cancelled task again, as a new task with
// the same payload and the same queue, retry limit, timeout and retention,
// through Enqueue (so validation and deduplication apply as for any new
// task). A task in another state gives ErrNotRetryable; a missing one
// ErrTaskNotFound.
func (c *Client) Retry(ctx context.Context, queue, id string) (*Enqueued, error) {
	info, err := c.info(queue, id)
	if err != nil {
		return nil, err
	}
	if info.State != asynq.TaskStateArchived {
		return nil, fmt.Errorf("retry task %s: it is %s: %w", id, info.State, ErrNotRetryable)
	}
	p, err := DecodePayload(info.Type, info.Payload, info.Headers)
	if err != nil {
		return nil, fmt.Errorf("retry task %s: %w", id, err)
	}
	opts := []asynq.Option{asynq.Queue(info.Queue), asynq.MaxRetry(info.MaxRetry)}
	if info.Timeout > 0 {
		opts = append(opts, asynq.Timeout(info.Timeout))
	}
	if info.Retention > 0 {
		opts = append(opts, asynq.Retention(info.Retention))
	}
	return c.Enqueue(ctx, p, opts...)
}
