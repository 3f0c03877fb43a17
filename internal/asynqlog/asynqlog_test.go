package asynqlog

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestLevelsAndMessage(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := New(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Debug("hidden")
	l.Info("processing ", 3, " tasks")
	l.Warn("w")
	l.Error("e")
	l.Fatal("f")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want 4 (debug filtered):\n%s", len(lines), buf.String())
	}
	want := []struct{ level, msg string }{{"INFO", "processing 3 tasks"}, {"WARN", "w"}, {"ERROR", "e"}, {"ERROR", "f"}}
	for i, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec["level"] != want[i].level || rec["msg"] != want[i].msg || rec["component"] != "asynq" {
			t.Errorf("line %d = %v, want level %s msg %q component asynq", i, rec, want[i].level, want[i].msg)
		}
	}
	New(nil).Info("no panic with a nil logger")
}
