package local

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/gateway"
)

type serverData struct {
	Server gateway.ServerInfo `json:"server"`
}

func TestServerLifecycle(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, map[string]any{"envs": map[string]string{"FROM_CREATE": "c"}})
	s.must(http.StatusCreated, http.MethodPost, "/files", map[string]any{
		"path":    "/app/.env",
		"content": "# settings\nGREETING=from-file\nFILE_ONLY=\"quoted value\"\n",
	})
	start := map[string]any{
		"slug":        "web",
		"start":       helperCommand(t),
		"path":        "app",
		"env_file":    ".env",
		"environment": map[string]string{helperEnv: "serve", "GREETING": "from-environment"},
	}
	r := s.must(http.StatusOK, http.MethodPost, "/servers", start)
	if m := r.object(t); m["status"] != "success" || m["message"] == nil {
		t.Errorf("envelope %s", r.body)
	}
	first := data[serverData](t, r).Server
	if first.Slug != "web" || first.Path != "/app" || first.RestartPolicy != "never" || first.ExitCode != nil {
		t.Errorf("start: %+v", first)
	}
	// Durations go out in nanoseconds.
	if !strings.Contains(string(r.body), `"restart_delay":1000000000`) || !strings.Contains(string(r.body), `"stop_timeout":10000000000`) {
		t.Errorf("durations: %s", r.body)
	}

	info := s.waitStatus("web", "ready")
	if info.Port == 0 || info.URL != "http://127.0.0.1:"+strconv.Itoa(info.Port) || info.PID == 0 {
		t.Fatalf("ready: %+v", info)
	}
	// The URL reaches the process; environment overrides env_file, which
	// adds to the sandbox envs.
	if code, body := get(t, info.URL+"/"); code != 200 || body != "greeting=from-environment port="+strconv.Itoa(info.Port) {
		t.Errorf("GET %s: %d %q", info.URL, code, body)
	}
	for key, want := range map[string]string{"FILE_ONLY": "quoted value", "FROM_CREATE": "c", "HOME": filepath.Join(s.dir(), "app")} {
		if _, body := get(t, info.URL+"/env/"+key); body != want {
			t.Errorf("%s = %q, want %q", key, body, want)
		}
	}

	// Starting a live slug again returns it unchanged.
	again := start
	again["start"] = "sleep 1000"
	same := data[serverData](t, s.must(http.StatusOK, http.MethodPost, "/servers", again)).Server
	if same.PID != info.PID || same.Start != first.Start || same.Status != "ready" {
		t.Errorf("idempotent start changed the server: %+v", same)
	}

	list := data[struct {
		Servers []gateway.ServerInfo `json:"servers"`
	}](t, s.must(http.StatusOK, http.MethodGet, "/servers", nil)).Servers
	if len(list) != 1 || list[0].Slug != "web" {
		t.Errorf("list %+v", list)
	}
	ready := s.must(http.StatusOK, http.MethodGet, "/ready", nil).object(t)
	if ready["ready"] != true {
		t.Errorf("/ready: %v", ready)
	}

	logs := data[gateway.ServerLogs](t, s.must(http.StatusOK, http.MethodGet, "/servers/web/logs?stream=stdout", nil))
	if logs.Slug != "web" || logs.Stream != "stdout" || !strings.Contains(logs.Logs, "serving on "+strconv.Itoa(info.Port)) {
		t.Errorf("logs %+v", logs)
	}
	s.must(http.StatusBadRequest, http.MethodGet, "/servers/web/logs?stream=nope", nil)

	r = s.must(http.StatusOK, http.MethodPatch, "/servers/web/status", map[string]any{"status": "running"})
	if d := data[map[string]string](t, r); d["slug"] != "web" || d["status"] != "running" {
		t.Errorf("patch: %s", r.body)
	}
	if st := s.server("web").Status; st != "running" {
		t.Errorf("status after patch %q", st)
	}
	s.must(http.StatusBadRequest, http.MethodPatch, "/servers/web/status", map[string]any{"status": "sleepy"})

	// Restart: a new process, ready again.
	s.must(http.StatusOK, http.MethodPost, "/servers/web/restart", nil)
	var restarted gateway.ServerInfo
	waitFor(t, "restarted server", func() bool {
		restarted = s.server("web")
		return restarted.Status == "ready" && restarted.PID != info.PID
	})
	if alive(info.PID) {
		t.Errorf("old pid %d alive after restart", info.PID)
	}

	// Stop keeps the config; the process is gone.
	r = s.must(http.StatusOK, http.MethodPost, "/servers/web/stop", nil)
	if d := data[map[string]string](t, r); d["slug"] != "web" {
		t.Errorf("stop: %s", r.body)
	}
	stopped := s.server("web")
	if stopped.Status != "stopped" || alive(restarted.PID) {
		t.Errorf("after stop: %+v, pid alive %v", stopped, alive(restarted.PID))
	}

	// Starting a stopped slug uses the new configuration.
	start["environment"] = map[string]string{helperEnv: "serve", "GREETING": "second"}
	start["start"] = helperCommand(t)
	s.must(http.StatusOK, http.MethodPost, "/servers", start)
	info = s.waitStatus("web", "ready")
	if _, body := get(t, info.URL+"/"); !strings.HasPrefix(body, "greeting=second ") {
		t.Errorf("new config not used: %q", body)
	}

	// Delete stops and forgets.
	pid := info.PID
	s.must(http.StatusOK, http.MethodDelete, "/servers/web", nil)
	s.must(http.StatusNotFound, http.MethodGet, "/servers/web", nil)
	if alive(pid) {
		t.Errorf("pid %d alive after delete", pid)
	}
}

func TestServerFailureAndV1Command(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, nil)
	// v1 clients send command instead of start.
	s.must(http.StatusOK, http.MethodPost, "/servers", map[string]any{"slug": "bad", "command": "echo boom >&2; exit 3"})
	info := s.waitStatus("bad", "failed")
	if info.ExitCode == nil || *info.ExitCode != 3 || info.Error == "" || info.Start != "echo boom >&2; exit 3" || info.Command != info.Start {
		t.Errorf("failed server: %+v", info)
	}
	logs := data[gateway.ServerLogs](t, s.must(http.StatusOK, http.MethodGet, "/servers/bad/logs", nil))
	if logs.Stream != "combined" || !strings.Contains(logs.Logs, "boom") {
		t.Errorf("logs %+v", logs)
	}
	ready := s.must(http.StatusOK, http.MethodGet, "/ready", nil).object(t)
	if ready["ready"] != false {
		t.Errorf("/ready with a failed server: %v", ready)
	}

	// A restart policy brings it back until max_restarts.
	s.must(http.StatusOK, http.MethodPost, "/servers", map[string]any{
		"slug": "flaky", "start": "exit 1", "restart_policy": "on-failure", "max_restarts": 2, "restart_delay_ms": 10,
	})
	info = s.waitStatus("flaky", "failed")
	if info.RestartCount != 2 {
		t.Errorf("restart_count %d", info.RestartCount)
	}

	for _, bad := range []map[string]any{
		{"slug": "", "start": "x"},
		{"slug": "a b", "start": "x"},
		{"slug": "ok"},
		{"slug": "ok", "start": "x", "restart_policy": "sometimes"},
		{"slug": "ok", "start": "x", "path": "/missing"},
		{"slug": "ok", "start": "x", "port": 70000},
		{"slug": "ok", "start": "x", "health_check": map[string]any{"path": "health"}},
	} {
		if r := s.do(http.MethodPost, "/servers", bad); r.status != http.StatusBadRequest {
			t.Errorf("%v: %d %s", bad, r.status, r.body)
		}
	}
	if r := s.do(http.MethodPost, "/servers", map[string]any{"slug": "ok", "start": "x", "env_file": "missing.env"}); r.status != http.StatusNotFound {
		t.Errorf("missing env_file: %d %s", r.status, r.body)
	}
	s.must(http.StatusNotFound, http.MethodGet, "/servers/nope", nil)
	s.must(http.StatusNotFound, http.MethodPost, "/servers/nope/stop", nil)
}

func TestServerHealthCheck(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, nil)
	s.must(http.StatusOK, http.MethodPost, "/servers", map[string]any{
		"slug":         "api",
		"start":        helperCommand(t),
		"environment":  map[string]string{helperEnv: "serve"},
		"health_check": map[string]any{"path": "/", "interval_ms": 50, "timeout_ms": 1000, "delay_ms": 1},
	})
	info := s.waitStatus("api", "ready")
	if info.Healthy == nil || !*info.Healthy || info.HealthStatus == nil || info.HealthCheck == nil || info.HealthCheck.IntervalMS != 50 {
		t.Errorf("health: %+v", info)
	}
	ready := s.must(http.StatusOK, http.MethodGet, "/ready", nil).object(t)
	if ready["ready"] != true || ready["healthy"] != true {
		t.Errorf("/ready: %v", ready)
	}
}

// TestDestroyStopsEveryProcess destroys a sandbox with a server (and a
// child of it) and a command running, and checks each pid.
func TestDestroyStopsEveryProcess(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, map[string]any{"name": "doomed"})
	dir := s.dir()
	s.must(http.StatusOK, http.MethodPost, "/servers", map[string]any{
		"slug": "svc", "start": "sleep 300 & exec sleep 301", "stop_timeout_ms": 200,
	})
	s.waitStatus("svc", "running")
	cmdDone := make(chan resp, 1)
	go func() {
		r, err := tryDo(t, http.MethodPost, s.rec.URL+"/run/command", s.auth(), map[string]any{"command": "sleep 302"})
		if err != nil {
			t.Error(err)
		}
		cmdDone <- r
	}()
	var pids []int
	waitFor(t, "three processes", func() bool {
		v, _ := p.Sandbox(s.rec.SandboxID)
		pids = v.PIDs
		return len(pids) >= 3
	})
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("pid %d not alive before destroy", pid)
		}
	}

	start := time.Now()
	r := gw(t, p, http.MethodDelete, "/v1/sandboxes/"+s.rec.SandboxID, nil)
	if r.status != http.StatusOK {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	t.Logf("destroy took %v", time.Since(start))
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d alive after destroy", pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory still there: %v", err)
	}
	if _, ok := p.Sandbox(s.rec.SandboxID); ok {
		t.Error("sandbox still listed")
	}
	select {
	case cr := <-cmdDone:
		// The command ended with the sandbox: killed (failed) or the
		// sandbox gone (404), never a success.
		if cr.status == http.StatusOK {
			if res := data[gateway.CommandResult](t, cr); res.Status != "failed" {
				t.Errorf("command after destroy: %s", cr.body)
			}
		}
	case <-time.After(waitTimeout):
		t.Fatal("command request did not end with the sandbox")
	}
	r = s.do(http.MethodGet, "/health", nil)
	if r.status != http.StatusNotFound {
		t.Errorf("daemon after destroy: %d", r.status)
	}
}
