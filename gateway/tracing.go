package gateway

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracingConfig is what WithTracing set.
type tracingConfig struct {
	tp trace.TracerProvider
}

// WithTracing makes every gateway and daemon HTTP call a client span of
// tp, named after the operation ("gateway.find_or_create",
// "daemon.start_server") and carrying the W3C trace context to the server.
// Only calls made under a span get one (a task attempt, an API request):
// the watchers' polls stay untraced. Spans never see a query string, the
// URL's userinfo or any header, so no token or key reaches them. The
// daemon WebSocket dial is not traced. nil disables tracing.
func WithTracing(tp trace.TracerProvider) Option {
	return func(c *Client) error {
		if tp == nil {
			c.tracing = nil
			return nil
		}
		c.tracing = &tracingConfig{tp: tp}
		return nil
	}
}

// wrap returns hc with traced transport, or hc itself when tracing is off.
func (tc *tracingConfig) wrap(hc *http.Client) *http.Client {
	if tc == nil {
		return hc
	}
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	traced := otelhttp.NewTransport(restoreURL{next: base},
		otelhttp.WithTracerProvider(tc.tp),
		otelhttp.WithPropagators(propagation.TraceContext{}),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return spanName(opOf(r.Context())) }),
		otelhttp.WithFilter(func(r *http.Request) bool { return trace.SpanContextFromContext(r.Context()).IsValid() }),
	)
	cp := *hc
	cp.Transport = stripURL{next: traced}
	return &cp
}

// spanName names the span of an operation.
func spanName(op string) string {
	switch {
	case op == "":
		return "gateway.request"
	case strings.HasPrefix(op, "daemon."):
		return op
	}
	return "gateway." + op
}

type opKey struct{}

// withOp records the operation name of a request for its span.
func withOp(ctx context.Context, op string) context.Context {
	return context.WithValue(ctx, opKey{}, op)
}

func opOf(ctx context.Context) string {
	op, _ := ctx.Value(opKey{}).(string)
	return op
}

type origURLKey struct{}

// stripURL hands the request on with a URL that has neither query nor
// userinfo, keeping the original in the context for restoreURL. The span
// layer between them records only what it sees.
type stripURL struct{ next http.RoundTripper }

func (s stripURL) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL == nil || (r.URL.RawQuery == "" && !r.URL.ForceQuery && r.URL.User == nil && r.URL.Fragment == "") {
		return s.next.RoundTrip(r)
	}
	clean := *r.URL
	clean.RawQuery, clean.ForceQuery, clean.User, clean.Fragment, clean.RawFragment = "", false, nil, "", ""
	r2 := r.WithContext(context.WithValue(r.Context(), origURLKey{}, r.URL))
	r2.URL = &clean
	return s.next.RoundTrip(r2)
}

// restoreURL puts the original URL back before the request is sent and
// names the operation on the span.
type restoreURL struct{ next http.RoundTripper }

func (s restoreURL) RoundTrip(r *http.Request) (*http.Response, error) {
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		if op := opOf(r.Context()); op != "" {
			span.SetAttributes(attribute.String("sandboxq.op", op))
		}
	}
	if orig, ok := r.Context().Value(origURLKey{}).(*url.URL); ok {
		r2 := *r
		r2.URL = orig
		r = &r2
	}
	return s.next.RoundTrip(r)
}
