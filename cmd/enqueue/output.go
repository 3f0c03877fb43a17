package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/sandboxq/sandboxq/tasks"
)

// outcome is the --json object (DESIGN.md §9.1). Result and Error are null
// when there is none.
type outcome struct {
	ID        string          `json:"id"`
	Queue     string          `json:"queue"`
	Type      string          `json:"type"`
	Duplicate bool            `json:"duplicate"`
	State     string          `json:"state"`
	Result    json.RawMessage `json:"result"`
	Error     *string         `json:"error"`

	code int // exit code this outcome calls for
}

// filesOutcome is the --json object of write-files: the first task's
// fields, plus every task of the (possibly split) file set.
type filesOutcome struct {
	outcome
	Tasks []outcome `json:"tasks"`
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// fromResult fills an outcome from a task's status.
func fromResult(r *tasks.Result, duplicate bool) outcome {
	o := outcome{ID: r.ID, Queue: r.Queue, Type: r.Type, Duplicate: duplicate, State: r.State, Result: r.Result}
	o.Error = strPtr(r.LastError)
	if r.Cancelled {
		o.Error = strPtr("cancelled")
	}
	if r.State == tasks.StateArchived {
		o.code = exitFailed
	}
	return o
}

// worst picks the exit code of several outcomes: no Redis over a failure
// over a timeout over success.
func worst(os []outcome) int {
	codes := make([]int, 0, len(os))
	for _, o := range os {
		codes = append(codes, o.code)
	}
	for _, c := range []int{exitNoRedis, exitFailed, exitTimeout} {
		if slices.Contains(codes, c) {
			return c
		}
	}
	return exitOK
}

// report follows freshly enqueued tasks (waiting if asked), prints them and
// returns the exit code.
func (a *app) report(ctx context.Context, cl *tasks.Client, c *common, list []*tasks.Enqueued, files bool) int {
	outs := make([]outcome, 0, len(list))
	if c.wait {
		wctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		for _, e := range list {
			outs = append(outs, a.await(ctx, wctx, cl, c, e))
		}
	} else {
		for _, e := range list {
			o := outcome{ID: e.ID, Queue: e.Queue, Type: e.Type, Duplicate: e.Duplicate, State: tasks.StatePending}
			// The task is enqueued; a failed look-up must not make the
			// caller think otherwise, so it only leaves the state a guess.
			if r, err := cl.Status(ctx, e.Queue, e.ID); err == nil {
				o = fromResult(r, e.Duplicate)
				o.code = exitOK
			}
			if !c.jsonOut {
				if e.Duplicate {
					fmt.Fprintf(a.stderr, "enqueue: %s %s is already queued or running on queue %s (state %s); not enqueued again\n", e.Type, e.ID, e.Queue, o.State)
				} else {
					fmt.Fprintf(a.stderr, "enqueue: enqueued %s %s on queue %s\n", e.Type, e.ID, e.Queue)
				}
				fmt.Fprintln(a.stdout, e.ID)
			}
			outs = append(outs, o)
		}
	}
	if c.jsonOut {
		if files {
			writeJSON(a.stdout, filesOutcome{outcome: outs[0], Tasks: outs}, false)
		} else {
			writeJSON(a.stdout, outs[0], false)
		}
	} else if c.wait {
		a.printResults(outs)
	}
	return worst(outs)
}

// printResults prints waited-for results for humans: one pretty result, or
// an array of them for a split file set.
func (a *app) printResults(outs []outcome) {
	if len(outs) == 1 {
		if len(outs[0].Result) > 0 {
			writeJSON(a.stdout, outs[0].Result, true)
		}
		return
	}
	results := make([]json.RawMessage, len(outs))
	for i, o := range outs {
		results[i] = o.Result
		if results[i] == nil {
			results[i] = json.RawMessage("null")
		}
	}
	writeJSON(a.stdout, results, true)
}

// writeJSON writes v as one JSON document and a newline; pretty indents.
func writeJSON(w io.Writer, v any, pretty bool) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if pretty {
		enc.SetIndent("", "  ")
	}
	_ = enc.Encode(v)
}

// progressInterval is how often --wait looks at a task for progress lines.
const progressInterval = 200 * time.Millisecond

// await waits (until wctx ends) for the task to finish, printing progress
// on stderr, and returns its outcome. ctx is the command's own context: if
// it ended, the user interrupted the wait.
func (a *app) await(ctx, wctx context.Context, cl *tasks.Client, c *common, e *tasks.Enqueued) outcome {
	pctx, stop := context.WithCancel(wctx)
	sw := &statusWriter{w: a.stderr, mode: a.statusMode(c), name: e.Type + " " + e.ID}
	var wg sync.WaitGroup
	wg.Go(func() { a.progress(pctx, cl, e, sw) })
	res, err := cl.Wait(wctx, e.Queue, e.ID)
	stop()
	wg.Wait()
	sw.done()

	o := outcome{ID: e.ID, Queue: e.Queue, Type: e.Type, Duplicate: e.Duplicate, State: tasks.StatePending}
	if res != nil {
		o = fromResult(res, e.Duplicate)
	}
	name := e.Type + " " + e.ID
	var failed *tasks.TaskFailedError
	switch {
	case err == nil:
		fmt.Fprintf(a.stderr, "enqueue: %s completed\n", name)
		o.code = exitOK
	case errors.As(err, &failed):
		o.State, o.Result, o.code = tasks.StateArchived, failed.Result, exitFailed
		switch {
		case failed.Cancelled:
			fmt.Fprintf(a.stderr, "enqueue: %s was cancelled\n", name)
			o.Error = strPtr("cancelled")
		case failed.LastErr == "":
			fmt.Fprintf(a.stderr, "enqueue: %s was archived\n", name)
			o.Error = strPtr("archived")
		default:
			fmt.Fprintf(a.stderr, "enqueue: %s failed: %s\n", name, failed.LastErr)
			o.Error = strPtr(failed.LastErr)
		}
	case errors.Is(err, tasks.ErrTaskNotFound):
		fmt.Fprintf(a.stderr, "enqueue: %s: the task no longer exists (deleted, or its retention ended)\n", name)
		o.State, o.Error, o.code = "", strPtr("task not found"), exitFailed
	case ctx.Err() != nil:
		fmt.Fprintf(a.stderr, "enqueue: stopped waiting for %s (%s); the task goes on\n", name, o.State)
		o.Error, o.code = strPtr("wait interrupted"), exitTimeout
	case wctx.Err() != nil:
		fmt.Fprintf(a.stderr, "enqueue: %s is still %s after --timeout %v; the task goes on\n", name, o.State, c.timeout)
		o.Error, o.code = strPtr(fmt.Sprintf("wait timed out after %v", c.timeout)), exitTimeout
	default:
		fmt.Fprintf(a.stderr, "enqueue: waiting for %s: %v\n", name, err)
		o.Error, o.code = strPtr(err.Error()), exitFailed
		if isConnError(err) {
			o.code = exitNoRedis
		}
	}
	return o
}

// progress shows the task's state, attempt, elapsed time and (from the
// progress result its handler records) server status until ctx ends: one
// line replaced in place on a terminal, one JSON object per change with
// --json, else one plain line per change. Final states are left to the
// caller's final line.
func (a *app) progress(ctx context.Context, cl *tasks.Client, e *tasks.Enqueued, sw *statusWriter) {
	start := time.Now()
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	for {
		if r, err := cl.Status(ctx, e.Queue, e.ID); err == nil && ctx.Err() == nil &&
			r.State != tasks.StateCompleted && r.State != tasks.StateArchived {
			sw.update(newWaitStatus(r, time.Since(start)))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// statusMode is how this run shows a waiting task.
func (a *app) statusMode(c *common) statusMode {
	switch {
	case c.jsonOut:
		return statusJSON
	case a.tty:
		return statusLive
	}
	return statusLines
}

// compact returns JSON on one line, cut to a readable length.
func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		b.Reset()
		b.Write(raw)
	}
	const max = 400
	if b.Len() > max {
		return string(b.Bytes()[:max]) + "…"
	}
	return b.String()
}
