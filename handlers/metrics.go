package handlers

import (
	"context"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandboxq/sandboxq/internal/promreg"
)

// Names of the series Metrics exports.
const (
	MetricTaskDuration   = "sandboxq_task_duration_seconds"
	MetricTasksProcessed = "sandboxq_tasks_processed_total"
	MetricProjectBusy    = "sandboxq_project_busy_total"
)

// Metrics are the Prometheus series of task attempts: duration by task
// type, attempts by type and outcome, and project-busy reschedules. The
// gateway's series are gateway.Metrics, the watchers' events.Metrics.
//
// Label values are bounded: task types come from the ServeMux and outcomes
// from Outcome. No label ever carries a project, a sandbox id or an error
// message.
//
// The middleware is safe for concurrent use and a no-op on a nil *Metrics.
type Metrics struct {
	taskDuration   *prometheus.HistogramVec
	tasksProcessed *prometheus.CounterVec
	projectBusy    *prometheus.CounterVec
}

// NewMetrics creates the series and registers them with reg. Registering
// them twice on one registry is an error; with a nil reg nothing is
// registered and the Metrics still count, which is useful in tests.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
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
	}
	if err := promreg.Register(reg, "handlers", m.taskDuration, m.tasksProcessed, m.projectBusy); err != nil {
		return nil, err
	}
	return m, nil
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
