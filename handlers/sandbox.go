package handlers

import (
	"context"
	"errors"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/tasks"
)

// EnsureResult is the result of sandbox:ensure.
type EnsureResult struct {
	SandboxID string `json:"sandbox_id"`
	Provider  string `json:"provider,omitempty"`
	Created   bool   `json:"created"`
	Status    string `json:"status"`
}

func (h *Handlers) ensure(ctx context.Context, t *Task[tasks.SandboxEnsure]) (any, error) {
	p := t.Payload
	lctx, release, err := h.lock(ctx, p.Project, t.ID)
	if err != nil {
		return nil, err
	}
	defer release()
	return h.ensureLocked(lctx, p)
}

func (h *Handlers) ensureLocked(ctx context.Context, p tasks.SandboxEnsure) (*EnsureResult, error) {
	// Find first: the gateway's find-or-create does not say whether it
	// created, and the lease makes find-then-create race-free within
	// sandboxq.
	sb, err := h.gw.Find(ctx, p.Namespace, p.Name)
	if err != nil {
		return nil, classify(err)
	}
	created := false
	if sb == nil {
		opts := &gateway.CreateOptions{
			Timeout:    p.TimeoutMS,
			TemplateID: p.TemplateID,
			Metadata:   p.Metadata,
			Envs:       p.Envs,
			Provider:   p.Provider,
		}
		sb, err = h.gw.FindOrCreate(ctx, p.Namespace, p.Name, opts)
		if err != nil {
			return nil, classify(err)
		}
		created = true
	}
	h.resolver.remember(p.Project, sb)
	status := sb.Status
	if status == "" {
		status = gateway.SandboxReady
	}
	return &EnsureResult{SandboxID: sb.SandboxID, Provider: sb.Provider, Created: created, Status: status}, nil
}

// DestroyResult is the result of sandbox:destroy. Destroyed is false when
// there was nothing to destroy, which is success.
type DestroyResult struct {
	Destroyed bool   `json:"destroyed"`
	SandboxID string `json:"sandbox_id,omitempty"`
}

func (h *Handlers) destroy(ctx context.Context, t *Task[tasks.SandboxDestroy]) (any, error) {
	p := t.Payload
	lctx, release, err := h.lock(ctx, p.Project, t.ID)
	if err != nil {
		return nil, err
	}
	defer release()
	h.resolver.forget(p.Project)
	sb, err := h.gw.Find(lctx, p.Namespace, p.Name)
	if err != nil {
		return nil, classify(err)
	}
	if sb == nil {
		return &DestroyResult{}, nil
	}
	err = h.gw.Destroy(lctx, sb.SandboxID)
	h.resolver.forget(p.Project)
	if errors.Is(err, gateway.ErrNotFound) {
		return &DestroyResult{SandboxID: sb.SandboxID}, nil
	}
	if err != nil {
		return nil, classify(err)
	}
	return &DestroyResult{Destroyed: true, SandboxID: sb.SandboxID}, nil
}
