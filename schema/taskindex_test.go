package schema

import (
	"fmt"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/internal/redistest"
)

// TestTaskIndexCapAndExpiry writes more tasks than the cap: the index keeps
// the newest TaskIndexCap (sorted set and info hash alike), both keys
// expire after TaskIndexTTL, attempts of a dropped task are not recorded,
// and a task keeps at most MaxAttemptsKept attempts.
func TestTaskIndexCapAndExpiry(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	ctx := t.Context()
	p := sandboxq.Project{Namespace: "cap", Name: "shop"}
	base := time.UnixMilli(1_700_000_000_000)
	const extra = 25
	pipe := rdb.Pipeline()
	for i := range TaskIndexCap + extra {
		IndexTask(ctx, pipe, p, fmt.Sprintf("t%04d", i), "default", "command:run", base.Add(time.Duration(i)*time.Millisecond))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if n := rdb.ZCard(ctx, TasksKey(p)).Val(); n != TaskIndexCap {
		t.Errorf("ZCARD %d, want %d", n, TaskIndexCap)
	}
	if n := rdb.HLen(ctx, TaskInfoKey(p)).Val(); n != TaskIndexCap {
		t.Errorf("HLEN %d, want %d", n, TaskIndexCap)
	}
	for _, k := range []string{TasksKey(p), TaskInfoKey(p)} {
		ttl := rdb.PTTL(ctx, k).Val()
		if ttl <= TaskIndexTTL-time.Minute || ttl > TaskIndexTTL {
			t.Errorf("PTTL of %s is %v, want about %v", k, ttl, TaskIndexTTL)
		}
	}
	if rdb.HExists(ctx, TaskInfoKey(p), "t0000").Val() || !rdb.HExists(ctx, TaskInfoKey(p), fmt.Sprintf("t%04d", extra)).Val() {
		t.Error("the oldest tasks were not the ones dropped")
	}
	if n, err := RecordAttempt(ctx, rdb, p, "t0000", Attempt{StartedAt: base}).Int(); err != nil || n != 0 {
		t.Errorf("attempt of a dropped task: %d, %v", n, err)
	}
	newest := fmt.Sprintf("t%04d", TaskIndexCap+extra-1)
	for i := range MaxAttemptsKept + 3 {
		a := Attempt{StartedAt: base.Add(time.Duration(i) * time.Second), DurationMS: int64(i), Error: fmt.Sprintf("e%d", i)}
		if n, err := RecordAttempt(ctx, rdb, p, newest, a).Int(); err != nil || n != 1 {
			t.Fatalf("attempt %d: %d, %v", i, n, err)
		}
	}
	got, err := ReadTaskIndex(ctx, rdb, p, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != newest || got[0].Queue != "default" || got[0].Type != "command:run" {
		t.Fatalf("newest entries %+v", got)
	}
	at := got[0].Attempts
	if len(at) != MaxAttemptsKept || at[0].Error != "e3" || at[len(at)-1].DurationMS != int64(MaxAttemptsKept+2) {
		t.Errorf("attempts kept: %d, first %+v", len(at), at[0])
	}
	if !got[0].EnqueuedAt.Equal(base.Add(time.Duration(TaskIndexCap+extra-1) * time.Millisecond)) {
		t.Errorf("enqueued at %v", got[0].EnqueuedAt)
	}
	if e, ok, err := ReadTaskEntry(ctx, rdb, p, newest); err != nil || !ok || len(e.Attempts) != MaxAttemptsKept {
		t.Errorf("ReadTaskEntry: %v %v %d", ok, err, len(e.Attempts))
	}
}
