package worker_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sandboxq/sandboxq/tasks"
	"github.com/sandboxq/sandboxq/worker"
)

// httpWorker runs a worker serving HTTP on a loopback port with writable
// Asynqmon and returns its base URL.
func httpWorker(t *testing.T, b *testBundle, mutate func(*worker.HTTPConfig)) (*worker.Worker, string) {
	t.Helper()
	cfg := worker.Config{Redis: b.rdb, Gateway: b.gw, Logger: b.logger, Concurrency: 2, Policy: fastPolicy()}
	cfg.Watchers.Disabled, cfg.Maintenance.Disabled = true, true
	cfg.HTTP = worker.HTTPConfig{Addr: "127.0.0.1:0", ReadOnly: ptr(false)}
	if mutate != nil {
		mutate(&cfg.HTTP)
	}
	w, err := worker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker Run: %v", err)
		}
	})
	return w, "http://" + w.Addr()
}

// call sends one request and returns the status and body.
func call(t *testing.T, method, url, body string, header map[string]string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

func queueSize(t *testing.T, b *testBundle, q string) int {
	t.Helper()
	info, err := b.insp.GetQueueInfo(q)
	if err != nil {
		return 0 // no such queue yet: nothing was enqueued there
	}
	return info.Size
}

const runPayload = `{"name":"victim","command":"touch /tmp/should-not-exist"}`

// TestDNSRebindingRefused: a request whose Host is not this server's
// (a rebinding name resolving to 127.0.0.1) gets 403 naming
// SANDBOXQ_ALLOWED_HOSTS on the registry and on an Asynqmon write, even
// with writes enabled; /healthz still answers, and so do the loopback
// names and configured hosts.
func TestDNSRebindingRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, base := httpWorker(t, b, func(h *worker.HTTPConfig) { h.AllowedHosts = []string{"sandboxq.internal"} })
	attacker := map[string]string{"Host": "attacker.example:8080", "Origin": "http://attacker.example:8080"}
	// Asynqmon pauses only a queue asynq knows.
	if err := b.rdb.SAdd(t.Context(), "asynq:queues", tasks.QueueDefault).Err(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ method, path, body string }{
		{"GET", "/api/sandboxes", ""},
		{"POST", "/monitoring/api/queues/default:pause", ""},
		{"GET", "/api/v1/tasks/default/x", ""},
		{"POST", "/api/v1/tasks/command:run", runPayload},
	} {
		h := map[string]string{"Content-Type": "application/json"}
		for k, v := range attacker {
			h[k] = v
		}
		status, body := call(t, c.method, base+c.path, c.body, h)
		if status != http.StatusForbidden || !strings.Contains(body, worker.EnvAllowedHosts) {
			t.Errorf("%s %s with Host attacker.example:8080: %d %s; want 403 naming %s", c.method, c.path, status, body, worker.EnvAllowedHosts)
		}
	}
	if info, err := b.insp.GetQueueInfo(tasks.QueueDefault); err == nil && info.Paused {
		t.Fatal("the attacker paused the default queue")
	}
	if n := queueSize(t, b, tasks.QueueDefault); n != 0 {
		t.Fatalf("%d tasks enqueued by the attacker", n)
	}
	if status, _ := call(t, "GET", base+"/healthz", "", attacker); status != http.StatusOK {
		t.Errorf("/healthz with a foreign Host: %d, want 200", status)
	}
	for _, host := range []string{"localhost", "127.0.0.1:1234", "[::1]:8080", "sandboxq.internal:443", "SANDBOXQ.internal."} {
		if status, body := call(t, "GET", base+"/api/sandboxes", "", map[string]string{"Host": host}); status != http.StatusOK {
			t.Errorf("GET /api/sandboxes with Host %s: %d %s, want 200", host, status, body)
		}
	}
	// The write itself works when it comes from the server's own origin.
	if status, body := call(t, "POST", base+"/monitoring/api/queues/default:pause", "", map[string]string{"Sec-Fetch-Site": "same-origin"}); status >= 300 {
		t.Fatalf("same-origin pause: %d %s", status, body)
	}
	if info, err := b.insp.GetQueueInfo(tasks.QueueDefault); err != nil || !info.Paused {
		t.Fatalf("same-origin pause did not pause the queue (%v)", err)
	}
}

// TestCrossOriginWritesRefused: a page on another origin cannot enqueue,
// neither with the cross-site markers a browser sends nor with a
// "simple" text/plain or type-less body (no-cors fetch). An origin listed
// in AllowedOrigins can, and gets its CORS preflight answered.
func TestCrossOriginWritesRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	trusted := "http://127.0.0.2:4321"
	_, base := httpWorker(t, b, func(h *worker.HTTPConfig) { h.AllowedOrigins = []string{trusted} })
	url := base + "/api/v1/tasks/command:run"

	for _, c := range []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"cross-site JSON", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}, http.StatusForbidden},
		{"same-site other port", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:9"}, http.StatusForbidden},
		{"origin mismatch without Sec-Fetch-Site", map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}, http.StatusForbidden},
		{"no Content-Type", map[string]string{}, http.StatusUnsupportedMediaType},
		{"text/plain", map[string]string{"Content-Type": "text/plain;charset=UTF-8"}, http.StatusUnsupportedMediaType},
		{"form", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
	} {
		status, body := call(t, "POST", url, runPayload, c.header)
		if status != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, status, body, c.want)
		}
		if status == http.StatusUnsupportedMediaType && !strings.Contains(body, "application/json") {
			t.Errorf("%s: 415 body %q does not say what to send", c.name, body)
		}
	}
	if n := queueSize(t, b, tasks.QueueDefault); n != 0 {
		t.Fatalf("%d tasks enqueued by refused requests", n)
	}

	// The trusted origin: preflight, then the write.
	req, _ := http.NewRequestWithContext(t.Context(), "OPTIONS", url, nil)
	req.Header.Set("Origin", trusted)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != trusted ||
		!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "content-type") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	status, body := call(t, "POST", url, runPayload, map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site", "Origin": trusted})
	if status != http.StatusAccepted {
		t.Fatalf("trusted origin: %d %s, want 202", status, body)
	}
	if n := queueSize(t, b, tasks.QueueDefault); n != 1 {
		t.Fatalf("%d tasks enqueued, want 1", n)
	}
	// Clients that are not browsers (no Origin, no Sec-Fetch-Site) and
	// body-less Asynqmon actions are unaffected.
	if status, body := call(t, "POST", url, runPayload, map[string]string{"Content-Type": "application/json"}); status != http.StatusAccepted {
		t.Fatalf("plain client: %d %s", status, body)
	}
}

// TestHandlerIsGuarded: an embedder serving Handler() gets the same Host
// and cross-origin protection.
func TestHandlerIsGuarded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := worker.Config{Redis: b.rdb, Gateway: b.gw, Logger: b.logger, Concurrency: 2}
	cfg.Watchers.Disabled, cfg.Maintenance.Disabled = true, true
	w, err := worker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(w.Handler())
	t.Cleanup(srv.Close)
	if status, body := call(t, "GET", srv.URL+"/api/sandboxes", "", map[string]string{"Host": "attacker.example"}); status != http.StatusForbidden {
		t.Errorf("foreign Host through Handler: %d %s", status, body)
	}
	if status, body := call(t, "POST", srv.URL+"/api/v1/tasks/command:run", runPayload, map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}); status != http.StatusForbidden {
		t.Errorf("cross-site write through Handler: %d %s", status, body)
	}
}

// TestNonLoopbackNeedsAllowedHosts: New refuses a non-loopback address
// without SANDBOXQ_ALLOWED_HOSTS, and a malformed API_ALLOWED_ORIGINS.
func TestNonLoopbackNeedsAllowedHosts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, c := range []struct {
		http worker.HTTPConfig
		want string
	}{
		{worker.HTTPConfig{Addr: "0.0.0.0:0"}, worker.EnvAllowedHosts},
		{worker.HTTPConfig{Addr: ":0"}, worker.EnvAllowedHosts},
		{worker.HTTPConfig{Addr: ":0", AllowedHosts: []string{" ", ""}}, worker.EnvAllowedHosts},
		{worker.HTTPConfig{Addr: "127.0.0.1:0", AllowedOrigins: []string{"evil.example"}}, worker.EnvAllowedOrigins},
		{worker.HTTPConfig{Addr: "127.0.0.1:0", AllowedHosts: []string{"a b"}}, worker.EnvAllowedHosts},
	} {
		cfg := worker.Config{Redis: b.rdb, Gateway: b.gw, Logger: b.logger, HTTP: c.http}
		cfg.Watchers.Disabled, cfg.Maintenance.Disabled = true, true
		w, err := worker.New(cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v; want an error naming %s", c.http, err, c.want)
		}
		if w != nil {
			t.Errorf("New(%+v) returned a worker with its error", c.http)
		}
	}
}
