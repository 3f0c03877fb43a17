package worker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
	"github.com/sandboxq/sandboxq/worker"
)

// leaseTakers records, from the replies of the lease scripts, every owner
// that took a given lease key.
type leaseTakers struct {
	key string
	mu  sync.Mutex
	got map[string]bool
}

func (l *leaseTakers) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *leaseTakers) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		l.see(cmd)
		return err
	}
}

func (l *leaseTakers) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			l.see(c)
		}
		return err
	}
}

// see notes the owner of an EVAL/EVALSHA on the lease key that replied 1
// (taken or kept): its arguments are key(s), then the owner.
func (l *leaseTakers) see(cmd redis.Cmder) {
	name := strings.ToLower(cmd.Name())
	c, ok := cmd.(*redis.Cmd)
	if !ok || (name != "eval" && name != "evalsha") || c.Err() != nil {
		return
	}
	args := cmd.Args()
	if len(args) < 5 || fmt.Sprint(args[3]) != l.key {
		return
	}
	if n, _ := c.Int(); n != 1 {
		return
	}
	numKeys, _ := args[2].(int)
	if 3+numKeys >= len(args) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got[fmt.Sprint(args[3+numKeys])] = true
}

// TestCancelledBeforeStartDoesNotRun: a task whose cancel mark is set
// before a worker picks it up ends "cancelled" without taking the project
// lease and without touching the sandbox, both for the types whose lease
// script checks the mark (files:write, command:run) and for one the
// middleware checks first (server:start). An unmarked task of the same
// project runs.
func TestCancelledBeforeStartDoesNotRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	p := proj("cancel-early")
	takers := &leaseTakers{key: schema.LeaseKey(p), got: map[string]bool{}}
	b.rdb.AddHook(takers)

	written, err := b.client.WriteFiles(ctx, tasks.FilesWrite{Project: p, Files: []tasks.File{{Path: "cancelled.txt", Content: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	marked := []*tasks.Enqueued{
		written[0],
		b.ok(b.client.RunCommand(ctx, tasks.CommandRun{Project: p, Command: "echo ran >> log.txt"})),
		b.ok(b.client.StartServer(ctx, tasks.ServerStart{Project: p, Slug: "web", Command: "sleep 60"})),
	}
	for _, e := range marked {
		if err := schema.MarkCancelled(ctx, b.rdb, e.ID, p); err != nil {
			t.Fatal(err)
		}
	}
	control, err := b.client.WriteFiles(ctx, tasks.FilesWrite{Project: p, Files: []tasks.File{{Path: "control.txt", Content: "y"}}})
	if err != nil {
		t.Fatal(err)
	}
	b.startWorker(t, nil)

	for _, e := range marked {
		tf := b.mustFail(t, e)
		if !errors.Is(tf, tasks.ErrCancelled) || tf.LastErr != "cancelled" {
			t.Errorf("%s marked before start = %+v, want cancelled", e.Type, tf)
		}
	}
	b.mustSucceed(t, control[0], nil)

	takers.mu.Lock()
	for _, e := range marked {
		if takers.got[e.ID] {
			t.Errorf("%s %s took the project lease after it was cancelled", e.Type, e.ID)
		}
	}
	if !takers.got[control[0].ID] {
		t.Errorf("the lease hook never saw the control task take the lease; it watches nothing")
	}
	takers.mu.Unlock()

	for _, v := range b.lp.Sandboxes() {
		if v.Name != p.Name {
			continue
		}
		for _, f := range []string{"cancelled.txt", "log.txt"} {
			if _, err := os.Stat(filepath.Join(v.Dir, f)); !os.IsNotExist(err) {
				t.Errorf("%s exists (err %v): a cancelled task ran", f, err)
			}
		}
	}
}

// failResultPipeline fails, as a connection that broke would, the first
// end-of-attempt pipeline of a task: the one that writes its result.
type failResultPipeline struct {
	mu     sync.Mutex
	failed int
}

func (f *failResultPipeline) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f *failResultPipeline) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (f *failResultPipeline) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !f.take(cmds) {
			return next(ctx, cmds)
		}
		err := errors.New("connection reset by peer")
		for _, c := range cmds {
			c.SetErr(err)
		}
		return err
	}
}

func (f *failResultPipeline) take(cmds []redis.Cmder) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed > 0 {
		return false
	}
	for _, c := range cmds {
		args := c.Args()
		if strings.ToLower(c.Name()) == "hset" && len(args) > 2 && args[2] == "result" {
			f.failed++
			return true
		}
	}
	return false
}

// TestLeaseReleasedWhenResultWriteFails: the project lease's release rides
// in the pipeline that writes the task's result; when that pipeline fails,
// the release is retried on its own. The failed task is not retried (it
// would take its own lease back and release it later), so the next task of
// the project runs only if the release happened: long before the lease's
// 10-minute lifetime ends.
func TestLeaseReleasedWhenResultWriteFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fail := &failResultPipeline{}
	b.rdb.AddHook(fail)
	ctx := t.Context()
	p := proj("release-on-failure")
	first, err := b.client.WriteFiles(ctx, tasks.FilesWrite{Project: p, Files: []tasks.File{{Path: "a.txt", Content: "a"}}}, asynq.MaxRetry(0))
	if err != nil {
		t.Fatal(err)
	}
	b.startWorker(t, func(c *worker.Config) { c.Handlers.LeaseTTL = 10 * time.Minute })
	if tf := b.mustFail(t, first[0]); !strings.Contains(tf.LastErr, "write result") {
		t.Fatalf("first task: %+v, want a failed result write", tf)
	}
	next, err := b.client.WriteFiles(ctx, tasks.FilesWrite{Project: p, Files: []tasks.File{{Path: "b.txt", Content: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	b.mustSucceed(t, next[0], nil)
	fail.mu.Lock()
	defer fail.mu.Unlock()
	if fail.failed != 1 {
		t.Fatalf("failed pipelines %d, want 1", fail.failed)
	}
}

// ownersLocker is a Locker other than the default: it excludes nothing
// (one task runs per project here) and
// records the owner of every Lock.
type ownersLocker struct {
	mu     sync.Mutex
	owners map[string]bool
}

func (l *ownersLocker) Lock(ctx context.Context, _ tasks.Project, owner string) (context.Context, func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.owners[owner] = true
	return ctx, func() {}, nil
}

// TestCancelledBeforeStartWithAnotherLocker: with a Locker of its own (one
// that cannot check the mark in its lease script) a task marked before it
// starts still never locks nor runs: the mark is read before the lock.
func TestCancelledBeforeStartWithAnotherLocker(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	p := proj("cancel-early-locker")
	locks := &ownersLocker{owners: map[string]bool{}}
	written, err := b.client.WriteFiles(ctx, tasks.FilesWrite{Project: p, Files: []tasks.File{{Path: "cancelled.txt", Content: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	marked := []*tasks.Enqueued{written[0], b.ok(b.client.RunCommand(ctx, tasks.CommandRun{Project: p, Command: "echo ran >> log.txt"}))}
	for _, e := range marked {
		if err := schema.MarkCancelled(ctx, b.rdb, e.ID, p); err != nil {
			t.Fatal(err)
		}
	}
	control, err := b.client.WriteFiles(ctx, tasks.FilesWrite{Project: p, Files: []tasks.File{{Path: "control.txt", Content: "y"}}})
	if err != nil {
		t.Fatal(err)
	}
	b.startWorker(t, func(c *worker.Config) { c.Handlers.Locks = locks })
	for _, e := range marked {
		if tf := b.mustFail(t, e); !errors.Is(tf, tasks.ErrCancelled) {
			t.Errorf("%s marked before start = %+v, want cancelled", e.Type, tf)
		}
	}
	b.mustSucceed(t, control[0], nil)
	locks.mu.Lock()
	defer locks.mu.Unlock()
	for _, e := range marked {
		if locks.owners[e.ID] {
			t.Errorf("%s %s locked its project after it was cancelled", e.Type, e.ID)
		}
	}
	if !locks.owners[control[0].ID] {
		t.Error("the control task never locked: the Locker is not in use")
	}
}
