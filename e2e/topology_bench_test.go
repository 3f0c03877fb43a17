package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
)

// BenchmarkTopologyFilesWrite measures files:write throughput (one small
// file per task, over 100 projects) through 1 and 3 cmd/worker processes
// (concurrency 20 each) on standalone Redis and on a 3-primary cluster, in
// one run, and prints a table with each case's ratio to standalone with one
// worker.
//
//	SANDBOXQ_REQUIRE_REDIS=1 go test -run '^$' -bench TopologyFilesWrite -benchtime 2000x ./e2e/
func BenchmarkTopologyFilesWrite(b *testing.B) {
	const projects = 100
	type result struct {
		name string
		rate float64
	}
	var results []result
	for _, topo := range []string{"standalone", "cluster"} {
		b.Run(topo, func(b *testing.B) {
			var url string
			var flush func(context.Context) error
			if topo == "cluster" {
				c := redistest.NewCluster(b)
				url, flush = c.URL(), c.FlushAll
			} else {
				db := redistest.New(b)
				rdb := db.Client(b)
				url, flush = db.URL(), func(ctx context.Context) error { return rdb.FlushDB(ctx).Err() }
			}
			rdb := openURL(b, url)
			for _, workers := range []int{1, 3} {
				b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
					if err := flush(context.Background()); err != nil {
						b.Fatal(err)
					}
					lp, gw := testutil.Provider(b, local.Config{})
					for i := range projects {
						if _, err := gw.FindOrCreate(context.Background(), "bench", fmt.Sprintf("b%d", i), nil); err != nil {
							b.Fatal(err)
						}
					}
					env := workerEnv(&topology{url: url}, lp)
					for range workers {
						startWorker(b, env)
					}
					rate := filesWriteRate(b, rdb, projects)
					b.ReportMetric(rate, "tasks/s")
					results = append(results, result{fmt.Sprintf("%s, %d worker(s)", topo, workers), rate})
				})
			}
		})
	}
	if len(results) == 0 {
		return
	}
	// Sub-benchmarks may run more than once; keep the last result of each.
	last := map[string]float64{}
	var order []string
	for _, r := range results {
		if _, ok := last[r.name]; !ok {
			order = append(order, r.name)
		}
		last[r.name] = r.rate
	}
	var sb strings.Builder
	base := last[order[0]]
	fmt.Fprintf(&sb, "%-28s %10s %8s\n", "files:write", "tasks/s", "ratio")
	for _, name := range order {
		fmt.Fprintf(&sb, "%-28s %10.0f %8.2f\n", name, last[name], last[name]/base)
	}
	b.Logf("files:write throughput (ratio to %s):\n%s", order[0], sb.String())
}

// filesWriteRate enqueues b.N files:write tasks and returns how many
// completed per second, from the first enqueue to the last completion.
func filesWriteRate(b *testing.B, rdb redis.UniversalClient, projects int) float64 {
	payloads := make([]*asynq.Task, b.N)
	for i := range payloads {
		t, err := tasks.New(tasks.FilesWrite{Project: tasks.Project{Namespace: "bench", Name: fmt.Sprintf("b%d", i%projects)},
			Files: []tasks.File{{Path: fmt.Sprintf("f/%d.txt", i), Content: "hello"}}})
		if err != nil {
			b.Fatal(err)
		}
		payloads[i] = t
	}
	raw := asynq.NewClientFromRedisClient(rdb)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	b.ResetTimer()
	start := time.Now()
	for _, t := range payloads {
		if _, err := raw.Enqueue(t); err != nil {
			b.Fatal(err)
		}
	}
	for {
		q, err := insp.GetQueueInfo(tasks.QueueDefault)
		if err != nil {
			b.Fatal(err)
		}
		if q.Completed >= b.N {
			break
		}
		if q.Archived > 0 {
			b.Fatalf("%d tasks archived", q.Archived)
		}
		time.Sleep(5 * time.Millisecond) // polling the queue, as worker/bench_test.go does
	}
	elapsed := time.Since(start)
	b.StopTimer()
	return float64(b.N) / elapsed.Seconds()
}
