// Package events follows what sandboxes do and records it where producers
// can read it (DESIGN.md §6): one watcher per live sandbox, leases that
// make exactly one worker process watch it, normalized events in a capped
// Redis stream and on pub/sub, and the sandbox registry.
//
// # Redis keys
//
// The keys, channels, registry fields and scripts this package uses are
// owned and documented by package schema (schema/doc.go is the key table
// for consumers in other languages): the per-project event stream and its
// channels, the registry hash and index, the watcher lease, the waiting
// mark, the nudge channel and the managers set. This package decides what
// goes into them and when; schema decides their names and holds the Lua
// that writes them. The registry Field* constants here repeat schema's.
//
// # Event JSON (schema.Event, also tasks.Event)
//
//	{"id":"1764136800123-0","type":"server.status_changed",
//	 "namespace":"default","name":"shop","sandbox_id":"sbx_…",
//	 "timestamp":"2026-11-26T06:00:00.123Z","server_name":"web",
//	 "status":"ready","url":"http://127.0.0.1:3000","port":3000}
//
//	{"id":"…","type":"sandbox.status_changed","namespace":"default",
//	 "name":"shop","sandbox_id":"sbx_…","timestamp":"…","status":"destroyed"}
//
// type is server.status_changed (status one of installing, starting,
// running, ready, restarting, stopped, failed; server_name always; url,
// port, exit_code, error when known) or sandbox.status_changed (status
// created, ready, destroyed or error; error when there is one). timestamp
// is when sandboxq recorded the event (RFC 3339, UTC). In the stream the
// "id" member is left out; on the channels it is the stream entry id.
//
// # Decisions
//
//   - One event per real transition, whichever source saw it first: the
//     compare with the registry's current server state and the append,
//     publish and fold happen in one Lua script per observation. Sources
//     give the time the state began (daemon updated_at, events service
//     timestamp); an observation older than the newest one seen for that
//     server, or of the same millisecond but earlier in the lifecycle, is
//     dropped, so a poll answer overtaken by a signal never moves a server
//     back. For the same status, an observation that lacks url, port, exit
//     code or error keeps the recorded ones, and one that fills in a field
//     recorded as unknown is folded in without an event (the events
//     service's lines carry no port and no exit code; a poll after one
//     completes it); only a known field that changes is a transition.
//   - Upsert emits sandbox.status_changed{created} when a project's
//     sandbox id is new (and resets its servers); the registry status is
//     then ready. The same id coming back after error emits ready.
//     UpsertReady, used for sandboxes the gateway reports ready, emits
//     created and then ready for a new id, so the stream matches the
//     registry. StopServers, which a destroy calls before it marks the
//     sandbox destroyed, records every server not yet stopped as stopped
//     (dropping its dead URL) with one event each.
//   - Sources of a watcher: the daemon WebSocket (json protocol; POST
//     /signals/start, subscribe to "signals"), polls of GET /servers, and,
//     with Config.EventsAddr, the events service line protocol (SUBSCRIBE
//     <sandboxId> <token>). The daemon sends no status messages, only
//     signals (port, server-ready, error), so each signal triggers a poll.
//     An events-service line triggers a poll too and is applied with it,
//     oldest first; a line that says what the poll says is left to the
//     poll, which knows every field. A state that lasts less than a poll
//     interval (starting, usually) is seen only with the events service.
//   - Poll pace: FastPoll (1 s) while a server is installing, starting,
//     restarting, or running for less than SettleAfter (5 min) without
//     being ready, and while someone waits; otherwise, while the daemon
//     WebSocket is subscribed (its signals are the source), only a
//     reconcile every ReconcileInterval (15 min, ±50 %), and while it is
//     not, SlowPoll (30 s, ±10 %); at once after a signal, an events line,
//     a (re)connection, a claim and an Expedite. The socket subscribes to
//     "signals" before it starts the signal service, and the poll after
//     each (re)connection follows both, so nothing signalled after that
//     poll's answer is missed; what happened before it, it sees.
//   - "Someone waits": Expedite(ctx, rdb, p, d) (or Manager.Expedite) sets
//     the waiting key with TTL d and publishes a nudge; the owning watcher
//     polls at once and fast until the key expires. A watcher that claims
//     the project later reads the key too. server:start calls it before it
//     waits.
//   - Keep-alive: a read deadline of 2×PingInterval (30 s) that every
//     frame read extends (messages, pongs, the daemon's own pings); the
//     WebSocket pings only after a whole PingInterval without a frame; the
//     events connection sends PING lines under the same deadline. A failed
//     connection is redialled with full-jitter exponential backoff
//     (ReconnectMin..ReconnectMax, never below ReconnectMin/2), reset once
//     a connection lived 5 s. Every (re)connection is followed by a poll,
//     which resyncs what happened while it was down. A daemon that refuses
//     the token or no longer knows the sandbox (gateway.IsStaleSandbox: 401
//     or 404, not 403, the same rule as the handlers' cache) makes the
//     watcher find the sandbox at the gateway again; a sandbox the gateway
//     no longer has is recorded destroyed; another sandbox id for the
//     project is upserted (the gateway is the source of truth).
//   - Following the stream: WaitServer reads it with schema.Follow, whose
//     one rule for an entry that is not an event is to skip it.
//   - Ownership: a lease per watched sandbox (owner = Config.OwnerID, TTL
//     LeaseTTL), all of a process's leases renewed together every
//     LeaseTTL/3 in pipelined batches rather than a goroutine each. A
//     lease found taken stops its watcher (OnLeaseLost); if renewals fail
//     for a whole LeaseTTL every watcher stops, since others may have taken
//     over. Every ClaimInterval a Manager scans the index (ZSCAN, pages of
//     500) for unowned sandboxes whose status is not destroyed and claims
//     up to its fair share (registry size / live Managers, plus one) at
//     once, and beyond it, up to Cap, those that stayed unowned since its
//     previous scan, so load spreads and orphans are still taken. A claim
//     (or takeover after a process died) polls first, so a transition made
//     while nobody watched is recorded once. Shutdown releases every lease
//     (compare-and-delete); a killed process's leases expire after
//     LeaseTTL, and others take over within LeaseTTL + ClaimInterval.
//   - Destroyed sandboxes are not watched: a watcher stops and releases
//     its lease when the registry says destroyed (seen on the all-events
//     channel, on its periodic registry check, or from the events
//     service). Pub/sub is shared by every database of a Redis server, so
//     what arrives there is a hint, always checked against the registry.
//   - Bounded load: a Manager runs at most Config.Concurrency gateway or
//     daemon calls at once (claiming thousands of sandboxes after a restart
//     does not storm the gateway). An idle watcher holds one goroutine,
//     its WebSocket reader (plus one with the events service), started
//     afresh once connected so its stack stays small; its polls run in a
//     goroutine started by a wake-up (signal, line, nudge, timer) that
//     ends when nothing is due, and its timers (next poll, keep-alive,
//     redial backoff) hold no goroutine while they wait.
//   - Tokens (daemon and events access token) live in memory only; they
//     are never logged, stored or put in errors.
//   - Metrics: Metrics (metrics.go) owns the watchers' series —
//     sandboxq_watchers_held, sandboxq_events_emitted_total{type} and
//     sandboxq_watcher_leases_lost_total — fed by Config.OnEvent,
//     Config.OnLeaseLost and Manager.Held; worker.New registers them once.
//   - Store.LastEventID, Store.Expedite and Store.WaitServer (follow.go)
//     give a server wait everything it needs on the store alone, so the
//     handlers depend on one interface the store satisfies.
package events
