package gateway

import (
	"context"

	"github.com/sandboxq/sandboxq"
)

// LogReader reads a managed server and its output (*Daemon).
type LogReader interface {
	GetServer(ctx context.Context, slug string) (*ServerInfo, error)
	ServerLogs(ctx context.Context, slug, stream string) (*ServerLogs, error)
}

// LogTail is the tail of a server's combined output that travels with its
// failure: sandboxq.LogTail of what the daemon keeps (the last 50 lines,
// at most 8 KiB), with the values of the server's own environment (the
// env of the task that started it) masked. It is the one reader of that
// tail: the watcher puts it on the failed or stopped event, a server task
// on its result.
func LogTail(ctx context.Context, r LogReader, slug string) (string, error) {
	var env map[string]string
	if s, err := r.GetServer(ctx, slug); err == nil {
		env = s.Environment
	} else if IsStaleSandbox(err) {
		return "", err
	}
	logs, err := r.ServerLogs(ctx, slug, LogCombined)
	if err != nil {
		return "", err
	}
	return sandboxq.LogTail(logs.Logs, env), nil
}
