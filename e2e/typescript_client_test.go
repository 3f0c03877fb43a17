package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/internal/redistest"
)

// TestTypeScriptClient runs the node --test suite of clients/typescript
// (@sandboxq/client) against `worker -dev` with an API token: it checks
// that the generated wire types match api/openapi.json, compiles the client
// with tsc, then runs test/*.test.mjs against the built package. The suite
// covers find-or-create, find, servers, files (a 1 MiB binary file checked
// with sha256sum in the sandbox), commands, env, idempotency keys, typed
// errors, and an event stream cut mid-way that must resume with nothing
// lost or repeated. Without node or the package's node_modules (npm ci) it
// skips, and fails under CI.
func TestTypeScriptClient(t *testing.T) {
	t.Parallel()
	node := requireNode(t)
	dir, err := filepath.Abs(filepath.Join("..", "clients", "typescript"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "typescript")); err != nil {
		fail := t.Skipf
		if os.Getenv("CI") != "" {
			fail = t.Fatalf
		}
		fail("clients/typescript has no node_modules: run npm ci there (./scripts/test does)")
	}
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	db := redistest.New(t)
	w := startWorker(t, map[string]string{"REDIS_URL": db.URL(), "API_TOKENS": hex.EncodeToString(token)}, "-dev")
	m := regexp.MustCompile(`"dashboard":"(http://127\.0\.0\.1:\d+)/`).FindStringSubmatch(w.Logs())
	if m == nil {
		t.Fatalf("no HTTP address in the worker's start-up line:\n%s", w.Logs())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	env := append(os.Environ(),
		"SANDBOXQ_URL="+m[1],
		"SANDBOXQ_TOKEN="+hex.EncodeToString(token),
		"SANDBOXQ_TEST_NAMESPACE=ts-client",
	)
	for _, step := range [][]string{
		{filepath.Join("scripts", "check-generated.mjs")},
		{filepath.Join("node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"},
		{"--test", "--test-reporter=spec", filepath.Join("test", "client.test.mjs")},
	} {
		cmd := exec.CommandContext(ctx, node, step...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		t.Logf("node %v:\n%s", step, out)
		if err != nil {
			t.Fatalf("node %v: %v", step, err)
		}
	}
}
