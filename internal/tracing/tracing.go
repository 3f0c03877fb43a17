// Package tracing builds the OpenTelemetry tracer provider of sandboxq's
// binaries from the standard OTEL_* variables.
//
// Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, or OTEL_TRACES_EXPORTER is
// "otlp" (then the exporter's default, http://localhost:4318, is used). It
// is off otherwise, and always when OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none: Setup then returns a nil provider and the
// binaries leave OpenTelemetry's global no-op provider in place, so spans
// cost next to nothing. Spans go out over OTLP/HTTP (protobuf) in batches;
// the exporter itself also reads OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT,
// _COMPRESSION and the certificate variables. OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG choose the sampler (default parentbased_always_on),
// OTEL_SERVICE_NAME the service name, OTEL_RESOURCE_ATTRIBUTES further
// resource attributes.
//
// Setup reads the variables through a lookup function so that the binaries'
// tests can pass their own environment.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// Lookup reads one variable, as os.LookupEnv does.
type Lookup func(name string) (string, bool)

// Provider is a running tracer provider; Shutdown flushes and stops it.
type Provider struct {
	trace.TracerProvider
	Shutdown func(context.Context) error
	// Endpoint says where spans go, for the start-up log line (no
	// credentials: headers are never part of it).
	Endpoint string
}

// Enabled reports whether the variables turn tracing on.
func Enabled(env Lookup) (bool, error) {
	get := func(k string) string { v, _ := env(k); return strings.TrimSpace(v) }
	if strings.EqualFold(get("OTEL_SDK_DISABLED"), "true") {
		return false, nil
	}
	switch exp := strings.ToLower(get("OTEL_TRACES_EXPORTER")); exp {
	case "none":
		return false, nil
	case "otlp":
		return true, nil
	case "":
	default:
		return false, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: only otlp (OTLP over HTTP) and none are supported", exp)
	}
	return get("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "", nil
}

// Setup returns the provider the variables describe, or nil when tracing
// is off. defaultService names the service when OTEL_SERVICE_NAME is unset.
func Setup(ctx context.Context, env Lookup, defaultService string) (*Provider, error) {
	st, err := parse(env)
	if err != nil || st == nil {
		return nil, err
	}
	exp, err := otlptracehttp.New(ctx, st.opts...)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	service := st.service
	if service == "" {
		service = defaultService
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(service)))
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(st.sampler), sdktrace.WithResource(res))
	return &Provider{TracerProvider: tp, Shutdown: tp.Shutdown, Endpoint: redactEndpoint(st.endpoint)}, nil
}

// Check reports the errors Setup would, without building anything or
// connecting anywhere, so a program can refuse bad variables before it
// dials its other services. on says whether tracing would be on.
func Check(env Lookup) (on bool, err error) {
	st, err := parse(env)
	return st != nil, err
}

// settings are the parsed variables of an enabled tracer.
type settings struct {
	sampler  sdktrace.Sampler
	opts     []otlptracehttp.Option
	endpoint string
	service  string
}

// parse reads and checks the variables; nil settings: tracing is off.
func parse(env Lookup) (*settings, error) {
	on, err := Enabled(env)
	if err != nil || !on {
		return nil, err
	}
	get := func(k string) string { v, _ := env(k); return strings.TrimSpace(v) }
	if p := get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"); p != "" && p != "http/protobuf" {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=%q: only http/protobuf is supported", p)
	}
	if p := get("OTEL_EXPORTER_OTLP_PROTOCOL"); p != "" && p != "http/protobuf" {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: only http/protobuf is supported", p)
	}
	sampler, err := samplerFrom(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG"))
	if err != nil {
		return nil, err
	}
	st := &settings{sampler: sampler, endpoint: "http://localhost:4318/v1/traces", service: get("OTEL_SERVICE_NAME")}
	if u := get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); u != "" {
		st.endpoint = u
		st.opts = append(st.opts, otlptracehttp.WithEndpointURL(u))
	} else if u := get("OTEL_EXPORTER_OTLP_ENDPOINT"); u != "" {
		st.endpoint = strings.TrimSuffix(u, "/") + "/v1/traces"
		st.opts = append(st.opts, otlptracehttp.WithEndpointURL(st.endpoint))
	}
	if err := checkEndpoint(st.endpoint); err != nil {
		return nil, err
	}
	return st, nil
}

// samplerFrom reads OTEL_TRACES_SAMPLER and its argument.
func samplerFrom(name, arg string) (sdktrace.Sampler, error) {
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio in [0, 1]", arg)
		}
		return f, nil
	}
	switch strings.ToLower(name) {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio":
		r, err := ratio()
		return sdktrace.TraceIDRatioBased(r), err
	case "parentbased_traceidratio":
		r, err := ratio()
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), err
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio or their parentbased_ forms", name)
}

func checkEndpoint(u string) error {
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return errors.New("OTLP endpoint: want an http:// or https:// URL")
	}
	return nil
}

// redactEndpoint keeps scheme, host and path of the endpoint.
func redactEndpoint(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	if scheme, rest, ok := strings.Cut(u, "://"); ok {
		if at := strings.LastIndex(strings.SplitN(rest, "/", 2)[0], "@"); at >= 0 {
			rest = rest[at+1:]
		}
		u = scheme + "://" + rest
	}
	return u
}
