package handlers

import (
	"context"
	"errors"
	"time"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/tasks"
)

// serverWaiter is one wait for a server: what it waits for, and what it
// has seen so far.
type serverWaiter struct {
	p        tasks.Project
	d        Servers
	res      *ServerResult // the latest state seen
	fromID   string        // the stream position read up to
	waitFor  string
	timeout  time.Duration
	progress func(*ServerResult)

	h       *Handlers
	action  string
	start   time.Time
	seenRun bool // the stream has shown the new run under way
}

// waitStep is what a wait does after one stretch of following the stream.
type waitStep int

const (
	stepRead  waitStep = iota // read the server's status directly
	stepAgain                 // follow the stream again at once
	stepEnd                   // the wait is over
)

// waitServer waits until the server reaches the status the task waits for
// (ready, or running with wait_for "running"), fails, stops, or the wait
// times out; each change is reported through progress. A failed or stopped
// server, or a timeout, ends the task as a permanent failure whose result
// says what the server did.
//
// With an event store it follows the project's event stream from fromID
// (the position before the task acted) and asks the watcher to poll fast;
// a direct read every FallbackRead covers a project no watcher runs for.
// Without one it polls the daemon every PollInterval.
func (h *Handlers) waitServer(ctx context.Context, w *serverWaiter) (*ServerResult, error) {
	w.h, w.action, w.start = h, w.res.Action, time.Now()
	if w.timeout <= 0 {
		w.timeout = h.cfg.DefaultWaitTimeout
	}
	wctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	if serverDone(w.res, w.waitFor) {
		return w.finish(ctx, nil)
	}
	viaEvents := h.waitThroughEvents()
	interval := h.cfg.PollInterval
	if viaEvents {
		interval = h.cfg.FallbackRead
		if err := h.cfg.Store.Expedite(wctx, w.p); err != nil {
			h.log.WarnContext(ctx, "ask the watcher to poll fast", "namespace", w.p.Namespace, "name", w.p.Name, "err", err)
		}
	}
	for {
		step, err := stepRead, error(nil)
		if viaEvents {
			step, err = w.follow(ctx, wctx, interval)
		} else if !pause(wctx, interval) {
			step, err = stepEnd, w.ended(ctx)
		}
		if step == stepRead {
			step, err = w.read(ctx, wctx)
		}
		if step == stepEnd {
			return w.finish(ctx, err)
		}
	}
}

// observe takes a new state, reports it if it changed, and says whether
// the wait is over.
func (w *serverWaiter) observe(next *ServerResult) bool {
	next.Action = w.action
	next.WaitedMS = time.Since(w.start).Milliseconds()
	if next.Status != w.res.Status || next.URL != w.res.URL || next.Port != w.res.Port {
		w.progress(next)
	}
	w.res = next
	return serverDone(w.res, w.waitFor)
}

// finish is the task's outcome: err, or a permanent failure for a server
// that failed or stopped, whose result carries the tail of the server's
// output (from the event of that transition, else read from the daemon).
func (w *serverWaiter) finish(ctx context.Context, err error) (*ServerResult, error) {
	res := w.res
	res.WaitedMS = time.Since(w.start).Milliseconds()
	if err != nil {
		return res, err
	}
	if sandboxq.ServerStatus(res.Status).Terminal() && res.Logs == "" {
		res.Logs = w.logTail(ctx)
	}
	switch res.Status {
	case sandboxq.ServerFailed:
		return res, Permanentf("server %q failed%s", res.Slug, exitDetail(res))
	case sandboxq.ServerStopped:
		return res, Permanentf("server %q stopped before it was %s%s", res.Slug, waitTarget(w.waitFor), exitDetail(res))
	}
	return res, nil
}

// ended is the error of a wait whose wctx ended: the caller's own
// cancellation, or else the wait's timeout.
func (w *serverWaiter) ended(ctx context.Context) error {
	if ctx.Err() != nil {
		return ctxErr(ctx)
	}
	return Permanentf("server %q was not %s within %v (status %s)", w.res.Slug, waitTarget(w.waitFor), w.timeout, w.res.Status)
}

// follow reads the stream until the next direct read is due (interval).
func (w *serverWaiter) follow(ctx, wctx context.Context, interval time.Duration) (waitStep, error) {
	sctx, cancel := context.WithTimeout(wctx, interval)
	_, last, err := w.h.cfg.Store.WaitServer(sctx, w.p, w.res.Slug, w.fromID, w.fromStream(wctx))
	cancel()
	if last != "" {
		w.fromID = last
	}
	switch {
	case err == nil:
		return stepEnd, nil
	case errors.Is(err, events.ErrSandboxDestroyed):
		return stepEnd, Permanentf("the sandbox was destroyed while waiting for server %q", w.res.Slug)
	case wctx.Err() != nil:
		return stepEnd, w.ended(ctx)
	case errors.Is(err, context.DeadlineExceeded):
		return stepRead, nil // the stretch is over: a direct read is due
	}
	w.h.log.WarnContext(ctx, "read events while waiting for a server", "slug", w.res.Slug, "err", err)
	if !pause(wctx, w.h.cfg.PollInterval) {
		return stepAgain, nil // the next follow ends the wait
	}
	return stepRead, nil
}

// fromStream is the until function of a stream read. The stream after
// fromID can begin with the end of the server this task replaced
// (stopped, failed). Until the stream has shown the new run under way, an
// ending is checked against the daemon before it is believed.
func (w *serverWaiter) fromStream(wctx context.Context) func(events.ServerState) bool {
	return func(st events.ServerState) bool {
		next := &ServerResult{Slug: w.res.Slug, Status: st.Status, URL: st.URL, Port: st.Port, ExitCode: st.ExitCode, Error: st.Error, Logs: st.Logs}
		if up(st.Status) {
			w.seenRun = true
		} else if !w.seenRun {
			s, err := w.d.GetServer(wctx, w.res.Slug)
			if err != nil || up(s.Status) {
				return false
			}
			next = serverResult(s, w.action)
		}
		return w.observe(next)
	}
}

// read reads the server's status from the daemon.
func (w *serverWaiter) read(ctx, wctx context.Context) (waitStep, error) {
	s, err := w.d.GetServer(wctx, w.res.Slug)
	switch {
	case err == nil:
		if w.observe(serverResult(s, w.action)) {
			return stepEnd, nil
		}
	case wctx.Err() != nil:
		return stepEnd, w.ended(ctx)
	case gateway.IsRetryable(err):
		// A blip while waiting is not a reason to give up, but it is a
		// reason to slow down before asking again.
		pause(wctx, w.h.cfg.PollInterval)
	default:
		return stepEnd, classify(err)
	}
	return stepRead, nil
}

// logTail reads the tail of the server's output (gateway.LogTail); ""
// when the daemon cannot give it.
func (w *serverWaiter) logTail(ctx context.Context) string {
	r, ok := w.d.(gateway.LogReader)
	if !ok {
		return ""
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	logs, err := gateway.LogTail(lctx, r, w.res.Slug)
	if err != nil {
		w.h.log.WarnContext(ctx, "read server logs", "slug", w.res.Slug, "err", err)
	}
	return logs
}
