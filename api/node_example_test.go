package api

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/tasks"
	"github.com/sandboxq/sandboxq/worker"
)

// TestNodeExample runs examples/node-api/main.mjs with node against an
// in-process stack: this API on an httptest server, a real worker, and the
// local provider (servers are real processes). It checks what the script
// printed at each step and that the sandbox is gone at the end.
func TestNodeExample(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node is not installed; CI must have it to run the Node example")
		}
		t.Skip("node is not installed; the Node example needs Node 20 or later")
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		t.Fatalf("node --version: %v", err)
	}
	if major, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(strings.TrimSpace(string(out)), ".", 2)[0], "v")); major < 20 {
		if os.Getenv("CI") != "" {
			t.Fatalf("node %s is too old; the example needs Node 20 or later", out)
		}
		t.Skipf("node %s is too old; the example needs Node 20 or later", strings.TrimSpace(string(out)))
	}

	// The sandbox's server is `node`, so the provider's PATH must reach it.
	lp, err := local.Start(local.Options{Path: filepath.Dir(node) + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lp.Close() })
	gw, err := gateway.NewClient(lp.URL(), gateway.WithAPIKey(lp.APIKey()))
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, nil)
	w, err := worker.New(worker.Config{
		Redis:           b.rdb,
		Gateway:         gw,
		Logger:          b.logger,
		Concurrency:     5,
		ShutdownTimeout: 5 * time.Second,
		Handlers:        handlers.Config{PollInterval: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(context.Background())
	workerDone := make(chan error, 1)
	go func() { workerDone <- w.Run(wctx) }()
	t.Cleanup(func() {
		stopWorker()
		if err := <-workerDone; err != nil {
			t.Errorf("worker: %v", err)
		}
	})

	p := tasks.Project{Namespace: "examples", Name: "node-example"}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("..", "examples", "node-api", "main.mjs"))
	cmd.Env = append(os.Environ(),
		"SANDBOXQ_API_URL="+b.base,
		"SANDBOXQ_API_TOKEN="+testToken,
		"SANDBOXQ_NAMESPACE="+p.Namespace,
		"SANDBOXQ_PROJECT="+p.Name,
		"SANDBOXQ_EVENTS_MS=2000",
	)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Read the script's output; once it follows the events, append one (the
	// watcher that records server transitions may not run in this stack).
	var lines []string
	var mu sync.Mutex
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			lines = append(lines, line)
			mu.Unlock()
			if strings.HasPrefix(line, "following events") {
				if _, err := addEvent(context.Background(), b.rdb, p, "ready", true); err != nil {
					t.Errorf("append an event: %v", err)
				}
			}
		}
	}()
	<-readDone
	err = cmd.Wait()
	mu.Lock()
	output := strings.Join(lines, "\n")
	mu.Unlock()
	t.Logf("node example output:\n%s", output)
	if err != nil {
		t.Fatalf("node example: %v\nstderr:\n%s", err, stderr.String())
	}

	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^sandbox:ensure: task \S+ in critical$`),
		regexp.MustCompile(`(?m)^sandbox \S+ \(created, \w+\)$`),
		regexp.MustCompile(`(?m)^files: 2 written, \d+ bytes$`),
		regexp.MustCompile(`(?m)^server web ready at http://127\.0\.0\.1:\d+$`),
		regexp.MustCompile(`(?m)^GET http://127\.0\.0\.1:\d+: 200 <!doctype html><h1>Hello from ` + p.Name + `</h1>$`),
		regexp.MustCompile(`(?m)^event \d+-\d+ server\.status_changed: server web ready$`),
		regexp.MustCompile(`(?m)^destroyed: true$`),
	} {
		if !want.MatchString(output) {
			t.Errorf("output lacks %s", want)
		}
	}
	sb, err := gw.Find(t.Context(), p.Namespace, p.Name)
	if err != nil {
		t.Fatal(err)
	}
	if sb != nil {
		t.Errorf("sandbox %s still exists after the example", sb.SandboxID)
	}
}
