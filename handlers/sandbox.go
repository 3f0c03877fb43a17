package handlers

import (
	"context"
	"errors"
	"fmt"

	"github.com/sandboxq/sandboxq/events"
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
	if err := h.record(ctx, p.Project, sb); err != nil {
		return nil, err
	}
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
		// Nothing to destroy; a registry entry left from an attempt that
		// destroyed the sandbox but did not get to record it is brought
		// in line.
		return &DestroyResult{}, h.recordDestroyed(lctx, p.Project, "")
	}
	err = h.gw.Destroy(lctx, sb.SandboxID)
	h.resolver.forget(p.Project)
	res := &DestroyResult{Destroyed: true, SandboxID: sb.SandboxID}
	switch {
	case errors.Is(err, gateway.ErrNotFound):
		res.Destroyed = false
	case err != nil:
		return nil, classify(err)
	}
	if err := h.recordDestroyed(lctx, p.Project, sb.SandboxID); err != nil {
		return nil, err
	}
	return res, nil
}

// recordDestroyed marks the sandbox's servers stopped (one
// server.status_changed{stopped} per server not stopped yet) and then the
// sandbox destroyed, which stops its watcher. sandboxID "" is the one the
// registry records. A no-op without a Store or a registry entry.
func (h *Handlers) recordDestroyed(ctx context.Context, p tasks.Project, sandboxID string) error {
	if h.cfg.Store == nil {
		return nil
	}
	if _, err := h.cfg.Store.StopServers(ctx, p, sandboxID); err != nil {
		return fmt.Errorf("record stopped servers of the destroyed sandbox: %w", err)
	}
	_, err := h.cfg.Store.SandboxStatus(ctx, p, sandboxID, tasks.SandboxDestroyed, "")
	if err != nil && !errors.Is(err, events.ErrNotFound) {
		return fmt.Errorf("record destroyed sandbox: %w", err)
	}
	return nil
}

// record puts the project's sandbox into the registry and has a watcher
// claim it at once. Both are no-ops without a Store.
func (h *Handlers) record(ctx context.Context, p tasks.Project, sb *gateway.Sandbox) error {
	if h.cfg.Store == nil {
		return nil
	}
	upsert := h.cfg.Store.Upsert
	if sb.Status == "" || sb.Status == gateway.SandboxReady {
		// A sandbox new to the registry is then recorded created and
		// ready, both as events.
		upsert = h.cfg.Store.UpsertReady
	}
	if err := upsert(ctx, p, sb.SandboxID, sb.Provider); err != nil {
		return fmt.Errorf("record sandbox: %w", err)
	}
	if h.cfg.Claim != nil {
		if err := h.cfg.Claim(ctx, p); err != nil {
			// Another process's claim loop picks it up within seconds.
			h.log.WarnContext(ctx, "claim watcher", "namespace", p.Namespace, "name", p.Name, "err", err)
		}
	}
	return nil
}
