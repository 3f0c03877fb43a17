package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/internal/asynqlog"
	"github.com/sandboxq/sandboxq/tasks"
	"github.com/sandboxq/sandboxq/worker"
)

const fileProjects, fileConcurrency = 20, 20

// files: files:write tasks/s through sandboxq against a bare asynq handler
// making the same daemon call, and Redis round trips per task of each
// side's server client.
func (e *env) files(ctx context.Context, o opts, t *table) error {
	var bare, sq, bareRT, sqRT []float64
	for range o.filePairs {
		for _, viaSandboxq := range []bool{false, true} {
			rate, rt, err := e.filesRun(ctx, o.fileTasks, viaSandboxq)
			if err != nil {
				return err
			}
			if viaSandboxq {
				sq, sqRT = append(sq, rate), append(sqRT, rt)
			} else {
				bare, bareRT = append(bare, rate), append(bareRT, rt)
			}
		}
	}
	r := median(sq) / median(bare)
	t.check(fmt.Sprintf("files:write tasks/s (median, min–max of %d)", o.filePairs),
		spread(sq, "%.0f"), spread(bare, "%.0f")+" bare asynq", r, "ratio ≥ 0.95", r >= 0.95)
	t.check("files:write Redis round trips/task", fmt.Sprintf("%.2f", median(sqRT)), fmt.Sprintf("%.2f", median(bareRT)),
		median(sqRT)/median(bareRT), "≤ 6", median(sqRT) <= 6)
	return nil
}

// filesRun runs m one-file files:write tasks over fileProjects existing
// sandboxes and returns tasks/s and round trips per task.
func (e *env) filesRun(ctx context.Context, m int, viaSandboxq bool) (float64, float64, error) {
	gw, err := e.prov.gateway()
	if err != nil {
		return 0, 0, err
	}
	_, rdb, err := e.db()
	if err != nil {
		return 0, 0, err
	}
	defer rdb.Close()
	prefix := e.prefix("files")
	defer e.destroy(gw, prefix, fileProjects)
	daemons := make(map[string]*gateway.Daemon, fileProjects)
	for i := range fileProjects {
		name := fmt.Sprintf("%s-%d", prefix, i)
		sb, err := gw.FindOrCreate(ctx, benchNS, name, nil)
		if err != nil {
			return 0, 0, err
		}
		daemons[name] = gw.Daemon(sb)
	}
	hook := &countHook{}
	srvClient := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr, DB: rdb.Options().DB, PoolSize: 64})
	srvClient.AddHook(hook)
	defer srvClient.Close()
	// Both sides get the same queue, filled by each side's producer before
	// its server starts; the clock runs from the start to the last task.
	if err := enqueueFiles(ctx, rdb, m, prefix, viaSandboxq); err != nil {
		return 0, 0, err
	}
	rt0, start := hook.n.Load(), time.Now()
	var stop func()
	if viaSandboxq {
		_, stop, err = startWorker(worker.Config{Redis: srvClient, Gateway: gw, Concurrency: fileConcurrency})
	} else {
		stop, err = startBare(srvClient, daemons)
	}
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	if err := drain(rdb, m); err != nil {
		return 0, 0, err
	}
	return float64(m) / time.Since(start).Seconds(), float64(hook.n.Load()-rt0) / float64(m), nil
}

// startBare serves files:write with a plain asynq handler: decode, one
// batch call, done.
func startBare(rdb *redis.Client, daemons map[string]*gateway.Daemon) (func(), error) {
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: fileConcurrency, TaskCheckInterval: 20 * time.Millisecond,
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
		return nil, err
	}
	return srv.Shutdown, nil
}

// enqueueFiles enqueues m files:write tasks as each side's producers do:
// sandboxq's through tasks.Client (which records each in its project's
// index and wakes an idle worker), the baseline's with a bare asynq client.
func enqueueFiles(ctx context.Context, rdb *redis.Client, m int, prefix string, viaSandboxq bool) error {
	client := tasks.NewClient(rdb)
	defer client.Close()
	raw := asynq.NewClientFromRedisClient(rdb)
	for i := range m {
		p := tasks.FilesWrite{Project: tasks.Project{Namespace: benchNS, Name: fmt.Sprintf("%s-%d", prefix, i%fileProjects)},
			Files: []tasks.File{{Path: fmt.Sprintf("f/%d.txt", i), Content: "hello"}}}
		if viaSandboxq {
			if _, err := client.Enqueue(ctx, p); err != nil {
				return err
			}
			continue
		}
		t, err := tasks.New(p)
		if err != nil {
			return err
		}
		if _, err := raw.Enqueue(t); err != nil {
			return err
		}
	}
	return nil
}

// drain waits until m tasks of the default queue were processed and none
// is left, and fails on any retry or archived task.
func drain(rdb *redis.Client, m int) error {
	insp := asynq.NewInspectorFromRedisClient(rdb)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		q, err := insp.GetQueueInfo(tasks.QueueDefault)
		if err != nil {
			return err
		}
		if q.Archived > 0 || q.Retry > 0 {
			return fmt.Errorf("files:write: %d tasks archived, %d retrying", q.Archived, q.Retry)
		}
		if q.Processed >= m && q.Pending == 0 && q.Active == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("files:write: %d of %d done after 2m", q.Processed, m)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
