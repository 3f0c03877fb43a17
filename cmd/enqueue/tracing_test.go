package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
)

// TestEnqueueSendsProducerSpan: with OTEL_EXPORTER_OTLP_ENDPOINT set, the
// enqueue's producer span reaches the collector before the program exits,
// and the task carries its trace context.
func TestEnqueueSendsProducerSpan(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	var received atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" && strings.Contains(string(b), "enqueue command:run") {
			received.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(collector.Close)
	env := map[string]string{"REDIS_URL": db.URL(), "OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL}
	var stdout, stderr testutil.SyncBuffer
	code := run(t.Context(), []string{"run", "--name", "traced", "--", "true"}, func(k string) string { return env[k] }, strings.NewReader(""), &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if received.Load() == 0 {
		t.Fatal("the collector received no producer span")
	}
	info, _ := onlyPending(t, db, tasks.QueueDefault)
	if !strings.HasPrefix(info.Headers["traceparent"], "00-") {
		t.Fatalf("task headers = %v, want a traceparent", info.Headers)
	}
}
