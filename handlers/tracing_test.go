package handlers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sandboxq/sandboxq/gateway"
)

// TestTracingOutcomes: the attempt span records the outcome and an error
// class, never the error's text; busy and throttled attempts are not
// errors; a task without a traceparent header starts a trace of its own.
func TestTracingOutcomes(t *testing.T) {
	t.Parallel()
	const secretText = "server said: PASSWORD=hunter2"
	cases := []struct {
		err        error
		outcome    string
		class      string
		statusCode codes.Code
	}{
		{nil, OutcomeOK, "", codes.Unset},
		{fmt.Errorf("%s: %w", secretText, ErrProjectBusy), OutcomeBusy, "", codes.Unset},
		{&gateway.ThrottledError{Op: "find", RetryAfter: time.Second}, OutcomeThrottled, "", codes.Unset},
		{Permanentf("%s", secretText), OutcomeFailed, "permanent", codes.Error},
		{errors.New(secretText), OutcomeRetry, "error", codes.Error},
		{ErrCancelled, OutcomeCancelled, "cancelled", codes.Error},
	}
	for _, tc := range cases {
		exp := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		h := Tracing(tp)(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return tc.err }))
		if err := h.ProcessTask(context.Background(), asynq.NewTask("command:run", []byte(`{"name":"p","command":"x"}`))); !errors.Is(err, tc.err) {
			t.Fatalf("the middleware changed the error: %v", err)
		}
		spans := exp.GetSpans()
		if len(spans) != 1 || spans[0].SpanKind != trace.SpanKindConsumer || spans[0].Parent.IsValid() {
			t.Fatalf("%v: want one root consumer span, got %+v", tc.err, spans)
		}
		s := spans[0]
		got := map[string]string{}
		for _, kv := range s.Attributes {
			got[string(kv.Key)] = kv.Value.Emit()
			if v := kv.Value.Emit(); strings.Contains(v, "hunter2") {
				t.Errorf("attribute %s holds the error text", kv.Key)
			}
		}
		if got["sandboxq.outcome"] != tc.outcome || got["error.type"] != tc.class || s.Status.Code != tc.statusCode {
			t.Errorf("%v: outcome %q, error.type %q, status %v; want %q, %q, %v", tc.err, got["sandboxq.outcome"], got["error.type"], s.Status.Code, tc.outcome, tc.class, tc.statusCode)
		}
		if got["sandboxq.name"] != "p" || got["sandboxq.task.type"] != "command:run" {
			t.Errorf("attributes = %v", got)
		}
		if strings.Contains(s.Status.Description, "hunter2") {
			t.Errorf("status description holds the error text")
		}
	}
}
