package local

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/gateway"
)

// waitTimeout bounds every wait; the normal case takes milliseconds, the
// margin is for a loaded 2-core machine.
const waitTimeout = 20 * time.Second

// helperEnv switches the test binary into a managed-server helper.
const helperEnv = "LOCAL_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helperMain(mode))
	}
	os.Exit(m.Run())
}

// helperMain serves on 127.0.0.1:$PORT: "/" answers "greeting=$GREETING
// port=$PORT", "/env/<KEY>" answers the value of KEY.
func helperMain(mode string) int {
	if mode != "serve" {
		fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
		return 92
	}
	port := os.Getenv("PORT")
	l, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper listen:", err)
		return 90
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "greeting=%s port=%s", os.Getenv("GREETING"), port)
	})
	mux.HandleFunc("GET /env/{key}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, os.Getenv(r.PathValue("key")))
	})
	fmt.Println("serving on", port)
	err = http.Serve(l, mux)
	fmt.Fprintln(os.Stderr, "helper serve:", err)
	return 91
}

// helperCommand is a server start command that runs the test binary as a
// helper server (the caller sets LOCAL_TEST_HELPER=serve in environment).
func helperCommand(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return "exec '" + exe + "'"
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// startProvider starts a provider closed at the end of the test.
func startProvider(t *testing.T, opts Config) *Provider {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	p, err := Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s (status %d): %v", r.body, r.status, err)
	}
}

// object decodes the body as a JSON object.
func (r resp) object(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	r.decode(t, &m)
	return m
}

// errorText returns the "error" field of a JSON error body.
func (r resp) errorText(t *testing.T) string {
	t.Helper()
	s, _ := r.object(t)["error"].(string)
	if s == "" {
		t.Fatalf("no error message in %s", r.body)
	}
	return s
}

var testClient = &http.Client{Timeout: 60 * time.Second}

// do sends a request. body may be nil, a string (sent as is) or a value
// encoded as JSON.
func do(t *testing.T, method, url string, hdr map[string]string, body any) resp {
	t.Helper()
	r, err := tryDo(t, method, url, hdr, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tryDo is do for goroutines other than the test's: it returns errors.
func tryDo(t *testing.T, method, url string, hdr map[string]string, body any) (resp, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			return resp{}, err
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		return resp{}, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := testClient.Do(req)
	if err != nil {
		return resp{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return resp{}, err
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}, nil
}

// gw sends a gateway request with the API key.
func gw(t *testing.T, p *Provider, method, path string, body any) resp {
	t.Helper()
	return do(t, method, p.URL()+path, map[string]string{"X-ComputeSDK-API-Key": p.APIKey().Reveal()}, body)
}

// testSandbox is a sandbox created through the gateway.
type testSandbox struct {
	t   *testing.T
	p   *Provider
	rec gateway.Sandbox
}

func newSandbox(t *testing.T, p *Provider, opts map[string]any) *testSandbox {
	t.Helper()
	body := map[string]any{}
	for k, v := range opts {
		body[k] = v
	}
	r := gw(t, p, http.MethodPost, "/v1/sandboxes", body)
	if r.status != http.StatusOK {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var env struct {
		Success bool            `json:"success"`
		Data    gateway.Sandbox `json:"data"`
	}
	r.decode(t, &env)
	if !env.Success || env.Data.SandboxID == "" {
		t.Fatalf("create: %s", r.body)
	}
	return &testSandbox{t: t, p: p, rec: env.Data}
}

func (s *testSandbox) dir() string {
	s.t.Helper()
	v, ok := s.p.Sandbox(s.rec.SandboxID)
	if !ok {
		s.t.Fatalf("sandbox %s not found", s.rec.SandboxID)
	}
	return v.Dir
}

// auth is the header that authorizes daemon requests.
func (s *testSandbox) auth() map[string]string {
	return map[string]string{"Authorization": "Bearer " + s.rec.Token}
}

// do sends a daemon request with the sandbox token.
func (s *testSandbox) do(method, path string, body any) resp {
	s.t.Helper()
	return do(s.t, method, s.rec.URL+path, s.auth(), body)
}

// must sends a daemon request and fails unless it answered want.
func (s *testSandbox) must(want int, method, path string, body any) resp {
	s.t.Helper()
	r := s.do(method, path, body)
	if r.status != want {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

// data decodes the "data" member of an envelope.
func data[T any](t *testing.T, r resp) T {
	t.Helper()
	var env struct {
		Data T `json:"data"`
	}
	r.decode(t, &env)
	return env.Data
}

// waitFor polls cond until it holds or the wait times out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !poll(t, waitTimeout, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// poll checks cond every 20 ms until it holds (true) or timeout passes
// (false).
func poll(t *testing.T, timeout time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-t.Context().Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return true
}

// server fetches a server's info.
func (s *testSandbox) server(slug string) gateway.ServerInfo {
	s.t.Helper()
	r := s.must(http.StatusOK, http.MethodGet, "/servers/"+slug, nil)
	return data[struct {
		Server gateway.ServerInfo `json:"server"`
	}](s.t, r).Server
}

// waitStatus waits until a server has one of the statuses.
func (s *testSandbox) waitStatus(slug string, statuses ...string) gateway.ServerInfo {
	s.t.Helper()
	var info gateway.ServerInfo
	waitFor(s.t, "server "+slug+" to be "+strings.Join(statuses, "|"), func() bool {
		info = s.server(slug)
		for _, st := range statuses {
			if info.Status == st {
				return true
			}
		}
		return false
	})
	return info
}

// alive reports whether pid is a live (non-zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	st := b[i+2]
	return st != 'Z' && st != 'X'
}

// get fetches url and returns the body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	r := do(t, http.MethodGet, url, nil, nil)
	return r.status, string(r.body)
}
