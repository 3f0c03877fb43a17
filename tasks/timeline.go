package tasks

import (
	"context"
	"encoding/json"
	"time"
)

// Placeholder of the per-project task index (issue12-timeline), replaced
// by that branch when it is merged.

// StateCancelled is the state ProjectTasks reports for a cancelled task.
const StateCancelled = "cancelled"

// Attempt is one run of a task.
type Attempt struct {
	StartedAt  time.Time `json:"started_at"`
	DurationMS int64     `json:"duration_ms"`
	Error      string    `json:"error,omitempty"`
}

// TaskRecord is one task of a project's timeline.
type TaskRecord struct {
	ID         string          `json:"id"`
	Queue      string          `json:"queue"`
	Type       string          `json:"type"`
	State      string          `json:"state"`
	EnqueuedAt time.Time       `json:"enqueued_at"`
	Attempts   []Attempt       `json:"attempts"`
	Result     json.RawMessage `json:"result,omitempty"`
	LastError  string          `json:"last_error,omitempty"`
}

// ListOptions select the tasks ProjectTasks returns.
type ListOptions struct {
	State string
	Limit int
}

// ProjectTasks returns the project's tasks, newest first.
func (c *Client) ProjectTasks(ctx context.Context, p Project, opts ListOptions) ([]TaskRecord, error) {
	return []TaskRecord{}, nil
}
