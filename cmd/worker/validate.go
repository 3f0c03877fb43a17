package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/sandboxq/sandboxq/internal/tracing"
	"github.com/sandboxq/sandboxq/worker"
)

// workerFieldVars maps the worker.Config fields cmd/worker sets from the
// environment to their variables, so that a *worker.ConfigError names what
// the user set.
var workerFieldVars = map[string]string{
	"Concurrency":               "SANDBOXQ_CONCURRENCY",
	"Queues":                    "SANDBOXQ_QUEUES",
	"ShutdownTimeout":           "SANDBOXQ_SHUTDOWN_TIMEOUT",
	"TaskCheckInterval":         "SANDBOXQ_TASK_CHECK_INTERVAL",
	"DelayedTaskCheckInterval":  "SANDBOXQ_DELAYED_TASK_CHECK_INTERVAL",
	"Handlers.LeaseTTL":         "SANDBOXQ_LEASE_TTL",
	"Handlers.LeaseWait":        "SANDBOXQ_LEASE_WAIT",
	"Watchers.Cap":              "SANDBOXQ_WATCHER_CAP",
	"Maintenance.IdleTTL":       "SANDBOX_IDLE_TTL",
	"Maintenance.CleanupSpec":   "CLEANUP_CRON",
	"Maintenance.ReconcileSpec": "RECONCILE_CRON",
	"HTTP.DashboardPath":        "DASHBOARD_PATH",
	"HTTP.Addr":                 "DASHBOARD_ADDR",
}

// validateRanges checks the numeric, duration, queue and schedule settings
// before anything connects: first the rules of the variables themselves
// (a duration of 0 is not a default here), then worker.Config's own.
func (c *Config) validateRanges(env envconfig.Lookuper) error {
	if c.Concurrency < 1 || c.Concurrency > worker.MaxConcurrency {
		return fmt.Errorf("SANDBOXQ_CONCURRENCY=%d: want 1 to %d", c.Concurrency, worker.MaxConcurrency)
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"SANDBOXQ_LEASE_TTL", c.LeaseTTL},
		{"SANDBOXQ_LEASE_WAIT", c.LeaseWait},
		{"SANDBOX_IDLE_TTL", c.IdleTTL},
	} {
		if d.d <= 0 {
			return fmt.Errorf("%s=%v: want a duration greater than 0", d.name, d.d)
		}
	}
	if c.ShutdownTimeout < 0 {
		return fmt.Errorf("SANDBOXQ_SHUTDOWN_TIMEOUT=%v: want 0 (hand running tasks back at once) or more", c.ShutdownTimeout)
	}
	if c.WatcherCap < 0 {
		return fmt.Errorf("SANDBOXQ_WATCHER_CAP=%d: want 0 or more", c.WatcherCap)
	}
	// The whole library configuration, HTTP settings included, with no
	// connections: worker.New would find the same errors only after Redis
	// answered.
	wc := workerConfig(c, nil, nil, nil, nil, nil)
	if err := workerError(wc.Validate(), env); err != nil {
		return err
	}
	if _, _, err := c.gatewayRate(); err != nil {
		return err
	}
	_, err := tracing.Check(env.Lookup)
	return err
}

// shutdownTimeout is SANDBOXQ_SHUTDOWN_TIMEOUT for worker.Config, where 0
// means the default: 0 here means no grace, so it becomes 1 ns.
func (c *Config) shutdownTimeout() time.Duration {
	if c.ShutdownTimeout == 0 {
		return time.Nanosecond
	}
	return c.ShutdownTimeout
}

// workerError rewrites a *worker.ConfigError to name the environment
// variable and the value as it was set; other errors pass unchanged.
func workerError(err error, env envconfig.Lookuper) error {
	var ce *worker.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	name, ok := workerFieldVars[ce.Field]
	if !ok {
		return err
	}
	val := fmt.Sprint(ce.Value)
	if raw, ok := env.Lookup(name); ok {
		val = fmt.Sprintf("%q", raw)
	}
	return fmt.Errorf("%s=%s: %s", name, val, ce.Reason)
}
