package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sandboxq/sandboxq/tasks"
)

// taskCtx is what status and cancel run with.
type taskCtx struct {
	ctx context.Context
	app *app
	cl  *tasks.Client
	c   *common
	id  string
}

// searchQueues are the queues looked in when --queue is not given: the
// default queues, highest priority first.
func searchQueues() []string {
	qs := slices.Collect(maps.Keys(tasks.DefaultQueues))
	slices.SortFunc(qs, func(a, b string) int {
		return cmp.Or(cmp.Compare(tasks.DefaultQueues[b], tasks.DefaultQueues[a]), strings.Compare(a, b))
	})
	return qs
}

// locate finds the task in --queue, or else in the default queues.
func (t *taskCtx) locate() (*tasks.Result, error) {
	if t.c.queue != "" {
		return t.cl.Status(t.ctx, t.c.queue, t.id)
	}
	qs := searchQueues()
	for _, q := range qs {
		r, err := t.cl.Status(t.ctx, q, t.id)
		if errors.Is(err, tasks.ErrTaskNotFound) {
			continue
		}
		return r, err
	}
	return nil, fmt.Errorf("task %s is in none of the queues %s (give --queue if it went elsewhere): %w",
		t.id, strings.Join(qs, ", "), tasks.ErrTaskNotFound)
}

func statusCommand() *command {
	return &command{
		name:    "status",
		summary: "show a task's state and result",
		usage: `ID [flags]

Shows the task's state, retries, last error and result (for a running
server:start, its progress). Without --queue the task is looked for in every
default queue. With --wait it follows the task until it has finished, as the
enqueue commands do. Exit code 1 when the task is archived (failed or
cancelled) or cannot be found.

Examples:
  enqueue status 0b7e6c1e-6f4f-4c4e-9a39-3f1f2f9d8c11
  enqueue status 0b7e6c1e-6f4f-4c4e-9a39-3f1f2f9d8c11 --queue critical --json
  enqueue status 0b7e6c1e-6f4f-4c4e-9a39-3f1f2f9d8c11 --wait --timeout 5m`,
		task: func(t *taskCtx) int {
			a := t.app
			r, err := t.locate()
			if err != nil {
				return a.fail(err)
			}
			final := r.State == tasks.StateCompleted || r.State == tasks.StateArchived
			if t.c.wait && !final {
				return a.report(t.ctx, t.cl, t.c, []*tasks.Enqueued{{ID: r.ID, Queue: r.Queue, Type: r.Type}}, false)
			}
			o := fromResult(r, false)
			if t.c.jsonOut {
				writeJSON(a.stdout, o, false)
			} else {
				writeJSON(a.stdout, r, true)
			}
			if r.State == tasks.StateArchived {
				fmt.Fprintf(a.stderr, "enqueue: %s %s is archived: %s\n", r.Type, r.ID, *cmp.Or(o.Error, strPtr("no error recorded")))
			}
			return o.code
		},
	}
}

func cancelCommand() *command {
	return &command{
		name:    "cancel",
		summary: "stop a task for good (it is archived, not retried)",
		usage: `ID [flags]

Cancels the task: a waiting task is archived at once; a running one is
signalled and, once its handler stops, archived rather than retried. A task
still running after a few seconds stops at its next attempt. Without --queue
the task is looked for in every default queue. Exit code 1 when the task has
already completed, has failed and been archived, or cannot be found.

Examples:
  enqueue cancel 0b7e6c1e-6f4f-4c4e-9a39-3f1f2f9d8c11
  enqueue cancel 0b7e6c1e-6f4f-4c4e-9a39-3f1f2f9d8c11 --queue default --json`,
		noWait: true,
		task: func(t *taskCtx) int {
			a := t.app
			r, err := t.locate()
			if err != nil {
				return a.fail(err)
			}
			if err := t.cl.Cancel(t.ctx, r.Queue, r.ID); err != nil {
				if why := notCancellable(err); why != "" {
					fmt.Fprintf(a.stderr, "enqueue: cannot cancel %s %s: it is %s\n", r.Type, r.ID, why)
					if t.c.jsonOut {
						o := fromResult(r, false)
						o.Error = strPtr("task " + why)
						writeJSON(a.stdout, o, false)
					}
					return exitFailed
				}
				return a.fail(err)
			}
			o := fromResult(r, false)
			o.State, o.code = "", exitOK
			if after, err := t.cl.Status(t.ctx, r.Queue, r.ID); err == nil {
				o = fromResult(after, false)
				o.code = exitOK
			}
			switch o.State {
			case tasks.StateArchived:
				fmt.Fprintf(a.stderr, "enqueue: cancelled %s %s (queue %s)\n", r.Type, r.ID, r.Queue)
			case "":
				fmt.Fprintf(a.stderr, "enqueue: cancelled %s %s (queue %s); it is gone\n", r.Type, r.ID, r.Queue)
			default:
				fmt.Fprintf(a.stderr, "enqueue: cancelled %s %s (queue %s); still %s, it stops at its next attempt\n", r.Type, r.ID, r.Queue, o.State)
			}
			if t.c.jsonOut {
				writeJSON(a.stdout, o, false)
			}
			return exitOK
		},
	}
}

// notCancellable words why Cancel's err means there is nothing to cancel,
// or is "" for any other error.
func notCancellable(err error) string {
	switch {
	case errors.Is(err, tasks.ErrTaskFinished):
		return "already completed"
	case errors.Is(err, tasks.ErrTaskArchived):
		return "already archived (failed)"
	}
	return ""
}
