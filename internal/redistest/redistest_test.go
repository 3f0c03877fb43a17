package redistest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { Main(m) }

func TestNewDatabasesAreIsolated(t *testing.T) {
	t.Parallel()
	a, b := New(t), New(t)
	if a.Index == b.Index {
		t.Fatalf("two New calls share database %d", a.Index)
	}
	if a.Addr != b.Addr {
		t.Fatalf("databases on different servers: %s, %s", a.Addr, b.Addr)
	}
	ctx := t.Context()
	ra, rb := a.Client(t), b.Client(t)
	if err := ra.Set(ctx, "k", "in-a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rb.Set(ctx, "other", "in-b", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := rb.Get(ctx, "k").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("key written in db %d visible in db %d (err %v)", a.Index, b.Index, err)
	}
	if n, err := ra.DBSize(ctx).Result(); err != nil || n != 1 {
		t.Fatalf("db %d size = %d, %v; want 1", a.Index, n, err)
	}
}

func TestNewIsEmptyAndURLWorks(t *testing.T) {
	t.Parallel()
	d := New(t)
	opt, err := redis.ParseURL(d.URL())
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", d.URL(), err)
	}
	if opt.Addr != d.Addr || opt.DB != d.Index {
		t.Fatalf("URL %q parses to %s/%d, want %s/%d", d.URL(), opt.Addr, opt.DB, d.Addr, d.Index)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	if n, err := rdb.DBSize(t.Context()).Result(); err != nil || n != 0 {
		t.Fatalf("fresh db size = %d, %v; want 0", n, err)
	}
	if o := d.AsynqOpt(); o.Addr != d.Addr || o.DB != d.Index {
		t.Fatalf("AsynqOpt = %+v", o)
	}
}

func TestServerKind(t *testing.T) {
	t.Parallel()
	rdb := New(t).Client(t)
	if _, lookErr := exec.LookPath("redis-server"); lookErr != nil {
		if Kind() != "miniredis" {
			t.Fatalf("no redis-server binary, Kind() = %q, want miniredis", Kind())
		}
		return
	}
	info, err := rdb.Info(t.Context(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	version := parseInfo(info)["redis_version"]
	if version == "" {
		t.Fatalf("INFO server has no redis_version; not a real redis-server:\n%s", info)
	}
	if want := "redis-server " + version; Kind() != want {
		t.Fatalf("Kind() = %q, want %q", Kind(), want)
	}
}

func TestChooseBackend(t *testing.T) {
	t.Parallel()
	missing := &exec.Error{Name: "redis-server", Err: exec.ErrNotFound}
	tests := []struct {
		name    string
		lookErr error
		env     string
		want    backend
		wantErr string
	}{
		{"binary present", nil, "", backendRedisServer, ""},
		{"binary present, required", nil, "1", backendRedisServer, ""},
		{"missing, unset", missing, "", backendMiniredis, ""},
		{"missing, 0", missing, "0", backendMiniredis, ""},
		{"missing, false", missing, "false", backendMiniredis, ""},
		{"missing, required", missing, "1", 0, "SANDBOXQ_REQUIRE_REDIS is set but no redis-server"},
		{"missing, true", missing, "true", 0, "install redis-server"},
		{"missing, garbage", missing, "yes please", 0, "not a boolean"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := chooseBackend(tt.lookErr, tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("chooseBackend = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

type countingRunner struct{ runs int }

func (r *countingRunner) Run() int { r.runs++; return 0 }

func TestRunRequiredWithoutBinaryFails(t *testing.T) {
	// Not parallel: it empties PATH.
	t.Setenv("PATH", t.TempDir())
	var stderr bytes.Buffer
	r := &countingRunner{}
	if code := run(r, "1", &stderr); code != 1 {
		t.Fatalf("run exit code = %d, want 1", code)
	}
	if r.runs != 0 {
		t.Fatal("tests ran although Redis was required and missing")
	}
	if !strings.Contains(stderr.String(), RequireEnv) {
		t.Fatalf("message does not name %s: %q", RequireEnv, stderr.String())
	}
}

func TestStartedServerStopsAndCleansUp(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("no redis-server binary")
	}
	srv, err := startRedisServer(bin)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			srv.stop()
		}
	})
	rdb := redis.NewClient(&redis.Options{Addr: srv.addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { rdb.Close() })
	ctx := t.Context()
	cfg, err := rdb.ConfigGet(ctx, "databases").Result()
	if err != nil || cfg["databases"] != "4096" {
		t.Fatalf("CONFIG GET databases = %v, %v; want 4096", cfg, err)
	}
	cfg, err = rdb.ConfigGet(ctx, "dir").Result()
	if err != nil {
		t.Fatal(err)
	}
	dir := cfg["dir"]
	srv.stop()
	stopped = true
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err == nil {
		t.Fatal("server still answers after stop")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("server directory %s still exists after stop", dir)
	}
}

func TestMiniredisFallbackServes(t *testing.T) {
	t.Parallel()
	srv, err := startMiniredis()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.stop)
	if srv.kind != "miniredis" {
		t.Fatalf("kind = %q", srv.kind)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.addr, DB: 4000})
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.Set(t.Context(), "k", "v", 0).Err(); err != nil {
		t.Fatalf("miniredis db 4000: %v", err)
	}
}
