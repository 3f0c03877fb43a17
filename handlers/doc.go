// Package handlers runs sandboxq's tasks: one handler per task type over the
// gateway client, the middleware around them, and the error classification
// the asynq server uses to decide what happens after a failure.
//
// # Outcomes
//
// A handler's error decides the task's fate. nil: done, and the result is
// kept for the task's retention. An error wrapping asynq.SkipRetry (see
// Permanent): archived at once with that message — bad payloads, gateway and
// daemon 400/401/403/404/409/413/422, a server that failed, a command that
// exited non-zero. Anything else is retried: RetryDelay is exponential from
// 1 s with full jitter, capped at 2 min, and honours Retry-After (capped at
// 10 min). IsFailure is false for a busy project, a 429 and a lost lease, so
// those retries do not use up MaxRetry.
//
// # Per-project exclusion
//
// Every mutation of a project runs under the project's lease
// (sandboxq:{namespace/name}:lease, owner = task id, renewed while held,
// released by compare-and-delete; see schema.Acquire). A task that cannot
// take it within Config.LeaseWait returns ErrProjectBusy; while it waits,
// each release by this process wakes its longest waiter here, and a lease
// held by another process is polled for every 20–60 ms (jittered). The lease is taken
// inside the handlers, not by a middleware, because it must cover the
// gateway calls and not the waiting: server:start and server:restart release
// it before they wait for the server, so file writes are not blocked while a
// dev server boots. workflow:run takes it per step. files:write takes it
// before it decodes its payload (the project comes from a streaming scan,
// tasks.ProjectOf): a chunk waiting for a busy project holds only its
// encoded payload, so the chunks of one large file set cost one decoded
// chunk at a time, not all of them at once.
//
// For the types whose handler takes the lease before it changes anything
// (files:write, command:run, env:update, server:stop, sandbox:ensure,
// sandbox:destroy) the start check of the cancel mark (Cancellation) is
// made by the script that takes the lease (schema.AcquireUnlessCancelled):
// a marked task takes no lease and ends cancelled, at no extra round trip.
//
// # Idempotency and checkpoints
//
// A retry must finish what an earlier attempt started without redoing what
// is done. server:start leaves a server alone when the same command is
// already running or ready; files:write records the paths still pending in
// its result and a retry sends only those; workflow:run records each step's
// status in its result and a retry resumes at the first step not done. The
// result is read back through asynq's Inspector: it is the one record of an
// attempt that survives a crash and that users can see too. sandbox:destroy
// of a project with no sandbox succeeds with destroyed=false; a destroy
// records the sandbox's servers stopped before the sandbox destroyed, so
// the registry lists no dead links. A server:start cancelled through
// tasks.Client.Cancel while it waits stops the server it started or
// replaced, unless that server is ready by then (retries after a worker
// shutdown are not cancellation and leave it running).
//
// # Binary files
//
// The daemon's file API carries UTF-8 text only, so files:write writes a
// base64 file as its base64 text to a stage beside the target and then
// decodes it in place (base64 -d to a temporary name, an atomic mv onto the
// target, rm of the stage). One command decodes every staged file of an
// attempt, naming them relative to its cwd so that it means the same on
// any daemon; see files_binary.go. A file counts as written only when that
// command reports it decoded; until then it stays pending, and a retry
// stages and decodes it again under the same name.
//
// # Sandbox lookups
//
// The gateway is the source of truth for a project's sandbox. Lookups are
// remembered in-process for Config.CacheTTL (10 s by default); when a daemon
// call made with a remembered sandbox answers 401 or 404, the sandbox is
// looked up afresh and the call is made once more if it changed. That rule
// is gateway.IsStaleSandbox, which the watchers use too; a 403 is not
// stale (the daemon refuses the operation, not the sandbox record).
//
// # Dependencies and tests
//
// The handlers depend on small interfaces declared in deps.go, where they
// are used: Gateway (find, find-or-create, destroy), Daemon (servers,
// files, commands, env), Store (the registry and the event stream a
// server wait follows), Locker (project leases) and Results (a task's
// previous result). *gateway.Client, *gateway.Daemon and *events.Store
// satisfy them, and Config defaults Locks and Results to Redis. So each
// handler runs in a unit test on hand-written fakes, without Redis or an
// asynq server (handlers_unit_test.go, mock_test.go), through the same
// decoding and result writing as a task the server hands over.
//
// # Metrics
//
// Metrics are the task series: attempt duration and outcome by type, and
// project-busy reschedules. The gateway's request series are
// gateway.Metrics and the watchers' are events.Metrics; worker.New
// registers each once, and a second registration is an error.
//
// # Results
//
// Results never contain tokens, API keys, env values or file contents:
// env:update reports key names, files:write counts and paths, command:run
// its output capped at 64 KiB per stream.
//
// A server:start or server:restart that ends with the server failed or
// stopped carries the tail of the server's output in "logs"
// (gateway.LogTail, the values of the server's env masked): from the
// event of that transition when the wait follows the event stream, else
// read from the daemon once.
//
// # Attempts
//
// Attempts (attempts.go) records every attempt of a project task (start,
// duration, error) in the project's task index (schema.RecordAttempt). So
// that this costs no round trip of its own, the handler does not write its
// final result through asynq's ResultWriter when Attempts runs it: it
// hands the result over, and Attempts writes it (HSET of the task's
// "result", as the ResultWriter does) in one pipeline with the attempt
// record. The registry touch (events.Store.TouchIn) and, for the types
// above, the release of the project lease (schema.Held.ReleaseIn) join
// that pipeline, the release last; a release whose pipeline failed is
// retried on its own, as schema.Held.Release does. Progress written while
// the task runs still goes through the ResultWriter. The same pipeline
// announces the end of the attempt on schema.TaskDoneChannel, which
// tasks.Client.Wait listens to; a task without a project gets the notice
// alone, and an attempt turned away (busy project, throttled gateway)
// none, as it cannot end the task.
//
// # Tracing and the shared rate limit
//
// Tracing (tracing.go) makes each attempt a consumer span whose parent is
// the producer span named by the task's traceparent header, so the attempts
// of a retried task are siblings in one trace; a wait for a project lease
// is a child span. It records task type, id, queue, namespace, name,
// attempt and outcome, and for a failure only an error class, never the
// error's text. An attempt refused by the shared gateway rate limit
// (gateway.ErrThrottled) is treated like a busy project: outcome
// "throttled", not a failure, rescheduled when the limiter says a token is
// due plus up to BusyDelay of jitter.
package handlers
