package dashboard

import (
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// QueueCollector exports asynq's queue state at scrape time, read through
// asynq.Inspector. The series use the names of asynq's own x/metrics
// exporter (a separate module that sandboxq does not depend on), so
// Asynqmon's Prometheus charts (Config.PrometheusAddr) and existing asynq
// dashboards work with them:
//
//	asynq_tasks_enqueued_total{queue,state}   gauge: tasks per state
//	asynq_queue_size{queue}                   gauge: tasks in the queue
//	asynq_queue_latency_seconds{queue}        gauge: age of the oldest pending task
//	asynq_queue_memory_usage_approx_bytes{queue}
//	asynq_tasks_processed_total{queue}        counter: tasks processed (done or failed)
//	asynq_tasks_failed_total{queue}           counter: tasks failed
//	asynq_queue_paused_total{queue}           gauge: 1 if the queue is paused
//
// A queue whose state cannot be read is reported as a collection error for
// that queue; the other series are still served.
type QueueCollector struct {
	insp *asynq.Inspector

	enqueued, size, latency, memory, processed, failed, paused *prometheus.Desc
}

// NewQueueCollector returns a collector over rdb (which it does not close).
func NewQueueCollector(rdb redis.UniversalClient) *QueueCollector {
	q := []string{"queue"}
	return &QueueCollector{
		insp:      asynq.NewInspectorFromRedisClient(rdb),
		enqueued:  prometheus.NewDesc("asynq_tasks_enqueued_total", "Number of tasks in the queue by state.", []string{"queue", "state"}, nil),
		size:      prometheus.NewDesc("asynq_queue_size", "Number of tasks in the queue.", q, nil),
		latency:   prometheus.NewDesc("asynq_queue_latency_seconds", "Time the oldest pending task has waited.", q, nil),
		memory:    prometheus.NewDesc("asynq_queue_memory_usage_approx_bytes", "Approximate Redis memory used by the queue.", q, nil),
		processed: prometheus.NewDesc("asynq_tasks_processed_total", "Tasks processed (succeeded or failed) from the queue.", q, nil),
		failed:    prometheus.NewDesc("asynq_tasks_failed_total", "Task attempts that failed in the queue.", q, nil),
		paused:    prometheus.NewDesc("asynq_queue_paused_total", "1 if the queue is paused, else 0.", q, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.enqueued, c.size, c.latency, c.memory, c.processed, c.failed, c.paused} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	queues, err := c.insp.Queues()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.size, fmt.Errorf("list asynq queues: %w", err))
		return
	}
	for _, q := range queues {
		info, err := c.insp.GetQueueInfo(q)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.size, fmt.Errorf("read asynq queue %q: %w", q, err))
			continue
		}
		gauge := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{q}, labels...)...)
		}
		for state, n := range map[string]int{
			"pending": info.Pending, "active": info.Active, "scheduled": info.Scheduled,
			"retry": info.Retry, "archived": info.Archived, "completed": info.Completed,
			"aggregating": info.Aggregating,
		} {
			gauge(c.enqueued, float64(n), state)
		}
		gauge(c.size, float64(info.Size))
		gauge(c.latency, info.Latency.Seconds())
		gauge(c.memory, float64(info.MemoryUsage))
		paused := 0.0
		if info.Paused {
			paused = 1
		}
		gauge(c.paused, paused)
		ch <- prometheus.MustNewConstMetric(c.processed, prometheus.CounterValue, float64(info.ProcessedTotal), q)
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(info.FailedTotal), q)
	}
}
