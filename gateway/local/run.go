package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local/internal/proc"
)

const (
	// maxCommandLen is the longest command accepted (Linux's limit for one
	// argument).
	maxCommandLen = 128 << 10
	// timeoutExitCode is reported for a command killed at its timeout, as
	// by timeout(1).
	timeoutExitCode = 124
	// commandWaitDelay bounds how long a finished command's output pipes
	// are drained when a background child still holds them.
	commandWaitDelay = 500 * time.Millisecond
)

// Command statuses.
const (
	cmdCompleted = "completed"
	cmdFailed    = "failed"
)

// runCommandHTTP answers POST /run/command and, with legacy set, POST
// /execute (whose data also carries output = stdout + stderr).
func (s *sandbox) runCommandHTTP(w http.ResponseWriter, r *http.Request, legacy bool) {
	var req gateway.RunCommandRequest
	if err := decodeBody(r, &req, 2*maxCommandLen+maxJSONBody, false); err != nil {
		writeDaemonError(w, statusOf(err), err.Error())
		return
	}
	res, err := s.runCommand(r.Context(), req)
	if err != nil {
		writeDaemonError(w, statusOf(err), err.Error())
		return
	}
	var data any = res
	if legacy {
		data = struct {
			gateway.CommandResult
			Output string `json:"output"`
		}{res, res.Stdout + res.Stderr}
	}
	writeJSON(w, http.StatusOK, map[string]any{"message": "Command executed", "data": data})
}

// runCommand runs req.Command with `<shell> -c` in its own process group
// and waits for it. The group is killed at the timeout, when ctx ends, when
// the sandbox is destroyed, and once the shell has exited (a foreground
// command leaves nothing behind; long-lived processes are servers).
func (s *sandbox) runCommand(ctx context.Context, req gateway.RunCommandRequest) (gateway.CommandResult, error) {
	switch {
	case strings.TrimSpace(req.Command) == "":
		return gateway.CommandResult{}, badRequest("command is required")
	case len(req.Command) > maxCommandLen:
		return gateway.CommandResult{}, badRequest("command is longer than %d bytes", maxCommandLen)
	case strings.IndexByte(req.Command, 0) >= 0:
		return gateway.CommandResult{}, badRequest("command contains a NUL byte")
	case req.Background:
		return gateway.CommandResult{}, badRequest("background commands are not supported by the local provider; start a managed server (POST /servers) instead")
	case req.Stream:
		return gateway.CommandResult{}, badRequest("streaming commands are not supported by the local provider")
	case req.TimeoutMS < 0:
		return gateway.CommandResult{}, badRequest("timeout_ms must not be negative")
	}
	shell, err := lookupShell(req.Shell, s.p.path)
	if err != nil {
		return gateway.CommandResult{}, err
	}
	dir := s.dir
	if req.Cwd != "" {
		host, err := resolvePath(s.dir, req.Cwd)
		if err != nil {
			return gateway.CommandResult{}, err
		}
		fi, err := os.Stat(host)
		if err != nil || !fi.IsDir() {
			return gateway.CommandResult{}, badRequest("cwd %s is not an existing directory", sandboxPath(req.Cwd))
		}
		dir = host
	}
	env, err := s.commandEnv(req.Env)
	if err != nil {
		return gateway.CommandResult{}, err
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopOnDestroy := context.AfterFunc(s.ctx, cancel)
	defer stopOnDestroy()
	var timedOut bool
	if req.TimeoutMS > 0 {
		var cancelT context.CancelFunc
		runCtx, cancelT = context.WithTimeoutCause(runCtx, time.Duration(req.TimeoutMS)*time.Millisecond, errCommandTimeout)
		defer cancelT()
	}

	stdout := &capWriter{max: s.p.maxOutput}
	stderr := &capWriter{max: s.p.maxOutput}
	cmd := exec.CommandContext(runCtx, shell, "-c", req.Command)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = commandWaitDelay

	if !s.beginCommand() {
		return gateway.CommandResult{}, notFound("sandbox not found")
	}
	defer s.endCommand()
	start := time.Now()
	// Started with Pdeathsig on a locked thread, its group registered with
	// the guard: the command dies with the provider, however it dies.
	unlockThread, err := proc.StartLocked(cmd)
	if err != nil {
		return gateway.CommandResult{}, fmt.Errorf("start command: %v", err)
	}
	pid := cmd.Process.Pid
	release, gerr := s.p.guard.Add(pid)
	if gerr != nil {
		s.p.log.Warn("command's process group is not guarded against the provider's death", "err", gerr)
	}
	s.trackCommand(pid, true)
	waitErr := cmd.Wait()
	_ = killGroup(pid) // leftovers of the finished shell
	release()
	unlockThread()
	s.trackCommand(pid, false)
	dur := time.Since(start)
	timedOut = errors.Is(context.Cause(runCtx), errCommandTimeout)

	code := 0
	switch {
	case timedOut:
		code = timeoutExitCode
	case cmd.ProcessState != nil:
		code = cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	case waitErr != nil:
		code = -1
	}
	status := cmdCompleted
	if code != 0 {
		status = cmdFailed
	}
	res := gateway.CommandResult{
		Command:    req.Command,
		Stdout:     stdout.String(),
		Stderr:     stderr.String(),
		ExitCode:   &code,
		DurationMS: dur.Milliseconds(),
		Status:     status,
		Truncated:  stdout.truncated || stderr.truncated,
	}
	if timedOut {
		res.Stderr += fmt.Sprintf("\ncommand timed out after %d ms\n", req.TimeoutMS)
	}
	return res, nil
}

var errCommandTimeout = errors.New("command timed out")

// lookupShell resolves the shell of a command: "sh" by default, else a
// program name looked up in path (the PATH commands get) or an absolute
// path.
func lookupShell(shell, path string) (string, error) {
	if shell == "" {
		shell = "sh"
	}
	if strings.ContainsAny(shell, " \t\n\x00") || (strings.Contains(shell, "/") && !filepath.IsAbs(shell)) {
		return "", badRequest("shell %q must be a program name or an absolute path", shell)
	}
	candidates := []string{shell}
	if !filepath.IsAbs(shell) {
		candidates = nil
		for _, dir := range filepath.SplitList(path) {
			if filepath.IsAbs(dir) {
				candidates = append(candidates, filepath.Join(dir, shell))
			}
		}
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	return "", badRequest("shell %q not found", shell)
}

// commandEnv is baseEnv, then the sandbox's envs, then extra. The rest of
// the host environment is not passed on: it may hold the credentials of the
// process that embeds the provider.
func (s *sandbox) commandEnv(extra map[string]string) ([]string, error) {
	for k, v := range extra {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, badRequest("environment variable name %q is invalid", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return nil, badRequest("value of environment variable %s contains a NUL byte", k)
		}
	}
	base, err := s.baseEnv()
	if err != nil {
		return nil, err
	}
	env := envList(base)
	env = append(env, envList(s.envs)...)
	env = append(env, envList(extra)...)
	return env, nil
}

// killGroup SIGKILLs the process group led by pid.
func killGroup(pid int) error {
	if pid <= 0 {
		return nil
	}
	err := syscall.Kill(-pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// beginCommand registers a running command unless the sandbox is being
// destroyed.
func (s *sandbox) beginCommand() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.destroyed {
		return false
	}
	s.cmdWG.Add(1)
	return true
}

func (s *sandbox) endCommand() { s.cmdWG.Done() }

func (s *sandbox) trackCommand(pid int, running bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if running {
		s.cmds[pid] = struct{}{}
	} else {
		delete(s.cmds, pid)
	}
}

// waitCommands waits until every command has returned.
func (s *sandbox) waitCommands() { s.cmdWG.Wait() }

// capWriter keeps the first max bytes written and notes the rest.
type capWriter struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	max       int
	truncated bool
}

func (c *capWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.max - c.buf.Len()
	if room >= len(p) {
		c.buf.Write(p)
		return len(p), nil
	}
	if room > 0 {
		c.buf.Write(p[:room])
	}
	c.truncated = true
	return len(p), nil
}

func (c *capWriter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// groupMembers lists the live processes of process group pgid from /proc;
// where /proc cannot be read it returns just pgid, the group leader.
func groupMembers(pgid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return []int{pgid}
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) state ppid pgrp ..."; comm may hold spaces and parens.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if pg, err := strconv.Atoi(f[2]); err == nil && pg == pgid {
			out = append(out, pid)
		}
	}
	return out
}
