package main

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// idleFigures are a worker process's idle costs over a window.
type idleFigures struct {
	rss     int64
	cpuPct  float64
	reqRate float64 // requests/s finished at the provider
}

// watchersScenario: a cmd/worker child holding n idle watchers, against the
// same worker idle with none (measured first, in the same process).
func (e *env) watchersScenario(ctx context.Context, o opts, t *table) error {
	if err := fdCheck(o.watchers, o.watcherProviders); err != nil {
		return err
	}
	front, closeFront, err := e.watcherFront(o.watcherProviders)
	if err != nil {
		return err
	}
	defer closeFront()
	url, rdb, err := e.db()
	if err != nil {
		return err
	}
	defer rdb.Close()
	w, err := e.startWorkerProc(ctx, url, rdb, fmt.Sprintf("SANDBOXQ_WATCHER_CAP=%d", max(o.watchers, 10000)),
		"COMPUTESDK_GATEWAY_URL="+front.URL, "COMPUTESDK_API_KEY="+front.Key)
	if err != nil {
		return err
	}
	defer w.stop()
	time.Sleep(2 * time.Second)
	base, err := idleWindow(w.pid(), o.watchWindow, front.requests)
	if err != nil {
		return err
	}
	prefix := e.prefix("w")
	gw, err := front.gateway()
	if err != nil {
		return err
	}
	defer e.destroy(gw, prefix, o.watchers)
	if err := ensureAll(ctx, rdb, prefix, o.watchers); err != nil {
		return err
	}
	if err := waitWatched(ctx, rdb, prefix, o.watchers); err != nil {
		return err
	}
	time.Sleep(5 * time.Second) // let the first polls after connecting pass
	got, err := idleWindow(w.pid(), o.watchWindow, front.requests)
	if err != nil {
		return err
	}
	n := o.watchers
	// Below 10,000 the targets are judged on a linear extrapolation of the
	// cost over the no-watcher baseline.
	ext := func(got, base float64) float64 { return base + max(got-base, 0)*10000/float64(n) }
	rss := ext(float64(got.rss), float64(base.rss)) / mib
	cpu := ext(got.cpuPct, base.cpuPct)
	req := ext(got.reqRate, base.reqRate)
	cell := func(v, x float64, f string) string {
		if n == 10000 {
			return fmt.Sprintf(f, v)
		}
		return fmt.Sprintf(f+" (→ "+f+" at 10,000)", v, x)
	}
	t.check(fmt.Sprintf("%d idle watchers: worker RSS MiB", n), cell(float64(got.rss)/mib, rss, "%.1f"), mibs(base.rss)+" no watchers",
		float64(got.rss)/float64(base.rss), "≤ 250 MiB at 10,000", rss <= 250)
	t.check(fmt.Sprintf("%d idle watchers: worker CPU %% of a core", n), cell(got.cpuPct, cpu, "%.2f"), fmt.Sprintf("%.2f no watchers", base.cpuPct),
		0, "≤ 3 % at 10,000", cpu <= 3)
	t.check(fmt.Sprintf("%d idle watchers: requests/s to gateway+daemons", n), cell(got.reqRate, req, "%.1f"), fmt.Sprintf("%.1f no watchers", base.reqRate),
		0, "≤ 50/s at 10,000", req <= 50)
	return nil
}

// watcherFront is the gateway the watching worker uses: the run's provider,
// or with k > 1 a splitGateway over it and k−1 more provider processes.
func (e *env) watcherFront(k int) (*provider, func(), error) {
	if k <= 1 {
		return e.prov, func() {}, nil
	}
	backends := []*provider{e.prov}
	closeAll := func() {
		for _, p := range backends[1:] {
			p.close()
		}
	}
	for range k - 1 {
		p, err := startProvider(e.exe)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		backends = append(backends, p)
	}
	s, err := startSplit(backends)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return &provider{URL: s.url, Key: s.key, count: s.requests}, func() { s.close(); closeAll() }, nil
}

// fdCheck refuses a watcher count the provider processes cannot hold: one
// needs about two descriptors per sandbox (its directory and the
// WebSocket).
func fdCheck(n, providers int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil
	}
	if need := uint64(2*n/max(providers, 1) + 500); need > lim.Cur {
		return fmt.Errorf("-watchers %d needs about %d file descriptors in each of %d provider processes, over the limit of %d (ulimit -n); raise -watcher-providers", n, need, providers, lim.Cur)
	}
	return nil
}

// idleWindow measures pid's RSS, CPU and the providers' request rate over window.
func idleWindow(pid int, window time.Duration, requests func() (int64, error)) (idleFigures, error) {
	c0, err := procCPU(pid)
	if err != nil {
		return idleFigures{}, err
	}
	r0, err := requests()
	if err != nil {
		return idleFigures{}, err
	}
	t0 := time.Now()
	time.Sleep(window)
	c1, err := procCPU(pid)
	if err != nil {
		return idleFigures{}, err
	}
	r1, err := requests()
	if err != nil {
		return idleFigures{}, err
	}
	el := time.Since(t0)
	rss, err := procStatus(pid, "VmRSS")
	return idleFigures{rss: rss, cpuPct: float64(c1-c0) / float64(el) * 100, reqRate: float64(r1-r0) / el.Seconds()}, err
}

// ensureAll enqueues sandbox:ensure for n projects and waits for them.
func ensureAll(ctx context.Context, rdb *redis.Client, prefix string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	c := tasks.NewClient(rdb)
	defer c.Close()
	sem := make(chan struct{}, 64)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			p := tasks.Project{Namespace: benchNS, Name: fmt.Sprintf("%s-%d", prefix, i)}
			en, err := c.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: p})
			if err = waitOK(ctx, c, en, err); err != nil {
				select {
				case errs <- err:
				default:
				}
				cancel()
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// waitWatched waits until every project's watcher lease is held.
func waitWatched(ctx context.Context, rdb *redis.Client, prefix string, n int) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		pl := rdb.Pipeline()
		cmds := make([]*redis.IntCmd, n)
		for i := range n {
			cmds[i] = pl.Exists(ctx, schema.WatcherKey(tasks.Project{Namespace: benchNS, Name: fmt.Sprintf("%s-%d", prefix, i)}))
		}
		if _, err := pl.Exec(ctx); err != nil {
			return err
		}
		held := 0
		for _, c := range cmds {
			held += int(c.Val())
		}
		if held == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d watchers held after 5m", held, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
