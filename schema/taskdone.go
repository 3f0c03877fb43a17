package schema

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/redis/go-redis/v9"
)

// TaskDoneChannel is the pub/sub channel on which workers announce that an
// attempt of a task has ended: message TaskDone as JSON {"queue","id"}.
// The notice is a hint that the task may have reached a final state:
// asynq records the state only after the handler returns, so a receiver
// reads the task again (and again shortly, while it is still active); a
// retried attempt announces too, although the task is not finished.
const TaskDoneChannel = Prefix + "tasks:done"

// TaskDone is the message on TaskDoneChannel.
type TaskDone struct {
	Queue string `json:"queue"`
	ID    string `json:"id"`
}

// PublishTaskDone queues, on pl (a pipeline, so the notice shares the
// round trip of the attempt's own writes, or a client), the notice that an
// attempt of task id in queue has ended.
func PublishTaskDone(ctx context.Context, pl redis.Cmdable, queue, id string) *redis.IntCmd {
	b, _ := json.Marshal(TaskDone{Queue: queue, ID: id})
	return pl.Publish(ctx, TaskDoneChannel, b)
}

// ParseTaskDone reads a message of TaskDoneChannel.
func ParseTaskDone(payload string) (TaskDone, error) {
	var d TaskDone
	if err := json.Unmarshal([]byte(payload), &d); err != nil {
		return d, err
	}
	if d.ID == "" {
		return d, errors.New("schema: task done notice without an id")
	}
	return d, nil
}
