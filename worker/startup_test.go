package worker_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/worker"
)

// TestNewReturnsStartupErrors feeds New the inputs that used to crash it
// (a nil dereference in its cleanup) or that it accepted although the worker
// could not work with them. Each must be an error naming the field and the
// cause, never a panic, and nothing New opened may stay open.
func TestNewReturnsStartupErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	cases := []struct {
		name   string
		mutate func(*worker.Config)
		field  string // the ConfigError field; "" for other errors
		want   string
	}{
		{"PortInUse", func(c *worker.Config) { c.HTTP.Addr = busy.Addr().String() }, "HTTP.Addr", "address already in use"},
		{"DashboardPathAPI", func(c *worker.Config) { c.HTTP.Addr, c.HTTP.DashboardPath = "127.0.0.1:0", "/api/v1" }, "HTTP.DashboardPath", "collides"},
		{"DashboardPathNoSlash", func(c *worker.Config) { c.HTTP.DashboardPath = "monitoring" }, "HTTP.DashboardPath", "must start with /"},
		{"CleanupCron", func(c *worker.Config) { c.Maintenance.CleanupSpec = "x_y_z" }, "Maintenance.CleanupSpec", "cron spec"},
		{"ReconcileCron", func(c *worker.Config) { c.Maintenance.ReconcileSpec = "61 * * * *" }, "Maintenance.ReconcileSpec", "cron spec"},
		{"WatcherCap", func(c *worker.Config) { c.Watchers.Cap = -1 }, "Watchers.Cap", "0 (the default, 10,000) or more"},
		{"IdleTTL", func(c *worker.Config) { c.Maintenance.IdleTTL = -time.Hour }, "Maintenance.IdleTTL", "greater than 0"},
		{"LeaseTTL", func(c *worker.Config) { c.Handlers.LeaseTTL = -5 * time.Second }, "Handlers.LeaseTTL", "greater than 0"},
		{"LeaseTTLShort", func(c *worker.Config) { c.Handlers.LeaseTTL = 10 * time.Millisecond }, "Handlers.LeaseTTL", "at least 30ms"},
		{"ShutdownTimeout", func(c *worker.Config) { c.ShutdownTimeout = -time.Second }, "ShutdownTimeout", "greater than 0"},
		{"ConcurrencyHuge", func(c *worker.Config) { c.Concurrency = 99999999999 }, "Concurrency", "want 1 to 10000"},
		{"ConcurrencyNegative", func(c *worker.Config) { c.Concurrency = -1 }, "Concurrency", "want 1 to 10000"},
		{"QueuesForeign", func(c *worker.Config) { c.Queues = map[string]int{"foo": 1} }, "Queues", "missing critical, default, maintenance"},
		{"QueuesPartial", func(c *worker.Config) { c.Queues = map[string]int{"critical": 6, "default": 3} }, "Queues", "missing maintenance;"},
		{"QueueWeight", func(c *worker.Config) { c.Queues = map[string]int{"critical": 0} }, "Queues", "weights positive"},
		{"QueueBlankName", func(c *worker.Config) {
			c.Queues = map[string]int{"critical": 1, "default": 1, "maintenance": 1, " ": 1}
		}, "Queues", "empty or blank"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := worker.Config{Redis: b.rdb, Gateway: b.gw, Logger: b.logger}
			tc.mutate(&cfg)
			w, err := worker.New(cfg)
			if err == nil {
				t.Fatalf("New accepted the config: %+v", w)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
			var ce *worker.ConfigError
			if tc.field != "" && (!errors.As(err, &ce) || ce.Field != tc.field) {
				t.Fatalf("err = %#v, want a *ConfigError for %s", err, tc.field)
			}
			if tc.field != "" && !strings.Contains(err.Error(), "Config."+tc.field) {
				t.Fatalf("err = %v does not name Config.%s", err, tc.field)
			}
		})
	}
}

// TestValidateNeedsNoConnections checks that Validate applies the same
// rules without Redis and Gateway, and accepts the zero Config.
func TestValidateNeedsNoConnections(t *testing.T) {
	t.Parallel()
	if err := (&worker.Config{}).Validate(); err != nil {
		t.Fatalf("the zero Config is invalid: %v", err)
	}
	cfg := worker.Config{Queues: map[string]int{"foo": 1}}
	var ce *worker.ConfigError
	if err := cfg.Validate(); !errors.As(err, &ce) || ce.Field != "Queues" {
		t.Fatalf("Validate = %v, want a Queues error", err)
	}
	if cfg.Concurrency != 0 {
		t.Fatal("Validate changed the Config")
	}
}

// TestNewAfterAFailedNewGetsThePort checks that a failure after the listener
// was opened does not leave the port taken: the same address can be used
// again at once.
func TestNewAfterAFailedNewGetsThePort(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if _, err := worker.New(worker.Config{Redis: b.rdb, Gateway: b.gw, HTTP: worker.HTTPConfig{Addr: addr, DashboardPath: "/api/v1"}}); err == nil {
		t.Fatal("New accepted DashboardPath /api/v1")
	}
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the failed New left the port taken: %v", err)
	}
	l.Close()
}
