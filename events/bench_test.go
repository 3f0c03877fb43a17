package events

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/secret"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// benchProviderEnv makes the test binary run a local provider for the
// benchmarks in a process of its own, so the benchmark process measures
// the Manager alone.
const benchProviderEnv = "EVENTS_BENCH_PROVIDER"

type benchProviderInfo struct {
	URL    string `json:"url"`
	Key    string `json:"key"`
	Events string `json:"events"`
}

// benchProviderMain serves a local provider until stdin closes.
func benchProviderMain() int {
	p, err := local.Start(local.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench provider:", err)
		return 1
	}
	defer p.Close()
	_ = json.NewEncoder(os.Stdout).Encode(benchProviderInfo{URL: p.URL(), Key: p.APIKey().Reveal(), Events: p.EventsAddr()})
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// startBenchProvider runs the provider in a child process.
func startBenchProvider(b *testing.B) (*gateway.Client, benchProviderInfo) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), benchProviderEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		b.Fatalf("bench provider: %v", err)
	}
	var info benchProviderInfo
	if err := json.Unmarshal(line, &info); err != nil {
		b.Fatal(err)
	}
	gw, err := gateway.NewClient(info.URL, gateway.WithAPIKey(secret.New(info.Key)), gateway.WithTimeout(30*time.Second))
	if err != nil {
		b.Fatal(err)
	}
	return gw, info
}

func benchWait(b *testing.B, what string, timeout time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type memSample struct {
	heap, rss  int64
	stack      int64
	goroutines int
}

func sampleMem() memSample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heap: int64(ms.HeapInuse + ms.StackInuse), stack: int64(ms.StackInuse), rss: rss(), goroutines: runtime.NumGoroutine()}
}

// BenchmarkManagerIdle measures one Manager holding n watched sandboxes of
// an idle local provider (run in a child process): memory per watcher
// (heap+stacks after GC, and RSS) and CPU use over an idle window, with
// production intervals. 9,000 runs only with EVENTS_BENCH_LARGE=1: the
// provider process needs two descriptors per sandbox (its directory root
// and the WebSocket), so 10,000 would pass a 20,000 descriptor limit.
//
//	go test -run '^$' -bench BenchmarkManagerIdle -benchtime 1x ./events
func BenchmarkManagerIdle(b *testing.B) {
	for _, c := range []struct {
		n      int
		events bool
	}{{1000, false}, {1000, true}, {9000, false}} {
		name := fmt.Sprintf("ws/%d", c.n)
		if c.events {
			name = fmt.Sprintf("ws+events/%d", c.n)
		}
		b.Run(name, func(b *testing.B) {
			if c.n > 1000 && os.Getenv("EVENTS_BENCH_LARGE") == "" {
				b.Skipf("set EVENTS_BENCH_LARGE=1 to run with %d sandboxes", c.n)
			}
			benchIdle(b, c.n, c.events)
		})
	}
}

func benchIdle(b *testing.B, n int, withEvents bool) {
	gw, info := startBenchProvider(b)
	rdb := redistest.New(b).Client(b)
	store := NewStore(rdb, StoreConfig{})
	ctx := context.Background()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	var failed atomic.Value
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			p := tasks.Project{Namespace: "bench", Name: fmt.Sprintf("p%05d", i)}
			sb, err := gw.FindOrCreate(ctx, p.Namespace, p.Name, nil)
			if err == nil {
				err = store.Upsert(ctx, p, sb.SandboxID, sb.Provider)
			}
			if err != nil {
				failed.Store(err)
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	before := sampleMem()
	var connected atomic.Int64
	cfg := Config{Redis: rdb, Gateway: gw, Store: store, OwnerID: "bench", Cap: n, ClaimInterval: time.Second}
	if os.Getenv("EVENTS_BENCH_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if withEvents {
		cfg.EventsAddr = info.Events
	}
	m, err := NewManager(cfg)
	if err != nil {
		b.Fatal(err)
	}
	m.hooks.connected = func(string, string) { connected.Add(1) }
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.Run(runCtx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	want := int64(n)
	if withEvents {
		want *= 2
	}
	start := time.Now()
	lastLog := time.Now()
	benchWait(b, "all watchers connected", 5*time.Minute, func() bool {
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			b.Logf("%v: held %d, connections %d", time.Since(start).Round(time.Second), m.Held(), connected.Load())
		}
		return m.Held() == n && connected.Load() >= want
	})
	b.Logf("%d watchers connected in %v", n, time.Since(start))
	// Let the start-up polls settle, then measure an idle window that holds
	// a full slow-poll cycle and several lease renewals.
	time.Sleep(5 * time.Second)
	const window = 30 * time.Second
	if f := os.Getenv("EVENTS_BENCH_CPUPROFILE"); f != "" {
		if out, err := os.Create(f); err == nil && pprof.StartCPUProfile(out) == nil {
			defer out.Close()
			defer pprof.StopCPUProfile()
		}
	}
	c0, t0 := cpuTime(), time.Now()
	time.Sleep(window)
	cpu := float64(cpuTime()-c0) / float64(time.Since(t0)) * 100
	after := sampleMem()
	if f := os.Getenv("EVENTS_BENCH_HEAPPROFILE"); f != "" {
		if out, err := os.Create(f); err == nil {
			_ = pprof.WriteHeapProfile(out)
			_ = out.Close()
		}
	}
	b.ReportMetric(float64(after.heap-before.heap)/float64(n), "heap-B/watcher")
	b.ReportMetric(float64(after.rss-before.rss)/float64(n), "rss-B/watcher")
	b.ReportMetric(float64(after.stack-before.stack)/float64(n), "stack-B/watcher")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(n), "goroutines/watcher")
	b.ReportMetric(cpu, "cpu-%")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkSignalToStream measures the time from a server's transition
// in the daemon (its updated_at) to the event in the Redis stream (the
// event's timestamp), for ready (signalled: port open, server-ready) and
// stopped (signalled: port close) transitions, with slow polling so the
// signal is what triggers the poll. Reports p50 and p99 in ms.
//
//	go test -run '^$' -bench BenchmarkSignalToStream -benchtime 100x ./events
func BenchmarkSignalToStream(b *testing.B) {
	gw, _ := startBenchProvider(b)
	rdb := redistest.New(b).Client(b)
	store := NewStore(rdb, StoreConfig{})
	ctx := context.Background()
	p := tasks.Project{Namespace: "bench", Name: "latency"}
	sb, err := gw.FindOrCreate(ctx, p.Namespace, p.Name, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := store.Upsert(ctx, p, sb.SandboxID, sb.Provider); err != nil {
		b.Fatal(err)
	}
	var connected atomic.Int64
	m, err := NewManager(Config{Redis: rdb, Gateway: gw, Store: store, OwnerID: "bench", ClaimInterval: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	m.hooks.connected = func(string, string) { connected.Add(1) }
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.Run(runCtx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	benchWait(b, "watcher connected", time.Minute, func() bool { return connected.Load() > 0 })
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	d := gw.Daemon(sb)
	last, _ := schema.LastEventID(ctx, rdb, p)
	var lat []time.Duration
	waitEvent := func(status string) {
		st, id, err := WaitServer(ctx, rdb, p, "web", last, func(st ServerState) bool { return st.Status == status })
		if err != nil {
			b.Fatal(err)
		}
		last = id
		e, err := store.Get(ctx, p)
		if err != nil {
			b.Fatal(err)
		}
		// st.UpdatedAt is the event's timestamp; the registry keeps the
		// daemon's time of the transition.
		lat = append(lat, st.UpdatedAt.Sub(e.Servers["web"].UpdatedAt))
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := d.StartServer(ctx, gateway.ServerStartOptions{Slug: "web", Start: "exec '" + exe + "'", Environment: map[string]string{helperEnv: "serve"}}); err != nil {
			b.Fatal(err)
		}
		waitEvent(sandboxq.ServerReady)
		if err := d.StopServer(ctx, "web"); err != nil {
			b.Fatal(err)
		}
		waitEvent(sandboxq.ServerStopped)
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(f float64) float64 {
		return float64(lat[min(len(lat)-1, int(f*float64(len(lat))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/float64(time.Millisecond), "max-ms")
}
