package events

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// waitTimeout bounds every wait; the normal case takes milliseconds to a
// second, the margin is for a loaded 2-core machine.
const waitTimeout = 20 * time.Second

// waitFor polls cond every 20 ms until it holds or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("test ended waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

type testEnv struct {
	t     *testing.T
	prov  *local.Provider
	gw    *gateway.Client
	rdb   *redis.Client
	store *Store
	ns    string // namespace of this test's projects (pub/sub is shared by all databases)
}

func newEnv(t *testing.T, opts local.Config) *testEnv {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t, slog.LevelWarn)
	}
	prov, err := local.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := prov.Close(); err != nil {
			t.Errorf("close provider: %v", err)
		}
	})
	gw, err := gateway.NewClient(prov.URL(), gateway.WithAPIKey(prov.APIKey()), gateway.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redistest.New(t).Client(t)
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	return &testEnv{t: t, prov: prov, gw: gw, rdb: rdb, store: NewStore(rdb, StoreConfig{}), ns: fmt.Sprintf("t%08x", h.Sum32())}
}

func testLogger(t *testing.T, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: level}))
}

// sandbox creates the project's sandbox and registers it, as sandbox:ensure does.
func (e *testEnv) sandbox(name string) (tasks.Project, *gateway.Sandbox) {
	e.t.Helper()
	p := tasks.Project{Namespace: e.ns, Name: name}
	sb, err := e.gw.FindOrCreate(e.t.Context(), p.Namespace, p.Name, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.store.Upsert(e.t.Context(), p, sb.SandboxID, sb.Provider); err != nil {
		e.t.Fatal(err)
	}
	return p, sb
}

// config is a Manager configuration with test-sized intervals: slow
// polling is long, so what the tests see comes from signals, events lines,
// resyncs and expedites rather than from routine polls.
func (e *testEnv) config(owner string) Config {
	return Config{
		Redis: e.rdb, Gateway: e.gw, Store: e.store, OwnerID: owner,
		Logger:        testLogger(e.t, slog.LevelWarn),
		LeaseTTL:      time.Second,
		ClaimInterval: 100 * time.Millisecond,
		FastPoll:      100 * time.Millisecond,
		SlowPoll:      time.Minute,
		PingInterval:  time.Second,
		ReconnectMin:  50 * time.Millisecond,
		ReconnectMax:  500 * time.Millisecond,
	}
}

// connTracker records which sources of which projects are connected.
type connTracker struct {
	mu    sync.Mutex
	count map[string]int // "member source" → connections made
	lines map[string]int
}

func (c *connTracker) connected(member, source string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.count == nil {
		c.count = map[string]int{}
	}
	c.count[member+" "+source]++
}

func (c *connTracker) line(member string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lines == nil {
		c.lines = map[string]int{}
	}
	c.lines[member]++
}

func (c *connTracker) connections(p tasks.Project, source string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count[schema.IndexMember(p)+" "+source]
}

func (c *connTracker) linesOf(p tasks.Project) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lines[schema.IndexMember(p)]
}

type runningManager struct {
	*Manager
	cancel context.CancelFunc
	done   chan struct{}
	conns  *connTracker
}

// run starts a Manager that runs until the test ends (or stop/kill).
func (e *testEnv) run(cfg Config) *runningManager {
	e.t.Helper()
	m, err := NewManager(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ct := &connTracker{}
	m.hooks.connected = ct.connected
	m.hooks.line = ct.line
	ctx, cancel := context.WithCancel(context.Background())
	rm := &runningManager{Manager: m, cancel: cancel, done: make(chan struct{}), conns: ct}
	go func() {
		defer close(rm.done)
		if err := m.Run(ctx); err != nil {
			e.t.Errorf("Run: %v", err)
		}
	}()
	e.t.Cleanup(rm.stop)
	return rm
}

// stop ends Run as a shutdown does (leases released) and waits for it.
func (r *runningManager) stop() {
	r.cancel()
	<-r.done
}

// kill ends Run like kill -9 would: leases stay until they expire.
func (r *runningManager) kill() {
	r.abandon.Store(true)
	r.stop()
}

func (e *testEnv) daemon(sb *gateway.Sandbox) *gateway.Daemon { return e.gw.Daemon(sb) }

// startServer starts a helper server; delay postpones its listening (so
// it stays running, not ready, that long).
func (e *testEnv) startServer(sb *gateway.Sandbox, slug string, delay time.Duration) gateway.ServerInfo {
	e.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := e.daemon(sb).StartServer(e.t.Context(), gateway.ServerStartOptions{
		Slug: slug, Start: "exec '" + exe + "'",
		Environment: map[string]string{helperEnv: "serve", "HELPER_DELAY": delay.String()},
	})
	if err != nil {
		e.t.Fatalf("start server %s: %v", slug, err)
	}
	return *info
}

// waitDaemon waits until the daemon reports the server in status.
func (e *testEnv) waitDaemon(sb *gateway.Sandbox, slug, status string) gateway.ServerInfo {
	e.t.Helper()
	var info *gateway.ServerInfo
	waitFor(e.t, "daemon: server "+slug+" "+status, func() bool {
		var err error
		info, err = e.daemon(sb).GetServer(e.t.Context(), slug)
		return err == nil && info.Status == status
	})
	return *info
}

// crash makes a helper server exit with code 3.
func crash(t *testing.T, url string) {
	t.Helper()
	res, err := http.Get(url + "/crash")
	if err == nil {
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
}

// events returns the project's whole stream.
func (e *testEnv) events(p tasks.Project) []tasks.Event {
	e.t.Helper()
	evs, err := schema.ReadEvents(e.t.Context(), e.rdb, p, "0", 100000, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// statuses lists the statuses of slug's server events in stream order.
func (e *testEnv) statuses(p tasks.Project, slug string) []string {
	e.t.Helper()
	var out []string
	for _, ev := range e.events(p) {
		if ev.Type == tasks.EventServerStatusChanged && ev.ServerName == slug {
			out = append(out, ev.Status)
		}
	}
	return out
}

// waitStatuses waits until slug's statuses end with want (its last
// len(want) events) and returns them all.
func (e *testEnv) waitStatuses(p tasks.Project, slug string, cond func([]string) bool, what string) []string {
	e.t.Helper()
	var got []string
	waitFor(e.t, what, func() bool {
		got = e.statuses(p, slug)
		return cond(got)
	})
	return got
}

func endsWith(want ...string) func([]string) bool {
	return func(got []string) bool {
		return len(got) >= len(want) && slices.Equal(got[len(got)-len(want):], want)
	}
}

func contains(want string) func([]string) bool {
	return func(got []string) bool { return slices.Contains(got, want) }
}

// noRepeats fails if two consecutive statuses are equal (a duplicate
// event of one transition).
func noRepeats(t *testing.T, got []string) {
	t.Helper()
	for i := 1; i < len(got); i++ {
		if got[i] == got[i-1] {
			t.Fatalf("status %q recorded twice in a row: %s", got[i], strings.Join(got, " → "))
		}
	}
}
