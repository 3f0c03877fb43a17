// Package tasks defines sandboxq's task catalogue and the producer Client.
//
// # Payloads
//
// Every task type has a payload struct (SandboxEnsure, FilesWrite,
// ServerStart, ...) with snake_case JSON and a value-receiver TypeName
// returning its stable type name (TypeSandboxEnsure = "sandbox:ensure",
// ...). Project payloads embed Project, so "namespace" and "name" sit at
// the top level of the JSON. New turns a payload into an *asynq.Task;
// Decode turns a task back into its payload; DecodePayload does the same by
// type name for code that holds raw payloads (the dashboard). Unknown JSON
// fields are ignored, so payloads can grow across deploys. Decode keeps a
// large files:write payload's content once: it unescapes the content in
// place in the decompressed JSON rather than copying it out, and ProjectOf
// reads the project off a payload as a stream, without decoding it.
//
// New and Decode both normalize before they validate: an empty namespace
// becomes "default", file paths, cwd, path and env_file are cleaned with
// path.Clean (a leading "/" is kept), an empty env file becomes ".env", and
// workflow steps get the workflow's project. Validation errors are
// *ValidationError values naming the field ("name", "files[3].path",
// "steps[1].payload.slug"); Decode wraps every error in a *PayloadError,
// which also wraps asynq.SkipRetry because retrying cannot fix a payload.
// Error messages name environment variables, never their values.
//
// # Limits
//
// Names (namespace, name): 1–128 characters, no whitespace, control
// characters, { or }. Paths: at most MaxPathBytes (4096) bytes, UTF-8, no
// NUL, resolved against the sandbox root — a path whose ".." would leave
// the root is rejected, and so is the root itself where a file is meant.
// One file: MaxFileBytes (10 MiB) of UTF-8 text, or of bytes with
// Encoding "base64" (BinaryFile; limits count decoded bytes, and content
// that does not decode is rejected naming files[i].content). One
// files:write task: MaxTaskContentBytes (4 MiB) of content
// and MaxFilesPerTask (1000) files, except that a single file up to 10 MiB
// travels alone; Client.WriteFiles splits larger sets in order, each file
// in exactly one task, and a file set names each path once (tasks of one
// set may run in any order). Commands: MaxCommandBytes (64 KiB). Env
// names: [A-Za-z_][A-Za-z0-9_]*, at most 256 bytes. Slugs: 1–64 of
// [A-Za-z0-9._-], starting with a letter or digit. Millisecond durations:
// 0 to 24 h. Any encoded payload: MaxPayloadBytes (16 MiB).
//
// # Compression
//
// A payload whose JSON exceeds CompressThreshold (64 KiB) is stored gzip
// compressed, with the task header "content-encoding: gzip". Readers
// without headers (Asynqmon's payload formatter) recognise the gzip magic
// bytes 1f 8b, which JSON never starts with; Uncompress does both.
//
// # Defaults
//
// Every type has a default queue, MaxRetry (8), Timeout and Retention
// (24 h), applied by New before the options passed at enqueue, which win.
//
//	type                   queue        timeout
//	sandbox:ensure         critical     5m
//	sandbox:destroy        critical     2m
//	files:write            default      2m
//	server:start           default      15m (or wait_timeout_ms + 5m if longer)
//	server:stop            default      5m
//	server:restart         default      15m with wait (default), 5m without
//	command:run            default      10m (or timeout_ms + 1m if longer)
//	env:update             default      1m
//	workflow:run           default      30m
//	maintenance:*          maintenance  10m
//
// DefaultQueues gives the queue weights a worker should use.
//
// # Redis keys
//
// Besides asynq's own keys, the Client uses the dedup keys
// (schema.DedupKey), the cancel marks (schema.CancelKey and, for a
// project's task, schema.ProjectCancelKey), the per-project
// task index (schema.TasksKey, TaskInfoKey: every task Enqueue creates for
// a project, in one round trip, or none extra for a deduplicated type
// whose index record shares the dedup record's pipeline; ProjectTasks,
// Attempts and Retry read it) and reads the event streams (schema.Follow); package schema owns and documents every
// sandboxq key. This package imports no other sandboxq package than the
// vocabulary leaf (sandboxq: Project, server statuses, restart policies,
// health check; Project and ValidationError here are aliases) and schema
// (Event is an alias of schema.Event).
//
// # Deduplication
//
// sandbox:ensure and sandbox:destroy are enqueued at most once per project
// at a time. asynq's Unique and TaskID options cannot give this: a Unique
// lock outlives an archived task and a TaskID conflicts with retained
// tasks. Instead the dedup key holds {"id","queue","state"}, and Enqueue
// loops:
//
//  1. GET the key. If it names a task that asynq reports pending,
//     scheduled, retry, aggregating or active, return that task with
//     Duplicate set.
//  2. If the key is a "creating" claim whose task does not exist yet,
//     another producer is enqueueing: wait briefly and go to 1.
//  3. Otherwise (absent, or the task completed, was archived, or is gone)
//     atomically replace exactly the value read with a "creating" claim for
//     a fresh task id (schema.CompareAndSet, the compare-and-set the HTTP
//     API's idempotency records use too, TTL 15 s). If the value
//     changed meanwhile, go to 1.
//  4. The producer that won the claim enqueues the task under that id and
//     then swaps the claim for an "enqueued" record (TTL schema.DedupTTL, 7 days,
//     plus any ProcessIn delay, as a safety net); if the enqueue fails it
//     deletes its claim.
//
// Only the holder of a claim creates a task, so concurrent producers get
// one task and duplicates of it; a producer that dies holding a claim
// delays others by at most the claim's TTL.
//
// # Waiting and cancelling
//
// Wait returns when the task completes (its result) or is archived (a
// *TaskFailedError with the last error). It does not poll on a fixed
// floor: the worker announces the end of every attempt on
// schema.TaskDoneChannel (handlers.Attempts, in the attempt's pipeline),
// and all Waits of a Client share one subscription to it, opened by the
// first Wait (before its first read, so nothing is missed once it is
// confirmed; its confirmation makes every Wait read again) and closed by
// Close. A notice makes the task's Waits read it at once and, since asynq
// records the end only after the handler returns, again at 1, 2, 4 … ms
// while it is still active; a retried attempt leaves the task retrying and
// its Waits waiting. Waits also read every wait poll (WithWaitPoll,
// default 1 s) and after a reconnect, so a lost notice costs time, never
// the outcome. Results are kept for the task's Retention; a task enqueued
// with Retention(0) vanishes on completion and Wait then reports
// ErrTaskNotFound.
//
// Cancel stops a task for good. asynq's CancelProcessing alone cancels the
// handler's context and sends the task to retry, so Cancel first sets the
// cancel mark (schema.CancelMarkTTL, 7 days), then archives a waiting task, or
// signals a running one and archives it once asynq has moved it to retry.
// Handlers check the mark when a task starts (for most types in the script
// that takes the project lease) and when their context is cancelled and end the task with asynq.SkipRetry, so a task
// whose worker
// missed the signal still stops at its next attempt. An archived task with
// a cancel mark reports Cancelled in Status, Wait and TaskFailedError
// (errors.Is(err, ErrCancelled)). Cancelling it again is a no-op; an
// archived task without the mark (one that failed) gives ErrTaskArchived,
// as a completed one gives ErrTaskFinished.
//
// # Client
//
// NewClient takes a go-redis UniversalClient (standalone, sentinel or
// cluster) and builds asynq's Client and Inspector on it; the caller owns
// and closes that connection. All methods are safe for concurrent use.
//
// # Tracing
//
// Every Enqueue is an OpenTelemetry producer span (provider from
// WithTracerProvider, else the global one, a no-op unless the program set
// one). When the enqueue runs under a span, its W3C trace context is
// written into the task's asynq headers ("traceparent", "tracestate"),
// beside "content-encoding"; the worker's attempt spans continue it. This
// is the one dependency of the package beyond asynq and go-redis: the
// OpenTelemetry API. Off, it adds about 1 µs and 8 small allocations to an
// enqueue (BenchmarkProducerSpan), next to the Redis round trip of the
// enqueue itself.
package tasks
