package worker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// eventsAfter reads the project's stream after fromID straight from Redis.
func (b *testBundle) eventsAfter(t *testing.T, p tasks.Project, fromID string) []tasks.Event {
	t.Helper()
	evs, err := schema.ReadEvents(t.Context(), b.rdb, p, fromID, 10000, 0)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func (b *testBundle) registry(t *testing.T, p tasks.Project) *events.Entry {
	t.Helper()
	e, err := events.NewStore(b.rdb, events.StoreConfig{}).Get(t.Context(), p)
	if err != nil {
		t.Fatalf("registry entry of %s/%s: %v", p.Namespace, p.Name, err)
	}
	return e
}

// TestDestroyStopsServersInRegistry: after sandbox:destroy the registry
// lists every server stopped without its (dead) URL, and the stream has
// exactly one server.status_changed{stopped} per server that was not
// stopped already, before sandbox.status_changed{destroyed}.
func TestDestroyStopsServersInRegistry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startWorker(t, nil)
	ctx := t.Context()
	p := proj("destroy-servers")
	for _, slug := range []string{"api", "idle"} {
		b.mustSucceed(t, b.ok(b.client.StartServer(ctx, tasks.ServerStart{Project: p, Slug: slug, Command: "sleep 300", Port: 0, WaitFor: tasks.WaitForRunning})), nil)
	}
	b.mustSucceed(t, b.ok(b.client.StopServer(ctx, tasks.ServerStop{Project: p, Slug: "idle"})), nil)
	testutil.Eventually(t, "the registry to show api running and idle stopped", 30*time.Second, func() bool {
		e := b.registry(t, p)
		return e.Servers["api"].Status == sandboxq.ServerRunning && e.Servers["idle"].Status == sandboxq.ServerStopped
	})
	from, err := schema.LastEventID(ctx, b.rdb, p)
	if err != nil {
		t.Fatal(err)
	}
	var d handlers.DestroyResult
	b.mustSucceed(t, b.ok(b.client.DestroySandbox(ctx, tasks.SandboxDestroy{Project: p})), &d)
	if !d.Destroyed {
		t.Fatalf("destroy = %+v", d)
	}

	e := b.registry(t, p)
	if e.Status != tasks.SandboxDestroyed {
		t.Errorf("registry status %q, want destroyed", e.Status)
	}
	for slug, st := range e.Servers {
		if st.Status != sandboxq.ServerStopped || st.URL != "" {
			t.Errorf("registry server %s = %+v, want stopped without a URL", slug, st)
		}
	}
	stopped := map[string]int{}
	destroyedAt, lastStop := -1, -1
	for i, ev := range b.eventsAfter(t, p, from) {
		switch {
		case ev.Type == tasks.EventServerStatusChanged && ev.Status == sandboxq.ServerStopped:
			stopped[ev.ServerName]++
			lastStop = i
		case ev.Type == tasks.EventSandboxStatusChanged && ev.Status == tasks.SandboxDestroyed:
			destroyedAt = i
		}
	}
	if stopped["api"] != 1 || stopped["idle"] != 0 || len(stopped) != 1 {
		t.Errorf("stopped events after destroy: %v, want exactly one for api and none for idle (already stopped)", stopped)
	}
	if destroyedAt < 0 || lastStop > destroyedAt {
		t.Errorf("sandbox destroyed event at %d, last server stop at %d: want the servers stopped first", destroyedAt, lastStop)
	}
}

// TestEnsureEmitsReady: a sandbox sandbox:ensure creates is recorded ready
// and the stream says created, then ready, once each.
func TestEnsureEmitsReady(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startWorker(t, nil)
	ctx := t.Context()
	p := proj("ensure-ready")
	var ens handlers.EnsureResult
	b.mustSucceed(t, b.ok(b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: p})), &ens)
	b.mustSucceed(t, b.ok(b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: p})), nil)
	var got []string
	for _, ev := range b.eventsAfter(t, p, "0") {
		if ev.Type == tasks.EventSandboxStatusChanged {
			if ev.SandboxID != ens.SandboxID {
				t.Errorf("event of sandbox %q, want %q", ev.SandboxID, ens.SandboxID)
			}
			got = append(got, ev.Status)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint([]string{tasks.SandboxCreated, tasks.SandboxReady}) {
		t.Fatalf("sandbox events %v, want [created ready]", got)
	}
	if e := b.registry(t, p); e.Status != tasks.SandboxReady || e.LastEvent == nil {
		t.Fatalf("registry = %+v, want ready", e)
	}
}

// TestCancelStartStopsServer: cancelling a server:start that waits for a
// server that never gets ready stops that server: its process is gone and
// the daemon lists it stopped.
func TestCancelStartStopsServer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startWorker(t, nil)
	ctx := t.Context()
	p := proj("cancel-start")
	var ens handlers.EnsureResult
	b.mustSucceed(t, b.ok(b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: p})), &ens)
	// Never ready: it opens no port.
	e := b.ok(b.client.StartServer(ctx, tasks.ServerStart{Project: p, Slug: "slow", Command: "sleep 300"}))
	var pids []int
	testutil.Eventually(t, "the server process to run while the task waits", 30*time.Second, func() bool {
		st, err := b.client.Status(ctx, e.Queue, e.ID)
		v, _ := b.lp.Sandbox(ens.SandboxID)
		pids = v.PIDs
		return err == nil && st.State == tasks.StateActive && len(pids) > 0
	})
	if err := b.client.Cancel(ctx, e.Queue, e.ID); err != nil {
		t.Fatal(err)
	}
	tf := b.mustFail(t, e)
	if !errors.Is(tf, tasks.ErrCancelled) {
		t.Fatalf("cancelled start = %+v", tf)
	}
	testutil.Eventually(t, "the cancelled start's server process to be gone", 15*time.Second, func() bool {
		for _, pid := range pids {
			if alive(pid) {
				return false
			}
		}
		return true
	})
	sb, err := b.gw.Find(ctx, p.Namespace, p.Name)
	if err != nil || sb == nil {
		t.Fatalf("find: %v %v", sb, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := b.gw.Daemon(sb).GetServer(cctx, "slow")
	if err != nil || s.Status != sandboxq.ServerStopped {
		t.Fatalf("server after the cancelled start = %+v, %v; want stopped", s, err)
	}
}
