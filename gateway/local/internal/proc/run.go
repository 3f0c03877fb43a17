package proc

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sandboxq/sandboxq"
)

const (
	// groupPoll is how often a shutdown looks for survivors in /proc.
	groupPoll = 20 * time.Millisecond
	// killWait bounds the wait for SIGKILLed processes to disappear (a
	// process in uninterruptible sleep dies only when it wakes).
	killWait = 5 * time.Second
	// drainWait bounds the wait for the last output once the group is gone;
	// a process that left the group may still hold the pipes.
	drainWait = time.Second
)

// lifecycle drives r from install to a terminal status. It owns every
// goroutine and process of r and returns only when all are gone.
func (s *Server) lifecycle(r *run) {
	defer close(r.done)
	defer releasePort(s)

	if r.ctx.Err() != nil {
		s.finish(StatusStopped, nil, "")
		return
	}
	if s.cfg.Install != "" && !r.skipInstall {
		s.update(func(st *State) { st.Status = StatusInstalling })
		res := s.execute(r.ctx, s.cfg.Install, false)
		switch {
		case r.ctx.Err() != nil:
			s.finish(StatusStopped, res.code, "")
			return
		case res.err != nil:
			s.finish(StatusFailed, nil, "install: "+res.err.Error())
			return
		case *res.code != 0:
			s.finish(StatusFailed, res.code, fmt.Sprintf("install failed: exit %d", *res.code))
			return
		}
		s.mu.Lock()
		s.installed = true
		s.mu.Unlock()
	}
	for {
		s.update(func(st *State) { st.Status = StatusStarting })
		res := s.execute(r.ctx, s.cfg.Start, true)
		if r.ctx.Err() != nil {
			s.finish(StatusStopped, res.code, "")
			return
		}
		if res.err != nil {
			s.finish(StatusFailed, nil, "start: "+res.err.Error())
			return
		}
		code := *res.code
		s.mu.Lock()
		restarts := s.st.RestartCount
		s.mu.Unlock()
		restart, final, msg := s.decide(code, restarts)
		if !restart {
			s.finish(final, res.code, msg)
			return
		}
		s.log.InfoContext(r.ctx, "server restarting", "exit_code", code, "restart_count", restarts+1)
		s.update(func(st *State) {
			st.Status = StatusRestarting
			st.PID = 0
			st.ExitCode = res.code
			st.Error = msg
			st.RestartCount++
		})
		t := time.NewTimer(s.cfg.RestartDelay)
		select {
		case <-r.ctx.Done():
			t.Stop()
			s.finish(StatusStopped, nil, "")
			return
		case <-t.C:
		}
	}
}

// decide applies the restart policy to an exit of the Start command.
func (s *Server) decide(code, restarts int) (restart bool, final Status, msg string) {
	if code != 0 {
		msg = fmt.Sprintf("exited with code %d", code)
	}
	limited := s.cfg.MaxRestarts > 0 && restarts >= s.cfg.MaxRestarts
	switch {
	case s.cfg.RestartPolicy == sandboxq.RestartAlways,
		s.cfg.RestartPolicy == sandboxq.RestartOnFailure && code != 0:
		if !limited {
			return true, "", msg
		}
		return false, StatusFailed, fmt.Sprintf("exited with code %d; gave up after %d restarts", code, restarts)
	case code != 0:
		return false, StatusFailed, msg
	default:
		return false, StatusStopped, ""
	}
}

// finish records a terminal status. A nil code keeps the last exit code.
func (s *Server) finish(status Status, code *int, msg string) {
	s.log.Info("server ended", "status", string(status), "err", msg)
	s.update(func(st *State) {
		st.Status = status
		st.PID = 0
		if code != nil {
			st.ExitCode = code
		}
		st.Error = msg
	})
}

// result is the outcome of one command: err if it could not start, else
// its exit code.
type result struct {
	code *int
	err  error
}

// execute runs command in its own process group until it exits or ctx
// ends, and returns once the group, its output and the readiness watch are
// all finished. serve marks the Start command: it moves the status to
// running and watches for readiness.
func (s *Server) execute(ctx context.Context, command string, serve bool) result {
	if err := ctx.Err(); err != nil {
		return result{err: err}
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return result{err: err}
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		_ = outR.Close()
		_ = outW.Close()
		return result{err: err}
	}
	s.mu.Lock()
	port := s.st.Port
	s.mu.Unlock()
	cmd := &exec.Cmd{
		Path:   shell,
		Args:   []string{"sh", "-c", command},
		Dir:    s.cfg.Dir,
		Env:    s.env(port),
		Stdout: outW,
		Stderr: errW,
		// StartLocked adds Pdeathsig, which takes the leader down if the
		// supervisor dies without a Stop; Config.Guard covers the rest of
		// the group.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	unlockThread, err := StartLocked(cmd)
	_ = outW.Close()
	_ = errW.Close()
	if err != nil {
		_ = outR.Close()
		_ = errR.Close()
		return result{err: err}
	}
	defer unlockThread()
	pid := cmd.Process.Pid
	release, gerr := s.cfg.Guard.Add(pid)
	if gerr != nil {
		s.log.WarnContext(ctx, "server's process group is not guarded against the provider's death", "err", gerr)
	}
	defer release()
	s.log.InfoContext(ctx, "server process started", "pid", pid, "serve", serve, "port", port)
	s.mu.Lock()
	s.pgid = pid
	s.mu.Unlock()
	s.update(func(st *State) {
		st.PID = pid
		st.StartedAt = time.Now()
		if serve {
			st.Status = StatusRunning
			st.ExitCode = nil
			st.Error = ""
			resetHealth(st)
		}
	})

	var wg sync.WaitGroup
	wg.Go(func() { s.logs.copyFrom(outR, StreamStdout) })
	wg.Go(func() { s.logs.copyFrom(errR, StreamStderr) })
	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	if serve {
		wg.Go(func() { s.watchReady(probeCtx, port) })
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status is read from cmd.ProcessState
		close(exited)
	}()

	select {
	case <-exited:
		stopProbe()
		s.endGroup(pid, exited, 0)
	case <-ctx.Done():
		stopProbe()
		s.endGroup(pid, exited, s.cfg.StopTimeout)
	}
	s.mu.Lock()
	s.pgid = 0
	s.mu.Unlock()

	drained := make(chan struct{})
	go func() {
		wg.Wait()
		close(drained)
	}()
	t := time.NewTimer(drainWait)
	select {
	case <-drained:
	case <-t.C:
		s.log.WarnContext(ctx, "server output still open after its process group ended; closing it")
	}
	t.Stop()
	_ = outR.Close()
	_ = errR.Close()
	<-drained

	code := exitCode(cmd.ProcessState)
	s.log.InfoContext(ctx, "server process exited", "pid", pid, "exit_code", code)
	return result{code: &code}
}

// endGroup makes sure nothing of group pgid survives. With grace > 0 the
// group gets SIGTERM and up to grace to exit, leader and all; then (or at
// once with grace 0) SIGKILL. It returns once the leader has been reaped and
// no live process is left in the group, or after killWait past SIGKILL.
func (s *Server) endGroup(pgid int, exited <-chan struct{}, grace time.Duration) {
	tick := time.NewTicker(groupPoll)
	defer tick.Stop()
	if grace > 0 {
		signalGroup(pgid, syscall.SIGTERM)
		deadline := time.NewTimer(grace)
		defer deadline.Stop()
		ex := exited
	graceful:
		for {
			if ex == nil && len(groupPIDs(pgid)) == 0 {
				return
			}
			select {
			case <-ex:
				ex = nil
			case <-tick.C:
			case <-deadline.C:
				s.log.Info("server ignored SIGTERM; killing its process group", "pid", pgid, "stop_timeout", grace)
				break graceful
			}
		}
	}
	signalGroup(pgid, syscall.SIGKILL)
	// The leader may have moved itself to another group.
	select {
	case <-exited:
	default:
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-exited
	}
	giveUp := time.NewTimer(killWait)
	defer giveUp.Stop()
	for len(groupPIDs(pgid)) > 0 {
		select {
		case <-tick.C:
		case <-giveUp.C:
			s.log.Warn("processes survived SIGKILL", "pid", pgid, "pids", groupPIDs(pgid))
			return
		}
	}
}

// env is the whole environment of a command: a minimal base (PATH, HOME,
// the host's locale and time zone), Config.Env, then PORT. exec.Cmd keeps the last of duplicate names.
func (s *Server) env(port int) []string {
	env := make([]string, 0, len(s.cfg.Env)+8)
	env = append(env, "PATH="+DefaultPath, "HOME="+s.cfg.Dir)
	env = append(env, HostLocale()...)
	env = append(env, s.cfg.Env...)
	return append(env, "PORT="+strconv.Itoa(port))
}

// watchReady probes the port until it accepts a connection, then runs the
// health check, if any, every Interval until ctx ends. It moves the status
// from running to ready; a later failing check only clears Healthy.
func (s *Server) watchReady(ctx context.Context, port int) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	dialer := net.Dialer{Timeout: time.Second}
	tick := time.NewTicker(s.cfg.ReadyPoll)
	for {
		c, err := dialer.DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = c.Close()
			break
		}
		select {
		case <-ctx.Done():
			tick.Stop()
			return
		case <-tick.C:
		}
	}
	tick.Stop()
	s.log.DebugContext(ctx, "server port open", "port", port)

	hc := s.cfg.HealthCheck
	if hc == nil {
		s.update(func(st *State) {
			if st.Status == StatusRunning {
				st.Status = StatusReady
			}
		})
		return
	}
	delay := time.NewTimer(hc.Delay)
	select {
	case <-ctx.Done():
		delay.Stop()
		return
	case <-delay.C:
	}

	client := &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true},
		Timeout:   hc.Timeout,
		// 2xx is required; a redirect is an answer, not something to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	target := "http://" + addr + hc.Path
	tick = time.NewTicker(hc.Interval)
	defer tick.Stop()
	for {
		code, err := healthProbe(ctx, client, target)
		if ctx.Err() != nil {
			return
		}
		ok := err == nil && code >= 200 && code < 300
		if !ok {
			s.log.DebugContext(ctx, "health check failed", "status", code, "err", err)
		}
		now := time.Now()
		s.update(func(st *State) {
			st.LastCheck = &now
			st.LastStatus = code
			st.Healthy = &ok
			if ok {
				st.ConsecutiveFailures = 0
				if st.Status == StatusRunning {
					st.Status = StatusReady
				}
			} else {
				st.ConsecutiveFailures++
			}
		})
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// healthProbe GETs target and returns the status code (0 if none came).
func healthProbe(ctx context.Context, client *http.Client, target string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
