package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/internal/secret"
)

const (
	// basePath is where the test servers mount the API, so that a client
	// that builds absolute paths instead of joining the base fails.
	basePath  = "/gw"
	testKey   = "computesdk_test_KEY_0f9e8d"
	testToken = "daemon_TOKEN_a1b2c3"
)

// fixture is a real HTTP server with a ServeMux mounted under basePath.
type fixture struct {
	mux *http.ServeMux
	srv *httptest.Server
	url string // srv.URL + basePath

	mu  sync.Mutex
	raw []rawRoute
}

// rawRoute serves requests whose escaped path (below basePath) starts with
// prefix, bypassing ServeMux, which would clean "//" out of file paths.
type rawRoute struct {
	method, prefix string
	h              func(w http.ResponseWriter, r *http.Request, rest string)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{mux: http.NewServeMux()}
	inner := http.StripPrefix(basePath, f.mux)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		esc := r.URL.EscapedPath()
		rel, ok := strings.CutPrefix(esc, basePath+"/")
		if !ok {
			t.Errorf("request outside the base path: %s %s", r.Method, esc)
			http.Error(w, "outside base path", http.StatusTeapot)
			return
		}
		f.mu.Lock()
		routes := f.raw
		f.mu.Unlock()
		for _, rt := range routes {
			if rest, ok := strings.CutPrefix("/"+rel, rt.prefix); ok && r.Method == rt.method {
				rt.h(w, r, rest)
				return
			}
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	f.url = f.srv.URL + basePath
	return f
}

func (f *fixture) handleRaw(method, prefix string, h func(w http.ResponseWriter, r *http.Request, rest string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.raw = append(f.raw, rawRoute{method, prefix, h})
}

// setup returns a gateway client for a fresh fixture.
func setup(t *testing.T, opts ...Option) (*Client, *http.ServeMux) {
	t.Helper()
	f := newFixture(t)
	c, err := NewClient(f.url, append([]Option{WithAPIKey(secret.New(testKey))}, opts...)...)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c, f.mux
}

func testMethod(t *testing.T, r *http.Request, want string) {
	t.Helper()
	if r.Method != want {
		t.Errorf("method = %s, want %s", r.Method, want)
	}
}

func testHeader(t *testing.T, r *http.Request, key, want string) {
	t.Helper()
	if got := r.Header.Get(key); got != want {
		t.Errorf("header %s = %q, want %q", key, got, want)
	}
}

// testBody compares the request body with want as JSON values.
func testBody(t *testing.T, r *http.Request, want string) {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Errorf("reading body: %v", err)
		return
	}
	var got, exp any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Errorf("body %q is not JSON: %v", b, err)
		return
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatalf("bad want %q: %v", want, err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("body = %s, want %s", b, want)
	}
}

func testNoBody(t *testing.T, r *http.Request) {
	t.Helper()
	b, _ := io.ReadAll(r.Body)
	if len(b) != 0 {
		t.Errorf("unexpected body %q", b)
	}
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNewClient_BadBaseURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, want string }{
		{"", "empty"},
		{"   ", "empty"},
		{"ftp://user:hunter2@example.com", "scheme must be http or https"},
		{"example.com/api", "scheme must be http or https"},
		{"http://", "missing host"},
		{"http:opaque", "missing host"},
		{"http://example.com/?x=1", "must not have a query"},
		{"http://example.com/#frag", "must not have a fragment"},
		{"http://user:hunter2@[::1", "invalid base URL"},
		{"http://example.com/%zz", "invalid base URL"},
	} {
		_, err := NewClient(tc.url)
		if err == nil {
			t.Errorf("NewClient(%q): no error", tc.url)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewClient(%q) = %v, want it to mention %q", tc.url, err, tc.want)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("NewClient(%q) error leaks the password: %v", tc.url, err)
		}
	}
}

func TestNewClient_BadOptions(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		opt  Option
		want string
	}{
		"nil http client": {WithHTTPClient(nil), "HTTP client is nil"},
		"zero timeout":    {WithTimeout(0), "timeout must be positive"},
		"neg timeout":     {WithTimeout(-time.Second), "timeout must be positive"},
		"empty ua":        {WithUserAgent(" "), "user agent is empty"},
		"ua newline":      {WithUserAgent("a\r\nX-Evil: 1"), "control characters"},
		"path style":      {WithPathStyle(PathStyle(7)), "unknown path style 7"},
		"nil logger":      {WithLogger(nil), "logger is nil"},
		"poll initial":    {WithCreatingPoll(0, time.Second, time.Second), "initial wait must be positive"},
		"poll max":        {WithCreatingPoll(2*time.Second, time.Second, time.Minute), "below the initial wait"},
		"poll total":      {WithCreatingPoll(time.Second, time.Second, 0), "total must be positive"},
		"empty key":       {WithAPIKey(secret.Secret{}), "API key is empty"},
		"key newline":     {WithAPIKey(secret.New("k\nX: y")), "control characters"},
		"provider ctl":    {WithProvider("e2b\r\nX: y"), "control characters"},
	} {
		_, err := NewClient("http://example.com", tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, tc.want)
		}
		_, err = NewDaemon("http://example.com", secret.New("t"), tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewDaemon err = %v, want it to mention %q", name, err, tc.want)
		}
	}
}

func TestGatewayHeaders(t *testing.T) {
	t.Parallel()
	t.Run("AllSet", func(t *testing.T) {
		t.Parallel()
		c, mux := setup(t, WithProvider("e2b"), WithUserAgent("sandboxq-test/9"))
		mux.HandleFunc("GET /v1/sandbox/sb-1", func(w http.ResponseWriter, r *http.Request) {
			testHeader(t, r, "Content-Type", "application/json")
			testHeader(t, r, "Accept", "application/json")
			testHeader(t, r, "X-ComputeSDK-API-Key", testKey)
			testHeader(t, r, "X-Provider", "e2b")
			testHeader(t, r, "User-Agent", "sandboxq-test/9")
			testHeader(t, r, "Authorization", "")
			writeJSON(w, 200, `{"success":true,"data":{"sandboxId":"sb-1","url":"http://d","token":"t"}}`)
		})
		if _, err := c.Get(t.Context(), "sb-1"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("NoProviderNoKey", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		c, err := NewClient(f.url + "/") // trailing slash is fine too
		if err != nil {
			t.Fatal(err)
		}
		f.mux.HandleFunc("GET /v1/sandbox/sb-1", func(w http.ResponseWriter, r *http.Request) {
			if _, ok := r.Header["X-Provider"]; ok {
				t.Error("X-Provider sent although no provider was set")
			}
			if _, ok := r.Header["X-Computesdk-Api-Key"]; ok {
				t.Error("API key header sent although no key was set")
			}
			testHeader(t, r, "User-Agent", DefaultUserAgent)
			writeJSON(w, 200, `{"success":true,"data":{"sandboxId":"sb-1"}}`)
		})
		if _, err := c.Get(t.Context(), "sb-1"); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPathStyles runs every gateway call in both styles and checks the path
// each one hits.
func TestPathStyles(t *testing.T) {
	t.Parallel()
	for _, style := range []PathStyle{PathSingular, PathPlural} {
		t.Run(style.String(), func(t *testing.T) {
			t.Parallel()
			prefix := "/v1/sandbox"
			if style == PathPlural {
				prefix = "/v1/sandboxes"
			}
			c, mux := setup(t, WithPathStyle(style))
			var mu sync.Mutex
			var hits []string
			record := func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				hits = append(hits, r.Method+" "+r.URL.EscapedPath())
				mu.Unlock()
				writeJSON(w, 200, `{"success":true,"data":{"sandboxId":"x y","url":"http://d"}}`)
			}
			mux.HandleFunc("POST "+prefix, record)
			mux.HandleFunc("POST "+prefix+"/find", record)
			mux.HandleFunc("POST "+prefix+"/find-or-create", record)
			mux.HandleFunc(prefix+"/{id}", record)
			mux.HandleFunc("POST "+prefix+"/{id}/extend", record)

			ctx := t.Context()
			steps := []func() error{
				func() error { _, err := c.Create(ctx, nil); return err },
				func() error { _, err := c.Find(ctx, "", "n"); return err },
				func() error { _, err := c.FindOrCreate(ctx, "", "n", nil); return err },
				func() error { _, err := c.Get(ctx, "x y"); return err },
				func() error { return c.Destroy(ctx, "x y") },
				func() error { return c.Extend(ctx, "x y", time.Minute) },
			}
			for i, step := range steps {
				if err := step(); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			want := []string{
				"POST " + prefix,
				"POST " + prefix + "/find",
				"POST " + prefix + "/find-or-create",
				"GET " + prefix + "/x%20y",
				"DELETE " + prefix + "/x%20y",
				"POST " + prefix + "/x%20y/extend",
			}
			if !reflect.DeepEqual(hits, want) {
				t.Fatalf("hits = %q\nwant   %q", hits, want)
			}
		})
	}
}

// TestNoRedirects checks that neither the default HTTP client nor one
// passed with WithHTTPClient follows a redirect, which would carry the API
// key header to another host.
func TestNoRedirects(t *testing.T) {
	t.Parallel()
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		writeJSON(w, 200, `{"success":true,"data":{"sandboxId":"evil"}}`)
	}))
	t.Cleanup(other.Close)
	for name, opts := range map[string][]Option{
		"default":       nil,
		"caller client": {WithHTTPClient(&http.Client{})},
	} {
		c, mux := setup(t, opts...)
		mux.HandleFunc("GET /v1/sandbox/sb-1", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/steal", http.StatusFound)
		})
		_, err := c.Get(t.Context(), "sb-1")
		ae, ok := errors.AsType[*APIError](err)
		if !ok || ae.StatusCode != http.StatusFound || IsRetryable(err) {
			t.Errorf("%s: err = %v, want a non-retryable *APIError 302", name, err)
		}
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("redirect followed: the other host got %d requests", n)
	}
}

func TestObserverAndLogger(t *testing.T) {
	t.Parallel()
	type obs struct {
		op     string
		status int
	}
	var (
		mu   sync.Mutex
		seen []obs
		logs bytes.Buffer
	)
	observer := func(op string, status int, d time.Duration) {
		if d < 0 {
			t.Errorf("negative duration %v", d)
		}
		mu.Lock()
		seen = append(seen, obs{op, status})
		mu.Unlock()
	}
	logger := slog.New(slog.NewJSONHandler(&syncWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := newFixture(t)
	c, err := NewClient(f.url, WithAPIKey(secret.New(testKey)), WithObserver(observer), WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	f.mux.HandleFunc("GET /v1/sandbox/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "gone" {
			writeJSON(w, 404, `{"success":false,"error":"not found"}`)
			return
		}
		writeJSON(w, 200, `{"success":true,"data":{"sandboxId":"sb-1","url":"`+f.url+`/daemon","token":"`+testToken+`"}}`)
	})
	f.mux.HandleFunc("GET /daemon/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, `{"status":"ok","timestamp":"2026-01-01T00:00:00Z"}`)
	})
	ctx := t.Context()
	sb, err := c.Get(ctx, "sb-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "gone"); err == nil {
		t.Fatal("want an error for a 404")
	}
	if _, err := c.Daemon(sb).Health(ctx); err != nil {
		t.Fatal(err)
	}
	// A transport error reports status 0, once per request: a health
	// read is sent three times (two in-call retries).
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	d2 := c.Daemon(&Sandbox{URL: dead.URL, Token: testToken})
	if _, err := d2.Health(ctx); err == nil {
		t.Fatal("want a transport error")
	}

	mu.Lock()
	defer mu.Unlock()
	want := []obs{{"get", 200}, {"get", 404}, {"daemon.health", 200}, {"daemon.health", 0}, {"daemon.health", 0}, {"daemon.health", 0}}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("observed %v, want %v", seen, want)
	}
	out := logs.String()
	if !strings.Contains(out, `"op":"daemon.health"`) || !strings.Contains(out, `"status":404`) {
		t.Errorf("debug log lacks request records:\n%s", out)
	}
	if strings.Contains(out, testKey) || strings.Contains(out, testToken) {
		t.Errorf("log leaks a credential:\n%s", out)
	}
}

type syncWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestSecretsNeverPrint checks every way a Client or Daemon can be printed
// or logged, and errors that could carry a credential.
func TestSecretsNeverPrint(t *testing.T) {
	t.Parallel()
	c, err := NewClient("https://user:pa55word@gw.example.com/prefix", WithAPIKey(secret.New(testKey)), WithProvider("e2b"))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Daemon(&Sandbox{SandboxID: "sb", URL: "https://sb.example.com", Token: testToken})
	sd, err := NewDaemon("http://127.0.0.1:1", secret.New(testToken))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	sb := &Sandbox{SandboxID: "sb", URL: "https://sb.example.com", Token: testToken}
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "client", c, "daemon", d, "standalone", sd, "sandbox", sb)
	if !strings.Contains(logs.String(), `"url":"https://gw.example.com/prefix/"`) || !strings.Contains(logs.String(), `"sandbox_id":"sb"`) {
		t.Errorf("log lacks the redacted values: %s", logs.String())
	}
	outs := []string{logs.String()}
	for _, v := range []any{c, d, sd, *c, *d, *sd} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%q"} {
			outs = append(outs, fmt.Sprintf(verb, v))
		}
	}
	for _, o := range outs {
		for _, s := range []string{testKey, testToken, "pa55word", fmt.Sprintf("%x", testKey), fmt.Sprintf("%x", testToken)} {
			if strings.Contains(o, s) {
				t.Errorf("printed form leaks %q: %s", s, o)
			}
		}
	}
	if got := c.String(); !strings.Contains(got, "https://gw.example.com/prefix/") || !strings.Contains(got, "e2b") {
		t.Errorf("String() = %q lacks the URL or provider", got)
	}
	if got := d.URL(); got != "https://sb.example.com" {
		t.Errorf("URL() = %q", got)
	}
}

// TestErrorsRedact checks that a server echoing a credential and a URL with
// userinfo or a token query never put them into an error.
func TestErrorsRedact(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.mux.HandleFunc("GET /v1/sandbox/sb-1", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 401, `{"success":false,"error":"invalid key `+r.Header.Get("X-ComputeSDK-API-Key")+`"}`)
	})
	f.mux.HandleFunc("GET /d/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 403, `{"error":"token `+strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")+` may not"}`)
	})
	withUser := strings.Replace(f.url, "http://", "http://user:pa55word@", 1)
	c, err := NewClient(withUser, WithAPIKey(secret.New(testKey)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(t.Context(), "sb-1")
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v, want 401", err)
	}
	_, err2 := c.Daemon(&Sandbox{URL: withUser + "/d", Token: testToken}).Health(t.Context())
	if !errors.Is(err2, ErrForbidden) {
		t.Fatalf("err = %v, want 403", err2)
	}
	for _, e := range []error{err, err2} {
		msg := e.Error()
		for _, s := range []string{testKey, testToken, "pa55word"} {
			if strings.Contains(msg, s) {
				t.Errorf("error leaks %q: %s", s, msg)
			}
		}
		if !strings.Contains(msg, "[redacted]") {
			t.Errorf("error %q should show where the credential was cut", msg)
		}
	}
}

func TestSanitizeURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"http://h/ws?token=abc&protocol=json":        "http://h/ws?token=REDACTED&protocol=json",
		"http://u:p@h/x?file=.env":                   "http://h/x?file=.env",
		"https://h/x?Access_Token=a%26b;c&path=%2Fa": "https://h/x?Access_Token=REDACTED&path=%2Fa",
		"http://h/x?to%6Ben=abc":                     "http://h/x?token=REDACTED",
	} {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := sanitizeURL(u); got != want {
			t.Errorf("sanitizeURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	c, mux := setup(t)
	mux.HandleFunc("GET /v1/sandbox/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, `{"success":true,"data":{"sandboxId":"`+r.PathValue("id")+`"}}`)
	})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			id := fmt.Sprintf("sb-%d", i)
			sb, err := c.Get(t.Context(), id)
			if err != nil || sb.SandboxID != id {
				t.Errorf("Get(%s) = %+v, %v", id, sb, err)
			}
		})
	}
	wg.Wait()
}
