package handlers

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/sandboxq/sandboxq/tasks"
)

// Step statuses in a workflow result.
const (
	StepPending = "pending"
	StepRunning = "running"
	StepDone    = "done"
	StepFailed  = "failed"
)

// WorkflowResult is the result of workflow:run and its checkpoint: a retry
// skips every step whose status is done.
type WorkflowResult struct {
	Steps []StepResult `json:"steps"`
}

// StepResult is the state of one workflow step.
type StepResult struct {
	Type   string          `json:"type"`
	Status string          `json:"status"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

func (h *Handlers) workflowRun(ctx context.Context, t *Task[tasks.WorkflowRun]) (any, error) {
	p := t.Payload
	res := &WorkflowResult{Steps: make([]StepResult, len(p.Steps))}
	for i, s := range p.Steps {
		res.Steps[i] = StepResult{Type: s.Type, Status: StepPending}
	}
	// Resume from the checkpoint of an earlier attempt, retried or handed
	// back at shutdown (which does not count as a retry).
	if prev := previousResult[WorkflowResult](ctx, h, t.Queue, t.ID); prev != nil && len(prev.Steps) == len(res.Steps) {
		for i := range res.Steps {
			if prev.Steps[i].Type == res.Steps[i].Type {
				res.Steps[i] = prev.Steps[i]
			}
		}
	}
	checkpoint := func() { _ = t.SetResult(res) }
	for i, step := range p.Steps {
		if res.Steps[i].Status == StepDone {
			continue
		}
		res.Steps[i].Status, res.Steps[i].Error = StepRunning, ""
		checkpoint()
		progress := func(v any) {
			if b, err := json.Marshal(v); err == nil {
				res.Steps[i].Result = b
				checkpoint()
			}
		}
		out, err := h.runStep(ctx, t.ID, p.Project, step, res.Steps[i].Result, progress)
		if out != nil {
			if b, merr := json.Marshal(out); merr == nil {
				res.Steps[i].Result = b
			}
		}
		if err != nil {
			if isPermanent(err) {
				res.Steps[i].Status = StepFailed
			}
			res.Steps[i].Error = err.Error()
			return res, fmt.Errorf("step %d (%s): %w", i, step.Type, err)
		}
		res.Steps[i].Status = StepDone
		checkpoint()
	}
	return res, nil
}

// runStep runs one workflow step with the same code as the task type it
// names; each step takes and releases the project lease itself.
func (h *Handlers) runStep(ctx context.Context, owner string, project tasks.Project, step tasks.Step, prev json.RawMessage, progress func(any)) (any, error) {
	switch step.Type {
	case tasks.TypeSandboxEnsure:
		p, err := decodeStep[tasks.SandboxEnsure](step, project)
		if err != nil {
			return nil, err
		}
		return locked(h, ctx, p.Project, owner, func(ctx context.Context) (any, error) { return h.ensureLocked(ctx, p) })
	case tasks.TypeSandboxDestroy:
		p, err := decodeStep[tasks.SandboxDestroy](step, project)
		if err != nil {
			return nil, err
		}
		return h.destroy(ctx, &Task[tasks.SandboxDestroy]{Payload: p, ID: owner})
	case tasks.TypeFilesWrite:
		p, err := decodeStep[tasks.FilesWrite](step, project)
		if err != nil {
			return nil, err
		}
		var before *FilesResult
		if len(prev) > 0 {
			var r FilesResult
			if json.Unmarshal(prev, &r) == nil {
				before = &r
			}
		}
		return locked(h, ctx, p.Project, owner, func(ctx context.Context) (any, error) { return h.writeFiles(ctx, p, before) })
	case tasks.TypeServerStart:
		p, err := decodeStep[tasks.ServerStart](step, project)
		if err != nil {
			return nil, err
		}
		return h.startServer(ctx, owner, p, func(r *ServerResult) { progress(r) })
	case tasks.TypeServerStop:
		p, err := decodeStep[tasks.ServerStop](step, project)
		if err != nil {
			return nil, err
		}
		return h.serverStop(ctx, &Task[tasks.ServerStop]{Payload: p, ID: owner})
	case tasks.TypeServerRestart:
		p, err := decodeStep[tasks.ServerRestart](step, project)
		if err != nil {
			return nil, err
		}
		return h.restartServer(ctx, owner, p, func(r *ServerResult) { progress(r) })
	case tasks.TypeCommandRun:
		p, err := decodeStep[tasks.CommandRun](step, project)
		if err != nil {
			return nil, err
		}
		return locked(h, ctx, p.Project, owner, func(ctx context.Context) (any, error) { return h.runCommand(ctx, p) })
	case tasks.TypeEnvUpdate:
		p, err := decodeStep[tasks.EnvUpdate](step, project)
		if err != nil {
			return nil, err
		}
		return locked(h, ctx, p.Project, owner, func(ctx context.Context) (any, error) { return h.updateEnv(ctx, p) })
	}
	return nil, Permanentf("step type %q cannot run in a workflow", step.Type)
}

// locked runs fn under the project lease.
func locked(h *Handlers, ctx context.Context, p tasks.Project, owner string, fn func(context.Context) (any, error)) (any, error) {
	lctx, release, err := h.lock(ctx, p, owner)
	if err != nil {
		return nil, err
	}
	defer release()
	return fn(lctx)
}

// decodeStep decodes a step's payload as P. A step names no project of its
// own, or the workflow's.
func decodeStep[P tasks.Payload](step tasks.Step, project tasks.Project) (P, error) {
	var p P
	// Fill the workflow's project in, then let the step's own JSON (which
	// tasks validated to name the same project) decode over it.
	base, _ := json.Marshal(project)
	if err := json.Unmarshal(base, &p); err != nil {
		return p, Permanentf("step %s: %v", step.Type, err)
	}
	if len(step.Payload) > 0 {
		if err := json.Unmarshal(step.Payload, &p); err != nil {
			return p, Permanentf("step %s: %v", step.Type, err)
		}
	}
	if err := p.Validate(); err != nil {
		return p, Permanent(fmt.Errorf("step %s: %w", step.Type, err))
	}
	return p, nil
}
