package local

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local/internal/proc"
)

// Protocol defaults of ServerStartOptions (computesdk-protocol.md §2.9).
const (
	defaultRestartDelayMS = 1000
	defaultStopTimeoutMS  = 10000
	defaultHCIntervalMS   = 2000
	defaultHCTimeoutMS    = 1500
	defaultHCDelayMS      = 5000
	// stopGrace is added to a server's stop timeout to bound a stop that
	// has already escalated to SIGKILL.
	stopGrace = 5 * time.Second
)

var slugRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// serverStartBody is POST /servers: the v2 ServerStartOptions plus the v1
// name of start.
type serverStartBody struct {
	gateway.ServerStartOptions
	Command string `json:"command,omitempty"`
}

// managedServer is one slug's current lifecycle. Fields after srv are
// guarded by the sandbox's mu.
type managedServer struct {
	slug    string
	opts    gateway.ServerStartOptions // with defaults applied
	created time.Time

	srv      *proc.Server // nil until proc.Start returned
	state    proc.State
	override string // status set by PATCH, until the next change
	openPort int    // port announced open on the signals channel
}

// stopAndWait stops the server: SIGTERM, SIGKILL after its stop timeout,
// and returns once its processes are gone. The caller holds serverOps,
// which orders it after the start that set srv.
func (ms *managedServer) stopAndWait() error {
	if ms.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(ms.opts.StopTimeoutMS)*time.Millisecond+stopGrace)
	defer cancel()
	return ms.srv.Stop(ctx)
}

// serveServers handles /servers and /servers/{slug}[/stop|/restart|/status|/logs].
func (s *sandbox) serveServers(w http.ResponseWriter, r *http.Request, rt route) {
	segs := rt.segs[1:]
	if len(segs) == 0 {
		switch r.Method {
		case http.MethodGet:
			writeServers(w, http.StatusOK, "Servers listed", map[string]any{"servers": s.serverInfos()})
		case http.MethodPost:
			var body serverStartBody
			if err := decodeBody(r, &body, maxJSONBody, false); err != nil {
				writeDaemonError(w, statusOf(err), err.Error())
				return
			}
			info, started, err := s.startServer(body)
			if err != nil {
				writeDaemonError(w, statusOf(err), err.Error())
				return
			}
			msg := "Server started"
			if !started {
				msg = "Server already running"
			}
			writeServers(w, http.StatusOK, msg, map[string]any{"server": info})
		default:
			allowMethod(w, r, false, http.MethodGet, http.MethodPost)
		}
		return
	}
	slug := segs[0]
	ms := s.server(slug)
	if ms == nil || len(segs) > 2 {
		writeDaemonError(w, http.StatusNotFound, fmt.Sprintf("server %q not found", slug))
		return
	}
	action := ""
	if len(segs) == 2 {
		action = segs[1]
	}
	switch action {
	case "":
		if !allowMethod(w, r, false, http.MethodGet, http.MethodDelete) {
			return
		}
		if r.Method == http.MethodGet {
			writeServers(w, http.StatusOK, "Server retrieved", map[string]any{"server": s.serverInfo(ms)})
			return
		}
		if err := s.deleteServer(ms); err != nil {
			writeDaemonError(w, statusOf(err), err.Error())
			return
		}
		writeServers(w, http.StatusOK, "Server deleted", map[string]any{"slug": slug})
	case "stop":
		if !allowMethod(w, r, false, http.MethodPost) {
			return
		}
		s.serverOps.Lock()
		err := ms.stopAndWait()
		s.serverOps.Unlock()
		if err != nil {
			writeDaemonError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeServers(w, http.StatusOK, "Server stopped", map[string]any{"slug": slug})
	case "restart":
		if !allowMethod(w, r, false, http.MethodPost) {
			return
		}
		info, err := s.restartServer(r.Context(), ms)
		if err != nil {
			writeDaemonError(w, statusOf(err), err.Error())
			return
		}
		writeServers(w, http.StatusOK, "Server restarted", map[string]any{"server": info})
	case "status":
		if !allowMethod(w, r, false, http.MethodPatch) {
			return
		}
		var body struct {
			Status string `json:"status"`
		}
		if err := decodeBody(r, &body, maxJSONBody, false); err != nil {
			writeDaemonError(w, statusOf(err), err.Error())
			return
		}
		if !validServerStatus(body.Status) {
			writeDaemonError(w, http.StatusBadRequest, fmt.Sprintf("status %q is not a server status", body.Status))
			return
		}
		s.mu.Lock()
		ms.override = body.Status
		s.mu.Unlock()
		writeServers(w, http.StatusOK, "Server status updated", map[string]any{"slug": slug, "status": body.Status})
	case "logs":
		if !allowMethod(w, r, false, http.MethodGet) {
			return
		}
		stream := r.URL.Query().Get("stream")
		if stream == "" {
			stream = "combined"
		}
		logs, err := ms.srv.Logs(stream)
		if err != nil {
			writeDaemonError(w, http.StatusBadRequest, fmt.Sprintf("stream %q: want stdout, stderr or combined", stream))
			return
		}
		writeServers(w, http.StatusOK, "Server logs retrieved", gateway.ServerLogs{Slug: slug, Stream: stream, Logs: logs})
	default:
		writeDaemonError(w, http.StatusNotFound, fmt.Sprintf("not found: %s /servers/%s/%s", r.Method, slug, action))
	}
}

func writeServers(w http.ResponseWriter, status int, msg string, data any) {
	writeJSON(w, status, map[string]any{"status": "success", "message": msg, "data": data})
}

func validServerStatus(st string) bool { return sandboxq.ServerStatus(st).Known() }

func (s *sandbox) server(slug string) *managedServer {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms := s.servers[slug]
	if ms == nil || ms.srv == nil {
		return nil
	}
	return ms
}

// normalizeServer validates a start body and applies protocol defaults.
func normalizeServer(b serverStartBody) (gateway.ServerStartOptions, error) {
	o := b.ServerStartOptions
	if o.Start == "" {
		o.Start = b.Command
	}
	switch {
	case !slugRE.MatchString(o.Slug):
		return o, badRequest("slug %q is invalid (1-128 of letters, digits, '.', '_', '-', starting with a letter or digit)", o.Slug)
	case o.Start == "":
		return o, badRequest("start is required (the command that runs the server)")
	case o.Port < 0 || o.Port > 65535:
		return o, badRequest("port %d is outside 0-65535", o.Port)
	case o.MaxRestarts < 0:
		return o, badRequest("max_restarts must not be negative")
	case o.RestartDelayMS < 0 || o.StopTimeoutMS < 0:
		return o, badRequest("restart_delay_ms and stop_timeout_ms must not be negative")
	case len(o.DependsOn) > 0:
		return o, badRequest("depends_on is not supported by the local provider (it has no overlays)")
	}
	switch o.RestartPolicy {
	case "":
		o.RestartPolicy = sandboxq.RestartNever
	case sandboxq.RestartNever, sandboxq.RestartOnFailure, sandboxq.RestartAlways:
	default:
		return o, badRequest("restart_policy %q is invalid (want never, on-failure or always)", o.RestartPolicy)
	}
	if o.RestartDelayMS == 0 {
		o.RestartDelayMS = defaultRestartDelayMS
	}
	if o.StopTimeoutMS == 0 {
		o.StopTimeoutMS = defaultStopTimeoutMS
	}
	if hc := o.HealthCheck; hc != nil {
		c := *hc
		if c.Path == "" {
			c.Path = "/"
		}
		if c.Path[0] != '/' {
			return o, badRequest("health_check.path %q must start with /", c.Path)
		}
		if c.IntervalMS < 0 || c.TimeoutMS < 0 || c.DelayMS < 0 {
			return o, badRequest("health_check durations must not be negative")
		}
		if c.IntervalMS == 0 {
			c.IntervalMS = defaultHCIntervalMS
		}
		if c.TimeoutMS == 0 {
			c.TimeoutMS = defaultHCTimeoutMS
		}
		if c.DelayMS == 0 {
			c.DelayMS = defaultHCDelayMS
		}
		o.HealthCheck = &c
	}
	o.Environment = maps.Clone(o.Environment)
	return o, nil
}

// startServer starts a server, or returns the existing one unchanged when
// its slug is alive (installing, starting, running, ready, restarting). A
// stopped or failed slug is started again with the new configuration.
func (s *sandbox) startServer(b serverStartBody) (gateway.ServerInfo, bool, error) {
	opts, err := normalizeServer(b)
	if err != nil {
		return gateway.ServerInfo{}, false, err
	}
	s.serverOps.Lock()
	defer s.serverOps.Unlock()
	s.mu.Lock()
	if s.destroyed {
		s.mu.Unlock()
		return gateway.ServerInfo{}, false, notFound("sandbox not found")
	}
	old := s.servers[opts.Slug]
	s.mu.Unlock()
	if old != nil {
		st := old.srv.State()
		if !st.Status.Terminal() {
			return s.serverInfo(old), false, nil
		}
		if err := old.stopAndWait(); err != nil {
			return gateway.ServerInfo{}, false, err
		}
	}
	cfg, err := s.procConfig(opts)
	if err != nil {
		return gateway.ServerInfo{}, false, err
	}
	ms := &managedServer{slug: opts.Slug, opts: opts, created: time.Now().UTC()}
	if old != nil {
		ms.created = old.created
	}
	s.mu.Lock()
	s.servers[opts.Slug] = ms
	s.mu.Unlock()
	srv, err := proc.Start(cfg, func(st proc.State) { s.serverChanged(ms, st) })
	s.mu.Lock()
	if err != nil {
		if old != nil {
			s.servers[opts.Slug] = old
		} else {
			delete(s.servers, opts.Slug)
		}
		s.mu.Unlock()
		return gateway.ServerInfo{}, false, badRequest("start server %q: %v", opts.Slug, err)
	}
	ms.srv = srv
	s.mu.Unlock()
	s.p.log.Debug("server started", "sandbox_id", s.id, "slug", opts.Slug)
	return s.serverInfo(ms), true, nil
}

// procConfig resolves the server's directory and environment.
func (s *sandbox) procConfig(o gateway.ServerStartOptions) (proc.Config, error) {
	dir := s.dir
	if o.Path != "" {
		host, err := resolvePath(s.dir, o.Path)
		if err != nil {
			return proc.Config{}, err
		}
		fi, err := os.Stat(host)
		if err != nil || !fi.IsDir() {
			return proc.Config{}, badRequest("path %s is not an existing directory", sandboxPath(o.Path))
		}
		dir = host
	}
	vars, err := s.baseEnv()
	if err != nil {
		return proc.Config{}, err
	}
	delete(vars, "HOME") // a server's HOME is its directory (proc.Config.Dir)
	maps.Copy(vars, s.envs)
	if o.EnvFile != "" {
		f := o.EnvFile
		if f[0] != '/' {
			// Joined without cleaning, so a ".." in it is judged by
			// resolvePath rather than dropped at the root.
			f = strings.TrimSuffix(sandboxPath(o.Path), "/") + "/" + f
		}
		host, err := resolvePath(s.dir, f)
		if err != nil {
			return proc.Config{}, err
		}
		unlock := s.files.lock(host)
		content, err := s.readLocked(host, sandboxPath(f))
		unlock()
		if err != nil {
			return proc.Config{}, fmt.Errorf("env_file: %w", err)
		}
		maps.Copy(vars, envVars(parseDotenv(content)))
	}
	maps.Copy(vars, o.Environment)
	delete(vars, "PORT")
	cfg := proc.Config{
		Slug:          o.Slug,
		Start:         o.Start,
		Install:       o.Install,
		Dir:           dir,
		Env:           envList(vars),
		Port:          o.Port,
		StrictPort:    o.StrictPort,
		RestartPolicy: o.RestartPolicy,
		MaxRestarts:   o.MaxRestarts,
		RestartDelay:  time.Duration(o.RestartDelayMS) * time.Millisecond,
		StopTimeout:   time.Duration(o.StopTimeoutMS) * time.Millisecond,
		LogLimit:      s.p.logLimit,
		Logger:        s.p.log,
		Guard:         s.p.guard,
	}
	if hc := o.HealthCheck; hc != nil {
		cfg.HealthCheck = &proc.HealthCheck{
			Path:     hc.Path,
			Interval: time.Duration(hc.IntervalMS) * time.Millisecond,
			Timeout:  time.Duration(hc.TimeoutMS) * time.Millisecond,
			Delay:    time.Duration(hc.DelayMS) * time.Millisecond,
		}
	}
	return cfg, nil
}

// serverChanged records a state change of ms and turns it into signals:
// ready → port open + server-ready; a process gone after its port was
// announced → port close; failed → error.
func (s *sandbox) serverChanged(ms *managedServer, st proc.State) {
	var sigs []gateway.Signal
	s.mu.Lock()
	prev := ms.state
	ms.state = st
	ms.override = ""
	current := s.servers[ms.slug] == ms
	if current {
		if st.Status == proc.StatusReady && prev.Status != proc.StatusReady && st.Port > 0 {
			url := portURL(st.Port)
			sigs = append(sigs,
				gateway.Signal{Signal: gateway.SignalPort, Port: st.Port, URL: url, Type: "open"},
				gateway.Signal{Signal: gateway.SignalServerReady, Port: st.Port, URL: url})
			ms.openPort = st.Port
		}
		switch st.Status {
		case proc.StatusStopped, proc.StatusFailed, proc.StatusRestarting:
			if ms.openPort > 0 {
				sigs = append(sigs, gateway.Signal{Signal: gateway.SignalPort, Port: ms.openPort, URL: portURL(ms.openPort), Type: "close"})
				ms.openPort = 0
			}
		}
		if st.Status != prev.Status || serverURL(st) != serverURL(prev) {
			s.p.events.serverStatus(s.id, ms.slug, string(st.Status), serverURL(st), st.Error, st.UpdatedAt)
		}
		if st.Status == proc.StatusFailed && prev.Status != proc.StatusFailed {
			msg := fmt.Sprintf("server %s failed", ms.slug)
			if st.Error != "" {
				msg += ": " + st.Error
			}
			sigs = append(sigs, gateway.Signal{Signal: gateway.SignalError, Message: msg})
		}
	}
	s.mu.Unlock()
	for _, sig := range sigs {
		s.emitSignal(sig)
	}
}

func portURL(port int) string { return "http://127.0.0.1:" + strconv.Itoa(port) }

// serverURL is a server's url: set while it is running or ready.
func serverURL(st proc.State) string {
	if st.Port > 0 && (st.Status == proc.StatusReady || st.Status == proc.StatusRunning) {
		return portURL(st.Port)
	}
	return ""
}

func (s *sandbox) restartServer(ctx context.Context, ms *managedServer) (gateway.ServerInfo, error) {
	s.serverOps.Lock()
	defer s.serverOps.Unlock()
	ctx, cancel := context.WithTimeout(ctx, time.Duration(ms.opts.StopTimeoutMS)*time.Millisecond+stopGrace)
	defer cancel()
	if err := ms.srv.Restart(ctx); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return gateway.ServerInfo{}, fmt.Errorf("restart server %q: %v", ms.slug, err)
		}
		return gateway.ServerInfo{}, badRequest("restart server %q: %v", ms.slug, err)
	}
	return s.serverInfo(ms), nil
}

// deleteServer stops a server and forgets it.
func (s *sandbox) deleteServer(ms *managedServer) error {
	s.serverOps.Lock()
	defer s.serverOps.Unlock()
	if err := ms.stopAndWait(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.servers[ms.slug] == ms {
		delete(s.servers, ms.slug)
	}
	s.mu.Unlock()
	return nil
}

// startInitialServers starts the servers given at sandbox creation; a
// server that cannot start is logged and left out.
func (p *Provider) startInitialServers(s *sandbox, servers []serverStartBody) {
	for _, b := range servers {
		if b.Autostart != nil && !*b.Autostart {
			continue
		}
		if _, _, err := s.startServer(b); err != nil {
			p.log.Warn("start initial server", "sandbox_id", s.id, "slug", b.Slug, "err", err)
		}
	}
}

// serverInfos lists the sandbox's servers by slug.
func (s *sandbox) serverInfos() []gateway.ServerInfo {
	s.mu.Lock()
	all := make([]*managedServer, 0, len(s.servers))
	for _, ms := range s.servers {
		if ms.srv != nil {
			all = append(all, ms)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(all, func(a, b *managedServer) int {
		if a.slug < b.slug {
			return -1
		}
		if a.slug > b.slug {
			return 1
		}
		return 0
	})
	out := make([]gateway.ServerInfo, len(all))
	for i, ms := range all {
		out[i] = s.serverInfo(ms)
	}
	return out
}

// serverInfo is the wire form of ms.
func (s *sandbox) serverInfo(ms *managedServer) gateway.ServerInfo {
	st := ms.srv.State()
	s.mu.Lock()
	override := ms.override
	s.mu.Unlock()
	o := ms.opts
	info := gateway.ServerInfo{
		Slug:          o.Slug,
		Start:         o.Start,
		Command:       o.Start,
		Install:       o.Install,
		Path:          sandboxPath(o.Path),
		OriginalPath:  o.Path,
		EnvFile:       o.EnvFile,
		Environment:   o.Environment,
		Autostart:     o.Autostart,
		StrictPort:    o.StrictPort,
		Port:          st.Port,
		Status:        string(st.Status),
		PID:           st.PID,
		RestartPolicy: o.RestartPolicy,
		MaxRestarts:   o.MaxRestarts,
		RestartDelay:  time.Duration(o.RestartDelayMS) * time.Millisecond,
		StopTimeout:   time.Duration(o.StopTimeoutMS) * time.Millisecond,
		RestartCount:  st.RestartCount,
		ExitCode:      st.ExitCode,
		Error:         st.Error,
		HealthCheck:   o.HealthCheck,
		Healthy:       st.Healthy,
		CreatedAt:     ms.created,
		UpdatedAt:     st.UpdatedAt.UTC(),
	}
	if override != "" {
		info.Status = override
	}
	info.URL = serverURL(st)
	if o.HealthCheck != nil {
		info.HealthStatus = &gateway.HealthStatus{
			LastCheck:           st.LastCheck,
			LastStatus:          st.LastStatus,
			ConsecutiveFailures: st.ConsecutiveFailures,
		}
	}
	return info
}
