package tracing

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

func lookup(m map[string]string) Lookup {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestEnabled(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_SERVICE_NAME": "w"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, false},
	}
	for _, tc := range cases {
		got, err := Enabled(lookup(tc.env))
		if err != nil || got != tc.want {
			t.Errorf("Enabled(%v) = %v, %v; want %v", tc.env, got, err, tc.want)
		}
	}
	if p, err := Setup(t.Context(), lookup(map[string]string{}), "svc"); p != nil || err != nil {
		t.Fatalf("Setup with nothing set = %v, %v; want nil, nil (off)", p, err)
	}
}

// TestSetupExportsToEndpoint: spans reach the collector named by
// OTEL_EXPORTER_OTLP_ENDPOINT, at /v1/traces, as OTLP protobuf.
func TestSetupExportsToEndpoint(t *testing.T) {
	t.Parallel()
	var posts atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" && r.Header.Get("Content-Type") == "application/x-protobuf" && len(b) > 0 {
			posts.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(collector.Close)
	p, err := Setup(t.Context(), lookup(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL, "OTEL_SERVICE_NAME": "test"}), "svc")
	if err != nil || p == nil {
		t.Fatalf("Setup = %v, %v", p, err)
	}
	_, span := p.Tracer("t").Start(context.Background(), "one")
	span.End()
	if err := p.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if posts.Load() == 0 {
		t.Fatal("the collector received no spans")
	}
}

func TestSamplerAndEndpointErrors(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{
		{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
		{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "nope"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
	} {
		if p, err := Setup(t.Context(), lookup(env), "svc"); err == nil {
			_ = p.Shutdown(t.Context())
			t.Errorf("Setup(%v) succeeded, want an error", env)
		}
	}
	if got := redactEndpoint("https://user:pw@c:4318/v1/traces?k=v"); got != "https://c:4318/v1/traces" {
		t.Errorf("redactEndpoint = %q", got)
	}
}
