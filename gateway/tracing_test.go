package gateway

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestTracingOnlyUnderASpan: a call under a span gets a client span named
// after its operation and sends the W3C context; a call without one (a
// watcher's poll) gets no span and sends none.
func TestTracingOnlyUnderASpan(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	c, mux := setup(t, WithTracing(tp))
	var mu sync.Mutex
	var parents []string
	mux.HandleFunc("POST /v1/sandbox/find", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		parents = append(parents, r.Header.Get("traceparent"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"success":true,"data":{"sandboxId":"s1","url":"http://127.0.0.1:1/s/s1","token":"tok","provider":"local"}}`))
	})
	if _, err := c.Find(t.Context(), "ns", "n"); err != nil {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans for a call outside any span, want 0", n)
	}
	ctx, parent := tp.Tracer("t").Start(t.Context(), "attempt")
	if _, err := c.Find(ctx, "ns", "n"); err != nil {
		t.Fatal(err)
	}
	parent.End()
	var call *tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.SpanKind == trace.SpanKindClient {
			call = &s
		}
	}
	if call == nil || call.Name != "gateway.find" || call.Parent.SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("client span = %+v, want gateway.find under the attempt", call)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(parents) != 2 || parents[0] != "" || parents[1] == "" {
		t.Fatalf("traceparent headers sent = %q, want none then one", parents)
	}
}

type refusingGate struct{ paused time.Duration }

func (g *refusingGate) Wait(_ context.Context, op string) error {
	return &ThrottledError{Op: op, RetryAfter: time.Second}
}
func (g *refusingGate) Pause(_ context.Context, d time.Duration) { g.paused = d }

// TestGateRefusalSendsNothing: a call the gate refuses never reaches the
// gateway and fails with ErrThrottled.
func TestGateRefusalSendsNothing(t *testing.T) {
	t.Parallel()
	c, mux := setup(t, WithGate(&refusingGate{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { t.Errorf("request %s reached the gateway", r.URL.Path) })
	if _, err := c.Find(t.Context(), "ns", "n"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("Find = %v, want ErrThrottled", err)
	}
}
