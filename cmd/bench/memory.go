package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/tasks"
)

// workerConcurrency is cmd/worker's default SANDBOXQ_CONCURRENCY.
const workerConcurrency = 20

// workerProc is cmd/worker running as a child process.
type workerProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startWorkerProc runs the built cmd/worker against the run's provider and
// the Redis database at redisURL, and waits until it has registered with
// asynq.
func (e *env) startWorkerProc(ctx context.Context, redisURL string, rdb *redis.Client, extraEnv ...string) (*workerProc, error) {
	bin, err := e.workerBinary(ctx)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "REDIS_URL="+redisURL, "COMPUTESDK_GATEWAY_URL="+e.prov.URL,
		"COMPUTESDK_API_KEY="+e.prov.Key, "DASHBOARD_ADDR=127.0.0.1:0", "LOG_LEVEL=error")
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stderr = newTail(4 << 10)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &workerProc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(w.done) }()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if s, err := insp.Servers(); err == nil && len(s) > 0 {
			return w, nil
		}
		select {
		case <-w.done:
			return nil, fmt.Errorf("cmd/worker exited at start: %s", cmd.Stderr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			w.stop()
			return nil, fmt.Errorf("cmd/worker did not register within 30s: %s", cmd.Stderr)
		}
	}
}

func (w *workerProc) pid() int { return w.cmd.Process.Pid }

func (w *workerProc) stop() {
	_ = w.cmd.Process.Signal(os.Interrupt)
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
}

// tail keeps the last bytes written to it (a child's stderr for errors).
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTail(n int) *tail { return &tail{max: n} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// memCase is files queued for each of projects projects while they are
// busy.
type memCase struct {
	name     string
	projects int
	files    []tasks.File
}

// memory: peak RSS (VmHWM) of a cmd/worker child while files wait behind a
// busy project, against the idle worker's peak.
func (e *env) memory(ctx context.Context, o opts, t *table) error {
	size := o.memFileMiB * mib
	big := func(n, each int) []tasks.File {
		fs := make([]tasks.File, n)
		for i := range fs {
			fs[i] = tasks.File{Path: fmt.Sprintf("big/%d.txt", i), Content: strings.Repeat("x", each)}
		}
		return fs
	}
	idle, err := e.memRun(ctx, 1, nil)
	if err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	limit := int64(64*mib + workerConcurrency*3*tasks.MaxTaskContentBytes)
	perProject := (o.memChunks + workerConcurrency - 1) / workerConcurrency
	for _, c := range []memCase{
		{fmt.Sprintf("5 × %d MiB files behind a busy project", o.memFileMiB), 1, big(5, size)},
		{fmt.Sprintf("%d × 1 MiB files (%d chunks) behind a busy project", o.memChunks*4, o.memChunks), 1, big(o.memChunks*4, mib)},
		{fmt.Sprintf("%d busy projects × %d × 4 MiB chunks", workerConcurrency, perProject), workerConcurrency, big(perProject*4, mib)},
	} {
		peak, err := e.memRun(ctx, c.projects, c.files)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		t.check("worker peak RSS MiB, "+c.name, mibs(peak), mibs(idle)+" idle",
			float64(peak)/float64(idle), fmt.Sprintf("≤ %d MiB", limit/mib), peak <= limit)
	}
	one, err := e.memRun(ctx, 1, big(1, size))
	if err != nil {
		return fmt.Errorf("one file: %w", err)
	}
	cost := one - idle
	t.check(fmt.Sprintf("worker RSS cost MiB of one %d MiB file (peak − idle peak)", o.memFileMiB), mibs(cost), mibs(int64(size))+" file size",
		float64(cost)/float64(size), "≤ 2× file size", cost <= int64(2*size))
	return nil
}

func mibs(b int64) string { return fmt.Sprintf("%.1f", float64(b)/mib) }

// memRun starts a worker, occupies projects projects with a 2 s command
// each, queues files for each, waits for every task and returns the
// worker's VmHWM. With no files it returns the peak of a worker idle for
// 2 s.
func (e *env) memRun(ctx context.Context, projects int, files []tasks.File) (int64, error) {
	url, rdb, err := e.db()
	if err != nil {
		return 0, err
	}
	defer rdb.Close()
	w, err := e.startWorkerProc(ctx, url, rdb)
	if err != nil {
		return 0, err
	}
	defer w.stop()
	gw, err := e.prov.gateway()
	if err != nil {
		return 0, err
	}
	prefix := e.prefix("mem")
	defer e.destroy(gw, prefix, projects)
	if len(files) == 0 {
		time.Sleep(2 * time.Second)
		return procStatus(w.pid(), "VmHWM")
	}
	c := tasks.NewClient(rdb)
	defer c.Close()
	var all []*tasks.Enqueued
	for i := range projects {
		p := tasks.Project{Namespace: benchNS, Name: fmt.Sprintf("%s-%d", prefix, i)}
		if _, err := gw.FindOrCreate(ctx, p.Namespace, p.Name, nil); err != nil {
			return 0, err
		}
		busy, err := c.RunCommand(ctx, tasks.CommandRun{Project: p, Command: "sleep 2"})
		if err != nil {
			return 0, err
		}
		ens, err := c.WriteFiles(ctx, tasks.FilesWrite{Project: p, Files: files})
		if err != nil {
			return 0, err
		}
		all = append(append(all, busy), ens...)
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for _, en := range all {
		if err := waitOK(wctx, c, en, nil); err != nil {
			return 0, err
		}
	}
	return procStatus(w.pid(), "VmHWM")
}
