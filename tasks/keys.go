package tasks

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// KeyPrefix starts every Redis key sandboxq owns (asynq's own keys start
// with "asynq:").
const KeyPrefix = "sandboxq:"

// Lifetimes of the keys below.
const (
	// DedupTTL is the safety-net lifetime of a dedup key (extended by the
	// delay of a task enqueued with ProcessAt/ProcessIn). A stale key is
	// harmless: it names a task that is no longer live.
	DedupTTL = 7 * 24 * time.Hour
	// CancelMarkTTL is how long a cancel mark lives: longer than any
	// task's retries and its default Retention.
	CancelMarkTTL = 7 * 24 * time.Hour
	// dedupClaimTTL bounds how long a producer may hold a dedup key while
	// it enqueues; a producer that dies holding it delays others by at
	// most this much.
	dedupClaimTTL = 15 * time.Second
)

var tagEscaper = strings.NewReplacer("%", "%25", "/", "%2F")

// ProjectTag returns the Redis Cluster hash tag of a project,
// "{<namespace>/<name>}", with "%" and "/" of the namespace percent-encoded
// so that no two projects share a tag. An empty namespace is
// DefaultNamespace. Every per-project key contains it, so a project's keys
// live in one cluster slot.
func ProjectTag(p Project) string {
	p = p.Normalize()
	return "{" + tagEscaper.Replace(p.Namespace) + "/" + p.Name + "}"
}

// DedupKey is the key that names the live task of a deduplicated type for a
// project: "sandboxq:{ns/name}:dedup:<type>". Its value is JSON
// {"id","queue","state"} with state "creating" while a producer enqueues
// and "enqueued" after.
func DedupKey(typename string, p Project) string {
	return KeyPrefix + ProjectTag(p) + ":dedup:" + typename
}

// CancelKey is the cancel mark of a task: "sandboxq:cancel:<task id>". It
// exists (value "1") once Client.Cancel was called for the task.
func CancelKey(id string) string { return KeyPrefix + "cancel:" + id }

// IsCancelled reports whether Client.Cancel was called for the task id.
// Handlers check it when a task starts and when their context is
// cancelled, and then end the task with asynq.SkipRetry.
func IsCancelled(ctx context.Context, rdb redis.UniversalClient, id string) (bool, error) {
	n, err := rdb.Exists(ctx, CancelKey(id)).Result()
	if err != nil {
		return false, err
	}
	return n > 0, nil
}

// CancelledAmong returns the ids, of those given, whose task has a cancel
// mark, in the order given. It costs one pipelined round trip (per cluster
// node), so a worker can poll the marks of all its running tasks.
func CancelledAmong(ctx context.Context, rdb redis.UniversalClient, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.IntCmd, len(ids))
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Exists(ctx, CancelKey(id))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var marked []string
	for i, c := range cmds {
		if c.Val() > 0 {
			marked = append(marked, ids[i])
		}
	}
	return marked, nil
}
