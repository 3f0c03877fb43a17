package handlers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/internal/backoff"
	"github.com/sandboxq/sandboxq/tasks"
)

// ServerResult is the result of server:start, server:stop and
// server:restart, and the progress they report while they wait.
type ServerResult struct {
	Slug     string `json:"slug"`
	Status   string `json:"status"`
	URL      string `json:"url,omitempty"`
	Port     int    `json:"port,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Error    string `json:"error,omitempty"`
	WaitedMS int64  `json:"waited_ms"`
	// Action says what the task did: "started", "restarted", "unchanged"
	// (the same server was already up), "stopped" or "absent".
	Action string `json:"action,omitempty"`
	// Logs is the tail of the server's output when it ended failed or
	// stopped (sandboxq.LogTail: the last 50 lines, at most 8 KiB, values
	// of the task's env masked).
	Logs string `json:"logs,omitempty"`
}

func serverResult(s *gateway.ServerInfo, action string) *ServerResult {
	return &ServerResult{Slug: s.Slug, Status: s.Status, URL: s.URL, Port: s.Port, ExitCode: s.ExitCode, Error: s.Error, Action: action}
}

// up reports whether a server is running or on its way there.
func up(status string) bool { return sandboxq.ServerStatus(status).Live() }

func (h *Handlers) serverStart(ctx context.Context, t *Task[tasks.ServerStart]) (any, error) {
	res, err := h.startServer(ctx, t.ID, t.Payload, func(r *ServerResult) { _ = t.SetResult(r) })
	if err != nil && res != nil && errors.Is(context.Cause(ctx), errCancelled) {
		h.stopCancelledStart(ctx, t.ID, t.Payload.Project, res)
	}
	return res, err
}

// cancelledStopTimeout bounds the stop of a server whose start was
// cancelled.
const cancelledStopTimeout = 15 * time.Second

// stopCancelledStart stops the server a cancelled server:start started (or
// replaced) if it was not ready yet: cancelling the start takes back what
// it began. A server the task found already up ("unchanged") or that became
// ready is left alone. It runs under the project lease, on a context that
// outlives the cancelled one; a failure is logged.
func (h *Handlers) stopCancelledStart(ctx context.Context, owner string, p tasks.Project, res *ServerResult) {
	if (res.Action != "started" && res.Action != "restarted") || res.Status == sandboxq.ServerReady {
		return
	}
	stopped := false
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelledStopTimeout)
	defer cancel()
	lctx, release, err := h.lock(sctx, p, owner)
	if err == nil {
		defer release()
		err = h.withSandbox(lctx, p, false, func(_ *gateway.Sandbox, d Daemon) error {
			if cur, err := d.GetServer(lctx, res.Slug); err == nil && (cur.Status == sandboxq.ServerReady || !up(cur.Status)) {
				return nil // it became ready meanwhile, or is not running
			}
			err := d.StopServer(lctx, res.Slug)
			if errors.Is(err, gateway.ErrNotFound) {
				return nil
			}
			stopped = err == nil
			return err
		})
	}
	if err != nil {
		h.log.WarnContext(ctx, "stop the server of a cancelled server:start", "namespace", p.Namespace, "name", p.Name, "slug", res.Slug, "err", err)
		return
	}
	if !stopped {
		return
	}
	h.log.InfoContext(ctx, "stopped the server of a cancelled server:start", "namespace", p.Namespace, "name", p.Name, "slug", res.Slug, "status", res.Status)
}

// startServer starts the server under the project lease, releases the lease,
// then waits for the server outside it (DESIGN.md §4.3) when asked to.
func (h *Handlers) startServer(ctx context.Context, owner string, p tasks.ServerStart, progress func(*ServerResult)) (*ServerResult, error) {
	opts := gateway.ServerStartOptions{
		Slug:          p.Slug,
		Start:         p.Command,
		Install:       p.Install,
		Path:          p.Path,
		EnvFile:       p.EnvFile,
		Environment:   p.Env,
		Port:          p.Port,
		RestartPolicy: p.RestartPolicy,
		MaxRestarts:   p.MaxRestarts,
		HealthCheck:   p.HealthCheck,
	}
	w := serverWait{wait: p.ShouldWait(), waitFor: p.WaitFor, timeout: time.Duration(p.WaitTimeoutMS) * time.Millisecond}
	return h.actThenWait(ctx, owner, p.Project, boolOr(p.Ensure, true), w, progress, func(ctx context.Context, d Servers) (*ServerResult, error) {
		cur, err := d.GetServer(ctx, p.Slug)
		switch {
		case errors.Is(err, gateway.ErrNotFound):
			cur = nil
		case err != nil:
			return nil, err
		}
		if cur != nil && up(cur.Status) && sameServer(cur, opts) {
			return serverResult(cur, "unchanged"), nil
		}
		action := "started"
		if cur != nil {
			// A different server under this slug, or the same one stopped
			// or failed: replace it with the requested configuration.
			if err := d.DeleteServer(ctx, p.Slug); err != nil && !errors.Is(err, gateway.ErrNotFound) {
				return nil, err
			}
			action = "restarted"
		}
		s, err := d.StartServer(ctx, opts)
		if err != nil {
			return nil, err
		}
		return serverResult(s, action), nil
	})
}

// serverWait says whether and how long a task waits for its server.
type serverWait struct {
	wait    bool
	waitFor string
	timeout time.Duration
}

// actThenWait runs act on the project's daemon under the project lease,
// releases the lease, and then, if asked, waits for the server act returned
// (DESIGN.md §4.3: the lease covers the mutation, not the waiting).
func (h *Handlers) actThenWait(ctx context.Context, owner string, p tasks.Project, create bool, w serverWait, progress func(*ServerResult),
	act func(context.Context, Servers) (*ServerResult, error)) (*ServerResult, error) {
	lctx, release, err := h.lock(ctx, p, owner)
	if err != nil {
		return nil, err
	}
	fromID, err := h.streamPosition(lctx, p)
	if err != nil {
		release()
		return nil, err
	}
	var (
		res    *ServerResult
		daemon Servers
	)
	err = h.withSandbox(lctx, p, create, func(_ *gateway.Sandbox, d Daemon) error {
		daemon = d
		var err error
		res, err = act(lctx, d)
		return err
	})
	release()
	if err != nil {
		return nil, err
	}
	if !w.wait {
		return res, nil
	}
	progress(res)
	return h.waitServer(ctx, &serverWaiter{p: p, d: daemon, res: res, fromID: fromID, waitFor: w.waitFor, timeout: w.timeout, progress: progress})
}

// streamPosition is the id of the project's newest event, taken before a
// task acts so that its wait sees every transition the action causes ("" if
// there is no event store).
func (h *Handlers) streamPosition(ctx context.Context, p tasks.Project) (string, error) {
	if !h.waitThroughEvents() {
		return "", nil
	}
	id, err := h.cfg.Store.LastEventID(ctx, p)
	if err != nil {
		return "", fmt.Errorf("read event stream position: %w", err)
	}
	return id, nil
}

// sameServer reports whether a running server was started with the options
// a task asks for now, so that a retried or repeated start leaves it alone.
func sameServer(cur *gateway.ServerInfo, opts gateway.ServerStartOptions) bool {
	start := cur.Start
	if start == "" {
		start = cur.Command
	}
	if start != opts.Start || cur.Install != opts.Install {
		return false
	}
	if opts.Port != 0 && cur.Port != 0 && cur.Port != opts.Port {
		return false
	}
	if len(opts.Environment) > 0 && !maps.Equal(cur.Environment, opts.Environment) {
		return false
	}
	return true
}

func (h *Handlers) serverStop(ctx context.Context, t *Task[tasks.ServerStop]) (any, error) {
	p := t.Payload
	lctx, release, err := h.lock(ctx, p.Project, t.ID)
	if err != nil {
		return nil, err
	}
	defer release()
	var res *ServerResult
	err = h.withSandbox(lctx, p.Project, false, func(_ *gateway.Sandbox, d Daemon) error {
		err := d.StopServer(lctx, p.Slug)
		if errors.Is(err, gateway.ErrNotFound) {
			res = &ServerResult{Slug: p.Slug, Status: sandboxq.ServerStopped, Action: "absent"}
			return nil
		}
		if err != nil {
			return err
		}
		s, err := d.GetServer(lctx, p.Slug)
		if err != nil {
			return err
		}
		res = serverResult(s, "stopped")
		return nil
	})
	if errors.Is(err, errNoSandbox) {
		return &ServerResult{Slug: p.Slug, Status: sandboxq.ServerStopped, Action: "absent"}, nil
	}
	return res, err
}

func (h *Handlers) serverRestart(ctx context.Context, t *Task[tasks.ServerRestart]) (any, error) {
	return h.restartServer(ctx, t.ID, t.Payload, func(r *ServerResult) { _ = t.SetResult(r) })
}

func (h *Handlers) restartServer(ctx context.Context, owner string, p tasks.ServerRestart, progress func(*ServerResult)) (*ServerResult, error) {
	w := serverWait{wait: p.ShouldWait(), waitFor: p.WaitFor, timeout: time.Duration(p.WaitTimeoutMS) * time.Millisecond}
	return h.actThenWait(ctx, owner, p.Project, false, w, progress, func(ctx context.Context, d Servers) (*ServerResult, error) {
		s, err := d.RestartServer(ctx, p.Slug)
		if err != nil {
			return nil, err
		}
		return serverResult(s, "restarted"), nil
	})
}

// pause waits d or until ctx is done, and reports whether it waited d
// (backoff.Sleep).
func pause(ctx context.Context, d time.Duration) bool {
	return backoff.Sleep(ctx, d) == nil
}

// waitThroughEvents reports whether server waits follow the event stream.
func (h *Handlers) waitThroughEvents() bool { return h.cfg.Store != nil && !h.cfg.WaitByPolling }

// serverDone reports whether a wait for waitFor is over at res.
func serverDone(res *ServerResult, waitFor string) bool {
	switch res.Status {
	case sandboxq.ServerReady, sandboxq.ServerFailed, sandboxq.ServerStopped:
		return true
	case sandboxq.ServerRunning:
		return waitFor == tasks.WaitForRunning
	}
	return false
}

func waitTarget(waitFor string) string {
	if waitFor == tasks.WaitForRunning {
		return "running"
	}
	return "ready"
}

func exitDetail(r *ServerResult) string {
	s := ""
	if r.ExitCode != nil {
		s = fmt.Sprintf(" with exit code %d", *r.ExitCode)
	}
	if r.Error != "" {
		s += ": " + r.Error
	}
	return s
}
