package local

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sandboxq/sandboxq/gateway"
)

func (s *testSandbox) run(req map[string]any) gateway.CommandResult {
	s.t.Helper()
	return data[gateway.CommandResult](s.t, s.must(http.StatusOK, http.MethodPost, "/run/command", req))
}

func TestRunCommand(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{MaxOutput: 100})
	s := newSandbox(t, p, map[string]any{"envs": map[string]string{"SBX_VAR": "from-create", "OVER": "create"}})
	dir := s.dir()

	res := s.run(map[string]any{"command": "echo out; echo err >&2; exit 3"})
	if res.Stdout != "out\n" || res.Stderr != "err\n" || res.ExitCode == nil || *res.ExitCode != 3 || res.Status != "failed" || res.Command == "" {
		t.Errorf("exit 3: %+v", res)
	}
	res = s.run(map[string]any{"command": "true"})
	if *res.ExitCode != 0 || res.Status != "completed" || res.Truncated {
		t.Errorf("true: %+v", res)
	}

	// cwd is confined and resolved under the sandbox; env layers.
	s.must(http.StatusCreated, http.MethodPost, "/files", map[string]any{"path": "/work/x", "content": ""})
	res = s.run(map[string]any{
		"command": `pwd; echo "$SBX_VAR $OVER $REQ"`,
		"cwd":     "/work",
		"env":     map[string]string{"OVER": "request", "REQ": "r"},
	})
	if want := filepath.Join(dir, "work") + "\nfrom-create request r\n"; res.Stdout != want {
		t.Errorf("cwd/env: %q, want %q", res.Stdout, want)
	}
	// Nothing of the provider's own environment leaks in but PATH.
	res = s.run(map[string]any{"command": "env | cut -d= -f1"})
	seen := map[string]bool{}
	for _, line := range strings.Split(res.Stdout, "\n") {
		seen[line] = true
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH", "HOME", "PWD", "OLDPWD", "SHLVL", "_", "LANG", "LANGUAGE", "TZ", "TMPDIR":
		default:
			if strings.HasPrefix(k, "LC_") {
				continue
			}
			if seen[k] {
				t.Errorf("host variable %s reached the command", k)
			}
		}
	}
	if !seen["SBX_VAR"] || !seen["HOME"] {
		t.Errorf("env: %q", res.Stdout)
	}
	res = s.run(map[string]any{"command": "pwd"})
	if res.Stdout != dir+"\n" {
		t.Errorf("default cwd %q, want %q", res.Stdout, dir)
	}
	s.must(http.StatusBadRequest, http.MethodPost, "/run/command", map[string]any{"command": "pwd", "cwd": "/missing"})

	// Output is capped per stream.
	res = s.run(map[string]any{"command": "i=0; while [ $i -lt 50 ]; do printf 0123456789; i=$((i+1)); done"})
	if len(res.Stdout) != 100 || !res.Truncated {
		t.Errorf("cap: %d bytes, truncated %v", len(res.Stdout), res.Truncated)
	}

	// The legacy /execute adds output.
	r := s.must(http.StatusOK, http.MethodPost, "/execute", map[string]any{"command": "echo a; echo b >&2"})
	var legacy struct {
		Output   string `json:"output"`
		ExitCode *int   `json:"exit_code"`
	}
	legacy = data[struct {
		Output   string `json:"output"`
		ExitCode *int   `json:"exit_code"`
	}](t, r)
	if legacy.Output != "a\nb\n" || *legacy.ExitCode != 0 {
		t.Errorf("execute: %s", r.body)
	}

	for _, bad := range []map[string]any{
		{"command": ""},
		{"command": "sleep 1", "background": true},
		{"command": "echo", "shell": "no-such-shell"},
		{"command": "echo", "shell": "../bin/sh"},
		{"command": "echo", "env": map[string]string{"A=B": "x"}},
		{"command": strings.Repeat("x", 129<<10)},
		{"command": "echo", "timeout_ms": -1},
	} {
		r := s.do(http.MethodPost, "/run/command", bad)
		if r.status != http.StatusBadRequest {
			t.Errorf("%v: status %d: %s", bad, r.status, r.body)
		}
	}
	res = s.run(map[string]any{"command": "echo $0", "shell": "bash"})
	if !strings.Contains(res.Stdout, "bash") {
		t.Errorf("shell bash: %q", res.Stdout)
	}
}

func TestRunCommandTimeoutKillsGroup(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, nil)
	res := s.run(map[string]any{
		"command":    "sleep 300 & echo $! > bg.pid; echo started; wait",
		"timeout_ms": 300,
	})
	if res.ExitCode == nil || *res.ExitCode != 124 || res.Status != "failed" || !strings.HasPrefix(res.Stdout, "started") {
		t.Fatalf("timeout: %+v", res)
	}
	if res.DurationMS < 300 || res.DurationMS > 30000 {
		t.Errorf("duration %d ms", res.DurationMS)
	}
	b, err := os.ReadFile(filepath.Join(s.dir(), "bg.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "background child to die", func() bool { return !alive(pid) })

	// A finished command leaves nothing behind either.
	res = s.run(map[string]any{"command": "sleep 300 & echo $! > bg2.pid"})
	if *res.ExitCode != 0 {
		t.Fatalf("%+v", res)
	}
	b, _ = os.ReadFile(filepath.Join(s.dir(), "bg2.pid"))
	pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	waitFor(t, "leftover child to die", func() bool { return pid > 0 && !alive(pid) })
}
