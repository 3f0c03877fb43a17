package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/tasks"
)

// TasksView is the answer of GET /projects/{namespace}/{name}/tasks.
type TasksView struct {
	Tasks []tasks.TaskRecord `json:"tasks"`
}

// LogsView is the answer of GET /projects/{namespace}/{name}/servers/{slug}/logs.
type LogsView struct {
	Slug string `json:"slug"`
	Logs string `json:"logs"`
}

// maxLogTail bounds ?tail= of the logs route.
const maxLogTail = 10000

// projectTasks is GET /projects/{namespace}/{name}/tasks?state=&limit=:
// the project's task index, newest first, results redacted.
func (a *API) projectTasks(w http.ResponseWriter, r *http.Request) {
	if !onlyQuery(w, r, "state", "limit") {
		return
	}
	p, ok := projectOf(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	opts := tasks.ListOptions{State: q.Get("state")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q is not a positive whole number", v), "limit")
			return
		}
		opts.Limit = n
	}
	recs, err := a.opts.Client.ProjectTasks(r.Context(), p, opts)
	var ve *tasks.ValidationError
	switch {
	case errors.As(err, &ve):
		writeValidation(w, err)
		return
	case err != nil:
		a.internalError(w, r, "project tasks", err)
		return
	}
	for i := range recs {
		recs[i].Result = redactJSON(recs[i].Result)
	}
	writeJSON(w, http.StatusOK, TasksView{Tasks: recs})
}

// getServerLogs is GET /projects/{namespace}/{name}/servers/{slug}/logs?tail=N:
// the server's combined output as the daemon keeps it, the last N lines
// when tail is given.
func (a *API) getServerLogs(w http.ResponseWriter, r *http.Request) {
	slug := r.PathValue("slug")
	if err := tasks.CheckSlug("slug", slug); err != nil {
		writeValidation(w, err)
		return
	}
	if !onlyQuery(w, r, "tail") {
		return
	}
	tail := 0
	if v := r.URL.Query().Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLogTail {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("tail %q is not a whole number from 1 to %d", v, maxLogTail), "tail")
			return
		}
		tail = n
	}
	readDaemon(a, w, r, "read server logs", fmt.Sprintf("has no server %q", slug), func(ctx context.Context, d *gateway.Daemon) (LogsView, error) {
		logs, err := d.ServerLogs(ctx, slug, gateway.LogCombined)
		if err != nil {
			return LogsView{}, err
		}
		out := logs.Logs
		if tail > 0 {
			out = sandboxq.LastLines(out, tail)
		}
		return LogsView{Slug: slug, Logs: out}, nil
	})
}

// retryTask is POST /tasks/{queue}/{id}/retry: tasks.Client.Retry, 202
// with the new task (or the live duplicate a deduplicated type names).
func (a *API) retryTask(w http.ResponseWriter, r *http.Request) {
	if !onlyQuery(w, r) {
		return
	}
	queue, id := r.PathValue("queue"), r.PathValue("id")
	e, err := a.opts.Client.Retry(r.Context(), queue, id)
	if errors.Is(err, tasks.ErrTaskNotFound) && a.reregister(r.Context(), queue, id) {
		e, err = a.opts.Client.Retry(r.Context(), queue, id)
	}
	var ve *tasks.ValidationError
	switch {
	case errors.Is(err, tasks.ErrTaskNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no task %s in queue %s (never enqueued, or gone after its retention)", id, queue), "")
		return
	case errors.Is(err, tasks.ErrNotRetryable):
		writeError(w, http.StatusConflict, fmt.Sprintf("task %s cannot be retried: only an archived or cancelled task can (%v)", id, err), "")
		return
	case errors.As(err, &ve):
		writeValidation(w, err)
		return
	case err != nil:
		a.internalError(w, r, "retry task", err)
		return
	}
	writeJSON(w, http.StatusAccepted, e)
}
