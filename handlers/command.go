package handlers

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/tasks"
)

// MaxCommandOutput caps stdout and stderr each in a command:run result.
const MaxCommandOutput = 64 << 10

// CommandResult is the result of command:run.
type CommandResult struct {
	ExitCode        int    `json:"exit_code"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	StdoutTruncated bool   `json:"stdout_truncated,omitempty"`
	StderrTruncated bool   `json:"stderr_truncated,omitempty"`
	DurationMS      int64  `json:"duration_ms"`
}

func (h *Handlers) commandRun(ctx context.Context, t *Task[tasks.CommandRun]) (any, error) {
	p := t.Payload
	lctx, release, err := h.lock(ctx, p.Project, t.ID)
	if err != nil {
		return nil, err
	}
	defer release()
	return h.runCommand(lctx, p)
}

func (h *Handlers) runCommand(ctx context.Context, p tasks.CommandRun) (*CommandResult, error) {
	var res *CommandResult
	err := h.withSandbox(ctx, p.Project, boolOr(p.Ensure, true), func(_ *gateway.Sandbox, d Daemon) error {
		cctx := ctx
		if p.TimeoutMS > 0 {
			// Give the daemon a moment past its own timeout to answer.
			var cancel context.CancelFunc
			cctx, cancel = context.WithTimeout(ctx, time.Duration(p.TimeoutMS)*time.Millisecond+10*time.Second)
			defer cancel()
		}
		start := time.Now()
		r, err := d.RunCommand(cctx, gateway.RunCommandRequest{Command: p.Command, Cwd: p.Cwd, Env: p.Env, TimeoutMS: p.TimeoutMS})
		if err != nil {
			return err
		}
		res = &CommandResult{DurationMS: r.DurationMS}
		if res.DurationMS == 0 {
			res.DurationMS = time.Since(start).Milliseconds()
		}
		if r.ExitCode != nil {
			res.ExitCode = *r.ExitCode
		}
		res.Stdout, res.StdoutTruncated = capOutput(r.Stdout)
		res.Stderr, res.StderrTruncated = capOutput(r.Stderr)
		if r.Truncated {
			res.StdoutTruncated, res.StderrTruncated = true, true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if res.ExitCode != 0 && boolOr(p.FailOnNonzero, true) {
		return res, Permanentf("command exited with code %d", res.ExitCode)
	}
	return res, nil
}

// capOutput cuts s to MaxCommandOutput bytes on a rune boundary.
func capOutput(s string) (string, bool) {
	if len(s) <= MaxCommandOutput {
		return s, false
	}
	cut := MaxCommandOutput
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], true
}

// EnvResult is the result of env:update: key names only, never values.
type EnvResult struct {
	File    string   `json:"file"`
	Set     []string `json:"set,omitempty"`
	Removed []string `json:"removed,omitempty"`
}

func (h *Handlers) envUpdate(ctx context.Context, t *Task[tasks.EnvUpdate]) (any, error) {
	p := t.Payload
	lctx, release, err := h.lock(ctx, p.Project, t.ID)
	if err != nil {
		return nil, err
	}
	defer release()
	return h.updateEnv(lctx, p)
}

func (h *Handlers) updateEnv(ctx context.Context, p tasks.EnvUpdate) (*EnvResult, error) {
	file := p.File
	if file == "" {
		file = tasks.DefaultEnvFile
	}
	res := &EnvResult{File: file}
	err := h.withSandbox(ctx, p.Project, boolOr(p.Ensure, true), func(_ *gateway.Sandbox, d Daemon) error {
		if len(p.Set) > 0 {
			keys, err := d.SetEnv(ctx, file, p.Set)
			if err != nil {
				return fmt.Errorf("set env: %w", err)
			}
			res.Set = keys
		}
		if len(p.Remove) > 0 {
			keys, err := d.DeleteEnv(ctx, file, p.Remove)
			if err != nil {
				return fmt.Errorf("remove env: %w", err)
			}
			res.Removed = keys
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}
