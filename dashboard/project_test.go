package dashboard_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/dashboard"
	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/tasks"
)

// TestProjectStream checks the project page's event stream: a first view,
// a new view when an event is recorded (woken by the project's channel),
// and the end of the stream on EndStreams; bad projects are 400.
func TestProjectStream(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *dashboard.Config) {
		o.ServerLogs = func(_ context.Context, p tasks.Project, slug string) (string, error) {
			return "output of " + p.Name + "/" + slug + "\n", nil
		}
	})
	p := proj("web")
	ctx := t.Context()
	if err := b.store.Upsert(ctx, p, "sbx-1", "local"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.ServerStatus(ctx, p, "sbx-1", "dev", events.ServerState{Status: "running", URL: "http://127.0.0.1:5173/", UpdatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	page := b.get(t, "/sandboxes/team-a/web", nil)
	mustContain(t, "project page", page, "team-a/<b>web</b>", "sbx-1", "output of web/dev", "server dev running",
		`data-stream="/api/sandboxes/team-a/web/stream"`)
	status, _, _ := b.request(t, http.MethodGet, "/sandboxes/team-a/a%7Bb%7D", nil)
	if status != http.StatusBadRequest {
		t.Errorf("a name with braces: %d, want 400", status)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+"/api/sandboxes/team-a/web/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("stream: %d %s", resp.StatusCode, ct)
	}
	views := make(chan string, 16)
	go func() {
		defer close(views)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				views <- data
			}
		}
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case v, ok := <-views:
			if !ok {
				t.Fatalf("%s: the stream ended", what)
			}
			return v
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no view within 30 s", what)
		}
		return ""
	}
	first := next("first view")
	mustContain(t, "first view", first, "server dev running", "output of web/dev")
	if _, err := b.store.ServerStatus(ctx, p, "sbx-1", "dev", events.ServerState{Status: "failed", Error: "exited with code 2", UpdatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	mustContain(t, "view after an event", next("view after an event"), "server dev failed", "exited with code 2")

	b.dash.EndStreams()
	select {
	case _, ok := <-views:
		for ok {
			_, ok = <-views
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stream did not end on EndStreams")
	}
	_, _ = io.Copy(io.Discard, resp.Body)

	// The stream is behind the dashboard's credentials (checked before it
	// starts, so this answer is not a stream).
	ab := setup(t, func(o *dashboard.Config) { o.Auth = testAuth() })
	if status, _, _ := ab.request(t, http.MethodGet, "/api/sandboxes/team-a/web/stream", nil); status != http.StatusUnauthorized {
		t.Errorf("stream without credentials: %d, want 401", status)
	}
}
