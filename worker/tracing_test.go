package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sandboxq/sandboxq/api"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/secret"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
	"github.com/sandboxq/sandboxq/worker"
)

// Values that must never reach a span.
const (
	traceAPIToken   = "api-token-3f9c1e"
	traceEnvValue   = "env-value-7d1a55"
	traceFileSecret = "file-content-b20c9e"
)

// traceFixture is a worker whose attempts, API requests and gateway calls
// are traced into an in-memory exporter, against a local provider whose
// first daemon request fails with 500.
type traceFixture struct {
	exp      *tracetest.InMemoryExporter
	lp       *local.Provider
	w        *worker.Worker
	client   *tasks.Client
	injected atomic.Int32
}

func newTraceFixture(t *testing.T) *traceFixture {
	t.Helper()
	f := &traceFixture{exp: tracetest.NewInMemoryExporter()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(f.exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	var lpRef atomic.Pointer[local.Provider]
	observe := func(o local.Observation) {
		if o.Injected && f.injected.Add(1) == 1 {
			// One failure is enough: the retry must succeed.
			_ = lpRef.Load().SetFaults(local.Faults{})
		}
	}
	// Status 500: a failed attempt, not a read that the client may retry
	// within the attempt.
	faults := local.Faults{Errors: []local.Fault{{Rate: 1, Status: 500, Scope: local.ScopeDaemon}}}
	lp, gw := testutil.Provider(t, local.Config{Observe: observe, Faults: faults}, gateway.WithTracing(tp))
	lpRef.Store(lp)
	f.lp = lp
	rdb := redistest.New(t).Client(t)
	f.client = tasks.NewClient(rdb)

	w, err := worker.New(worker.Config{
		Redis: rdb, Gateway: gw, Concurrency: 4, ShutdownTimeout: 5 * time.Second, Policy: fastPolicy(),
		// No lookup cache: each attempt asks the gateway for its sandbox.
		Handlers:       handlers.Config{PollInterval: 50 * time.Millisecond, CacheTTL: -1},
		Watchers:       worker.WatcherConfig{Disabled: true},
		Maintenance:    worker.MaintenanceConfig{Disabled: true},
		HTTP:           worker.HTTPConfig{Addr: "127.0.0.1:0", APITokens: []secret.Secret{secret.New(traceAPIToken)}},
		TracerProvider: tp,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.w = w
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker Run: %v", err)
		}
	})
	return f
}

// post enqueues through the API with the given traceparent.
func (f *traceFixture) post(t *testing.T, typ, body, traceparent string) *tasks.Enqueued {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+f.w.Addr()+api.Prefix+"/tasks/"+typ+"?max_retry=3", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+traceAPIToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", traceparent)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var e tasks.Enqueued
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST %s: %d, %v", typ, resp.StatusCode, err)
	}
	return &e
}

func (f *traceFixture) waitDone(t *testing.T, e *tasks.Enqueued) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	res, err := f.client.Wait(ctx, e.Queue, e.ID)
	if err != nil || res.State != tasks.StateCompleted {
		t.Fatalf("task %s %s: %+v, %v", e.Type, e.ID, res, err)
	}
}

// TestTraceOfRetriedServerStart: an API-enqueued server:start whose first
// attempt fails is one trace, continuing the caller's traceparent: API span
// → producer span → two sibling attempt spans → their gateway and daemon
// spans. No span anywhere holds a credential, an env value or file content,
// nor a query string.
func TestTraceOfRetriedServerStart(t *testing.T) {
	t.Parallel()
	f := newTraceFixture(t)
	callerTrace, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	callerSpan, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	tp := fmt.Sprintf("00-%s-%s-01", callerTrace, callerSpan)

	e := f.post(t, tasks.TypeServerStart, `{"namespace":"tr","name":"retried","slug":"web","command":"sleep 60","wait_for":"running","env":{"SECRET_ENV":"`+traceEnvValue+`"}}`, tp)
	f.waitDone(t, e)
	if f.injected.Load() == 0 {
		t.Fatal("no fault was injected: the first attempt did not fail")
	}
	// Tasks that touch file content and env values, for the scan below.
	other := "00-11111111111111111111111111111111-2222222222222222-01"
	f.waitDone(t, f.post(t, tasks.TypeFilesWrite, `{"namespace":"tr","name":"retried","files":[{"path":"a.txt","content":"`+traceFileSecret+`"}]}`, other))
	f.waitDone(t, f.post(t, tasks.TypeEnvUpdate, `{"namespace":"tr","name":"retried","file":".env","set":{"K":"`+traceEnvValue+`"}}`, other))

	var spans tracetest.SpanStubs
	testutil.Eventually(t, "the API span to end", 10*time.Second, func() bool {
		spans = f.exp.GetSpans()
		return len(byKind(spans, callerTrace, trace.SpanKindServer)) == 1
	})
	checkTraceTree(t, spans, callerTrace, callerSpan, e.ID)
	checkNoSecrets(t, spans, f.secrets())
}

func (f *traceFixture) secrets() []string {
	s := []string{f.lp.APIKey().Reveal(), traceAPIToken, traceEnvValue, traceFileSecret}
	for _, v := range f.lp.Sandboxes() {
		s = append(s, v.Token.Reveal())
	}
	return s
}

func checkTraceTree(t *testing.T, spans tracetest.SpanStubs, tid trace.TraceID, callerSpan trace.SpanID, taskID string) {
	t.Helper()
	apiSpan := byKind(spans, tid, trace.SpanKindServer)[0]
	if apiSpan.Parent.SpanID() != callerSpan || apiSpan.Name != "POST "+api.Prefix+"/tasks/{type}" {
		t.Fatalf("API span %q has parent %s, want the caller's %s", apiSpan.Name, apiSpan.Parent.SpanID(), callerSpan)
	}
	producers := byKind(spans, tid, trace.SpanKindProducer)
	if len(producers) != 1 || producers[0].Parent.SpanID() != apiSpan.SpanContext.SpanID() {
		t.Fatalf("want one producer span under the API span, got %d", len(producers))
	}
	prod := producers[0]
	if got := attr(prod, "messaging.message.id"); got != taskID {
		t.Fatalf("producer span names task %q, want %q", got, taskID)
	}
	attempts := byKind(spans, tid, trace.SpanKindConsumer)
	if len(attempts) != 2 {
		t.Fatalf("want 2 attempt spans in the trace, got %d", len(attempts))
	}
	outcomes := map[string]string{}
	for _, a := range attempts {
		if a.Parent.SpanID() != prod.SpanContext.SpanID() {
			t.Fatalf("attempt span %q is not a child of the producer span", a.Name)
		}
		for _, k := range []string{"sandboxq.task.type", "messaging.message.id", "messaging.destination.name", "sandboxq.namespace", "sandboxq.name"} {
			if attr(a, k) == "" {
				t.Errorf("attempt span lacks %s", k)
			}
		}
		outcomes[attr(a, "sandboxq.attempt")] = attr(a, "sandboxq.outcome")
		checkCalls(t, spans, a)
	}
	if outcomes["1"] != handlers.OutcomeRetry || outcomes["2"] != handlers.OutcomeOK {
		t.Fatalf("attempt outcomes = %v, want 1: retry, 2: ok", outcomes)
	}
}

// checkCalls wants a lease-wait span, a gateway span and a daemon span
// under the attempt.
func checkCalls(t *testing.T, spans tracetest.SpanStubs, attempt tracetest.SpanStub) {
	t.Helper()
	var gw, daemon, lease int
	for _, s := range spans {
		if s.Parent.SpanID() != attempt.SpanContext.SpanID() {
			continue
		}
		if s.Name == "project.lease_wait" && attr(s, "sandboxq.lease.result") == "acquired" {
			lease++
		}
		if s.SpanKind != trace.SpanKindClient {
			continue
		}
		switch {
		case strings.HasPrefix(s.Name, "gateway."):
			gw++
		case strings.HasPrefix(s.Name, "daemon."):
			daemon++
		}
	}
	if gw == 0 || daemon == 0 || lease == 0 {
		t.Errorf("attempt %s has %d gateway, %d daemon and %d lease-wait spans, want some of each", attr(attempt, "sandboxq.attempt"), gw, daemon, lease)
	}
}

// checkNoSecrets scans every span's name, status, attributes and events.
func checkNoSecrets(t *testing.T, spans tracetest.SpanStubs, secrets []string) {
	t.Helper()
	var queries int
	for _, s := range spans {
		texts := []string{s.Name, s.Status.Description}
		kvs := append([]attribute.KeyValue{}, s.Attributes...)
		for _, ev := range s.Events {
			texts = append(texts, ev.Name)
			kvs = append(kvs, ev.Attributes...)
		}
		for _, kv := range kvs {
			v := kv.Value.Emit()
			texts = append(texts, v)
			if kv.Key == "url.full" && strings.Contains(v, "?") {
				queries++
				t.Errorf("span %q: url.full %q keeps its query", s.Name, v)
			}
		}
		for _, text := range texts {
			for _, sec := range secrets {
				if sec != "" && strings.Contains(text, sec) {
					t.Errorf("span %q holds a secret value in %q", s.Name, text)
				}
			}
		}
	}
	if len(spans) < 10 {
		t.Fatalf("only %d spans recorded; the scan saw too little", len(spans))
	}
}

func byKind(spans tracetest.SpanStubs, tid trace.TraceID, kind trace.SpanKind) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range spans {
		if s.SpanContext.TraceID() == tid && s.SpanKind == kind {
			out = append(out, s)
		}
	}
	return out
}

func attr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}
