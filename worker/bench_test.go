package worker_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"

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
