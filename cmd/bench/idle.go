package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/internal/asynqlog"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
	"github.com/sandboxq/sandboxq/worker"
)

// idleResult is one task check interval's figures.
type idleResult struct {
	p50, p99 float64 // pickup of a task enqueued as tasks.Client does (with a wake-up), ms
	u50, u99 float64 // pickup of an unannounced task (no wake-up), ms
	rtps     float64 // idle Redis round trips/s
}

// idle: for each task check interval (0: the worker's default), idle
// pickup latency and idle Redis round trips/s of one worker; the baseline
// is a bare asynq server with asynq's defaults (1 s task check interval).
func (e *env) idle(ctx context.Context, o opts, t *table) error {
	intervals := append([]time.Duration{0}, o.intervals...)
	res := make(map[time.Duration]idleResult)
	for _, iv := range intervals {
		r, err := e.idleRun(ctx, iv, o.samples, o.window)
		if err != nil {
			return fmt.Errorf("interval %v: %w", iv, err)
		}
		res[iv] = r
	}
	note := "idle worker by task check interval (pickup over " + fmt.Sprint(o.samples) + " enqueues at random moments, each way; round trips over " + o.window.String() + "):\n" +
		"                announced (tasks.Client)   unannounced (no wake-up)\n" +
		"  interval      p50         p99            p50         p99          idle round trips/s\n"
	row := func(name string, r idleResult) string {
		return fmt.Sprintf("  %-12s  %7.1f ms  %7.1f ms     %7.1f ms  %7.1f ms   %8.1f\n", name, r.p50, r.p99, r.u50, r.u99, r.rtps)
	}
	for _, iv := range intervals {
		name := iv.String()
		if iv == 0 {
			name = "default"
		}
		note += row(name, res[iv])
	}
	base, err := e.idleRun(ctx, -1, o.samples, o.window)
	if err != nil {
		return fmt.Errorf("bare asynq: %w", err)
	}
	t.note(note + row("bare asynq", base))
	def := res[0]
	t.check("idle pickup p50 ms, default worker, task from tasks.Client (baseline: bare asynq, defaults)", fmt.Sprintf("%.1f", def.p50), fmt.Sprintf("%.1f", base.p50),
		def.p50/base.p50, "≤ 50 ms", def.p50 <= 50)
	t.check("idle Redis round trips/s per worker, default interval", fmt.Sprintf("%.1f", def.rtps), fmt.Sprintf("%.1f", base.rtps),
		def.rtps/base.rtps, "≤ 40/s", def.rtps <= 40)
	return nil
}

// idleRun measures one worker with the given task check interval (0: its
// default), or a bare asynq server with defaults when interval < 0.
func (e *env) idleRun(ctx context.Context, interval time.Duration, samples int, window time.Duration) (idleResult, error) {
	gw, err := e.prov.gateway()
	if err != nil {
		return idleResult{}, err
	}
	_, rdb, err := e.db()
	if err != nil {
		return idleResult{}, err
	}
	defer rdb.Close()
	hook := &countHook{}
	wc := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr, DB: rdb.Options().DB})
	wc.AddHook(hook)
	defer wc.Close()
	started := make(chan time.Time, 1)
	noop := func(context.Context, *asynq.Task) error {
		started <- time.Now()
		return nil
	}
	if interval < 0 {
		srv := asynq.NewServerFromRedisClient(wc, asynq.Config{Queues: tasks.DefaultQueues, Logger: asynqlog.New(nil)})
		mux := asynq.NewServeMux()
		mux.HandleFunc("bench:noop", noop)
		if err := srv.Start(mux); err != nil {
			return idleResult{}, err
		}
		defer srv.Shutdown()
	} else {
		w, err := worker.New(worker.Config{Redis: wc, Gateway: gw, TaskCheckInterval: interval})
		if err != nil {
			return idleResult{}, err
		}
		w.Mux().HandleFunc("bench:noop", noop)
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = w.Run(wctx); close(done) }()
		defer func() { cancel(); <-done }()
	}
	// Settle (start-up work, first heartbeats), then count an idle window.
	time.Sleep(time.Second)
	n0, t0 := hook.n.Load(), time.Now()
	time.Sleep(window)
	rtps := float64(hook.n.Load()-n0) / time.Since(t0).Seconds()
	// Arrive at a random moment of the polling cycle: waiting up to three
	// intervals after the previous pickup lands anywhere in it.
	spread := interval
	switch {
	case interval < 0:
		spread = time.Second // asynq's default
	case interval == 0:
		spread = worker.DefaultTaskCheckInterval
	}
	spread *= 3
	announced := interval >= 0 // bare asynq has no wake-up to announce to
	lat, err := pickups(ctx, rdb, started, samples, spread, announced)
	if err != nil {
		return idleResult{}, err
	}
	un, err := pickups(ctx, rdb, started, samples, spread, false)
	if err != nil {
		return idleResult{}, err
	}
	return idleResult{p50: percentile(lat, 0.5), p99: percentile(lat, 0.99), u50: percentile(un, 0.5), u99: percentile(un, 0.99), rtps: rtps}, nil
}

// pickups enqueues samples no-op tasks, each at a random moment of the
// worker's polling, and returns enqueue → handler start in ms. announced
// tasks are followed by the wake-up tasks.Client sends (schema.Wake, in
// the pipeline that also records the task), unannounced ones are not.
func pickups(ctx context.Context, rdb *redis.Client, started <-chan time.Time, samples int, spread time.Duration, announced bool) ([]float64, error) {
	client := asynq.NewClientFromRedisClient(rdb)
	var lat []float64
	for range samples {
		time.Sleep(time.Duration(rand.Int64N(int64(spread))))
		t0 := time.Now()
		if _, err := client.EnqueueContext(ctx, asynq.NewTask("bench:noop", nil), asynq.Queue(tasks.QueueDefault)); err != nil {
			return nil, err
		}
		if announced {
			if _, err := rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
				schema.Wake(ctx, pl, tasks.QueueDefault)
				return nil
			}); err != nil {
				return nil, err
			}
		}
		select {
		case t1 := <-started:
			lat = append(lat, float64(t1.Sub(t0).Microseconds())/1000)
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("task not picked up within 30s")
		}
	}
	return lat, nil
}
