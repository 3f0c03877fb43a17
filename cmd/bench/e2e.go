package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/tasks"
	"github.com/sandboxq/sandboxq/worker"
)

const benchNS = "bench"

// startWorker runs an in-process worker until the returned stop is called.
func startWorker(cfg worker.Config) (*worker.Worker, func(), error) {
	w, err := worker.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	return w, func() { cancel(); <-done }, nil
}

// e2e: time until every project's server is ready after ensure → write 10
// files → start server, N projects at once; inline gateway calls against
// sandboxq with a default worker, alternating.
func (e *env) e2e(ctx context.Context, o opts, t *table) error {
	for _, n := range o.n {
		var inline, sq []float64
		for range o.pairs {
			d, err := e.e2eRun(ctx, n, false, o.inlinePoll, 0)
			if err != nil {
				return fmt.Errorf("inline N=%d: %w", n, err)
			}
			inline = append(inline, d.Seconds())
			if d, err = e.e2eRun(ctx, n, true, 0, o.e2eConcurrency); err != nil {
				return fmt.Errorf("sandboxq N=%d: %w", n, err)
			}
			sq = append(sq, d.Seconds())
		}
		r := median(sq) / median(inline)
		t.check(fmt.Sprintf("e2e N=%d: s until all servers ready (median, min–max of %d)", n, o.pairs),
			spread(sq, "%.3f"), spread(inline, "%.3f")+" inline", r, "ratio ≤ 1.2", r <= 1.2)
	}
	return nil
}

// e2eRun runs one side for n projects and returns the wall time; it then
// destroys the sandboxes so their servers do not pile up. concurrency is
// the worker's (0: its default).
func (e *env) e2eRun(ctx context.Context, n int, viaSandboxq bool, poll time.Duration, concurrency int) (time.Duration, error) {
	gw, err := e.prov.gateway()
	if err != nil {
		return 0, err
	}
	prefix := e.prefix("e2e")
	var each func(context.Context, tasks.Project) error
	var stop func()
	if viaSandboxq {
		_, rdb, err := e.db()
		if err != nil {
			return 0, err
		}
		defer rdb.Close()
		_, stop, err = startWorker(worker.Config{Redis: rdb, Gateway: gw, Concurrency: concurrency})
		if err != nil {
			return 0, err
		}
		c := tasks.NewClient(rdb)
		defer c.Close()
		each = e.viaSandboxq(c)
	} else {
		each = e.inline(gw, poll)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	start := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = each(ctx, tasks.Project{Namespace: benchNS, Name: fmt.Sprintf("%s-%d", prefix, i)}) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	if stop != nil {
		stop()
	}
	e.destroy(gw, prefix, n)
	return elapsed, errors.Join(errs...)
}

func tenFiles() []tasks.File {
	fs := make([]tasks.File, 10)
	for i := range fs {
		fs[i] = tasks.File{Path: fmt.Sprintf("src/file%d.txt", i), Content: fmt.Sprintf("content of file %d\n", i)}
	}
	return fs
}

// inline is what a request handler calling the gateway itself would do.
func (e *env) inline(gw *gateway.Client, poll time.Duration) func(context.Context, tasks.Project) error {
	cmd, envv := e.serveCommand()
	return func(ctx context.Context, p tasks.Project) error {
		sb, err := gw.FindOrCreate(ctx, p.Namespace, p.Name, nil)
		if err != nil {
			return err
		}
		d := gw.Daemon(sb)
		var batch []gateway.BatchFile
		for _, f := range tenFiles() {
			batch = append(batch, gateway.BatchFile{Path: f.Path, Operation: gateway.BatchWrite, Content: f.Content})
		}
		if _, err := d.BatchFiles(ctx, batch); err != nil {
			return err
		}
		if _, err := d.StartServer(ctx, gateway.ServerStartOptions{Slug: "web", Start: cmd, Environment: envv}); err != nil {
			return err
		}
		for {
			info, err := d.GetServer(ctx, "web")
			if err != nil {
				return err
			}
			if info.Status == "ready" {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("server of %s not ready: %w", p.Name, ctx.Err())
			case <-time.After(poll):
			}
		}
	}
}

// viaSandboxq enqueues each step and waits for its result.
func (e *env) viaSandboxq(c *tasks.Client) func(context.Context, tasks.Project) error {
	cmd, envv := e.serveCommand()
	return func(ctx context.Context, p tasks.Project) error {
		en, err := c.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: p})
		if err = waitOK(ctx, c, en, err); err != nil {
			return err
		}
		ens, err := c.WriteFiles(ctx, tasks.FilesWrite{Project: p, Files: tenFiles()})
		if err != nil {
			return err
		}
		for _, en := range ens {
			if err := waitOK(ctx, c, en, nil); err != nil {
				return err
			}
		}
		en, err = c.StartServer(ctx, tasks.ServerStart{Project: p, Slug: "web", Command: cmd, Env: envv})
		return waitOK(ctx, c, en, err)
	}
}

func waitOK(ctx context.Context, c *tasks.Client, en *tasks.Enqueued, err error) error {
	if err != nil {
		return err
	}
	res, err := c.Wait(ctx, en.Queue, en.ID)
	if err != nil {
		return err
	}
	if res.State != "completed" {
		return fmt.Errorf("task %s %s: %s (%s)", en.Type, en.ID, res.State, res.LastError)
	}
	return nil
}

// destroy removes the sandboxes of a run (their servers with them).
func (e *env) destroy(gw *gateway.Client, prefix string, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if sb, err := gw.Find(ctx, benchNS, fmt.Sprintf("%s-%d", prefix, i)); err == nil && sb != nil {
				_ = gw.Destroy(ctx, sb.SandboxID)
			}
		})
	}
	wg.Wait()
}
