//go:build unix

package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandboxq/sandboxq/dashboard"
	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
)

// artifactsDir is where screenshots go: $SANDBOXQ_ARTIFACTS/dashboard, or
// a temporary directory.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if root := os.Getenv("SANDBOXQ_ARTIFACTS"); root != "" {
		dir = filepath.Join(root, "dashboard")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("browser artifacts in %s", dir)
	return dir
}

// browse runs headless Chromium on url once: it saves a screenshot to shot
// and returns the DOM after scripts ran (a second run with --dump-dom).
func browse(t *testing.T, bin, url, shot string) string {
	t.Helper()
	run := func(mode string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin,
			"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir="+t.TempDir(), "--window-size=1280,900", "--virtual-time-budget=5000",
			mode, url)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		// Chromium forks helpers: give it a process group of its own and
		// kill the whole group on timeout and after it exits.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		err := cmd.Run()
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		if err != nil {
			t.Fatalf("chromium %s %s: %v\n%s", mode, url, err, stderr.String())
		}
		return stdout.String()
	}
	run("--screenshot=" + shot)
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("screenshot of %s: %v", url, err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 5000 {
		t.Fatalf("screenshot of %s is not a picture (%d bytes)", url, len(png))
	}
	return run("--dump-dom")
}

func TestBrowserShowsQueuesAndSandboxes(t *testing.T) {
	t.Parallel()
	bin := testutil.Chromium(t)
	dir := artifactsDir(t)
	reg := prometheus.NewRegistry()
	b := setup(t, func(o *dashboard.Config) { o.Metrics = reg; o.Refresh = -1 })
	w := b.startWorker(t, reg, nil)
	ctx := t.Context()
	wait := b.wait(t)
	p := tasks.Project{Namespace: "acme", Name: "storefront"}

	// A worker with finished tasks: a sandbox, files, a running server, a
	// command.
	res, err := wait(b.client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: p}))
	if err != nil {
		t.Fatal(err)
	}
	var ens handlers.EnsureResult
	if err := json.Unmarshal(res.Result, &ens); err != nil {
		t.Fatal(err)
	}
	fs, err := b.client.WriteFiles(ctx, tasks.FilesWrite{Project: p, Files: []tasks.File{{Path: "/app/index.html", Content: "<h1>hi</h1>"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wait(fs[0], nil); err != nil {
		t.Fatal(err)
	}
	res, err = wait(b.client.StartServer(ctx, tasks.ServerStart{Project: p, Slug: "web", Command: "sleep 300", WaitFor: tasks.WaitForRunning}))
	if err != nil {
		t.Fatal(err)
	}
	var srv handlers.ServerResult
	if err := json.Unmarshal(res.Result, &srv); err != nil {
		t.Fatal(err)
	}
	if _, err := wait(b.client.RunCommand(ctx, tasks.CommandRun{Project: p, Command: "cat app/index.html"})); err != nil {
		t.Fatal(err)
	}
	// The registry as the watcher records it.
	if err := b.store.Upsert(ctx, p, ens.SandboxID, ens.Provider); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.ServerStatus(ctx, p, ens.SandboxID, srv.Slug, events.ServerState{
		Status: srv.Status, URL: srv.URL, Port: srv.Port, UpdatedAt: time.Now(),
	}); err != nil {
		t.Fatal(err)
	}
	if _, ok := w.lp.Sandbox(ens.SandboxID); !ok {
		t.Fatal("the sandbox is gone")
	}

	home := browse(t, bin, b.srv.URL+"/monitoring/", filepath.Join(dir, "asynqmon.png"))
	mustContain(t, "Asynqmon dashboard", home, "Queues", tasks.QueueCritical, tasks.QueueDefault)

	completed := browse(t, bin, b.srv.URL+"/monitoring/queues/"+tasks.QueueDefault+"?status=completed", filepath.Join(dir, "asynqmon-completed.png"))
	mustContain(t, "Asynqmon completed tasks (deep link)", completed, tasks.TypeCommandRun, tasks.TypeServerStart, "storefront")

	page := browse(t, bin, b.srv.URL+"/sandboxes", filepath.Join(dir, "sandboxes.png"))
	mustContain(t, "sandboxes page", page, "acme/", "storefront", ens.SandboxID, "web", srv.Status)
	if srv.URL != "" {
		mustContain(t, "sandboxes page", page, srv.URL)
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	t.Logf("screenshots: %s", strings.Join(names, ", "))
	if errors.Is(ctx.Err(), context.Canceled) {
		t.Fatal("test context ended early")
	}
}
