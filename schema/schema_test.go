package schema

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/internal/redistest"
)

// TestAllScriptsLoad loads every listed script into a real Redis, which
// compiles it, and checks that the list has each script once.
func TestAllScriptsLoad(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	seen := map[string]bool{}
	for _, s := range AllScripts() {
		if s.Script == nil || s.Name == "" || s.Keys == "" {
			t.Fatalf("incomplete entry %+v", s)
		}
		if seen[s.Hash()] {
			t.Errorf("%s listed twice", s.Name)
		}
		seen[s.Hash()] = true
		if err := s.Script.Load(t.Context(), rdb).Err(); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	}
	if len(seen) != 15 {
		t.Errorf("%d scripts listed", len(seen))
	}
}

func (s Script) Hash() string { return s.Script.Hash() }

func TestKeys(t *testing.T) {
	t.Parallel()
	a := sandboxq.Project{Namespace: "a/b", Name: "c"}
	b := sandboxq.Project{Namespace: "a", Name: "b/c"}
	if ProjectTag(a) == ProjectTag(b) {
		t.Fatalf("%v and %v share the tag %s", a, b, ProjectTag(a))
	}
	p := sandboxq.Project{Name: "shop"}
	for got, want := range map[string]string{
		EventsKey(p):          "sandboxq:{default/shop}:events",
		RegistryKey(p):        "sandboxq:{default/shop}:sandbox",
		WatcherKey(p):         "sandboxq:{default/shop}:watcher",
		LeaseKey(p):           "sandboxq:{default/shop}:lease",
		WaitingKey(p):         "sandboxq:{default/shop}:waiting",
		DedupKey("x:y", p):    "sandboxq:{default/shop}:dedup:x:y",
		CancelKey("id1"):      "sandboxq:cancel:id1",
		SlotKey("maint:c"):    "sandboxq:maintenance:maint:c:slot",
		IndexMember(a):        "a%2Fb/c",
		RateBucketKey + "|":   "sandboxq:gateway:rate|",
		RatePauseKey + "|":    "sandboxq:gateway:pause|",
		RegistryIndexKey + "": "sandboxq:sandboxes",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
	if !strings.HasPrefix(IdempotencyKey("s", "t", "k"), IdempotencyPrefix) || IdempotencyKey("s", "t", "k") == IdempotencyKey("s", "t", "k2") {
		t.Error("idempotency keys")
	}
	for _, q := range []sandboxq.Project{a, b, {Namespace: "x%2F", Name: "n"}} {
		got, err := ProjectOfMember(IndexMember(q))
		if err != nil || got != q {
			t.Errorf("ProjectOfMember(IndexMember(%v)) = %v, %v", q, got, err)
		}
	}
	if _, err := ProjectOfMember("nameonly"); err == nil {
		t.Error("member without a slash accepted")
	}
}

// TestCompareAndSet checks the one compare-and-set: "" is absent, so old ""
// creates only a missing key; a wrong old value changes nothing; next ""
// deletes.
func TestCompareAndSet(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	ctx := t.Context()
	step := func(old, next string, want bool) {
		t.Helper()
		got, err := CompareAndSet(ctx, rdb, "k", old, next, time.Minute)
		if err != nil || got != want {
			t.Fatalf("CompareAndSet(%q -> %q) = %v, %v; want %v", old, next, got, err, want)
		}
	}
	step("a", "b", false) // absent is not "a": the idempotency settle of an expired record
	step("", "a", true)   // create if absent
	step("", "b", false)  // present: no create
	step("x", "b", false)
	step("a", "b", true)
	if v := rdb.Get(ctx, "k").Val(); v != "b" {
		t.Fatalf("value %q", v)
	}
	if ttl := rdb.PTTL(ctx, "k").Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("ttl %v", ttl)
	}
	step("b", "", true)
	if n := rdb.Exists(ctx, "k").Val(); n != 0 {
		t.Fatal("not deleted")
	}
}

// TestWatcherLeases checks the watcher form of the lease family: the owner
// recorded in and cleared from the registry, batched acquire, renew and
// release, and the reload of the scripts after SCRIPT FLUSH.
func TestWatcherLeases(t *testing.T) {
	rdb := redistest.New(t).Client(t)
	ctx := t.Context()
	p, q := sandboxq.Project{Name: "p"}, sandboxq.Project{Name: "q"}
	rdb.HSet(ctx, RegistryKey(p), "status", "ready")
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	ops := []LeaseOp{{WatcherKey(p), RegistryKey(p)}, {WatcherKey(q), RegistryKey(q)}}
	held, err := AcquireLeases(ctx, rdb, ops, "w1", time.Minute)
	if err != nil || !held[0] || !held[1] {
		t.Fatalf("AcquireLeases = %v, %v", held, err)
	}
	if w := rdb.HGet(ctx, RegistryKey(p), "watcher").Val(); w != "w1" {
		t.Fatalf("registry watcher %q", w)
	}
	if rdb.Exists(ctx, RegistryKey(q)).Val() != 0 {
		t.Fatal("acquire created a registry entry")
	}
	if ok, err := AcquireLease(ctx, rdb, WatcherKey(p), RegistryKey(p), "w2", time.Minute); err != nil || ok {
		t.Fatalf("second owner: %v, %v", ok, err)
	}
	rdb.Del(ctx, WatcherKey(q)) // q's lease expired
	held, err = RenewLeases(ctx, rdb, []string{WatcherKey(p), WatcherKey(q)}, "w1", time.Minute)
	if err != nil || !held[0] || held[1] {
		t.Fatalf("RenewLeases = %v, %v; want [true false]", held, err)
	}
	if err := ReleaseLeases(ctx, rdb, ops, "w1"); err != nil {
		t.Fatal(err)
	}
	if rdb.Exists(ctx, WatcherKey(p)).Val() != 0 || rdb.HGet(ctx, RegistryKey(p), "watcher").Val() != "" {
		t.Fatal("release left the lease or the registry owner")
	}
}

func addEvent(t *testing.T, rdb *redis.Client, p sandboxq.Project, status string) string {
	t.Helper()
	b, _ := json.Marshal(Event{Type: EventServerStatusChanged, Namespace: p.Namespace, Name: p.Name, ServerName: "web", Status: status})
	id, err := rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: EventsKey(p), Values: map[string]any{EventField: string(b)}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

type followed struct {
	ev  Event
	err error
}

// TestFollow checks the one stream follower: history from "0", a bad entry
// reported and skipped, events appended while it blocks, "$", and the end
// on a cancelled context without an error.
func TestFollow(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	p := sandboxq.Project{Namespace: sandboxq.DefaultNamespace, Name: "shop"}
	first := addEvent(t, rdb, p, "starting")
	bad, err := rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: EventsKey(p), Values: map[string]any{"junk": "1"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	second := addEvent(t, rdb, p, "running")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := make(chan followed)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev, err := range Follow(ctx, rdb, p, "0") {
			select {
			case out <- followed{ev, err}:
			case <-ctx.Done():
			}
		}
	}()
	next := func() followed {
		t.Helper()
		select {
		case f := <-out:
			return f
		case <-time.After(10 * time.Second):
			t.Fatal("Follow yielded nothing")
		}
		return followed{}
	}
	if f := next(); f.err != nil || f.ev.ID != first || f.ev.Status != "starting" {
		t.Fatalf("first = %+v", f)
	}
	var be *BadEntryError
	if f := next(); !errors.As(f.err, &be) || be.ID != bad || f.ev.ID != bad {
		t.Fatalf("bad entry = %+v", f)
	}
	if f := next(); f.err != nil || f.ev.ID != second {
		t.Fatalf("second = %+v", f)
	}
	third := addEvent(t, rdb, p, "ready") // appended while Follow blocks
	if f := next(); f.err != nil || f.ev.ID != third || f.ev.Status != "ready" {
		t.Fatalf("third = %+v", f)
	}
	cancel()
	select {
	case <-done:
	case f := <-out:
		t.Fatalf("yielded %+v after cancel", f)
	case <-time.After(10 * time.Second):
		t.Fatal("Follow did not end on cancel")
	}

	// "$": only what comes after the start.
	ctx2, cancel2 := context.WithCancel(t.Context())
	defer cancel2()
	got := make(chan followed, 1)
	started := make(chan struct{})
	go func() {
		id, _ := LastEventID(ctx2, rdb, p)
		close(started)
		for ev, err := range Follow(ctx2, rdb, p, id) {
			got <- followed{ev, err}
			return
		}
	}()
	<-started
	fourth := addEvent(t, rdb, p, "stopped")
	select {
	case f := <-got:
		if f.err != nil || f.ev.ID != fourth {
			t.Fatalf("after $: %+v", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing after $")
	}
}

func TestReadEventsStopsAtBadEntry(t *testing.T) {
	t.Parallel()
	rdb := redistest.New(t).Client(t)
	p := sandboxq.Project{Namespace: sandboxq.DefaultNamespace, Name: "r"}
	first := addEvent(t, rdb, p, "starting")
	bad := rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: EventsKey(p), Values: map[string]any{EventField: "{"}}).Val()
	addEvent(t, rdb, p, "running")
	evs, err := ReadEvents(t.Context(), rdb, p, "0", 10, 0)
	var be *BadEntryError
	if len(evs) != 1 || evs[0].ID != first || !errors.As(err, &be) || be.ID != bad {
		t.Fatalf("ReadEvents = %v, %v", evs, err)
	}
	if last, err := LastEventID(t.Context(), rdb, sandboxq.Project{Name: "none"}); err != nil || last != "0" {
		t.Fatalf("LastEventID of an empty stream = %q, %v", last, err)
	}
}

func TestAsynqQueueKey(t *testing.T) {
	for _, c := range []struct {
		key, kind, queue string
		ok               bool
	}{
		{"asynq:{default}:pending", "pending", "default", true},
		{"asynq:{a:b}:lease", "lease", "a:b", true},
		{"asynq:{default}:paused", "pending", "", false},
		{"asynq:{}:pending", "pending", "", false},
		{"sandboxq:{default}:pending", "pending", "", false},
	} {
		q, ok := AsynqQueueOf(c.key, c.kind)
		if q != c.queue || ok != c.ok {
			t.Errorf("AsynqQueueOf(%q, %q) = %q, %v; want %q, %v", c.key, c.kind, q, ok, c.queue, c.ok)
		}
		if c.ok && AsynqQueueKey(q, c.kind) != c.key {
			t.Errorf("AsynqQueueKey(%q, %q) = %q, want %q", q, c.kind, AsynqQueueKey(q, c.kind), c.key)
		}
	}
}
