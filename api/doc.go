// Package api is sandboxq's HTTP producer API, for backends that are not
// written in Go: enqueue tasks, read and long-poll their state, cancel them,
// read a project's registry entry and follow its events as Server-Sent
// Events. The OpenAPI 3.1 document (openapi.json, served at
// /api/v1/openapi.json) describes every route.
//
//	POST   /api/v1/tasks/{type}                         enqueue → 202 {id, queue, type, duplicate[, tasks]}
//	GET    /api/v1/tasks/{queue}/{id}[?wait=30s]        state, attempts, last error, redacted result
//	DELETE /api/v1/tasks/{queue}/{id}                   cancel (404 unknown, 409 completed)
//	GET    /api/v1/projects/{namespace}/{name}          registry entry (404 absent, 503 no registry)
//	GET    /api/v1/projects/{namespace}/{name}/events   text/event-stream
//	GET    /api/v1/projects/{namespace}/{name}/sandbox          live gateway find (404 none)
//	GET    /api/v1/projects/{namespace}/{name}/servers/{slug}   server, fresh from the daemon
//	GET    /api/v1/projects/{namespace}/{name}/files?path=      {path, content} (UTF-8 text)
//	GET    /api/v1/projects/{namespace}/{name}/env?file=.env    {file, env}
//	GET    /api/v1/openapi.json                         the OpenAPI document
//
// New returns an http.Handler for the paths under Prefix; mount it with
// mux.Handle(api.Prefix+"/", a).
//
// # One set of rules
//
// Every enqueue goes through tasks.Client: the body is decoded into the
// payload type its type name names (tasks.DecodePayload) and handed to
// Client.Enqueue, so validation, defaults, deduplication of sandbox:ensure
// and sandbox:destroy, and compression are those of the Go producer.
// files:write goes through Client.WriteFiles instead, which validates the
// whole file set and splits it into tasks within the per-task limits; the
// answer is the first task plus "tasks", all of them in order. A
// validation error is 400 {"error": "invalid files[2].path: …", "field":
// "files[2].path"}: the same message and field as the Go client's
// *tasks.ValidationError. Optional query parameters queue and max_retry
// override the type's defaults; queue must be one of Config.Queues (the
// queues the deployment's workers serve), since a task anywhere else would
// wait forever. Invalid UTF-8 anywhere in the body is a 400 naming its
// field (tasks.CheckJSONUTF8) rather than being folded to U+FFFD.
//
// After every enqueue the API adds the task's queue to asynq's set of
// queues: the asynq client does that only once per process, so after Redis
// restarted empty the Inspector would otherwise not find new tasks.
//
// # Read-through routes
//
// sandbox, servers/{slug}, files and env read what a backend would
// otherwise ask its sandbox directly: each request finds the project's
// sandbox through Config.Gateway (an interface declared here, implemented
// by *gateway.Client; no registry, no task, nothing created) and reads from
// its daemon. A project without a live sandbox, or a server or file the
// daemon does not have, is 404; a bad path, slug or query parameter 400
// naming it; a gateway or daemon that fails 502 (details in the log only);
// no Gateway configured 503. The env answer holds values: it is for the
// caller that asked, and is never logged.
//
// # Typed OpenAPI document
//
// Besides the generic POST /tasks/{type}, the document lists each task
// type as its own path (POST /tasks/server:start, with that type's body
// schema); the mux serves them all through /tasks/{type}. GET
// /tasks/{queue}/{id} answers Task, a oneOf discriminated by type whose
// result is the type's result schema. Tests check the document against the
// route table, the payload structs and their validation (required fields),
// and the handlers' result structs.
//
// # Idempotency-Key
//
// A POST with an Idempotency-Key header is enqueued at most once per key
// (scoped to the bearer token and task type) for IdempotencyTTL (24 h):
// the first request SETs a "pending" record with NX in Redis, enqueues,
// then swaps its own record (compare-and-set) for the answer; a duplicate
// that finds the answer replays it with Idempotent-Replayed: true, one that
// finds the record pending waits for it (up to 10 s, then 409). So
// concurrent duplicates never both enqueue. The record also holds a hash of
// the request: the same key with another body or query is 422. Only 202
// answers are recorded; after a 4xx or 5xx the key is released and may be
// retried. An owner that dies while enqueueing holds the key for at most
// 30 s, and its enqueue is bounded to half of that so the record cannot
// expire under it.
//
// # Long polling
//
// GET /tasks/{queue}/{id}?wait=D waits with tasks.Client.Wait until the
// task is completed or archived, D has passed (capped at MaxWait, 60 s),
// the client has gone or the API is closed. The worker announces the end
// of each attempt on schema.TaskDoneChannel; every long poll of the API
// shares the Client's one subscription, so the answer follows completion
// by a few Redis round trips. A lost notice costs at most the Client's
// fallback poll (tasks.WithWaitPoll, 1 s).
//
// # Event streams
//
// The stream reads the project's capped Redis stream (schema.ReadEvents)
// from Last-Event-ID, else ?from=, else "$" (new events only; "0" gives the
// retained history). Each event is written as
//
//	id: <stream id>
//	event: <type>
//	data: <event JSON>
//
// so a client that reconnects with the last id it saw gets every later
// event exactly once. Streams do not hold a Redis connection each while
// they wait (a blocking XREAD per stream would exhaust the connection
// pool): one shared pub/sub connection subscribes to the channel of every
// project being streamed (schema.EventsChannel, published by the events
// store right after each XADD), a message wakes that project's streams,
// and they read the stream without blocking. The stream stays the source
// of truth: a stream also re-reads every EventsPollInterval (1 s), which
// covers events appended without a publish and messages lost while the
// subscription reconnects. Comment lines (": heartbeat") go out every
// Heartbeat (15 s) when nothing else did. A Last-Event-ID (or from=) that
// is malformed or beyond Redis's 64-bit id parts is a 400 that says which.
// Each write has a 30 s deadline and a stream lasts at most MaxStream
// (1 h; the client reconnects), because the worker's server has no write
// timeout. A stream also ends when the client disconnects or Close is
// called; register Close with
// http.Server.RegisterOnShutdown so Shutdown does not wait for streams.
//
// # Authentication
//
// Every route, the OpenAPI document included, needs "Authorization: Bearer
// <token>" matching one of Config.Tokens (compared in constant time over
// SHA-256 digests, against every token). Without tokens the API is open,
// which CheckListen (and New, given ListenAddr) allow only on a loopback
// address. Tokens never appear in logs, errors or answers.
//
// # Results
//
// Task results are returned redacted the way the dashboard shows them:
// env maps become their names, file contents their sizes, credential-like
// fields, at any depth and whatever the value (secret.IsCredentialName:
// "x-api-key" and "authToken" included), "[redacted]" (see redact.go). Handlers never write such values,
// so this is a second line of defence.
//
// # Errors
//
// Every error is JSON {"error": "...", "field": "..."} (field when an input
// is to blame): 400 bad input, 401 authentication, 404 unknown type, task,
// project or route, 405 wrong method, 409 completed task or key in use,
// 413 body above MaxBody (16 MiB), 415 not JSON, 422 key reuse, 500
// internal (details only in the server log), 502 gateway or daemon failed
// (read-through routes), 503 no registry or no gateway. Served by the
// worker, requests first pass its Host and cross-origin guard (403) and its
// JSON-only body check (415); see package worker.
//
// # Tracing
//
// With Config.TracerProvider every request is a server span named after
// its route that continues an incoming W3C traceparent; an enqueue made by
// the request is a child of it (through the tasks.Client's producer span),
// and so are the task's attempts in the workers. The span sees neither the
// query string nor any header.
package api
