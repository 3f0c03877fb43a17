package redistest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestClusterStartsAndFailsOver: the cluster serves every slot through the
// URL the binaries accept; SIGKILL of the primary of a key's slot promotes
// its replica, which still has the key.
func TestClusterStartsAndFailsOver(t *testing.T) {
	t.Parallel()
	c := NewCluster(t)
	ctx := t.Context()
	prim, err := c.Primaries(ctx)
	if err != nil || len(prim) != 3 {
		t.Fatalf("primaries = %d, %v; want 3", len(prim), err)
	}
	if !strings.HasPrefix(c.URL(), "redis://") || strings.Count(c.URL(), ",") != 5 {
		t.Fatalf("URL %q is not a list of six redis:// nodes", c.URL())
	}
	rdb := c.Client(t)
	for _, k := range []string{"{a}x", "{b}x", "{c}x", "{d}x"} {
		if err := rdb.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	victim, err := c.PrimaryFor(ctx, "{a}x")
	if err != nil {
		t.Fatal(err)
	}
	get := redis.NewScript(`return redis.call('GET', KEYS[1])`)
	if v, err := get.Run(ctx, rdb, []string{"{a}x"}).Text(); err != nil || v != "v" {
		t.Fatalf("script before the kill: %q, %v", v, err)
	}
	if err := victim.Client(t).Wait(ctx, 1, 2000).Err(); err != nil {
		t.Fatal(err)
	}
	victim.Kill()
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	now, err := c.PrimaryFor(ctx, "{a}x")
	if err != nil || now == victim {
		t.Fatalf("slot of {a}x still on %v after failover (%v)", now, err)
	}
	// The client learns the new slot map on its next errors: poll.
	var v string
	err = poll(ctx, 30*time.Second, func(ctx context.Context) error {
		v, err = rdb.Get(ctx, "{a}x").Result()
		return err
	})
	if err != nil || v != "v" {
		t.Fatalf("GET {a}x after failover = %q, %v", v, err)
	}
	// The promoted replica never saw the script (Redis 7 replicates its
	// effects, not the script): EVALSHA gets NOSCRIPT and Script.Run falls
	// back to EVAL.
	if ex, err := now.Client(t).ScriptExists(ctx, get.Hash()).Result(); err != nil || ex[0] {
		t.Fatalf("SCRIPT EXISTS on the promoted replica = %v, %v; want a fresh script cache", ex, err)
	}
	if v, err := get.Run(ctx, rdb, []string{"{a}x"}).Text(); err != nil || v != "v" {
		t.Fatalf("script after failover: %q, %v", v, err)
	}
}

// TestSentinelStartsAndFailsOver: a failover client writes through the
// sentinels; SIGKILL of the primary promotes a replica, the client follows
// it and the replicated key is there.
func TestSentinelStartsAndFailsOver(t *testing.T) {
	t.Parallel()
	s := NewSentinel(t)
	ctx := t.Context()
	if want := "redis-sentinel://" + s.Sentinels[0].Addr; !strings.HasPrefix(s.URL(), want) || !strings.HasSuffix(s.URL(), "?master="+SentinelMaster) {
		t.Fatalf("URL = %q", s.URL())
	}
	rdb := s.Client(t)
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Do(ctx, "WAIT", 2, 2000).Int(); err != nil || n != 2 {
		t.Fatalf("WAIT 2 = %d, %v", n, err)
	}
	old, err := s.Primary(ctx)
	if err != nil || old != s.Data[0] {
		t.Fatalf("primary = %v, %v; want the first data node", old, err)
	}
	old.Kill()
	if err := s.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Primary(ctx); p == old {
		t.Fatal("no failover")
	}
	var v string
	err = poll(ctx, 30*time.Second, func(ctx context.Context) error {
		v, err = rdb.Get(ctx, "k").Result()
		return err
	})
	if err != nil || v != "v" {
		t.Fatalf("GET k after failover = %q, %v", v, err)
	}
	if err := rdb.Set(ctx, "k2", "v", 0).Err(); errors.Is(err, redis.Nil) || err != nil {
		t.Fatalf("SET after failover: %v", err)
	}
}

// TestTopologiesSkipOrFailWithoutBinaries: with no binaries on PATH the
// helpers skip, or fail under SANDBOXQ_REQUIRE_REDIS.
func TestTopologiesSkipOrFailWithoutBinaries(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	for _, tc := range []struct {
		env      string
		skipped  bool
		failed   bool
		fatalMsg string
	}{{"", true, false, ""}, {"1", false, true, RequireEnv}} {
		t.Setenv(RequireEnv, tc.env)
		rec := &recordingTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			requireBinaries(rec)
		}()
		<-done
		if rec.skipped != tc.skipped || rec.failed != tc.failed || !strings.Contains(rec.msg, tc.fatalMsg) {
			t.Fatalf("env %q: skipped %v failed %v msg %q", tc.env, rec.skipped, rec.failed, rec.msg)
		}
	}
}

// recordingTB records Skipf/Fatalf and ends the goroutine as they would.
type recordingTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Skipf(f string, a ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(f, a...)
	runtime.Goexit()
}
func (r *recordingTB) Fatalf(f string, a ...any) {
	r.failed, r.msg = true, fmt.Sprintf(f, a...)
	runtime.Goexit()
}
