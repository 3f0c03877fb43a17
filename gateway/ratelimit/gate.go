package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/internal/backoff"
	"github.com/sandboxq/sandboxq/schema"
)

// DefaultMaxWait is how long a call waits for room before it is refused.
const DefaultMaxWait = 2 * time.Second

// Config configures a Gate.
type Config struct {
	// Limit is the shared budget of gateway calls. Zero: no budget, only
	// the shared pause after a 429.
	Limit Limit
	// MaxWait is how long one call waits for a token or for a pause to end
	// before it is refused with a *gateway.ThrottledError (default
	// DefaultMaxWait).
	MaxWait time.Duration
	// Metrics, if set, receives the gate's series.
	Metrics prometheus.Registerer
}

// withDefaults fills the zero values with their documented defaults, then
// validates the result.
func (c *Config) withDefaults() error {
	if c.MaxWait == 0 {
		c.MaxWait = DefaultMaxWait
	}
	return c.validate()
}

// validate reports an invalid Limit and a negative MaxWait.
func (c *Config) validate() error {
	if c.Limit.Rate < 0 || c.Limit.Burst < 0 || (!c.Limit.IsZero() && (c.Limit.Per <= 0 || c.Limit.Burst == 0)) {
		return fmt.Errorf("ratelimit: invalid limit %+v", c.Limit)
	}
	if c.MaxWait < 0 {
		return fmt.Errorf("ratelimit: MaxWait %v is negative", c.MaxWait)
	}
	return nil
}

// Gate is a gateway.Gate backed by Redis: one GCRA budget and one pause
// shared by every process that uses the same Redis.
type Gate struct {
	rdb     redis.UniversalClient
	limiter *redis_rate.Limiter
	limit   redis_rate.Limit
	maxWait time.Duration

	waitSeconds *prometheus.HistogramVec
	pauses      prometheus.Counter
}

var _ gateway.Gate = (*Gate)(nil)

// New returns a Gate over rdb.
func New(rdb redis.UniversalClient, opts Config) (*Gate, error) {
	if rdb == nil {
		return nil, errors.New("ratelimit: nil Redis client")
	}
	if err := opts.withDefaults(); err != nil {
		return nil, err
	}
	g := &Gate{
		rdb:     rdb,
		limiter: redis_rate.NewLimiter(rdb),
		limit:   redis_rate.Limit{Rate: opts.Limit.Rate, Period: opts.Limit.Per, Burst: opts.Limit.Burst},
		maxWait: opts.MaxWait,
		waitSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sandboxq_gateway_rate_wait_seconds",
			Help:    "Time a gateway call waited for the shared rate limit (a token or the end of a pause), by result: allowed or throttled (refused, task rescheduled).",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2, 5},
		}, []string{"result"}),
		pauses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sandboxq_gateway_pauses_total",
			Help: "429 answers with a Retry-After that paused the gateway calls of every worker.",
		}),
	}
	if opts.Metrics != nil {
		for _, c := range []prometheus.Collector{g.waitSeconds, g.pauses} {
			if err := opts.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("ratelimit: register metrics: %w", err)
			}
		}
	}
	return g, nil
}

// Wait blocks until the shared pause is over and a token is taken, or
// refuses the call with a *gateway.ThrottledError when that would take
// longer than MaxWait.
func (g *Gate) Wait(ctx context.Context, op string) error {
	start := time.Now()
	deadline := start.Add(g.maxWait)
	var span trace.Span // started at the first wait only
	finish := func(result string, err error) error {
		d := time.Since(start)
		g.waitSeconds.WithLabelValues(result).Observe(d.Seconds())
		if span != nil {
			span.SetAttributes(attribute.String("sandboxq.rate.result", result))
			span.End()
		}
		return err
	}
	for {
		wait, err := g.nextWait(ctx)
		if err != nil {
			return finish("error", fmt.Errorf("gateway: %s: shared rate limit: %w", op, err))
		}
		if wait == 0 {
			return finish("allowed", nil)
		}
		if time.Now().Add(wait).After(deadline) {
			return finish("throttled", &gateway.ThrottledError{Op: op, RetryAfter: wait})
		}
		if span == nil {
			_, span = trace.SpanFromContext(ctx).TracerProvider().Tracer(tracerName).Start(ctx, "gateway.rate_limit_wait",
				trace.WithTimestamp(start), trace.WithAttributes(attribute.String("sandboxq.op", op)))
		}
		// A little jitter keeps the waiters of all workers from asking in
		// lockstep.
		wait += time.Duration(rand.Int64N(int64(wait/4) + 1))
		if err := backoff.Sleep(ctx, wait); err != nil {
			return finish("error", err)
		}
	}
}

const tracerName = "github.com/sandboxq/sandboxq/gateway/ratelimit"

// nextWait reports how long to wait before asking again: the pause left,
// else 0 with a token taken, else the time until the next token.
func (g *Gate) nextWait(ctx context.Context) (time.Duration, error) {
	ttl, err := g.rdb.PTTL(ctx, schema.RatePauseKey).Result()
	if err != nil {
		return 0, fmt.Errorf("read pause: %w", err)
	}
	if ttl > 0 {
		return ttl, nil
	}
	if g.limit.IsZero() {
		return 0, nil
	}
	res, err := g.limiter.Allow(ctx, schema.RateBucketKey, g.limit)
	if err != nil {
		return 0, fmt.Errorf("take token: %w", err)
	}
	if res.Allowed > 0 {
		return 0, nil
	}
	return max(res.RetryAfter, time.Millisecond), nil
}

// Pause holds the gateway calls of every worker for d. A longer pause
// already in force is kept.
func (g *Gate) Pause(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	// Recorded even if the caller's context has just ended.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if n, err := schema.RatePause.Run(pctx, g.rdb, []string{schema.RatePauseKey}, d.Milliseconds()).Int(); err == nil && n == 1 {
		g.pauses.Inc()
	}
}

// PausedFor reports the pause left, 0 when none.
func (g *Gate) PausedFor(ctx context.Context) (time.Duration, error) {
	ttl, err := g.rdb.PTTL(ctx, schema.RatePauseKey).Result()
	if err != nil {
		return 0, err
	}
	return max(ttl, 0), nil
}
