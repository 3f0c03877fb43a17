// Package maintenance runs sandboxq's periodic tasks and schedules them.
//
// # Handlers
//
// Register adds two handlers to an asynq.ServeMux:
//
//   - maintenance:cleanup finds live sandboxes whose registry last_used is
//     older than the payload's idle_ttl (else Config.IdleTTL, default 30 min)
//     and enqueues sandbox:destroy for each through tasks.Client, so every
//     destroy gets the usual retries, per-project exclusion and dedup. It
//     does not destroy anything itself. A candidate is read again just
//     before its destroy is enqueued, so a sandbox used meanwhile is kept.
//     Its result lists the sandboxes and the destroy task ids.
//   - maintenance:reconcile asks the gateway about every registry entry:
//     an entry whose sandbox is gone is marked destroyed (the registry
//     emits sandbox.status_changed{destroyed}), one destroyed for longer
//     than Config.StaleAfter (default 24 h) is removed, one whose project now
//     has another sandbox id is re-recorded, and one marked destroyed or
//     error whose sandbox exists is marked ready. A live sandbox that no
//     process watches gets its servers refreshed from the daemon and is
//     handed to Config.Claim (the events Manager). A sandbox a watcher
//     follows is asked about only when its recheck falls due
//     (Config.WatchedRecheck, 1 h on average, jittered so the checks
//     spread; the first run that sees it watched only sets the time): its watcher's WebSocket already says whether it lives, and
//     10,000 watched sandboxes would otherwise cost the gateway 10,000
//     lookups every 5 minutes. Its result is counts.
//
// Both read the registry a page at a time. A project that cannot be
// handled does not stop the run. Cleanup then ends with an error (so it is
// retried, and shows as failed) after writing its result. Reconcile
// succeeds when it checked what it could: an entry it could not check for
// a transient reason (a 503, a timeout, a Redis blip) is counted in the
// result's "unchecked" and checked again by the next slot's run; one
// unreachable entry of fifty must not archive every slot. Reconcile fails
// only on a permanent gateway answer (401, 403, 400, …; archived at once)
// or when it could check no entry at all (the gateway is down; retried).
//
// # One enqueue per schedule slot
//
// Scheduler runs an asynq.Scheduler per schedule, so the schedules appear
// on Asynqmon's Schedulers page with their specs, options and enqueue
// history. asynq's Scheduler has no leader election: every process that
// runs one fires every slot. Its task and options are fixed when the
// schedule is registered (a per-slot task id cannot be given to it, and
// changing its options while it runs would race with its heartbeat), so
// deduplication works with a fixed task id and a slot marker instead:
//
//   - every scheduled task has the id "scheduled:<type>";
//   - in its PreEnqueueFunc each firing computes its slot (the latest
//     activation of the spec at or before now; for "@every d" the multiple
//     of d, since those schedules run relative to each process's start)
//     and advances the Redis marker sandboxq:maintenance:<type>:slot with
//     a compare-and-set script. Exactly one firing per slot wins. The
//     marker says "<slot>:rolling" while the winner deletes the previous
//     slot's task (completed, archived, retrying or still pending), then
//     "<slot>:done"; the other firings of the slot wait for "done" (at
//     most 5 s), so that none of them enqueues before the old task is
//     gone;
//   - asynq then enqueues with the fixed id: the first enqueue of the slot
//     succeeds, every other one gets asynq.ErrTaskIDConflict, which means
//     "already enqueued for this slot".
//
// So at most one scheduled run of a type exists at a time, each slot is
// enqueued once by whichever process fires first, and no process is
// special: there is no leader to lose and no failover gap. A failed run
// (archived) is deleted by the next slot and never blocks it. A run still
// active when the next slot comes makes that slot skip (logged), so runs
// never overlap. Retention keeps a finished run, and with it its id, until
// the next slot, so a process firing late in the slot still conflicts;
// the result of the latest run is what Asynqmon shows.
//
// Manual runs (tasks.Client.Enqueue of the same payloads) get ordinary
// random ids and are not affected.
package maintenance
