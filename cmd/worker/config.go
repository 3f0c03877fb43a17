package main

import (
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/sandboxq/sandboxq/internal/secret"
)

// Config is everything cmd/worker reads from the environment. The README's
// configuration table lists the same variables; keep them in step.
type Config struct {
	// ComputeSDK gateway.
	APIKey      secret.Secret `env:"COMPUTESDK_API_KEY"`
	GatewayURL  string        `env:"COMPUTESDK_GATEWAY_URL, default=https://gateway.computesdk.com"`
	GatewayPath string        `env:"COMPUTESDK_GATEWAY_PATHS, default=singular"`
	Provider    string        `env:"COMPUTESDK_PROVIDER"`

	// Redis.
	RedisURL string `env:"REDIS_URL"`

	// Worker.
	Concurrency     int           `env:"SANDBOXQ_CONCURRENCY, default=20"`
	Queues          Queues        `env:"SANDBOXQ_QUEUES"`
	ShutdownTimeout time.Duration `env:"SANDBOXQ_SHUTDOWN_TIMEOUT, default=30s"`
	LeaseTTL        time.Duration `env:"SANDBOXQ_LEASE_TTL, default=30s"`
	LeaseWait       time.Duration `env:"SANDBOXQ_LEASE_WAIT, default=3s"`

	// Idle polling (0: worker.DefaultTaskCheckInterval, worker.DefaultDelayedTaskCheckInterval).
	TaskCheckInterval        time.Duration `env:"SANDBOXQ_TASK_CHECK_INTERVAL"`
	DelayedTaskCheckInterval time.Duration `env:"SANDBOXQ_DELAYED_TASK_CHECK_INTERVAL"`

	// Shared gateway rate limit (observe.go): "50/s", "50/s,burst=10"; off when empty.
	GatewayRate     string        `env:"SANDBOXQ_GATEWAY_RATE"`
	GatewayRateWait time.Duration `env:"SANDBOXQ_GATEWAY_RATE_WAIT, default=2s"`

	// Watchers.
	AccessToken secret.Secret `env:"COMPUTESDK_ACCESS_TOKEN"`
	EventsAddr  string        `env:"COMPUTESDK_EVENTS_ADDR"`
	WatcherCap  int           `env:"SANDBOXQ_WATCHER_CAP, default=10000"`
	WatchersOff bool          `env:"SANDBOXQ_WATCHERS_DISABLED, default=false"`
	OwnerID     string        `env:"SANDBOXQ_OWNER_ID"`

	// Periodic tasks.
	IdleTTL       time.Duration `env:"SANDBOX_IDLE_TTL, default=30m"`
	CleanupCron   string        `env:"CLEANUP_CRON, default=*/10 * * * *"`
	ReconcileCron string        `env:"RECONCILE_CRON, default=*/5 * * * *"`

	// Dashboard and producer API.
	DashboardAddr     string          `env:"DASHBOARD_ADDR, default=127.0.0.1:8080"`
	DashboardPath     string          `env:"DASHBOARD_PATH, default=/monitoring"`
	DashboardUser     string          `env:"DASHBOARD_USER"`
	DashboardPassword secret.Secret   `env:"DASHBOARD_PASSWORD"`
	DashboardToken    secret.Secret   `env:"DASHBOARD_TOKEN"`
	DashboardReadOnly *bool           `env:"DASHBOARD_READONLY, noinit"` // unset: true, false with -dev
	PrometheusAddr    string          `env:"DASHBOARD_PROMETHEUS_ADDR"`
	APITokens         []secret.Secret `env:"API_TOKENS"`
	APIDisabled       bool            `env:"API_DISABLED, default=false"`
	APIAllowedOrigins []string        `env:"API_ALLOWED_ORIGINS"`
	AllowedHosts      []string        `env:"SANDBOXQ_ALLOWED_HOSTS"`

	// Local provider (used with -dev when COMPUTESDK_API_KEY is unset).
	LocalAddr string `env:"SANDBOXQ_LOCAL_ADDR, default=127.0.0.1:0"`
	LocalRoot string `env:"SANDBOXQ_LOCAL_ROOT"`
	// LocalAPIKey fixes the local provider's key so other clients can use
	// it; a random one otherwise.
	LocalAPIKey secret.Secret `env:"SANDBOXQ_LOCAL_API_KEY"`

	// Logging.
	LogLevel  string `env:"LOG_LEVEL, default=info"`
	LogFormat string `env:"LOG_FORMAT, default=text"`
}

// Queues is a queue → weight list such as "critical=6,default=3".
type Queues map[string]int

// EnvDecode implements envconfig.Decoder.
func (q *Queues) EnvDecode(s string) error {
	m := Queues{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, weight, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("queue %q: want name=weight", part)
		}
		w, err := strconv.Atoi(strings.TrimSpace(weight))
		if err != nil || w <= 0 {
			return fmt.Errorf("queue %q: weight must be a positive integer", part)
		}
		m[strings.TrimSpace(name)] = w
	}
	*q = m
	return nil
}

func (c *Config) validate(dev bool) error {
	if c.APIKey.IsZero() && !dev {
		return fmt.Errorf("COMPUTESDK_API_KEY is not set: set it to your ComputeSDK API key (from the ComputeSDK dashboard, https://computesdk.com/dashboard), or run with -dev to use the embedded local provider")
	}
	switch c.GatewayPath {
	case "singular", "plural":
	default:
		return fmt.Errorf("COMPUTESDK_GATEWAY_PATHS=%q: want singular (/v1/sandbox/…) or plural (/v1/sandboxes/…)", c.GatewayPath)
	}
	switch strings.ToLower(c.LogFormat) {
	case "text", "json":
	default:
		return fmt.Errorf("LOG_FORMAT=%q: want text or json", c.LogFormat)
	}
	return nil
}

// envErrorText rewrites an envconfig error, which names the struct field
// ("ShutdownTimeout: time: invalid duration"), to name the variable a user
// sets instead.
func envErrorText(err error) string {
	msg := err.Error()
	t := reflect.TypeFor[Config]()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name != "" && strings.HasPrefix(msg, f.Name+":") {
			return name + msg[len(f.Name):]
		}
	}
	return msg
}

// envVar is one variable of Config: its name and default, read from the
// struct tags so that the help cannot drift from what is read.
type envVar struct {
	Name, Default string
}

// envVars lists Config's variables in declaration order.
func envVars() []envVar {
	t := reflect.TypeFor[Config]()
	out := make([]envVar, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name == "" {
			continue
		}
		v := envVar{Name: strings.TrimSpace(name)}
		// default= is the last option: its value may hold commas or spaces.
		if _, def, ok := strings.Cut(opts, "default="); ok {
			v.Default = def
		}
		if d, ok := computedDefaults[v.Name]; ok {
			v.Default = d
		}
		out = append(out, v)
	}
	return out
}

// computedDefaults are the defaults that no struct tag can state, as the
// README's configuration table words them.
var computedDefaults = map[string]string{
	"REDIS_URL":              "redis://127.0.0.1:6379",
	"SANDBOXQ_QUEUES":        "critical=6,default=3,maintenance=1",
	"SANDBOXQ_OWNER_ID":      "<host>-<pid>-<random>",
	"DASHBOARD_READONLY":     "true (false with -dev)",
	"SANDBOXQ_LOCAL_ROOT":    "a temp dir",
	"SANDBOXQ_LOCAL_API_KEY": "random",
}

// printEnvHelp writes every variable with its default, one a line.
func printEnvHelp(w io.Writer) {
	vars := envVars()
	width := 0
	for _, v := range vars {
		width = max(width, len(v.Name))
	}
	for _, v := range vars {
		def := v.Default
		if def == "" {
			def = "(unset)"
		}
		fmt.Fprintf(w, "  %-*s  %s\n", width, v.Name, def)
	}
	fmt.Fprint(w, "OTEL_* variables (tracing) are described in the README.\n")
}
