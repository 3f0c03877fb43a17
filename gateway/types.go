package gateway

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/sandboxq/sandboxq"
)

// This file holds the wire shapes of the gateway and daemon protocols
// (computesdk-protocol.md §1–§2). They are shared by the client in this
// package and by the local provider in gateway/local, so a field renamed on
// one side is renamed on both; the conformance test with the official
// JavaScript client keeps both honest.

// CreateOptions is the body of POST /v1/sandboxes and the options part of
// find-or-create. Every field is optional.
type CreateOptions struct {
	Timeout    int64             `json:"timeout,omitempty"` // milliseconds
	TemplateID string            `json:"templateId,omitempty"`
	Metadata   map[string]any    `json:"metadata,omitempty"`
	Envs       map[string]string `json:"envs,omitempty"`
	Name       string            `json:"name,omitempty"`
	Namespace  string            `json:"namespace,omitempty"`
	Directory  string            `json:"directory,omitempty"`
	Provider   string            `json:"provider,omitempty"`
}

// Sandbox statuses reported by the gateway. An empty status means ready
// (legacy gateways omit it).
const (
	SandboxCreating = "creating"
	SandboxReady    = "ready"
)

// Sandbox is a SandboxRecord (protocol §1.4). Token is the daemon bearer
// token as the gateway sends it; sandboxq keeps it in memory only. LogValue
// leaves it out, so logging a *Sandbox is safe.
type Sandbox struct {
	SandboxID string         `json:"sandboxId"`
	URL       string         `json:"url"`
	Token     string         `json:"token,omitempty"`
	Provider  string         `json:"provider,omitempty"`
	Metadata  map[string]any `json:"metadata,omitempty"`
	Name      string         `json:"name,omitempty"`
	Namespace string         `json:"namespace,omitempty"`
	Status    string         `json:"status,omitempty"`
	Servers   []ServerInfo   `json:"servers,omitempty"`
}

// String describes the sandbox without its token, so %v and %+v are safe.
func (s Sandbox) String() string {
	return fmt.Sprintf("Sandbox{id=%s namespace=%s name=%s provider=%s status=%s url=%s}", s.SandboxID, s.Namespace, s.Name, s.Provider, s.Status, s.URL)
}

// GoString is String, so %#v is safe too.
func (s Sandbox) GoString() string { return s.String() }

// LogValue implements slog.LogValuer without the token.
func (s *Sandbox) LogValue() slog.Value {
	if s == nil {
		return slog.Value{}
	}
	return slog.GroupValue(
		slog.String("sandbox_id", s.SandboxID),
		slog.String("namespace", s.Namespace),
		slog.String("name", s.Name),
		slog.String("provider", s.Provider),
		slog.String("status", s.Status),
	)
}

// Server statuses, restart policies and the health check are words of the
// leaf package sandboxq (ServerReady, RestartOnFailure, ...), shared with
// tasks, events and the local provider.

// HealthCheck configures a server's HTTP health check (sandboxq.HealthCheck).
type HealthCheck = sandboxq.HealthCheck

// ServerStartOptions is the body of POST /servers (v2).
type ServerStartOptions struct {
	Slug           string            `json:"slug"`
	Start          string            `json:"start"`
	Install        string            `json:"install,omitempty"`
	Path           string            `json:"path,omitempty"`
	EnvFile        string            `json:"env_file,omitempty"`
	Environment    map[string]string `json:"environment,omitempty"`
	Port           int               `json:"port,omitempty"`
	StrictPort     bool              `json:"strict_port,omitempty"`
	Autostart      *bool             `json:"autostart,omitempty"`
	DependsOn      []string          `json:"depends_on,omitempty"`
	RestartPolicy  string            `json:"restart_policy,omitempty"`
	MaxRestarts    int               `json:"max_restarts,omitempty"`
	RestartDelayMS int64             `json:"restart_delay_ms,omitempty"`
	StopTimeoutMS  int64             `json:"stop_timeout_ms,omitempty"`
	HealthCheck    *HealthCheck      `json:"health_check,omitempty"`
}

// HealthStatus is the state of a server's health check.
type HealthStatus struct {
	LastCheck           *time.Time `json:"last_check,omitempty"`
	LastStatus          int        `json:"last_status,omitempty"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
}

// ServerInfo describes a managed server (protocol §2.9). RestartDelay and
// StopTimeout are nanoseconds on the wire, as the daemon serialises Go
// durations.
type ServerInfo struct {
	Slug          string            `json:"slug"`
	Start         string            `json:"start,omitempty"`
	Command       string            `json:"command,omitempty"` // v1 name of Start
	Install       string            `json:"install,omitempty"`
	Path          string            `json:"path,omitempty"`
	OriginalPath  string            `json:"original_path,omitempty"`
	EnvFile       string            `json:"env_file,omitempty"`
	Environment   map[string]string `json:"environment,omitempty"`
	Autostart     *bool             `json:"autostart,omitempty"`
	StrictPort    bool              `json:"strict_port,omitempty"`
	DependsOn     []string          `json:"depends_on,omitempty"`
	Port          int               `json:"port,omitempty"`
	URL           string            `json:"url,omitempty"`
	Status        string            `json:"status"`
	PID           int               `json:"pid,omitempty"`
	RestartPolicy string            `json:"restart_policy,omitempty"`
	MaxRestarts   int               `json:"max_restarts,omitempty"`
	RestartDelay  time.Duration     `json:"restart_delay,omitempty"`
	StopTimeout   time.Duration     `json:"stop_timeout,omitempty"`
	RestartCount  int               `json:"restart_count"`
	ExitCode      *int              `json:"exit_code"`
	Error         string            `json:"error,omitempty"`
	HealthCheck   *HealthCheck      `json:"health_check,omitempty"`
	Healthy       *bool             `json:"healthy,omitempty"`
	HealthStatus  *HealthStatus     `json:"health_status,omitempty"`
	CreatedAt     time.Time         `json:"created_at"`
	UpdatedAt     time.Time         `json:"updated_at"`
}

// ServerLogs is the data of GET /servers/{slug}/logs.
type ServerLogs struct {
	Slug   string `json:"slug"`
	Stream string `json:"stream"`
	Logs   string `json:"logs"`
}

// FileInfo describes a file or directory in a sandbox.
type FileInfo struct {
	Name       string    `json:"name"`
	Path       string    `json:"path"`
	Size       int64     `json:"size"`
	IsDir      bool      `json:"is_dir"`
	ModifiedAt time.Time `json:"modified_at"`
}

// Batch operations.
const (
	BatchWrite  = "write"
	BatchDelete = "delete"
)

// BatchFile is one operation of POST /files/batch.
type BatchFile struct {
	Path      string `json:"path"`
	Operation string `json:"operation"`
	Content   string `json:"content,omitempty"`
}

// BatchResult is the outcome for one path of a batch.
type BatchResult struct {
	Path    string    `json:"path"`
	Success bool      `json:"success"`
	Error   string    `json:"error,omitempty"`
	File    *FileInfo `json:"file,omitempty"`
}

// RunCommandRequest is the body of POST /run/command.
type RunCommandRequest struct {
	Command    string            `json:"command"`
	Shell      string            `json:"shell,omitempty"`
	Background bool              `json:"background,omitempty"`
	Cwd        string            `json:"cwd,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
	Stream     bool              `json:"stream,omitempty"`
	// TimeoutMS bounds a foreground command. The local provider honours it;
	// other daemons may ignore it, so callers also bound the request context.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
}

// CommandResult is the data of POST /run/command.
type CommandResult struct {
	TerminalID string `json:"terminal_id,omitempty"`
	CmdID      string `json:"cmd_id,omitempty"`
	Command    string `json:"command"`
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	ExitCode   *int   `json:"exit_code,omitempty"`
	DurationMS int64  `json:"duration_ms,omitempty"`
	Status     string `json:"status,omitempty"`
	Channel    string `json:"channel,omitempty"`
	// Truncated is set by the local provider when stdout or stderr was cut
	// at its output cap.
	Truncated bool `json:"truncated,omitempty"`
}

// EnvFile is the data of GET /env.
type EnvFile struct {
	File      string            `json:"file"`
	Variables map[string]string `json:"variables"`
}

// EnvChange is the data of POST and DELETE /env.
type EnvChange struct {
	File string   `json:"file"`
	Keys []string `json:"keys"`
}

// SignalsStatus is the data of /signals/start, /signals/stop and
// /signals/status.
type SignalsStatus struct {
	Status  string `json:"status"`
	Channel string `json:"channel"`
	WSURL   string `json:"ws_url"`
}

// Health is the body of GET /health.
type Health struct {
	Status    string `json:"status"`
	Timestamp string `json:"timestamp"`
}

// Signal kinds carried on the "signals" WebSocket channel.
const (
	SignalPort        = "port"
	SignalServerReady = "server-ready"
	SignalError       = "error"
)

// Signal is the data of a "signal" message on the signals channel.
type Signal struct {
	Signal  string `json:"signal"`
	Port    int    `json:"port,omitempty"`
	URL     string `json:"url,omitempty"`
	Type    string `json:"type,omitempty"` // "open" or "close" for port signals
	Message string `json:"message,omitempty"`
}

// WSMessage is one frame of the daemon WebSocket in the json protocol
// (protocol §3.2).
type WSMessage struct {
	Type    string          `json:"type"`
	Channel string          `json:"channel,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}
