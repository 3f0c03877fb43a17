package proc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sandboxq/sandboxq"
)

// Status is the lifecycle status of a managed server: the leaf's
// sandboxq.ServerStatus, whose predicates (Terminal, Live) it shares.
type Status = sandboxq.ServerStatus

// Statuses, in the order a healthy server goes through them.
const (
	StatusInstalling Status = sandboxq.ServerInstalling
	StatusStarting   Status = sandboxq.ServerStarting
	StatusRunning    Status = sandboxq.ServerRunning
	StatusReady      Status = sandboxq.ServerReady
	StatusFailed     Status = sandboxq.ServerFailed
	StatusStopped    Status = sandboxq.ServerStopped
	StatusRestarting Status = sandboxq.ServerRestarting
)

// Defaults applied by Start to zero fields of Config and HealthCheck
// (protocol §2.9).
const (
	DefaultRestartDelay   = time.Second
	DefaultStopTimeout    = 10 * time.Second
	DefaultLogLimit       = 256 << 10
	DefaultReadyPoll      = 100 * time.Millisecond
	DefaultHealthPath     = "/"
	DefaultHealthInterval = 2 * time.Second
	DefaultHealthTimeout  = 1500 * time.Millisecond
	DefaultHealthDelay    = 5 * time.Second
)

// DefaultPath is the PATH a server gets unless Config.Env sets one.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// shell is the interpreter of Start and Install. It is an absolute path so
// that starting it does not depend on the supervisor's own PATH.
const shell = "/bin/sh"

// HealthCheck configures the HTTP check that gates StatusReady. Zero fields
// get the protocol defaults (DefaultHealth*).
type HealthCheck struct {
	Path     string // request path (and query), starting with "/"
	Interval time.Duration
	Timeout  time.Duration
	Delay    time.Duration // wait after the port first accepts a connection
}

// Config describes one managed server.
type Config struct {
	Slug    string
	Start   string // shell command, run as sh -c Start
	Install string // optional shell command run to completion before Start
	Dir     string // absolute, existing working directory; also HOME

	// Env holds extra "KEY=VALUE" entries. They may override PATH and HOME;
	// PORT is always the reserved port.
	Env []string

	Port       int  // 0 = any free port
	StrictPort bool // fail instead of moving up when Port is busy

	RestartPolicy string        // gateway.Restart*; "" = never
	MaxRestarts   int           // 0 = unlimited
	RestartDelay  time.Duration // 0 = DefaultRestartDelay
	StopTimeout   time.Duration // 0 = DefaultStopTimeout

	HealthCheck *HealthCheck // nil = ready as soon as the port accepts

	LogLimit  int           // bytes kept per log view; 0 = DefaultLogLimit
	ReadyPoll time.Duration // port probe interval before ready; 0 = DefaultReadyPoll

	Logger *slog.Logger // nil = discard
	// Guard, if set, registers every process group of the server so that
	// it is killed when this process dies without a Stop (see Guard).
	Guard *Guard
}

// State is a snapshot of a server. Pointer fields are copies owned by the
// receiver.
type State struct {
	Slug         string
	Status       Status
	Port         int
	PID          int  // process group leader while a process runs, else 0
	ExitCode     *int // last exit; nil while a process runs or before the first exit
	RestartCount int  // automatic restarts by the restart policy
	Error        string

	// Health check results; only set when Config.HealthCheck is set, and
	// reset when a new process starts.
	Healthy             *bool
	LastCheck           *time.Time
	LastStatus          int // HTTP status of the last check, 0 if it got none
	ConsecutiveFailures int

	StartedAt time.Time // when the current (or last) process was started
	UpdatedAt time.Time // when Status, Port, ExitCode or Healthy last changed
}

func (st State) clone() State {
	if st.ExitCode != nil {
		v := *st.ExitCode
		st.ExitCode = &v
	}
	if st.Healthy != nil {
		v := *st.Healthy
		st.Healthy = &v
	}
	if st.LastCheck != nil {
		v := *st.LastCheck
		st.LastCheck = &v
	}
	return st
}

// notable reports whether b differs from a in a field that triggers onChange.
func notable(a, b State) bool {
	return a.Status != b.Status || a.Port != b.Port ||
		!eqPtr(a.ExitCode, b.ExitCode) || !eqPtr(a.Healthy, b.Healthy)
}

func eqPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Server supervises one managed server. Its methods are safe for concurrent
// use.
type Server struct {
	cfg      Config
	onChange func(State)
	log      *slog.Logger
	logs     *logSet

	mu        sync.Mutex
	st        State
	cur       *run // current lifecycle; never nil after Start
	installed bool // Install succeeded once; Restart then skips it
	pgid      int  // process group of the running command, 0 if none
	queue     []State
	draining  bool
}

// run is one lifecycle: from Start or Restart to a terminal status.
type run struct {
	ctx         context.Context
	cancel      context.CancelFunc
	done        chan struct{}
	skipInstall bool
}

func newRun(skipInstall bool) *run {
	ctx, cancel := context.WithCancel(context.Background())
	return &run{ctx: ctx, cancel: cancel, done: make(chan struct{}), skipInstall: skipInstall}
}

func (r *run) finished() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// Start validates cfg, reserves the port and starts the lifecycle in the
// background. onChange (may be nil) is called once per change of Status,
// Port, ExitCode or Healthy, in order and never concurrently for one Server.
// The first call, with the initial status, happens before Start returns.
// onChange runs on the supervisor's own goroutines: it must not block for
// long and must not call Stop or Restart, which wait for those goroutines
// (hand such work to another goroutine). State, Config, Logs, PIDs and Done
// are safe to call from it.
func Start(cfg Config, onChange func(State)) (*Server, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		onChange: onChange,
		log:      cfg.Logger.With("component", "proc", "slug", cfg.Slug),
		logs:     newLogSet(cfg.LogLimit),
	}
	port, err := reservePort(cfg.Port, cfg.StrictPort, s)
	if err != nil {
		return nil, err
	}
	r := newRun(false)
	s.cur = r
	status := StatusStarting
	if cfg.Install != "" {
		status = StatusInstalling
	}
	s.update(func(st *State) {
		st.Slug = cfg.Slug
		st.Status = status
		st.Port = port
	})
	go s.lifecycle(r)
	return s, nil
}

// State returns a snapshot of the server.
func (s *Server) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.clone()
}

// Config returns the configuration with defaults applied.
func (s *Server) Config() Config {
	c := s.cfg
	c.Env = append([]string(nil), s.cfg.Env...)
	if s.cfg.HealthCheck != nil {
		hc := *s.cfg.HealthCheck
		c.HealthCheck = &hc
	}
	return c
}

// Done returns a channel closed when the current lifecycle has ended: the
// status is failed or stopped, no restart is pending and every goroutine and
// process of the lifecycle is gone. Restart replaces it with a new channel.
func (s *Server) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.done
}

// Stop ends the server: SIGTERM to the process group, SIGKILL to the group
// after StopTimeout. It returns once the group is gone, with status stopped;
// a server that had failed is marked stopped too. Stop is idempotent. If ctx
// ends first, Stop returns ctx's error and the shutdown goes on in the
// background.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	r := s.cur
	s.mu.Unlock()
	r.cancel()
	select {
	case <-r.done:
	case <-ctx.Done():
		if !r.finished() {
			return fmt.Errorf("proc: stop server %q: %w", s.cfg.Slug, ctx.Err())
		}
	}
	s.update(func(st *State) {
		if s.cur == r && st.Status != StatusStopped {
			st.Status = StatusStopped
			st.PID = 0
		}
	})
	return nil
}

// Restart stops the server (as Stop) and starts a new lifecycle; when it
// returns the status is starting (or installing, see below) and Done is a
// new channel. The restart count is not changed: it counts restarts made by
// the restart policy only. Install runs again only if it has not yet
// succeeded. The port is reserved again, preferring the previous one. If
// ctx ends while stopping, Restart returns ctx's error and starts nothing.
// Concurrent Restarts start one new lifecycle.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	if !s.cur.finished() {
		s.mu.Unlock()
		return nil
	}
	r := newRun(s.installed)
	s.cur = r
	prev := s.st.Port
	s.mu.Unlock()

	want, strict := s.cfg.Port, s.cfg.StrictPort
	if want == 0 {
		want, strict = prev, false
	}
	port, err := reservePort(want, strict, s)
	if err != nil {
		s.update(func(st *State) {
			if s.cur == r {
				st.Status = StatusFailed
				st.Error = err.Error()
			}
		})
		close(r.done)
		return err
	}
	status := StatusStarting
	if s.cfg.Install != "" && !r.skipInstall {
		status = StatusInstalling
	}
	s.update(func(st *State) {
		st.Status = status
		st.Port = port
		st.PID = 0
		st.ExitCode = nil
		st.Error = ""
		resetHealth(st)
	})
	go s.lifecycle(r)
	return nil
}

// Logs returns the captured output: "stdout", "stderr" or "combined" (both
// in arrival order, interleaved per read from the pipes). Each view keeps
// the last LogLimit bytes; output of Install and of every restart is
// included.
func (s *Server) Logs(stream string) (string, error) {
	return s.logs.get(stream)
}

// PIDs returns the pids of the live (non-zombie) processes in the group of
// the command that runs now, Install or Start; nil if none runs.
func (s *Server) PIDs() []int {
	s.mu.Lock()
	pgid := s.pgid
	s.mu.Unlock()
	if pgid == 0 {
		return nil
	}
	return groupPIDs(pgid)
}

// update applies fn to the state under the lock and, if a notable field
// changed, queues a snapshot for onChange. The first goroutine to find
// nobody delivering becomes the deliverer and drains the queue, so
// notifications keep their order, never overlap, and an onChange that calls
// back into the Server does not deadlock.
func (s *Server) update(fn func(*State)) {
	s.mu.Lock()
	before := s.st
	fn(&s.st)
	if !notable(before, s.st) {
		s.mu.Unlock()
		return
	}
	s.st.UpdatedAt = time.Now()
	if s.onChange == nil {
		s.mu.Unlock()
		return
	}
	s.queue = append(s.queue, s.st.clone())
	if s.draining {
		s.mu.Unlock()
		return
	}
	s.draining = true
	for len(s.queue) > 0 {
		next := s.queue[0]
		s.queue = s.queue[1:]
		s.mu.Unlock()
		s.onChange(next)
		s.mu.Lock()
	}
	s.queue = nil
	s.draining = false
	s.mu.Unlock()
}

func resetHealth(st *State) {
	st.Healthy = nil
	st.LastCheck = nil
	st.LastStatus = 0
	st.ConsecutiveFailures = 0
}

// normalize applies defaults and validates.
func (c Config) normalize() (Config, error) {
	bad := func(field, format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("proc: invalid %s: %s", field, fmt.Sprintf(format, args...))
	}
	if strings.TrimSpace(c.Slug) == "" {
		return bad("Slug", "empty")
	}
	if strings.ContainsRune(c.Slug, 0) {
		return bad("Slug", "contains a NUL byte")
	}
	if strings.TrimSpace(c.Start) == "" {
		return bad("Start", "empty command")
	}
	if strings.ContainsRune(c.Start, 0) {
		return bad("Start", "contains a NUL byte")
	}
	if strings.ContainsRune(c.Install, 0) {
		return bad("Install", "contains a NUL byte")
	}
	if c.Dir == "" || !filepath.IsAbs(c.Dir) {
		return bad("Dir", "%q is not an absolute path", c.Dir)
	}
	if fi, err := os.Stat(c.Dir); err != nil {
		return bad("Dir", "%v", err)
	} else if !fi.IsDir() {
		return bad("Dir", "%q is not a directory", c.Dir)
	}
	c.Env = append([]string(nil), c.Env...)
	for i, kv := range c.Env {
		k, _, ok := strings.Cut(kv, "=")
		switch {
		case !ok:
			return bad("Env", "entry %d has no '='", i)
		case k == "":
			return bad("Env", "entry %d has an empty name", i)
		case strings.ContainsRune(kv, 0):
			return bad("Env", "entry %d (%s) contains a NUL byte", i, k)
		}
	}
	if c.Port < 0 || c.Port > 65535 {
		return bad("Port", "%d is outside 0-65535", c.Port)
	}
	switch c.RestartPolicy {
	case "":
		c.RestartPolicy = sandboxq.RestartNever
	case sandboxq.RestartNever, sandboxq.RestartOnFailure, sandboxq.RestartAlways:
	default:
		return bad("RestartPolicy", "%q (want %s, %s or %s)", c.RestartPolicy,
			sandboxq.RestartNever, sandboxq.RestartOnFailure, sandboxq.RestartAlways)
	}
	if c.MaxRestarts < 0 {
		return bad("MaxRestarts", "%d is negative", c.MaxRestarts)
	}
	durations := []durField{
		{"RestartDelay", &c.RestartDelay, DefaultRestartDelay},
		{"StopTimeout", &c.StopTimeout, DefaultStopTimeout},
		{"ReadyPoll", &c.ReadyPoll, DefaultReadyPoll},
	}
	if c.HealthCheck != nil {
		hc := *c.HealthCheck
		c.HealthCheck = &hc
		if hc.Path == "" {
			hc.Path = DefaultHealthPath
		} else if u, err := url.ParseRequestURI(hc.Path); err != nil || !strings.HasPrefix(hc.Path, "/") || u.Host != "" || u.Scheme != "" {
			return bad("HealthCheck.Path", "%q is not a path starting with /", hc.Path)
		}
		durations = append(durations,
			durField{"HealthCheck.Interval", &hc.Interval, DefaultHealthInterval},
			durField{"HealthCheck.Timeout", &hc.Timeout, DefaultHealthTimeout},
			durField{"HealthCheck.Delay", &hc.Delay, DefaultHealthDelay},
		)
	}
	for _, d := range durations {
		if *d.d < 0 {
			return bad(d.name, "%v is negative", *d.d)
		}
		if *d.d == 0 {
			*d.d = d.def
		}
	}
	if c.LogLimit < 0 {
		return bad("LogLimit", "%d is negative", c.LogLimit)
	}
	if c.LogLimit == 0 {
		c.LogLimit = DefaultLogLimit
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

type durField struct {
	name string
	d    *time.Duration
	def  time.Duration
}

// errUnknownStream is wrapped by Logs for a bad stream name.
var errUnknownStream = errors.New("unknown log stream")
