package api

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

// traced makes every request a server span of tp that continues an
// incoming W3C traceparent, so a backend's own trace runs on through the
// enqueue into the worker. The span is named after the route
// ("POST /api/v1/tasks/{type}"); it never sees the query string or a header
// (the bearer token), and the request body is not read by it. nil tp: next
// unchanged.
func (a *API) traced(next http.Handler, tp trace.TracerProvider) http.Handler {
	if tp == nil {
		return next
	}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if orig, ok := r.Context().Value(origURLKey{}).(*url.URL); ok {
			r2 := *r
			r2.URL = orig
			r = &r2
		}
		if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
			span.SetAttributes(attribute.String("http.route", a.route(r)))
		}
		next.ServeHTTP(w, r)
	})
	h := otelhttp.NewHandler(inner, "api",
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(propagation.TraceContext{}),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + a.route(r) }),
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery == "" && !r.URL.ForceQuery {
			h.ServeHTTP(w, r)
			return
		}
		clean := *r.URL
		clean.RawQuery, clean.ForceQuery = "", false
		r2 := r.WithContext(context.WithValue(r.Context(), origURLKey{}, r.URL))
		r2.URL = &clean
		r2.RequestURI = clean.RequestURI()
		h.ServeHTTP(w, r2)
	})
}

type origURLKey struct{}

// route is the route pattern a request matches, without its method
// ("/api/v1/tasks/{type}"), or Prefix when none does.
func (a *API) route(r *http.Request) string {
	_, pattern := a.mux.Handler(r)
	if pattern == "" || pattern == "/" {
		return Prefix
	}
	if _, path, ok := strings.Cut(pattern, " "); ok {
		return path
	}
	return pattern
}
