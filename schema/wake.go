package schema

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Wake-up lists: a producer that enqueues a pending task pushes a token on
// its queue's wake list, and an idle worker blocks on the lists of the
// queues it serves (BLPOP) instead of polling asynq's queues, so that one
// idle worker looks for the task as soon as it exists. A token is only a
// hint — the task itself is in asynq's queue; a lost or stale token costs
// a worker one wasted look or the wait for its fallback poll.
const (
	// WakeKeep is how many tokens a wake list keeps: enough to wake every
	// idle worker of a burst, few enough that workers coming back from
	// being busy waste little on stale tokens.
	WakeKeep = 64
	// WakeTTL bounds the life of a wake list nobody reads.
	WakeTTL = time.Hour
)

// WakeKey is the wake list of queue. Every wake list shares one hash tag,
// so one BLPOP can wait on all of a worker's queues in Redis Cluster.
func WakeKey(queue string) string { return Prefix + "{wake}:" + queue }

// WakeKeys returns the wake lists of queues, in order.
func WakeKeys(queues []string) []string {
	keys := make([]string, len(queues))
	for i, q := range queues {
		keys[i] = WakeKey(q)
	}
	return keys
}

// Wake queues on pl the push of one token on queue's wake list, trimmed to
// WakeKeep, with its lifetime refreshed: three commands, one round trip
// with whatever else pl carries.
func Wake(ctx context.Context, pl redis.Pipeliner, queue string) {
	key := WakeKey(queue)
	pl.RPush(ctx, key, "1")
	pl.LTrim(ctx, key, -WakeKeep, -1)
	pl.Expire(ctx, key, WakeTTL)
}
