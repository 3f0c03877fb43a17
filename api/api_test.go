package api

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/sandboxq/sandboxq/internal/secret"
	"github.com/sandboxq/sandboxq/internal/testutil"
)

func TestCheckListen(t *testing.T) {
	t.Parallel()
	tok := []secret.Secret{secret.New("t")}
	cases := []struct {
		addr   string
		tokens []secret.Secret
		ok     bool
	}{
		{"127.0.0.1:8080", nil, true},
		{"127.0.0.2:0", nil, true},
		{"[::1]:8080", nil, true},
		{"localhost:8080", nil, true},
		{"0.0.0.0:8080", nil, false},
		{":8080", nil, false},
		{"10.1.2.3:80", nil, false},
		{"example.com:80", nil, false},
		{"[::]:8080", []secret.Secret{{}}, false},
		{"0.0.0.0:8080", tok, true},
		{":8080", tok, true},
		{"no-port", nil, false},
	}
	for _, c := range cases {
		err := CheckListen(c.addr, c.tokens)
		if (err == nil) != c.ok {
			t.Errorf("CheckListen(%q, %d tokens) = %v, want ok=%v", c.addr, len(c.tokens), err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), c.addr) {
			t.Errorf("CheckListen(%q): error %q does not name the address", c.addr, err)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	base := Config{Client: b.client, Redis: b.rdb}
	cases := map[string]func(*Config){
		"no client":         func(o *Config) { o.Client = nil },
		"no redis":          func(o *Config) { o.Redis = nil },
		"empty token":       func(o *Config) { o.Tokens = []secret.Secret{secret.New("a"), {}} },
		"open non-loopback": func(o *Config) { o.ListenAddr = "0.0.0.0:8080" },
		"negative body":     func(o *Config) { o.MaxBody = -1 },
		"negative wait":     func(o *Config) { o.MaxWait = -1 },
	}
	for name, mutate := range cases {
		o := base
		mutate(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	o := base
	o.ListenAddr, o.Tokens = "0.0.0.0:8080", []secret.Secret{secret.New("x")}
	if _, err := New(o); err != nil {
		t.Errorf("non-loopback with a token: %v", err)
	}
}

// TestAuth checks that every route of the route table needs a valid bearer
// token, and that the token never reaches the logs.
func TestAuth(t *testing.T) {
	t.Parallel()
	logs := &testutil.SyncBuffer{}
	b := setup(t, func(o *Config) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	paths := map[string]string{
		"/tasks/{type}":                                    "/tasks/command:run",
		"/tasks/{queue}/{id}":                              "/tasks/default/x",
		"/projects/{namespace}/{name}":                     "/projects/default/p",
		"/projects/{namespace}/{name}/events":              "/projects/default/p/events",
		"/projects/{namespace}/{name}/sandbox":             "/projects/default/p/sandbox",
		"/projects/{namespace}/{name}/servers/{slug}":      "/projects/default/p/servers/web",
		"/projects/{namespace}/{name}/files":               "/projects/default/p/files?path=/a",
		"/projects/{namespace}/{name}/env":                 "/projects/default/p/env",
		"/openapi.json":                                    "/openapi.json",
		"/tasks/{queue}/{id}/retry":                        "/tasks/default/x/retry",
		"/projects/{namespace}/{name}/servers/{slug}/logs": "/projects/default/p/servers/web/logs",
		"/projects/{namespace}/{name}/tasks":               "/projects/default/p/tasks",
	}
	for _, rt := range b.api.routes() {
		path, ok := paths[rt.path]
		if !ok {
			t.Fatalf("route %s %s has no sample path in this test", rt.method, rt.path)
		}
		for name, hdr := range map[string]string{
			"none":   "",
			"wrong":  "Bearer wrong-token",
			"basic":  "Basic dXNlcjpwYXNz",
			"empty":  "Bearer ",
			"prefix": "Bearer " + testToken[:len(testToken)-1],
		} {
			req := request{method: rt.method, path: path, noAuth: true}
			if hdr != "" {
				req.header = map[string]string{"Authorization": hdr}
			}
			resp := b.expectError(t, req, http.StatusUnauthorized, "")
			if got := resp.Error; strings.Contains(got, testToken) {
				t.Errorf("%s %s (%s): error echoes the token", rt.method, path, name)
			}
		}
	}
	// Unknown paths need the token too (no route discovery without it).
	b.expectError(t, request{method: "GET", path: "/nope", noAuth: true}, http.StatusUnauthorized, "")
	// Either configured token works; the scheme is case-insensitive.
	b.expect(t, request{method: "GET", path: "/openapi.json", noAuth: true, header: map[string]string{"Authorization": "Bearer another-token"}}, http.StatusOK, nil)
	b.expect(t, request{method: "GET", path: "/openapi.json", noAuth: true, header: map[string]string{"Authorization": "bearer " + testToken}}, http.StatusOK, nil)
	if strings.Contains(logs.String(), testToken) {
		t.Errorf("logs contain the token")
	}
}

func TestOpenNoTokens(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *Config) { o.Tokens = nil; o.ListenAddr = "127.0.0.1:0" })
	b.expect(t, request{method: "GET", path: "/openapi.json", noAuth: true}, http.StatusOK, nil)
}

func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.expectError(t, request{method: "GET", path: "/nothing/here"}, http.StatusNotFound, "")
	resp := b.expect(t, request{method: "PUT", path: "/tasks/default/abc"}, http.StatusMethodNotAllowed, nil)
	if allow := resp.Header.Get("Allow"); allow != "GET, DELETE" {
		t.Errorf("Allow = %q, want \"GET, DELETE\"", allow)
	}
	resp = b.expect(t, request{method: "GET", path: "/tasks/command:run/extra/segments"}, http.StatusNotFound, nil)
	_ = resp
}
