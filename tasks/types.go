package tasks

import (
	"time"

	"github.com/hibiken/asynq"
	"github.com/sandboxq/sandboxq"
)

// Task type names. They are stable: a name is never renamed, because tasks
// already queued under it must still find their handler.
const (
	TypeSandboxEnsure        = "sandbox:ensure"
	TypeSandboxDestroy       = "sandbox:destroy"
	TypeFilesWrite           = "files:write"
	TypeServerStart          = "server:start"
	TypeServerStop           = "server:stop"
	TypeServerRestart        = "server:restart"
	TypeCommandRun           = "command:run"
	TypeEnvUpdate            = "env:update"
	TypeWorkflowRun          = "workflow:run"
	TypeMaintenanceCleanup   = "maintenance:cleanup"
	TypeMaintenanceReconcile = "maintenance:reconcile"
)

// Queues.
const (
	QueueCritical    = "critical"    // sandbox:ensure, sandbox:destroy
	QueueDefault     = "default"     // files, servers, commands, env, workflows
	QueueMaintenance = "maintenance" // maintenance:*
)

// DefaultQueues are the queues a worker serves and their priority weights
// (asynq.Config.Queues). Treat it as read-only; clone it to change it.
var DefaultQueues = map[string]int{
	QueueCritical:    6,
	QueueDefault:     3,
	QueueMaintenance: 1,
}

// Per-type defaults applied by New; options passed at enqueue override them.
const (
	// DefaultMaxRetry is the MaxRetry of every type (asynq's own default of
	// 25 spans about 20 days).
	DefaultMaxRetry = 8
	// DefaultRetention is how long a finished task and its result are kept.
	DefaultRetention = 24 * time.Hour

	TimeoutSandboxEnsure  = 5 * time.Minute
	TimeoutSandboxDestroy = 2 * time.Minute
	TimeoutFilesWrite     = 2 * time.Minute
	// TimeoutServerStart includes waiting for the server to become ready.
	TimeoutServerStart = 15 * time.Minute
	TimeoutServerStop  = 5 * time.Minute
	// TimeoutServerRestart applies without a wait; with one (the default)
	// it is TimeoutServerStart.
	TimeoutServerRestart = 5 * time.Minute
	TimeoutCommandRun    = 10 * time.Minute
	TimeoutEnvUpdate     = 1 * time.Minute
	TimeoutWorkflowRun   = 30 * time.Minute
	TimeoutMaintenance   = 10 * time.Minute
)

// DefaultEnvFile is the env file env:update edits when its payload names
// none.
const DefaultEnvFile = ".env"

// Values of ServerStart.WaitFor and ServerRestart.WaitFor. Empty means
// WaitForReady.
const (
	WaitForReady   = "ready"
	WaitForRunning = "running"
)

// Payload is a typed task payload. TypeName returns the payload's constant
// task type name and must work on the zero value; Validate reports the first
// problem as a *ValidationError naming the field.
//
// A payload may also implement interface{ Options() []asynq.Option } to give
// its type's default options (queue, MaxRetry, Timeout, Retention).
type Payload interface {
	TypeName() string
	Validate() error
}

// optioner is implemented by payloads with per-type default options.
type optioner interface {
	Options() []asynq.Option
}

// defaultOptions are the options every type of this package starts from.
func defaultOptions(queue string, timeout time.Duration) []asynq.Option {
	return []asynq.Option{
		asynq.Queue(queue),
		asynq.MaxRetry(DefaultMaxRetry),
		asynq.Timeout(timeout),
		asynq.Retention(DefaultRetention),
	}
}

// ValidationError says which field of a payload is wrong and why. Field is a
// path such as "name", "files[3].path" or "steps[1].payload.slug".
type ValidationError = sandboxq.ValidationError

// prefixed returns err with prefix added to the field path of a
// *ValidationError; other errors are returned unchanged.
func prefixed(prefix string, err error) error {
	if ve, ok := err.(*ValidationError); ok {
		return &ValidationError{Field: prefix + "." + ve.Field, Message: ve.Message}
	}
	return err
}
