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
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/internal/redisserver"
	"github.com/sandboxq/sandboxq/internal/secret"
)

// childEnv makes the binary act as a helper instead of the benchmark:
// "provider" serves a local provider, "serve" is a sandbox's HTTP server.
const childEnv = "SANDBOXQ_BENCH_CHILD"

// databases is how many Redis databases the run's server has; every
// scenario run takes a fresh one, so runs never see each other's queues.
const databases = 1024

// env is what every scenario shares: one Redis, one provider, the path of
// this executable (sandbox servers run it) and a temp dir.
type env struct {
	log    io.Writer
	redis  *redisserver.Server
	nextDB int
	prov   *provider
	exe    string
	tmp    string
	seq    atomic.Int64
	worker string // built cmd/worker binary, on first use
}

func newEnv(log io.Writer) (*env, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server is required on PATH: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "sandboxq-bench-")
	if err != nil {
		return nil, err
	}
	rs, err := redisserver.Start(bin, databases)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	e := &env{log: log, redis: rs, nextDB: 1, exe: exe, tmp: tmp}
	if e.prov, err = startProvider(exe); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	if e.prov != nil {
		e.prov.close()
	}
	e.redis.Stop()
	os.RemoveAll(e.tmp)
}

// db hands out a fresh database: its URL and a client for the caller.
func (e *env) db() (string, *redis.Client, error) {
	if e.nextDB >= databases {
		return "", nil, fmt.Errorf("out of Redis databases (%d runs)", databases)
	}
	n := e.nextDB
	e.nextDB++
	url := fmt.Sprintf("redis://%s/%d", e.redis.Addr, n)
	return url, redis.NewClient(&redis.Options{Addr: e.redis.Addr, DB: n, PoolSize: 64}), nil
}

// prefix returns a name prefix no earlier run used.
func (e *env) prefix(s string) string { return fmt.Sprintf("%s%d", s, e.seq.Add(1)) }

// serveCommand is the start command of a sandbox server: this binary as a
// tiny HTTP server on $PORT.
func (e *env) serveCommand() (string, map[string]string) {
	return "exec '" + e.exe + "'", map[string]string{childEnv: "serve"}
}

// provider is a local provider in a child process.
type provider struct {
	URL, Key, Events string
	cmd              *exec.Cmd
	stdin            io.WriteCloser
	out              *bufio.Reader
	mu               sync.Mutex
	// count, if set, replaces asking the child (a splitGateway's sum).
	count func() (int64, error)
}

func startProvider(exe string) (*provider, error) {
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=provider")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &provider{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	line, err := p.out.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, p)
	}
	if err != nil {
		p.close()
		return nil, fmt.Errorf("provider child: %w", err)
	}
	return p, nil
}

// requests is how many requests the provider has finished so far.
func (p *provider) requests() (int64, error) {
	if p.count != nil {
		return p.count()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := io.WriteString(p.stdin, "count\n"); err != nil {
		return 0, err
	}
	line, err := p.out.ReadString('\n')
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(line), 10, 64)
}

func (p *provider) close() {
	_ = p.stdin.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

func (p *provider) gateway() (*gateway.Client, error) {
	return gateway.NewClient(p.URL, gateway.WithAPIKey(secret.New(p.Key)), gateway.WithTimeout(60*time.Second))
}

// runChild runs the helper the environment asks for, if any.
func runChild() (int, bool) {
	switch os.Getenv(childEnv) {
	case "provider":
		return providerMain(), true
	case "serve":
		return serveMain(), true
	}
	return 0, false
}

// providerMain serves a local provider until stdin closes, answering each
// "count" line with the number of requests finished.
func providerMain() int {
	var n atomic.Int64
	p, err := local.Start(local.Config{Observe: func(local.Observation) { n.Add(1) }})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench provider:", err)
		return 1
	}
	defer p.Close()
	info := map[string]string{"URL": p.URL(), "Key": p.APIKey().Reveal(), "Events": p.EventsAddr()}
	if err := json.NewEncoder(os.Stdout).Encode(info); err != nil {
		return 1
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		fmt.Println(n.Load())
	}
	return 0
}

// serveMain is a sandbox's server: "ok" on $PORT.
func serveMain() int {
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench serve:", err)
		return 1
	}
	_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") }))
	return 1
}

// workerBinary builds cmd/worker once into the temp dir.
func (e *env) workerBinary(ctx context.Context) (string, error) {
	if e.worker != "" {
		return e.worker, nil
	}
	out := filepath.Join(e.tmp, "worker")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/sandboxq/sandboxq/cmd/worker")
	cmd.Stderr = e.log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/worker: %w", err)
	}
	e.worker = out
	return out, nil
}

// countHook counts Redis round trips: a command or a pipeline is one.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// procStatus reads a field (VmRSS, VmHWM) of /proc/<pid>/status in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// procCPU is the user+system CPU time of pid (from /proc/<pid>/stat, in
// clock ticks of 1/100 s).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) start at ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

const mib = 1 << 20
