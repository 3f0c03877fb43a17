package redislog_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/internal/redislog"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/internal/testutil"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// TestGoRedisLinesAreJSON installs the adapter and makes go-redis log one of
// its own lines (a sub-millisecond expiry is truncated with a warning): the
// line arrives as a JSON record with component=redis, not as go-redis's
// "redis: <date> <file>:<line>" text. Not parallel: the go-redis logger is
// process-wide.
func TestGoRedisLinesAreJSON(t *testing.T) {
	var buf testutil.SyncBuffer
	redis.SetLogger(redislog.New(slog.New(slog.NewJSONHandler(&buf, nil))))
	t.Cleanup(func() { redis.SetLogger(redislog.New(nil)) })

	rdb := redistest.New(t).Client(t)
	if err := rdb.Set(t.Context(), "k", "v", 500*time.Microsecond).Err(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if out == "" {
		t.Fatal("go-redis logged nothing through the adapter")
	}
	for _, line := range bytes.Split(bytes.TrimSpace([]byte(out)), []byte("\n")) {
		var rec struct {
			Level, Msg, Component string
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if rec.Level != "WARN" || rec.Component != "redis" || !strings.Contains(rec.Msg, "truncating to 1ms") {
			t.Fatalf("record %s", line)
		}
	}
}
