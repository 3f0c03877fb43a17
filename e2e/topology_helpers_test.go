package e2e

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/internal/backoff"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/redisurl"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/worker"
)

// topology is one Redis deployment the same behaviour runs on.
type topology struct {
	name string
	// url is the REDIS_URL the binaries are given.
	url string
	// rdb is the test's own client, opened from url as the binaries do.
	rdb redis.UniversalClient
	// flush empties every database of the topology.
	flush func(context.Context) error
	// cluster and sentinel are set for those topologies.
	cluster  *redistest.Cluster
	sentinel *redistest.Sentinel
}

// startTopology starts the named topology for the test: a database of the
// package's redis-server, a 6-node cluster or a sentinel set-up.
func startTopology(t *testing.T, name string) *topology {
	t.Helper()
	tp := &topology{name: name}
	switch name {
	case "standalone":
		db := redistest.New(t)
		tp.url = db.URL()
	case "cluster":
		tp.cluster = redistest.NewCluster(t)
		tp.url, tp.flush = tp.cluster.URL(), tp.cluster.FlushAll
	case "sentinel":
		tp.sentinel = redistest.NewSentinel(t)
		tp.url, tp.flush = tp.sentinel.URL(), tp.sentinel.FlushAll
	default:
		t.Fatalf("unknown topology %q", name)
	}
	tp.rdb = openURL(t, tp.url)
	if tp.flush == nil {
		rdb := tp.rdb
		tp.flush = func(ctx context.Context) error { return rdb.FlushDB(ctx).Err() }
	}
	return tp
}

// openURL opens a client from a REDIS_URL exactly as the binaries do,
// closed when the test ends.
func openURL(t testing.TB, url string) redis.UniversalClient {
	t.Helper()
	target, err := redisurl.Parse(url)
	if err != nil {
		t.Fatalf("parse %q: %v", url, err)
	}
	rdb := target.Open()
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// fresh empties the topology before a behaviour, so that one behaviour's
// queues, leases and schedules are not another's.
func (tp *topology) fresh(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := tp.flush(ctx); err != nil {
		t.Fatalf("%s: flush: %v", tp.name, err)
	}
}

// workerEnv is the environment that points a cmd/worker process at the
// topology and the local provider.
func workerEnv(tp *topology, lp *local.Provider) map[string]string {
	return map[string]string{
		"REDIS_URL":                tp.url,
		"COMPUTESDK_API_KEY":       lp.APIKey().Reveal(),
		"COMPUTESDK_GATEWAY_URL":   lp.URL(),
		"COMPUTESDK_GATEWAY_PATHS": "plural",
		"SANDBOXQ_CONCURRENCY":     "20",
	}
}

// runWorker runs an in-process worker on rdb until the test ends.
func runWorker(t *testing.T, rdb redis.UniversalClient, gw *gateway.Client, mutate func(*worker.Config)) *worker.Worker {
	t.Helper()
	cfg := worker.Config{
		Redis:           rdb,
		Gateway:         gw,
		Logger:          slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError})),
		Concurrency:     10,
		ShutdownTimeout: 5 * time.Second,
		Policy: &handlers.Policy{
			Backoff:       backoff.Policy{Base: 50 * time.Millisecond, Cap: time.Second},
			MaxRetryAfter: 2 * time.Second,
			BusyDelay:     200 * time.Millisecond,
		},
		Handlers:    handlers.Config{PollInterval: 50 * time.Millisecond, LeaseWait: time.Second},
		Maintenance: worker.MaintenanceConfig{Disabled: true},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	w, err := worker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker Run: %v", err)
			}
		})
	})
	return w
}

// localProvider starts a local provider recording what it observes.
func localProvider(t *testing.T) (*local.Provider, *gateway.Client, *testutil.Recorder) {
	t.Helper()
	rec := &testutil.Recorder{}
	lp, gw := testutil.Provider(t, local.Config{Observe: rec.Add}, gateway.WithTimeout(20*time.Second))
	return lp, gw, rec
}
