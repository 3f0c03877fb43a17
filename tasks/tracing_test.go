package tasks_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sandboxq/sandboxq/tasks"
)

// TestEnqueueWritesTraceContext: every enqueue is a producer span, and its
// W3C context travels in the task's headers, also through the dedup path
// and beside the compression header of a large payload; options (queue,
// retries, task id) survive.
func TestEnqueueWritesTraceContext(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	b := setup(t, tasks.WithTracerProvider(tp))
	ctx := t.Context()

	big := strings.Repeat("x", 100<<10)
	cases := []tasks.Payload{
		tasks.CommandRun{Project: tasks.Project{Name: "tr"}, Command: "true"},
		tasks.SandboxEnsure{Project: tasks.Project{Name: "tr"}},
		tasks.FilesWrite{Project: tasks.Project{Name: "tr"}, Files: []tasks.File{{Path: "big.txt", Content: big}}},
	}
	for _, p := range cases {
		e, err := b.client.Enqueue(ctx, p, asynq.MaxRetry(2))
		if err != nil {
			t.Fatalf("%s: %v", p.TypeName(), err)
		}
		info, err := b.insp.GetTaskInfo(e.Queue, e.ID)
		if err != nil {
			t.Fatal(err)
		}
		var producer *tracetest.SpanStub
		for _, s := range exp.GetSpans() {
			if s.SpanKind == trace.SpanKindProducer && s.Name == "enqueue "+p.TypeName() {
				producer = &s
			}
		}
		if producer == nil {
			t.Fatalf("%s: no producer span", p.TypeName())
		}
		want := "00-" + producer.SpanContext.TraceID().String() + "-" + producer.SpanContext.SpanID().String() + "-01"
		if got := info.Headers["traceparent"]; got != want {
			t.Fatalf("%s: traceparent header %q, want %q", p.TypeName(), got, want)
		}
		if info.MaxRetry != 2 || info.Queue != e.Queue {
			t.Fatalf("%s: options lost: max retry %d, queue %s", p.TypeName(), info.MaxRetry, info.Queue)
		}
		if _, ok := p.(tasks.FilesWrite); ok && info.Headers[tasks.HeaderContentEncoding] != tasks.EncodingGzip {
			t.Fatalf("compression header lost: %v", info.Headers)
		}
	}
}

// TestEnqueueWithoutTracingAddsNoHeader: with no provider (the global
// no-op) a task carries no trace header.
func TestEnqueueWithoutTracingAddsNoHeader(t *testing.T) {
	t.Parallel()
	b := setup(t)
	e, err := b.client.Enqueue(t.Context(), tasks.CommandRun{Project: tasks.Project{Name: "plain"}, Command: "true"}, asynq.ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	info, err := b.insp.GetTaskInfo(e.Queue, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := info.Headers["traceparent"]; ok {
		t.Fatalf("headers = %v, want no traceparent", info.Headers)
	}
}
