package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/sandboxq/sandboxq/internal/redistest"
)

// startupFailures are settings the worker cannot start with; each used to
// crash with a stack trace (a panic in worker.New's cleanup) or to be
// accepted. want is what the one error line must say: the variable and the
// allowed range or the cause.
func startupFailures(busyAddr string) []struct {
	name string
	env  map[string]string
	want []string
} {
	return []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"PortInUse", map[string]string{"DASHBOARD_ADDR": busyAddr}, []string{"DASHBOARD_ADDR=", "address already in use"}},
		{"DashboardPathAPI", map[string]string{"DASHBOARD_PATH": "/api/v1"}, []string{`DASHBOARD_PATH="/api/v1"`, "collides"}},
		{"CleanupCron", map[string]string{"CLEANUP_CRON": "x_y_z"}, []string{`CLEANUP_CRON="x_y_z"`, "cron spec"}},
		{"ReconcileCron", map[string]string{"RECONCILE_CRON": "* * *"}, []string{`RECONCILE_CRON="* * *"`, "cron spec"}},
		{"WatcherCap", map[string]string{"SANDBOXQ_WATCHER_CAP": "-1"}, []string{"SANDBOXQ_WATCHER_CAP=-1", "0 or more"}},
		{"IdleTTLNegative", map[string]string{"SANDBOX_IDLE_TTL": "-1h"}, []string{"SANDBOX_IDLE_TTL=-1h0m0s", "greater than 0"}},
		{"IdleTTLZero", map[string]string{"SANDBOX_IDLE_TTL": "0s"}, []string{"SANDBOX_IDLE_TTL=0s", "greater than 0"}},
		{"LeaseTTL", map[string]string{"SANDBOXQ_LEASE_TTL": "-5s"}, []string{"SANDBOXQ_LEASE_TTL=-5s", "greater than 0"}},
		{"LeaseTTLShort", map[string]string{"SANDBOXQ_LEASE_TTL": "10ms"}, []string{`SANDBOXQ_LEASE_TTL="10ms"`, "at least 30ms"}},
		{"LeaseWait", map[string]string{"SANDBOXQ_LEASE_WAIT": "0"}, []string{"SANDBOXQ_LEASE_WAIT=0s", "greater than 0"}},
		{"TaskCheckInterval", map[string]string{"SANDBOXQ_TASK_CHECK_INTERVAL": "-90ms"}, []string{`SANDBOXQ_TASK_CHECK_INTERVAL="-90ms"`, "greater than 0"}},
		{"DelayedTaskCheckInterval", map[string]string{"SANDBOXQ_DELAYED_TASK_CHECK_INTERVAL": "-1s"}, []string{`SANDBOXQ_DELAYED_TASK_CHECK_INTERVAL="-1s"`, "greater than 0"}},
		{"ShutdownNegative", map[string]string{"SANDBOXQ_SHUTDOWN_TIMEOUT": "-1s"}, []string{"SANDBOXQ_SHUTDOWN_TIMEOUT=-1s", "0 (hand running tasks back at once) or more"}},
		{"ConcurrencyHuge", map[string]string{"SANDBOXQ_CONCURRENCY": "99999999999"}, []string{"SANDBOXQ_CONCURRENCY=99999999999", "want 1 to 10000"}},
		{"ConcurrencyZero", map[string]string{"SANDBOXQ_CONCURRENCY": "0"}, []string{"SANDBOXQ_CONCURRENCY=0", "want 1 to 10000"}},
		{"QueuesForeign", map[string]string{"SANDBOXQ_QUEUES": "foo=1"}, []string{`SANDBOXQ_QUEUES="foo=1"`, "missing critical, default, maintenance"}},
		{"QueuesPartial", map[string]string{"SANDBOXQ_QUEUES": "critical=1,default=1"}, []string{`SANDBOXQ_QUEUES="critical=1,default=1"`, "missing maintenance;"}},
		{"DashboardPathRelative", map[string]string{"DASHBOARD_PATH": "monitoring"}, []string{`DASHBOARD_PATH="monitoring"`, "must start with /"}},
		{"GatewayRate", map[string]string{"SANDBOXQ_GATEWAY_RATE": "foo"}, []string{"SANDBOXQ_GATEWAY_RATE"}},
		{"TraceSampler", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_SAMPLER": "sometimes"}, []string{"OTEL_TRACES_SAMPLER"}},
		{"OriginWildcard", map[string]string{"API_ALLOWED_ORIGINS": "*"}, []string{`API_ALLOWED_ORIGINS entry "*"`, "wildcards are not supported"}},
		{"OriginHostWildcard", map[string]string{"API_ALLOWED_ORIGINS": "https://*.example.com"}, []string{`API_ALLOWED_ORIGINS entry "https://*.example.com"`, "wildcards are not supported"}},
		{"HostWildcard", map[string]string{"SANDBOXQ_ALLOWED_HOSTS": "*"}, []string{`SANDBOXQ_ALLOWED_HOSTS entry "*"`, "wildcards are not supported"}},
		{"HostSubdomainWildcard", map[string]string{"SANDBOXQ_ALLOWED_HOSTS": "app.example.com,*.example.com"}, []string{`SANDBOXQ_ALLOWED_HOSTS entry "*.example.com"`, "wildcards are not supported"}},
		{"NotLoopback", map[string]string{"DASHBOARD_ADDR": ":0"}, []string{`HTTP address ":0" is not a loopback address`, "SANDBOXQ_ALLOWED_HOSTS"}},
	}
}

// needsRedis are the startupFailures only found once the worker is
// connected (the port is taken when it listens); every other one is found
// before anything is dialled, so the tests give those an unreachable Redis.
var needsRedis = map[string]bool{"PortInUse": true}

// redisFor is the REDIS_URL for case name: the live one or an unreachable
// one (a closed port).
func redisFor(t *testing.T, name, live string) string {
	t.Helper()
	if needsRedis[name] {
		return live
	}
	return "redis://127.0.0.1:" + closedPort(t)
}

func busyAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

// TestRunRefusesBadSettings runs the program in-process with each bad
// setting: run returns an error naming the variable, and nothing panics.
// Redis is unreachable except where the check needs it, so the error also
// proves the setting is checked before the worker dials Redis.
func TestRunRefusesBadSettings(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	for _, tc := range startupFailures(busyAddr(t)) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"COMPUTESDK_API_KEY": "k", "REDIS_URL": redisFor(t, tc.name, db.URL()), "DASHBOARD_ADDR": "127.0.0.1:0"}
			for k, v := range tc.env {
				env[k] = v
			}
			err := run(t.Context(), nil, envconfig.MapLookuper(env), io.Discard, io.Discard)
			if err == nil {
				t.Fatal("run accepted the settings")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to say %q", err, w)
				}
			}
		})
	}
}

// TestBinaryExitsOnceOnBadSettings runs the real program as a process with
// each bad setting: exit status 1, exactly one line on stderr that names
// the variable, and no panic or goroutine dump. With LOG_FORMAT=json the
// line is a JSON record.
func TestBinaryExitsOnceOnBadSettings(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	for _, tc := range startupFailures(busyAddr(t)) {
		for _, format := range []string{"text", "json"} {
			t.Run(tc.name+"_"+format, func(t *testing.T) {
				t.Parallel()
				env := map[string]string{"COMPUTESDK_API_KEY": "k", "REDIS_URL": redisFor(t, tc.name, db.URL()), "DASHBOARD_ADDR": "127.0.0.1:0", "LOG_FORMAT": format}
				for k, v := range tc.env {
					env[k] = v
				}
				code, stderr := runBinary(t, env)
				if code != 1 {
					t.Fatalf("exit status %d, want 1; stderr:\n%s", code, stderr)
				}
				if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine") {
					t.Fatalf("stderr has a stack trace:\n%s", stderr)
				}
				lines := strings.Split(strings.TrimSpace(stderr), "\n")
				if len(lines) != 1 {
					t.Fatalf("stderr has %d lines, want 1:\n%s", len(lines), stderr)
				}
				msg := lines[0]
				if format == "json" {
					var rec struct{ Level, Msg string }
					if err := json.Unmarshal([]byte(msg), &rec); err != nil || rec.Level != "ERROR" {
						t.Fatalf("not a JSON error record: %s", msg)
					}
					msg = rec.Msg
				}
				for _, w := range tc.want {
					if !strings.Contains(msg, w) {
						t.Errorf("stderr %q does not say %q", msg, w)
					}
				}
				if !strings.HasPrefix(msg, "worker: ") || strings.Contains(msg, "worker: worker:") {
					t.Errorf("stderr %q: want one \"worker: \" prefix", msg)
				}
			})
		}
	}
}

// TestRedisClientLogsAreJSON makes go-redis log its own lines (failed dials
// to a closed port) with LOG_FORMAT=json: every line on stderr is JSON, and
// go-redis's lines carry component=redis.
func TestRedisClientLogsAreJSON(t *testing.T) {
	t.Parallel()
	code, stderr := runBinary(t, map[string]string{
		"COMPUTESDK_API_KEY": "k", "REDIS_URL": "redis://127.0.0.1:" + closedPort(t), "LOG_FORMAT": "json",
	})
	if code != 1 {
		t.Fatalf("exit status %d, want 1", code)
	}
	redisLines := 0
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not JSON: %q\nstderr:\n%s", line, stderr)
		}
		if rec["component"] == "redis" {
			redisLines++
		}
	}
	if redisLines == 0 {
		t.Fatalf("no go-redis line came through the logger:\n%s", stderr)
	}
}

// runBinary runs this test binary as the worker program with exactly env
// (plus PATH) and returns its exit status and stderr.
func runBinary(t *testing.T, env map[string]string) (int, string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0])
	cmd.Env = []string{runMainEnv + "=1", "PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stderr.String()
	default:
		t.Fatal(err)
		return -1, ""
	}
}
