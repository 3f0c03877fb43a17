// Command worker runs sandboxq's task processor.
//
//	go run ./cmd/worker -dev
//
// With -dev it needs nothing else: it uses the Redis on 127.0.0.1:6379 or
// starts an in-memory one there, and starts the local provider when
// COMPUTESDK_API_KEY is unset. Without -dev, COMPUTESDK_API_KEY is required
// and REDIS_URL defaults to redis://127.0.0.1:6379. Every variable is listed
// in the README.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sethvargo/go-envconfig"

	"github.com/sandboxq/sandboxq/dashboard"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/internal/redislog"
	"github.com/sandboxq/sandboxq/internal/redisurl"
	"github.com/sandboxq/sandboxq/internal/secret"
	"github.com/sandboxq/sandboxq/internal/tracing"
	"github.com/sandboxq/sandboxq/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], envconfig.OsLookuper(), os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		printError(os.Stderr, os.Getenv("LOG_FORMAT"), err)
		os.Exit(1)
	}
}

// run is the whole program; main only adds the process around it. ready,
// when the worker is up, receives what it connected to (tests use it).
func run(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	dev, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(ctx, env, dev)
	if err != nil {
		return err
	}
	logger, err := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	// go-redis's own lines (failed dials, dropped connections) go through
	// the same logger, so LOG_FORMAT=json output stays JSON.
	redis.SetLogger(redislog.New(logger))

	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			if err := closers[i](); err != nil {
				logger.Warn("shutdown", "err", err)
			}
		}
	}()

	rdb, redisDesc, closeRedis, err := openRedis(ctx, cfg.RedisURL, dev, logger)
	if err != nil {
		return err
	}
	closers = append(closers, closeRedis)

	gwURL, apiKey, gwDesc, closeLocal, err := gatewayTarget(&cfg, dev, logger, stdout)
	if err != nil {
		return err
	}
	if closeLocal != nil {
		closers = append(closers, closeLocal)
	}
	metricsReg := prometheus.NewRegistry()
	tp, err := setupTracing(ctx, env, logger)
	if err != nil {
		return err
	}
	if tp != nil {
		closers = append(closers, shutdownTracing(tp))
	}
	gate, limit, err := gatewayGate(rdb, &cfg, metricsReg)
	if err != nil {
		return err
	}
	opts := []gateway.Option{gateway.WithAPIKey(apiKey), gateway.WithPathStyle(pathStyle(cfg.GatewayPath)), gateway.WithLogger(logger), gate}
	if tp != nil {
		opts = append(opts, gateway.WithTracing(tp))
	}
	if cfg.Provider != "" {
		opts = append(opts, gateway.WithProvider(cfg.Provider))
	}
	gw, err := gateway.NewClient(gwURL, opts...)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}

	wcfg := workerConfig(&cfg, rdb, gw, logger, metricsReg, tp)
	wcfg.HTTP.ReadOnly = dashboardReadOnly(cfg.DashboardReadOnly, dev)
	w, err := worker.New(wcfg)
	if err != nil {
		return workerError(err, env)
	}
	logger.Info("sandboxq worker starting", "redis", redisDesc, "gateway", gwDesc, "provider", cfg.Provider, "dev", dev,
		"concurrency", cfg.Concurrency, "gateway_rate", limit.String(), "dashboard", dashboardURL(w.Addr(), cfg.DashboardPath), "events_service", cfg.EventsAddr)
	return w.Run(ctx)
}

// parseFlags reads the command line: -dev and nothing else.
func parseFlags(args []string, stderr io.Writer) (dev bool, err error) {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	devFlag := fs.Bool("dev", false, "development mode: embedded Redis if none answers on 127.0.0.1:6379, local provider if COMPUTESDK_API_KEY is unset")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: worker [-dev]\n\nRuns sandboxq's task processor. Configuration comes from the environment (see README).\n\nExamples:\n  go run ./cmd/worker -dev\n  COMPUTESDK_API_KEY=… REDIS_URL=redis://127.0.0.1:6379 worker\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprint(stderr, "\nEnvironment (variable, default):\n")
		printEnvHelp(stderr)
	}
	if err := fs.Parse(args); err != nil {
		return false, err
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected arguments %q (see -h)", fs.Args())
	}
	return *devFlag, nil
}

// loadConfig reads the configuration from env and checks it.
func loadConfig(ctx context.Context, env envconfig.Lookuper, dev bool) (Config, error) {
	var cfg Config
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &cfg, Lookuper: env}); err != nil {
		return cfg, fmt.Errorf("configuration: %s", envErrorText(err))
	}
	if err := cfg.validate(dev); err != nil {
		return cfg, err
	}
	if err := cfg.validateRanges(env); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// pathStyle is the gateway path style GATEWAY_PATH names.
func pathStyle(name string) gateway.PathStyle {
	if name == "plural" {
		return gateway.PathPlural
	}
	return gateway.PathSingular
}

// gatewayTarget is the gateway the worker talks to: the configured one or,
// with -dev and no API key, a local provider it starts (close stops it).
func gatewayTarget(cfg *Config, dev bool, logger *slog.Logger, stdout io.Writer) (url string, apiKey secret.Secret, desc string, close func() error, err error) {
	if !dev || !cfg.APIKey.IsZero() {
		return cfg.GatewayURL, cfg.APIKey, redactURL(cfg.GatewayURL), nil, nil
	}
	lp, err := startLocalProvider(cfg.LocalAddr, cfg.LocalRoot, cfg.LocalAPIKey, logger)
	if err != nil {
		return "", secret.Secret{}, "", nil, err
	}
	fmt.Fprintf(stdout, "local provider: %s\n", lp.URL())
	return lp.URL(), lp.APIKey(), lp.URL() + " (local provider, sandboxes in " + lp.Root() + ")", lp.Close, nil
}

// workerConfig is the library configuration of the worker.
func workerConfig(cfg *Config, rdb redis.UniversalClient, gw *gateway.Client, logger *slog.Logger, reg *prometheus.Registry, tp *tracing.Provider) worker.Config {
	return worker.Config{
		Redis:                    rdb,
		Gateway:                  gw,
		Logger:                   logger,
		Concurrency:              cfg.Concurrency,
		Queues:                   cfg.Queues,
		ShutdownTimeout:          cfg.shutdownTimeout(),
		TaskCheckInterval:        cfg.TaskCheckInterval,
		DelayedTaskCheckInterval: cfg.DelayedTaskCheckInterval,
		Handlers:                 handlers.Config{LeaseTTL: cfg.LeaseTTL, LeaseWait: cfg.LeaseWait},
		Metrics:                  reg,
		TracerProvider:           traceProvider(tp),
		Watchers: worker.WatcherConfig{
			Disabled: cfg.WatchersOff, OwnerID: cfg.OwnerID, Cap: cfg.WatcherCap,
			EventsAddr: cfg.EventsAddr, AccessToken: cfg.AccessToken,
		},
		Maintenance: worker.MaintenanceConfig{IdleTTL: cfg.IdleTTL, CleanupSpec: cfg.CleanupCron, ReconcileSpec: cfg.ReconcileCron},
		HTTP: worker.HTTPConfig{
			Addr: cfg.DashboardAddr, DashboardPath: cfg.DashboardPath, ReadOnly: dashboardReadOnly(cfg.DashboardReadOnly, false),
			Auth:      dashboard.Auth{Username: cfg.DashboardUser, Password: cfg.DashboardPassword, BearerToken: cfg.DashboardToken},
			APITokens: cfg.APITokens, APIDisabled: cfg.APIDisabled, PrometheusAddr: cfg.PrometheusAddr,
			AllowedHosts: cfg.AllowedHosts, AllowedOrigins: cfg.APIAllowedOrigins,
		},
	}
}

// dashboardReadOnly is DASHBOARD_READONLY, defaulting to read-only except
// with -dev, where Asynqmon's actions (run, archive, delete) work.
func dashboardReadOnly(set *bool, dev bool) *bool {
	if set != nil {
		v := *set
		return &v
	}
	v := !dev
	return &v
}

// printError prints the error that ends the program as one line: a JSON
// record with LOG_FORMAT=json, so that output stays all JSON, else text.
func printError(w io.Writer, format string, err error) {
	// Errors of the worker package carry the prefix already.
	msg := "worker: " + strings.TrimPrefix(strings.ReplaceAll(err.Error(), "\n", "; "), "worker: ")
	if strings.EqualFold(format, "json") {
		slog.New(slog.NewJSONHandler(w, nil)).Error(msg)
		return
	}
	fmt.Fprintln(w, msg)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", level)
	}
	hopts := &slog.HandlerOptions{Level: lv}
	if strings.EqualFold(format, "json") {
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return slog.New(slog.NewTextHandler(w, hopts)), nil
}

// openRedis connects to REDIS_URL. In dev mode without REDIS_URL it uses a
// Redis that answers on 127.0.0.1:6379, or starts an in-memory one there.
func openRedis(ctx context.Context, url string, dev bool, logger *slog.Logger) (redis.UniversalClient, string, func() error, error) {
	if url == "" && dev {
		return devRedis(ctx, devRedisAddr, logger)
	}
	if url == "" {
		url = redisurl.Default
	}
	target, err := redisurl.Parse(url)
	if err != nil {
		return nil, "", nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := target.Open()
	desc := target.Where
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, "", nil, fmt.Errorf("cannot reach Redis at %s: %w", desc, err)
	}
	return rdb, desc, rdb.Close, nil
}

func dashboardURL(addr, path string) string {
	if addr == "" {
		return ""
	}
	return "http://" + addr + path + "/"
}

// redactURL drops credentials and the query from a URL for logging.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}
