package main

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/sandboxq/sandboxq/internal/redistest"
)

// TestObservabilityStartupErrors: a bad rate limit or tracing variable
// stops the worker with an error naming the variable.
func TestObservabilityStartupErrors(t *testing.T) {
	t.Parallel()
	redisURL := redistest.New(t).URL()
	cases := map[string]struct {
		env  map[string]string
		want string
	}{
		"rate without unit": {map[string]string{"SANDBOXQ_GATEWAY_RATE": "50"}, "SANDBOXQ_GATEWAY_RATE"},
		"rate zero burst":   {map[string]string{"SANDBOXQ_GATEWAY_RATE": "50/s,burst=0"}, "burst"},
		"rate wait zero":    {map[string]string{"SANDBOXQ_GATEWAY_RATE": "5/s", "SANDBOXQ_GATEWAY_RATE_WAIT": "0s"}, "SANDBOXQ_GATEWAY_RATE_WAIT"},
		"sampler":           {map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"},
		"exporter":          {map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"},
		"grpc":              {map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"COMPUTESDK_API_KEY": "k", "REDIS_URL": redisURL, "DASHBOARD_ADDR": ""}
			for k, v := range tc.env {
				env[k] = v
			}
			var stderr bytes.Buffer
			err := run(t.Context(), nil, envconfig.MapLookuper(env), io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
