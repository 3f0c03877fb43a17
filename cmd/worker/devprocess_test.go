package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
)

// servePIDEnv makes the test binary a tiny server: it listens on
// 127.0.0.1:$PORT and answers every request with its pid.
const servePIDEnv = "SANDBOXQ_TEST_SERVE_PID"

func servePID() int {
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, os.Getpid())
	}))
	return 1
}

const workerSecret = "worker-only-secret-8c1e"

// devWorker starts this test binary as `worker -dev` in its own process,
// as a user other than root (commands run as the worker's user, and root
// may read any process's environment), with a secret-like variable in its
// environment. It returns the process and a tasks client.
func devWorker(t *testing.T) (*exec.Cmd, *tasks.Client, string) {
	t.Helper()
	db := redistest.New(t)
	dir, err := os.MkdirTemp("", "sandboxq-devworker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "worker")
	copyFile(t, os.Args[0], bin)
	root := filepath.Join(dir, "sandboxes")
	for _, d := range []string{dir, root} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-dev")
	cmd.Env = []string{
		runMainEnv + "=1", "PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"REDIS_URL=" + db.URL(), "DASHBOARD_ADDR=127.0.0.1:0", "LOG_FORMAT=json",
		"SANDBOXQ_LOCAL_ROOT=" + root, "SANDBOXQ_LOCAL_API_KEY=computesdk_" + workerSecret,
		"SANDBOXQ_TEST_WORKER_SECRET=" + workerSecret,
	}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	var logs testutil.SyncBuffer
	cmd.Stderr = &logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("worker logs:\n%s", logs.String())
		}
	})
	// The local provider's address is its first line on stdout; reading it
	// is the signal that the worker is starting.
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		t.Fatalf("worker did not start: %v\n%s", err, logs.String())
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return cmd, tasks.NewClient(db.Client(t)), bin
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func waitResult(t *testing.T, client *tasks.Client, e *tasks.Enqueued) json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	res, err := client.Wait(ctx, e.Queue, e.ID)
	if err != nil {
		t.Fatalf("wait %s: %v", e.ID, err)
	}
	if res.State != tasks.StateCompleted {
		t.Fatalf("task %s: %s %s", e.ID, res.State, res.LastError)
	}
	return res.Result
}

// TestDevCommandsCannotReadTheWorkersEnvironment runs `env` and a read of
// /proc/$PPID/environ (the worker itself, which starts the command) in a
// command:run against a real -dev worker: neither shows the worker's
// variables.
func TestDevCommandsCannotReadTheWorkersEnvironment(t *testing.T) {
	t.Parallel()
	_, client, _ := devWorker(t)
	fail := false
	e, err := client.RunCommand(t.Context(), tasks.CommandRun{
		Project:       tasks.Project{Name: "env-probe"},
		Command:       `env; echo ---; tr '\0' '\n' < /proc/$PPID/environ`,
		FailOnNonzero: &fail,
	})
	if err != nil {
		t.Fatal(err)
	}
	var res struct{ Stdout, Stderr string }
	if err := json.Unmarshal(waitResult(t, client, e), &res); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Stdout, "HOME=") || !strings.Contains(res.Stdout, "---") {
		t.Fatalf("the command did not run: %+v", res)
	}
	for _, leak := range []string{workerSecret, "SANDBOXQ_TEST_WORKER_SECRET", "REDIS_URL", runMainEnv} {
		if strings.Contains(res.Stdout+res.Stderr, leak) {
			t.Errorf("the command saw the worker's %s:\n%s\n%s", leak, res.Stdout, res.Stderr)
		}
	}
}

// TestDevServersDieWithTheWorker starts a server whose port is held by a
// child of its shell (the leader is sh, as with npm), SIGKILLs the -dev
// worker, and waits for the server's process to be gone and its port to be
// free.
func TestDevServersDieWithTheWorker(t *testing.T) {
	t.Parallel()
	worker, client, bin := devWorker(t)
	e, err := client.StartServer(t.Context(), tasks.ServerStart{
		Project: tasks.Project{Name: "orphans"}, Slug: "web",
		Command: strconv.Quote(bin) + " & wait",
		Env:     map[string]string{servePIDEnv: "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var srv struct{ Port int }
	if err := json.Unmarshal(waitResult(t, client, e), &srv); err != nil || srv.Port == 0 {
		t.Fatalf("server result: %v %+v", err, srv)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.Port))
	resp, err := http.Get("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	pid, err := strconv.Atoi(string(body))
	if err != nil {
		t.Fatalf("server answered %q", body)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })

	if err := worker.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the server process to die with the worker", 20*time.Second, func() bool { return !alive(pid) })
	testutil.Eventually(t, "the server's port to be free", 20*time.Second, func() bool {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		l.Close()
		return true
	})
}

// alive reports whether pid is a live (non-zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] != 'Z'
}
