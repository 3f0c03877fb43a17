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
	return enqueueAndDrain(ctx, rdb, m, prefix, hook)
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

func enqueueAndDrain(ctx context.Context, rdb *redis.Client, m int, prefix string, hook *countHook) (float64, float64, error) {
	payloads := make([]*asynq.Task, m)
	for i := range payloads {
		t, err := tasks.New(tasks.FilesWrite{Project: tasks.Project{Namespace: benchNS, Name: fmt.Sprintf("%s-%d", prefix, i%fileProjects)},
			Files: []tasks.File{{Path: fmt.Sprintf("f/%d.txt", i), Content: "hello"}}})
		if err != nil {
			return 0, 0, err
		}
		payloads[i] = t
	}
	raw := asynq.NewClientFromRedisClient(rdb)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	rt0 := hook.n.Load()
	start := time.Now()
	for _, t := range payloads {
		if _, err := raw.Enqueue(t); err != nil {
			return 0, 0, err
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		q, err := insp.GetQueueInfo(tasks.QueueDefault)
		if err != nil {
			return 0, 0, err
		}
		if q.Archived > 0 || q.Retry > 0 {
			return 0, 0, fmt.Errorf("files:write: %d tasks archived, %d retrying", q.Archived, q.Retry)
		}
		if q.Processed >= m && q.Pending == 0 && q.Active == 0 {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("files:write: %d of %d done after 2m", q.Processed, m)
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	return float64(m) / elapsed.Seconds(), float64(hook.n.Load()-rt0) / float64(m), nil
}
