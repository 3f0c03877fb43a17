package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"

	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/maintenance"
	"github.com/sandboxq/sandboxq/tasks"
)

// The idle polling defaults. An idle worker waits on the wake lists of its
// queues (wake.go) and looks for work when a producer says it enqueued some,
// or after TaskCheckInterval without a word (retries and scheduled tasks
// falling due, tasks enqueued by other producers than tasks.Client). With
// the three required queues it makes about 4 + 3/TaskCheckInterval +
// 6/DelayedTaskCheckInterval round trips/s plus about 2/s for heartbeats
// and the watcher registry: 10 to 15/s measured, against 160/s for asynq polling
// every 20 ms. A task from tasks.Client is picked up a round trip or two
// after it is enqueued; a retry or scheduled task that falls due waits up
// to DelayedTaskCheckInterval for a forwarder (any worker's) to move it,
// which then wakes a worker for it. `go run
// ./cmd/bench -scenarios idle` prints the table these were chosen from.
const (
	DefaultTaskCheckInterval        = time.Second
	DefaultDelayedTaskCheckInterval = 2 * time.Second
)

// MaxConcurrency is the largest Config.Concurrency New accepts.
const MaxConcurrency = 10000

// RequiredQueues are the queues every worker must serve: sandboxq's task
// types are enqueued on them, and a worker that serves none of them would
// leave its tasks waiting forever.
var RequiredQueues = []string{tasks.QueueCritical, tasks.QueueDefault, tasks.QueueMaintenance}

// ConfigError is a Config field whose value New cannot use: outside its
// allowed range, or an address it cannot listen on. Field is the field's
// path in Config ("Concurrency", "Watchers.Cap", "Maintenance.CleanupSpec",
// "HTTP.Addr"), so a program that fills Config from its own settings can
// name the setting instead.
type ConfigError struct {
	Field string
	Value any
	// Reason says what is wrong and what is allowed.
	Reason string
	// Err is the underlying error, if any.
	Err error
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("worker: Config.%s = %v: %s", e.Field, e.Value, e.Reason)
}

func (e *ConfigError) Unwrap() error { return e.Err }

func configErr(field string, value any, format string, args ...any) error {
	return &ConfigError{Field: field, Value: value, Reason: fmt.Sprintf(format, args...)}
}

// Validate reports the first field of c outside its allowed range (as a
// *ConfigError), after the zero values are given their defaults; New does
// the same. It does not require Redis and Gateway, so a program can check
// its settings before it connects anywhere. The dashboard path is checked by
// New, which builds the dashboard.
func (c *Config) Validate() error {
	cc := *c
	cc.fillDefaults()
	return cc.validate()
}

// withDefaults checks the required fields, fills the zero values with their
// documented defaults, then validates the result.
func (c *Config) withDefaults() error {
	if c.Redis == nil {
		return errors.New("worker: Config.Redis is required")
	}
	if c.Gateway == nil {
		return errors.New("worker: Config.Gateway is required")
	}
	c.fillDefaults()
	return c.validate()
}

func (c *Config) fillDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Concurrency == 0 {
		c.Concurrency = 20
	}
	if len(c.Queues) == 0 {
		c.Queues = maps.Clone(tasks.DefaultQueues)
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.TaskCheckInterval == 0 {
		c.TaskCheckInterval = DefaultTaskCheckInterval
	}
	if c.DelayedTaskCheckInterval == 0 {
		c.DelayedTaskCheckInterval = DefaultDelayedTaskCheckInterval
	}
	if c.Policy == nil {
		p := handlers.DefaultPolicy()
		c.Policy = &p
	}
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
}

// validate checks the ranges of the fields New does not hand to a package
// that checks them itself, and those it does, so that every error names the
// Config field.
func (c *Config) validate() error {
	if c.Concurrency < 1 || c.Concurrency > MaxConcurrency {
		return configErr("Concurrency", c.Concurrency, "want 1 to %d", MaxConcurrency)
	}
	if err := validateQueues(c.Queues); err != nil {
		return err
	}
	durations := []struct {
		field string
		d     time.Duration
	}{
		{"ShutdownTimeout", c.ShutdownTimeout},
		{"TaskCheckInterval", c.TaskCheckInterval},
		{"DelayedTaskCheckInterval", c.DelayedTaskCheckInterval},
		{"Handlers.LeaseTTL", c.Handlers.LeaseTTL},
		{"Handlers.LeaseWait", c.Handlers.LeaseWait},
		{"Handlers.PollInterval", c.Handlers.PollInterval},
		{"Watchers.LeaseTTL", c.Watchers.LeaseTTL},
		{"Watchers.ClaimInterval", c.Watchers.ClaimInterval},
		{"Watchers.FastPoll", c.Watchers.FastPoll},
		{"Watchers.SlowPoll", c.Watchers.SlowPoll},
		{"Maintenance.IdleTTL", c.Maintenance.IdleTTL},
	}
	for _, d := range durations {
		// Zero is each field's default (documented on the field).
		if d.d < 0 {
			return configErr(d.field, d.d, "want a duration greater than 0 (0 or unset for the default)")
		}
	}
	if l := c.Handlers.LeaseTTL; l > 0 && l < 30*time.Millisecond {
		return configErr("Handlers.LeaseTTL", l, "want at least 30ms (0 or unset for the default, 30s)")
	}
	if c.Watchers.Cap < 0 {
		return configErr("Watchers.Cap", c.Watchers.Cap, "want 0 (the default, 10,000) or more")
	}
	if err := c.HTTP.validate(); err != nil {
		return err
	}
	if !c.Maintenance.Disabled {
		for _, s := range []struct{ field, spec string }{
			{"Maintenance.CleanupSpec", c.Maintenance.CleanupSpec},
			{"Maintenance.ReconcileSpec", c.Maintenance.ReconcileSpec},
		} {
			if err := checkCronSpec(s.spec); err != nil {
				return configErr(s.field, fmt.Sprintf("%q", s.spec), "want a 5-field cron spec, @every <duration>, or %q: %v", maintenance.Off, err)
			}
		}
	}
	return nil
}

// validateQueues checks names and weights and that every required queue is
// served.
func validateQueues(qs map[string]int) error {
	for _, q := range slices.Sorted(maps.Keys(qs)) {
		if w := qs[q]; strings.TrimSpace(q) == "" || w <= 0 {
			return configErr("Queues", qs, "queue %q has weight %d; names must not be empty or blank and weights positive", q, w)
		}
	}
	var missing []string
	for _, q := range RequiredQueues {
		if _, ok := qs[q]; !ok {
			missing = append(missing, q)
		}
	}
	if len(missing) > 0 {
		return configErr("Queues", qs, "missing %s; sandboxq's tasks are enqueued on %s", strings.Join(missing, ", "), strings.Join(RequiredQueues, ", "))
	}
	return nil
}

// checkCronSpec parses a maintenance schedule the way the scheduler does;
// empty is the default and "off" disables it.
func checkCronSpec(spec string) error {
	if spec == "" || strings.EqualFold(strings.TrimSpace(spec), maintenance.Off) {
		return nil
	}
	_, err := cron.ParseStandard(spec)
	return err
}
