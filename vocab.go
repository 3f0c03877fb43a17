package sandboxq

// Server statuses (computesdk-protocol.md §2.9, v2), in the order a healthy
// server goes through them, then the two statuses in which no process runs
// and the one between two runs.
const (
	ServerInstalling = "installing"
	ServerStarting   = "starting"
	ServerRunning    = "running"
	ServerReady      = "ready"
	ServerFailed     = "failed"
	ServerStopped    = "stopped"
	ServerRestarting = "restarting"
)

// ServerStatus is the status of a managed server. The constants above are
// untyped, so they are usable both as ServerStatus and as plain strings.
type ServerStatus string

// ServerStatuses lists every server status in the order of the constants.
var ServerStatuses = []ServerStatus{
	ServerInstalling, ServerStarting, ServerRunning, ServerReady,
	ServerFailed, ServerStopped, ServerRestarting,
}

// Known reports whether s is one of the server statuses of the protocol. A
// status a source reports that is not known is ignored, not recorded.
func (s ServerStatus) Known() bool {
	switch s {
	case ServerInstalling, ServerStarting, ServerRunning, ServerReady,
		ServerFailed, ServerStopped, ServerRestarting:
		return true
	}
	return false
}

// Live reports whether a server is running or on its way there
// (installing, starting, running, ready, restarting).
func (s ServerStatus) Live() bool {
	switch s {
	case ServerInstalling, ServerStarting, ServerRunning, ServerReady, ServerRestarting:
		return true
	}
	return false
}

// Terminal reports whether no process runs and none will be started without
// a restart (failed, stopped).
func (s ServerStatus) Terminal() bool { return s == ServerFailed || s == ServerStopped }

// Transitional reports whether a server is on its way to running
// (installing, starting, restarting): its status is expected to change
// soon without anyone asking.
func (s ServerStatus) Transitional() bool {
	return s == ServerInstalling || s == ServerStarting || s == ServerRestarting
}

// Rank is the position of s on the way of a healthy server: installing 1,
// starting 2, running 3, ready 4; every other status (restarting, failed,
// stopped, unknown) is 0, since it is not a step towards ready.
func (s ServerStatus) Rank() int {
	switch s {
	case ServerInstalling:
		return 1
	case ServerStarting:
		return 2
	case ServerRunning:
		return 3
	case ServerReady:
		return 4
	}
	return 0
}

// Restart policies of a managed server.
const (
	RestartNever     = "never"
	RestartOnFailure = "on-failure"
	RestartAlways    = "always"
)

// RestartPolicies lists the restart policies.
var RestartPolicies = []string{RestartNever, RestartOnFailure, RestartAlways}

// ValidRestartPolicy reports whether p is a restart policy or empty (the
// daemon's default).
func ValidRestartPolicy(p string) bool {
	switch p {
	case "", RestartNever, RestartOnFailure, RestartAlways:
		return true
	}
	return false
}

// HealthCheck configures a server's HTTP health check. Durations are in
// milliseconds on the wire. It is part of a server:start payload and of the
// daemon's POST /servers body.
type HealthCheck struct {
	Path       string `json:"path,omitempty"`
	IntervalMS int64  `json:"interval_ms,omitempty"`
	TimeoutMS  int64  `json:"timeout_ms,omitempty"`
	DelayMS    int64  `json:"delay_ms,omitempty"`
}
