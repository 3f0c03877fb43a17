//go:build unix

package dashboard_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
	sqworker "github.com/sandboxq/sandboxq/worker"
)

// liveWorker runs a whole worker (watchers, dashboard with server logs,
// Host guard) on a loopback port against the local provider.
func liveWorker(t *testing.T) (base string, client *tasks.Client, rdb redis.UniversalClient) {
	t.Helper()
	rdb = redistest.New(t).Client(t)
	_, gw := testutil.Provider(t, local.Config{})
	w, err := sqworker.New(sqworker.Config{
		Redis: rdb, Gateway: gw, Concurrency: 4, ShutdownTimeout: 5 * time.Second,
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		Handlers: handlers.Config{PollInterval: 50 * time.Millisecond, LeaseWait: time.Second},
		HTTP:     sqworker.HTTPConfig{Addr: "127.0.0.1:0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker Run: %v", err)
		}
	})
	return "http://" + w.Addr(), tasks.NewClient(rdb), rdb
}

func TestBrowserProjectPageIsLive(t *testing.T) {
	t.Parallel()
	bin := testutil.Chromium(t)
	dir := artifactsDir(t)
	base, client, rdb := liveWorker(t)
	ctx := t.Context()
	p := tasks.Project{Namespace: "acme", Name: "shop"}
	other := tasks.Project{Namespace: "blogs", Name: "diary"}
	wait := func(e *tasks.Enqueued, err error) (*tasks.Result, error) {
		t.Helper()
		if err != nil {
			t.Fatalf("enqueue: %v", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		return client.Wait(wctx, e.Queue, e.ID)
	}
	for _, proj := range []tasks.Project{p, other} {
		if _, err := wait(client.EnsureSandbox(ctx, tasks.SandboxEnsure{Project: proj})); err != nil {
			t.Fatal(err)
		}
	}
	// A dev server that crashes: "boom" on stderr, exit code 2.
	crash, err := client.StartServer(ctx, tasks.ServerStart{Project: p, Slug: "web", Command: "echo boom >&2; exit 2"})
	if _, err := wait(crash, err); err == nil {
		t.Fatal("server:start of a crashing server succeeded")
	}
	// The watcher records the failure in the project's stream.
	waitEvent(t, rdb, p, "web", "failed")

	browser := testutil.StartBrowser(t, bin)
	page := browser.Open(t, base+"/sandboxes/acme/shop")
	testutil.Eventually(t, "the project page to show the failed server and its output", 60*time.Second, func() bool {
		s := page.Text()
		return strings.Contains(s, "server web failed") && strings.Contains(s, "boom") && strings.Contains(s, "live")
	})
	page.Screenshot(filepath.Join(dir, "project-failed-server.png"))
	text := page.Text()
	mustContain(t, "project page", text, "acme/shop", "Servers", "web", "failed", "exit code 2", "boom", "Timeline",
		"server:start enqueued", "server:start attempt 1 started", "server:start attempt 1 failed", "server:start archived", crash.ID)
	mustNotContain(t, "project page", text, "blogs/diary")
	// The failed event carries the server's output, and the task links to
	// its Asynqmon page.
	var got struct {
		EventLogs, TaskLogs string
		Link                string
	}
	page.Eval(`({EventLogs: (document.querySelector("#timeline li.event pre.logs") || {}).textContent || "",
		TaskLogs: (document.querySelector("#timeline li.task pre.logs") || {}).textContent || "",
		Link: (document.querySelector("#timeline li.task a") || {href: ""}).getAttribute("href")})`, &got)
	if !strings.Contains(got.EventLogs, "boom") {
		t.Errorf("the failed event in the timeline shows output %q, want boom", got.EventLogs)
	}
	if !strings.Contains(got.TaskLogs, "boom") {
		t.Errorf("the archived task in the timeline shows output %q, want boom", got.TaskLogs)
	}
	if want := "/monitoring/queues/" + crash.Queue + "/tasks/" + crash.ID; got.Link != want {
		t.Errorf("the task links to %q, want its Asynqmon page %q", got.Link, want)
	}

	// A marker on window survives only if the page is never loaded again.
	page.Eval(`window.sandboxqMarker = "kept"; true`, nil)
	started, err := client.StartServer(ctx, tasks.ServerStart{Project: p, Slug: "api", Command: "sleep 300", WaitFor: tasks.WaitForRunning})
	if _, err := wait(started, err); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the timeline to show the new server without a page load", 60*time.Second, func() bool {
		var got struct {
			Marker string `json:"marker"`
			Text   string `json:"text"`
		}
		page.Eval(`({marker: window.sandboxqMarker || "", text: document.getElementById("timeline").innerText})`, &got)
		if got.Marker != "kept" {
			t.Fatalf("the page was loaded again: the marker on window is gone")
		}
		return strings.Contains(got.Text, "server api running") && strings.Contains(got.Text, started.ID) &&
			strings.Contains(got.Text, "server:start done")
	})
	page.Screenshot(filepath.Join(dir, "project-live-update.png"))

	sandboxes := browser.Open(t, base+"/sandboxes")
	testutil.Eventually(t, "/sandboxes to list both projects", 60*time.Second, func() bool {
		s := sandboxes.Text()
		return strings.Contains(s, "acme/shop") && strings.Contains(s, "blogs/diary")
	})
	sandboxes.Eval(`window.sandboxqMarker = "kept"; var q = document.getElementById("q"); q.value = "SHO"; q.dispatchEvent(new Event("input")); true`, nil)
	var refreshes int
	testutil.Eventually(t, "the search to filter the rows and a periodic refresh to keep it", 60*time.Second, func() bool {
		var got struct {
			Marker, Text, Query, URL string
			Refreshes                int
		}
		sandboxes.Eval(`({Marker: window.sandboxqMarker || "", Text: document.querySelector("tbody").innerText, Query: document.getElementById("q").value, URL: location.search, Refreshes: window.sandboxqRefreshes || 0})`, &got)
		if got.Marker != "kept" {
			t.Fatalf("/sandboxes was loaded again: the marker on window is gone")
		}
		refreshes = got.Refreshes
		t.Logf("search state: %+v", got)
		return got.Refreshes >= 2 && got.Query == "SHO" && got.URL == "?q=SHO" &&
			strings.Contains(got.Text, "acme/shop") && !strings.Contains(got.Text, "blogs/diary")
	})
	t.Logf("rows refreshed %d times with the search kept", refreshes)
	sandboxes.Screenshot(filepath.Join(dir, "sandboxes-search.png"))
	var href string
	sandboxes.Eval(`document.querySelector("tbody a.project").getAttribute("href")`, &href)
	if href != "/sandboxes/acme/shop" {
		t.Errorf("the row links to %q, want the project page /sandboxes/acme/shop", href)
	}
}

// waitEvent waits until the project's stream has a server event with the
// given status.
func waitEvent(t *testing.T, rdb redis.UniversalClient, p tasks.Project, slug, status string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for e, err := range schema.Follow(ctx, rdb, p, "0") {
		if err != nil {
			t.Fatalf("events of %s/%s: %v", p.Namespace, p.Name, err)
		}
		if e.Type == schema.EventServerStatusChanged && e.ServerName == slug && e.Status == status {
			return
		}
	}
	t.Fatalf("no %s %s event in %s/%s", slug, status, p.Namespace, p.Name)
}
