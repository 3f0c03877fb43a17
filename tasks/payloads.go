package tasks

import (
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/sandboxq/sandboxq"
)

// DefaultNamespace is the namespace of a project whose namespace is empty.
const DefaultNamespace = sandboxq.DefaultNamespace

// Project identifies a project's sandbox (sandboxq.Project). Every project
// task payload embeds it, so "namespace" and "name" sit at the top level of
// the payload JSON. An empty Namespace means DefaultNamespace; New and
// Decode fill it in.
type Project = sandboxq.Project

// hasProject is implemented by every payload that embeds Project (Normalize
// is promoted from it).
type hasProject interface{ Normalize() Project }

// ProjectOfPayload returns the project a payload belongs to, normalized, and
// false for payloads that belong to none (the maintenance types).
func ProjectOfPayload(p Payload) (Project, bool) {
	hp, ok := p.(hasProject)
	if !ok {
		return Project{}, false
	}
	return hp.Normalize(), true
}

// normalizer is implemented by payloads that have something to normalize
// (default namespace, cleaned paths). normalize returns a normalized copy
// of the same concrete type and never modifies the receiver's slices or
// maps.
type normalizer interface{ normalize() Payload }

// normalize applies P's normalizer, if any.
func normalize[P Payload](p P) P {
	if n, ok := any(p).(normalizer); ok {
		if q, ok := n.normalize().(P); ok {
			return q
		}
	}
	return p
}

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// SandboxEnsure finds or creates the project's sandbox.
type SandboxEnsure struct {
	Project
	// TimeoutMS is the sandbox's lifetime in milliseconds (0: the
	// provider's default).
	TimeoutMS  int64             `json:"timeout_ms,omitempty"`
	Provider   string            `json:"provider,omitempty"`
	TemplateID string            `json:"template_id,omitempty"`
	Metadata   map[string]any    `json:"metadata,omitempty"`
	Envs       map[string]string `json:"envs,omitempty"`
}

func (SandboxEnsure) TypeName() string { return TypeSandboxEnsure }

func (p SandboxEnsure) Validate() error {
	if err := p.Project.Validate(); err != nil {
		return err
	}
	if err := checkMS("timeout_ms", p.TimeoutMS); err != nil {
		return err
	}
	if err := checkToken("provider", p.Provider, 64); err != nil {
		return err
	}
	if err := checkToken("template_id", p.TemplateID, 256); err != nil {
		return err
	}
	return checkEnv("envs", p.Envs)
}

func (SandboxEnsure) Options() []asynq.Option {
	return defaultOptions(QueueCritical, TimeoutSandboxEnsure)
}

func (p SandboxEnsure) normalize() Payload { p.Project = p.Project.Normalize(); return p }

// SandboxDestroy destroys the project's sandbox. Nothing to destroy is
// success.
type SandboxDestroy struct {
	Project
}

func (SandboxDestroy) TypeName() string { return TypeSandboxDestroy }

func (p SandboxDestroy) Validate() error { return p.Project.Validate() }

func (SandboxDestroy) Options() []asynq.Option {
	return defaultOptions(QueueCritical, TimeoutSandboxDestroy)
}

func (p SandboxDestroy) normalize() Payload { p.Project = p.Project.Normalize(); return p }

// File is one write or delete of a files:write task. Content is UTF-8
// text, or with Encoding EncodingBase64 the standard base64 of the bytes to
// write (build such a File with BinaryFile; Bytes decodes either kind).
// Size limits count decoded bytes.
type File struct {
	Path     string `json:"path"`
	Content  string `json:"content,omitempty"`
	Encoding string `json:"encoding,omitempty"`
	Delete   bool   `json:"delete,omitempty"`
}

// FilesWrite writes and deletes files in one batch.
type FilesWrite struct {
	Project
	Files []File `json:"files"`
	// Ensure creates the sandbox if it does not exist (default true).
	Ensure *bool `json:"ensure,omitempty"`
}

func (FilesWrite) TypeName() string { return TypeFilesWrite }

// ShouldEnsure reports Ensure with its default.
func (p FilesWrite) ShouldEnsure() bool { return boolOr(p.Ensure, true) }

func (p FilesWrite) Validate() error {
	if err := p.Project.Validate(); err != nil {
		return err
	}
	return checkFiles(p.Files, true)
}

func (FilesWrite) Options() []asynq.Option {
	return defaultOptions(QueueDefault, TimeoutFilesWrite)
}

func (p FilesWrite) normalize() Payload {
	p.Project = p.Project.Normalize()
	files := make([]File, len(p.Files))
	for i, f := range p.Files {
		f.Path = normalizePath(f.Path, false)
		files[i] = f
	}
	if p.Files != nil {
		p.Files = files
	}
	return p
}

// checkFiles validates a file set. With perTask it also applies the
// per-task limits that Client.WriteFiles splits around.
func checkFiles(files []File, perTask bool) error {
	if len(files) == 0 {
		return invalid("files", "must name at least one file")
	}
	if perTask && len(files) > MaxFilesPerTask {
		return invalid("files", "has %d files, at most %d fit one task; use Client.WriteFiles to split", len(files), MaxFilesPerTask)
	}
	seen := make(map[string]int, len(files))
	total := 0
	for i, f := range files {
		field := fmt.Sprintf("files[%d]", i)
		p, err := cleanPath(field+".path", f.Path, false)
		if err != nil {
			return err
		}
		if j, dup := seen[p]; dup {
			return invalid(field+".path", "%s is also files[%d]; name each path once", quote(p), j)
		}
		seen[p] = i
		if f.Delete && f.Content != "" {
			return invalid(field+".content", "must be empty when delete is true")
		}
		n, err := checkContent(field, f)
		if err != nil {
			return err
		}
		total += n
	}
	if perTask && len(files) > 1 && total > MaxTaskContentBytes {
		return invalid("files", "total content of %d bytes is more than the %d-byte limit per task; use Client.WriteFiles to split", total, MaxTaskContentBytes)
	}
	return nil
}

// ServerStart starts (or keeps, or restarts) a managed server and by default
// waits until it is ready.
type ServerStart struct {
	Project
	Slug          string                `json:"slug"`
	Command       string                `json:"command"`
	Install       string                `json:"install,omitempty"`
	Path          string                `json:"path,omitempty"`
	Env           map[string]string     `json:"env,omitempty"`
	EnvFile       string                `json:"env_file,omitempty"`
	Port          int                   `json:"port,omitempty"`
	RestartPolicy string                `json:"restart_policy,omitempty"`
	MaxRestarts   int                   `json:"max_restarts,omitempty"`
	HealthCheck   *sandboxq.HealthCheck `json:"health_check,omitempty"`
	// Wait waits for the server to become ready (default true).
	Wait *bool `json:"wait,omitempty"`
	// WaitFor is WaitForReady (default) or WaitForRunning.
	WaitFor string `json:"wait_for,omitempty"`
	// WaitTimeoutMS bounds the wait (0: until the task's timeout).
	WaitTimeoutMS int64 `json:"wait_timeout_ms,omitempty"`
	// Ensure creates the sandbox if it does not exist (default true).
	Ensure *bool `json:"ensure,omitempty"`
}

func (ServerStart) TypeName() string { return TypeServerStart }

// ShouldWait reports Wait with its default.
func (p ServerStart) ShouldWait() bool { return boolOr(p.Wait, true) }

// ShouldEnsure reports Ensure with its default.
func (p ServerStart) ShouldEnsure() bool { return boolOr(p.Ensure, true) }

func (p ServerStart) Validate() error {
	if err := p.Project.Validate(); err != nil {
		return err
	}
	if err := checkSlug("slug", p.Slug); err != nil {
		return err
	}
	if err := checkCommand("command", p.Command, true); err != nil {
		return err
	}
	if err := checkCommand("install", p.Install, false); err != nil {
		return err
	}
	if err := checkOptionalPath("path", p.Path, true); err != nil {
		return err
	}
	if err := checkEnv("env", p.Env); err != nil {
		return err
	}
	if err := checkOptionalPath("env_file", p.EnvFile, false); err != nil {
		return err
	}
	if p.Port < 0 || p.Port > 65535 {
		return invalid("port", "%d is not a TCP port (0-65535)", p.Port)
	}
	if !sandboxq.ValidRestartPolicy(p.RestartPolicy) {
		return invalid("restart_policy", "%s must be %q, %q or %q", quote(p.RestartPolicy),
			sandboxq.RestartNever, sandboxq.RestartOnFailure, sandboxq.RestartAlways)
	}
	if p.MaxRestarts < 0 {
		return invalid("max_restarts", "must not be negative")
	}
	if hc := p.HealthCheck; hc != nil {
		if hc.Path != "" {
			if err := checkToken("health_check.path", hc.Path, 2048); err != nil {
				return err
			}
			if hc.Path[0] != '/' {
				return invalid("health_check.path", "%s must start with /", quote(hc.Path))
			}
		}
		for _, f := range []struct {
			name string
			v    int64
		}{{"interval_ms", hc.IntervalMS}, {"timeout_ms", hc.TimeoutMS}, {"delay_ms", hc.DelayMS}} {
			if err := checkMS("health_check."+f.name, f.v); err != nil {
				return err
			}
		}
	}
	if err := checkWaitFor("wait_for", p.WaitFor); err != nil {
		return err
	}
	return checkMS("wait_timeout_ms", p.WaitTimeoutMS)
}

// Options gives server:start's defaults; a wait longer than the default
// timeout extends the timeout by five minutes beyond the wait.
func (p ServerStart) Options() []asynq.Option {
	return defaultOptions(QueueDefault, atLeast(TimeoutServerStart, p.WaitTimeoutMS, 5*time.Minute))
}

func (p ServerStart) normalize() Payload {
	p.Project = p.Project.Normalize()
	p.Path = normalizePath(p.Path, true)
	p.EnvFile = normalizePath(p.EnvFile, false)
	return p
}

// atLeast returns def, or ms milliseconds plus margin if that is longer.
func atLeast(def time.Duration, ms int64, margin time.Duration) time.Duration {
	if d := time.Duration(ms)*time.Millisecond + margin; ms > 0 && d > def {
		return d
	}
	return def
}

// ServerStop stops a managed server (its configuration is kept).
type ServerStop struct {
	Project
	Slug string `json:"slug"`
}

func (ServerStop) TypeName() string { return TypeServerStop }

func (p ServerStop) Validate() error {
	if err := p.Project.Validate(); err != nil {
		return err
	}
	return checkSlug("slug", p.Slug)
}

func (ServerStop) Options() []asynq.Option {
	return defaultOptions(QueueDefault, TimeoutServerStop)
}

func (p ServerStop) normalize() Payload { p.Project = p.Project.Normalize(); return p }

// ServerRestart restarts a managed server and by default waits as
// ServerStart does.
type ServerRestart struct {
	Project
	Slug          string `json:"slug"`
	Wait          *bool  `json:"wait,omitempty"`
	WaitFor       string `json:"wait_for,omitempty"`
	WaitTimeoutMS int64  `json:"wait_timeout_ms,omitempty"`
}

func (ServerRestart) TypeName() string { return TypeServerRestart }

// ShouldWait reports Wait with its default (true).
func (p ServerRestart) ShouldWait() bool { return boolOr(p.Wait, true) }

func (p ServerRestart) Validate() error {
	if err := p.Project.Validate(); err != nil {
		return err
	}
	if err := checkSlug("slug", p.Slug); err != nil {
		return err
	}
	if err := checkWaitFor("wait_for", p.WaitFor); err != nil {
		return err
	}
	return checkMS("wait_timeout_ms", p.WaitTimeoutMS)
}

// Options gives server:restart's defaults: TimeoutServerRestart without a
// wait, TimeoutServerStart (or the wait plus five minutes) with one.
func (p ServerRestart) Options() []asynq.Option {
	if !p.ShouldWait() {
		return defaultOptions(QueueDefault, TimeoutServerRestart)
	}
	return defaultOptions(QueueDefault, atLeast(TimeoutServerStart, p.WaitTimeoutMS, 5*time.Minute))
}

func (p ServerRestart) normalize() Payload { p.Project = p.Project.Normalize(); return p }

// CommandRun runs a shell command in the sandbox.
type CommandRun struct {
	Project
	Command   string            `json:"command"`
	Cwd       string            `json:"cwd,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	TimeoutMS int64             `json:"timeout_ms,omitempty"`
	// FailOnNonzero makes a non-zero exit a permanent failure (default
	// true).
	FailOnNonzero *bool `json:"fail_on_nonzero,omitempty"`
	// Ensure creates the sandbox if it does not exist (default true).
	Ensure *bool `json:"ensure,omitempty"`
}

func (CommandRun) TypeName() string { return TypeCommandRun }

// ShouldFailOnNonzero reports FailOnNonzero with its default.
func (p CommandRun) ShouldFailOnNonzero() bool { return boolOr(p.FailOnNonzero, true) }

// ShouldEnsure reports Ensure with its default.
func (p CommandRun) ShouldEnsure() bool { return boolOr(p.Ensure, true) }

func (p CommandRun) Validate() error {
	if err := p.Project.Validate(); err != nil {
		return err
	}
	if err := checkCommand("command", p.Command, true); err != nil {
		return err
	}
	if err := checkOptionalPath("cwd", p.Cwd, true); err != nil {
		return err
	}
	if err := checkEnv("env", p.Env); err != nil {
		return err
	}
	return checkMS("timeout_ms", p.TimeoutMS)
}

// Options gives command:run's defaults; a command timeout longer than the
// default task timeout extends it by a minute beyond the command's.
func (p CommandRun) Options() []asynq.Option {
	return defaultOptions(QueueDefault, atLeast(TimeoutCommandRun, p.TimeoutMS, time.Minute))
}

func (p CommandRun) normalize() Payload {
	p.Project = p.Project.Normalize()
	p.Cwd = normalizePath(p.Cwd, true)
	return p
}

// EnvUpdate sets and removes variables of an env file (relative to the
// sandbox root; default DefaultEnvFile).
type EnvUpdate struct {
	Project
	File   string            `json:"file,omitempty"`
	Set    map[string]string `json:"set,omitempty"`
	Remove []string          `json:"remove,omitempty"`
	// Ensure creates the sandbox if it does not exist (default true).
	Ensure *bool `json:"ensure,omitempty"`
}

func (EnvUpdate) TypeName() string { return TypeEnvUpdate }

// ShouldEnsure reports Ensure with its default.
func (p EnvUpdate) ShouldEnsure() bool { return boolOr(p.Ensure, true) }

func (p EnvUpdate) Validate() error {
	if err := p.Project.Validate(); err != nil {
		return err
	}
	if err := checkOptionalPath("file", p.File, false); err != nil {
		return err
	}
	if len(p.Set) == 0 && len(p.Remove) == 0 {
		return invalid("set", "set or remove must name at least one variable")
	}
	if err := checkEnv("set", p.Set); err != nil {
		return err
	}
	for i, k := range p.Remove {
		field := fmt.Sprintf("remove[%d]", i)
		if err := checkEnvKey(field, k); err != nil {
			return err
		}
		if _, both := p.Set[k]; both {
			return invalid(field, "%s is also in set", k)
		}
	}
	return nil
}

func (EnvUpdate) Options() []asynq.Option {
	return defaultOptions(QueueDefault, TimeoutEnvUpdate)
}

func (p EnvUpdate) normalize() Payload {
	p.Project = p.Project.Normalize()
	if p.File == "" {
		p.File = DefaultEnvFile
	}
	p.File = normalizePath(p.File, false)
	return p
}

// MaintenanceCleanup enqueues sandbox:destroy for sandboxes idle longer than
// IdleTTL.
type MaintenanceCleanup struct {
	// IdleTTL is a Go duration ("2h"); empty means the worker's configured
	// default.
	IdleTTL string `json:"idle_ttl,omitempty"`
}

func (MaintenanceCleanup) TypeName() string { return TypeMaintenanceCleanup }

// IdleTTLDuration returns IdleTTL parsed, or 0 when it is empty or invalid.
func (p MaintenanceCleanup) IdleTTLDuration() time.Duration {
	d, err := time.ParseDuration(p.IdleTTL)
	if err != nil || d <= 0 {
		return 0
	}
	return d
}

func (p MaintenanceCleanup) Validate() error {
	if p.IdleTTL == "" {
		return nil
	}
	d, err := time.ParseDuration(p.IdleTTL)
	if err != nil {
		return invalid("idle_ttl", "%s is not a duration such as \"2h\" or \"30m\"", quote(p.IdleTTL))
	}
	if d <= 0 {
		return invalid("idle_ttl", "must be positive")
	}
	return nil
}

func (MaintenanceCleanup) Options() []asynq.Option {
	return defaultOptions(QueueMaintenance, TimeoutMaintenance)
}

// MaintenanceReconcile refreshes the sandbox registry.
type MaintenanceReconcile struct{}

func (MaintenanceReconcile) TypeName() string { return TypeMaintenanceReconcile }

func (MaintenanceReconcile) Validate() error { return nil }

func (MaintenanceReconcile) Options() []asynq.Option {
	return defaultOptions(QueueMaintenance, TimeoutMaintenance)
}
