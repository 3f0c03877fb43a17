package events

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// With both sources (daemon WebSocket + polls, events service lines), a
// server started directly at the daemon shows up in the stream as
// starting → running → ready, each exactly once although both sources
// report ready; a crash after ready is failed with its exit code, in the
// stream and the registry, with no task involved.
func TestWatcherBothSourcesLifecycleAndCrash(t *testing.T) {
	t.Parallel()
	e := newEnv(t, local.Config{})
	p, sb := e.sandbox("shop")
	cfg := e.config("w1")
	cfg.EventsAddr = e.prov.EventsAddr()
	var got []tasks.Event
	var mu sync.Mutex
	cfg.OnEvent = func(ev tasks.Event) {
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
	}
	m := e.run(cfg)
	waitFor(t, "both sources connected", func() bool {
		return m.conns.connections(p, "ws") > 0 && m.conns.connections(p, "events") > 0
	})

	e.startServer(sb, "web", 0)
	ready := e.waitDaemon(sb, "web", "ready")
	statuses := e.waitStatuses(p, "web", contains("ready"), "ready in the stream")
	if !slices.Equal(statuses, []string{"starting", "running", "ready"}) {
		t.Fatalf("stream statuses %v, want starting, running, ready", statuses)
	}
	if m.conns.linesOf(p) < 3 {
		t.Fatalf("events service delivered %d lines, want at least 3", m.conns.linesOf(p))
	}
	evs := e.events(p)
	last := evs[len(evs)-1]
	if last.URL != ready.URL || last.Port != ready.Port || last.SandboxID != sb.SandboxID || last.Namespace != p.Namespace || last.Name != "shop" {
		t.Fatalf("ready event %+v, daemon says %+v", last, ready)
	}
	entry, err := e.store.Get(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	if st := entry.Servers["web"]; st.Status != sandboxq.ServerReady || st.URL != ready.URL || st.Port != ready.Port {
		t.Fatalf("registry web = %+v", st)
	}
	if entry.Watcher != "w1" {
		t.Fatalf("registry watcher = %q, want w1", entry.Watcher)
	}

	crash(t, ready.URL)
	statuses = e.waitStatuses(p, "web", contains("failed"), "failed in the stream")
	if !slices.Equal(statuses, []string{"starting", "running", "ready", "failed"}) {
		t.Fatalf("stream statuses %v", statuses)
	}
	evs = e.events(p)
	failed := evs[len(evs)-1]
	if failed.ExitCode == nil || *failed.ExitCode != 3 {
		t.Fatalf("failed event %+v, want exit code 3", failed)
	}
	entry, _ = e.store.Get(t.Context(), p)
	if st := entry.Servers["web"]; st.Status != sandboxq.ServerFailed || st.ExitCode == nil || *st.ExitCode != 3 {
		t.Fatalf("registry web after crash = %+v", st)
	}
	if entry.LastEvent == nil || entry.LastEvent.ID != failed.ID {
		t.Fatalf("registry last_event %+v, want %s", entry.LastEvent, failed.ID)
	}
	// OnEvent saw exactly what was appended (after the created event). It
	// is called once the append returned, so the stream can show the event
	// a moment before the callback has run.
	waitFor(t, "OnEvent to see the failed event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 4
	})
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 4 || got[3].ID != failed.ID {
		t.Errorf("OnEvent saw %d events: %+v", len(got), got)
	}
}

// Daemon WebSocket only: signals and expedited polling. The server
// listens after 1.5 s, so running lasts long enough for fast polls to see
// it; ready comes from the signal.
func TestWatcherWebSocketOnlyExpedited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, local.Config{})
	p, sb := e.sandbox("shop")
	m := e.run(e.config("w1"))
	waitFor(t, "websocket connected", func() bool { return m.conns.connections(p, "ws") > 0 })
	if err := m.Expedite(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	e.startServer(sb, "web", 1500*time.Millisecond)
	statuses := e.waitStatuses(p, "web", contains("ready"), "ready in the stream")
	// starting lasts microseconds and may be missed by polls; running and
	// ready must be there, once each.
	trimmed := slices.DeleteFunc(slices.Clone(statuses), func(s string) bool { return s == "starting" })
	if !slices.Equal(trimmed, []string{"running", "ready"}) || len(statuses) > 3 {
		t.Fatalf("stream statuses %v, want [starting] running ready", statuses)
	}
	ready := e.waitDaemon(sb, "web", "ready")
	crash(t, ready.URL)
	statuses = e.waitStatuses(p, "web", contains("failed"), "failed in the stream")
	trimmed = slices.DeleteFunc(slices.Clone(statuses), func(s string) bool { return s == "starting" })
	if !slices.Equal(trimmed, []string{"running", "ready", "failed"}) {
		t.Fatalf("stream statuses %v, want [starting] running ready failed", statuses)
	}
	evs := e.events(p)
	if f := evs[len(evs)-1]; f.Status != "failed" || f.ExitCode == nil || *f.ExitCode != 3 {
		t.Fatalf("last event %+v, want failed with exit code 3", f)
	}
}

// The local provider drops every WebSocket every 2 s for about 10 s while
// servers start and stop; the watcher polls slowly (1 min), so it learns of
// each change from a signal or from the resync poll after a reconnect. No
// transition is lost and none is recorded twice. Each step waits for its
// event before the next, since a change undone while the socket is down
// leaves nothing to poll (the events service covers that case).
func TestWatcherSurvivesDroppedWebSockets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, local.Config{Faults: local.Faults{DropWebSocketsEvery: 2 * time.Second}})
	p, sb := e.sandbox("shop")
	m := e.run(e.config("w1"))
	waitFor(t, "websocket connected", func() bool { return m.conns.connections(p, "ws") > 0 })
	d := e.daemon(sb)
	start := time.Now()
	cycles := 0
	for time.Since(start) < 10*time.Second {
		e.startServer(sb, "web", 0)
		e.waitStatuses(p, "web", endsWith("ready"), "ready after start")
		if err := d.StopServer(t.Context(), "web"); err != nil {
			t.Fatal(err)
		}
		e.waitStatuses(p, "web", endsWith("stopped"), "stopped after stop")
		cycles++
	}
	if n := m.conns.connections(p, "ws"); n < 4 {
		t.Fatalf("websocket connected %d times in %v, want at least 4 (drops every 2 s)", n, time.Since(start))
	}
	statuses := e.statuses(p, "web")
	noRepeats(t, statuses)
	milestones := slices.DeleteFunc(slices.Clone(statuses), func(s string) bool { return s != "ready" && s != "stopped" })
	want := slices.Repeat([]string{"ready", "stopped"}, cycles)
	if !slices.Equal(milestones, want) {
		t.Fatalf("ready/stopped events %v, want %d cycles; all: %s", milestones, cycles, strings.Join(statuses, " "))
	}
	t.Logf("%d cycles, %d websocket connections, %d events", cycles, m.conns.connections(p, "ws"), len(statuses))
}

// A sandbox marked destroyed (as sandbox:destroy does) stops its watcher
// and frees the lease.
func TestWatcherStopsOnDestroyed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, local.Config{})
	p, sb := e.sandbox("shop")
	m := e.run(e.config("w1"))
	waitFor(t, "watching", func() bool { return m.Watching(p) && m.conns.connections(p, "ws") > 0 })
	if err := e.gw.Destroy(t.Context(), sb.SandboxID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.SandboxStatus(t.Context(), p, sb.SandboxID, tasks.SandboxDestroyed, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "watcher stopped and lease released", func() bool {
		n, err := e.rdb.Exists(t.Context(), schema.WatcherKey(p)).Result()
		return !m.Watching(p) && m.Held() == 0 && err == nil && n == 0
	})
	// The claim scan does not take it again.
	p2, _ := e.sandbox("other")
	waitFor(t, "other claimed", func() bool { return m.Watching(p2) })
	if m.Watching(p) {
		t.Fatal("destroyed sandbox claimed again")
	}
}

// A sandbox that vanished at the gateway is recorded destroyed by its
// watcher.
func TestWatcherRecordsVanishedSandbox(t *testing.T) {
	t.Parallel()
	e := newEnv(t, local.Config{})
	p, sb := e.sandbox("shop")
	if err := e.gw.Destroy(t.Context(), sb.SandboxID); err != nil {
		t.Fatal(err)
	}
	m := e.run(e.config("w1"))
	waitFor(t, "destroyed recorded", func() bool {
		en, err := e.store.Get(t.Context(), p)
		return err == nil && en.Status == tasks.SandboxDestroyed
	})
	waitFor(t, "watcher stopped", func() bool { return !m.Watching(p) })
	evs := e.events(p)
	if last := evs[len(evs)-1]; last.Type != tasks.EventSandboxStatusChanged || last.Status != tasks.SandboxDestroyed || last.Error == "" {
		t.Fatalf("last event %+v", last)
	}
}

// The sandbox destroyed at the gateway behind sandboxq's back: the daemon
// refuses the watcher, which finds the sandbox gone, records it destroyed
// and stops.
func TestWatcherNoticesSandboxGoneAtGateway(t *testing.T) {
	t.Parallel()
	e := newEnv(t, local.Config{})
	p, sb := e.sandbox("shop")
	m := e.run(e.config("w1"))
	waitFor(t, "websocket connected", func() bool { return m.conns.connections(p, "ws") > 0 })
	if err := e.gw.Destroy(t.Context(), sb.SandboxID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "destroyed recorded", func() bool {
		en, err := e.store.Get(t.Context(), p)
		return err == nil && en.Status == tasks.SandboxDestroyed
	})
	waitFor(t, "watcher stopped", func() bool { return !m.Watching(p) })
	var destroyed int
	for _, ev := range e.events(p) {
		if ev.Status == tasks.SandboxDestroyed {
			destroyed++
		}
	}
	if destroyed != 1 {
		t.Fatalf("%d destroyed events, want 1", destroyed)
	}
}

// sandbox:ensure records a new sandbox for the project (the old one
// expired): the watcher moves to it and records its servers under the new
// id.
func TestWatcherFollowsReplacedSandbox(t *testing.T) {
	t.Parallel()
	e := newEnv(t, local.Config{})
	p, old := e.sandbox("shop")
	m := e.run(e.config("w1"))
	waitFor(t, "websocket connected", func() bool { return m.conns.connections(p, "ws") > 0 })
	if err := e.gw.Destroy(t.Context(), old.SandboxID); err != nil {
		t.Fatal(err)
	}
	_, sb := e.sandbox("shop") // find-or-create makes a new one; Upsert records it
	if sb.SandboxID == old.SandboxID {
		t.Fatal("gateway returned the destroyed sandbox")
	}
	waitFor(t, "watcher on the new sandbox", func() bool { return m.conns.connections(p, "ws") > 1 })
	e.startServer(sb, "web", 0)
	waitFor(t, "ready of the new sandbox", func() bool {
		for _, ev := range e.events(p) {
			if ev.ServerName == "web" && ev.Status == sandboxq.ServerReady && ev.SandboxID == sb.SandboxID {
				return true
			}
		}
		return false
	})
	en, err := e.store.Get(t.Context(), p)
	if err != nil || en.SandboxID != sb.SandboxID || en.Status != tasks.SandboxReady || !m.Watching(p) {
		t.Fatalf("entry %+v, %v, watching %v", en, err, m.Watching(p))
	}
}
