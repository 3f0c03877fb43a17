package gateway

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandboxq/sandboxq/internal/promreg"
)

// MetricRequestDuration is the name of the series Metrics exports.
const MetricRequestDuration = "sandboxq_gateway_request_duration_seconds"

// Metrics are the gateway client's Prometheus series: the duration of
// gateway and daemon HTTP requests by operation and status class. Label
// values are bounded: operations are the client's own names and statuses
// are reduced to their class ("2xx" … "5xx", or "error" for a transport
// error); no label carries a sandbox id or a URL.
//
// Pass it to a Client with WithMetrics, or derive a measured Client from a
// built one with Client.Measured. Its methods are no-ops on a nil *Metrics.
type Metrics struct {
	duration *prometheus.HistogramVec
}

// NewMetrics creates the series and registers them with reg. Registering
// them twice on one registry is an error; with a nil reg nothing is
// registered and the Metrics still count.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    MetricRequestDuration,
		Help:    "Duration of gateway and daemon HTTP requests by operation and status class.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"op", "status"})}
	if err := promreg.Register(reg, "gateway", m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

// Observe records one request; it has WithObserver's signature.
func (m *Metrics) Observe(op string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(op, statusClass(status)).Observe(d.Seconds())
}

// statusClass reduces an HTTP status to "2xx" … "5xx"; 0 (no response) is
// "error".
func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "error"
	}
	return strconv.Itoa(status/100) + "xx"
}

// WithMetrics records every request of the Client, and of the Daemons it
// hands out, in m (besides WithObserver's function). nil disables it.
func WithMetrics(m *Metrics) Option {
	return func(c *Client) error {
		c.t.metrics = m
		return nil
	}
}

// Measured returns a copy of c whose requests, and those of the Daemons it
// hands out, are recorded in m; c itself is unchanged. It lets the code
// that registers the metrics (worker.New) measure a Client built elsewhere.
func (c *Client) Measured(m *Metrics) *Client {
	if c == nil || c.t == nil {
		return c
	}
	cc := *c
	t := *c.t
	t.metrics = m
	cc.t = &t
	return &cc
}
