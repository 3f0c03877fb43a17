package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// finished reports whether a task has reached a final state.
func finished(res *tasks.Result) bool {
	return res.State == tasks.StateCompleted || res.State == tasks.StateArchived
}

// parseWait reads ?wait=: a Go duration ("30s", "1m", "500ms") or a number
// of seconds, capped at max. Its messages say what is wrong: negative, not
// a finite number, or not a duration at all.
func parseWait(v string, max time.Duration) (time.Duration, string) {
	if v == "" {
		return 0, ""
	}
	if strings.HasPrefix(v, "-") {
		return 0, fmt.Sprintf("wait %q must not be negative; send a duration from 0 to %v (longer waits are capped)", v, max)
	}
	if d, err := time.ParseDuration(v); err == nil {
		return min(d, max), ""
	}
	n, err := strconv.ParseFloat(v, 64)
	switch {
	case err != nil && !errors.Is(err, strconv.ErrRange):
		return 0, fmt.Sprintf("wait %q is not a duration such as \"30s\" or a number of seconds", v)
	case math.IsNaN(n) || math.IsInf(n, 0):
		return 0, fmt.Sprintf("wait %q is not a finite number of seconds; send a duration from 0 to %v", v, max)
	case n >= max.Seconds():
		// Converting first would overflow time.Duration (1e300 s).
		return max, ""
	}
	return time.Duration(n * float64(time.Second)), ""
}

// getTask is GET /tasks/{queue}/{id}[?wait=].
func (a *API) getTask(w http.ResponseWriter, r *http.Request) {
	queue, id := r.PathValue("queue"), r.PathValue("id")
	for k := range r.URL.Query() {
		if k != "wait" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown query parameter %q; known: wait", k), k)
			return
		}
	}
	wait, msg := parseWait(r.URL.Query().Get("wait"), a.opts.MaxWait)
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg, "wait")
		return
	}
	res, err := a.status(r.Context(), queue, id)
	if wait > 0 && err == nil && !finished(res) {
		res, err = a.waitTask(r, queue, id, wait, res)
	}
	switch {
	case errors.Is(err, tasks.ErrTaskNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no task %s in queue %s (never enqueued, or gone after its retention)", id, queue), "")
		return
	case err != nil:
		a.internalError(w, r, "task status", err)
		return
	}
	res.Attempts, err = a.opts.Client.Attempts(r.Context(), queue, id)
	if err != nil && !errors.Is(err, tasks.ErrTaskNotFound) {
		a.internalError(w, r, "task attempts", err)
		return
	}
	if res.Attempts == nil {
		res.Attempts = []tasks.Attempt{}
	}
	writeJSON(w, http.StatusOK, redactResult(res))
}

// waitTask waits (tasks.Client.Wait: the worker's notice, polling only
// as a fallback) until the task is finished, wait has passed, the client
// has gone or the API is closed; it returns the last state seen.
func (a *API) waitTask(r *http.Request, queue, id string, wait time.Duration, last *tasks.Result) (*tasks.Result, error) {
	a.streams.Add(1)
	defer a.streams.Add(-1)
	ctx, cancel := a.withClosing(r.Context())
	defer cancel()
	ctx, cancelWait := context.WithTimeout(ctx, wait)
	defer cancelWait()
	res, err := a.opts.Client.Wait(ctx, queue, id)
	if res != nil {
		last = res
	}
	var failed *tasks.TaskFailedError
	switch {
	case err == nil, errors.As(err, &failed):
		return res, nil
	case ctx.Err() != nil:
		return last, nil
	}
	return nil, err
}

// status is Client.Status, except that a task of a served queue missing
// from asynq's set of queues is still found (see reregister).
func (a *API) status(ctx context.Context, queue, id string) (*tasks.Result, error) {
	res, err := a.opts.Client.Status(ctx, queue, id)
	if errors.Is(err, tasks.ErrTaskNotFound) && a.reregister(ctx, queue, id) {
		return a.opts.Client.Status(ctx, queue, id)
	}
	return res, err
}

// reregister adds queue to asynq's set of queues if it is served and task
// id exists in it, and reports whether it did. After Redis restarted
// empty, a producer's asynq client does not register a queue again (it
// does so once per process), and the Inspector finds no task in a queue
// missing from the set.
func (a *API) reregister(ctx context.Context, queue, id string) bool {
	if !slices.Contains(a.opts.Queues, queue) {
		return false
	}
	n, err := a.opts.Redis.Exists(ctx, schema.AsynqTaskKey(queue, id)).Result()
	if err != nil || n == 0 {
		return false
	}
	return a.opts.Redis.SAdd(ctx, allQueuesKey, queue).Err() == nil
}

// cancelTask is DELETE /tasks/{queue}/{id}: tasks.Client.Cancel, then the
// task's state (200 once it is archived, 202 while a running task is still
// stopping).
func (a *API) cancelTask(w http.ResponseWriter, r *http.Request) {
	queue, id := r.PathValue("queue"), r.PathValue("id")
	err := a.opts.Client.Cancel(r.Context(), queue, id)
	if errors.Is(err, tasks.ErrTaskNotFound) && a.reregister(r.Context(), queue, id) {
		err = a.opts.Client.Cancel(r.Context(), queue, id)
	}
	switch {
	case errors.Is(err, tasks.ErrTaskNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no task %s in queue %s (never enqueued, or gone after its retention)", id, queue), "")
		return
	case errors.Is(err, tasks.ErrTaskFinished):
		writeError(w, http.StatusConflict, fmt.Sprintf("task %s has already completed; there is nothing to cancel", id), "")
		return
	case errors.Is(err, tasks.ErrTaskArchived):
		writeError(w, http.StatusConflict, fmt.Sprintf("task %s is already archived (failed); there is nothing to cancel", id), "")
		return
	case err != nil:
		a.internalError(w, r, "cancel task", err)
		return
	}
	res, err := a.status(r.Context(), queue, id)
	switch {
	case errors.Is(err, tasks.ErrTaskNotFound):
		// Deleted while it was being cancelled: it will not run again.
		writeJSON(w, http.StatusOK, &tasks.Result{ID: id, Queue: queue, State: "deleted", Cancelled: true})
		return
	case err != nil:
		a.internalError(w, r, "task status", err)
		return
	}
	status := http.StatusOK
	if !finished(res) {
		status = http.StatusAccepted
	}
	writeJSON(w, status, redactResult(res))
}
