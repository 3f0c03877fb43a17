// Package schema owns sandboxq's Redis schema: every key and channel name,
// every Lua script, the lifetimes of the keys, and the reading of a
// project's event stream (Follow). No other package builds a sandboxq key
// or holds a script. This file is the key table that consumers in other
// languages (Node, Python) read; the README and package events point here.
//
// schema imports only the vocabulary leaf (package sandboxq), go-redis and
// the standard library, so producers (tasks, cmd/enqueue) link it without a
// gateway client.
//
// # Hash tags
//
// Every per-project key contains the project's Redis Cluster hash tag
// {<namespace>/<name>} (ProjectTag): the namespace with "%" written "%25"
// and "/" written "%2F", so no two projects share a tag; an empty namespace
// is "default". One project's keys share a cluster slot, so a script may
// touch several of them. IndexMember is the same text without the braces.
//
// # Keys
//
// Key (Go name) — Redis type — value — lifetime — written by.
//
//	sandboxq:{ns/name}:events (EventsKey) — stream — entries with one field
//	    "event": the event JSON without "id" (the entry id is the event id);
//	    capped with XADD MAXLEN ~ (events.StoreConfig.MaxLen, default
//	    10000) — no TTL — events.Store, in the Registry* scripts.
//	sandboxq:{ns/name}:events (EventsChannel) — pub/sub channel — the event
//	    JSON with "id", published right after the XADD in the same script.
//	sandboxq:events (AllEventsChannel) — pub/sub channel — every project's
//	    events, same JSON.
//	sandboxq:{ns/name}:sandbox (RegistryKey) — hash — the registry entry,
//	    fields below — no TTL (removed by maintenance) — events.Store.
//	sandboxq:sandboxes (RegistryIndexKey) — sorted set — member IndexMember
//	    "<ns>/<name>", score last_used in Unix ms — events.Store.
//	sandboxq:{ns/name}:watcher (WatcherKey) — string — the owner id of the
//	    worker process watching the sandbox — lease TTL
//	    (events.Config.LeaseTTL) — events.Manager, lease scripts.
//	sandboxq:{ns/name}:waiting (WaitingKey) — string "1" — while someone
//	    waits on the project's servers; TTL of the wait hint — events.Expedite.
//	sandboxq:watchers (WatchersChannel) — pub/sub channel — nudges to the
//	    watcher managers: "claim <member>", "expedite <member>".
//	sandboxq:watchers:managers (WatcherManagersKey) — sorted set — member a
//	    manager's owner id, score its heartbeat expiry in Unix ms —
//	    events.Manager.
//	sandboxq:{ns/name}:lease (LeaseKey) — string — the id of the task that
//	    holds the project's mutation lease — handlers' lease TTL, renewed
//	    while held — handlers, lease scripts.
//	sandboxq:{ns/name}:dedup:<type> (DedupKey) — string — JSON
//	    {"id","queue","state"}, state "creating" while a producer enqueues
//	    (DedupClaimTTL, 15 s) and "enqueued" after (DedupTTL, 7 days, plus
//	    any ProcessIn delay) — tasks.Client, CompareAndSet.
//	sandboxq:{ns/name}:tasks (TasksKey) — sorted set — member a task id,
//	    score the Unix microseconds it was enqueued; every task enqueued for the
//	    project by any producer; capped at TaskIndexCap (1000, the oldest
//	    dropped with its TaskInfoKey field) — TaskIndexTTL (7 days),
//	    refreshed by every write — tasks.Client (IndexTask, pipelined with
//	    the dedup record where there is one), RecordAttempt.
//	sandboxq:{ns/name}:taskinfo (TaskInfoKey) — hash — field a task id of
//	    TasksKey, value JSON {"queue","type","attempts":[{"started_at",
//	    "duration_ms","error"}]} (the newest MaxAttemptsKept attempts) —
//	    TaskIndexTTL with TasksKey — tasks.Client (IndexTask), the worker's
//	    handlers.Attempts (RecordAttempt, pipelined with the task's result).
//	sandboxq:{wake}:<queue> (WakeKey) — list — tokens "1", at most WakeKeep
//	    (64) — WakeTTL (1 h), refreshed by every push — tasks.Client (Wake,
//	    pipelined with the task index) pushes when it enqueues a pending
//	    task; an idle worker BLPOPs the lists of its queues (one hash tag,
//	    so one BLPOP in Redis Cluster) instead of polling asynq's queues.
//	sandboxq:tasks:done (TaskDoneChannel) — pub/sub channel — JSON
//	    {"queue","id"} when an attempt of a task ends (pipelined with the
//	    attempt's result and record) or Cancel archives a waiting task; a
//	    hint to re-read the task, not its state — handlers.Attempts,
//	    tasks.Client.Cancel; heard by tasks.Client.Wait.
//	sandboxq:cancel:<task id> (CancelKey) — string "1" — CancelMarkTTL,
//	    7 days — tasks.Client.Cancel (MarkCancelled); read by handlers.
//	sandboxq:{ns/name}:cancel:<task id> (ProjectCancelKey) — string "1" —
//	    the same mark of a project's task, in the project's slot, written
//	    with CancelKey — CancelMarkTTL — MarkCancelled; read by
//	    AcquireUnlessCancelled.
//	sandboxq:api:idempotency:<sha256> (IdempotencyKey) — string — JSON
//	    {"state":"pending"|"done","owner","request","status","body"} —
//	    30 s while pending, then api.Config.IdempotencyTTL (default 24 h) —
//	    the HTTP API, SET NX then CompareAndSet.
//	sandboxq:maintenance:<type>:slot (SlotKey) — string — "<slot unix
//	    ms>:rolling" or "<slot>:done" — SlotMarkerTTL, 7 days —
//	    maintenance scheduler, AdvanceSlot/FinishSlot.
//	rate:sandboxq:gateway:rate (RateBucketKey, stored by redis_rate under
//	    its "rate:" prefix) — string — GCRA state of the shared gateway
//	    budget — gateway/ratelimit.
//	sandboxq:gateway:pause (RatePauseKey) — string "429" — the Retry-After
//	    of a gateway 429, as PX; its PTTL is the pause left —
//	    gateway/ratelimit, RatePause.
//
// asynq's own keys start with "asynq:" and are asynq's business; the two
// that sandboxq touches directly are named here too: asynq:queues
// (AsynqQueuesKey, the set of known queues, which the HTTP API re-adds a
// queue to after Redis restarted empty) and asynq:{<queue>}:t:<id>
// (AsynqTaskKey, read to see whether a task exists; its "result" field is
// written by handlers.Attempts exactly as asynq's ResultWriter does, HSET,
// so the final result shares a round trip with the attempt record). The
// worker's idle wait also recognises asynq's dequeue and forward scripts
// by the per-queue keys they take (AsynqQueueKey).
//
// # Registry hash fields (RegistryKey)
//
//	namespace, name   the project
//	sandbox_id        the project's current sandbox
//	provider          its provider
//	status            created | ready | destroyed | error
//	error             the sandbox error, "" if none
//	servers           JSON object slug → {"status","url","port","exit_code",
//	                  "error","updated_at"}
//	last_event        JSON of the newest event, with its id
//	last_used         Unix ms of the last upsert or touch
//	created_at        Unix ms the current sandbox id was first recorded
//	updated_at        Unix ms of the last event
//	watcher           owner id of the watching process, "" if none (the
//	                  watcher key is authoritative: it cannot outlive a
//	                  dead process)
//	checked_at        Unix ms after which maintenance:reconcile asks the
//	                  gateway again about this sandbox while it is watched
//	seen              internal: JSON slug → Unix ms of the newest source
//	                  time seen for that server
//
// # Event JSON (Event)
//
//	{"id":"1764136800123-0","type":"server.status_changed",
//	 "namespace":"default","name":"shop","sandbox_id":"sbx_…",
//	 "timestamp":"2026-11-26T06:00:00.123Z","server_name":"web",
//	 "status":"ready","url":"http://127.0.0.1:3000","port":3000}
//
// type is server.status_changed (status one of the sandboxq.Server*
// statuses; server_name always; url, port, exit_code, error when known;
// logs, the tail of the output, on a transition to failed or stopped) or
// sandbox.status_changed (status created, ready, destroyed or error). In
// the stream the "id" member is left out; on the channels it is the entry
// id.
//
// # Scripts
//
// AllScripts lists every Lua script with the keys it takes. They are:
// CompareAndSet (one for the dedup keys and the idempotency records: an
// absent key has the value "", so old "" creates only a missing key); the
// lease family AcquireLease, RenewLease, ReleaseLease (project leases and
// watcher leases alike: compare the owner, then extend or delete; a watcher
// lease also records its owner in the registry) and AcquireUnlessCancelled
// (a task's project lease, refused when ProjectCancelKey exists; its
// release can ride in a pipeline, Held.ReleaseIn, sent with EVAL), with
// pipelined batch forms
// AcquireLeases, RenewLeases, ReleaseLeases that reload the scripts after a
// NOSCRIPT; the registry scripts RegistryUpsert, RegistryServer,
// RegistrySandbox (each compares with the registry, appends to the stream,
// publishes and records last_event in one step), RegistryRecheck and RegistryTouch (sent
// with EVAL in a pipeline with the index's ZADD XX); the
// scheduler's AdvanceSlot and FinishSlot; the rate limit's RatePause; the
// task index's IndexTaskScript and RecordAttemptScript (sent with EVAL, so
// they can ride in a pipeline with other commands without a NOSCRIPT
// reload; CompareAndSetCmd is the same for CompareAndSet).
//
// # Following a stream
//
// Follow(ctx, rdb, project, from) is the one reader of a project's stream
// as it grows: XREAD BLOCK (at most FollowBlock, and never past ctx's
// deadline) with a cursor at the last entry seen. Its rule for an entry
// that is not an event: yield it as a *BadEntryError with the entry id and
// go on after it, so a bad entry never stalls a reader. ReadEvents reads
// one batch without following (and stops at a bad entry, naming it).
package schema
