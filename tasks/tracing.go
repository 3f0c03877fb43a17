package tasks

import (
	"context"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

const tracerName = "github.com/sandboxq/sandboxq/tasks"

// WithTracerProvider sets where the producer spans of Enqueue go (default:
// the global provider, a no-op unless the program set one).
func WithTracerProvider(tp trace.TracerProvider) ClientOption {
	return func(c *Client) {
		if tp != nil {
			c.tracer = tp.Tracer(tracerName)
		}
	}
}

func defaultTracer() trace.Tracer { return otel.GetTracerProvider().Tracer(tracerName) }

// startProducer starts the producer span of one enqueue, a child of any
// span in ctx (an API request, the caller's own).
func (c *Client) startProducer(ctx context.Context, p Payload) (context.Context, trace.Span) {
	ctx, span := c.tracer.Start(ctx, "enqueue "+p.TypeName(), trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		attrs := []attribute.KeyValue{
			attribute.String("messaging.system", "asynq"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("sandboxq.task.type", p.TypeName()),
		}
		if proj, ok := ProjectOfPayload(p); ok {
			proj = proj.Normalize()
			attrs = append(attrs, attribute.String("sandboxq.namespace", proj.Namespace), attribute.String("sandboxq.name", proj.Name))
		}
		span.SetAttributes(attrs...)
	}
	return ctx, span
}

// endProducer records where the task went, or that enqueueing failed (the
// error's text is not recorded: a validation error may quote the payload).
func endProducer(span trace.Span, e *Enqueued, err error) {
	if span.IsRecording() {
		if err != nil {
			span.SetStatus(codes.Error, "enqueue failed")
		} else if e != nil {
			span.SetAttributes(
				attribute.String("messaging.message.id", e.ID),
				attribute.String("messaging.destination.name", e.Queue),
				attribute.Bool("sandboxq.duplicate", e.Duplicate),
			)
		}
	}
	span.End()
}

// withTraceContext returns task with the W3C trace context of ctx added to
// its headers, so the worker's attempt spans join the producer's trace.
// Without a span in ctx the task is returned unchanged.
func withTraceContext(ctx context.Context, task *asynq.Task, p Payload, opts []asynq.Option) *asynq.Task {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return task
	}
	headers := make(map[string]string, len(task.Headers())+2)
	for k, v := range task.Headers() {
		headers[k] = v
	}
	propagation.TraceContext{}.Inject(ctx, propagation.MapCarrier(headers))
	var all []asynq.Option
	if o, ok := p.(optioner); ok {
		all = o.Options()
	}
	return asynq.NewTaskWithHeaders(task.Type(), task.Payload(), headers, append(all, opts...)...)
}
