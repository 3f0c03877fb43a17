package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/sandboxq/sandboxq/internal/redisurl"
	"github.com/sandboxq/sandboxq/tasks"
)

// Exit codes (DESIGN.md §9.1).
const (
	exitOK      = 0 // done, or enqueued without --wait
	exitFailed  = 1 // the task failed, was archived or cancelled
	exitUsage   = 2 // bad input or usage
	exitTimeout = 3 // --wait ran out of time
	exitNoRedis = 4 // Redis cannot be reached
)

const overview = `enqueue puts sandboxq tasks on the queue and follows them.

Usage:
  enqueue <command> [flags]

Commands:
%s
Project commands take --namespace (default "default") and --name (required),
and these shared flags:
  --redis-url URL  Redis (default $REDIS_URL, else redis://127.0.0.1:6379;
                   rediss://, unix://, redis-sentinel://h1,h2?master=m, or a
                   comma-separated list of redis:// nodes for a cluster)
  --wait           wait until the task has finished: progress on stderr,
                   the result on stdout
  --timeout D      how long --wait waits (default 10m)
  --json           print one JSON object on stdout and nothing else:
                   {id, queue, type, duplicate, state, result, error}
  --queue Q        enqueue on queue Q instead of the type's default
  --max-retry N    retry at most N times instead of the type's default

Without --wait the task id is printed on stdout.

With $OTEL_EXPORTER_OTLP_ENDPOINT set, each enqueue is a traced producer
span (OTLP over HTTP; see the README's Tracing section).

Exit codes:
  0  done (or enqueued, without --wait)
  1  the task failed, was archived or was cancelled
  2  bad input or usage
  3  --wait ran out of time or was interrupted (the task goes on)
  4  cannot reach Redis

Run 'enqueue <command> -h' for a command's flags and examples.
`

// run is the whole program; main only supplies the process's environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr, cmds: commands(), tty: isTerminal(stderr)}
	args = hoistGlobalFlags(args, valueFlags(a.cmds))
	if len(args) == 0 {
		a.printOverview(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			cmd := a.find(args[1])
			if cmd == nil {
				fmt.Fprintf(stderr, "enqueue: unknown command %q\n", args[1])
				return exitUsage
			}
			a.printUsage(stdout, newInvocation(cmd))
			return exitOK
		}
		a.printOverview(stdout)
		return exitOK
	case "version":
		return a.version(args[1:])
	case "completion":
		return a.completion(args[1:])
	}
	cmd := a.find(args[0])
	if cmd == nil {
		fmt.Fprintf(stderr, "enqueue: unknown command %q\n\n", args[0])
		a.printOverview(stderr)
		return exitUsage
	}
	return a.runCommand(ctx, cmd, args[1:])
}

type app struct {
	tty            bool // stderr is a terminal: --wait shows a live status line
	getenv         func(string) string
	stdin          io.Reader
	stdout, stderr io.Writer
	cmds           []*command
}

func (a *app) find(name string) *command {
	for _, c := range a.cmds {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (a *app) printOverview(w io.Writer) {
	var b strings.Builder
	for _, c := range a.cmds {
		fmt.Fprintf(&b, "  %-15s %s\n", c.name, c.summary)
	}
	for _, c := range extraCommands {
		fmt.Fprintf(&b, "  %-15s %s\n", c[0], c[1])
	}
	fmt.Fprintf(w, overview, b.String())
}

// invocation is one command with its flag set.
type invocation struct {
	cmd    *command
	fs     *flag.FlagSet
	c      common
	build  builder
	shared map[string]bool // names of the shared flags, listed apart in usage
}

func newInvocation(cmd *command) *invocation {
	fs := flag.NewFlagSet("enqueue "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	inv := &invocation{cmd: cmd, fs: fs}
	if cmd.build != nil {
		inv.build = cmd.build(fs)
	}
	if cmd.watchFlags != nil {
		cmd.watchFlags(fs)
	}
	before := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { before[f.Name] = true })
	switch {
	case cmd.build != nil:
		inv.c.registerProject(fs)
		inv.c.registerEnqueue(fs)
	case cmd.watch != nil, cmd.project != nil:
		inv.c.registerProject(fs)
	default:
		fs.StringVar(&inv.c.queue, "queue", "", "the task's `queue` (default: look in every default queue)")
	}
	if !cmd.noWait {
		inv.c.registerWait(fs)
	}
	inv.c.registerConn(fs)
	inv.shared = map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		if !before[f.Name] {
			inv.shared[f.Name] = true
		}
	})
	return inv
}

func (a *app) printUsage(w io.Writer, inv *invocation) {
	fmt.Fprintf(w, "Usage: enqueue %s %s\n", inv.cmd.name, inv.cmd.usage)
	printFlags := func(title string, shared bool) {
		first := true
		inv.fs.VisitAll(func(f *flag.Flag) {
			if inv.shared[f.Name] != shared {
				return
			}
			if first {
				fmt.Fprintf(w, "\n%s:\n", title)
				first = false
			}
			name, usage := flag.UnquoteUsage(f)
			line := "  --" + f.Name
			if name != "" {
				line += " " + name
			}
			fmt.Fprintf(w, "%s\n        %s", line, usage)
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != fmt.Sprint(noMaxRetry) {
				fmt.Fprintf(w, " (default %q)", f.DefValue)
			}
			fmt.Fprintln(w)
		})
	}
	printFlags("Flags", false)
	printFlags("Shared flags", true)
}

func (a *app) usageError(cmd *command, err error) int {
	fmt.Fprintf(a.stderr, "enqueue %s: %v\nRun 'enqueue %s -h' for usage.\n", cmd.name, err, cmd.name)
	return exitUsage
}

func (a *app) runCommand(ctx context.Context, cmd *command, args []string) int {
	inv := newInvocation(cmd)
	pos, err := parseInterspersed(inv.fs, args)
	if errors.Is(err, flag.ErrHelp) {
		a.printUsage(a.stdout, inv)
		return exitOK
	}
	if err == nil {
		err = checkKVFlags(inv.fs)
	}
	if err == nil && inv.c.wait && inv.c.timeout <= 0 {
		err = usagef("--timeout must be positive")
	}
	if err != nil {
		return a.usageError(cmd, err)
	}
	switch {
	case cmd.task != nil:
		return a.runTaskCommand(ctx, inv, pos)
	case cmd.watch != nil, cmd.project != nil:
		return a.runWatchCommand(ctx, inv, pos)
	}
	return a.runEnqueueCommand(ctx, inv, pos)
}

// runTaskCommand runs a command about one task (status, wait, cancel...).
func (a *app) runTaskCommand(ctx context.Context, inv *invocation, pos []string) int {
	cmd := inv.cmd
	if len(pos) != 1 {
		return a.usageError(cmd, usagef("want exactly one task id, got %d arguments", len(pos)))
	}
	return a.withClient(ctx, cmd, &inv.c, func(cl *tasks.Client) int {
		return cmd.task(&taskCtx{ctx: ctx, app: a, cl: cl, c: &inv.c, id: pos[0]})
	})
}

// runWatchCommand runs a command that follows a project's events.
func (a *app) runWatchCommand(ctx context.Context, inv *invocation, pos []string) int {
	cmd := inv.cmd
	if len(pos) > 0 {
		return a.usageError(cmd, usagef("unexpected argument %q", pos[0]))
	}
	p := tasks.Project{Namespace: inv.c.namespace, Name: inv.c.name}.Normalize()
	if err := p.Validate(); err != nil {
		fmt.Fprintf(a.stderr, "enqueue: %v\n", err)
		return exitUsage
	}
	if cmd.project != nil && cmd.noRedis {
		return cmd.project(ctx, a, nil, p, &inv.c)
	}
	return a.withClient(ctx, cmd, &inv.c, func(cl *tasks.Client) int {
		if cmd.project != nil {
			return cmd.project(ctx, a, cl, p, &inv.c)
		}
		return a.watch(ctx, cl, p, cmd.watch, inv.c.jsonOut)
	})
}

// runEnqueueCommand builds a command's task from its flags and arguments,
// validates it before connecting (so bad input is exit 2 even without
// Redis), and enqueues it.
func (a *app) runEnqueueCommand(ctx context.Context, inv *invocation, pos []string) int {
	cmd := inv.cmd
	set := map[string]bool{}
	inv.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	in := &buildInput{
		project:      tasks.Project{Namespace: inv.c.namespace, Name: inv.c.name},
		namespaceSet: set["namespace"], nameSet: set["name"],
		args: pos, stdin: a.stdin, stderr: a.stderr,
	}
	req, err := inv.build(in)
	if err != nil {
		return a.usageError(cmd, err)
	}
	proj := in.project
	if req.project != (tasks.Project{}) {
		proj = req.project
	}
	if proj.Name == "" {
		fmt.Fprintf(a.stderr, "enqueue: invalid name: --name is required\n")
		return exitUsage
	}
	if req.payload != nil {
		err = req.payload.Validate()
	} else {
		err = validateFiles(req.files)
	}
	if err != nil {
		fmt.Fprintf(a.stderr, "enqueue: %v\n", err)
		return exitUsage
	}
	opts, err := enqueueOptions(&inv.c, set)
	if err != nil {
		return a.usageError(cmd, err)
	}
	return a.withClient(ctx, cmd, &inv.c, func(cl *tasks.Client) int {
		return a.enqueue(ctx, cl, &inv.c, req, opts)
	})
}

// enqueueOptions turns the --queue and --max-retry flags, where given, into
// asynq options.
func enqueueOptions(c *common, set map[string]bool) ([]asynq.Option, error) {
	var opts []asynq.Option
	if set["queue"] {
		if strings.TrimSpace(c.queue) == "" {
			return nil, usagef("--queue must not be empty")
		}
		opts = append(opts, asynq.Queue(c.queue))
	}
	if set["max-retry"] {
		if c.maxRetry < 0 {
			return nil, usagef("--max-retry must not be negative")
		}
		opts = append(opts, asynq.MaxRetry(c.maxRetry))
	}
	return opts, nil
}

// enqueue sends req and reports what was enqueued; on an error it names the
// tasks enqueued before it.
func (a *app) enqueue(ctx context.Context, cl *tasks.Client, c *common, req *request, opts []asynq.Option) int {
	var list []*tasks.Enqueued
	var err error
	if req.files != nil {
		list, err = cl.WriteFiles(ctx, *req.files, opts...)
	} else {
		var e *tasks.Enqueued
		e, err = cl.Enqueue(ctx, req.payload, opts...)
		if e != nil {
			list = append(list, e)
		}
	}
	if err != nil {
		for _, e := range list {
			fmt.Fprintf(a.stderr, "enqueue: %s %s was enqueued on queue %s before the error\n", e.Type, e.ID, e.Queue)
		}
		return a.fail(err)
	}
	return a.report(ctx, cl, c, list, req.files != nil)
}

// withClient connects to Redis, checks it answers, and runs f with a
// tasks.Client over it.
func (a *app) withClient(ctx context.Context, cmd *command, c *common, f func(*tasks.Client) int) int {
	raw := c.redisURL
	if raw == "" {
		raw = a.getenv("REDIS_URL")
	}
	if raw == "" {
		raw = defaultRedisURL
	}
	target, err := redisurl.Parse(raw)
	if err != nil {
		return a.usageError(cmd, err)
	}
	rdb := target.Open()
	defer rdb.Close()
	if err := ping(ctx, rdb); err != nil {
		fmt.Fprintf(a.stderr, "enqueue: cannot reach Redis at %s: %v\n", target.Where, err)
		return exitNoRedis
	}
	topts, flush, err := a.tracingOption(ctx)
	if err != nil {
		return a.usageError(cmd, err)
	}
	defer flush()
	cl := tasks.NewClient(rdb, topts...)
	defer cl.Close()
	return f(cl)
}

// fail reports an error of an enqueue, status or cancel call and returns
// its exit code.
func (a *app) fail(err error) int {
	fmt.Fprintf(a.stderr, "enqueue: %v\n", err)
	switch {
	case isValidation(err):
		return exitUsage
	case isConnError(err):
		return exitNoRedis
	}
	return exitFailed
}

// validateFiles checks the project and each file of a file set the way
// tasks validates a files:write payload. The set as a whole (duplicate
// paths) is left to Client.WriteFiles, which also splits it.
func validateFiles(p *tasks.FilesWrite) error {
	if err := p.Project.Validate(); err != nil {
		return err
	}
	for i, f := range p.Files {
		one := tasks.FilesWrite{Project: p.Project, Files: []tasks.File{f}}
		if err := one.Validate(); err != nil {
			if ve, ok := errors.AsType[*tasks.ValidationError](err); ok {
				field := strings.Replace(ve.Field, "files[0]", fmt.Sprintf("files[%d]", i), 1)
				return &tasks.ValidationError{Field: field, Message: ve.Message}
			}
			return err
		}
	}
	return nil
}

func isValidation(err error) bool {
	_, ok := errors.AsType[*tasks.ValidationError](err)
	return ok
}
