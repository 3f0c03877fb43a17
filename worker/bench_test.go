package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/internal/asynqlog"
	"github.com/sandboxq/sandboxq/tasks"
	"github.com/sandboxq/sandboxq/worker"
)

// BenchmarkPickupLatency measures how long an idle worker takes from enqueue
// to handler start, with sandboxq's defaults and with asynq's (1 s task
// check interval) in the same run. It reports p50 and p99 in milliseconds.
//
//	go test -run '^$' -bench PickupLatency -benchtime 200x ./worker/
func BenchmarkPickupLatency(b *testing.B) {
	for _, bc := range []struct {
		name     string
		interval time.Duration
	}{{"sandboxq", 0}, {"asynq-default", time.Second}} {
		b.Run(bc.name, func(b *testing.B) {
			bundle := setup(b)
			started := make(chan time.Time, 1)
			cfg := worker.Config{Redis: bundle.rdb, Gateway: bundle.gw, Concurrency: 4, TaskCheckInterval: bc.interval}
			w, err := worker.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			w.Mux().HandleFunc("bench:noop", func(context.Context, *asynq.Task) error {
				started <- time.Now()
				return nil
			})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { _ = w.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			client := asynq.NewClientFromRedisClient(bundle.rdb)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// Arrive at a random moment of the worker's idle polling.
				time.Sleep(time.Duration(rand.Int64N(int64(20 * time.Millisecond))))
				t0 := time.Now()
				if _, err := client.Enqueue(asynq.NewTask("bench:noop", nil), asynq.Queue(tasks.QueueDefault)); err != nil {
					b.Fatal(err)
				}
				select {
				case t1 := <-started:
					lat = append(lat, t1.Sub(t0))
				case <-time.After(10 * time.Second):
					b.Fatal("task not picked up")
				}
			}
			b.StopTimer()
			reportPercentiles(b, lat)
		})
	}
}

// BenchmarkFilesWriteThroughput runs files:write tasks (one small file each,
// over 100 projects) through sandboxq's worker, and the same work through a
// bare asynq handler that makes the same one HTTP call, in the same run.
// Compare the tasks/s metrics of the two sub-benchmarks.
//
//	go test -run '^$' -bench FilesWriteThroughput -benchtime 2000x ./worker/
func BenchmarkFilesWriteThroughput(b *testing.B) {
	const projects, concurrency = 100, 20
	for _, mode := range []string{"bare-asynq", "sandboxq"} {
		b.Run(mode, func(b *testing.B) {
			bundle := setup(b)
			ctx := context.Background()
			// Create the sandboxes first: both modes measure writes only.
			daemons := make(map[string]*gateway.Daemon, projects)
			for i := 0; i < projects; i++ {
				name := fmt.Sprintf("bench-%d", i)
				sb, err := bundle.gw.FindOrCreate(ctx, "bench", name, nil)
				if err != nil {
					b.Fatal(err)
				}
				daemons[name] = bundle.gw.Daemon(sb)
			}
			var stop func()
			switch mode {
			case "sandboxq":
				w, err := worker.New(worker.Config{Redis: bundle.rdb, Gateway: bundle.gw, Concurrency: concurrency})
				if err != nil {
					b.Fatal(err)
				}
				wctx, cancel := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() { _ = w.Run(wctx); close(done) }()
				stop = func() { cancel(); <-done }
			case "bare-asynq":
				srv := asynq.NewServerFromRedisClient(bundle.rdb, asynq.Config{
					Concurrency: concurrency, TaskCheckInterval: 20 * time.Millisecond,
					Queues: tasks.DefaultQueues, Logger: asynqlog.New(nil),
				})
				mux := asynq.NewServeMux()
				mux.HandleFunc(tasks.TypeFilesWrite, func(ctx context.Context, t *asynq.Task) error {
					var p tasks.FilesWrite
					if err := json.Unmarshal(t.Payload(), &p); err != nil {
						return err
					}
					batch := []gateway.BatchFile{{Path: p.Files[0].Path, Operation: gateway.BatchWrite, Content: p.Files[0].Content}}
					_, err := daemons[p.Name].BatchFiles(ctx, batch)
					return err
				})
				if err := srv.Start(mux); err != nil {
					b.Fatal(err)
				}
				stop = srv.Shutdown
			}
			payloads := make([]*asynq.Task, b.N)
			for i := range payloads {
				t, err := tasks.New(tasks.FilesWrite{Project: tasks.Project{Namespace: "bench", Name: fmt.Sprintf("bench-%d", i%projects)},
					Files: []tasks.File{{Path: fmt.Sprintf("f/%d.txt", i), Content: "hello"}}})
				if err != nil {
					b.Fatal(err)
				}
				payloads[i] = t
			}
			raw := asynq.NewClientFromRedisClient(bundle.rdb)
			b.ResetTimer()
			start := time.Now()
			for _, t := range payloads {
				if _, err := raw.Enqueue(t); err != nil {
					b.Fatal(err)
				}
			}
			for {
				q, err := bundle.insp.GetQueueInfo(tasks.QueueDefault)
				if err != nil {
					b.Fatal(err)
				}
				if q.Completed >= b.N {
					break
				}
				if q.Archived > 0 {
					b.Fatalf("%d tasks archived", q.Archived)
				}
				time.Sleep(5 * time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			stop()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
		})
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := int(p * float64(len(lat)-1))
		return float64(lat[i].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}
