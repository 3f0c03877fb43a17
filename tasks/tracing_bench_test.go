package tasks

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// BenchmarkProducerSpan measures what tracing adds to one enqueue, Redis
// left out: "baseline" builds the task only; "off" adds the producer span
// and the header step with the global no-op provider (no OTEL_* variable
// set); "on" uses an SDK provider that samples every span (exported to a
// no-op exporter).
func BenchmarkProducerSpan(b *testing.B) {
	p := CommandRun{Project: Project{Name: "bench"}, Command: "true"}
	on := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = on.Shutdown(context.Background()) })
	run := func(b *testing.B, c *Client) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if c == nil {
				if _, err := New(p); err != nil {
					b.Fatal(err)
				}
				continue
			}
			sctx, span := c.startProducer(ctx, p)
			task, err := New(p)
			if err != nil {
				b.Fatal(err)
			}
			_ = withTraceContext(sctx, task, p, nil)
			endProducer(span, &Enqueued{ID: "id", Queue: QueueDefault}, nil)
		}
	}
	b.Run("baseline", func(b *testing.B) { run(b, nil) })
	b.Run("off", func(b *testing.B) { run(b, &Client{tracer: defaultTracer()}) })
	b.Run("on", func(b *testing.B) { run(b, &Client{tracer: on.Tracer(tracerName)}) })
}
