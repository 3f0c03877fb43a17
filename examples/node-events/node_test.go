// Package nodeevents tests the Node example: node-redis reading a
// project's events from the stream and the channel that package events
// writes.
package nodeevents

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// node returns the node binary, skipping the test outside CI when node or
// the example's node_modules (npm ci) are missing; in CI that is a failure.
func node(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("node")
	missing := ""
	switch {
	case err != nil:
		missing = "node is not installed"
	default:
		if _, err := os.Stat(filepath.Join("node_modules", "redis", "package.json")); err != nil {
			missing = "node_modules/redis is missing (run npm ci in examples/node-events)"
		}
	}
	if missing == "" {
		return bin
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set and %s", missing)
	}
	t.Skipf("%s; CI is not set, so skipping", missing)
	return ""
}

// project appends a created and a server event for a project whose
// namespace needs escaping in its hash tag.
func project(t *testing.T, s *events.Store, name string) (tasks.Project, []tasks.Event) {
	t.Helper()
	p := tasks.Project{Namespace: "team/a%b", Name: name}
	if err := s.Upsert(t.Context(), p, "sbx_node", "local"); err != nil {
		t.Fatal(err)
	}
	ev, err := s.ServerStatus(t.Context(), p, "sbx_node", "web", events.ServerState{Status: sandboxq.ServerReady, URL: "http://127.0.0.1:3000", Port: 3000})
	if err != nil || ev == nil {
		t.Fatalf("append: %v %v", ev, err)
	}
	all, err := schema.ReadEvents(t.Context(), s.Redis(), p, "0", 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	return p, all
}

func decodeLines(t *testing.T, out []byte) []tasks.Event {
	t.Helper()
	var evs []tasks.Event
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var e tasks.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		evs = append(evs, e)
	}
	return evs
}

func TestNodeReadsStream(t *testing.T) {
	t.Parallel()
	bin := node(t)
	db := redistest.New(t)
	s := events.NewStore(db.Client(t), events.StoreConfig{})
	p, want := project(t, s, "stream")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "events.mjs", p.Namespace, p.Name)
	cmd.Env = append(os.Environ(), "REDIS_URL="+db.URL())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	got := decodeLines(t, out)
	if len(got) != len(want) {
		t.Fatalf("node printed %d events, want %d:\n%s", len(got), len(want), out)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Type != w.Type || g.Status != w.Status || g.ServerName != w.ServerName || g.Port != w.Port || g.SandboxID != "sbx_node" || g.Namespace != "team/a%b" {
			t.Errorf("event %d: node %+v, Go %+v", i, g, w)
		}
	}
}

func TestNodeSubscribes(t *testing.T) {
	t.Parallel()
	bin := node(t)
	db := redistest.New(t)
	s := events.NewStore(db.Client(t), events.StoreConfig{})
	// Pub/sub is shared by every database: a name of this test only.
	p := tasks.Project{Namespace: "team/a%b", Name: "subscribe-" + strings.ReplaceAll(t.Name(), "/", "-")}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "events.mjs", p.Namespace, p.Name, "--subscribe", "--count", "2")
	cmd.Env = append(os.Environ(), "REDIS_URL="+db.URL())
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr := &readyWriter{ready: make(chan struct{})}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-stderr.ready:
	case err := <-exited:
		t.Fatalf("node exited before subscribing (%v):\n%s", err, stderr.String())
	}
	if err := s.Upsert(t.Context(), p, "sbx_node", "local"); err != nil {
		t.Fatal(err)
	}
	ev, err := s.ServerStatus(t.Context(), p, "", "web", events.ServerState{Status: sandboxq.ServerStarting})
	if err != nil || ev == nil {
		t.Fatalf("append: %v %v", ev, err)
	}
	if err := <-exited; err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	got := decodeLines(t, stdout.Bytes())
	if len(got) != 2 || got[0].Status != tasks.SandboxCreated || got[1].ID != ev.ID || got[1].Status != sandboxq.ServerStarting {
		t.Fatalf("node printed %+v, want created then %+v", got, ev)
	}
}

// readyWriter collects stderr and closes ready once "subscribed" is
// written.
type readyWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
	done  bool
}

func (w *readyWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if !w.done && strings.Contains(w.buf.String(), "subscribed\n") {
		w.done = true
		close(w.ready)
	}
	return len(b), nil
}

func (w *readyWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
