package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/sandboxq/sandboxq"
)

// Prefix starts every Redis key and channel sandboxq owns (asynq's own keys
// start with "asynq:").
const Prefix = "sandboxq:"

// Lifetimes of the keys below.
const (
	// DedupTTL is the safety-net lifetime of a dedup key (extended by the
	// delay of a task enqueued with ProcessAt/ProcessIn). A stale key is
	// harmless: it names a task that is no longer live.
	DedupTTL = 7 * 24 * time.Hour
	// DedupClaimTTL bounds how long a producer may hold a dedup key while
	// it enqueues; a producer that dies holding it delays others by at
	// most this much.
	DedupClaimTTL = 15 * time.Second
	// CancelMarkTTL is how long a cancel mark lives: longer than any
	// task's retries and its default Retention.
	CancelMarkTTL = 7 * 24 * time.Hour
	// SlotMarkerTTL bounds the life of a maintenance slot marker; an
	// expired marker only means that the next firing rolls over.
	SlotMarkerTTL = 7 * 24 * time.Hour
)

var (
	tagEscaper   = strings.NewReplacer("%", "%25", "/", "%2F")
	tagUnescaper = strings.NewReplacer("%2F", "/", "%25", "%")
)

// ProjectTag returns the Redis Cluster hash tag of a project,
// "{<namespace>/<name>}", with "%" and "/" of the namespace percent-encoded
// so that no two projects share a tag. An empty namespace is
// sandboxq.DefaultNamespace. Every per-project key contains it, so a
// project's keys live in one cluster slot and a script may touch several.
func ProjectTag(p sandboxq.Project) string {
	return "{" + IndexMember(p) + "}"
}

// IndexMember is the member of p in RegistryIndexKey and in the watcher
// nudges: "<namespace>/<name>", namespace percent-encoded as in ProjectTag.
func IndexMember(p sandboxq.Project) string {
	p = p.Normalize()
	return tagEscaper.Replace(p.Namespace) + "/" + p.Name
}

// ProjectOfMember parses a member of RegistryIndexKey (IndexMember) and
// validates the project.
func ProjectOfMember(member string) (sandboxq.Project, error) {
	ns, name, ok := strings.Cut(member, "/")
	if !ok || ns == "" || name == "" {
		return sandboxq.Project{}, fmt.Errorf("schema: index member %q is not <namespace>/<name>", member)
	}
	p := sandboxq.Project{Namespace: tagUnescaper.Replace(ns), Name: name}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("schema: index member %q: %w", member, err)
	}
	return p, nil
}

func projectKey(p sandboxq.Project, suffix string) string {
	return Prefix + ProjectTag(p) + ":" + suffix
}

// DedupKey is the key that names the live task of a deduplicated type for a
// project: "sandboxq:{ns/name}:dedup:<type>". Its value is JSON
// {"id","queue","state"} with state "creating" while a producer enqueues
// and "enqueued" after. Written with CompareAndSet.
func DedupKey(typename string, p sandboxq.Project) string {
	return projectKey(p, "dedup:"+typename)
}

// LeaseKey is the mutation lease of a project: "sandboxq:{ns/name}:lease",
// value the id of the task holding it (see AcquireLease).
func LeaseKey(p sandboxq.Project) string { return projectKey(p, "lease") }

// CancelKey is the cancel mark of a task: "sandboxq:cancel:<task id>". It
// exists (value "1") once the task was cancelled (MarkCancelled).
func CancelKey(id string) string { return Prefix + "cancel:" + id }

// ProjectCancelKey is the cancel mark of a project's task in the project's
// slot: "sandboxq:{ns/name}:cancel:<task id>". MarkCancelled sets it with
// CancelKey, so that AcquireUnlessCancelled can check the mark and take the
// project lease in one script.
func ProjectCancelKey(p sandboxq.Project, id string) string { return projectKey(p, "cancel:"+id) }

// EventField is the one field of every stream entry: the event's JSON
// (without its id, which is the entry id).
const EventField = "event"

// EventsKey is the capped Redis stream of a project's events:
// "sandboxq:{ns/name}:events". Entries have one field, EventField.
func EventsKey(p sandboxq.Project) string { return projectKey(p, "events") }

// EventsChannel is the pub/sub channel on which each event is published as
// JSON (with its id) right after it is appended to EventsKey:
// "sandboxq:{ns/name}:events".
func EventsChannel(p sandboxq.Project) string { return projectKey(p, "events") }

// AllEventsChannel receives every project's events too.
const AllEventsChannel = Prefix + "events"

// RegistryKey is the hash describing a project's sandbox:
// "sandboxq:{ns/name}:sandbox" (fields: Field* constants).
func RegistryKey(p sandboxq.Project) string { return projectKey(p, "sandbox") }

// RegistryIndexKey is a sorted set of every project in the registry, member
// IndexMember, score the last-used time in Unix milliseconds.
const RegistryIndexKey = Prefix + "sandboxes"

// WatcherKey is the lease of the worker process watching a project's
// sandbox: "sandboxq:{ns/name}:watcher", value the owner's id.
func WatcherKey(p sandboxq.Project) string { return projectKey(p, "watcher") }

// WaitingKey marks that someone waits on a project's servers:
// "sandboxq:{ns/name}:waiting", value "1", with a TTL. While it exists the
// project's watcher polls fast.
func WaitingKey(p sandboxq.Project) string { return projectKey(p, "waiting") }

// WatchersChannel is the pub/sub channel on which watcher managers are
// nudged: messages "claim <member>" (someone wants the project watched now)
// and "expedite <member>" (someone waits on it), member as in IndexMember.
// Nudges are hints: receivers check Redis before acting.
const WatchersChannel = Prefix + "watchers"

// WatcherManagersKey is a sorted set of the live watcher managers: member
// the owner id, score the Unix milliseconds until which its heartbeat is
// valid. Managers use it to share the sandboxes fairly.
const WatcherManagersKey = Prefix + "watchers:managers"

// IdempotencyPrefix starts the keys of the HTTP API's Idempotency-Key
// records.
const IdempotencyPrefix = Prefix + "api:idempotency:"

// IdempotencyKey is the record of an HTTP Idempotency-Key, per token scope
// and task type, hashed so that any header value makes a safe key:
// "sandboxq:api:idempotency:<sha256 hex>". Its value is JSON
// {"state":"pending"|"done","owner","request","status","body"}.
func IdempotencyKey(scope, typ, key string) string {
	h := sha256.New()
	for _, s := range []string{scope, typ, key} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return IdempotencyPrefix + hex.EncodeToString(h.Sum(nil))
}

// SlotKey is the marker of the last slot of a periodic maintenance type:
// "sandboxq:maintenance:<type>:slot", value "<slot unix ms>:rolling" while
// the first firing of a slot removes the previous slot's task, then
// "<slot>:done" (AdvanceSlot, FinishSlot).
func SlotKey(typename string) string { return Prefix + "maintenance:" + typename + ":slot" }

// The Redis keys of the shared gateway rate limit.
const (
	// RateBucketKey is the GCRA state of the gateway budget, one key shared
	// by every worker. redis_rate stores it under its own "rate:" prefix,
	// so the key in Redis is "rate:sandboxq:gateway:rate".
	RateBucketKey = Prefix + "gateway:rate"
	// RatePauseKey exists while every worker must hold its gateway calls:
	// it is set when the gateway answered 429 with a Retry-After, with that
	// as its lifetime (PX), and its remaining lifetime (PTTL) is the pause
	// left. Redis's clock alone decides, so workers' clocks need not agree.
	RatePauseKey = Prefix + "gateway:pause"
)

// Registry hash fields (RegistryKey).
const (
	FieldNamespace = "namespace"
	FieldName      = "name"
	FieldSandboxID = "sandbox_id"
	FieldProvider  = "provider"
	FieldStatus    = "status"
	FieldError     = "error"
	FieldServers   = "servers"
	FieldLastEvent = "last_event"
	FieldLastUsed  = "last_used"
	FieldCreatedAt = "created_at"
	FieldUpdatedAt = "updated_at"
	FieldWatcher   = "watcher"
	// FieldCheckedAt is when maintenance:reconcile next needs to ask the
	// gateway about a watched sandbox (Unix ms): a watcher is the source
	// for its sandbox, so its entry is re-checked every hour or so only.
	FieldCheckedAt = "checked_at"
	// FieldSeen is internal to the registry scripts: JSON slug → Unix ms
	// of the newest source time seen for that server.
	FieldSeen = "seen"
)

// asynq's own keys that sandboxq reads or repairs (asynq owns them; they
// are named here so that no other package spells a Redis key).
const (
	// AsynqQueuesKey is asynq's set of known queues: its Inspector finds
	// no task in a queue missing from it.
	AsynqQueuesKey = "asynq:queues"
)

// AsynqTaskKey is asynq's hash of task id in queue:
// "asynq:{<queue>}:t:<id>".
func AsynqTaskKey(queue, id string) string { return "asynq:{" + queue + "}:t:" + id }

// AsynqQueueKey is one of asynq's per-queue keys, "asynq:{<queue>}:<kind>"
// (kind "pending", "paused", "active", "lease", "scheduled", "retry", …).
// The worker's idle wait recognises asynq's dequeue and forward scripts by
// these keys (worker/wake.go).
func AsynqQueueKey(queue, kind string) string { return "asynq:{" + queue + "}:" + kind }

// AsynqQueueOf returns the queue of key if key is AsynqQueueKey(queue, kind).
func AsynqQueueOf(key, kind string) (string, bool) {
	q, ok := strings.CutPrefix(key, "asynq:{")
	if !ok {
		return "", false
	}
	q, ok = strings.CutSuffix(q, "}:"+kind)
	if !ok || q == "" {
		return "", false
	}
	return q, true
}
