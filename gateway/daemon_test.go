package gateway

import (
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/internal/secret"
)

// setupDaemon returns a daemon client (built the usual way, from a gateway
// Client and a Sandbox) for a fresh fixture.
func setupDaemon(t *testing.T, opts ...Option) (*Daemon, *fixture) {
	t.Helper()
	f := newFixture(t)
	c, err := NewClient("http://gateway.invalid", append([]Option{WithAPIKey(secret.New(testKey))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c.Daemon(&Sandbox{SandboxID: "sb-1", URL: f.url + "/", Token: testToken}), f
}

// authed checks the daemon's auth headers: the bearer token, never the
// gateway API key.
func authed(t *testing.T, r *http.Request) {
	t.Helper()
	testHeader(t, r, "Authorization", "Bearer "+testToken)
	testHeader(t, r, "X-ComputeSDK-API-Key", "")
	if r.Method == http.MethodGet || r.ContentLength == 0 {
		testHeader(t, r, "Content-Type", "")
	} else {
		testHeader(t, r, "Content-Type", "application/json")
	}
}

func TestDaemon_Health(t *testing.T) {
	t.Parallel()
	d, f := setupDaemon(t)
	f.mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		authed(t, r)
		writeJSON(w, 200, `{"status":"ok","timestamp":"2026-04-01T10:00:00Z"}`)
	})
	h, err := d.Health(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if *h != (Health{Status: "ok", Timestamp: "2026-04-01T10:00:00Z"}) {
		t.Errorf("health = %+v", h)
	}
	if d.URL() != f.url {
		t.Errorf("URL() = %q, want %q", d.URL(), f.url)
	}
}

func TestDaemon_Servers(t *testing.T) {
	t.Parallel()
	d, f := setupDaemon(t)
	mux := f.mux
	server := readTestdata(t, "server_running.json")
	mux.HandleFunc("GET /servers", func(w http.ResponseWriter, r *http.Request) {
		authed(t, r)
		writeJSON(w, 200, `{"status":"success","message":"ok","data":{"servers":[{"slug":"a","status":"ready","restart_count":0,"exit_code":null},{"slug":"b","status":"failed","restart_count":2,"exit_code":1}]}}`)
	})
	mux.HandleFunc("POST /servers", func(w http.ResponseWriter, r *http.Request) {
		authed(t, r)
		testBody(t, r, `{"slug":"web app","start":"npm run dev","install":"npm install","path":"/home/user/app",
			"environment":{"NODE_ENV":"development"},"port":3000,"restart_policy":"on-failure","max_restarts":3,
			"health_check":{"path":"/healthz","interval_ms":2000}}`)
		writeJSON(w, 201, server)
	})
	mux.HandleFunc("GET /servers/{slug}", func(w http.ResponseWriter, r *http.Request) {
		authed(t, r)
		if r.URL.EscapedPath() == "/servers/web%20app" {
			writeJSON(w, 200, server)
			return
		}
		writeJSON(w, 404, `{"error":"server not found"}`)
	})
	mux.HandleFunc("POST /servers/{slug}/stop", func(w http.ResponseWriter, r *http.Request) {
		authed(t, r)
		testNoBody(t, r)
		if r.URL.EscapedPath() != "/servers/web%20app/stop" {
			t.Errorf("path = %s", r.URL.EscapedPath())
		}
		writeJSON(w, 200, `{"status":"success","message":"Server stopped","data":{"slug":"web app"}}`)
	})
	mux.HandleFunc("POST /servers/{slug}/restart", func(w http.ResponseWriter, r *http.Request) {
		authed(t, r)
		writeJSON(w, 200, server)
	})
	mux.HandleFunc("DELETE /servers/{slug}", func(w http.ResponseWriter, r *http.Request) {
		authed(t, r)
		if r.PathValue("slug") != "web app" {
			t.Errorf("slug = %q", r.PathValue("slug"))
		}
		writeJSON(w, 200, `{"status":"success","message":"Server deleted","data":{"slug":"web app"}}`)
	})
	mux.HandleFunc("GET /servers/{slug}/logs", func(w http.ResponseWriter, r *http.Request) {
		authed(t, r)
		stream := r.URL.Query().Get("stream")
		writeJSON(w, 200, `{"status":"success","message":"ok","data":{"slug":"web app","stream":"`+stream+`","logs":"listening\n"}}`)
	})
	ctx := t.Context()

	list, err := d.ListServers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Slug != "a" || list[1].Status != sandboxq.ServerFailed || list[1].ExitCode == nil || *list[1].ExitCode != 1 {
		t.Errorf("ListServers = %+v", list)
	}

	started, err := d.StartServer(ctx, ServerStartOptions{
		Slug: "web app", Start: "npm run dev", Install: "npm install", Path: "/home/user/app",
		Environment: map[string]string{"NODE_ENV": "development"}, Port: 3000,
		RestartPolicy: sandboxq.RestartOnFailure, MaxRestarts: 3,
		HealthCheck: &HealthCheck{Path: "/healthz", IntervalMS: 2000},
	})
	if err != nil {
		t.Fatal(err)
	}
	if started.Slug != "web app" || started.Status != sandboxq.ServerRunning || started.PID != 4242 ||
		started.RestartDelay != time.Second || started.StopTimeout != 10*time.Second ||
		started.HealthStatus == nil || started.HealthStatus.LastStatus != 200 || started.Healthy == nil || !*started.Healthy {
		t.Errorf("StartServer = %+v", started)
	}

	got, err := d.GetServer(ctx, "web app")
	if err != nil || !reflect.DeepEqual(got, started) {
		t.Errorf("GetServer = %+v, %v", got, err)
	}
	_, err = d.GetServer(ctx, "nope")
	ae, ok := errors.AsType[*APIError](err)
	if !errors.Is(err, ErrNotFound) || !ok || ae.Message != "server not found" || ae.Op != "daemon.get_server" {
		t.Errorf("GetServer(nope): err = %v", err)
	}
	if err := d.StopServer(ctx, "web app"); err != nil {
		t.Errorf("StopServer: %v", err)
	}
	if s, err := d.RestartServer(ctx, "web app"); err != nil || s.Slug != "web app" {
		t.Errorf("RestartServer = %+v, %v", s, err)
	}
	if err := d.DeleteServer(ctx, "web app"); err != nil {
		t.Errorf("DeleteServer: %v", err)
	}
	logs, err := d.ServerLogs(ctx, "web app", LogCombined)
	if err != nil || *logs != (ServerLogs{Slug: "web app", Stream: "combined", Logs: "listening\n"}) {
		t.Errorf("ServerLogs = %+v, %v", logs, err)
	}
	if logs, err := d.ServerLogs(ctx, "web app", ""); err != nil || logs.Stream != "" {
		t.Errorf("ServerLogs(default) = %+v, %v", logs, err)
	}

	// Bad input is refused before any request.
	for name, call := range map[string]func() error{
		"no slug":    func() error { _, err := d.StartServer(ctx, ServerStartOptions{Start: "x"}); return err },
		"no start":   func() error { _, err := d.StartServer(ctx, ServerStartOptions{Slug: "x"}); return err },
		"dot slug":   func() error { _, err := d.GetServer(ctx, ".."); return err },
		"empty stop": func() error { return d.StopServer(ctx, "") },
		"bad stream": func() error { _, err := d.ServerLogs(ctx, "x", "both"); return err },
	} {
		if err := call(); err == nil || IsRetryable(err) {
			t.Errorf("%s: err = %v, want a non-retryable input error", name, err)
		}
	}
}

func TestDaemon_FilePathEncoding(t *testing.T) {
	t.Parallel()
	d, f := setupDaemon(t)
	var lastPath atomic.Value
	f.handleRaw(http.MethodGet, "/files/", func(w http.ResponseWriter, r *http.Request, rest string) {
		authed(t, r)
		lastPath.Store(r.URL.EscapedPath())
		if r.URL.RawQuery != "content=true" {
			t.Errorf("query = %q, want content=true", r.URL.RawQuery)
		}
		writeJSON(w, 200, `{"message":"ok","data":{"file":{"name":"x","path":"x","size":2},"content":"hi"}}`)
	})
	f.handleRaw(http.MethodDelete, "/files/", func(w http.ResponseWriter, r *http.Request, rest string) {
		authed(t, r)
		lastPath.Store(r.URL.EscapedPath())
		w.WriteHeader(http.StatusNoContent)
	})
	ctx := t.Context()
	for in, want := range map[string]string{
		"/tmp/a.txt":         "/files//tmp/a.txt",
		"src/a b.ts":         "/files/src/a%20b.ts",
		"/x/../y%z#?.txt":    "/files//y%25z%23%3F.txt",
		"/home//user/./f":    "/files//home/user/f",
		"/":                  "/files//",
		"ünï/cödé":           "/files/%C3%BCn%C3%AF/c%C3%B6d%C3%A9",
		"dir/sub/../../file": "/files/file",
	} {
		content, err := d.ReadFile(ctx, in)
		if err != nil || content != "hi" {
			t.Errorf("ReadFile(%q) = %q, %v", in, content, err)
			continue
		}
		if got := lastPath.Load(); got != basePath+want {
			t.Errorf("ReadFile(%q) path = %v, want %s", in, got, basePath+want)
		}
		if err := d.DeleteFile(ctx, in); err != nil {
			t.Errorf("DeleteFile(%q): %v", in, err)
		} else if got := lastPath.Load(); got != basePath+want {
			t.Errorf("DeleteFile(%q) path = %v, want %s", in, got, basePath+want)
		}
	}
	for in, want := range map[string]string{
		"":                                       "empty",
		"../etc/passwd":                          "leaves the working directory",
		"..":                                     "leaves the working directory",
		".":                                      "leaves the working directory",
		"a/\x00b":                                "NUL",
		"/" + strings.Repeat("a", MaxPathLength): "longer than",
	} {
		if _, err := d.ReadFile(ctx, in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadFile(%.20q): err = %v, want it to mention %q", in, err, want)
		}
	}
}

func TestDaemon_Files(t *testing.T) {
	t.Parallel()
	d, f := setupDaemon(t)
	mux := f.mux
	mux.HandleFunc("GET /files", func(w http.ResponseWriter, r *http.Request) {
		authed(t, r)
		dir := r.URL.Query().Get("path")
		if _, ok := r.URL.Query()["path"]; !ok {
			dir = "(none)"
		}
		writeJSON(w, 200, `{"message":"ok","data":{"path":"`+dir+`","files":[
			{"name":"`+dir+`","path":"/app/a.txt","size":5,"is_dir":false,"modified_at":"2026-04-01T10:00:00Z"},
			{"name":"src","path":"/app/src","size":0,"is_dir":true,"modified_at":"2026-04-01T10:00:00Z"}]}}`)
	})
	mux.HandleFunc("POST /files", func(w http.ResponseWriter, r *http.Request) {
		authed(t, r)
		testBody(t, r, `{"path":"/app/a.txt","content":"héllo\n\"q\""}`)
		writeJSON(w, 201, `{"message":"File created","data":{"file":{"name":"a.txt","path":"/app/a.txt","size":11,"is_dir":false,"modified_at":"2026-04-01T10:00:00Z"}}}`)
	})
	var batchStatus atomic.Int32
	mux.HandleFunc("POST /files/batch", func(w http.ResponseWriter, r *http.Request) {
		authed(t, r)
		testBody(t, r, `{"files":[{"path":"/app/a.txt","operation":"write","content":"hello"},
			{"path":"/app/locked/b.txt","operation":"write"},{"path":"/app/old.txt","operation":"delete"}]}`)
		writeJSON(w, int(batchStatus.Load()), readTestdata(t, "batch_207.json"))
	})
	ctx := t.Context()

	files, err := d.ListFiles(ctx, "/app dir")
	if err != nil || len(files) != 2 || files[0].Name != "/app dir" || !files[1].IsDir || files[0].Size != 5 ||
		!files[0].ModifiedAt.Equal(time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("ListFiles = %+v, %v", files, err)
	}
	if files, err := d.ListFiles(ctx, ""); err != nil || files[0].Name != "(none)" {
		t.Errorf("ListFiles(\"\") should send no path: %+v, %v", files, err)
	}

	fi, err := d.WriteFile(ctx, "/app/a.txt", "héllo\n\"q\"")
	if err != nil || fi.Path != "/app/a.txt" || fi.Size != 11 {
		t.Errorf("WriteFile = %+v, %v", fi, err)
	}

	ops := []BatchFile{
		{Path: "/app/a.txt", Operation: BatchWrite, Content: "hello"},
		{Path: "/app/locked/b.txt", Operation: BatchWrite},
		{Path: "/app/old.txt", Operation: BatchDelete},
	}
	for _, status := range []int32{200, 207} {
		batchStatus.Store(status)
		res, err := d.BatchFiles(ctx, ops)
		if err != nil {
			t.Fatalf("BatchFiles (%d): %v", status, err)
		}
		if len(res) != 3 || !res[0].Success || res[0].File == nil || res[0].File.Size != 5 ||
			res[1].Success || res[1].Error != "permission denied" || !res[2].Success {
			t.Errorf("BatchFiles (%d) = %+v", status, res)
		}
	}
	for name, bad := range map[string][]BatchFile{
		"empty":   nil,
		"no path": {{Operation: BatchWrite}},
		"bad op":  {{Path: "/a", Operation: "append"}},
	} {
		if _, err := d.BatchFiles(ctx, bad); err == nil || IsRetryable(err) {
			t.Errorf("BatchFiles(%s): err = %v", name, err)
		}
	}
	if _, err := d.WriteFile(ctx, "", "x"); err == nil {
		t.Error("WriteFile with an empty path: no error")
	}
}

func TestDaemon_RunCommand(t *testing.T) {
	t.Parallel()
	d, f := setupDaemon(t, WithTimeout(30*time.Millisecond))
	f.mux.HandleFunc("POST /run/command", func(w http.ResponseWriter, r *http.Request) {
		authed(t, r)
		b, _ := io.ReadAll(r.Body)
		switch {
		case strings.Contains(string(b), `"command":"slow"`):
			// Longer than the client timeout, well inside TimeoutMS.
			select {
			case <-time.After(300 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		case strings.Contains(string(b), `"command":"hang"`):
			<-r.Context().Done()
			return
		default:
			if string(b) != `{"command":"ls -la","shell":"bash","cwd":"/app","env":{"A":"b"},"timeout_ms":5000}` {
				t.Errorf("body = %s", b)
			}
		}
		writeJSON(w, 200, `{"message":"ok","data":{"command":"ls -la","stdout":"a\n","stderr":"","exit_code":0,"duration_ms":12,"status":"completed"}}`)
	})
	ctx := t.Context()
	res, err := d.RunCommand(ctx, RunCommandRequest{Command: "ls -la", Shell: "bash", Cwd: "/app", Env: map[string]string{"A": "b"}, TimeoutMS: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Stdout != "a\n" || res.ExitCode == nil || *res.ExitCode != 0 || res.DurationMS != 12 || res.Status != "completed" {
		t.Errorf("RunCommand = %+v", res)
	}
	if _, err := d.RunCommand(ctx, RunCommandRequest{Command: "slow", TimeoutMS: 2000}); err != nil {
		t.Errorf("a command with TimeoutMS must outlive the client timeout: %v", err)
	}
	_, err = d.RunCommand(ctx, RunCommandRequest{Command: "hang"})
	if !errors.Is(err, ErrRequestTimeout) || !IsRetryable(err) || errors.Is(err, ErrNotFound) {
		t.Errorf("hang: err = %v, want a retryable ErrRequestTimeout", err)
	}
	for _, bad := range []RunCommandRequest{{}, {Command: "  "}, {Command: "x", TimeoutMS: -1}} {
		if _, err := d.RunCommand(ctx, bad); err == nil {
			t.Errorf("RunCommand(%+v): no error", bad)
		}
	}
}

func TestDaemon_Env(t *testing.T) {
	t.Parallel()
	d, f := setupDaemon(t)
	f.mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		authed(t, r)
		if got := r.URL.Query().Get("file"); got != "apps/web/.env local" {
			t.Errorf("file = %q", got)
		}
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, 200, `{"status":"success","message":"ok","data":{"file":".env","variables":{"A":"1","B":"two"}}}`)
		case http.MethodPost:
			testBody(t, r, `{"variables":{"A":"1","C":"x=y"}}`)
			writeJSON(w, 200, `{"status":"success","message":"ok","data":{"file":".env","keys":["A","C"]}}`)
		case http.MethodDelete:
			testBody(t, r, `{"keys":["B"]}`)
			writeJSON(w, 200, `{"status":"success","message":"ok","data":{"file":".env","keys":["B"]}}`)
		default:
			t.Errorf("method %s", r.Method)
		}
	})
	ctx := t.Context()
	const file = "apps/web/.env local"
	vars, err := d.GetEnv(ctx, file)
	if err != nil || !reflect.DeepEqual(vars, map[string]string{"A": "1", "B": "two"}) {
		t.Errorf("GetEnv = %v, %v", vars, err)
	}
	keys, err := d.SetEnv(ctx, file, map[string]string{"A": "1", "C": "x=y"})
	if err != nil || !reflect.DeepEqual(keys, []string{"A", "C"}) {
		t.Errorf("SetEnv = %v, %v", keys, err)
	}
	keys, err = d.DeleteEnv(ctx, file, []string{"B"})
	if err != nil || !reflect.DeepEqual(keys, []string{"B"}) {
		t.Errorf("DeleteEnv = %v, %v", keys, err)
	}
	for name, call := range map[string]func() error{
		"no file":   func() error { _, err := d.GetEnv(ctx, ""); return err },
		"no vars":   func() error { _, err := d.SetEnv(ctx, ".env", nil); return err },
		"bad key":   func() error { _, err := d.SetEnv(ctx, ".env", map[string]string{"A=B": "x"}); return err },
		"no keys":   func() error { _, err := d.DeleteEnv(ctx, ".env", nil); return err },
		"nl key":    func() error { _, err := d.DeleteEnv(ctx, ".env", []string{"A\nB"}); return err },
		"empty key": func() error { _, err := d.DeleteEnv(ctx, ".env", []string{""}); return err },
	} {
		if err := call(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestDaemon_StartSignals(t *testing.T) {
	t.Parallel()
	d, f := setupDaemon(t)
	f.mux.HandleFunc("POST /signals/start", func(w http.ResponseWriter, r *http.Request) {
		authed(t, r)
		testNoBody(t, r)
		writeJSON(w, 200, `{"message":"Signal service started","data":{"status":"active","channel":"signals","ws_url":"/ws"}}`)
	})
	s, err := d.StartSignals(t.Context())
	if err != nil || *s != (SignalsStatus{Status: "active", Channel: "signals", WSURL: "/ws"}) {
		t.Errorf("StartSignals = %+v, %v", s, err)
	}
}

// TestDaemon_Envelopes checks the three envelope styles and what happens
// when an envelope lacks data.
func TestDaemon_Envelopes(t *testing.T) {
	t.Parallel()
	d, f := setupDaemon(t)
	var body atomic.Value
	f.mux.HandleFunc("POST /signals/start", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, body.Load().(string))
	})
	ctx := t.Context()
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{`{"message":"m","data":{"status":"active","channel":"signals"}}`, true},
		{`{"status":"success","message":"m","data":{"status":"active","channel":"signals"}}`, true},
		{`{"message":"m"}`, false},
		{`{"message":"m","data":null}`, false},
		{`<html>proxy error</html>`, false},
	} {
		body.Store(tc.body)
		s, err := d.StartSignals(ctx)
		if tc.ok {
			if err != nil || s.Channel != "signals" {
				t.Errorf("%s: %+v, %v", tc.body, s, err)
			}
			continue
		}
		if err == nil || IsRetryable(err) {
			t.Errorf("%s: err = %v, want a non-retryable decode error", tc.body, err)
		}
	}
}

func TestDaemon_Construction(t *testing.T) {
	t.Parallel()
	c, err := NewClient("http://gateway.invalid")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var zeroClient *Client
	for name, d := range map[string]*Daemon{
		"zero daemon": {},
		"nil daemon":  nil,
		"nil client":  zeroClient.Daemon(&Sandbox{URL: "http://h"}),
		"nil sandbox": c.Daemon(nil),
		"bad url":     c.Daemon(&Sandbox{SandboxID: "sb-x", URL: "ftp://h", Token: testToken}),
		"no url":      c.Daemon(&Sandbox{SandboxID: "sb-x", Token: testToken}),
	} {
		if _, err := d.Health(ctx); err == nil || IsRetryable(err) {
			t.Errorf("%s: Health err = %v, want a non-retryable error", name, err)
		}
		if _, err := d.DialWS(ctx); err == nil {
			t.Errorf("%s: DialWS: no error", name)
		}
		if d.URL() != "" {
			t.Errorf("%s: URL() = %q", name, d.URL())
		}
	}
	var zc Client
	if _, err := zc.Get(ctx, "x"); err == nil || !strings.Contains(err.Error(), "NewClient") {
		t.Errorf("zero Client: err = %v", err)
	}
	if _, err := NewDaemon("nope", secret.New("t")); err == nil {
		t.Error("NewDaemon with a bad URL: no error")
	}
	if _, err := NewDaemon("http://h", secret.New("t\n")); err == nil {
		t.Error("NewDaemon with a control character in the token: no error")
	}
}

func TestNewDaemon_Standalone(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var (
		mu  sync.Mutex
		ops []string
	)
	d, err := NewDaemon(f.url, secret.New(testToken), WithUserAgent("ua/1"), WithObserver(func(op string, status int, _ time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		ops = append(ops, op)
	}))
	if err != nil {
		t.Fatal(err)
	}
	f.mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		authed(t, r)
		testHeader(t, r, "User-Agent", "ua/1")
		writeJSON(w, 200, `{"status":"ok"}`)
	})
	if _, err := d.Health(t.Context()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if !reflect.DeepEqual(ops, []string{"daemon.health"}) {
		t.Errorf("ops = %v", ops)
	}
	mu.Unlock()

	// An empty token sends no Authorization header.
	d2, err := NewDaemon(f.url, secret.Secret{})
	if err != nil {
		t.Fatal(err)
	}
	f.mux.HandleFunc("GET /servers", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Header["Authorization"]; ok {
			t.Error("Authorization sent without a token")
		}
		writeJSON(w, 401, `{"error":"missing token"}`)
	})
	if _, err := d2.ListServers(t.Context()); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("err = %v, want ErrUnauthorized", err)
	}
}
