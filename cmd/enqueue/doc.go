// Command enqueue puts sandboxq tasks on the queue and follows them.
//
// Usage:
//
//	enqueue <command> [flags]
//
// Commands:
//
//	ensure          find or create the project's sandbox (sandbox:ensure)
//	destroy         destroy the project's sandbox (sandbox:destroy)
//	write-files     upload files into the sandbox (files:write)
//	start-server    start a managed server and wait until it is ready (server:start)
//	stop-server     stop a managed server (server:stop)
//	restart-server  restart a managed server and wait until it is ready (server:restart)
//	run             run a shell command in the sandbox (command:run)
//	env             set and remove variables of an env file in the sandbox (env:update)
//	workflow        run several steps in order as one task (workflow:run)
//	status          show a task's state and result
//	cancel          stop a task for good (it is archived, not retried)
//
// Project commands take --namespace (default "default") and --name
// (required), and the shared flags --redis-url (else $REDIS_URL, else
// redis://127.0.0.1:6379), --wait, --timeout (for --wait, default 10m),
// --json, --queue and --max-retry. `enqueue <command> -h` prints a command's
// flags and examples; `enqueue help` lists the commands. The standard
// OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT, …) turn on tracing: each
// enqueue is then a producer span whose context the task carries to the
// workers; the spans are flushed before the program exits (tracing.go).
//
// Output. Without --wait the task id is printed on stdout and a line saying
// what was enqueued (or that an ensure/destroy of the project was already
// queued: duplicate) on stderr. With --wait the task's state changes, and
// the progress results a running task records (server:start writes one per
// server status), are printed on stderr as they happen; the final result is
// printed on stdout as indented JSON. With --json stdout holds exactly one
// JSON object, {id, queue, type, duplicate, state, result, error}, where
// result is the task's result JSON (or null) and error its last error (or
// null; "cancelled" for a cancelled task; "wait timed out after …" when
// --wait ran out). write-files adds "tasks", the same object for every task
// the file set was split into (always present, one element when the set fit
// one task); the top-level fields are the first task's.
//
// Exit codes: 0 done (or enqueued, without --wait); 1 the task failed, was
// archived or cancelled (also: status of an archived or unknown task, cancel
// of a completed or unknown task); 2 bad input or usage, including payload
// validation ("enqueue: invalid name: …" names the field); 3 --wait ran out
// of time or was interrupted by a signal, and the task goes on; 4 Redis
// cannot be reached (a PING with a 3 s timeout comes first, and the message
// names the address).
//
// Decisions worth knowing:
//
//   - The CLI is a thin layer over package tasks: payloads are the tasks
//     structs, validation and deduplication are tasks.Client's. Payloads are
//     validated before connecting, so bad input is exit 2 even when Redis is
//     down; file sets are checked file by file here and as a whole
//     (duplicate paths) by Client.WriteFiles, which also splits them.
//   - write-files reads --dir recursively and never sends .git or
//     node_modules directories. --ignore globs without "/" match a name at
//     any depth, with "/" the path relative to --dir. Symbolic links (which
//     could point outside --dir) are skipped with a warning on stderr.
//     Files that are not UTF-8 text, and only those, go as binary files
//     (tasks.BinaryFile, base64 in the payload), so text stays readable in
//     Asynqmon.
//   - run takes the command after "--": one argument is used as it is (a
//     shell line), several are joined with shell quoting.
//   - --wait uses tasks.Client.Wait for the outcome (it hears the worker's
//     end notice, see package tasks) and polls tasks.Client.Status beside it
//     only for the progress lines.
//   - status and cancel look in --queue, or in every queue of
//     tasks.DefaultQueues (highest priority first).
//   - Secrets stay out of the output: KEY=VALUE flags never echo a malformed
//     argument (the flag package would quote it), and Redis URL errors never
//     repeat the URL, which may hold a password. Results are printed as the
//     handlers wrote them; by design they hold no tokens or env values.
//   - --redis-url accepts redis://, rediss://, unix://, redis-sentinel://
//     (hosts comma-separated, ?master=name) and, for a cluster, a
//     comma-separated list of redis:// node URLs.
//   - run(ctx, args, getenv, stdin, stdout, stderr) is the whole program;
//     main only supplies the process's environment and a context cancelled
//     by SIGINT/SIGTERM. Tests call run in-process against a real Redis.
package main
