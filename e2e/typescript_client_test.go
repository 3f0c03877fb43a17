package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/internal/redistest"
)

// TestTypeScriptClient runs, against one `worker -dev` with an API token:
//
//   - suite: the node --test suite of clients/typescript (@sandboxq/client).
//     It checks that the generated wire types match api/openapi.json,
//     compiles the client with tsc, then runs test/*.test.mjs against the
//     built package: find-or-create, find, servers, files (a 1 MiB binary
//     file checked with sha256sum in the sandbox), commands, env,
//     idempotency keys, typed errors, and an event stream cut mid-way that
//     must resume with nothing lost or repeated.
//   - example: examples/typescript, the wrapper usage rewritten on the
//     client, compiled with tsc --strict and run.
//
// Without node or the packages' node_modules (npm ci) it skips, and fails
// under CI.
func TestTypeScriptClient(t *testing.T) {
	t.Parallel()
	node := requireNode(t)
	client := nodePackage(t, "clients", "typescript")
	example := nodePackage(t, "examples", "typescript")
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	db := redistest.New(t)
	w := startWorker(t, map[string]string{"REDIS_URL": db.URL(), "API_TOKENS": hex.EncodeToString(token)}, "-dev")
	m := regexp.MustCompile(`"dashboard":"(http://127\.0\.0\.1:\d+)/`).FindStringSubmatch(w.Logs())
	if m == nil {
		t.Fatalf("no HTTP address in the worker's start-up line:\n%s", w.Logs())
	}
	env := append(os.Environ(), "SANDBOXQ_URL="+m[1], "SANDBOXQ_TOKEN="+hex.EncodeToString(token))
	tsc := filepath.Join("node_modules", "typescript", "bin", "tsc")

	t.Run("suite", func(t *testing.T) {
		env := append(env, "SANDBOXQ_TEST_NAMESPACE=ts-client")
		runNode(t, client, env, node, filepath.Join("scripts", "check-generated.mjs"))
		runNode(t, client, env, node, tsc, "-p", "tsconfig.json")
		runNode(t, client, env, node, "--test", "--test-reporter=spec", filepath.Join("test", "client.test.mjs"))
	})
	t.Run("example", func(t *testing.T) {
		env := append(env, "PROJECT=wrapper", "TENANT=ts-example")
		runNode(t, example, env, node, tsc, "--strict", "-p", "tsconfig.json")
		out := runNode(t, example, env, node, filepath.Join("dist", "wrapper.js"))
		id := regexp.MustCompile(`(?m)^sandbox (\S+) of ts-example/wrapper$`).FindStringSubmatch(out)
		if id == nil {
			t.Fatalf("output lacks the sandbox line")
		}
		for _, want := range []*regexp.Regexp{
			regexp.MustCompile(`(?m)^event: server dev-server ready http://127\.0\.0\.1:\d+$`),
			regexp.MustCompile(`(?m)^server dev-server ready at http://127\.0\.0\.1:\d+$`),
			regexp.MustCompile(`(?m)^running: true$`),
			regexp.MustCompile(`(?m)^find: ` + regexp.QuoteMeta(id[1]) + `$`),
			regexp.MustCompile(`(?m)^after destroy, find: null$`),
		} {
			if !want.MatchString(out) {
				t.Errorf("output lacks %s", want)
			}
		}
	})
}

// nodePackage returns the directory of a Node package of the repository,
// skipping (failing under CI) when npm ci has not installed it.
func nodePackage(t *testing.T, elem ...string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join(append([]string{".."}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "typescript")); err != nil {
		fail := t.Skipf
		if os.Getenv("CI") != "" {
			fail = t.Fatalf
		}
		fail("%s has no node_modules: run npm ci there (./scripts/test does)", filepath.Join(elem...))
	}
	return dir
}

// runNode runs node with args in dir and returns its output; a non-zero
// exit fails the test.
func runNode(t *testing.T, dir string, env []string, node string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	t.Logf("node %s:\n%s", strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("node %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}
