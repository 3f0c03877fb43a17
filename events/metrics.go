package events

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandboxq/sandboxq/internal/promreg"
	"github.com/sandboxq/sandboxq/tasks"
)

// Names of the series Metrics exports.
const (
	MetricWatchersHeld  = "sandboxq_watchers_held"
	MetricEventsEmitted = "sandboxq_events_emitted_total"
	MetricLeasesLost    = "sandboxq_watcher_leases_lost_total"
)

// Metrics are the watchers' Prometheus series: sandboxes watched by this
// process, events appended by type, and watcher leases lost. Wire
// EventEmitted to Config.OnEvent, LeaseLost to Config.OnLeaseLost and
// SetWatchersFunc to Manager.Held (worker.New does). Event types come from
// package tasks, so the label is bounded. The methods are safe for
// concurrent use and no-ops on a nil *Metrics.
type Metrics struct {
	eventsEmitted *prometheus.CounterVec
	leasesLost    prometheus.Counter
	watchers      *watchersGauge
}

// NewMetrics creates the series and registers them with reg. Registering
// them twice on one registry is an error; with a nil reg nothing is
// registered and the Metrics still count.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
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
	if err := promreg.Register(reg, "events", m.eventsEmitted, m.leasesLost, m.watchers); err != nil {
		return nil, err
	}
	return m, nil
}

// EventEmitted counts one appended event.
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

// LeaseLost counts one lost watcher lease.
func (m *Metrics) LeaseLost() {
	if m == nil {
		return
	}
	m.leasesLost.Inc()
}

// SetWatchersFunc sets the function the watchers-held gauge reads at each
// scrape (the Manager's Held). nil resets the gauge to 0. fn must be cheap
// and safe for concurrent use.
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

// watchersGauge reads the watcher count at scrape time; unlike a GaugeFunc
// its function can be set after registration, once the Manager exists.
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
