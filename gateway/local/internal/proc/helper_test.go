package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitTimeout bounds every wait in these tests; the normal case takes
// milliseconds, the margin is for a loaded 2-core machine.
const waitTimeout = 20 * time.Second

// helperEnv selects the test binary's helper mode (see TestMain).
const helperEnv = "PROC_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helperMain(mode))
	}
	os.Exit(m.Run())
}

// helperMain is the body of the test binary when it runs as a managed
// server.
//
//	serve        listen on 127.0.0.1:$PORT; "/" says "hello port=$PORT";
//	             "/health" is 200 while the file "healthy" exists in the
//	             working directory, else 500. Runs until signalled.
//	listen-exit  listen, accept one connection, read it to EOF, exit with
//	             $EXIT_CODE.
func helperMain(mode string) int {
	if mode == "guard" {
		return guardHelper()
	}
	port := os.Getenv("PORT")
	l, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper listen:", err)
		return 90
	}
	switch mode {
	case "serve":
		mux := http.NewServeMux()
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "hello port=%s", port)
		})
		mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
			if _, err := os.Stat("healthy"); err != nil {
				http.Error(w, "unhealthy", http.StatusInternalServerError)
				return
			}
			fmt.Fprint(w, "ok")
		})
		fmt.Println("serving on", port)
		err := http.Serve(l, mux)
		fmt.Fprintln(os.Stderr, "helper serve:", err)
		return 91
	case "listen-exit":
		// Exit only once the peer has closed: the readiness probe closes
		// after its dial returned, so it has seen the port open.
		c, err := l.Accept()
		if err == nil {
			_, _ = io.Copy(io.Discard, c)
			_ = c.Close()
		}
		code, _ := strconv.Atoi(os.Getenv("EXIT_CODE"))
		return code
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
	return 92
}

// helperStart is a Start command that execs the test binary in mode.
func helperStart(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return "exec '" + strings.ReplaceAll(exe, "'", `'\''`) + "'"
}

// recorder collects onChange snapshots and lets a test wait for one.
type recorder struct {
	mu     sync.Mutex
	states []State
	wake   chan struct{}
}

func newRecorder() *recorder { return &recorder{wake: make(chan struct{})} }

func (r *recorder) add(st State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, st)
	close(r.wake)
	r.wake = make(chan struct{})
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.states)
}

// waitFor returns the first snapshot at index from or later for which ok
// holds, and its index.
func (r *recorder) waitFor(t *testing.T, from int, desc string, ok func(State) bool) (State, int) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for i := from; i < len(r.states); i++ {
			if ok(r.states[i]) {
				st := r.states[i]
				r.mu.Unlock()
				return st, i
			}
		}
		wake := r.wake
		r.mu.Unlock()
		select {
		case <-wake:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; statuses seen: %v", desc, r.statuses(0))
		}
	}
}

func (r *recorder) waitStatus(t *testing.T, from int, want Status) (State, int) {
	t.Helper()
	return r.waitFor(t, from, "status "+string(want), func(st State) bool { return st.Status == want })
}

// statuses lists the statuses seen from index from, without repeats.
func (r *recorder) statuses(from int) []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Status
	for _, st := range r.states[min(from, len(r.states)):] {
		if len(out) == 0 || out[len(out)-1] != st.Status {
			out = append(out, st.Status)
		}
	}
	return out
}

// start starts cfg (Dir defaults to a fresh temp dir, ReadyPoll to 10ms,
// StopTimeout to 2s) and stops it at cleanup, checking that the group is
// gone.
func start(t *testing.T, cfg Config) (*Server, *recorder) {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Slug == "" {
		cfg.Slug = "web"
	}
	if cfg.ReadyPoll == 0 {
		cfg.ReadyPoll = 10 * time.Millisecond
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 2 * time.Second
	}
	rec := newRecorder()
	s, err := Start(cfg, rec.add)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		pids := s.PIDs()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("cleanup Stop: %v", err)
		}
		for _, pid := range pids {
			if alive(pid) {
				t.Errorf("pid %d still alive after Stop", pid)
			}
		}
	})
	return s, rec
}

// eventually polls cond until it holds or waitTimeout passes. It is for
// state outside onChange: files, logs, /proc, counters.
func eventually(t *testing.T, desc string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", desc)
		}
		<-tick.C
	}
}

// waitDone waits for s.Done.
func waitDone(t *testing.T, s *Server) State {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(waitTimeout):
		t.Fatalf("server not done; state %+v", s.State())
	}
	return s.State()
}

// alive reports whether pid is a live, non-zombie process.
func alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X'
}

// get fetches http://127.0.0.1:port+path without keeping connections.
func get(t *testing.T, port int, path string) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitTimeout}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(port)+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func wantStatuses(t *testing.T, got []Status, want ...Status) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("statuses = %v, want %v", got, want)
	}
}

func helperEnvs(mode string, extra ...string) []string {
	return append([]string{helperEnv + "=" + mode}, extra...)
}

func inDir(dir, name string) string { return filepath.Join(dir, name) }
