package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fastPoll keeps creating-poll tests quick.
var fastPoll = WithCreatingPoll(time.Millisecond, 4*time.Millisecond, 10*time.Second)

func TestFindOrCreate(t *testing.T) {
	t.Parallel()
	c, mux := setup(t, WithPathStyle(PathPlural))
	mux.HandleFunc("POST /v1/sandboxes/find-or-create", func(w http.ResponseWriter, r *http.Request) {
		testHeader(t, r, "X-ComputeSDK-API-Key", testKey)
		testHeader(t, r, "Content-Type", "application/json")
		// Name and Namespace come from the arguments, not from opts.
		testBody(t, r, `{"namespace":"acme","name":"p-1","timeout":900000,"templateId":"node",
			"metadata":{"project":"p-1"},"envs":{"A":"1"},"provider":"e2b"}`)
		writeJSON(w, 200, readTestdata(t, "sandbox_ready.json"))
	})
	sb, err := c.FindOrCreate(t.Context(), "acme", "p-1", &CreateOptions{
		Timeout: 900000, TemplateID: "node", Metadata: map[string]any{"project": "p-1"},
		Envs: map[string]string{"A": "1"}, Name: "ignored", Namespace: "ignored", Provider: "e2b",
	})
	if err != nil {
		t.Fatal(err)
	}
	if sb.SandboxID != "sb-7f3a" || sb.Token != testToken || sb.Status != SandboxReady ||
		sb.Namespace != "acme" || sb.Name != "p-1" || sb.Provider != "e2b" ||
		sb.URL != "https://sandbox-7f3a.sandbox.computesdk.com" {
		t.Errorf("sandbox = %+v", sb)
	}
	if len(sb.Servers) != 1 || sb.Servers[0].Slug != "web" || sb.Servers[0].Port != 3000 || sb.Servers[0].ExitCode != nil {
		t.Errorf("servers = %+v", sb.Servers)
	}
}

func TestFindOrCreate_DefaultsAndErrors(t *testing.T) {
	t.Parallel()
	c, mux := setup(t)
	var calls atomic.Int32
	mux.HandleFunc("POST /v1/sandbox/find-or-create", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		switch {
		case strings.Contains(string(b), `"name":"nil-opts"`):
			if string(b) != `{"name":"nil-opts","namespace":"default"}` {
				t.Errorf("body = %s", b)
			}
			writeJSON(w, 200, `{"success":true,"data":{"sandboxId":"sb-1"}}`)
		case strings.Contains(string(b), `"name":"missing"`):
			writeJSON(w, 404, `{"success":false,"error":"no such route"}`)
		case strings.Contains(string(b), `"name":"null"`):
			writeJSON(w, 200, `{"success":true,"data":null}`)
		case strings.Contains(string(b), `"name":"refused"`):
			writeJSON(w, 200, `{"success":false,"error":"quota exceeded"}`)
		default:
			writeJSON(w, 200, `not json`)
		}
	})
	ctx := t.Context()
	if sb, err := c.FindOrCreate(ctx, "", "nil-opts", nil); err != nil || sb.SandboxID != "sb-1" {
		t.Errorf("nil opts: %+v, %v", sb, err)
	}
	if _, err := c.FindOrCreate(ctx, "", "missing", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("404: err = %v, want ErrNotFound", err)
	}
	if _, err := c.FindOrCreate(ctx, "", "null", nil); err == nil || !strings.Contains(err.Error(), "no sandbox") || IsRetryable(err) {
		t.Errorf("null data: err = %v", err)
	}
	_, err := c.FindOrCreate(ctx, "", "refused", nil)
	if ae, ok := errors.AsType[*APIError](err); !ok || ae.StatusCode != 200 || ae.Message != "quota exceeded" || ae.Op != "find_or_create" {
		t.Errorf("success false: err = %#v", err)
	}
	if _, err := c.FindOrCreate(ctx, "", "garbage", nil); err == nil || IsRetryable(err) {
		t.Errorf("undecodable body: err = %v, want a non-retryable error", err)
	}
	before := calls.Load()
	if _, err := c.FindOrCreate(ctx, "acme", "", nil); err == nil || !strings.Contains(err.Error(), "name is empty") {
		t.Errorf("empty name: err = %v", err)
	}
	if calls.Load() != before {
		t.Error("a request was sent for an empty name")
	}
}

func TestFind(t *testing.T) {
	t.Parallel()
	c, mux := setup(t)
	mux.HandleFunc("POST /v1/sandbox/find", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch string(b) {
		case `{"namespace":"default","name":"hit"}`:
			writeJSON(w, 200, `{"success":true,"data":{"sandboxId":"sb-9","url":"http://d","token":"t","status":"ready"}}`)
		case `{"namespace":"ns","name":"miss-404"}`:
			writeJSON(w, 404, `{"success":false,"error":"not found"}`)
		case `{"namespace":"ns","name":"miss-null"}`:
			writeJSON(w, 200, `{"success":true,"data":null}`)
		case `{"namespace":"ns","name":"miss-nodata"}`:
			writeJSON(w, 200, `{"success":true}`)
		case `{"namespace":"ns","name":"miss-false"}`:
			writeJSON(w, 200, `{"success":false,"error":"not found"}`)
		case `{"namespace":"ns","name":"boom"}`:
			writeJSON(w, 500, `{"success":false,"error":"db down"}`)
		default:
			t.Errorf("unexpected body %s", b)
			writeJSON(w, 400, `{}`)
		}
	})
	ctx := t.Context()
	sb, err := c.Find(ctx, "", "hit")
	if err != nil || sb == nil || sb.SandboxID != "sb-9" {
		t.Fatalf("hit: %+v, %v", sb, err)
	}
	for _, name := range []string{"miss-404", "miss-null", "miss-nodata", "miss-false"} {
		sb, err := c.Find(ctx, "ns", name)
		if sb != nil || err != nil {
			t.Errorf("%s: Find = %+v, %v; want nil, nil", name, sb, err)
		}
	}
	_, err = c.Find(ctx, "ns", "boom")
	if ae, ok := errors.AsType[*APIError](err); !ok || ae.StatusCode != 500 || !IsRetryable(err) {
		t.Errorf("500: err = %v", err)
	}
}

// creatingServer answers "creating" for the first n POSTs to path, then
// ready. It checks that every re-POST carries the same body.
func creatingServer(t *testing.T, mux *http.ServeMux, path string, n int32) *atomic.Int32 {
	t.Helper()
	var calls atomic.Int32
	var first atomic.Value
	mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if !first.CompareAndSwap(nil, string(b)) && first.Load().(string) != string(b) {
			t.Errorf("re-POST body %s differs from the first %s", b, first.Load())
		}
		if calls.Add(1) <= n {
			writeJSON(w, 200, `{"success":true,"data":{"sandboxId":"sb-c","status":"creating","name":"p","namespace":"ns"}}`)
			return
		}
		writeJSON(w, 200, `{"success":true,"data":{"sandboxId":"sb-c","url":"http://d","token":"t","status":"ready","name":"p","namespace":"ns"}}`)
	})
	return &calls
}

func TestCreatingPoll_Succeeds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		op   string
		path string
		call func(*Client, context.Context) (*Sandbox, error)
	}{
		{"find_or_create", "/v1/sandbox/find-or-create", func(c *Client, ctx context.Context) (*Sandbox, error) {
			return c.FindOrCreate(ctx, "ns", "p", &CreateOptions{Timeout: 1000})
		}},
		{"find", "/v1/sandbox/find", func(c *Client, ctx context.Context) (*Sandbox, error) {
			return c.Find(ctx, "ns", "p")
		}},
	} {
		t.Run(tc.op, func(t *testing.T) {
			t.Parallel()
			var observed atomic.Int32
			c, mux := setup(t, fastPoll, WithObserver(func(op string, status int, _ time.Duration) {
				if op == tc.op && status == 200 {
					observed.Add(1)
				}
			}))
			calls := creatingServer(t, mux, tc.path, 3)
			sb, err := tc.call(c, t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if sb.Status != SandboxReady || sb.Token != "t" {
				t.Errorf("sandbox = %+v", sb)
			}
			if got := calls.Load(); got != 4 {
				t.Errorf("POSTs = %d, want 4 (3 creating + 1 ready)", got)
			}
			if got := observed.Load(); got != 4 {
				t.Errorf("observer saw %d requests, want 4", got)
			}
		})
	}
}

func TestCreatingPoll_GivesUp(t *testing.T) {
	t.Parallel()
	c, mux := setup(t, WithCreatingPoll(time.Millisecond, 5*time.Millisecond, 60*time.Millisecond))
	calls := creatingServer(t, mux, "/v1/sandbox/find-or-create", 1<<30)
	start := time.Now()
	_, err := c.FindOrCreate(t.Context(), "ns", "p", nil)
	if !errors.Is(err, ErrStillCreating) {
		t.Fatalf("err = %v, want ErrStillCreating", err)
	}
	if !IsRetryable(err) {
		t.Error("ErrStillCreating must be retryable")
	}
	if !strings.Contains(err.Error(), "ns/p") || !strings.Contains(err.Error(), "sb-c") {
		t.Errorf("error %q should name the sandbox", err)
	}
	if elapsed := time.Since(start); elapsed < 60*time.Millisecond {
		t.Errorf("gave up after %v, before the 60ms total", elapsed)
	}
	// 1, 1.5, 2.25, 3.375, 5, 5, … ms between POSTs; how many fit in the
	// 60 ms depends on the machine's load, but it must have asked again.
	if n := calls.Load(); n < 2 {
		t.Errorf("only %d POSTs before giving up: the creating sandbox was not polled", n)
	}
}

func TestCreatingPoll_ContextCanceled(t *testing.T) {
	t.Parallel()
	c, mux := setup(t, WithCreatingPoll(time.Hour, time.Hour, 2*time.Hour))
	arrived := make(chan struct{}, 1)
	mux.HandleFunc("POST /v1/sandbox/find", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, `{"success":true,"data":{"sandboxId":"sb-c","status":"creating"}}`)
		select {
		case arrived <- struct{}{}:
		default:
		}
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := c.Find(ctx, "ns", "p")
		done <- err
	}()
	select {
	case <-arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("no request arrived")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || IsRetryable(err) {
			t.Fatalf("err = %v, want context.Canceled and not retryable", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Find did not return after cancel")
	}
}

func TestCreate(t *testing.T) {
	t.Parallel()
	c, mux := setup(t)
	mux.HandleFunc("POST /v1/sandbox", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch string(b) {
		case `{}`:
			writeJSON(w, 201, `{"success":true,"data":{"sandboxId":"sb-new","url":"http://d","token":"t","provider":"local"}}`)
		case `{"templateId":"py","envs":{"K":"V"},"name":"n","namespace":"ns"}`:
			writeJSON(w, 200, `{"success":true,"data":{"sandboxId":"sb-named","name":"n","namespace":"ns"}}`)
		case `{"templateId":"none"}`:
			writeJSON(w, 200, `{"success":true,"data":null}`)
		default:
			t.Errorf("unexpected body %s", b)
			writeJSON(w, 400, `{"success":false,"error":"bad"}`)
		}
	})
	ctx := t.Context()
	sb, err := c.Create(ctx, nil)
	if err != nil || sb.SandboxID != "sb-new" || sb.Provider != "local" {
		t.Fatalf("Create(nil) = %+v, %v", sb, err)
	}
	sb, err = c.Create(ctx, &CreateOptions{TemplateID: "py", Envs: map[string]string{"K": "V"}, Name: "n", Namespace: "ns"})
	if err != nil || sb.SandboxID != "sb-named" || sb.Name != "n" {
		t.Fatalf("Create(named) = %+v, %v", sb, err)
	}
	if _, err := c.Create(ctx, &CreateOptions{TemplateID: "none"}); err == nil || !strings.Contains(err.Error(), "no sandbox") {
		t.Fatalf("null data: err = %v", err)
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	c, mux := setup(t)
	mux.HandleFunc("GET /v1/sandbox/{id}", func(w http.ResponseWriter, r *http.Request) {
		testNoBody(t, r)
		switch r.URL.EscapedPath() {
		case "/v1/sandbox/a%2Fb%20c":
			if r.PathValue("id") != "a/b c" {
				t.Errorf("id = %q", r.PathValue("id"))
			}
			// The gateway may leave sandboxId out of GET.
			writeJSON(w, 200, `{"success":true,"data":{"url":"http://d","token":"t","provider":"e2b","metadata":{"k":1}}}`)
		case "/v1/sandbox/null":
			writeJSON(w, 200, `{"success":true,"data":null}`)
		default:
			w.Header().Set("X-Request-Id", "req-404")
			writeJSON(w, 404, `{"success":false,"error":"sandbox not found"}`)
		}
	})
	ctx := t.Context()
	sb, err := c.Get(ctx, "a/b c")
	if err != nil {
		t.Fatal(err)
	}
	want := &Sandbox{SandboxID: "a/b c", URL: "http://d", Token: "t", Provider: "e2b", Metadata: map[string]any{"k": float64(1)}}
	if !reflect.DeepEqual(sb, want) {
		t.Errorf("Get = %+v, want %+v", sb, want)
	}
	_, err = c.Get(ctx, "gone")
	ae, ok := errors.AsType[*APIError](err)
	if !errors.Is(err, ErrNotFound) || !ok || ae.Message != "sandbox not found" || ae.RequestID != "req-404" {
		t.Errorf("404: err = %#v", err)
	}
	if _, err := c.Get(ctx, "null"); !errors.Is(err, ErrNotFound) {
		t.Errorf("null data: err = %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"", ".", ".."} {
		if _, err := c.Get(ctx, bad); err == nil || !strings.Contains(err.Error(), "sandbox id") {
			t.Errorf("Get(%q): err = %v", bad, err)
		}
	}
}

func TestDestroy(t *testing.T) {
	t.Parallel()
	c, mux := setup(t)
	mux.HandleFunc("DELETE /v1/sandbox/{id}", func(w http.ResponseWriter, r *http.Request) {
		testHeader(t, r, "X-ComputeSDK-API-Key", testKey)
		switch r.PathValue("id") {
		case "sb-json":
			writeJSON(w, 200, `{"success":true}`)
		case "sb-204":
			w.WriteHeader(http.StatusNoContent)
		case "sb-false":
			writeJSON(w, 200, `{"success":false,"error":"still attached"}`)
		default:
			writeJSON(w, 404, `{"success":false,"error":"not found"}`)
		}
	})
	ctx := t.Context()
	if err := c.Destroy(ctx, "sb-json"); err != nil {
		t.Errorf("200: %v", err)
	}
	if err := c.Destroy(ctx, "sb-204"); err != nil {
		t.Errorf("204: %v", err)
	}
	if err := c.Destroy(ctx, "sb-gone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("404: err = %v, want ErrNotFound", err)
	}
	err := c.Destroy(ctx, "sb-false")
	if ae, ok := errors.AsType[*APIError](err); !ok || ae.Message != "still attached" || ae.Method != "DELETE" {
		t.Errorf("success false: err = %v", err)
	}
}

func TestExtend(t *testing.T) {
	t.Parallel()
	c, mux := setup(t, WithPathStyle(PathPlural))
	mux.HandleFunc("POST /v1/sandboxes/sb-1/extend", func(w http.ResponseWriter, r *http.Request) {
		testBody(t, r, `{"duration":900000}`)
		writeJSON(w, 200, `{"success":true}`)
	})
	if err := c.Extend(t.Context(), "sb-1", 15*time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{0, -time.Second, time.Microsecond} {
		if err := c.Extend(t.Context(), "sb-1", d); err == nil || !strings.Contains(err.Error(), "duration") {
			t.Errorf("Extend(%v): err = %v", d, err)
		}
	}
}
