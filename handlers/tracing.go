package handlers

import (
	"context"
	"errors"
	"strconv"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

const tracerName = "github.com/sandboxq/sandboxq/handlers"

// Tracing makes every task attempt a consumer span of tp (nil: the global
// provider, a no-op unless the program set one). The span's parent is the
// producer span whose W3C context the task carries in its headers
// (tasks.Client writes it), so the attempts of a retried task are siblings
// under one producer span in one trace. Attributes: task type, id, queue,
// namespace, name, attempt and outcome; never the payload, never an error
// message (those may quote a server's output), only the error's class.
//
// Put it first in the chain, so that it sees what Recover made of a panic
// and what the other middleware returned.
func Tracing(tp trace.TracerProvider) asynq.MiddlewareFunc {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	tracer := tp.Tracer(tracerName)
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(t.Headers()))
			ctx, span := tracer.Start(ctx, "process "+t.Type(), trace.WithSpanKind(trace.SpanKindConsumer))
			defer span.End()
			if span.IsRecording() {
				span.SetAttributes(attemptAttributes(ctx, t)...)
			}
			err := next.ProcessTask(ctx, t)
			if span.IsRecording() {
				outcome := Outcome(err)
				span.SetAttributes(attribute.String("sandboxq.outcome", outcome))
				if err != nil && outcome != OutcomeBusy && outcome != OutcomeThrottled {
					span.SetAttributes(attribute.String("error.type", errorClass(err)))
					span.SetStatus(codes.Error, outcome)
				}
			}
			return err
		})
	}
}

func attemptAttributes(ctx context.Context, t *asynq.Task) []attribute.KeyValue {
	id, _ := asynq.GetTaskID(ctx)
	queue, _ := asynq.GetQueueName(ctx)
	retried, _ := asynq.GetRetryCount(ctx)
	attrs := []attribute.KeyValue{
		attribute.String("messaging.system", "asynq"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.destination.name", queue),
		attribute.String("messaging.message.id", id),
		attribute.String("sandboxq.task.type", t.Type()),
		attribute.Int("sandboxq.attempt", retried+1),
	}
	if p, ok := tasks.ProjectOf(t); ok {
		attrs = append(attrs, attribute.String("sandboxq.namespace", p.Namespace), attribute.String("sandboxq.name", p.Name))
	}
	return attrs
}

// errorClass names what went wrong without quoting the error: its text may
// carry a server's output or a path.
func errorClass(err error) string {
	if apiErr, ok := errors.AsType[*gateway.APIError](err); ok {
		return "http_" + strconv.Itoa(apiErr.StatusCode)
	}
	switch {
	case errors.Is(err, errCancelled):
		return "cancelled"
	case errors.Is(err, schema.ErrLost):
		return "lease_lost"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, asynq.SkipRetry):
		return "permanent"
	}
	return "error"
}

// leaseWaitSpan starts the span of a wait for a project lease, under the
// attempt's span and with its provider; it costs nothing when the attempt
// is not traced.
func leaseWaitSpan(ctx context.Context, p tasks.Project) trace.Span {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return parent
	}
	_, span := parent.TracerProvider().Tracer(tracerName).Start(ctx, "project.lease_wait",
		trace.WithAttributes(attribute.String("sandboxq.namespace", p.Namespace), attribute.String("sandboxq.name", p.Name)))
	return span
}

// endLeaseWait ends a lease-wait span with how the wait ended.
func endLeaseWait(span trace.Span, err error) {
	if span.IsRecording() {
		result := "acquired"
		switch {
		case errors.Is(err, ErrProjectBusy):
			result = "busy"
		case err != nil:
			result = "error"
		}
		span.SetAttributes(attribute.String("sandboxq.lease.result", result))
		span.End()
	}
}
