package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/internal/redistest"
)

// binDir holds the binaries built for this test run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sandboxq-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := build()
	if code == 0 {
		code = redistest.Run(m)
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func build() int {
	for _, name := range []string{"worker", "enqueue"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), "../cmd/"+name)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build cmd/%s: %v\n", name, err)
			return 1
		}
	}
	return 0
}

// workerProc is a cmd/worker process.
type workerProc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	logs   bytes.Buffer
	ready  chan struct{}
	exited chan struct{}
	err    error
}

// startWorker runs cmd/worker with env (added to a minimal environment) and
// waits until it logs that it is processing tasks.
func startWorker(t testing.TB, env map[string]string, args ...string) *workerProc {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "worker"), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LOG_FORMAT=json", "LOG_LEVEL=info", "DASHBOARD_ADDR=127.0.0.1:0"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	w := &workerProc{cmd: cmd, ready: make(chan struct{}), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			w.mu.Lock()
			w.logs.WriteString(line + "\n")
			w.mu.Unlock()
			if strings.Contains(line, `"msg":"worker started"`) {
				once.Do(func() { close(w.ready) })
			}
		}
		w.err = cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-w.exited
		if t.Failed() {
			t.Logf("worker %d logs:\n%s", cmd.Process.Pid, w.Logs())
		}
	})
	select {
	case <-w.ready:
	case <-w.exited:
		t.Fatalf("worker exited before it was ready (%v):\n%s", w.err, w.Logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("worker not ready after 30s:\n%s", w.Logs())
	}
	return w
}

func (w *workerProc) Logs() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.logs.String()
}

// terminate sends SIGTERM and waits for a clean exit.
func (w *workerProc) terminate(t *testing.T) {
	t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.exited:
		if w.err != nil {
			t.Fatalf("worker exited with %v after SIGTERM:\n%s", w.err, w.Logs())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("worker did not exit within 60s of SIGTERM")
	}
}

// enqueue runs cmd/enqueue with --json and returns its exit code and the
// decoded JSON object.
func enqueue(t *testing.T, redisURL string, args ...string) (int, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "enqueue"), append(args, "--json")...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "REDIS_URL=" + redisURL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("enqueue %v: %v", args, err)
	}
	var out map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("enqueue %v: stdout is not one JSON object (%v):\n%s\nstderr:\n%s", args, err, stdout.String(), stderr.String())
	}
	if code != 0 {
		t.Logf("enqueue %v exited %d; stderr:\n%s", args, code, stderr.String())
	}
	return code, out
}

// processesWith returns the pids whose command line contains marker.
func processesWith(marker string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(marker)) {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "Z" {
			continue // exited; only its parent has not reaped it yet
		}
		pids = append(pids, pid)
	}
	return pids
}

func ctxTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}
