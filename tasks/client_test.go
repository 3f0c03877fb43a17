package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

func TestEnsureDedupConcurrent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	const n = 50
	results := make([]*tasks.Enqueued, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			// Half name the default namespace explicitly: same project.
			p := tasks.Project{Name: "app"}
			if i%2 == 0 {
				p.Namespace = "default"
			}
			results[i], errs[i] = b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: p})
		})
	}
	close(start)
	wg.Wait()

	created, duplicates := 0, 0
	var id string
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("enqueue %d: %v", i, errs[i])
		}
		r := results[i]
		if r.Duplicate {
			duplicates++
		} else {
			created++
		}
		if id == "" {
			id = r.ID
		}
		if r.ID != id || r.Queue != tasks.QueueCritical || r.Type != tasks.TypeSandboxEnsure {
			t.Fatalf("result %d = %+v, want task %s in critical", i, r, id)
		}
	}
	if created != 1 || duplicates != n-1 {
		t.Fatalf("created %d, duplicates %d; want 1 and %d", created, duplicates, n-1)
	}
	pending, err := b.insp.ListPendingTasks(tasks.QueueCritical)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 1 || pending[0].ID != id {
		t.Fatalf("critical queue holds %d tasks, want exactly task %s", len(pending), id)
	}
}

func TestDedupIsPerProjectAndType(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	a1, err := b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: tasks.Project{Namespace: "a/b", Name: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	a2, err := b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: tasks.Project{Namespace: "a", Name: "b/c"}})
	if err != nil {
		t.Fatal(err)
	}
	d1, err := b.client.DestroySandbox(ctx, tasks.SandboxDestroy{Project: tasks.Project{Namespace: "a/b", Name: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	d2, err := b.client.DestroySandbox(ctx, tasks.SandboxDestroy{Project: tasks.Project{Namespace: "a/b", Name: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	if a1.Duplicate || a2.Duplicate || a1.ID == a2.ID {
		t.Fatalf("different projects deduplicated: %+v %+v", a1, a2)
	}
	if d1.Duplicate || d1.ID == a1.ID {
		t.Fatalf("destroy deduplicated against ensure: %+v", d1)
	}
	if !d2.Duplicate || d2.ID != d1.ID {
		t.Fatalf("second destroy = %+v, want duplicate of %s", d2, d1.ID)
	}
	// Other types are never deduplicated.
	s1, err := b.client.StopServer(ctx, tasks.ServerStop{Project: app, Slug: "web"})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := b.client.StopServer(ctx, tasks.ServerStop{Project: app, Slug: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if s1.ID == s2.ID || s2.Duplicate {
		t.Fatalf("server:stop deduplicated: %+v %+v", s1, s2)
	}
}

func TestDedupScheduledTaskIsLive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	first, err := b.client.DestroySandbox(ctx, tasks.SandboxDestroy{Project: app}, asynq.ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	second, err := b.client.DestroySandbox(ctx, tasks.SandboxDestroy{Project: app})
	if err != nil {
		t.Fatal(err)
	}
	if !second.Duplicate || second.ID != first.ID {
		t.Fatalf("second = %+v, want duplicate of scheduled %s", second, first.ID)
	}
	ttl, err := b.rdb.PTTL(ctx, schema.DedupKey(tasks.TypeSandboxDestroy, app)).Result()
	if err != nil || ttl < schema.DedupTTL {
		t.Fatalf("dedup key TTL = %v, %v; want at least %v", ttl, err, schema.DedupTTL)
	}
}

func TestNewTaskAfterArchive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	first, err := b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: app})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.insp.ArchiveTask(first.Queue, first.ID); err != nil {
		t.Fatal(err)
	}
	second, err := b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: app})
	if err != nil {
		t.Fatal(err)
	}
	if second.Duplicate || second.ID == first.ID {
		t.Fatalf("after archive: %+v, want a new task", second)
	}
	third, err := b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: app})
	if err != nil {
		t.Fatal(err)
	}
	if !third.Duplicate || third.ID != second.ID {
		t.Fatalf("third = %+v, want duplicate of %s", third, second.ID)
	}
	// A deleted task frees the project too.
	if err := b.insp.DeleteTask(second.Queue, second.ID); err != nil {
		t.Fatal(err)
	}
	fourth, err := b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: app})
	if err != nil {
		t.Fatal(err)
	}
	if fourth.Duplicate || fourth.ID == second.ID {
		t.Fatalf("after delete: %+v, want a new task", fourth)
	}
}

func TestNewTaskAfterCompletion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := waitCtx(t)
	release := make(chan struct{})
	started := make(chan string, 4)
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeSandboxEnsure, func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		started <- id
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		_, err := task.ResultWriter().Write([]byte(`{"created":true}`))
		return err
	})
	b.serve(t, mux)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})

	first, err := b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: app})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-started:
		if id != first.ID {
			t.Fatalf("worker started %s, want %s", id, first.ID)
		}
	case <-ctx.Done():
		t.Fatal("task never started")
	}
	// While it runs, it is the project's ensure.
	dup, err := b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: app})
	if err != nil {
		t.Fatal(err)
	}
	if !dup.Duplicate || dup.ID != first.ID {
		t.Fatalf("while active: %+v, want duplicate of %s", dup, first.ID)
	}
	close(release)
	res, err := b.client.Wait(ctx, first.Queue, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res.State != tasks.StateCompleted {
		t.Fatalf("state %s", res.State)
	}
	second, err := b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: app})
	if err != nil {
		t.Fatal(err)
	}
	if second.Duplicate || second.ID == first.ID {
		t.Fatalf("after completion: %+v, want a new task", second)
	}
}

func TestDedupReplacesGarbageKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	key := schema.DedupKey(tasks.TypeSandboxEnsure, app)
	if err := b.rdb.Set(ctx, key, "not json", 0).Err(); err != nil {
		t.Fatal(err)
	}
	e, err := b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: app})
	if err != nil || e.Duplicate {
		t.Fatalf("EnsureSandbox = %+v, %v", e, err)
	}
	var mark struct{ ID, Queue, State string }
	raw, err := b.rdb.Get(ctx, key).Result()
	if err != nil || json.Unmarshal([]byte(raw), &mark) != nil {
		t.Fatalf("dedup key = %q, %v", raw, err)
	}
	if mark.ID != e.ID || mark.Queue != tasks.QueueCritical || mark.State != "enqueued" {
		t.Fatalf("dedup key = %+v, want task %s enqueued", mark, e.ID)
	}
}

// file returns a file of n bytes.
func file(name string, n int) tasks.File {
	return tasks.File{Path: name, Content: strings.Repeat("x", n)}
}

func TestWriteFilesChunking(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	tests := []struct {
		name  string
		files []tasks.File
		want  []int // files per task, in order
	}{
		{"one small", []tasks.File{file("a", 10)}, []int{1}},
		{"10 MiB in 1 MiB files", func() []tasks.File {
			var fs []tasks.File
			for i := range 10 {
				fs = append(fs, file(fmt.Sprintf("f%02d", i), mib))
			}
			return fs
		}(), []int{4, 4, 2}},
		{"big file alone", []tasks.File{file("a", mib), file("big", 5*mib), file("b", mib), {Path: "gone", Delete: true}}, []int{1, 1, 2}},
		{"many small", func() []tasks.File {
			var fs []tasks.File
			for i := range tasks.MaxFilesPerTask + 5 {
				fs = append(fs, file(fmt.Sprintf("s/%d", i), 1))
			}
			return fs
		}(), []int{tasks.MaxFilesPerTask, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := t.Context()
			enq, err := b.client.WriteFiles(ctx, tasks.FilesWrite{Project: app, Files: tt.files})
			if err != nil {
				t.Fatal(err)
			}
			if len(enq) != len(tt.want) {
				t.Fatalf("%d tasks, want %d", len(enq), len(tt.want))
			}
			seen := make(map[string]int)
			for i, e := range enq {
				info, err := b.insp.GetTaskInfo(e.Queue, e.ID)
				if err != nil {
					t.Fatal(err)
				}
				p, err := tasks.Decode[tasks.FilesWrite](asynq.NewTaskWithHeaders(info.Type, info.Payload, info.Headers))
				if err != nil {
					t.Fatalf("task %d: %v", i, err)
				}
				if len(p.Files) != tt.want[i] {
					t.Fatalf("task %d has %d files, want %d", i, len(p.Files), tt.want[i])
				}
				size := 0
				for _, f := range p.Files {
					seen[f.Path]++
					size += len(f.Content)
				}
				if size > tasks.MaxTaskContentBytes && len(p.Files) > 1 {
					t.Fatalf("task %d carries %d bytes in %d files", i, size, len(p.Files))
				}
			}
			for _, f := range tt.files {
				if seen[f.Path] != 1 {
					t.Fatalf("file %s is in %d tasks", f.Path, seen[f.Path])
				}
			}
			if len(seen) != len(tt.files) {
				t.Fatalf("%d distinct files enqueued, want %d", len(seen), len(tt.files))
			}
		})
	}
}

func TestWriteFilesValidatesBeforeEnqueueing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	files := []tasks.File{file("a", 3<<20), file("b", 3<<20), file("c", tasks.MaxFileBytes+1)}
	_, err := b.client.WriteFiles(ctx, tasks.FilesWrite{Project: app, Files: files})
	var ve *tasks.ValidationError
	if !errors.As(err, &ve) || ve.Field != "files[2].content" {
		t.Fatalf("WriteFiles = %v, want invalid files[2].content", err)
	}
	if qs, _ := b.insp.Queues(); len(qs) != 0 {
		t.Fatalf("something was enqueued: queues %v", qs)
	}
	_, err = b.client.WriteFiles(ctx, tasks.FilesWrite{Project: app, Files: files[:2]}, asynq.TaskID("mine"))
	if err == nil {
		t.Fatal("a TaskID for a split file set was accepted")
	}
}

// commandMux handles command:run: "true" succeeds with a result, "false"
// fails permanently after writing a result, anything else fails
// (retryably).
func commandMux() *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeCommandRun, func(ctx context.Context, task *asynq.Task) error {
		p, err := tasks.Decode[tasks.CommandRun](task)
		if err != nil {
			return err
		}
		switch p.Command {
		case "true":
			_, err := task.ResultWriter().Write([]byte(`{"exit_code":0}`))
			return err
		case "false":
			if _, err := task.ResultWriter().Write([]byte(`{"exit_code":1}`)); err != nil {
				return err
			}
			return fmt.Errorf("command exited with code 1: %w", asynq.SkipRetry)
		}
		return errors.New("transient trouble")
	})
	return mux
}

func TestWaitForResult(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.serve(t, commandMux())
	ctx := waitCtx(t)

	ok, err := b.client.RunCommand(ctx, tasks.CommandRun{Project: app, Command: "true"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.client.Wait(ctx, ok.Queue, ok.ID)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if res.State != tasks.StateCompleted || string(res.Result) != `{"exit_code":0}` || res.ID != ok.ID || res.CompletedAt == nil {
		t.Fatalf("Wait = %+v", res)
	}

	bad, err := b.client.RunCommand(ctx, tasks.CommandRun{Project: app, Command: "false"})
	if err != nil {
		t.Fatal(err)
	}
	res, err = b.client.Wait(ctx, bad.Queue, bad.ID)
	var fe *tasks.TaskFailedError
	if !errors.As(err, &fe) {
		t.Fatalf("Wait error = %v, want *TaskFailedError", err)
	}
	if !strings.Contains(fe.LastErr, "command exited with code 1") || fe.ID != bad.ID || fe.Cancelled || errors.Is(err, tasks.ErrCancelled) {
		t.Fatalf("TaskFailedError = %+v", fe)
	}
	if string(fe.Result) != `{"exit_code":1}` || res == nil || res.State != tasks.StateArchived || res.Retried != 0 {
		t.Fatalf("result of failed task = %+v / %s", res, fe.Result)
	}

	// A retryable failure keeps Wait waiting; the task sits in retry.
	flaky, err := b.client.RunCommand(ctx, tasks.CommandRun{Project: app, Command: "flaky"})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "flaky task in retry", 15*time.Second, func() bool {
		st, err := b.client.Status(ctx, flaky.Queue, flaky.ID)
		return err == nil && st.State == tasks.StateRetry && st.LastError == "transient trouble"
	})
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	res, err = b.client.Wait(short, flaky.Queue, flaky.ID)
	if !errors.Is(err, context.DeadlineExceeded) || (res != nil && res.State != tasks.StateRetry) {
		t.Fatalf("Wait on a retrying task = %+v, %v; want its state and DeadlineExceeded", res, err)
	}
}

func TestWaitUnknownTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	if _, err := b.client.Wait(ctx, "default", "no-such-task"); !errors.Is(err, tasks.ErrTaskNotFound) {
		t.Fatalf("Wait(unknown queue) = %v, want ErrTaskNotFound", err)
	}
	e, err := b.client.StopServer(ctx, tasks.ServerStop{Project: app, Slug: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Status(ctx, e.Queue, "no-such-task"); !errors.Is(err, tasks.ErrTaskNotFound) {
		t.Fatalf("Status(unknown id) = %v, want ErrTaskNotFound", err)
	}
	if err := b.client.Cancel(ctx, e.Queue, "no-such-task"); !errors.Is(err, tasks.ErrTaskNotFound) {
		t.Fatalf("Cancel(unknown id) = %v, want ErrTaskNotFound", err)
	}
}

func TestCancelWaitingTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := waitCtx(t)
	pending, err := b.client.RunCommand(ctx, tasks.CommandRun{Project: app, Command: "true"})
	if err != nil {
		t.Fatal(err)
	}
	scheduled, err := b.client.RunCommand(ctx, tasks.CommandRun{Project: app, Command: "true"}, asynq.ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []*tasks.Enqueued{pending, scheduled} {
		if err := b.client.Cancel(ctx, e.Queue, e.ID); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		res, err := b.client.Wait(ctx, e.Queue, e.ID)
		if !errors.Is(err, tasks.ErrCancelled) || !res.Cancelled || res.State != tasks.StateArchived {
			t.Fatalf("after Cancel: %+v, %v; want archived and cancelled", res, err)
		}
		if ok, err := schema.IsCancelled(ctx, b.rdb, e.ID); !ok || err != nil {
			t.Fatalf("IsCancelled = %v, %v", ok, err)
		}
		// Cancelling again is a no-op.
		if err := b.client.Cancel(ctx, e.Queue, e.ID); err != nil {
			t.Fatalf("second Cancel: %v", err)
		}
	}
	// A worker started now finds nothing to run.
	b.serve(t, commandMux())
	done, err := b.client.RunCommand(ctx, tasks.CommandRun{Project: app, Command: "true"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Wait(ctx, done.Queue, done.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.client.Cancel(ctx, done.Queue, done.ID); !errors.Is(err, tasks.ErrTaskFinished) {
		t.Fatalf("Cancel(completed) = %v, want ErrTaskFinished", err)
	}
	// A task archived without a cancel mark (as a failed one is) is not
	// cancellable either.
	failed, err := b.client.RunCommand(ctx, tasks.CommandRun{Project: app, Command: "false"}, asynq.ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.insp.ArchiveTask(failed.Queue, failed.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.client.Cancel(ctx, failed.Queue, failed.ID); !errors.Is(err, tasks.ErrTaskArchived) {
		t.Fatalf("Cancel(failed and archived) = %v, want ErrTaskArchived", err)
	}
	for _, e := range []*tasks.Enqueued{pending, scheduled} {
		if st, err := b.client.Status(ctx, e.Queue, e.ID); err != nil || st.State != tasks.StateArchived {
			t.Fatalf("cancelled task now %+v, %v", st, err)
		}
	}
	if ok, _ := schema.IsCancelled(ctx, b.rdb, done.ID); ok {
		t.Fatal("a completed task got a cancel mark")
	}
	marked, err := schema.CancelledAmong(ctx, b.rdb, []string{scheduled.ID, done.ID, "unknown", pending.ID})
	if err != nil || len(marked) != 2 || marked[0] != scheduled.ID || marked[1] != pending.ID {
		t.Fatalf("CancelledAmong = %v, %v; want [%s %s]", marked, err, scheduled.ID, pending.ID)
	}
}

func TestCancelActiveTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := waitCtx(t)
	var runs atomic.Int32
	started := make(chan struct{}, 1)
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeCommandRun, func(ctx context.Context, task *asynq.Task) error {
		runs.Add(1)
		id, _ := asynq.GetTaskID(ctx)
		started <- struct{}{}
		<-ctx.Done() // runs until cancelled
		// As the handlers package does: a cancelled task is not retried.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if ok, err := schema.IsCancelled(cctx, b.rdb, id); err == nil && ok {
			return fmt.Errorf("%w: %w", tasks.ErrCancelled, asynq.SkipRetry)
		}
		return ctx.Err()
	})
	b.serve(t, mux)

	e, err := b.client.RunCommand(ctx, tasks.CommandRun{Project: app, Command: "sleep infinity"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("task never started")
	}
	if err := b.client.Cancel(ctx, e.Queue, e.ID); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	res, err := b.client.Wait(ctx, e.Queue, e.ID)
	if !errors.Is(err, tasks.ErrCancelled) || res.State != tasks.StateArchived || !res.Cancelled {
		t.Fatalf("after Cancel: %+v, %v; want archived and cancelled", res, err)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
	if retry, err := b.insp.ListRetryTasks(e.Queue); err != nil || len(retry) != 0 {
		t.Fatalf("retry set = %d tasks, %v", len(retry), err)
	}
}
