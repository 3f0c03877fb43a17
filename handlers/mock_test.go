package handlers

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"

	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/tasks"
)

// Hand-written fakes of the handlers' peers: one XxxFn field per method,
// called as is (a test sets the ones its path uses; an unset one panics,
// which the test reports as an unexpected call).

type mockGateway struct {
	FindFn         func(ctx context.Context, namespace, name string) (*gateway.Sandbox, error)
	FindOrCreateFn func(ctx context.Context, namespace, name string, opts *gateway.CreateOptions) (*gateway.Sandbox, error)
	DestroyFn      func(ctx context.Context, sandboxID string) error
}

var _ Gateway = (*mockGateway)(nil)

func (g *mockGateway) Find(ctx context.Context, namespace, name string) (*gateway.Sandbox, error) {
	return g.FindFn(ctx, namespace, name)
}

func (g *mockGateway) FindOrCreate(ctx context.Context, namespace, name string, opts *gateway.CreateOptions) (*gateway.Sandbox, error) {
	return g.FindOrCreateFn(ctx, namespace, name, opts)
}

func (g *mockGateway) Destroy(ctx context.Context, sandboxID string) error {
	return g.DestroyFn(ctx, sandboxID)
}

type mockDaemon struct {
	GetServerFn     func(ctx context.Context, slug string) (*gateway.ServerInfo, error)
	StartServerFn   func(ctx context.Context, opts gateway.ServerStartOptions) (*gateway.ServerInfo, error)
	StopServerFn    func(ctx context.Context, slug string) error
	RestartServerFn func(ctx context.Context, slug string) (*gateway.ServerInfo, error)
	DeleteServerFn  func(ctx context.Context, slug string) error
	RunCommandFn    func(ctx context.Context, req gateway.RunCommandRequest) (*gateway.CommandResult, error)
	BatchFilesFn    func(ctx context.Context, files []gateway.BatchFile) ([]gateway.BatchResult, error)
	WriteFileFn     func(ctx context.Context, path, content string) (*gateway.FileInfo, error)
	DeleteFileFn    func(ctx context.Context, path string) error
	SetEnvFn        func(ctx context.Context, file string, vars map[string]string) ([]string, error)
	DeleteEnvFn     func(ctx context.Context, file string, keys []string) ([]string, error)
}

var _ Daemon = (*mockDaemon)(nil)

func (d *mockDaemon) GetServer(ctx context.Context, slug string) (*gateway.ServerInfo, error) {
	return d.GetServerFn(ctx, slug)
}

func (d *mockDaemon) StartServer(ctx context.Context, opts gateway.ServerStartOptions) (*gateway.ServerInfo, error) {
	return d.StartServerFn(ctx, opts)
}

func (d *mockDaemon) StopServer(ctx context.Context, slug string) error {
	return d.StopServerFn(ctx, slug)
}

func (d *mockDaemon) RestartServer(ctx context.Context, slug string) (*gateway.ServerInfo, error) {
	return d.RestartServerFn(ctx, slug)
}

func (d *mockDaemon) DeleteServer(ctx context.Context, slug string) error {
	return d.DeleteServerFn(ctx, slug)
}

func (d *mockDaemon) RunCommand(ctx context.Context, req gateway.RunCommandRequest) (*gateway.CommandResult, error) {
	return d.RunCommandFn(ctx, req)
}

func (d *mockDaemon) BatchFiles(ctx context.Context, files []gateway.BatchFile) ([]gateway.BatchResult, error) {
	return d.BatchFilesFn(ctx, files)
}

func (d *mockDaemon) WriteFile(ctx context.Context, path, content string) (*gateway.FileInfo, error) {
	return d.WriteFileFn(ctx, path, content)
}

func (d *mockDaemon) DeleteFile(ctx context.Context, path string) error {
	return d.DeleteFileFn(ctx, path)
}

func (d *mockDaemon) SetEnv(ctx context.Context, file string, vars map[string]string) ([]string, error) {
	return d.SetEnvFn(ctx, file, vars)
}

func (d *mockDaemon) DeleteEnv(ctx context.Context, file string, keys []string) ([]string, error) {
	return d.DeleteEnvFn(ctx, file, keys)
}

type mockStore struct {
	UpsertFn        func(ctx context.Context, p tasks.Project, sandboxID, provider string) error
	UpsertReadyFn   func(ctx context.Context, p tasks.Project, sandboxID, provider string) error
	TouchFn         func(ctx context.Context, p tasks.Project) error
	StopServersFn   func(ctx context.Context, p tasks.Project, sandboxID string) ([]tasks.Event, error)
	SandboxStatusFn func(ctx context.Context, p tasks.Project, sandboxID, status, errMsg string) (*tasks.Event, error)
	LastEventIDFn   func(ctx context.Context, p tasks.Project) (string, error)
	ExpediteFn      func(ctx context.Context, p tasks.Project) error
	WaitServerFn    func(ctx context.Context, p tasks.Project, slug, fromID string, until func(events.ServerState) bool) (events.ServerState, string, error)
}

var _ Store = (*mockStore)(nil)

func (s *mockStore) Upsert(ctx context.Context, p tasks.Project, sandboxID, provider string) error {
	return s.UpsertFn(ctx, p, sandboxID, provider)
}

func (s *mockStore) UpsertReady(ctx context.Context, p tasks.Project, sandboxID, provider string) error {
	return s.UpsertReadyFn(ctx, p, sandboxID, provider)
}

func (s *mockStore) Touch(ctx context.Context, p tasks.Project) error { return s.TouchFn(ctx, p) }

func (s *mockStore) StopServers(ctx context.Context, p tasks.Project, sandboxID string) ([]tasks.Event, error) {
	return s.StopServersFn(ctx, p, sandboxID)
}

func (s *mockStore) SandboxStatus(ctx context.Context, p tasks.Project, sandboxID, status, errMsg string) (*tasks.Event, error) {
	return s.SandboxStatusFn(ctx, p, sandboxID, status, errMsg)
}

func (s *mockStore) LastEventID(ctx context.Context, p tasks.Project) (string, error) {
	return s.LastEventIDFn(ctx, p)
}

func (s *mockStore) Expedite(ctx context.Context, p tasks.Project) error { return s.ExpediteFn(ctx, p) }

func (s *mockStore) WaitServer(ctx context.Context, p tasks.Project, slug, fromID string, until func(events.ServerState) bool) (events.ServerState, string, error) {
	return s.WaitServerFn(ctx, p, slug, fromID, until)
}

type mockLocker struct {
	LockFn func(ctx context.Context, p tasks.Project, owner string) (context.Context, func(), error)
}

var _ Locker = (*mockLocker)(nil)

func (l *mockLocker) Lock(ctx context.Context, p tasks.Project, owner string) (context.Context, func(), error) {
	return l.LockFn(ctx, p, owner)
}

type mockResults struct {
	ResultFn func(ctx context.Context, queue, id string) ([]byte, error)
}

var _ Results = (*mockResults)(nil)

func (r *mockResults) Result(ctx context.Context, queue, id string) ([]byte, error) {
	return r.ResultFn(ctx, queue, id)
}

// freeLocks is a Locker whose leases are always free.
func freeLocks() *mockLocker {
	return &mockLocker{LockFn: func(ctx context.Context, _ tasks.Project, _ string) (context.Context, func(), error) {
		return ctx, func() {}, nil
	}}
}

// noResults is a Results that has no previous result for any task.
func noResults() *mockResults {
	return &mockResults{ResultFn: func(context.Context, string, string) ([]byte, error) { return nil, nil }}
}

// newTestHandlers builds Handlers on cfg without Redis: leases always free
// and no previous results unless cfg says otherwise, logs to the test.
func newTestHandlers(t testing.TB, cfg Config) *Handlers {
	t.Helper()
	if cfg.Locks == nil {
		cfg.Locks = freeLocks()
	}
	if cfg.Results == nil {
		cfg.Results = noResults()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

// resultLog records every result a task wrote, progress included.
type resultLog struct {
	mu     sync.Mutex
	writes [][]byte
}

func (r *resultLog) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, append([]byte(nil), b...))
	return len(b), nil
}

// last decodes the last result written into v and reports whether there
// was one.
func (r *resultLog) last(t testing.TB, v any) bool {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.writes) == 0 {
		return false
	}
	if err := json.Unmarshal(r.writes[len(r.writes)-1], v); err != nil {
		t.Fatalf("decode result: %v", err)
	}
	return true
}

// attempt says which attempt of which task work runs.
type attempt struct {
	id, queue string
	retried   int
}

// work runs fn on payload p as one attempt of a task, through the same
// decoding, result writing and registry touch as a task the asynq server
// hands over, but without Redis or a server (compare river's
// rivertest.NewWorker). It returns what the handler wrote as results and
// its error.
func work[P tasks.Payload](t testing.TB, ctx context.Context, h *Handlers, fn Func[P], p P, a attempt) (*resultLog, error) {
	t.Helper()
	raw, err := tasks.New(p)
	if err != nil {
		t.Fatalf("tasks.New: %v", err)
	}
	if a.id == "" {
		a.id = "task-1"
	}
	if a.queue == "" {
		a.queue = "default"
	}
	log := &resultLog{}
	err = process(ctx, h, raw, taskMeta{id: a.id, queue: a.queue, retried: a.retried, result: log}, fn)
	return log, err
}
