package worker

import (
	"context"
	"fmt"

	"github.com/sandboxq/sandboxq/dashboard"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/tasks"
)

// serverLogs reads a server's output for the dashboard's project page
// through the gateway: find the project's sandbox, then ask its daemon.
func serverLogs(gw *gateway.Client) dashboard.ServerLogsFunc {
	return func(ctx context.Context, p tasks.Project, slug string) (string, error) {
		sb, err := gw.Find(ctx, p.Namespace, p.Name)
		if err != nil {
			return "", err
		}
		if sb == nil {
			return "", fmt.Errorf("project %s/%s has no sandbox", p.Namespace, p.Name)
		}
		logs, err := gw.Daemon(sb).ServerLogs(ctx, slug, gateway.LogCombined)
		if err != nil {
			return "", err
		}
		return logs.Logs, nil
	}
}
