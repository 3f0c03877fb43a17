package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sethvargo/go-envconfig"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/ratelimit"
	"github.com/sandboxq/sandboxq/internal/tracing"
)

// setupTracing starts the tracer provider the OTEL_* variables describe and
// makes it the global one. It returns nil (and changes nothing) when they
// leave tracing off; otherwise the caller shuts the provider down at exit,
// which sends the spans still buffered.
func setupTracing(ctx context.Context, env envconfig.Lookuper, logger *slog.Logger) (*tracing.Provider, error) {
	p, err := tracing.Setup(ctx, env.Lookup, "sandboxq-worker")
	if err != nil || p == nil {
		return nil, err
	}
	otel.SetTracerProvider(p)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	logger.Info("tracing on", "otlp_endpoint", p.Endpoint)
	return p, nil
}

// shutdownTracing flushes the spans still buffered.
func shutdownTracing(p *tracing.Provider) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			return fmt.Errorf("tracing: %w", err)
		}
		return nil
	}
}

// gatewayGate returns the option that puts the shared gateway rate limit
// in front of the gateway client: the budget of SANDBOXQ_GATEWAY_RATE and
// the pause every worker keeps after a 429 with Retry-After. Unset or
// "off": no gate at all; "unlimited": the shared pause without a budget.
func gatewayGate(rdb redis.UniversalClient, cfg *Config, reg prometheus.Registerer) (gateway.Option, ratelimit.Limit, error) {
	limit, on, err := cfg.gatewayRate()
	if err != nil || !on {
		return gateway.WithGate(nil), limit, err
	}
	g, err := ratelimit.New(rdb, ratelimit.Config{Limit: limit, MaxWait: cfg.GatewayRateWait, Metrics: reg})
	if err != nil {
		return nil, limit, err
	}
	return gateway.WithGate(g), limit, nil
}

// traceProvider is p as the worker's provider; nil when tracing is off, so
// the worker keeps the global no-op one.
func traceProvider(p *tracing.Provider) trace.TracerProvider {
	if p == nil {
		return nil
	}
	return p
}

// gatewayRate parses SANDBOXQ_GATEWAY_RATE and checks
// SANDBOXQ_GATEWAY_RATE_WAIT; on is false when there is no gate at all.
// It needs no connection, so start-up checks it before dialling Redis.
func (c *Config) gatewayRate() (limit ratelimit.Limit, on bool, err error) {
	raw := strings.TrimSpace(c.GatewayRate)
	if raw == "" || strings.EqualFold(raw, "off") {
		return ratelimit.Limit{}, false, nil
	}
	if strings.EqualFold(raw, "unlimited") {
		raw = "" // no budget, only the shared pause
	}
	limit, err = ratelimit.Parse(raw)
	if err != nil {
		return limit, false, fmt.Errorf("SANDBOXQ_GATEWAY_RATE: %w", err)
	}
	if c.GatewayRateWait <= 0 {
		return limit, false, fmt.Errorf("SANDBOXQ_GATEWAY_RATE_WAIT=%v: want a positive duration", c.GatewayRateWait)
	}
	return limit, true, nil
}
