package redistest

import (
	"context"
	"fmt"
	"io"
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
	"github.com/sandboxq/sandboxq/internal/redisserver"
)

// RequireEnv names the environment variable that forbids the embedded
// fallback: when it holds a true value (strconv.ParseBool) and no
// redis-server binary is installed, Main fails instead of using miniredis.
const RequireEnv = "SANDBOXQ_REQUIRE_REDIS"

// Databases is the number of databases the server is started with; New
// hands out indexes 1..Databases-1 (0 is left unused).
const Databases = 4096

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
	rs, err := redisserver.Start(bin, Databases)
	if err != nil {
		return nil, err
	}
	return &server{addr: rs.Addr, kind: "redis-server " + rs.Version, nextDB: 1, stop: rs.Stop}, nil
}

// parseInfo turns the text of INFO into a map.
func parseInfo(info string) map[string]string { return redisserver.ParseInfo(info) }

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
