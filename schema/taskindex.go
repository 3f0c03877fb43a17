package schema

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq"
)

// The per-project task index: every task enqueued for a project, newest
// last, with the attempts the workers ran.
const (
	// TaskIndexCap is how many tasks a project's index keeps: writing one
	// more drops the oldest (with its attempts).
	TaskIndexCap = 1000
	// TaskIndexTTL is the lifetime of a project's index keys, refreshed by
	// every write: as long as a cancel mark, longer than any task's
	// retries and its default Retention.
	TaskIndexTTL = 7 * 24 * time.Hour
	// MaxAttemptsKept is how many attempts the index keeps per task (the
	// newest).
	MaxAttemptsKept = 50
)

// TasksKey is the sorted set of a project's tasks:
// "sandboxq:{ns/name}:tasks", member the task id, score the Unix microseconds it was
// enqueued. Capped at TaskIndexCap, lifetime TaskIndexTTL.
func TasksKey(p sandboxq.Project) string { return projectKey(p, "tasks") }

// TaskInfoKey is the hash beside TasksKey: "sandboxq:{ns/name}:taskinfo",
// field the task id, value JSON {"queue","type","attempts":[{"started_at",
// "duration_ms","error"}]}. Its fields are the members of TasksKey.
func TaskInfoKey(p sandboxq.Project) string { return projectKey(p, "taskinfo") }

// IndexTaskScript records a task: KEYS TasksKey, TaskInfoKey; ARGV id,
// info JSON, enqueued Unix µs, cap, ttl ms. It drops the oldest tasks
// beyond the cap and refreshes both keys' lifetimes.
var IndexTaskScript = redis.NewScript(`
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local n = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
if n > 0 then
  local old = redis.call('ZRANGE', KEYS[1], 0, n - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1)
  for i = 1, #old, 500 do
    redis.call('HDEL', KEYS[2], unpack(old, i, math.min(i + 499, #old)))
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
`)

// RecordAttemptScript appends an attempt to an indexed task: KEYS TasksKey,
// TaskInfoKey; ARGV id, attempt JSON, attempts kept, ttl ms. A task the
// index does not hold is left alone (returns 0).
var RecordAttemptScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then return 0 end
local ok, v = pcall(cjson.decode, cur)
if not ok or type(v) ~= 'table' then return 0 end
local a = v['attempts']
if type(a) ~= 'table' then a = {} end
table.insert(a, cjson.decode(ARGV[2]))
while #a > tonumber(ARGV[3]) do table.remove(a, 1) end
v['attempts'] = a
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(v))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
`)

// Attempt is one run of a task as the index records it.
type Attempt struct {
	StartedAt  time.Time `json:"started_at"`
	DurationMS int64     `json:"duration_ms"`
	Error      string    `json:"error,omitempty"`
}

// IndexedTask is one entry of a project's task index.
type IndexedTask struct {
	ID         string    `json:"id"`
	Queue      string    `json:"queue"`
	Type       string    `json:"type"`
	EnqueuedAt time.Time `json:"-"`
	Attempts   []Attempt `json:"attempts,omitempty"`
}

// IndexTask queues, on pl (a pipeline, so the record shares a round trip
// with the caller's own commands, or a client), the record of task id of
// type typ in queue, enqueued at at, in p's index. The script travels
// with EVAL, so a pipeline never meets NOSCRIPT.
func IndexTask(ctx context.Context, pl redis.Scripter, p sandboxq.Project, id, queue, typ string, at time.Time) *redis.Cmd {
	info, _ := json.Marshal(IndexedTask{ID: id, Queue: queue, Type: typ})
	return IndexTaskScript.Eval(ctx, pl, []string{TasksKey(p), TaskInfoKey(p)},
		id, string(info), at.UnixMicro(), TaskIndexCap, TaskIndexTTL.Milliseconds())
}

// RecordAttempt queues, on pl, the record of one attempt of task id in p's
// index (EVAL, as IndexTask).
func RecordAttempt(ctx context.Context, pl redis.Scripter, p sandboxq.Project, id string, a Attempt) *redis.Cmd {
	b, _ := json.Marshal(a)
	return RecordAttemptScript.Eval(ctx, pl, []string{TasksKey(p), TaskInfoKey(p)},
		id, string(b), MaxAttemptsKept, TaskIndexTTL.Milliseconds())
}

// ReadTaskIndex returns up to count of p's indexed tasks, newest first,
// skipping the newest offset. It costs two round trips.
func ReadTaskIndex(ctx context.Context, rdb redis.UniversalClient, p sandboxq.Project, offset, count int) ([]IndexedTask, error) {
	if count <= 0 {
		return nil, nil
	}
	zs, err := rdb.ZRevRangeWithScores(ctx, TasksKey(p), int64(offset), int64(offset+count-1)).Result()
	if err != nil || len(zs) == 0 {
		return nil, err
	}
	ids := make([]string, len(zs))
	for i, z := range zs {
		ids[i], _ = z.Member.(string)
	}
	vals, err := rdb.HMGet(ctx, TaskInfoKey(p), ids...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]IndexedTask, 0, len(ids))
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // dropped between the two reads
		}
		var t IndexedTask
		if err := json.Unmarshal([]byte(s), &t); err != nil {
			return nil, fmt.Errorf("schema: task index of %s: entry %s: %w", IndexMember(p), ids[i], err)
		}
		t.ID = ids[i]
		t.EnqueuedAt = time.UnixMicro(int64(zs[i].Score))
		out = append(out, t)
	}
	return out, nil
}

// ReadTaskEntry returns one task's index entry, or ok false when the index
// of p does not hold it.
func ReadTaskEntry(ctx context.Context, rdb redis.UniversalClient, p sandboxq.Project, id string) (t IndexedTask, ok bool, err error) {
	s, err := rdb.HGet(ctx, TaskInfoKey(p), id).Result()
	if errors.Is(err, redis.Nil) {
		return t, false, nil
	}
	if err != nil {
		return t, false, err
	}
	if err := json.Unmarshal([]byte(s), &t); err != nil {
		return t, false, fmt.Errorf("schema: task index of %s: entry %s: %w", IndexMember(p), id, err)
	}
	t.ID = id
	if sc, err := rdb.ZScore(ctx, TasksKey(p), id).Result(); err == nil {
		t.EnqueuedAt = time.UnixMicro(int64(sc))
	}
	return t, true, nil
}
