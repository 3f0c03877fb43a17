package main

import (
	"flag"
	"io"
	"strings"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/tasks"
)

// command is one `enqueue <name>` subcommand.
type command struct {
	name    string
	summary string
	// usage is the synopsis after "enqueue <name>", then a description and
	// examples; the flag list is appended to it.
	usage string
	// project commands take --namespace/--name and the enqueue flags;
	// build registers the command's own flags and returns the function
	// that makes the request once flags are parsed.
	build func(fs *flag.FlagSet) builder
	// task commands (status, cancel) work on a task id instead.
	task func(t *taskCtx) int
	// noWait leaves out --wait and --timeout.
	noWait bool
	// watch commands (watch) take the project flags and follow its events.
	watch      *watchOpts
	watchFlags func(fs *flag.FlagSet)
	// project commands that are not enqueues (list, logs) take the
	// project flags and watchFlags; noRedis runs them without Redis.
	project projectFunc
	noRedis bool
}

// buildInput is what a builder gets once the flags are parsed.
type buildInput struct {
	project tasks.Project
	// namespaceSet and nameSet say whether the flags were given (the
	// workflow document's own values give way only to given flags).
	namespaceSet, nameSet bool
	args                  []string // positional arguments
	stdin                 io.Reader
	stderr                io.Writer
}

// request is what a project command enqueues: one payload, or (files) a set
// that tasks.Client.WriteFiles may split into several tasks.
type request struct {
	payload tasks.Payload     // nil for files
	files   *tasks.FilesWrite // files:write through WriteFiles
	// project is the payload's project when it is not the flags' one.
	project tasks.Project
}

type builder func(in *buildInput) (*request, error)

func commands() []*command {
	return []*command{
		ensureCommand(), destroyCommand(), writeFilesCommand(),
		startServerCommand(), stopServerCommand(), restartServerCommand(),
		runCommand(), envCommand(), workflowCommand(),
		statusCommand(), cancelCommand(), watchCommand(),
		listCommand(), logsCommand(), retryCommand(),
	}
}

// noArgs rejects positional arguments of commands that take none.
func noArgs(in *buildInput) error {
	if len(in.args) > 0 {
		return usagef("unexpected argument %q", in.args[0])
	}
	return nil
}

// optFalse returns a pointer to false when off is set, else nil (the
// payload default, true).
func optFalse(off bool) *bool {
	if off {
		f := false
		return &f
	}
	return nil
}

func ensureCommand() *command {
	return &command{
		name:    "ensure",
		summary: "find or create the project's sandbox (sandbox:ensure)",
		usage: `--name NAME [flags]

Finds the project's sandbox or creates it. Enqueuing while an ensure of the
same project is still queued or running returns that task (duplicate: true).

Examples:
  enqueue ensure --name shop
  enqueue ensure --namespace acme --name shop --template-id node-20 --wait
  enqueue ensure --name shop --env NODE_ENV=development --metadata owner=ops --json`,
		build: func(fs *flag.FlagSet) builder {
			var (
				timeoutMS  = fs.Int64("timeout-ms", 0, "sandbox lifetime in milliseconds (0: the provider's default)")
				provider   = fs.String("provider", "", "provider to create the sandbox with")
				templateID = fs.String("template-id", "", "template to create the sandbox from")
				metadata   kvMap
				envs       kvMap
			)
			fs.Var(&metadata, "metadata", "sandbox metadata `KEY=VALUE` (repeatable)")
			fs.Var(&envs, "env", "sandbox environment variable `KEY=VALUE` (repeatable)")
			return func(in *buildInput) (*request, error) {
				if err := noArgs(in); err != nil {
					return nil, err
				}
				p := tasks.SandboxEnsure{
					Project: in.project, TimeoutMS: *timeoutMS, Provider: *provider,
					TemplateID: *templateID, Envs: envs.Map(),
				}
				if m := metadata.Map(); m != nil {
					p.Metadata = make(map[string]any, len(m))
					for k, v := range m {
						p.Metadata[k] = v
					}
				}
				return &request{payload: p}, nil
			}
		},
	}
}

func destroyCommand() *command {
	return &command{
		name:    "destroy",
		summary: "destroy the project's sandbox (sandbox:destroy)",
		usage: `--name NAME [flags]

Destroys the project's sandbox. A project without a sandbox is success
(result "destroyed": false).

Examples:
  enqueue destroy --name shop
  enqueue destroy --namespace acme --name shop --wait --timeout 2m`,
		build: func(fs *flag.FlagSet) builder {
			return func(in *buildInput) (*request, error) {
				if err := noArgs(in); err != nil {
					return nil, err
				}
				return &request{payload: tasks.SandboxDestroy{Project: in.project}}, nil
			}
		},
	}
}

func writeFilesCommand() *command {
	return &command{
		name:    "write-files",
		summary: "upload files into the sandbox (files:write)",
		usage: `--name NAME (--dir DIR | --file LOCAL[=REMOTE] | --delete PATH)... [flags]

Sends a local directory tree (--dir, recursively), single files (--file) and
deletions (--delete) in one file set. .git and node_modules directories are
never sent; --ignore adds glob patterns (a pattern without "/" matches a file
or directory name at any depth, one with "/" the path relative to --dir).
Symbolic links are skipped with a warning on stderr; files that are not
UTF-8 text (images, fonts) are sent as binary files. Remote paths are --to joined with the path relative to --dir
(without --to they are relative to the sandbox root).

A set larger than one task's limit (4 MiB of content or 1000 files) is split
into several files:write tasks. With --json the object then describes the
first task and "tasks" lists every task as {id, queue, type, duplicate,
state, result, error}; "tasks" is always present for write-files.

Examples:
  enqueue write-files --name shop --dir ./site --to /app
  enqueue write-files --name shop --dir . --ignore '*.log' --ignore dist --to /app --wait
  enqueue write-files --name shop --file ./index.html=/app/public/index.html --delete /app/old.html`,
		build: func(fs *flag.FlagSet) builder {
			var (
				dir      = fs.String("dir", "", "local `directory` to upload recursively")
				to       = fs.String("to", "", "sandbox `path` prefix the files go under")
				noEnsure = fs.Bool("no-ensure", false, "fail instead of creating the sandbox if it does not exist")
				ignore   stringList
				files    stringList
				deletes  stringList
			)
			fs.Var(&ignore, "ignore", "skip files and directories matching `GLOB` (repeatable)")
			fs.Var(&files, "file", "upload `LOCAL[=REMOTE]` (repeatable; REMOTE defaults to --to/<base name>)")
			fs.Var(&deletes, "delete", "delete `PATH` in the sandbox (repeatable)")
			return func(in *buildInput) (*request, error) {
				if err := noArgs(in); err != nil {
					return nil, err
				}
				if *dir == "" && len(files) == 0 && len(deletes) == 0 {
					return nil, usagef("nothing to send: give --dir, --file or --delete")
				}
				ig, err := newIgnoreSet(ignore)
				if err != nil {
					return nil, err
				}
				var entries []fileEntry
				if *dir != "" {
					entries, err = collectDir(*dir, *to, ig, in.stderr)
					if err != nil {
						return nil, err
					}
				}
				for _, f := range files {
					e, err := readFileFlag(f, *to)
					if err != nil {
						return nil, err
					}
					entries = append(entries, e)
				}
				for _, d := range deletes {
					entries = append(entries, fileEntry{remote: d, delete: true})
				}
				if len(entries) == 0 {
					return nil, usagef("--dir %s holds no file to send", *dir)
				}
				p := &tasks.FilesWrite{Project: in.project, Ensure: optFalse(*noEnsure)}
				for _, e := range entries {
					p.Files = append(p.Files, e.file())
				}
				return &request{files: p}, nil
			}
		},
	}
}

// serverWaitFlags are the flags of server:start and server:restart that
// shape the handler's own wait for the server.
type serverWaitFlags struct {
	noWait        *bool
	waitFor       *string
	waitTimeoutMS *int64
}

func registerServerWait(fs *flag.FlagSet) serverWaitFlags {
	return serverWaitFlags{
		noWait:        fs.Bool("no-server-wait", false, "finish the task once the server is started, without waiting for it to be ready"),
		waitFor:       fs.String("wait-for", "", "server `state` the task waits for: ready (default) or running"),
		waitTimeoutMS: fs.Int64("wait-timeout-ms", 0, "how long the task waits for the server, in milliseconds (0: until the task's timeout)"),
	}
}

func startServerCommand() *command {
	return &command{
		name:    "start-server",
		summary: "start a managed server and wait until it is ready (server:start)",
		usage: `--name NAME --slug SLUG --command CMD [flags]

Starts the server SLUG, leaves it alone if the same server is already running
or ready, or restarts it if it stopped or failed. The task then waits for the
server to be ready (or running, --wait-for running) unless --no-server-wait.
With --wait, each status the task records is printed on stderr as it changes.

Examples:
  enqueue start-server --name shop --slug web --command 'npm run dev' --install 'npm ci' --path /app --port 3000 --wait
  enqueue start-server --name shop --slug api --command './api' --env LOG_LEVEL=debug --restart-policy on-failure --max-restarts 3
  enqueue start-server --name shop --slug web --command 'npm start' --health-path /healthz --wait-for ready --wait --json`,
		build: func(fs *flag.FlagSet) builder {
			var (
				slug          = fs.String("slug", "", "server `name` (required)")
				cmd           = fs.String("command", "", "start `command`, run with sh -c (required)")
				install       = fs.String("install", "", "install `command` run before the start command")
				dir           = fs.String("path", "", "working `directory` in the sandbox")
				port          = fs.Int("port", 0, "port the server listens on (given to it as PORT)")
				envFile       = fs.String("env-file", "", "env file in the sandbox the server reads")
				restartPolicy = fs.String("restart-policy", "", "`policy`: never, on-failure or always")
				maxRestarts   = fs.Int("max-restarts", 0, "restarts allowed by the restart policy (0: the daemon's default)")
				healthPath    = fs.String("health-path", "", "HTTP `path` that must answer 2xx before the server counts as ready")
				noEnsure      = fs.Bool("no-ensure", false, "fail instead of creating the sandbox if it does not exist")
				env           kvMap
			)
			fs.Var(&env, "env", "server environment variable `KEY=VALUE` (repeatable)")
			w := registerServerWait(fs)
			return func(in *buildInput) (*request, error) {
				if err := noArgs(in); err != nil {
					return nil, err
				}
				p := tasks.ServerStart{
					Project: in.project, Slug: *slug, Command: *cmd, Install: *install, Path: *dir,
					Env: env.Map(), EnvFile: *envFile, Port: *port, RestartPolicy: *restartPolicy,
					MaxRestarts: *maxRestarts, Wait: optFalse(*w.noWait), WaitFor: *w.waitFor,
					WaitTimeoutMS: *w.waitTimeoutMS, Ensure: optFalse(*noEnsure),
				}
				if *healthPath != "" {
					p.HealthCheck = &sandboxq.HealthCheck{Path: *healthPath}
				}
				return &request{payload: p}, nil
			}
		},
	}
}

func stopServerCommand() *command {
	return &command{
		name:    "stop-server",
		summary: "stop a managed server (server:stop)",
		usage: `--name NAME --slug SLUG [flags]

Stops the server SLUG; its configuration is kept, so start-server or
restart-server can bring it back.

Examples:
  enqueue stop-server --name shop --slug web
  enqueue stop-server --name shop --slug web --wait --json`,
		build: func(fs *flag.FlagSet) builder {
			slug := fs.String("slug", "", "server `name` (required)")
			return func(in *buildInput) (*request, error) {
				if err := noArgs(in); err != nil {
					return nil, err
				}
				return &request{payload: tasks.ServerStop{Project: in.project, Slug: *slug}}, nil
			}
		},
	}
}

func restartServerCommand() *command {
	return &command{
		name:    "restart-server",
		summary: "restart a managed server and wait until it is ready (server:restart)",
		usage: `--name NAME --slug SLUG [flags]

Restarts the server SLUG and, unless --no-server-wait, waits as start-server
does.

Examples:
  enqueue restart-server --name shop --slug web --wait
  enqueue restart-server --name shop --slug web --wait-for running --no-server-wait`,
		build: func(fs *flag.FlagSet) builder {
			slug := fs.String("slug", "", "server `name` (required)")
			w := registerServerWait(fs)
			return func(in *buildInput) (*request, error) {
				if err := noArgs(in); err != nil {
					return nil, err
				}
				return &request{payload: tasks.ServerRestart{
					Project: in.project, Slug: *slug, Wait: optFalse(*w.noWait),
					WaitFor: *w.waitFor, WaitTimeoutMS: *w.waitTimeoutMS,
				}}, nil
			}
		},
	}
}

func runCommand() *command {
	return &command{
		name:    "run",
		summary: "run a shell command in the sandbox (command:run)",
		usage: `--name NAME [flags] (--command CMD | -- CMD [ARG...])

Runs a command with sh -c in the sandbox. The command is --command, or
everything after "--": one argument is taken as it is, several are joined
with shell quoting. A non-zero exit fails the task unless --allow-nonzero.
The result holds exit_code, stdout and stderr (each capped at 64 KiB).

Examples:
  enqueue run --name shop -- npm test
  enqueue run --name shop --cwd /app --timeout-ms 600000 --wait -- 'npm ci && npm run build'
  enqueue run --name shop --command 'ls -la' --allow-nonzero --wait --json`,
		build: func(fs *flag.FlagSet) builder {
			var (
				cmd          = fs.String("command", "", "the shell `command` (or give it after --)")
				cwd          = fs.String("cwd", "", "working `directory` in the sandbox")
				timeoutMS    = fs.Int64("timeout-ms", 0, "command timeout in milliseconds (0: the daemon's default)")
				allowNonzero = fs.Bool("allow-nonzero", false, "a non-zero exit code is a result, not a failure")
				noEnsure     = fs.Bool("no-ensure", false, "fail instead of creating the sandbox if it does not exist")
				env          kvMap
			)
			fs.Var(&env, "env", "environment variable `KEY=VALUE` for the command (repeatable)")
			return func(in *buildInput) (*request, error) {
				command := *cmd
				switch {
				case command != "" && len(in.args) > 0:
					return nil, usagef("give the command with --command or after --, not both")
				case len(in.args) == 1:
					command = in.args[0]
				case len(in.args) > 1:
					command = shellJoin(in.args)
				}
				if strings.TrimSpace(command) == "" {
					return nil, usagef("no command: give --command CMD or -- CMD [ARG...]")
				}
				return &request{payload: tasks.CommandRun{
					Project: in.project, Command: command, Cwd: *cwd, Env: env.Map(),
					TimeoutMS: *timeoutMS, FailOnNonzero: optFalse(*allowNonzero), Ensure: optFalse(*noEnsure),
				}}, nil
			}
		},
	}
}

// shellJoin joins args into one sh command line, quoting each argument that
// needs it.
func shellJoin(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	return strings.Join(quoted, " ")
}

func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./-_", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func envCommand() *command {
	return &command{
		name:    "env",
		summary: "set and remove variables of an env file in the sandbox (env:update)",
		usage: `--name NAME (--set KEY=VALUE | --remove KEY)... [flags]

Merges --set variables into the env file (--file, relative to the sandbox
root; default .env) and removes the --remove ones. The result names the keys
changed, never their values.

Examples:
  enqueue env --name shop --set API_URL=https://api.example.com --set DEBUG=1
  enqueue env --name shop --file apps/web/.env.local --remove DEBUG --wait`,
		build: func(fs *flag.FlagSet) builder {
			var (
				file     = fs.String("file", tasks.DefaultEnvFile, "env `file` in the sandbox")
				noEnsure = fs.Bool("no-ensure", false, "fail instead of creating the sandbox if it does not exist")
				set      kvMap
				remove   stringList
			)
			fs.Var(&set, "set", "set `KEY=VALUE` (repeatable)")
			fs.Var(&remove, "remove", "remove `KEY` (repeatable)")
			return func(in *buildInput) (*request, error) {
				if err := noArgs(in); err != nil {
					return nil, err
				}
				if len(set.m) == 0 && len(remove) == 0 {
					return nil, usagef("nothing to change: give --set KEY=VALUE or --remove KEY")
				}
				return &request{payload: tasks.EnvUpdate{
					Project: in.project, File: *file, Set: set.Map(), Remove: []string(remove),
					Ensure: optFalse(*noEnsure),
				}}, nil
			}
		},
	}
}

func workflowCommand() *command {
	return &command{
		name:    "workflow",
		summary: "run several steps in order as one task (workflow:run)",
		usage: `--file FILE [--name NAME] [flags]

Reads a workflow document (JSON or YAML; "-" reads stdin) and enqueues it as
one workflow:run task whose steps run in order, each resumed from its
checkpoint on a retry:

  namespace: acme        # optional; --namespace wins
  name: shop             # optional; --name wins
  steps:
    - type: files:write
      payload: {files: [{path: /app/index.js, content: "console.log(1)"}]}
    - type: server:start
      payload: {slug: web, command: node index.js, port: 3000}

A step's payload is its type's payload without namespace and name. Step types:
sandbox:ensure, sandbox:destroy, files:write, server:start, server:stop,
server:restart, command:run, env:update.

Examples:
  enqueue workflow --name shop --file deploy.yaml --wait
  enqueue workflow --file deploy.json --json
  generate-steps | enqueue workflow --name shop --file -`,
		build: func(fs *flag.FlagSet) builder {
			file := fs.String("file", "", "workflow document, .json or .yaml (- for stdin; required)")
			return func(in *buildInput) (*request, error) {
				if err := noArgs(in); err != nil {
					return nil, err
				}
				if *file == "" {
					return nil, usagef("--file is required")
				}
				doc, err := readWorkflow(*file, in.stdin)
				if err != nil {
					return nil, err
				}
				p := tasks.WorkflowRun{Project: tasks.Project{Namespace: doc.Namespace, Name: doc.Name}}
				if in.namespaceSet || p.Namespace == "" {
					p.Namespace = in.project.Namespace
				}
				if in.nameSet || p.Name == "" {
					p.Name = in.project.Name
				}
				for _, s := range doc.Steps {
					p.Steps = append(p.Steps, tasks.Step{Type: s.Type, Payload: s.Payload})
				}
				return &request{payload: p, project: p.Project}, nil
			}
		},
	}
}
