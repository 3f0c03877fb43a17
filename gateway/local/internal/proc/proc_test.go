package proc

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq"
)

func TestReadyWithRealServer(t *testing.T) {
	t.Parallel()
	s, rec := start(t, Config{Start: helperStart(t), Env: helperEnvs("serve")})
	st, _ := rec.waitStatus(t, 0, StatusReady)
	wantStatuses(t, rec.statuses(0), StatusStarting, StatusRunning, StatusReady)
	if st.PID == 0 || st.Port == 0 || st.ExitCode != nil || st.Healthy != nil {
		t.Fatalf("ready state = %+v", st)
	}
	if pids := s.PIDs(); !slices.Contains(pids, st.PID) {
		t.Fatalf("PIDs() = %v, want it to contain leader %d", pids, st.PID)
	}
	code, body := get(t, st.Port, "/")
	if code != 200 || body != "hello port="+strconv.Itoa(st.Port) {
		t.Fatalf("GET / = %d %q", code, body)
	}
	select {
	case <-s.Done():
		t.Fatal("Done closed while the server runs")
	default:
	}
}

func TestReadyWithPythonHTTPServer(t *testing.T) {
	t.Parallel()
	if !slices.ContainsFunc(filepath.SplitList(DefaultPath), func(d string) bool {
		_, err := os.Stat(filepath.Join(d, "python3"))
		return err == nil
	}) {
		t.Skip("no python3 on DefaultPath")
	}
	dir := t.TempDir()
	touch(t, inDir(dir, "marker-file.txt"))
	s, rec := start(t, Config{Dir: dir, Start: `exec python3 -m http.server "$PORT" --bind 127.0.0.1`})
	st, _ := rec.waitStatus(t, 0, StatusReady)
	code, body := get(t, st.Port, "/")
	if code != 200 || !strings.Contains(body, "marker-file.txt") {
		t.Fatalf("GET / = %d %q", code, body)
	}
	ctx := t.Context()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.State(); st.Status != StatusStopped || st.PID != 0 {
		t.Fatalf("after Stop: %+v", st)
	}
}

func TestHealthCheckGatesReady(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, rec := start(t, Config{
		Dir: dir, Start: helperStart(t), Env: helperEnvs("serve"),
		HealthCheck: &HealthCheck{Path: "/health", Interval: 20 * time.Millisecond, Delay: time.Millisecond},
	})
	rec.waitFor(t, 0, "healthy=false", func(st State) bool { return st.Healthy != nil && !*st.Healthy })
	eventually(t, "3 consecutive failures", func() bool { return s.State().ConsecutiveFailures >= 3 })
	st := s.State()
	if st.Status != StatusRunning || st.LastStatus != 500 || st.LastCheck == nil || *st.Healthy {
		t.Fatalf("unhealthy state = %+v", st)
	}
	if slices.Contains(rec.statuses(0), StatusReady) {
		t.Fatalf("ready before the health check passed: %v", rec.statuses(0))
	}

	touch(t, inDir(dir, "healthy"))
	st, i := rec.waitStatus(t, 0, StatusReady)
	if st.Healthy == nil || !*st.Healthy {
		t.Fatalf("ready but not healthy: %+v", st)
	}
	if st := s.State(); st.ConsecutiveFailures != 0 || st.LastStatus != 200 {
		t.Fatalf("after passing check: %+v", st)
	}

	// A later failure clears Healthy and keeps the status.
	if err := os.Remove(inDir(dir, "healthy")); err != nil {
		t.Fatal(err)
	}
	st, _ = rec.waitFor(t, i+1, "healthy=false after ready", func(st State) bool { return st.Healthy != nil && !*st.Healthy })
	if st.Status != StatusReady {
		t.Fatalf("status after failing check = %s, want ready", st.Status)
	}
}

func TestHealthCheckDefaults(t *testing.T) {
	t.Parallel()
	s, err := Start(Config{Slug: "a", Start: "true", Dir: t.TempDir(), HealthCheck: &HealthCheck{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	hc := s.Config().HealthCheck
	want := HealthCheck{Path: "/", Interval: 2 * time.Second, Timeout: 1500 * time.Millisecond, Delay: 5 * time.Second}
	if *hc != want {
		t.Fatalf("defaults = %+v, want %+v", *hc, want)
	}
	c := s.Config()
	if c.RestartPolicy != sandboxq.RestartNever || c.RestartDelay != time.Second || c.StopTimeout != 10*time.Second ||
		c.LogLimit != 256<<10 || c.ReadyPoll != 100*time.Millisecond {
		t.Fatalf("config defaults = %+v", c)
	}
}

func TestCrashFails(t *testing.T) {
	t.Parallel()
	t.Run("before listening", func(t *testing.T) {
		t.Parallel()
		s, rec := start(t, Config{Start: "echo boom >&2; exit 3"})
		st := waitDone(t, s)
		if st.Status != StatusFailed || st.ExitCode == nil || *st.ExitCode != 3 || st.RestartCount != 0 ||
			st.Error != "exited with code 3" || st.PID != 0 {
			t.Fatalf("state = %+v", st)
		}
		wantStatuses(t, rec.statuses(0), StatusStarting, StatusRunning, StatusFailed)
		if logs, _ := s.Logs(StreamStderr); logs != "boom\n" {
			t.Fatalf("stderr = %q", logs)
		}
	})
	t.Run("after ready", func(t *testing.T) {
		t.Parallel()
		s, rec := start(t, Config{Start: helperStart(t), Env: helperEnvs("listen-exit", "EXIT_CODE=3")})
		st := waitDone(t, s)
		if st.Status != StatusFailed || st.ExitCode == nil || *st.ExitCode != 3 {
			t.Fatalf("state = %+v", st)
		}
		wantStatuses(t, rec.statuses(0), StatusStarting, StatusRunning, StatusReady, StatusFailed)
	})
}

func TestNeverCleanExitStops(t *testing.T) {
	t.Parallel()
	s, rec := start(t, Config{Start: "exit 0", RestartPolicy: sandboxq.RestartNever})
	st := waitDone(t, s)
	if st.Status != StatusStopped || st.ExitCode == nil || *st.ExitCode != 0 || st.RestartCount != 0 || st.Error != "" {
		t.Fatalf("state = %+v", st)
	}
	wantStatuses(t, rec.statuses(0), StatusStarting, StatusRunning, StatusStopped)
}

func TestOnFailureRestartsUpToMax(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, rec := start(t, Config{
		Dir: dir, Start: "echo run >> runs; exit 3",
		RestartPolicy: sandboxq.RestartOnFailure, MaxRestarts: 2, RestartDelay: 10 * time.Millisecond,
	})
	st := waitDone(t, s)
	if st.Status != StatusFailed || st.RestartCount != 2 || st.ExitCode == nil || *st.ExitCode != 3 ||
		st.Error != "exited with code 3; gave up after 2 restarts" {
		t.Fatalf("state = %+v", st)
	}
	if runs := readLines(t, inDir(dir, "runs")); len(runs) != 3 {
		t.Fatalf("process ran %d times, want 3", len(runs))
	}
	wantStatuses(t, rec.statuses(0),
		StatusStarting, StatusRunning, StatusRestarting,
		StatusStarting, StatusRunning, StatusRestarting,
		StatusStarting, StatusRunning, StatusFailed)
}

func TestOnFailureCleanExitStops(t *testing.T) {
	t.Parallel()
	s, _ := start(t, Config{Start: "exit 0", RestartPolicy: sandboxq.RestartOnFailure, RestartDelay: 10 * time.Millisecond})
	if st := waitDone(t, s); st.Status != StatusStopped || st.RestartCount != 0 {
		t.Fatalf("state = %+v", st)
	}
}

func TestAlwaysRestartsAfterCleanExit(t *testing.T) {
	t.Parallel()
	t.Run("limited", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		s, rec := start(t, Config{
			Dir: dir, Start: "echo run >> runs; exit 0",
			RestartPolicy: sandboxq.RestartAlways, MaxRestarts: 2, RestartDelay: 10 * time.Millisecond,
		})
		rec.waitFor(t, 0, "restarting after exit 0", func(st State) bool {
			return st.Status == StatusRestarting && st.ExitCode != nil && *st.ExitCode == 0
		})
		st := waitDone(t, s)
		if st.Status != StatusFailed || st.RestartCount != 2 || st.ExitCode == nil || *st.ExitCode != 0 {
			t.Fatalf("state = %+v", st)
		}
		if runs := readLines(t, inDir(dir, "runs")); len(runs) != 3 {
			t.Fatalf("process ran %d times, want 3", len(runs))
		}
	})
	t.Run("unlimited", func(t *testing.T) {
		t.Parallel()
		s, _ := start(t, Config{Start: "exit 0", RestartPolicy: sandboxq.RestartAlways, RestartDelay: 10 * time.Millisecond})
		eventually(t, "3 restarts", func() bool { return s.State().RestartCount >= 3 })
		if err := s.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
		if st := s.State(); st.Status != StatusStopped {
			t.Fatalf("state = %+v", st)
		}
	})
}

func TestStopDuringRestartDelay(t *testing.T) {
	t.Parallel()
	s, rec := start(t, Config{Start: "exit 1", RestartPolicy: sandboxq.RestartOnFailure, RestartDelay: time.Hour})
	rec.waitStatus(t, 0, StatusRestarting)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	st := s.State()
	if st.Status != StatusStopped || st.RestartCount != 1 || st.ExitCode == nil || *st.ExitCode != 1 {
		t.Fatalf("state = %+v", st)
	}
	// Idempotent.
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	wantStatuses(t, rec.statuses(0), StatusStarting, StatusRunning, StatusRestarting, StatusStopped)
}

func TestStopSendsSIGTERM(t *testing.T) {
	t.Parallel()
	s, _ := start(t, Config{
		Start:       `trap 'echo got-term; exit 0' TERM; echo armed; sleep 1000 & wait`,
		StopTimeout: waitTimeout,
	})
	eventually(t, "trap armed", func() bool { l, _ := s.Logs(StreamStdout); return strings.Contains(l, "armed") })
	if err := s.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := s.State()
	// Exit 0 comes from the trap: the shell got SIGTERM, not SIGKILL.
	if st.Status != StatusStopped || st.ExitCode == nil || *st.ExitCode != 0 {
		t.Fatalf("state = %+v", st)
	}
	if l, _ := s.Logs(StreamStdout); !strings.Contains(l, "got-term") {
		t.Fatalf("stdout = %q, want got-term", l)
	}
}

func TestStopKillsAfterTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	s, _ := start(t, Config{Start: `trap '' TERM; echo armed; sleep 1000`, StopTimeout: timeout})
	eventually(t, "trap armed", func() bool { l, _ := s.Logs(StreamStdout); return strings.Contains(l, "armed") })
	var pids []int
	eventually(t, "sh and sleep in the group", func() bool { pids = s.PIDs(); return len(pids) == 2 })
	begin := time.Now()
	if err := s.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took < timeout {
		t.Fatalf("Stop took %v, less than StopTimeout %v, though TERM is ignored", took, timeout)
	}
	st := s.State()
	if st.Status != StatusStopped || st.ExitCode == nil || *st.ExitCode != 128+9 {
		t.Fatalf("state = %+v, want stopped with exit code 137", st)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d alive after Stop", pid)
		}
	}
}

func TestStopWithExpiredContext(t *testing.T) {
	t.Parallel()
	s, _ := start(t, Config{Start: `trap '' TERM; echo armed; sleep 1000`, StopTimeout: 200 * time.Millisecond})
	eventually(t, "trap armed", func() bool { l, _ := s.Logs(StreamStdout); return strings.Contains(l, "armed") })
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Stop(ctx); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("Stop(cancelled ctx) = %v, want context error", err)
	}
	// The shutdown goes on without the caller.
	if st := waitDone(t, s); st.Status != StatusStopped {
		t.Fatalf("state = %+v", st)
	}
}

func TestStopKillsWholeGroup(t *testing.T) {
	t.Parallel()
	s, _ := start(t, Config{Start: `sleep 1000 & sleep 1000 & echo armed; wait`})
	var pids []int
	eventually(t, "3 processes in the group", func() bool { pids = s.PIDs(); return len(pids) == 3 })
	if err := s.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d alive after Stop", pid)
		}
	}
	if got := s.PIDs(); got != nil {
		t.Fatalf("PIDs() after Stop = %v", got)
	}
}

func TestExitKillsLeftovers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := start(t, Config{Dir: dir, Start: `sleep 1000 & echo $! > child.pid; exit 0`})
	st := waitDone(t, s)
	if st.Status != StatusStopped {
		t.Fatalf("state = %+v", st)
	}
	b, err := os.ReadFile(inDir(dir, "child.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("background child %d survived its server", pid)
	}
}

func TestInstall(t *testing.T) {
	t.Parallel()
	t.Run("runs first", func(t *testing.T) {
		t.Parallel()
		s, rec := start(t, Config{
			Install: "echo installing; touch installed",
			Start:   "test -f installed && " + helperStart(t),
			Env:     helperEnvs("serve"),
		})
		rec.waitStatus(t, 0, StatusReady)
		wantStatuses(t, rec.statuses(0), StatusInstalling, StatusStarting, StatusRunning, StatusReady)
		if l, _ := s.Logs(StreamCombined); !strings.HasPrefix(l, "installing\n") {
			t.Fatalf("combined logs = %q", l)
		}
	})
	t.Run("failure", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		s, rec := start(t, Config{Dir: dir, Install: "exit 7", Start: "touch started"})
		st := waitDone(t, s)
		if st.Status != StatusFailed || st.ExitCode == nil || *st.ExitCode != 7 || st.Error != "install failed: exit 7" {
			t.Fatalf("state = %+v", st)
		}
		wantStatuses(t, rec.statuses(0), StatusInstalling, StatusFailed)
		if _, err := os.Stat(inDir(dir, "started")); err == nil {
			t.Fatal("Start ran after a failed install")
		}
	})
	t.Run("restart reruns only a failed install", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		s, rec := start(t, Config{
			Dir:     dir,
			Install: "echo i >> installs; test -f ok || exit 5",
			Start:   helperStart(t),
			Env:     helperEnvs("serve"),
		})
		if st := waitDone(t, s); st.Status != StatusFailed || st.Error != "install failed: exit 5" {
			t.Fatalf("state = %+v", st)
		}
		touch(t, inDir(dir, "ok"))
		n := rec.len()
		if err := s.Restart(t.Context()); err != nil {
			t.Fatal(err)
		}
		rec.waitStatus(t, n, StatusReady)
		wantStatuses(t, rec.statuses(n), StatusStopped, StatusInstalling, StatusStarting, StatusRunning, StatusReady)
		n = rec.len()
		if err := s.Restart(t.Context()); err != nil {
			t.Fatal(err)
		}
		rec.waitStatus(t, n, StatusReady)
		wantStatuses(t, rec.statuses(n), StatusStopped, StatusStarting, StatusRunning, StatusReady)
		if got := readLines(t, inDir(dir, "installs")); len(got) != 2 {
			t.Fatalf("install ran %d times, want 2", len(got))
		}
	})
}

func TestRestart(t *testing.T) {
	t.Parallel()
	s, rec := start(t, Config{Start: helperStart(t), Env: helperEnvs("serve")})
	first, _ := rec.waitStatus(t, 0, StatusReady)
	oldDone := s.Done()
	n := rec.len()
	if err := s.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-oldDone:
	default:
		t.Fatal("old Done not closed after Restart")
	}
	select {
	case <-s.Done():
		t.Fatal("Done closed right after Restart")
	default:
	}
	second, _ := rec.waitStatus(t, n, StatusReady)
	wantStatuses(t, rec.statuses(n), StatusStopped, StatusStarting, StatusRunning, StatusReady)
	if second.PID == first.PID || alive(first.PID) {
		t.Fatalf("old pid %d (alive %v), new pid %d", first.PID, alive(first.PID), second.PID)
	}
	if second.RestartCount != 0 || second.Port != first.Port {
		t.Fatalf("after Restart: %+v (first %+v)", second, first)
	}
	if code, _ := get(t, second.Port, "/"); code != 200 {
		t.Fatalf("GET after restart = %d", code)
	}
}

func TestOnChangeMayReadServer(t *testing.T) {
	t.Parallel()
	var srv atomic.Pointer[Server]
	type seen struct {
		got, now State
		pids     []int
	}
	ch := make(chan seen, 100)
	s, err := Start(Config{
		Slug: "web", Dir: t.TempDir(), Start: helperStart(t), Env: helperEnvs("serve"), ReadyPoll: 10 * time.Millisecond,
	}, func(st State) {
		p := srv.Load()
		if p == nil {
			return // the initial notification comes before Start returns
		}
		_, _ = p.Logs(StreamCombined)
		_ = p.Done()
		_ = p.Config()
		ch <- seen{got: st, now: p.State(), pids: p.PIDs()}
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Store(s)
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	deadline := time.After(waitTimeout)
	for {
		select {
		case v := <-ch:
			if v.got.Status != StatusReady {
				continue
			}
			if v.now.Status != StatusReady || !slices.Contains(v.pids, v.got.PID) {
				t.Fatalf("inside onChange(ready): State() = %+v, PIDs() = %v", v.now, v.pids)
			}
			return
		case <-deadline:
			t.Fatal("no ready notification")
		}
	}
}

func TestPorts(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Close() })
	busyPort := busy.Addr().(*net.TCPAddr).Port

	t.Run("busy strict", func(t *testing.T) {
		t.Parallel()
		s, err := Start(Config{Slug: "a", Start: "true", Dir: t.TempDir(), Port: busyPort, StrictPort: true}, nil)
		if err == nil {
			_ = s.Stop(context.Background())
			t.Fatal("Start succeeded on a busy strict port")
		}
		if !strings.Contains(err.Error(), strconv.Itoa(busyPort)) || !strings.Contains(err.Error(), "StrictPort") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("busy moves up", func(t *testing.T) {
		t.Parallel()
		_, rec := start(t, Config{Start: helperStart(t), Env: helperEnvs("serve"), Port: busyPort})
		st, _ := rec.waitStatus(t, 0, StatusReady)
		if st.Port <= busyPort {
			t.Fatalf("port = %d, want above busy %d", st.Port, busyPort)
		}
		if _, body := get(t, st.Port, "/"); body != "hello port="+strconv.Itoa(st.Port) {
			t.Fatalf("body = %q", body)
		}
	})
	t.Run("reserved within the process", func(t *testing.T) {
		t.Parallel()
		a, _ := start(t, Config{Start: "sleep 1000"})
		pa := a.State().Port
		b, _ := start(t, Config{Start: "sleep 1000", Port: pa})
		if pb := b.State().Port; pb == pa {
			t.Fatalf("two servers share port %d", pa)
		}
		if err := a.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
		c, _ := start(t, Config{Start: "sleep 1000", Port: pa, StrictPort: true})
		if pc := c.State().Port; pc != pa {
			t.Fatalf("port %d not released by Stop (got %d)", pa, pc)
		}
	})
}

func TestEnvironment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := start(t, Config{Dir: dir, Start: "env > envdump", Env: []string{"FOO=bar", "HOME=/elsewhere", "PORT=1"}})
	st := waitDone(t, s)
	if st.Status != StatusStopped {
		t.Fatalf("state = %+v", st)
	}
	got := map[string]string{}
	for _, kv := range readLines(t, inDir(dir, "envdump")) {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	want := map[string]string{"PATH": DefaultPath, "HOME": "/elsewhere", "FOO": "bar", "PORT": strconv.Itoa(st.Port), "PWD": dir}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, kv := range HostLocale() {
		k, v, _ := strings.Cut(kv, "=")
		want[k] = v
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected variable %s leaked into the environment", k)
		}
	}
}

func TestLogs(t *testing.T) {
	t.Parallel()
	const limit = 1000
	s, _ := start(t, Config{
		Start:    `i=0; while [ $i -lt 300 ]; do echo "out line $i"; echo "err line $i" >&2; i=$((i+1)); done; echo END-OUT; echo END-ERR >&2`,
		LogLimit: limit,
	})
	waitDone(t, s)
	out, _ := s.Logs(StreamStdout)
	errs, _ := s.Logs(StreamStderr)
	comb, _ := s.Logs(StreamCombined)
	for name, l := range map[string]string{"stdout": out, "stderr": errs, "combined": comb} {
		if len(l) > limit || len(l) < limit-20 {
			t.Errorf("%s holds %d bytes, want about %d", name, len(l), limit)
		}
	}
	if !strings.HasSuffix(out, "out line 299\nEND-OUT\n") || strings.Contains(out, "err") || strings.Contains(out, "out line 0\n") {
		t.Errorf("stdout = %q", out)
	}
	if !strings.HasSuffix(errs, "err line 299\nEND-ERR\n") || strings.Contains(errs, "out") {
		t.Errorf("stderr = %q", errs)
	}
	if !strings.HasSuffix(comb, "END-OUT\n") && !strings.HasSuffix(comb, "END-ERR\n") {
		t.Errorf("combined = %q", comb)
	}
	if _, err := s.Logs("both"); err == nil || !strings.Contains(err.Error(), `"both"`) {
		t.Errorf("Logs(both) error = %v", err)
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := inDir(dir, "f")
	touch(t, file)
	ok := Config{Slug: "web", Start: "true", Dir: dir}
	tests := []struct {
		field string
		mod   func(*Config)
	}{
		{"Slug", func(c *Config) { c.Slug = " " }},
		{"Start", func(c *Config) { c.Start = "" }},
		{"Start", func(c *Config) { c.Start = "a\x00b" }},
		{"Install", func(c *Config) { c.Install = "a\x00b" }},
		{"Dir", func(c *Config) { c.Dir = "relative" }},
		{"Dir", func(c *Config) { c.Dir = inDir(dir, "missing") }},
		{"Dir", func(c *Config) { c.Dir = file }},
		{"Env", func(c *Config) { c.Env = []string{"NOEQUALS"} }},
		{"Env", func(c *Config) { c.Env = []string{"=v"} }},
		{"Port", func(c *Config) { c.Port = -1 }},
		{"Port", func(c *Config) { c.Port = 65536 }},
		{"RestartPolicy", func(c *Config) { c.RestartPolicy = "sometimes" }},
		{"MaxRestarts", func(c *Config) { c.MaxRestarts = -1 }},
		{"RestartDelay", func(c *Config) { c.RestartDelay = -time.Second }},
		{"StopTimeout", func(c *Config) { c.StopTimeout = -time.Second }},
		{"ReadyPoll", func(c *Config) { c.ReadyPoll = -time.Second }},
		{"HealthCheck.Path", func(c *Config) { c.HealthCheck = &HealthCheck{Path: "health"} }},
		{"HealthCheck.Interval", func(c *Config) { c.HealthCheck = &HealthCheck{Interval: -1} }},
		{"HealthCheck.Timeout", func(c *Config) { c.HealthCheck = &HealthCheck{Timeout: -1} }},
		{"HealthCheck.Delay", func(c *Config) { c.HealthCheck = &HealthCheck{Delay: -1} }},
		{"LogLimit", func(c *Config) { c.LogLimit = -1 }},
	}
	for _, tt := range tests {
		cfg := ok
		tt.mod(&cfg)
		s, err := Start(cfg, nil)
		if err == nil {
			_ = s.Stop(context.Background())
			t.Errorf("%s: Start accepted %+v", tt.field, cfg)
			continue
		}
		if !strings.Contains(err.Error(), "invalid "+tt.field+":") {
			t.Errorf("%s: error %q does not name the field", tt.field, err)
		}
	}
}

func TestRing(t *testing.T) {
	t.Parallel()
	for _, limit := range []int{1, 7, 64} {
		r := ring{limit: limit}
		var all []byte
		for i := range 200 {
			chunk := []byte(strings.Repeat(string(rune('a'+i%26)), i%(2*limit+3)))
			r.write(chunk)
			all = append(all, chunk...)
			want := all[max(0, len(all)-limit):]
			if got := r.String(); got != string(want) {
				t.Fatalf("limit %d after %d writes: got %q, want %q", limit, i+1, got, want)
			}
		}
	}
	// A cut inside a UTF-8 sequence leaves no orphaned continuation bytes.
	r := ring{limit: 4}
	r.write([]byte("xé€")) // 1 + 2 + 3 bytes; the last 4 are é's 2nd byte and €
	if got := r.String(); got != "€" {
		t.Fatalf("got %q, want %q", got, "€")
	}
}

func TestCombinedLogOrder(t *testing.T) {
	t.Parallel()
	l := newLogSet(100)
	l.write(StreamStdout, []byte("1 "))
	l.write(StreamStderr, []byte("2 "))
	l.write(StreamStdout, []byte("3"))
	if got, _ := l.get(StreamCombined); got != "1 2 3" {
		t.Fatalf("combined = %q", got)
	}
}

// TestNoGoroutinesLeft is not parallel: it checks that no goroutine of this
// package is left once every server it started has ended.
func TestNoGoroutinesLeft(t *testing.T) {
	dir := t.TempDir()
	touch(t, inDir(dir, "healthy"))
	ready, rec := start(t, Config{
		Dir: dir, Start: helperStart(t), Env: helperEnvs("serve"),
		HealthCheck: &HealthCheck{Path: "/health", Interval: 10 * time.Millisecond, Delay: time.Millisecond},
	})
	crash, _ := start(t, Config{Start: "exit 2", RestartPolicy: sandboxq.RestartOnFailure, MaxRestarts: 1, RestartDelay: time.Millisecond})
	rec.waitStatus(t, 0, StatusReady)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := ready.Restart(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	eventually(t, "ready after concurrent restarts", func() bool { return ready.State().Status == StatusReady })
	if err := ready.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitDone(t, crash)

	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for left := procGoroutines(); len(left) > 0; left = procGoroutines() {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		<-tick.C
	}
}

func procGoroutines() []string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "internal/proc.(*Server)") || strings.Contains(g, "internal/proc.(*logSet)") {
			out = append(out, g)
		}
	}
	return out
}
