package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/tasks"
)

func statusSeq() []waitStatus {
	return []waitStatus{
		{ID: "t1", Type: "server:start", State: "pending", Attempt: 1, MaxAttempt: 4, ElapsedMS: 100},
		{ID: "t1", Type: "server:start", State: "pending", Attempt: 1, MaxAttempt: 4, ElapsedMS: 1200},
		{ID: "t1", Type: "server:start", State: "active", Attempt: 1, MaxAttempt: 4, ElapsedMS: 2300, Server: "starting", Progress: `{"status":"starting"}`},
		{ID: "t1", Type: "server:start", State: "retry", Attempt: 2, MaxAttempt: 4, ElapsedMS: 3400, LastError: "gateway 503"},
	}
}

func TestStatusLineModes(t *testing.T) {
	t.Parallel()
	show := func(mode statusMode) string {
		var b bytes.Buffer
		sw := &statusWriter{w: &b, mode: mode, name: "server:start t1"}
		for _, s := range statusSeq() {
			sw.update(s)
		}
		sw.done()
		return b.String()
	}

	plain := show(statusLines)
	if strings.ContainsAny(plain, "\r\x1b") {
		t.Errorf("not a terminal: control characters in %q", plain)
	}
	wantPlain := "enqueue: server:start t1: pending\n" +
		"enqueue: server:start t1: active\n" +
		`enqueue: server:start t1: progress {"status":"starting"}` + "\n" +
		"enqueue: server:start t1: retry (attempt 1 of 4 failed: gateway 503)\n"
	if plain != wantPlain {
		t.Errorf("plain lines:\n%s\nwant:\n%s", plain, wantPlain)
	}

	live := show(statusLive)
	if strings.Contains(live, "\n") {
		t.Errorf("terminal: the status line is not replaced in place: %q", live)
	}
	frames := strings.Split(live, clearLine)
	// Each update redraws the line (the elapsed time moves), and done
	// clears it for the final line.
	if len(frames) != 6 || frames[0] != "" || frames[5] != "" {
		t.Fatalf("terminal frames %q", frames)
	}
	for i, want := range []string{
		"enqueue: server:start t1: pending, attempt 1/4, 0s",
		"enqueue: server:start t1: pending, attempt 1/4, 1s",
		"enqueue: server:start t1: active, attempt 1/4, 2s, server starting",
		"enqueue: server:start t1: retry, attempt 2/4, 3s, last error: gateway 503",
	} {
		if frames[i+1] != want {
			t.Errorf("frame %d = %q, want %q", i+1, frames[i+1], want)
		}
	}

	js := show(statusJSON)
	lines := strings.Split(strings.TrimSuffix(js, "\n"), "\n")
	if len(lines) != 3 { // the second status only moved the elapsed time
		t.Fatalf("JSON mode: want 3 lines, got %q", js)
	}
	for _, l := range lines {
		var s waitStatus
		if err := json.Unmarshal([]byte(l), &s); err != nil || s.ID != "t1" {
			t.Errorf("JSON mode: line %q: %v", l, err)
		}
	}
	if !strings.Contains(lines[1], `"server_status":"starting"`) || strings.ContainsAny(js, "\r\x1b") {
		t.Errorf("JSON mode lines: %q", js)
	}
}

func TestNewWaitStatusReadsTheServerStatus(t *testing.T) {
	t.Parallel()
	s := newWaitStatus(&tasks.Result{ID: "x", Type: "server:start", State: tasks.StateActive, Retried: 2, MaxRetry: 5,
		Result: []byte(`{"slug":"web","status":"installing"}`)}, 1500*time.Millisecond)
	if s.Attempt != 3 || s.MaxAttempt != 6 || s.Server != "installing" || s.ElapsedMS != 1500 {
		t.Errorf("status %+v", s)
	}
}

func TestGlobalFlagsBeforeTheCommand(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want []string }{
		{[]string{"--redis-url", "redis://h:1", "status", "id"}, []string{"status", "--redis-url", "redis://h:1", "id"}},
		{[]string{"--json", "--redis-url=redis://h:1", "--namespace", "ns", "list", "--name", "p"}, []string{"list", "--json", "--redis-url=redis://h:1", "--namespace", "ns", "--name", "p"}},
		{[]string{"status", "--json", "id"}, []string{"status", "--json", "id"}},
		{[]string{"-h"}, []string{"-h"}},
		{[]string{"--json"}, []string{"--json"}},
	} {
		if got := hoistGlobalFlags(tc.in, valueFlags(commands())); !slices.Equal(got, tc.want) {
			t.Errorf("hoistGlobalFlags(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}

	// The flag before the command is the one used: this Redis does not
	// answer, while REDIS_URL names one that does.
	db := redistest.New(t)
	r := cli{redisURL: db.URL()}.must(t, exitNoRedis, "--redis-url", "redis://127.0.0.1:1", "status", "some-id")
	if !strings.Contains(r.stderr, "127.0.0.1:1") {
		t.Errorf("stderr %q does not name the Redis of --redis-url", r.stderr)
	}
	r = cli{redisURL: db.URL()}.must(t, exitUsage, "--since", "0", "status", "some-id")
	if !strings.Contains(r.stderr, "since") {
		t.Errorf("a flag the command does not take: stderr %q does not name it", r.stderr)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	r := cli{}.must(t, exitOK, "version")
	if !strings.HasPrefix(r.stdout, "enqueue github.com/sandboxq/sandboxq ") || !strings.Contains(r.stdout, runtime.Version()) {
		t.Errorf("version: %q", r.stdout)
	}
	got := versionString(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/sandboxq/sandboxq", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}}, true)
	if want := "enqueue github.com/sandboxq/sandboxq v1.2.3 (revision abc123, modified, go1.26.8)"; got != want {
		t.Errorf("versionString = %q, want %q", got, want)
	}
	cli{}.must(t, exitUsage, "version", "extra")
}

func TestCompletion(t *testing.T) {
	t.Parallel()
	cli{}.must(t, exitUsage, "completion", "fish")
	script := cli{}.must(t, exitOK, "completion", "bash").stdout
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	complete := func(words ...string) []string {
		t.Helper()
		prog := script + "COMP_WORDS=(" + strings.Join(words, " ") + "); COMP_CWORD=" + itoa(len(words)-1) + "; _enqueue; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
		out, err := exec.CommandContext(t.Context(), bash, "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.Fields(string(out))
	}
	if got := complete("enqueue", "sta"); !slices.Equal(got, []string{"start-server", "status"}) {
		t.Errorf("enqueue sta<TAB> = %q", got)
	}
	if got := complete("enqueue", "--redis-url", "redis://h:1", "start-server", "--sl"); !slices.Equal(got, []string{"--slug"}) {
		t.Errorf("enqueue --redis-url U start-server --sl<TAB> = %q", got)
	}
	if got := complete("enqueue", "completion", "z"); !slices.Equal(got, []string{"zsh"}) {
		t.Errorf("enqueue completion z<TAB> = %q", got)
	}
	zsh := cli{}.must(t, exitOK, "completion", "zsh").stdout
	if !strings.HasPrefix(zsh, "#compdef enqueue\n") || !strings.Contains(zsh, "start-server) compadd -- ") {
		t.Errorf("zsh script:\n%s", zsh)
	}
	if z, err := exec.LookPath("zsh"); err == nil {
		if out, err := exec.CommandContext(t.Context(), z, "-n", "-c", zsh).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v\n%s", err, out)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
