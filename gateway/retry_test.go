package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/internal/secret"
)

// flaky is a real HTTP server that answers the first fail requests with
// status and then the success body, counting requests per method.
type flaky struct {
	srv          *httptest.Server
	fail         atomic.Int32
	status       int
	success      string
	posts, gets  atomic.Int32
	slept        []time.Duration
	mu           sync.Mutex
	cancelOnFail func() // if set, called when a failure is answered
}

func newFlaky(t *testing.T, status int, fail int32, success string) *flaky {
	t.Helper()
	f := &flaky{status: status, success: success}
	f.fail.Store(fail)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			f.posts.Add(1)
		} else {
			f.gets.Add(1)
		}
		if f.fail.Add(-1) >= 0 {
			if f.cancelOnFail != nil {
				f.cancelOnFail()
			}
			http.Error(w, `{"error":"unfriendly"}`, f.status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(f.success))
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *flaky) requests() int { return int(f.posts.Load() + f.gets.Load()) }

// client returns a gateway client whose read-retry waits are recorded
// instead of slept.
func (f *flaky) client(t *testing.T, opts ...Option) *Client {
	t.Helper()
	c, err := NewClient(f.srv.URL, append([]Option{WithAPIKey(secret.New(testKey))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	c.t.read.sleep = func(ctx context.Context, d time.Duration) error {
		f.mu.Lock()
		f.slept = append(f.slept, d)
		f.mu.Unlock()
		return ctx.Err()
	}
	return c
}

const (
	sandboxBody = `{"success":true,"data":{"sandboxId":"sb-1","url":"http://127.0.0.1:1/s/sb-1","token":"t","status":"ready"}}`
	serverBody  = `{"status":"ok","data":{"server":{"slug":"web","status":"ready"}}}`
	serversBody = `{"status":"ok","data":{"servers":[{"slug":"web","status":"ready"}]}}`
	healthBody  = `{"status":"ok"}`
)

// readCalls are the idempotent reads, each against a server answering
// with the body it needs.
var readCalls = []struct {
	name string
	body string
	call func(ctx context.Context, c *Client, url string) error
}{
	{"find", sandboxBody, func(ctx context.Context, c *Client, _ string) error {
		_, err := c.Find(ctx, "ns", "a")
		return err
	}},
	{"find_or_create", sandboxBody, func(ctx context.Context, c *Client, _ string) error {
		_, err := c.FindOrCreate(ctx, "ns", "a", nil)
		return err
	}},
	{"get_server", serverBody, func(ctx context.Context, c *Client, url string) error {
		_, err := c.Daemon(&Sandbox{SandboxID: "sb", URL: url}).GetServer(ctx, "web")
		return err
	}},
	{"list_servers", serversBody, func(ctx context.Context, c *Client, url string) error {
		_, err := c.Daemon(&Sandbox{SandboxID: "sb", URL: url}).ListServers(ctx)
		return err
	}},
	{"health", healthBody, func(ctx context.Context, c *Client, url string) error {
		_, err := c.Daemon(&Sandbox{SandboxID: "sb", URL: url}).Health(ctx)
		return err
	}},
}

// TestReadRetry_RecoversWithinCall: two 502/503/504 answers in a row are
// absorbed by an idempotent read, which succeeds on its third request.
func TestReadRetry_RecoversWithinCall(t *testing.T) {
	for _, rc := range readCalls {
		for _, status := range []int{502, 503, 504} {
			f := newFlaky(t, status, 2, rc.body)
			c := f.client(t)
			if err := rc.call(t.Context(), c, f.srv.URL); err != nil {
				t.Fatalf("%s after two %d: %v", rc.name, status, err)
			}
			if n := f.requests(); n != 3 {
				t.Errorf("%s after two %d: %d requests, want 3", rc.name, status, n)
			}
			if len(f.slept) != 2 || f.slept[0] < DefaultReadRetryBase/2 || f.slept[0] > DefaultReadRetryBase ||
				f.slept[1] < DefaultReadRetryBase || f.slept[1] > 2*DefaultReadRetryBase {
				t.Errorf("%s: waits %v, want one in [%v, %v] then one in [%v, %v]", rc.name, f.slept,
					DefaultReadRetryBase/2, DefaultReadRetryBase, DefaultReadRetryBase, 2*DefaultReadRetryBase)
			}
		}
	}
}

// TestReadRetry_AtMostThreeRequests: a read that keeps getting 503 sends
// three requests and returns the 503.
func TestReadRetry_AtMostThreeRequests(t *testing.T) {
	for _, rc := range readCalls {
		f := newFlaky(t, 503, 100, rc.body)
		err := rc.call(t.Context(), f.client(t), f.srv.URL)
		var ae *APIError
		if !errors.As(err, &ae) || ae.StatusCode != 503 {
			t.Fatalf("%s: got %v, want the 503", rc.name, err)
		}
		if n := f.requests(); n != 3 {
			t.Errorf("%s under constant 503: %d requests, want 3", rc.name, n)
		}
	}
}

// TestReadRetry_OtherStatusesOnce: 500, 429 and 400 are not retried inside
// the call; the task's retry decides.
func TestReadRetry_OtherStatusesOnce(t *testing.T) {
	for _, rc := range readCalls {
		for _, status := range []int{500, 429, 400} {
			f := newFlaky(t, status, 100, rc.body)
			if err := rc.call(t.Context(), f.client(t), f.srv.URL); err == nil {
				t.Fatalf("%s: %d was not returned", rc.name, status)
			}
			if n := f.requests(); n != 1 {
				t.Errorf("%s on %d: %d requests, want 1", rc.name, status, n)
			}
		}
	}
}

// TestReadRetry_MutationsOnce: a POST that mutates (create, extend, start
// server, run command) and a DELETE are sent once on a 503.
func TestReadRetry_MutationsOnce(t *testing.T) {
	calls := map[string]func(ctx context.Context, c *Client, url string) error{
		"create": func(ctx context.Context, c *Client, _ string) error {
			_, err := c.Create(ctx, nil)
			return err
		},
		"extend":  func(ctx context.Context, c *Client, _ string) error { return c.Extend(ctx, "sb", time.Minute) },
		"destroy": func(ctx context.Context, c *Client, _ string) error { return c.Destroy(ctx, "sb") },
		"start_server": func(ctx context.Context, c *Client, url string) error {
			_, err := c.Daemon(&Sandbox{URL: url}).StartServer(ctx, ServerStartOptions{Slug: "web", Start: "true"})
			return err
		},
		"run_command": func(ctx context.Context, c *Client, url string) error {
			_, err := c.Daemon(&Sandbox{URL: url}).RunCommand(ctx, RunCommandRequest{Command: "true"})
			return err
		},
		"stop_server": func(ctx context.Context, c *Client, url string) error {
			return c.Daemon(&Sandbox{URL: url}).StopServer(ctx, "web")
		},
	}
	for name, call := range calls {
		f := newFlaky(t, 503, 100, sandboxBody)
		if err := call(t.Context(), f.client(t), f.srv.URL); err == nil {
			t.Fatalf("%s: the 503 was not returned", name)
		}
		if n := f.requests(); n != 1 {
			t.Errorf("mutation %s on 503: %d requests, want 1", name, n)
		}
	}
}

// TestReadRetry_TransportError: a connection that is refused counts as a
// transport error and is retried.
func TestReadRetry_TransportError(t *testing.T) {
	f := newFlaky(t, 503, 0, healthBody)
	c := f.client(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL
	dead.Close()
	_, err := c.Daemon(&Sandbox{URL: url}).Health(t.Context())
	if err == nil {
		t.Fatal("health on a closed port succeeded")
	}
	if len(f.slept) != 2 {
		t.Fatalf("waited %d times before giving up, want 2 (retried transport errors): %v", len(f.slept), err)
	}
}

// TestReadRetry_CallerCancelStops: when the caller cancels during the
// first failed request, no further request is sent and the error is the
// cancellation.
func TestReadRetry_CallerCancelStops(t *testing.T) {
	f := newFlaky(t, 503, 100, serversBody)
	ctx, cancel := context.WithCancel(t.Context())
	f.cancelOnFail = cancel
	_, err := f.client(t).Daemon(&Sandbox{URL: f.srv.URL}).ListServers(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if IsRetryable(err) {
		t.Errorf("the caller's cancellation is reported retryable: %v", err)
	}
	if n := f.requests(); n != 1 {
		t.Errorf("%d requests after the caller cancelled, want 1", n)
	}
}

// TestReadRetry_TotalBudget: no retry starts later than the total after
// the first request, and the real waits of the defaults stay well under
// 2 s; WithReadRetry(0, …) turns retries off.
func TestReadRetry_TotalBudget(t *testing.T) {
	f := newFlaky(t, 503, 100, healthBody)
	c := f.client(t, WithReadRetry(5, 400*time.Millisecond, 1*time.Second))
	if _, err := c.Daemon(&Sandbox{URL: f.srv.URL}).Health(t.Context()); err == nil {
		t.Fatal("health under constant 503 succeeded")
	}
	// Waits are recorded, not slept: 200–400 ms then 400–800 ms fit in
	// 1 s only if their sum does; the third (800–1600 ms) never does.
	var sum time.Duration
	for _, d := range f.slept {
		sum += d
	}
	if len(f.slept) < 1 || len(f.slept) > 2 || sum > time.Second {
		t.Errorf("waits %v (sum %v) under a 1 s budget", f.slept, sum)
	}

	off := newFlaky(t, 503, 100, healthBody)
	if _, err := off.client(t, WithReadRetry(0, 0, 0)).Daemon(&Sandbox{URL: off.srv.URL}).Health(t.Context()); err == nil {
		t.Fatal("health under constant 503 succeeded")
	}
	if n := off.requests(); n != 1 {
		t.Errorf("retries off: %d requests, want 1", n)
	}
	for _, bad := range []Option{WithReadRetry(-1, time.Millisecond, time.Second), WithReadRetry(2, 0, time.Second), WithReadRetry(2, time.Second, time.Millisecond)} {
		if _, err := NewClient("http://127.0.0.1:1", bad); err == nil {
			t.Error("an invalid WithReadRetry was accepted")
		}
	}
}
