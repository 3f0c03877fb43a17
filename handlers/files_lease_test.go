package handlers

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/tasks"
)

// blockingLocks is a Locker whose every Lock reports on entered and then
// waits until free is closed (the lease is granted) or ctx ends.
type blockingLocks struct {
	entered chan tasks.Project
	free    chan struct{}
}

func (l *blockingLocks) Lock(ctx context.Context, p tasks.Project, _ string) (context.Context, func(), error) {
	l.entered <- p
	select {
	case <-l.free:
		return ctx, func() {}, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// decodeCounter counts the payloads the handlers decode.
func decodeCounter(h *Handlers) *atomic.Int32 {
	var n atomic.Int32
	h.decoded = func(typ string) {
		if typ == tasks.TypeFilesWrite {
			n.Add(1)
		}
	}
	return &n
}

// TestFilesWriteWaitsForLeaseBeforeDecoding: a files:write chunk for a busy
// project waits for the lease without having decoded its files, and
// decodes and writes them once the lease is granted.
func TestFilesWriteWaitsForLeaseBeforeDecoding(t *testing.T) {
	t.Parallel()
	content := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
	var mu sync.Mutex
	var written string
	d := &mockDaemon{BatchFilesFn: func(_ context.Context, files []gateway.BatchFile) ([]gateway.BatchResult, error) {
		mu.Lock()
		defer mu.Unlock()
		written = files[0].Content
		return []gateway.BatchResult{{Path: files[0].Path, Success: true}}, nil
	}}
	locks := &blockingLocks{entered: make(chan tasks.Project, 1), free: make(chan struct{})}
	h := newTestHandlers(t, Config{Gateway: oneSandbox(&gateway.Sandbox{SandboxID: "sbx-1"}), Daemons: daemonOf(d), Locks: locks})
	decoded := decodeCounter(h)
	p := tasks.FilesWrite{Project: testProject, Files: []tasks.File{{Path: "big.txt", Content: content}}}

	done := make(chan error, 1)
	go func() {
		_, err := work(t, t.Context(), h, h.filesWrite, p, attempt{id: "files-1"})
		done <- err
	}()
	select {
	case proj := <-locks.entered:
		if want := testProject.Normalize(); proj != want {
			t.Errorf("lease asked for %+v, want %+v", proj, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler never asked for the lease")
	}
	if n := decoded.Load(); n != 0 {
		t.Errorf("%d payloads decoded while the chunk waits for its project, want none", n)
	}
	close(locks.free)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("files:write: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not finish once the lease was granted")
	}
	mu.Lock()
	defer mu.Unlock()
	if decoded.Load() != 1 || written != content {
		t.Errorf("after the lease: %d decodes and %d bytes written, want 1 and %d", decoded.Load(), len(written), len(content))
	}
}

// TestFilesWriteBusyProjectNeverDecodes: a chunk whose project stays busy
// goes back to the queue without ever decoding its files.
func TestFilesWriteBusyProjectNeverDecodes(t *testing.T) {
	t.Parallel()
	busy := &mockLocker{LockFn: func(context.Context, tasks.Project, string) (context.Context, func(), error) {
		return nil, nil, ErrProjectBusy
	}}
	h := newTestHandlers(t, Config{Gateway: oneSandbox(&gateway.Sandbox{SandboxID: "sbx-1"}), Daemons: daemonOf(&mockDaemon{}), Locks: busy})
	decoded := decodeCounter(h)
	_, err := work(t, t.Context(), h, h.filesWrite, filesPayload("a.txt", "b.txt"), attempt{})
	if !errors.Is(err, ErrProjectBusy) {
		t.Fatalf("err = %v, want ErrProjectBusy", err)
	}
	if n := decoded.Load(); n != 0 {
		t.Errorf("%d payloads decoded for a busy project, want none", n)
	}
}

// TestFilesWriteReleasesLeaseOnPanic: the lease process takes for a
// files:write is released even when the handler panics (the Recover
// middleware turns the panic into an error; a lease left held would block
// the project).
func TestFilesWriteReleasesLeaseOnPanic(t *testing.T) {
	t.Parallel()
	var taken, released atomic.Int32
	locks := &mockLocker{LockFn: func(ctx context.Context, _ tasks.Project, _ string) (context.Context, func(), error) {
		taken.Add(1)
		return ctx, func() { released.Add(1) }, nil
	}}
	d := &mockDaemon{BatchFilesFn: func(context.Context, []gateway.BatchFile) ([]gateway.BatchResult, error) {
		panic("daemon client bug")
	}}
	h := newTestHandlers(t, Config{Gateway: oneSandbox(&gateway.Sandbox{SandboxID: "sbx-1"}), Daemons: daemonOf(d), Locks: locks})
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the handler did not panic")
			}
		}()
		_, _ = work(t, t.Context(), h, h.filesWrite, filesPayload("a.txt"), attempt{})
	}()
	if taken.Load() != 1 || released.Load() != 1 {
		t.Errorf("leases taken %d, released %d; want 1 and 1", taken.Load(), released.Load())
	}
}
