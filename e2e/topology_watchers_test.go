package e2e

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// runManager runs an events.Manager on its own client until stop; stop
// with abandon closes the client first, so the manager's leases are not
// released (a kill -9), else it shuts down gracefully.
func runManager(t *testing.T, tp *topology, gw *gateway.Client, owner string) (*events.Manager, func(abandon bool)) {
	t.Helper()
	rdb := openURL(t, tp.url)
	m, err := events.NewManager(events.Config{
		Redis: rdb, Gateway: gw, Store: events.NewStore(rdb, events.StoreConfig{}), OwnerID: owner,
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError})),
		LeaseTTL: 2 * time.Second, ClaimInterval: 200 * time.Millisecond,
		FastPoll: 100 * time.Millisecond, SlowPoll: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.Run(ctx)
	}()
	stopped := false
	stop := func(abandon bool) {
		if stopped {
			return
		}
		stopped = true
		if abandon {
			_ = rdb.Close()
		}
		cancel()
		<-done
	}
	t.Cleanup(func() { stop(false) })
	return m, stop
}

// watcherTakeover: the owner of a sandbox's watcher dies without releasing
// its lease; while nobody watches, a server becomes ready; another manager
// takes the sandbox over and records that transition exactly once.
func watcherTakeover(t *testing.T, tp *topology) {
	_, gw, _ := localProvider(t)
	ctx := t.Context()
	p := tasks.Project{Namespace: "topo", Name: "watch"}
	sb, err := gw.FindOrCreate(ctx, p.Namespace, p.Name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := events.NewStore(tp.rdb, events.StoreConfig{}).Upsert(ctx, p, sb.SandboxID, sb.Provider); err != nil {
		t.Fatal(err)
	}
	victim, kill := runManager(t, tp, gw, "victim")
	if err := victim.Claim(ctx, p); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the victim to watch", 20*time.Second, func() bool { return victim.Watching(p) })
	heir, _ := runManager(t, tp, gw, "heir")
	kill(true)
	if owner, _ := tp.rdb.Get(ctx, schema.WatcherKey(p)).Result(); owner != "victim" {
		t.Fatalf("after the kill the lease names %q, want the dead victim", owner)
	}
	if _, err := gw.Daemon(sb).StartServer(ctx, gateway.ServerStartOptions{
		Slug: "web", Start: "exec python3 -m http.server $PORT --bind 127.0.0.1",
	}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the heir to take over and record ready", 30*time.Second, func() bool {
		return heir.Watching(p) && readyCount(t, tp.rdb, p) > 0
	})
	if owner, _ := tp.rdb.Get(ctx, schema.WatcherKey(p)).Result(); owner != "heir" {
		t.Fatalf("lease names %q, want heir", owner)
	}
	if n := readyCount(t, tp.rdb, p); n != 1 {
		t.Fatalf("server web recorded ready %d times, want once", n)
	}
}

func readyCount(t *testing.T, rdb redis.UniversalClient, p tasks.Project) int {
	evs, err := schema.ReadEvents(t.Context(), rdb, p, "0", 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Type == tasks.EventServerStatusChanged && ev.ServerName == "web" && ev.Status == "ready" {
			n++
		}
	}
	return n
}
