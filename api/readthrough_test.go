package api

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/internal/testutil"
)

// readThrough serves an API whose Gateway is a client of a real local
// provider, and returns a daemon client of a sandbox created for project
// default/app.
func readThrough(t *testing.T) (*testBundle, *local.Provider, *gateway.Sandbox, *gateway.Daemon) {
	t.Helper()
	lp, gw := testutil.Provider(t, local.Config{})
	b := setup(t, func(o *Config) { o.Gateway = gw })
	sb, err := gw.FindOrCreate(t.Context(), "default", "app", nil)
	if err != nil {
		t.Fatal(err)
	}
	return b, lp, sb, gw.Daemon(sb)
}

func TestReadSandbox(t *testing.T) {
	t.Parallel()
	b, lp, sb, _ := readThrough(t)
	var got SandboxView
	b.expect(t, request{method: "GET", path: "/projects/default/app/sandbox"}, http.StatusOK, &got)
	want := SandboxView{SandboxID: sb.SandboxID, Namespace: "default", Name: "app", Provider: sb.Provider, Status: "ready"}
	if got != want || got.SandboxID == "" {
		t.Errorf("sandbox = %+v, want %+v", got, want)
	}
	// Another project, or another namespace, has none; nothing is created.
	b.expectError(t, request{method: "GET", path: "/projects/default/other/sandbox"}, http.StatusNotFound, "")
	b.expectError(t, request{method: "GET", path: "/projects/tenant-2/app/sandbox"}, http.StatusNotFound, "")
	if n := len(lp.Sandboxes()); n != 1 {
		t.Errorf("%d sandboxes after the reads, want 1", n)
	}
	b.expectError(t, request{method: "GET", path: "/projects/default/a%20b/sandbox"}, http.StatusBadRequest, "name")
	b.expectError(t, request{method: "GET", path: "/projects/default/app/sandbox?x=1"}, http.StatusBadRequest, "x")
}

func TestReadServer(t *testing.T) {
	t.Parallel()
	b, _, _, d := readThrough(t)
	ctx := t.Context()
	if _, err := d.StartServer(ctx, gateway.ServerStartOptions{Slug: "crash", Start: "exit 3", RestartPolicy: sandboxq.RestartNever}); err != nil {
		t.Fatal(err)
	}
	var got ServerView
	testutil.Eventually(t, "server crash failed", 10*time.Second, func() bool {
		b.expect(t, request{method: "GET", path: "/projects/default/app/servers/crash"}, http.StatusOK, &got)
		return got.Status == sandboxq.ServerFailed
	})
	if got.Slug != "crash" || got.ExitCode == nil || *got.ExitCode != 3 {
		t.Errorf("server = %+v, want slug crash, exit code 3", got)
	}
	// A fresh read, not a cached one: the answer follows the daemon.
	if _, err := d.StartServer(ctx, gateway.ServerStartOptions{Slug: "crash", Start: "sleep 30"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "server crash running again", 10*time.Second, func() bool {
		b.expect(t, request{method: "GET", path: "/projects/default/app/servers/crash"}, http.StatusOK, &got)
		return got.Status == sandboxq.ServerRunning && got.ExitCode == nil
	})
	t.Cleanup(func() { _ = d.StopServer(ctx, "crash") })

	b.expectError(t, request{method: "GET", path: "/projects/default/app/servers/none"}, http.StatusNotFound, "")
	b.expectError(t, request{method: "GET", path: "/projects/default/other/servers/crash"}, http.StatusNotFound, "")
	b.expectError(t, request{method: "GET", path: "/projects/default/app/servers/-bad"}, http.StatusBadRequest, "slug")
}

func TestReadFile(t *testing.T) {
	t.Parallel()
	b, _, _, d := readThrough(t)
	if _, err := d.WriteFile(t.Context(), "/app/src/index.ts", "export const x = 'ü';\n"); err != nil {
		t.Fatal(err)
	}
	var got FileView
	b.expect(t, request{method: "GET", path: "/projects/default/app/files?path=/app/src/./index.ts"}, http.StatusOK, &got)
	if got != (FileView{Path: "/app/src/index.ts", Content: "export const x = 'ü';\n"}) {
		t.Errorf("file = %+v", got)
	}
	b.expectError(t, request{method: "GET", path: "/projects/default/app/files?path=/app/missing.ts"}, http.StatusNotFound, "")
	b.expectError(t, request{method: "GET", path: "/projects/default/other/files?path=/app/src/index.ts"}, http.StatusNotFound, "")
	for _, q := range []string{"", "?path=", "?path=../../etc/passwd", "?path=/", "?path=a%00b"} {
		b.expectError(t, request{method: "GET", path: "/projects/default/app/files" + q}, http.StatusBadRequest, "path")
	}
	b.expectError(t, request{method: "GET", path: "/projects/default/app/files?path=/a&path=/b"}, http.StatusBadRequest, "path")
	b.expectError(t, request{method: "GET", path: "/projects/default/app/files?path=/a&content=true"}, http.StatusBadRequest, "content")
}

func TestReadEnv(t *testing.T) {
	t.Parallel()
	b, _, _, d := readThrough(t)
	ctx := t.Context()
	if _, err := d.SetEnv(ctx, ".env", map[string]string{"API_URL": "http://x", "MODE": "dev"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SetEnv(ctx, "app/.env.local", map[string]string{"PORT": "3000"}); err != nil {
		t.Fatal(err)
	}
	var got EnvView
	b.expect(t, request{method: "GET", path: "/projects/default/app/env"}, http.StatusOK, &got)
	if got.File != ".env" || len(got.Env) != 2 || got.Env["API_URL"] != "http://x" || got.Env["MODE"] != "dev" {
		t.Errorf("env = %+v", got)
	}
	got = EnvView{}
	b.expect(t, request{method: "GET", path: "/projects/default/app/env?file=app/.env.local"}, http.StatusOK, &got)
	if got.File != "app/.env.local" || len(got.Env) != 1 || got.Env["PORT"] != "3000" {
		t.Errorf("env.local = %+v", got)
	}
	b.expectError(t, request{method: "GET", path: "/projects/default/app/env?file=../x"}, http.StatusBadRequest, "file")
	b.expectError(t, request{method: "GET", path: "/projects/default/other/env"}, http.StatusNotFound, "")
}

// TestReadThroughWithoutGateway: 503 without a gateway, 502 (without the
// gateway's address or key) when it cannot be reached.
func TestReadThroughWithoutGateway(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for _, p := range []string{"/sandbox", "/servers/web", "/files?path=/a", "/env"} {
		b.expectError(t, request{method: "GET", path: "/projects/default/app" + p}, http.StatusServiceUnavailable, "")
	}
	lp, _ := testutil.Provider(t, local.Config{})
	url := lp.URL()
	key := lp.APIKey()
	if err := lp.Close(); err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.NewClient(url, gateway.WithAPIKey(key))
	if err != nil {
		t.Fatal(err)
	}
	b = setup(t, func(o *Config) { o.Gateway = gw })
	eb := b.expectError(t, request{method: "GET", path: "/projects/default/app/sandbox"}, http.StatusBadGateway, "")
	if strings.Contains(eb.Error, key.Reveal()) || strings.Contains(eb.Error, url) {
		t.Errorf("error %q shows the gateway's key or address", eb.Error)
	}
}
