package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/internal/redistest"
)

// TestNodeAPIExample runs examples/node-api/main.mjs with node against
// `worker -dev` (local provider, watchers, HTTP API on loopback): ensure,
// write files, start a server and fetch it, follow the project's events over
// SSE, destroy.
func TestNodeAPIExample(t *testing.T) {
	t.Parallel()
	node := requireNode(t)
	db := redistest.New(t)
	w := startWorker(t, map[string]string{"REDIS_URL": db.URL()}, "-dev")
	m := regexp.MustCompile(`"dashboard":"(http://127\.0\.0\.1:\d+)/`).FindStringSubmatch(w.Logs())
	if m == nil {
		t.Fatalf("no HTTP address in the worker's start-up line:\n%s", w.Logs())
	}
	project := "node-example"
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("..", "examples", "node-api", "main.mjs"))
	cmd.Env = append(os.Environ(),
		"SANDBOXQ_API_URL="+m[1]+"/api/v1",
		"SANDBOXQ_NAMESPACE=examples",
		"SANDBOXQ_PROJECT="+project,
		"SANDBOXQ_EVENTS_MS=2000",
	)
	out, err := cmd.CombinedOutput()
	t.Logf("node example output:\n%s", out)
	if err != nil {
		t.Fatalf("node example: %v", err)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^sandbox:ensure: task \S+ in critical$`),
		regexp.MustCompile(`(?m)^files: 2 written, \d+ bytes$`),
		regexp.MustCompile(`(?m)^server web ready at http://127\.0\.0\.1:\d+$`),
		regexp.MustCompile(`(?m)^GET http://127\.0\.0\.1:\d+: 200 <!doctype html><h1>Hello from ` + project + `</h1>$`),
		regexp.MustCompile(`(?m)^event \d+-\d+ server\.status_changed: server web ready( http://127\.0\.0\.1:\d+)?$`),
		regexp.MustCompile(`(?m)^destroyed: true$`),
	} {
		if !want.Match(out) {
			t.Errorf("output lacks %s", want)
		}
	}
}

// requireNode returns the node binary, or skips (fails in CI) without one
// of version 20 or later.
func requireNode(t *testing.T) string {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") != "" {
		fail = t.Fatalf
	}
	node, err := exec.LookPath("node")
	if err != nil {
		fail("node is not installed; the Node examples need Node 20 or later")
		return ""
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		t.Fatalf("node --version: %v", err)
	}
	v := strings.TrimSpace(string(out))
	if major, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(v, ".", 2)[0], "v")); major < 20 {
		fail("node %s is too old; the Node examples need Node 20 or later", v)
	}
	return node
}
