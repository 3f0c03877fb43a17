package dashboard_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/dashboard"
	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/secret"
	"github.com/sandboxq/sandboxq/tasks"
)

func TestMain(m *testing.M) { redistest.Main(m) }

type testBundle struct {
	rdb    redis.UniversalClient
	client *tasks.Client
	store  *events.Store
	insp   *asynq.Inspector
	logger *slog.Logger
	dash   *dashboard.Dashboard
	srv    *httptest.Server
}

// setup starts a dashboard over a fresh Redis database; mutate adjusts the
// options (Redis is already set).
func setup(t *testing.T, mutate func(*dashboard.Config)) *testBundle {
	t.Helper()
	rdb := redistest.New(t).Client(t)
	b := &testBundle{
		rdb:    rdb,
		client: tasks.NewClient(rdb),
		store:  events.NewStore(rdb, events.StoreConfig{}),
		insp:   asynq.NewInspectorFromRedisClient(rdb),
		logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	opts := dashboard.Config{Redis: rdb, Store: b.store, Logger: b.logger}
	if mutate != nil {
		mutate(&opts)
	}
	d, err := dashboard.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	b.dash = d
	b.srv = httptest.NewServer(d)
	t.Cleanup(func() {
		b.srv.Close()
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// request is an HTTP request to the dashboard; auth, if set, is applied to
// it.
func (b *testBundle) request(t *testing.T, method, path string, auth func(*http.Request)) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, b.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != nil {
		auth(req)
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

// get GETs path and fails the test unless the answer is 200.
func (b *testBundle) get(t *testing.T, path string, auth func(*http.Request)) string {
	t.Helper()
	status, _, body := b.request(t, http.MethodGet, path, auth)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	return body
}

// getJSON GETs path and decodes the 200 answer into v.
func (b *testBundle) getJSON(t *testing.T, path string, auth func(*http.Request), v any) {
	t.Helper()
	body := b.get(t, path, auth)
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: decode %q: %v", path, body, err)
	}
}

func basicAuth(user, pass string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, pass) }
}

func bearer(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

func testAuth() dashboard.Auth {
	return dashboard.Auth{Username: "ops", Password: secret.New("s3cret-pass"), BearerToken: secret.New("tok-123456")}
}

func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}

func mustNotContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			t.Errorf("%s contains %q:\n%s", what, sub, s)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func proj(name string) tasks.Project { return tasks.Project{Namespace: "team-a", Name: name} }
