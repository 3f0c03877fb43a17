package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// never is a fallback poll no test outlives: a Wait configured with it
// returns only when something wakes it.
const never = time.Hour

// waitBundle is a worker side (srv, its own connections) and a Client under
// test on connections of its own, named so that CLIENT LIST finds them and
// hooked so that the test sees the Client's reads of a task.
type waitBundle struct {
	srv    *redis.Client
	insp   *asynq.Inspector
	client *tasks.Client
	name   string
	reads  *readHook
	gate   *gate
}

func setupWait(t *testing.T, announce bool, opts ...tasks.ClientOption) *waitBundle {
	t.Helper()
	db := redistest.New(t)
	srv := db.Client(t)
	o := db.Options()
	o.ClientName = fmt.Sprintf("waiter-%d", db.Index)
	cli := redis.NewClient(o)
	t.Cleanup(func() { _ = cli.Close() })
	reads := &readHook{read: make(chan struct{}, 1)}
	cli.AddHook(reads)
	c := tasks.NewClient(cli, opts...)
	t.Cleanup(func() { _ = c.Close() })
	g := &gate{started: make(chan string, 100), release: make(chan struct{})}
	var h asynq.Handler = g.mux()
	if announce {
		h = handlers.Attempts(srv, nil)(h)
	}
	testutil.StartAsynq(t, srv, h, asynq.Config{Concurrency: 4, Queues: tasks.DefaultQueues, LogLevel: asynq.FatalLevel, Logger: nopLogger{}})
	t.Cleanup(g.open) // before the server's shutdown (cleanups run last first)
	return &waitBundle{srv: srv, insp: asynq.NewInspectorFromRedisClient(srv), client: c, name: o.ClientName, reads: reads, gate: g}
}

// gate runs command:run tasks that signal their start and then wait for
// the gate to open.
type gate struct {
	started chan string
	release chan struct{}
	once    sync.Once
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

// typePlain is a task type without a project (as the maintenance types).
const typePlain = "test:plain"

func (g *gate) mux() *asynq.ServeMux {
	mux := asynq.NewServeMux()
	handle := func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		g.started <- id
		select {
		case <-g.release:
		case <-ctx.Done():
			return ctx.Err()
		}
		_, err := task.ResultWriter().Write([]byte(`{"exit_code":0}`))
		return err
	}
	mux.HandleFunc(tasks.TypeCommandRun, handle)
	mux.HandleFunc(typePlain, handle)
	return mux
}

// readHook signals each command of the Client that names key (a read of
// the task's state by Wait, once the task is enqueued).
type readHook struct {
	key  atomic.Pointer[string]
	read chan struct{}
}

func (h *readHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *readHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if k := h.key.Load(); k != nil && slices.Contains(cmd.Args(), any(*k)) {
			select {
			case h.read <- struct{}{}:
			default:
			}
		}
		return err
	}
}

func (h *readHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// recv returns a value of ch, failing the test after a generous deadline.
func recv[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

type waited struct {
	res *tasks.Result
	err error
}

// startWait enqueues a blocking task, lets it start, and starts a Wait on
// it; it returns once that Wait has read the task (active) at least once.
// From then on only a notice, a resubscription or the fallback poll makes
// the Wait read again.
func (b *waitBundle) startWait(t *testing.T) (*tasks.Enqueued, <-chan waited) {
	t.Helper()
	e, err := b.client.RunCommand(waitCtx(t), tasks.CommandRun{Project: app, Command: "block"})
	if err != nil {
		t.Fatal(err)
	}
	return e, b.waitStarted(t, e)
}

// waitStarted is startWait for a task already enqueued.
func (b *waitBundle) waitStarted(t *testing.T, e *tasks.Enqueued) <-chan waited {
	t.Helper()
	ctx := waitCtx(t)
	if id := recv(t, "the task to start", b.gate.started); id != e.ID {
		t.Fatalf("started %s, want %s", id, e.ID)
	}
	key := schema.AsynqTaskKey(e.Queue, e.ID)
	b.reads.key.Store(&key)
	out := make(chan waited, 1)
	go func() {
		res, err := b.client.Wait(ctx, e.Queue, e.ID)
		out <- waited{res, err}
	}()
	recv(t, "Wait's first read", b.reads.read)
	return out
}

func mustComplete(t *testing.T, w waited, e *tasks.Enqueued) {
	t.Helper()
	if w.err != nil || w.res == nil || w.res.State != tasks.StateCompleted || w.res.ID != e.ID {
		t.Fatalf("Wait = %+v, %v; want %s completed", w.res, w.err, e.ID)
	}
}

// TestWaitHearsTheWorker: the worker's notice (handlers.Attempts) wakes
// Wait. Its fallback poll is an hour and its subscription was confirmed
// before it read the still running task, so nothing else can make it read
// again: without the notice the Wait would run into its deadline.
func TestWaitHearsTheWorker(t *testing.T) {
	t.Parallel()
	b := setupWait(t, true, tasks.WithWaitPoll(never))
	if err := tasks.AwaitSubscribed(waitCtx(t), b.client); err != nil {
		t.Fatal(err)
	}
	e, out := b.startWait(t)
	b.gate.open()
	mustComplete(t, recv(t, "Wait", out), e)
}

// TestWaitHearsATaskWithoutProject: a task without a project (no attempt
// record) is announced too.
func TestWaitHearsATaskWithoutProject(t *testing.T) {
	t.Parallel()
	b := setupWait(t, true, tasks.WithWaitPoll(never))
	if err := tasks.AwaitSubscribed(waitCtx(t), b.client); err != nil {
		t.Fatal(err)
	}
	info, err := asynq.NewClientFromRedisClient(b.srv).Enqueue(asynq.NewTask(typePlain, []byte(`{}`)), asynq.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	e := &tasks.Enqueued{ID: info.ID, Queue: info.Queue, Type: info.Type}
	out := b.waitStarted(t, e)
	b.gate.open()
	mustComplete(t, recv(t, "Wait", out), e)
}

// TestWaitPollsWithoutNotice: with no notice at all (a worker that does
// not announce, or a notice lost), Wait still learns the outcome from its
// fallback poll.
func TestWaitPollsWithoutNotice(t *testing.T) {
	t.Parallel()
	b := setupWait(t, false, tasks.WithWaitPoll(20*time.Millisecond))
	e, out := b.startWait(t)
	b.gate.open()
	mustComplete(t, recv(t, "Wait", out), e)
}

// TestWaitRereadsAfterResubscribe: notices sent while the subscription is
// down are lost, so Wait reads the task again as soon as the subscription
// is back. The task completes unannounced and the Wait's poll is an hour;
// killing its pub/sub connection is what makes it read, and return.
func TestWaitRereadsAfterResubscribe(t *testing.T) {
	t.Parallel()
	b := setupWait(t, false, tasks.WithWaitPoll(never))
	ctx := waitCtx(t)
	if err := tasks.AwaitSubscribed(ctx, b.client); err != nil {
		t.Fatal(err)
	}
	e, out := b.startWait(t)
	b.gate.open()
	testutil.Eventually(t, "the task to complete", 15*time.Second, func() bool {
		info, err := b.insp.GetTaskInfo(e.Queue, e.ID)
		return err == nil && info.State == asynq.TaskStateCompleted
	})
	subs := b.pubsubConns(t)
	if len(subs) != 1 {
		t.Fatalf("%d pub/sub connections of the Client, want 1", len(subs))
	}
	if err := b.srv.ClientKillByFilter(ctx, "ID", subs[0]).Err(); err != nil {
		t.Fatal(err)
	}
	mustComplete(t, recv(t, "Wait", out), e)
}

// TestWaitHearsCancel: Cancel of a waiting task announces it, so a Wait
// on it returns without polling.
func TestWaitHearsCancel(t *testing.T) {
	t.Parallel()
	b := setupWait(t, true, tasks.WithWaitPoll(never))
	ctx := waitCtx(t)
	if err := tasks.AwaitSubscribed(ctx, b.client); err != nil {
		t.Fatal(err)
	}
	e, err := b.client.RunCommand(ctx, tasks.CommandRun{Project: app, Command: "block"}, asynq.ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	key := schema.AsynqTaskKey(e.Queue, e.ID)
	b.reads.key.Store(&key)
	out := make(chan waited, 1)
	go func() {
		res, err := b.client.Wait(ctx, e.Queue, e.ID)
		out <- waited{res, err}
	}()
	recv(t, "Wait's first read", b.reads.read)
	if err := b.client.Cancel(ctx, e.Queue, e.ID); err != nil {
		t.Fatal(err)
	}
	w := recv(t, "Wait", out)
	if !errors.Is(w.err, tasks.ErrCancelled) || w.res == nil || w.res.State != tasks.StateArchived {
		t.Fatalf("Wait = %+v, %v; want the task archived as cancelled", w.res, w.err)
	}
}

// TestWaitsShareOneSubscription: many Waits at once, several on one task,
// hold one pub/sub connection between them, and each hears its own task's
// notice (their poll is an hour).
func TestWaitsShareOneSubscription(t *testing.T) {
	t.Parallel()
	b := setupWait(t, true, tasks.WithWaitPoll(never))
	ctx := waitCtx(t)
	const nTasks, perTask = 10, 3
	outs := make(chan waited, nTasks*perTask)
	var ids []string
	for range nTasks {
		e, err := b.client.RunCommand(ctx, tasks.CommandRun{Project: app, Command: "block"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
		for range perTask {
			go func() {
				res, err := b.client.Wait(ctx, e.Queue, e.ID)
				outs <- waited{res, err}
			}()
		}
	}
	testutil.Eventually(t, "every Wait registered", 15*time.Second, func() bool {
		n, _ := tasks.WaitState(b.client)
		return n == nTasks*perTask
	})
	if subs := b.pubsubConns(t); len(subs) != 1 {
		t.Fatalf("%d Waits hold %d pub/sub connections, want 1", nTasks*perTask, len(subs))
	}
	b.gate.open()
	done := map[string]int{}
	for range nTasks * perTask {
		w := recv(t, "a Wait", outs)
		if w.err != nil || w.res == nil || w.res.State != tasks.StateCompleted {
			t.Fatalf("Wait = %+v, %v", w.res, w.err)
		}
		done[w.res.ID]++
	}
	for _, id := range ids {
		if done[id] != perTask {
			t.Errorf("task %s: %d Waits returned, want %d", id, done[id], perTask)
		}
	}
	if n, _ := tasks.WaitState(b.client); n != 0 {
		t.Errorf("%d Waits still registered after all returned", n)
	}
}

// TestCloseStopsTheSubscription: Close closes the connection and stops
// its reader (Close returns only once the reader has ended); a later Wait
// still works, by polling.
func TestCloseStopsTheSubscription(t *testing.T) {
	t.Parallel()
	b := setupWait(t, true, tasks.WithWaitPoll(20*time.Millisecond))
	ctx := waitCtx(t)
	if err := tasks.AwaitSubscribed(ctx, b.client); err != nil {
		t.Fatal(err)
	}
	if _, connected := tasks.WaitState(b.client); !connected || len(b.pubsubConns(t)) != 1 {
		t.Fatal("no subscription after the first Wait")
	}
	closed := make(chan error, 1)
	go func() { closed <- b.client.Close() }()
	if err := recv(t, "Close", closed); err != nil {
		t.Fatal(err)
	}
	if _, connected := tasks.WaitState(b.client); connected {
		t.Fatal("subscription still held after Close")
	}
	testutil.Eventually(t, "the pub/sub connection to go", 15*time.Second, func() bool {
		return len(b.pubsubConns(t)) == 0
	})
	e, out := b.startWait(t)
	b.gate.open()
	mustComplete(t, recv(t, "Wait after Close", out), e)
	if _, connected := tasks.WaitState(b.client); connected {
		t.Fatal("a Wait after Close subscribed again")
	}
	if err := b.client.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// pubsubConns returns the ids of the Client's pub/sub connections.
func (b *waitBundle) pubsubConns(t *testing.T) []string {
	t.Helper()
	list, err := b.srv.ClientList(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for line := range strings.Lines(list) {
		f := map[string]string{}
		for kv := range strings.FieldsSeq(line) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		if f["name"] == b.name && f["sub"] != "" && f["sub"] != "0" {
			ids = append(ids, f["id"])
		}
	}
	return ids
}
