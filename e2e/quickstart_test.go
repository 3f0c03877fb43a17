package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/internal/redistest"
)

// TestQuickStart follows the README: `worker -dev` in one terminal, then
// `enqueue` ensure → write a small Python HTTP app → start it with --wait →
// the printed URL answers → destroy → the process is gone.
func TestQuickStart(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	root := t.TempDir()
	w := startWorker(t, map[string]string{"REDIS_URL": db.URL(), "SANDBOXQ_LOCAL_ROOT": root}, "-dev")

	marker := fmt.Sprintf("quickstart-%d", time.Now().UnixNano())
	app := t.TempDir()
	if err := os.WriteFile(filepath.Join(app, "server.py"), []byte(`import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"hello from the sandbox\n")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`), 0o644); err != nil {
		t.Fatal(err)
	}
	// Ignored on upload, as a project's VCS and dependencies would be.
	for _, dir := range []string{".git", "node_modules"} {
		if err := os.MkdirAll(filepath.Join(app, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(app, dir, "junk"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	url := db.URL()
	code, out := enqueue(t, url, "ensure", "--name", "demo", "--wait")
	if code != 0 || out["state"] != "completed" {
		t.Fatalf("ensure: exit %d, %v", code, out)
	}
	sandboxID := out["result"].(map[string]any)["sandbox_id"].(string)

	code, out = enqueue(t, url, "write-files", "--name", "demo", "--dir", app, "--to", "/app", "--wait")
	if code != 0 || out["result"].(map[string]any)["written"].(float64) != 1 {
		t.Fatalf("write-files: exit %d, %v", code, out)
	}
	if _, err := os.Stat(filepath.Join(root, sandboxID, "app", "node_modules")); !os.IsNotExist(err) {
		t.Fatalf("node_modules was uploaded (%v)", err)
	}

	code, out = enqueue(t, url, "start-server", "--name", "demo", "--slug", "web", "--command", "python3 server.py "+marker, "--path", "/app", "--wait")
	if code != 0 {
		t.Fatalf("start-server: exit %d, %v", code, out)
	}
	res := out["result"].(map[string]any)
	serverURL, _ := res["url"].(string)
	if res["status"] != "ready" || serverURL == "" {
		t.Fatalf("start-server result: %v", res)
	}
	resp, err := http.Get(serverURL)
	if err != nil {
		t.Fatalf("GET %s: %v", serverURL, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from the sandbox\n" {
		t.Fatalf("server answered %q", body)
	}
	if len(processesWith(marker)) == 0 {
		t.Fatal("the server process is not visible")
	}

	code, out = enqueue(t, url, "destroy", "--name", "demo", "--wait")
	if code != 0 || out["result"].(map[string]any)["destroyed"] != true {
		t.Fatalf("destroy: exit %d, %v", code, out)
	}
	if pids := processesWith(marker); len(pids) != 0 {
		t.Fatalf("server processes %v survived destroy", pids)
	}
	if _, err := http.Get(serverURL); err == nil {
		t.Fatalf("%s still answers after destroy", serverURL)
	}
	if _, err := os.Stat(filepath.Join(root, sandboxID)); !os.IsNotExist(err) {
		t.Fatalf("sandbox directory survived destroy (%v)", err)
	}

	// A failing task exits 1 with its error.
	code, out = enqueue(t, url, "run", "--name", "demo", "--wait", "--command", "exit 9")
	if code != 1 || !strings.Contains(fmt.Sprint(out["error"]), "exited with code 9") {
		t.Fatalf("failing run: exit %d, %v", code, out)
	}
	w.terminate(t)
}
