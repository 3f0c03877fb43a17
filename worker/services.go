package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/sandboxq/sandboxq/dashboard"
	"github.com/sandboxq/sandboxq/internal/secret"
)

// WatcherConfig configures the per-sandbox watchers (package events). The
// zero value runs them with the events package's defaults.
type WatcherConfig struct {
	// Disabled turns the watchers off: no events are recorded, and
	// server:start falls back to polling the daemon.
	Disabled bool
	// OwnerID names this process in watcher leases (default
	// "<hostname>-<pid>-<random>").
	OwnerID string
	// Cap is the most sandboxes this process watches (default 10,000).
	Cap int
	// LeaseTTL, ClaimInterval, FastPoll and SlowPoll: see events.Config.
	LeaseTTL, ClaimInterval, FastPoll, SlowPoll time.Duration
	// EventsAddr is the events service pub/sub address (host:port); empty
	// disables that source.
	EventsAddr string
	// AccessToken is the events service access token (default: each
	// sandbox's own token).
	AccessToken secret.Secret
}

// MaintenanceConfig configures the periodic tasks (package maintenance).
type MaintenanceConfig struct {
	// Disabled leaves the schedules out of this process (the handlers stay
	// registered, so other processes' schedules still run here).
	Disabled bool
	// IdleTTL is how long a sandbox may be unused before cleanup destroys
	// it (default 30 min).
	IdleTTL time.Duration
	// CleanupSpec and ReconcileSpec are cron specs (defaults every 10 and
	// every 5 minutes; "off" disables one).
	CleanupSpec, ReconcileSpec string
}

// HTTPConfig configures the HTTP side: the dashboard (Asynqmon, /metrics,
// /healthz, /readyz, /sandboxes) and the producer API under /api/v1/.
type HTTPConfig struct {
	// Addr is where to listen; empty serves nothing (Handler still works
	// for embedders). A non-loopback address needs dashboard credentials
	// and API tokens.
	Addr string
	// DashboardPath is where Asynqmon is mounted (default "/monitoring").
	DashboardPath string
	// ReadOnly makes Asynqmon view-only (nil: true).
	ReadOnly *bool
	// Auth protects the dashboard.
	Auth dashboard.Auth
	// APITokens are the bearer tokens of the producer API.
	APITokens []secret.Secret
	// APIDisabled leaves the producer API out.
	APIDisabled bool
	// PrometheusAddr is the Prometheus server Asynqmon's charts query.
	PrometheusAddr string
	// AllowedHosts are the host names (or IP addresses) clients use to
	// reach the server, besides localhost, 127.0.0.1 and [::1], which are
	// always allowed; a request naming another Host gets 403 (except
	// /healthz). Required with a non-loopback Addr. It protects Handler
	// too. Entries are exact hosts with an optional ignored :port; there
	// are no wildcards (see newGuard). Set by SANDBOXQ_ALLOWED_HOSTS.
	AllowedHosts []string
	// AllowedOrigins are the browser origins (scheme://host[:port]) whose
	// pages may send state-changing requests; every other cross-origin
	// write gets 403. Set by API_ALLOWED_ORIGINS.
	AllowedOrigins []string
}

func defaultOwnerID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// serveHTTP serves h on l until ctx is done, then shuts the server down.
func serveHTTP(ctx context.Context, l net.Listener, h http.Handler, onShutdown func()) error {
	return serveWith(ctx, l, h, onShutdown, defaultLimits)
}

// serveWith is serveHTTP with the given limits.
func serveWith(ctx context.Context, l net.Listener, h http.Handler, onShutdown func(), lim httpLimits) error {
	srv := newServer(h, lim)
	if onShutdown != nil {
		srv.RegisterOnShutdown(onShutdown)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}
