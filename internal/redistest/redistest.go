package redistest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// RequireEnv names the environment variable that forbids the embedded
// fallback: when it holds a true value (strconv.ParseBool) and no
// redis-server binary is installed, Main fails instead of using miniredis.
const RequireEnv = "SANDBOXQ_REQUIRE_REDIS"

// Databases is the number of databases the server is started with; New
// hands out indexes 1..Databases-1 (0 is left unused).
const Databases = 4096

// startTimeout bounds how long Main waits for redis-server to answer PING.
const startTimeout = 15 * time.Second

var (
	mu     sync.Mutex
	active *server
)

// server is the Redis this test binary uses.
type server struct {
	addr   string
	kind   string
	nextDB int
	stop   func()
}

// Main starts the package's Redis, runs the tests, stops the server and
// exits with the tests' code. Call it from TestMain. If no server can be
// started it prints why on stderr and exits 1.
func Main(m *testing.M) {
	os.Exit(Run(m))
}

// Run is Main without the exit: it returns the exit code, so a TestMain can
// clean up its own fixtures first.
func Run(m interface{ Run() int }) int {
	return run(m, os.Getenv(RequireEnv), os.Stderr)
}

// runner is the part of *testing.M that run needs.
type runner interface{ Run() int }

func run(m runner, requireEnv string, stderr io.Writer) int {
	bin, lookErr := exec.LookPath("redis-server")
	b, err := chooseBackend(lookErr, requireEnv)
	if err != nil {
		fmt.Fprintf(stderr, "redistest: %v\n", err)
		return 1
	}
	var srv *server
	switch b {
	case backendRedisServer:
		srv, err = startRedisServer(bin)
	default:
		srv, err = startMiniredis()
	}
	if err != nil {
		fmt.Fprintf(stderr, "redistest: %v\n", err)
		return 1
	}
	mu.Lock()
	active = srv
	mu.Unlock()
	defer func() {
		mu.Lock()
		active = nil
		mu.Unlock()
		srv.stop()
	}()
	return m.Run()
}

type backend int

const (
	backendRedisServer backend = iota
	backendMiniredis
)

// chooseBackend decides which Redis Main starts. lookErr is the result of
// looking up the redis-server binary; requireEnv is the value of
// SANDBOXQ_REQUIRE_REDIS ("" when unset).
func chooseBackend(lookErr error, requireEnv string) (backend, error) {
	if lookErr == nil {
		return backendRedisServer, nil
	}
	require := false
	if v := strings.TrimSpace(requireEnv); v != "" {
		var err error
		require, err = strconv.ParseBool(v)
		if err != nil {
			return 0, fmt.Errorf("%s=%q is not a boolean (use 1 or 0)", RequireEnv, requireEnv)
		}
	}
	if require {
		return 0, fmt.Errorf("%s is set but no redis-server binary is on PATH (%v); "+
			"install redis-server (e.g. apt-get install redis-server) or unset %s to use the embedded miniredis",
			RequireEnv, lookErr, RequireEnv)
	}
	return backendMiniredis, nil
}

func startMiniredis() (*server, error) {
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start embedded miniredis: %w", err)
	}
	return &server{addr: mr.Addr(), kind: "miniredis", nextDB: 1, stop: mr.Close}, nil
}

func startRedisServer(bin string) (*server, error) {
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, fmt.Errorf("create redis-server directory: %w", err)
	}
	var errs []error
	// A free port can be taken by someone else between our probe and
	// redis-server's bind; try a few.
	for range 5 {
		port, err := freePort()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		srv, err := launch(bin, dir, port)
		if err == nil {
			stop := srv.stop
			srv.stop = func() {
				stop()
				os.RemoveAll(dir)
			}
			return srv, nil
		}
		errs = append(errs, err)
	}
	os.RemoveAll(dir)
	return nil, fmt.Errorf("start redis-server: %w", errors.Join(errs...))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// launch starts redis-server on port and waits until it answers.
func launch(bin, dir string, port int) (*server, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--databases", strconv.Itoa(Databases),
		"--dir", dir,
	)
	var out syncBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.Dir = dir
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}

	version, err := waitReady(addr, cmd.Process.Pid, exited)
	if err != nil {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
		return nil, fmt.Errorf("redis-server on %s: %w; output:\n%s", addr, err, out.String())
	}
	return &server{addr: addr, kind: "redis-server " + version, nextDB: 1, stop: stop}, nil
}

// waitReady pings addr until the redis-server with process id pid answers,
// the process exits, or startTimeout passes. It returns the server version.
func waitReady(addr string, pid int, exited <-chan error) (string, error) {
	rdb := redis.NewClient(&redis.Options{
		Addr:        addr,
		DialTimeout: 500 * time.Millisecond,
		ReadTimeout: 500 * time.Millisecond,
		MaxRetries:  -1,
		PoolSize:    1,
	})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if lastErr = rdb.Ping(ctx).Err(); lastErr == nil {
			info, err := rdb.Info(ctx, "server").Result()
			if err != nil {
				return "", fmt.Errorf("INFO server: %w", err)
			}
			fields := parseInfo(info)
			if fields["process_id"] != strconv.Itoa(pid) {
				return "", fmt.Errorf("port answered by another process (process_id %q, ours %d)", fields["process_id"], pid)
			}
			return fields["redis_version"], nil
		}
		select {
		case err := <-exited:
			return "", fmt.Errorf("exited before answering PING: %v", err)
		case <-ctx.Done():
			return "", fmt.Errorf("no answer to PING within %v: %v", startTimeout, lastErr)
		case <-tick.C:
		}
	}
}

// parseInfo turns the text of INFO into a map.
func parseInfo(info string) map[string]string {
	fields := make(map[string]string)
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if ok && !strings.HasPrefix(k, "#") {
			fields[k] = v
		}
	}
	return fields
}

// syncBuffer is a bytes.Buffer safe for the exec copier goroutine and a
// reader. It keeps at most 64 KiB.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 64<<10 - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Kind reports which Redis the package's tests run against:
// "redis-server <version>" or "miniredis". It is "" outside Main.
func Kind() string {
	mu.Lock()
	defer mu.Unlock()
	if active == nil {
		return ""
	}
	return active.kind
}

// DB is one database of the package's Redis, reserved for one test.
type DB struct {
	Addr  string // host:port
	Index int    // database number
}

// New returns a fresh, empty database for this test: a database index no
// other call in this test binary gets, flushed now and when the test ends.
// It fails the test if TestMain did not call Main.
func New(tb testing.TB) *DB {
	tb.Helper()
	mu.Lock()
	srv := active
	var idx int
	if srv != nil {
		idx = srv.nextDB
		srv.nextDB++
	}
	mu.Unlock()
	if srv == nil {
		tb.Fatal("redistest.New: no Redis; call redistest.Main(m) from TestMain")
	}
	if idx >= Databases {
		tb.Fatalf("redistest.New: all %d databases are in use; split the test package", Databases-1)
	}
	d := &DB{Addr: srv.addr, Index: idx}
	flush := func() error {
		rdb := redis.NewClient(d.Options())
		defer rdb.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return rdb.FlushDB(ctx).Err()
	}
	if err := flush(); err != nil {
		tb.Fatalf("redistest.New: FLUSHDB on db %d: %v", idx, err)
	}
	tb.Cleanup(func() { _ = flush() })
	return d
}

// Options returns go-redis options for the database.
func (d *DB) Options() *redis.Options {
	return &redis.Options{Addr: d.Addr, DB: d.Index}
}

// Client returns a go-redis client for the database, closed when the test
// ends.
func (d *DB) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	rdb := redis.NewClient(d.Options())
	tb.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// AsynqOpt returns asynq connection options for the database.
func (d *DB) AsynqOpt() asynq.RedisClientOpt {
	return asynq.RedisClientOpt{Addr: d.Addr, DB: d.Index}
}

// URL returns the database as a redis:// URL.
func (d *DB) URL() string {
	return fmt.Sprintf("redis://%s/%d", d.Addr, d.Index)
}
