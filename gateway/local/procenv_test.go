package local

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// envLines parses the output of env into a map.
func envLines(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// TestProcessEnvironmentIsClean sets a secret-like variable, a locale and a
// time zone in this process (the provider's host) and checks what a command
// and a server see: PATH, HOME and TMPDIR inside the sandbox, the locale and
// time zone, PORT for the server, the sandbox's and the request's own
// variables, and nothing else of the host. Not parallel: it sets this
// process's environment.
func TestProcessEnvironmentIsClean(t *testing.T) {
	const marker = "sandboxq-host-secret-3f9a"
	t.Setenv("SANDBOXQ_TEST_HOST_SECRET", marker)
	t.Setenv("REDIS_URL", "redis://:"+marker+"@127.0.0.1:6379")
	t.Setenv("LANG", "C.UTF-8")
	t.Setenv("LC_TIME", "C")
	t.Setenv("TZ", "Europe/Paris")
	p := startProvider(t, Config{})
	s := newSandbox(t, p, map[string]any{"envs": map[string]string{"SBX_VAR": "sandbox"}})
	dir := s.dir()

	check := func(what string, env map[string]string, raw string) {
		t.Helper()
		if strings.Contains(raw, marker) {
			t.Errorf("%s: a host variable reached the process:\n%s", what, raw)
		}
		want := map[string]string{
			"HOME": dir, "TMPDIR": filepath.Join(dir, "tmp"), "LANG": "C.UTF-8", "LC_TIME": "C",
			"TZ": "Europe/Paris", "SBX_VAR": "sandbox",
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("%s: %s=%q, want %q", what, k, env[k], v)
			}
		}
		if env["PATH"] == "" {
			t.Errorf("%s: no PATH", what)
		}
		if fi, err := os.Stat(env["TMPDIR"]); err != nil || !fi.IsDir() {
			t.Errorf("%s: TMPDIR %q is not a directory: %v", what, env["TMPDIR"], err)
		}
	}

	res := s.run(map[string]any{"command": "env", "env": map[string]string{"REQ": "r"}})
	cmdEnv := envLines(res.Stdout)
	check("command", cmdEnv, res.Stdout)
	if cmdEnv["REQ"] != "r" {
		t.Errorf("command: REQ=%q", cmdEnv["REQ"])
	}

	s.must(http.StatusOK, http.MethodPost, "/servers", map[string]any{
		"slug": "envdump", "start": `env > "$TMPDIR/server.env"; exec sleep 300`,
		"environment": map[string]string{"SRV": "s"},
	})
	out := filepath.Join(dir, "tmp", "server.env")
	var raw []byte
	waitFor(t, "the server to write its environment", func() bool {
		b, err := os.ReadFile(out)
		raw = b
		return err == nil && strings.Contains(string(b), "SRV=s")
	})
	srvEnv := envLines(string(raw))
	check("server", srvEnv, string(raw))
	if srvEnv["PORT"] == "" || srvEnv["SRV"] != "s" {
		t.Errorf("server: PORT=%q SRV=%q", srvEnv["PORT"], srvEnv["SRV"])
	}
}
