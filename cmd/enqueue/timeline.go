package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/internal/secret"
	"github.com/sandboxq/sandboxq/tasks"
)

// projectFunc runs a project command that is not an enqueue (list, logs).
// cl is nil for commands that need no Redis.
type projectFunc func(ctx context.Context, a *app, cl *tasks.Client, p tasks.Project, c *common) int

// listOpts are the flags of `enqueue list`.
type listOpts struct {
	state string
	limit int
}

func listCommand() *command {
	var o listOpts
	return &command{
		name:    "list",
		summary: "list a project's tasks, newest first, with every attempt and its error",
		usage: `--name NAME [flags]

Lists the tasks enqueued for the project by any producer (Go client, CLI,
HTTP API, maintenance), newest first, from the project's task index (its
last 1000 tasks, kept 7 days after the last one): state, type, id, when it
was enqueued, and each attempt with its duration and error. Tasks past their
retention are left out. With --json one object {"tasks":[...]} (the HTTP
API's GET /projects/{ns}/{name}/tasks).

Examples:
  enqueue list --name shop
  enqueue list --name shop --state archived
  enqueue list --namespace acme --name shop --json | jq '.tasks[].attempts'`,
		noWait: true,
		watchFlags: func(fs *flag.FlagSet) {
			fs.StringVar(&o.state, "state", "", "only tasks in this `state` ("+strings.Join(tasks.ListStates, ", ")+")")
			fs.IntVar(&o.limit, "limit", 50, "at most `n` tasks")
		},
		project: func(ctx context.Context, a *app, cl *tasks.Client, p tasks.Project, c *common) int {
			return a.list(ctx, cl, p, o, c.jsonOut)
		},
	}
}

func (a *app) list(ctx context.Context, cl *tasks.Client, p tasks.Project, o listOpts, jsonOut bool) int {
	recs, err := cl.ProjectTasks(ctx, p, tasks.ListOptions{State: o.state, Limit: o.limit})
	if err != nil {
		return a.fail(err)
	}
	if jsonOut {
		writeJSON(a.stdout, struct {
			Tasks []tasks.TaskRecord `json:"tasks"`
		}{recs}, false)
		return exitOK
	}
	if len(recs) == 0 {
		fmt.Fprintf(a.stderr, "no tasks recorded for %s/%s\n", p.Namespace, p.Name)
	}
	for _, r := range recs {
		printRecord(a.stdout, r)
	}
	return exitOK
}

func printRecord(w io.Writer, r tasks.TaskRecord) {
	fmt.Fprintf(w, "%s  %-9s  %-16s %s  (queue %s, %d attempt%s)\n", r.EnqueuedAt.Local().Format(time.DateTime),
		r.State, r.Type, r.ID, r.Queue, len(r.Attempts), plural(len(r.Attempts)))
	for i, at := range r.Attempts {
		line := fmt.Sprintf("    attempt %d  %s  %v", i+1, at.StartedAt.Local().Format(time.TimeOnly), time.Duration(at.DurationMS)*time.Millisecond)
		if at.Error != "" {
			line += "  error: " + oneLine(at.Error)
		}
		fmt.Fprintln(w, line)
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// logsOpts are the flags of `enqueue logs`.
type logsOpts struct {
	slug       string
	follow     bool
	tail       int
	interval   time.Duration
	gatewayURL string
}

func logsCommand() *command {
	var o logsOpts
	return &command{
		name:    "logs",
		summary: "print a server's output (stdout and stderr), --follow for new lines",
		usage: `--name NAME --slug SLUG [flags]

Prints the output of a managed server of the project's sandbox, read from
its daemon through the gateway (the read-through of the HTTP API's GET
/projects/{ns}/{name}/servers/{slug}/logs). With --follow it goes on
printing new lines as they come until interrupted. The gateway is the
worker's: $COMPUTESDK_GATEWAY_URL (or --gateway-url), $COMPUTESDK_API_KEY,
$COMPUTESDK_GATEWAY_PATHS and $COMPUTESDK_PROVIDER; a worker run with -dev
prints its local provider's URL when it starts. Needs no Redis.

Examples:
  enqueue logs --name shop --slug web
  enqueue logs --name shop --slug web --tail 20 --follow`,
		noWait:  true,
		noRedis: true,
		watchFlags: func(fs *flag.FlagSet) {
			fs.StringVar(&o.slug, "slug", "", "the server's `slug` (required)")
			fs.BoolVar(&o.follow, "follow", false, "keep printing new lines until interrupted")
			fs.IntVar(&o.tail, "tail", 0, "print only the last `n` lines first (0: all)")
			fs.DurationVar(&o.interval, "interval", time.Second, "how often --follow reads the logs")
			fs.StringVar(&o.gatewayURL, "gateway-url", "", "gateway `URL` (default $COMPUTESDK_GATEWAY_URL)")
		},
		project: func(ctx context.Context, a *app, _ *tasks.Client, p tasks.Project, _ *common) int {
			return a.logs(ctx, p, o)
		},
	}
}

// gatewayClient builds the gateway client the logs command reads through.
func (a *app) gatewayClient(o logsOpts) (*gateway.Client, error) {
	u := o.gatewayURL
	if u == "" {
		u = a.getenv("COMPUTESDK_GATEWAY_URL")
	}
	if u == "" {
		return nil, usagef("no gateway: set $COMPUTESDK_GATEWAY_URL (and $COMPUTESDK_API_KEY) as for the worker, or give --gateway-url")
	}
	opts := []gateway.Option{gateway.WithAPIKey(secret.New(a.getenv("COMPUTESDK_API_KEY")))}
	if a.getenv("COMPUTESDK_GATEWAY_PATHS") == "plural" {
		opts = append(opts, gateway.WithPathStyle(gateway.PathPlural))
	}
	if pr := a.getenv("COMPUTESDK_PROVIDER"); pr != "" {
		opts = append(opts, gateway.WithProvider(pr))
	}
	return gateway.NewClient(u, opts...)
}

func (a *app) logs(ctx context.Context, p tasks.Project, o logsOpts) int {
	cmd := a.find("logs")
	if err := tasks.CheckSlug("slug", o.slug); err != nil {
		return a.usageError(cmd, usagef("--slug: %v", err))
	}
	if o.tail < 0 || o.interval <= 0 {
		return a.usageError(cmd, usagef("--tail must not be negative and --interval must be positive"))
	}
	gw, err := a.gatewayClient(o)
	if err != nil {
		return a.usageError(cmd, err)
	}
	sb, err := gw.Find(ctx, p.Namespace, p.Name)
	switch {
	case err != nil:
		return a.fail(fmt.Errorf("find the sandbox of %s/%s: %w", p.Namespace, p.Name, err))
	case sb == nil:
		return a.fail(fmt.Errorf("project %s/%s has no live sandbox", p.Namespace, p.Name))
	}
	d := gw.Daemon(sb)
	read := func() (string, error) {
		l, err := d.ServerLogs(ctx, o.slug, gateway.LogCombined)
		if err != nil {
			return "", err
		}
		return l.Logs, nil
	}
	first, err := read()
	if errors.Is(err, gateway.ErrNotFound) {
		return a.fail(fmt.Errorf("project %s/%s has no server %q", p.Namespace, p.Name, o.slug))
	}
	if err != nil {
		return a.fail(fmt.Errorf("read the logs of server %q: %w", o.slug, err))
	}
	out := first
	if o.tail > 0 {
		out = sandboxq.LastLines(first, o.tail)
	}
	io.WriteString(a.stdout, out)
	if !o.follow {
		return exitOK
	}
	return a.followLogs(ctx, read, first, o.interval)
}

// followLogs reads the logs every interval and prints what is new after
// prev, until ctx ends.
func (a *app) followLogs(ctx context.Context, read func() (string, error), prev string, interval time.Duration) int {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return exitOK
		case <-t.C:
		}
		cur, err := read()
		if err != nil {
			if ctx.Err() != nil {
				return exitOK
			}
			fmt.Fprintf(a.stderr, "enqueue: read logs: %v\n", err)
			continue
		}
		io.WriteString(a.stdout, newOutput(prev, cur))
		prev = cur
	}
}

// newOutput is what cur has after prev: the rest when cur extends prev,
// else, when the daemon dropped the oldest output of prev, what follows
// the part of prev that cur still starts with; else all of cur.
func newOutput(prev, cur string) string {
	for i := 0; ; {
		if strings.HasPrefix(cur, prev[i:]) {
			return cur[len(prev)-i:]
		}
		j := strings.IndexByte(prev[i:], '\n')
		if j < 0 {
			return cur
		}
		i += j + 1
	}
}

func retryCommand() *command {
	return &command{
		name:    "retry",
		summary: "run an archived or cancelled task again, as a new task",
		usage: `ID [flags]

Enqueues a new task with the archived or cancelled task's payload, queue,
retry limit, timeout and retention, under the same rules as any enqueue
(validation; sandbox:ensure and sandbox:destroy are deduplicated per
project). Prints the new task's id (with --json: {id, queue, type,
duplicate}); --wait follows it as the enqueue commands do. Exit code 1 when
the task is not archived or cancelled, or cannot be found.

Examples:
  enqueue retry 0b7e6c1e-6f4f-4c4e-9a39-3f1f2f9d8c11
  enqueue retry 0b7e6c1e-6f4f-4c4e-9a39-3f1f2f9d8c11 --queue default --wait`,
		task: func(t *taskCtx) int {
			a := t.app
			r, err := t.locate()
			if err != nil {
				return a.fail(err)
			}
			e, err := t.cl.Retry(t.ctx, r.Queue, r.ID)
			if err != nil {
				return a.fail(err)
			}
			fmt.Fprintf(a.stderr, "enqueue: retrying %s %s as %s (queue %s)\n", r.Type, r.ID, e.ID, e.Queue)
			return a.report(t.ctx, t.cl, t.c, []*tasks.Enqueued{e}, false)
		},
	}
}
