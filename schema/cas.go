package schema

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// casScript sets KEYS[1] to ARGV[2] with a lifetime of ARGV[3] ms, or
// deletes it when ARGV[2] is "", but only if its value is ARGV[1]. An
// absent key has the value "", so ARGV[1] "" creates the key only if it
// does not exist. Returns 1 when it did, 0 otherwise.
var casScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then cur = '' end
if cur ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
`)

// CompareAndSet replaces the value of key by next, with lifetime ttl, only
// if its value is old, and reports whether it did. An absent key has the
// value "": old "" creates the key only if nobody has; next "" deletes it.
// It is the one compare-and-set of sandboxq: the dedup keys of tasks.Client
// (DedupKey) and the HTTP API's idempotency records (IdempotencyKey) both
// settle through it, so a record that expired and was taken by someone else
// meanwhile is left alone.
func CompareAndSet(ctx context.Context, rdb redis.Scripter, key, old, next string, ttl time.Duration) (bool, error) {
	n, err := casScript.Run(ctx, rdb, []string{key}, old, next, ttl.Milliseconds()).Int()
	return n == 1, err
}

// CompareAndSetCmd queues CompareAndSet on pl (a pipeline) with EVAL, so it
// can share a round trip with other commands; the reply is 1 when it set.
func CompareAndSetCmd(ctx context.Context, pl redis.Scripter, key, old, next string, ttl time.Duration) *redis.Cmd {
	return casScript.Eval(ctx, pl, []string{key}, old, next, ttl.Milliseconds())
}
