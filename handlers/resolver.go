package handlers

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/tasks"
)

// resolver maps a project to its sandbox through the gateway, the source of
// truth, and remembers each answer for ttl so that a burst of tasks on one
// project costs one find. A remembered answer that turns out stale (the
// daemon says 401 or 404: gateway.IsStaleSandbox) is dropped and looked up
// again; see withSandbox.
type resolver struct {
	gw  Gateway
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	cache map[tasks.Project]cached
}

type cached struct {
	sb      *gateway.Sandbox
	expires time.Time
}

func newResolver(gw Gateway, ttl time.Duration) *resolver {
	return &resolver{gw: gw, ttl: ttl, now: time.Now, cache: make(map[tasks.Project]cached)}
}

// errNoSandbox is returned by resolve when the project has no sandbox and the
// task was told not to create one.
var errNoSandbox = errors.New("project has no sandbox (enqueue sandbox:ensure first, or set ensure: true)")

// lookup returns the project's sandbox. fromCache reports whether the answer
// was remembered rather than fetched. With create it finds or creates; without,
// a missing sandbox is (nil, false, nil).
func (r *resolver) lookup(ctx context.Context, p tasks.Project, create bool, fresh bool) (sb *gateway.Sandbox, fromCache bool, err error) {
	if !fresh {
		r.mu.Lock()
		c, ok := r.cache[p]
		r.mu.Unlock()
		if ok && r.now().Before(c.expires) {
			return c.sb, true, nil
		}
	}
	if create {
		sb, err = r.gw.FindOrCreate(ctx, p.Namespace, p.Name, nil)
	} else {
		sb, err = r.gw.Find(ctx, p.Namespace, p.Name)
	}
	if err != nil {
		return nil, false, err
	}
	if sb == nil {
		r.forget(p)
		return nil, false, nil
	}
	r.remember(p, sb)
	return sb, false, nil
}

func (r *resolver) remember(p tasks.Project, sb *gateway.Sandbox) {
	if r.ttl <= 0 {
		return
	}
	r.mu.Lock()
	r.cache[p] = cached{sb: sb, expires: r.now().Add(r.ttl)}
	r.mu.Unlock()
}

func (r *resolver) forget(p tasks.Project) {
	r.mu.Lock()
	delete(r.cache, p)
	r.mu.Unlock()
}
