package events

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// signalsOnly makes cfg's watchers learn of changes from signals and from
// the poll that follows a claim or a (re)connection only: no timed poll
// comes within a test, and no claim scan.
func signalsOnly(cfg Config) Config {
	cfg.ClaimInterval = time.Hour
	cfg.FastPoll, cfg.SlowPoll, cfg.ReconcileInterval = time.Hour, time.Hour, time.Hour
	return cfg
}

// running reports whether m's Run has started (Claim then starts watchers
// in this process).
func (m *Manager) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.runCtx != nil
}

// wsUp reports whether p's watcher has its daemon WebSocket subscribed.
func (m *Manager) wsUp(p tasks.Project) bool {
	w := m.lookup(schema.IndexMember(p))
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.wsUp
}

// A sandbox recorded and claimed (as sandbox:ensure does) whose server
// starts at once: its ready event comes from the daemon WebSocket — the
// signal, or the poll made when the socket connected — with no timed poll
// to fall back on.
func TestWatcherNewSandboxReadyFromWebSocket(t *testing.T) {
	t.Parallel()
	e := newEnv(t, local.Config{})
	m := e.run(signalsOnly(e.config("w1")))
	waitFor(t, "manager running", m.running)
	var ps []tasks.Project
	for i := range 4 {
		p, sb := e.sandbox(fmt.Sprintf("new%d", i))
		if err := m.Claim(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		e.startServer(sb, "web", 0)
		ps = append(ps, p)
	}
	for _, p := range ps {
		noRepeats(t, e.waitStatuses(p, "web", contains("ready"), p.Name+": ready in the stream"))
		if m.conns.connections(p, "ws") == 0 {
			t.Fatalf("%s: ready recorded without a WebSocket", p.Name)
		}
	}
}

// A server that fails while the daemon WebSocket is down (dropped, and
// the daemon refusing every request) is recorded by the poll that follows
// the reconnection, with no timed poll to fall back on.
func TestWatcherCatchesTransitionOnReconnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t, local.Config{})
	p, sb := e.sandbox("shop")
	m := e.run(signalsOnly(e.config("w1")))
	waitFor(t, "manager running", m.running)
	if err := m.Claim(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "websocket connected", func() bool { return m.wsUp(p) })
	e.startServer(sb, "web", 0)
	e.waitStatuses(p, "web", endsWith("ready"), "ready in the stream")
	ready := e.waitDaemon(sb, "web", "ready")

	down := local.Faults{Errors: []local.Fault{{Rate: 1, Scope: local.ScopeDaemon}}, DropWebSocketsEvery: 10 * time.Millisecond}
	if err := e.prov.SetFaults(down); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "websocket down", func() bool { return !m.wsUp(p) })
	conns := m.conns.connections(p, "ws")
	crash(t, ready.URL)
	waitFor(t, "server process gone", func() bool {
		v, ok := e.prov.Sandbox(sb.SandboxID)
		return ok && len(v.PIDs) == 0
	})
	if got := e.statuses(p, "web"); got[len(got)-1] != "ready" {
		t.Fatalf("statuses %v changed while the watcher could not reach the daemon", got)
	}
	if err := e.prov.SetFaults(local.Faults{}); err != nil {
		t.Fatal(err)
	}
	got := e.waitStatuses(p, "web", endsWith("failed"), "failed in the stream after the reconnection")
	noRepeats(t, got)
	if m.conns.connections(p, "ws") <= conns {
		t.Fatalf("failed recorded without a reconnection")
	}
}

// An idle watcher with a subscribed WebSocket makes no status polls: over
// a window in which a watcher whose daemon refuses it polls (every
// SlowPoll) five times, the healthy one, with the same SlowPoll, polls not
// once.
func TestIdleHealthyWatcherDoesNotPoll(t *testing.T) {
	t.Parallel()
	countPolls := func(n *atomic.Int64) func(local.Observation) {
		return func(o local.Observation) {
			if o.Method == "GET" && strings.HasSuffix(o.Path, "/servers") {
				n.Add(1)
			}
		}
	}
	var healthyPolls, refusedPolls atomic.Int64
	healthy := newEnv(t, local.Config{Observe: countPolls(&healthyPolls)})
	refused := newEnv(t, local.Config{Observe: countPolls(&refusedPolls),
		Faults: local.Faults{Errors: []local.Fault{{Rate: 1, Scope: local.ScopeDaemon}}}})
	refused.ns += "r"
	fast := func(e *testEnv) Config {
		cfg := e.config("w1")
		cfg.FastPoll, cfg.SlowPoll, cfg.ReconcileInterval = 20*time.Millisecond, 20*time.Millisecond, time.Hour
		return cfg
	}
	p, _ := healthy.sandbox("idle")
	refused.sandbox("refused")
	m := healthy.run(fast(healthy))
	waitFor(t, "websocket connected", func() bool { return m.wsUp(p) })
	// The claim's poll and the reconnection's.
	waitFor(t, "first polls", func() bool { return healthyPolls.Load() >= 2 })
	refused.run(fast(refused))
	before := healthyPolls.Load()
	waitFor(t, "refused watcher polled 5 times", func() bool { return refusedPolls.Load() >= 5 })
	if got := healthyPolls.Load(); got != before || !m.wsUp(p) {
		t.Fatalf("healthy watcher polled %d times during the window (websocket up: %v)", got-before, m.wsUp(p))
	}
}
