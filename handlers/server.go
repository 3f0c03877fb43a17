package handlers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/sandboxq/sandboxq/gateway"
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
}

func serverResult(s *gateway.ServerInfo, action string) *ServerResult {
	return &ServerResult{Slug: s.Slug, Status: s.Status, URL: s.URL, Port: s.Port, ExitCode: s.ExitCode, Error: s.Error, Action: action}
}

// up reports whether a server is running or on its way there.
func up(status string) bool {
	switch status {
	case gateway.ServerInstalling, gateway.ServerStarting, gateway.ServerRunning, gateway.ServerReady, gateway.ServerRestarting:
		return true
	}
	return false
}

func (h *Handlers) serverStart(ctx context.Context, t *Task[tasks.ServerStart]) (any, error) {
	return h.startServer(ctx, t.ID, t.Payload, func(r *ServerResult) { _ = t.SetResult(r) })
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
	var (
		res    *ServerResult
		daemon *gateway.Daemon
	)
	lctx, release, err := h.lock(ctx, p.Project, owner)
	if err != nil {
		return nil, err
	}
	err = h.withSandbox(lctx, p.Project, boolOr(p.Ensure, true), func(_ *gateway.Sandbox, d *gateway.Daemon) error {
		daemon = d
		cur, err := d.GetServer(lctx, p.Slug)
		switch {
		case errors.Is(err, gateway.ErrNotFound):
			cur = nil
		case err != nil:
			return err
		}
		if cur != nil && up(cur.Status) && sameServer(cur, opts) {
			res = serverResult(cur, "unchanged")
			return nil
		}
		action := "started"
		if cur != nil {
			// A different server under this slug, or the same one stopped
			// or failed: replace it with the requested configuration.
			if err := d.DeleteServer(lctx, p.Slug); err != nil && !errors.Is(err, gateway.ErrNotFound) {
				return err
			}
			action = "restarted"
		}
		s, err := d.StartServer(lctx, opts)
		if err != nil {
			return err
		}
		res = serverResult(s, action)
		return nil
	})
	release()
	if err != nil {
		return nil, err
	}
	if !p.ShouldWait() {
		return res, nil
	}
	progress(res)
	return h.waitServer(ctx, daemon, res, p.WaitFor, time.Duration(p.WaitTimeoutMS)*time.Millisecond, progress)
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
	err = h.withSandbox(lctx, p.Project, false, func(_ *gateway.Sandbox, d *gateway.Daemon) error {
		err := d.StopServer(lctx, p.Slug)
		if errors.Is(err, gateway.ErrNotFound) {
			res = &ServerResult{Slug: p.Slug, Status: gateway.ServerStopped, Action: "absent"}
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
		return &ServerResult{Slug: p.Slug, Status: gateway.ServerStopped, Action: "absent"}, nil
	}
	return res, err
}

func (h *Handlers) serverRestart(ctx context.Context, t *Task[tasks.ServerRestart]) (any, error) {
	return h.restartServer(ctx, t.ID, t.Payload, func(r *ServerResult) { _ = t.SetResult(r) })
}

func (h *Handlers) restartServer(ctx context.Context, owner string, p tasks.ServerRestart, progress func(*ServerResult)) (*ServerResult, error) {
	lctx, release, err := h.lock(ctx, p.Project, owner)
	if err != nil {
		return nil, err
	}
	var (
		res    *ServerResult
		daemon *gateway.Daemon
	)
	err = h.withSandbox(lctx, p.Project, false, func(_ *gateway.Sandbox, d *gateway.Daemon) error {
		daemon = d
		s, err := d.RestartServer(lctx, p.Slug)
		if err != nil {
			return err
		}
		res = serverResult(s, "restarted")
		return nil
	})
	release()
	if err != nil {
		return nil, err
	}
	if !p.ShouldWait() {
		return res, nil
	}
	progress(res)
	return h.waitServer(ctx, daemon, res, p.WaitFor, time.Duration(p.WaitTimeoutMS)*time.Millisecond, progress)
}

// waitServer polls the server until it reaches the status the task waits for
// (ready, or running with wait_for "running"), fails, stops, or the wait
// times out. Each change is reported through progress. A failed or stopped
// server, or a timeout, ends the task as a permanent failure whose result
// says what the server did.
func (h *Handlers) waitServer(ctx context.Context, d *gateway.Daemon, res *ServerResult, waitFor string, timeout time.Duration, progress func(*ServerResult)) (*ServerResult, error) {
	if timeout <= 0 {
		timeout = h.cfg.DefaultWaitTimeout
	}
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(h.cfg.PollInterval)
	defer tick.Stop()
	action := res.Action
	for {
		res.WaitedMS = time.Since(start).Milliseconds()
		switch {
		case res.Status == gateway.ServerReady,
			res.Status == gateway.ServerRunning && waitFor == tasks.WaitForRunning:
			return res, nil
		case res.Status == gateway.ServerFailed:
			return res, Permanentf("server %q failed%s", res.Slug, exitDetail(res))
		case res.Status == gateway.ServerStopped:
			return res, Permanentf("server %q stopped before it was %s%s", res.Slug, waitTarget(waitFor), exitDetail(res))
		}
		select {
		case <-ctx.Done():
			return res, ctxErr(ctx)
		case <-deadline.C:
			return res, Permanentf("server %q was not %s within %v (status %s)", res.Slug, waitTarget(waitFor), timeout, res.Status)
		case <-tick.C:
		}
		s, err := d.GetServer(ctx, res.Slug)
		if err != nil {
			if ctx.Err() != nil {
				return res, ctxErr(ctx)
			}
			if gateway.IsRetryable(err) {
				continue // a blip while waiting is not a reason to give up
			}
			return res, classify(err)
		}
		next := serverResult(s, action)
		next.WaitedMS = time.Since(start).Milliseconds()
		if next.Status != res.Status || next.URL != res.URL || next.Port != res.Port {
			progress(next)
		}
		res = next
	}
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
