package handlers

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandboxq/sandboxq/tasks"
)

// Names of the series Metrics exports.
const (
	MetricTaskDuration    = "sandboxq_task_duration_seconds"
	MetricTasksProcessed  = "sandboxq_tasks_processed_total"
	MetricProjectBusy     = "sandboxq_project_busy_total"
	MetricGatewayDuration = "sandboxq_gateway_request_duration_seconds"
	MetricWatchersHeld    = "sandboxq_watchers_held"
	MetricEventsEmitted   = "sandboxq_events_emitted_total"
	MetricLeasesLost      = "sandboxq_watcher_leases_lost_total"
)

// Metrics are the Prometheus series of a worker process: task attempts by
// type and outcome, project-busy reschedules, gateway requests by operation
// and status class, watchers held, events emitted and watcher leases lost.
//
// Label values are bounded: task types come from the ServeMux, gateway
// operations from the gateway client, event types from package tasks, and
// HTTP statuses are reduced to their class ("2xx" … "5xx", or "error" for a
// transport error). No label ever carries a project, a sandbox id or an
// error message.
//
// The methods are safe for concurrent use and are no-ops on a nil *Metrics,
// so callers may wire them unconditionally.
type Metrics struct {
	taskDuration    *prometheus.HistogramVec
	tasksProcessed  *prometheus.CounterVec
	projectBusy     *prometheus.CounterVec
	gatewayDuration *prometheus.HistogramVec
	eventsEmitted   *prometheus.CounterVec
	leasesLost      prometheus.Counter
	watchers        *watchersGauge
}

// NewMetrics creates the series and registers them with reg. A series that
// reg already has (a second NewMetrics on the same registry) is shared, not
// duplicated. With a nil reg nothing is registered and the Metrics still
// count, which is useful in tests.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		taskDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricTaskDuration,
			Help:    "Duration of task attempts by task type.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"task_type"}),
		tasksProcessed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricTasksProcessed,
			Help: "Task attempts by task type and outcome (ok, retry, busy, failed, cancelled).",
		}, []string{"task_type", "outcome"}),
		projectBusy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricProjectBusy,
			Help: "Task attempts rescheduled because another task held the project's lease.",
		}, []string{"task_type"}),
		gatewayDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricGatewayDuration,
			Help:    "Duration of gateway and daemon HTTP requests by operation and status class.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"op", "status"}),
		eventsEmitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricEventsEmitted,
			Help: "Normalized sandbox events appended to the event streams by this process, by event type.",
		}, []string{"type"}),
		leasesLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricLeasesLost,
			Help: "Watcher leases this process lost to expiry.",
		}),
		watchers: &watchersGauge{desc: prometheus.NewDesc(MetricWatchersHeld, "Sandboxes watched by this process.", nil, nil)},
	}
	if reg != nil {
		m.taskDuration = registerCollector(reg, m.taskDuration)
		m.tasksProcessed = registerCollector(reg, m.tasksProcessed)
		m.projectBusy = registerCollector(reg, m.projectBusy)
		m.gatewayDuration = registerCollector(reg, m.gatewayDuration)
		m.eventsEmitted = registerCollector(reg, m.eventsEmitted)
		m.leasesLost = registerCollector(reg, m.leasesLost)
		m.watchers = registerCollector(reg, m.watchers)
	}
	return m
}

// registerCollector registers c, or returns the collector reg already has under the
// same descriptors. Other registration errors (a name clash with different
// labels) leave c unregistered but usable.
func registerCollector[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	return c
}

// Middleware records every task attempt's duration and outcome (see
// Outcome). Put it inside Recover: a panic passes through it (counted as
// OutcomeRetry, which is what Recover turns it into) and is re-raised.
func (m *Metrics) Middleware() asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		if m == nil {
			return next
		}
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) (err error) {
			start := time.Now()
			panicked := true
			defer func() {
				outcome := Outcome(err)
				if panicked {
					outcome = OutcomeRetry
				}
				m.taskDuration.WithLabelValues(t.Type()).Observe(time.Since(start).Seconds())
				m.tasksProcessed.WithLabelValues(t.Type(), outcome).Inc()
				if outcome == OutcomeBusy {
					m.projectBusy.WithLabelValues(t.Type()).Inc()
				}
			}()
			err = next.ProcessTask(ctx, t)
			panicked = false
			return err
		})
	}
}

// GatewayObserver returns the function to pass to gateway.WithObserver.
func (m *Metrics) GatewayObserver() func(op string, status int, d time.Duration) {
	return func(op string, status int, d time.Duration) {
		if m == nil {
			return
		}
		m.gatewayDuration.WithLabelValues(op, statusClass(status)).Observe(d.Seconds())
	}
}

// statusClass reduces an HTTP status to "2xx" … "5xx"; 0 (no response) is
// "error".
func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "error"
	}
	return strconv.Itoa(status/100) + "xx"
}

// EventEmitted counts one appended event; wire it to the events Manager's
// OnEvent hook.
func (m *Metrics) EventEmitted(e tasks.Event) {
	if m == nil {
		return
	}
	typ := e.Type
	if typ == "" {
		typ = "unknown"
	}
	m.eventsEmitted.WithLabelValues(typ).Inc()
}

// LeaseLost counts one lost watcher lease; wire it to the events Manager's
// OnLeaseLost hook.
func (m *Metrics) LeaseLost() {
	if m == nil {
		return
	}
	m.leasesLost.Inc()
}

// SetWatchersFunc sets the function the watchers-held gauge reads at each
// scrape (the events Manager's Held). nil resets the gauge to 0. fn must be
// cheap and safe for concurrent use.
func (m *Metrics) SetWatchersFunc(fn func() int) {
	if m == nil {
		return
	}
	if fn == nil {
		m.watchers.fn.Store(nil)
		return
	}
	m.watchers.fn.Store(&fn)
}

// watchersGauge reads the watcher count at scrape time. It is a collector of
// its own (not a GaugeFunc) so that Metrics sharing a registry share the
// function too.
type watchersGauge struct {
	desc *prometheus.Desc
	fn   atomic.Pointer[func() int]
}

func (g *watchersGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *watchersGauge) Collect(ch chan<- prometheus.Metric) {
	v := 0
	if fn := g.fn.Load(); fn != nil {
		v = (*fn)()
	}
	ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, float64(v))
}
