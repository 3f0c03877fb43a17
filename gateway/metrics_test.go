package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestIsStaleSandbox: 401 and 404 say the sandbox record is stale, 403
// and everything else do not.
func TestIsStaleSandbox(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]bool{401: true, 404: true, 403: false, 400: false, 409: false, 500: false, 503: false} {
		err := fmt.Errorf("call: %w", &APIError{Op: "daemon.get_server", StatusCode: status})
		if got := IsStaleSandbox(err); got != want {
			t.Errorf("IsStaleSandbox(%d) = %v, want %v", status, got, want)
		}
	}
	if IsStaleSandbox(errors.New("dial tcp: connection refused")) || IsStaleSandbox(nil) {
		t.Error("a transport error or nil counted as a stale sandbox")
	}
}

// TestMetricsMeasureRequests: WithMetrics and Measured record each request
// by operation and status class; Measured leaves the original client
// unmeasured; a second NewMetrics on one registry fails.
func TestMetricsMeasureRequests(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Error("NewMetrics registered twice on one registry")
	}
	c, mux := setup(t)
	mux.HandleFunc("/v1/sandbox/missing", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
	})
	if _, err := c.Get(t.Context(), "missing"); err == nil {
		t.Fatal("Get of a missing sandbox succeeded")
	}
	if n := samples(t, reg, "get", "4xx"); n != 0 {
		t.Fatalf("an unmeasured client recorded %d requests", n)
	}
	if _, err := c.Measured(m).Get(t.Context(), "missing"); err == nil {
		t.Fatal("Get of a missing sandbox succeeded")
	}
	if n := samples(t, reg, "get", "4xx"); n != 1 {
		t.Fatalf("%d get/4xx requests recorded after one measured request, want 1", n)
	}
	if _, err := c.Get(t.Context(), "missing"); err == nil {
		t.Fatal("Get of a missing sandbox succeeded")
	}
	if n := samples(t, reg, "get", "4xx"); n != 1 {
		t.Errorf("the original client was measured after Measured: %d requests", n)
	}
}

// samples is the number of requests reg recorded for op and class.
func samples(t *testing.T, reg *prometheus.Registry, op, class string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() != MetricRequestDuration {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["op"] == op && labels["status"] == class {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}
