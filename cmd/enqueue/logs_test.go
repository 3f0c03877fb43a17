package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/gateway/local"
	"github.com/sandboxq/sandboxq/internal/testutil"
)

// TestLogsFollow runs `enqueue logs --follow` against a local provider's
// server that prints a line every 100 ms: lines printed after the command
// started appear, each once, and the command ends with exit 0 when its
// context ends.
func TestLogsFollow(t *testing.T) {
	t.Parallel()
	lp, gw := testutil.Provider(t, local.Config{})
	ctx := t.Context()
	sb, err := gw.FindOrCreate(ctx, "logs", "shop", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = gw.Daemon(sb).StartServer(ctx, gateway.ServerStartOptions{
		Slug: "web", Start: `i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo "line $i"; sleep 0.1; done; sleep 60`,
	})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the server's first lines", 20*time.Second, func() bool {
		l, err := gw.Daemon(sb).ServerLogs(ctx, "web", "")
		return err == nil && strings.Contains(l.Logs, "line 3\n")
	})
	env := map[string]string{"COMPUTESDK_GATEWAY_URL": lp.URL(), "COMPUTESDK_API_KEY": lp.APIKey().Reveal()}
	getenv := func(k string) string { return env[k] }

	var once testutil.SyncBuffer
	if code := run(ctx, []string{"logs", "--namespace", "logs", "--name", "shop", "--slug", "web", "--tail", "1"}, getenv, strings.NewReader(""), &once, &testutil.SyncBuffer{}); code != exitOK {
		t.Fatalf("logs: exit %d", code)
	}
	if n := strings.Count(once.String(), "line "); n != 1 {
		t.Errorf("--tail 1 printed %d lines: %q", n, once.String())
	}

	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var out, errOut testutil.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(fctx, []string{"logs", "--namespace", "logs", "--name", "shop", "--slug", "web", "--follow", "--interval", "50ms"},
			getenv, strings.NewReader(""), &out, &errOut)
	}()
	start := lineCount(out.String())
	testutil.Eventually(t, "new lines while following", 20*time.Second, func() bool {
		return lineCount(out.String()) >= start+10
	})
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("logs --follow: exit %d, stderr %s", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("logs --follow did not stop when its context ended")
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if seen[l] {
			t.Errorf("line %q printed twice", l)
		}
		seen[l] = true
	}
}

func lineCount(s string) int { return strings.Count(s, "\n") }

func TestNewOutput(t *testing.T) {
	for _, c := range []struct{ prev, cur, want string }{
		{"", "a\n", "a\n"},
		{"a\n", "a\nb\n", "b\n"},
		{"a\nb\nc\n", "b\nc\nd\n", "d\n"}, // the daemon dropped the oldest
		{"x\n", "y\n", "y\n"},             // nothing in common: all of it
		{"a\n", "a\n", ""},
	} {
		if got := newOutput(c.prev, c.cur); got != c.want {
			t.Errorf("newOutput(%q, %q) = %q, want %q", c.prev, c.cur, got, c.want)
		}
	}
}
