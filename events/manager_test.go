package events

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// ownersOf returns, per project, the ids of the managers watching it.
func ownersOf(ps []tasks.Project, ms ...*runningManager) map[tasks.Project][]string {
	out := map[tasks.Project][]string{}
	for _, p := range ps {
		for _, m := range ms {
			if m.Watching(p) {
				out[p] = append(out[p], m.cfg.OwnerID)
			}
		}
	}
	return out
}

// exactlyOne reports whether every project is watched by exactly one of
// the managers and its lease names that manager.
func (e *testEnv) exactlyOne(ps []tasks.Project, ms ...*runningManager) error {
	owners := ownersOf(ps, ms...)
	for _, p := range ps {
		if len(owners[p]) != 1 {
			return fmt.Errorf("%s watched by %v", p.Name, owners[p])
		}
		lease, _ := e.rdb.Get(e.t.Context(), schema.WatcherKey(p)).Result()
		if lease != owners[p][0] {
			return fmt.Errorf("%s watched by %s but its lease names %q", p.Name, owners[p][0], lease)
		}
	}
	return nil
}

// Three managers and 60 sandboxes: each sandbox is watched by exactly one.
// One manager dies without releasing its leases (kill -9); the others take
// its sandboxes over within 15 s, and a server that became ready while
// nobody watched appears in the stream after the takeover, once.
func TestManagersShareAndTakeOver(t *testing.T) {
	t.Parallel()
	e := newEnv(t, local.Config{})
	const n = 60
	ps := make([]tasks.Project, n)
	sbs := map[tasks.Project]*gateway.Sandbox{}
	for i := range ps {
		p, sb := e.sandbox(fmt.Sprintf("p%02d", i))
		ps[i], sbs[p] = p, sb
	}
	var ms []*runningManager
	for i := range 3 {
		cfg := e.config(fmt.Sprintf("owner-%d", i))
		ms = append(ms, e.run(cfg))
	}
	waitFor(t, "all 60 watched", func() bool { return e.exactlyOne(ps, ms...) == nil })
	if total := ms[0].Held() + ms[1].Held() + ms[2].Held(); total != n {
		t.Fatalf("Held() sums to %d, want %d", total, n)
	}

	// Give the victim at least one sandbox, then kill it.
	victim := ms[0]
	var theirs []tasks.Project
	for _, p := range ps {
		if victim.Watching(p) {
			theirs = append(theirs, p)
		}
	}
	t.Logf("held: %d %d %d", ms[0].Held(), ms[1].Held(), ms[2].Held())
	if len(theirs) == 0 {
		// Managers share fairly, but a loaded machine can delay one's first
		// heartbeat past another's first scan. Make the victim own all.
		ms[1].stop()
		ms[2].stop()
		waitFor(t, "victim takes all", func() bool { return victim.Held() == n })
		ms = []*runningManager{victim, e.run(e.config("owner-1b")), e.run(e.config("owner-2b"))}
		theirs = ps
	}
	gap := theirs[0]
	// Kill the victim. Its leases would last until their TTL; the test
	// holds them (no expiry) until it has made a transition, so that
	// transition surely happens while nobody watches.
	hold := func() {
		for _, p := range theirs {
			if err := e.rdb.Persist(t.Context(), schema.WatcherKey(p)).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	victim.abandon.Store(true)
	hold()
	victim.stop() // abandon: no release, like kill -9
	hold()        // a renewal may have come between the first hold and the stop
	for _, p := range theirs {
		if owner, _ := e.rdb.Get(t.Context(), schema.WatcherKey(p)).Result(); owner != victim.cfg.OwnerID {
			t.Fatalf("lease of %s names %q, want the dead %s", p.Name, owner, victim.cfg.OwnerID)
		}
	}
	before := len(e.events(gap))
	e.startServer(sbs[gap], "web", 0)
	e.waitDaemon(sbs[gap], "web", "ready")
	if got := len(e.events(gap)); got != before {
		t.Fatalf("events appended while the sandbox had no live watcher: %v", e.events(gap)[before:])
	}
	killed := time.Now()
	for _, p := range theirs {
		if err := e.rdb.PExpire(t.Context(), schema.WatcherKey(p), time.Second).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "sandboxes of the dead manager taken over", func() bool { return e.exactlyOne(ps, ms[1:]...) == nil })
	if took := time.Since(killed); took > 15*time.Second {
		t.Fatalf("takeover took %v, want within 15 s", took)
	}
	statuses := e.waitStatuses(gap, "web", contains("ready"), "ready of the gap in the stream")
	if !slices.Equal(statuses, []string{"ready"}) {
		t.Fatalf("statuses after takeover %v, want exactly [ready]", statuses)
	}
	// Resyncs of the takeover do not repeat it.
	if err := ms[1].Claim(t.Context(), gap); err != nil {
		t.Fatal(err)
	}
	if err := ms[2].Claim(t.Context(), gap); err != nil {
		t.Fatal(err)
	}
	e.waitDaemon(sbs[gap], "web", "ready")
	if got := e.statuses(gap, "web"); !slices.Equal(got, []string{"ready"}) {
		t.Fatalf("statuses after re-claims %v", got)
	}
	if err := e.exactlyOne(ps, ms[1:]...); err != nil {
		t.Fatal(err)
	}
}

// Claim watches a sandbox at once (no scan needed), refuses a project
// without a registry entry, and a graceful shutdown releases the leases.
func TestClaimAndRelease(t *testing.T) {
	t.Parallel()
	e := newEnv(t, local.Config{})
	cfg := e.config("solo")
	cfg.ClaimInterval = time.Hour // only the first scan, at start
	m := e.run(cfg)
	p, _ := e.sandbox("late")
	if err := m.Claim(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	if !m.Watching(p) {
		t.Fatal("Claim did not start a watcher")
	}
	entry, err := e.store.Get(t.Context(), p)
	if err != nil || entry.Watcher != "solo" {
		t.Fatalf("entry %+v, %v", entry, err)
	}
	err = m.Claim(t.Context(), tasks.Project{Namespace: e.ns, Name: "never-ensured"})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Claim without entry: %v, want ErrNotFound", err)
	}
	if err := m.Claim(t.Context(), tasks.Project{Name: "bad name"}); err == nil || !strings.Contains(err.Error(), "name") {
		t.Fatalf("Claim of invalid project: %v", err)
	}
	m.stop()
	if owner, _ := e.rdb.Get(t.Context(), schema.WatcherKey(p)).Result(); owner != "" {
		t.Fatalf("lease still held by %q after shutdown", owner)
	}
	entry, _ = e.store.Get(t.Context(), p)
	if entry.Watcher != "" {
		t.Fatalf("watcher %q after shutdown", entry.Watcher)
	}
	if m.Held() != 0 {
		t.Fatalf("Held() = %d after shutdown", m.Held())
	}
}

// A nudge from a Manager that is not running (or is full) makes a running
// one claim the sandbox at once.
func TestClaimNudge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, local.Config{})
	cfg := e.config("runner")
	cfg.ClaimInterval = time.Hour
	m := e.run(cfg)
	idle, err := NewManager(e.config("idle"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "runner subscribed", func() bool {
		n, err := e.rdb.PubSubNumSub(t.Context(), schema.WatchersChannel).Result()
		return err == nil && n[schema.WatchersChannel] > 0
	})
	p, _ := e.sandbox("nudged")
	if err := idle.Claim(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "runner claims on the nudge", func() bool { return m.Watching(p) })
}

// A lease taken away (expired and claimed by another process) stops the
// watcher and is reported through OnLeaseLost.
func TestLeaseLost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, local.Config{})
	lost := make(chan struct{}, 1)
	cfg := e.config("a")
	cfg.OnLeaseLost = func() {
		select {
		case lost <- struct{}{}:
		default:
		}
	}
	m := e.run(cfg)
	p, _ := e.sandbox("x")
	waitFor(t, "watching", func() bool { return m.Watching(p) })
	if err := e.rdb.Set(t.Context(), schema.WatcherKey(p), "someone-else", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(waitTimeout):
		t.Fatal("OnLeaseLost not called")
	}
	waitFor(t, "watcher stopped", func() bool { return !m.Watching(p) })
	if owner, _ := e.rdb.Get(t.Context(), schema.WatcherKey(p)).Result(); owner != "someone-else" {
		t.Fatalf("lease of the new owner was touched: %q", owner)
	}
}

func TestNewManagerValidates(t *testing.T) {
	t.Parallel()
	if _, err := NewManager(Config{}); err == nil || !strings.Contains(err.Error(), "Redis, Gateway, OwnerID") {
		t.Fatalf("empty config: %v", err)
	}
	e := newEnv(t, local.Config{})
	cfg := e.config("x")
	cfg.FastPoll = -time.Second
	if _, err := NewManager(cfg); err == nil || !strings.Contains(err.Error(), "FastPoll") {
		t.Fatalf("negative FastPoll: %v", err)
	}
}
