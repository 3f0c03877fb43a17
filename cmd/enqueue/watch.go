package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sandboxq/sandboxq/tasks"
)

// watchOpts are the flags of `enqueue watch`.
type watchOpts struct {
	since    string
	noFollow bool
}

func watchCommand() *command {
	var o watchOpts
	return &command{
		name:    "watch",
		summary: "print a project's events (server and sandbox status changes) as they happen",
		usage: `--name NAME [flags]

Prints the events of the project's sandbox: every server status change
(starting, running, ready, failed, …) and every sandbox status change
(created, ready, destroyed, error), as the workers' watchers record them.
By default it prints events from now on until interrupted; --since 0 starts
with the retained history, --since ID after that event id, and --no-follow
prints what is there and exits. With --json each event is one JSON object
on its own line (newline-delimited JSON), for scripts.

Examples:
  enqueue watch --name shop
  enqueue watch --name shop --since 0 --no-follow
  enqueue watch --namespace acme --name shop --json | jq .status`,
		noWait: true,
		watch:  &o,
		watchFlags: func(fs *flag.FlagSet) {
			fs.StringVar(&o.since, "since", "$", "start after this event `id` (0: the retained history; $: only new events)")
			fs.BoolVar(&o.noFollow, "no-follow", false, "print the events there are and exit")
		},
	}
}

// watch runs `enqueue watch` for project p.
func (a *app) watch(ctx context.Context, cl *tasks.Client, p tasks.Project, o *watchOpts, jsonOut bool) int {
	since := strings.TrimSpace(o.since)
	if since == "" {
		since = "$"
	}
	if o.noFollow {
		if since == "$" {
			return exitOK // nothing can come after "now" without following
		}
		for {
			evs, err := cl.ReadEvents(ctx, p, since, 500)
			if err != nil {
				return a.fail(err)
			}
			for _, e := range evs {
				printEvent(a.stdout, e, jsonOut)
				since = e.ID
			}
			if len(evs) < 500 {
				return exitOK
			}
		}
	}
	events, errc := cl.Events(ctx, p.Namespace, p.Name, since)
	if !jsonOut {
		fmt.Fprintf(a.stderr, "watching %s/%s (Ctrl-C to stop)\n", p.Namespace, p.Name)
	}
	for e := range events {
		printEvent(a.stdout, e, jsonOut)
	}
	if err := <-errc; err != nil {
		return a.fail(err)
	}
	return exitOK
}

func printEvent(w io.Writer, e tasks.Event, jsonOut bool) {
	if jsonOut {
		b, _ := json.Marshal(e)
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %-10s", e.Timestamp.Local().Format(time.DateTime), e.Status)
	switch e.Type {
	case tasks.EventServerStatusChanged:
		fmt.Fprintf(&b, " server %s", e.ServerName)
		if e.URL != "" {
			fmt.Fprintf(&b, "  %s", e.URL)
		}
	default:
		fmt.Fprintf(&b, " sandbox %s", e.SandboxID)
	}
	if e.ExitCode != nil {
		fmt.Fprintf(&b, "  exit code %d", *e.ExitCode)
	}
	if e.Error != "" {
		fmt.Fprintf(&b, "  error: %s", e.Error)
	}
	fmt.Fprintf(&b, "  [%s]\n", e.ID)
	io.WriteString(w, b.String())
}
