package maintenance

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/robfig/cron/v3"

	"github.com/sandboxq/sandboxq/internal/redistest"
)

func TestSlotOf(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		spec, now, want string
	}{
		{"*/10 * * * *", "2026-03-02T10:23:05Z", "2026-03-02T10:20:00Z"},
		{"*/10 * * * *", "2026-03-02T10:20:00Z", "2026-03-02T10:20:00Z"},
		{"*/10 * * * *", "2026-03-02T10:29:59.999Z", "2026-03-02T10:20:00Z"},
		{"*/5 * * * *", "2026-03-02T00:01:00Z", "2026-03-02T00:00:00Z"},
		{"@hourly", "2026-03-02T10:59:00Z", "2026-03-02T10:00:00Z"},
		// Monday 08:00: the last weekday 09:00 was Friday's.
		{"0 9 * * 1-5", "2026-03-02T08:00:00Z", "2026-02-27T09:00:00Z"},
		{"@yearly", "2026-03-02T08:00:00Z", "2026-01-01T00:00:00Z"},
		// @every: multiples of the period, whatever the process's start.
		{"@every 1s", "2026-03-02T10:00:07.004Z", "2026-03-02T10:00:07Z"},
		{"@every 10s", "2026-03-02T10:00:07.004Z", "2026-03-02T10:00:00Z"},
		{"@every 10s", "2026-03-02T10:00:13Z", "2026-03-02T10:00:10Z"},
	} {
		sched, err := cron.ParseStandard(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := slotOf(sched, at(tc.now)); !got.Equal(at(tc.want)) {
			t.Errorf("slotOf(%q, %s) = %s, want %s", tc.spec, tc.now, got.Format(time.RFC3339Nano), tc.want)
		}
	}
}

func TestNewSchedulerValidates(t *testing.T) {
	t.Parallel()
	if _, err := NewScheduler(SchedulerConfig{}); err == nil || !strings.Contains(err.Error(), "Redis") {
		t.Errorf("no Redis: err = %v", err)
	}
	rdb := newRedis(t)
	_, err := NewScheduler(SchedulerConfig{Redis: rdb, CleanupSpec: "every ten minutes"})
	if err == nil || !strings.Contains(err.Error(), "CleanupSpec") || !strings.Contains(err.Error(), "every ten minutes") {
		t.Errorf("bad CleanupSpec: err = %v, want it named", err)
	}
	_, err = NewScheduler(SchedulerConfig{Redis: rdb, ReconcileSpec: "61 * * * *"})
	if err == nil || !strings.Contains(err.Error(), "ReconcileSpec") {
		t.Errorf("bad ReconcileSpec: err = %v, want it named", err)
	}
	_, err = NewScheduler(SchedulerConfig{Redis: rdb, HeartbeatInterval: 1500 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "HeartbeatInterval") {
		t.Errorf("fractional HeartbeatInterval: err = %v, want it named", err)
	}
	s, err := NewScheduler(SchedulerConfig{Redis: rdb, CleanupSpec: "off", ReconcileSpec: "OFF"})
	if err != nil || len(s.entries) != 0 {
		t.Fatalf("both off: %v, %d entries", err, len(s.entries))
	}
	s, err = NewScheduler(SchedulerConfig{Redis: rdb})
	if err != nil || len(s.entries) != 2 || s.entries[0].spec != DefaultCleanupSpec || s.entries[1].spec != DefaultReconcileSpec {
		t.Fatalf("defaults: %v %+v", err, s.entries)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := s.Run(ctx); err == nil {
		t.Fatal("second Run succeeded")
	}
}

func newRedis(t *testing.T) *redis.Client { return redistest.New(t).Client(t) }
