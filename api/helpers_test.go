package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/internal/asynqlog"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/secret"
	"github.com/sandboxq/sandboxq/tasks"
)

func TestMain(m *testing.M) { redistest.Main(m) }

const testToken = "test-token-7f3a"

type testBundle struct {
	rdb    *redis.Client
	client *tasks.Client
	insp   *asynq.Inspector
	store  *events.Store
	api    *API
	srv    *httptest.Server
	base   string // srv.URL + Prefix
	logger *slog.Logger
}

// setup serves an API over a fresh Redis database. mutate may change the
// options before New.
func setup(t testing.TB, mutate func(*Config)) *testBundle {
	t.Helper()
	rdb := redistest.New(t).Client(t)
	b := &testBundle{
		rdb:    rdb,
		client: tasks.NewClient(rdb),
		insp:   asynq.NewInspectorFromRedisClient(rdb),
		store:  events.NewStore(rdb, events.StoreConfig{}),
		logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	opts := Config{
		Client: b.client,
		Redis:  rdb,
		Store:  b.store,
		Tokens: []secret.Secret{secret.New("another-token"), secret.New(testToken)},
		Logger: b.logger,
	}
	if mutate != nil {
		mutate(&opts)
	}
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	b.api = a
	b.srv = httptest.NewServer(a)
	b.srv.Config.RegisterOnShutdown(func() { _ = a.Close() })
	t.Cleanup(func() {
		_ = a.Close()
		b.srv.Close()
		_ = b.client.Close()
	})
	b.base = b.srv.URL + Prefix
	return b
}

// request is one call of the API.
type request struct {
	method, path string
	body         any // []byte, string or a value to encode as JSON
	header       map[string]string
	noAuth       bool
}

// do sends req and returns the answer with its body read.
func (b *testBundle) do(t testing.TB, req request) (*http.Response, []byte) {
	t.Helper()
	resp, raw, err := b.try(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, raw
}

// try is do for goroutines other than the test's: it returns errors.
func (b *testBundle) try(ctx context.Context, req request) (*http.Response, []byte, error) {
	var body io.Reader
	switch v := req.body.(type) {
	case nil:
	case []byte:
		body = bytes.NewReader(v)
	case string:
		body = strings.NewReader(v)
	default:
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, nil, err
		}
		body = bytes.NewReader(raw)
	}
	r, err := http.NewRequestWithContext(ctx, req.method, b.base+req.path, body)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if !req.noAuth {
		r.Header.Set("Authorization", "Bearer "+testToken)
	}
	for k, v := range req.header {
		r.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", req.method, req.path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: read body: %w", req.method, req.path, err)
	}
	return resp, raw, nil
}

// expect sends req, checks the status and decodes the JSON answer into v
// (if not nil).
func (b *testBundle) expect(t testing.TB, req request, status int, v any) *http.Response {
	t.Helper()
	resp, raw := b.do(t, req)
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", req.method, req.path, resp.StatusCode, status, raw)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s %s: Content-Type %q, want JSON", req.method, req.path, ct)
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatalf("%s %s: decode %s: %v", req.method, req.path, raw, err)
		}
	}
	return resp
}

// expectError checks an error answer: status, a non-empty message and the
// field.
func (b *testBundle) expectError(t testing.TB, req request, status int, field string) errorBody {
	t.Helper()
	var eb errorBody
	b.expect(t, req, status, &eb)
	if eb.Error == "" {
		t.Fatalf("%s %s: empty error message", req.method, req.path)
	}
	if eb.Field != field {
		t.Fatalf("%s %s: field %q, want %q (error %q)", req.method, req.path, eb.Field, field, eb.Error)
	}
	return eb
}

// startProcessor runs an asynq server over b's Redis with the given
// handlers until the test ends. It stands in for the worker where a test
// needs to control when and how a task finishes.
func (b *testBundle) startProcessor(t testing.TB, handlers map[string]asynq.HandlerFunc, mws ...asynq.MiddlewareFunc) {
	t.Helper()
	mux := asynq.NewServeMux()
	mux.Use(mws...)
	for typ, h := range handlers {
		mux.HandleFunc(typ, h)
	}
	srv := asynq.NewServerFromRedisClient(b.rdb, asynq.Config{
		Concurrency:              4,
		Queues:                   map[string]int{tasks.QueueCritical: 1, tasks.QueueDefault: 1, "low": 1},
		TaskCheckInterval:        10 * time.Millisecond,
		DelayedTaskCheckInterval: 50 * time.Millisecond,
		RetryDelayFunc:           func(int, error, *asynq.Task) time.Duration { return 10 * time.Millisecond },
		ShutdownTimeout:          2 * time.Second,
		Logger:                   asynqlog.New(b.logger),
		LogLevel:                 asynq.WarnLevel,
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
}

// signal is a one-shot, test-visible event.
type signal struct {
	once sync.Once
	ch   chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

func (s *signal) fire() { s.once.Do(func() { close(s.ch) }) }

func (s *signal) wait(t testing.TB, what string, timeout time.Duration) {
	t.Helper()
	select {
	case <-s.ch:
	case <-time.After(timeout):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
