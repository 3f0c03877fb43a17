package local

import (
	"bytes"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// ownGoroutines lists the goroutines running non-test code of this
// package or of its internal packages, or started by such code.
func ownGoroutines() []string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		lines := strings.Split(g, "\n")
		for i := 1; i+1 < len(lines); i++ {
			fn, file := lines[i], strings.TrimSpace(lines[i+1])
			if strings.HasPrefix(fn, "\t") {
				continue
			}
			ours := strings.Contains(fn, "sandboxq/gateway/local.") || strings.Contains(fn, "sandboxq/gateway/local/internal/")
			if ours && !strings.Contains(file, "_test.go:") {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// TestCloseLeavesNothing runs a provider with a server, a running
// command, WebSockets and the drop loop, closes it, and checks that no
// process, goroutine, connection or file is left. It is not parallel, so
// the goroutines it inspects are its own.
func TestCloseLeavesNothing(t *testing.T) {
	p, err := Start(Config{Logger: testLogger(t), Faults: Faults{DropWebSocketsEvery: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			p.Close()
		}
	})
	root := p.Root()
	s := newSandbox(t, p, nil)
	s.must(http.StatusOK, http.MethodPost, "/servers", map[string]any{
		"slug": "web", "start": helperCommand(t), "environment": map[string]string{helperEnv: "serve"},
	})
	info := s.waitStatus("web", "ready")
	w := dialWS(t, s, "binary")
	w.subscribe(t, true, "signals")

	var wg sync.WaitGroup
	wg.Go(func() {
		// Ends with Close, one way or another (killed, refused, reset).
		_, _ = tryDo(t, http.MethodPost, s.rec.URL+"/run/command", s.auth(), map[string]any{"command": "sleep 300"})
	})
	var pids []int
	waitFor(t, "command and server processes", func() bool {
		v, _ := p.Sandbox(s.rec.SandboxID)
		pids = v.PIDs
		return len(pids) >= 2
	})

	// The inspection sees the provider's goroutines while it runs (the
	// drop loop, the websocket reader and writer, the server supervisor).
	if n := len(ownGoroutines()); n < 4 {
		t.Fatalf("goroutine inspection sees %d goroutines before Close", n)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed = true
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	wg.Wait()

	for _, pid := range append(pids, info.PID) {
		if alive(pid) {
			t.Errorf("pid %d alive after Close", pid)
		}
	}
	if err := w.closed(t); err == nil {
		t.Error("websocket still open")
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("temporary root left: %v", err)
	}
	if _, err := http.Get(p.URL() + "/v1/sandboxes"); err == nil {
		t.Error("listener still accepting")
	}
	if _, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.rec.URL, "http")+"/ws?token="+s.rec.Token, nil); err == nil {
		t.Error("websocket dial succeeded after Close")
	}
	var left []string
	poll(t, waitTimeout, func() bool {
		left = ownGoroutines()
		return len(left) == 0
	})
	if len(left) > 0 {
		t.Errorf("%d goroutines outlived Close:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}

// TestLogsCarryNoSecrets runs requests of every kind with debug logging
// and looks for the API key and the token in the output.
func TestLogsCarryNoSecrets(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := startProvider(t, Config{Logger: logger})
	s := newSandbox(t, p, map[string]any{"name": "logged"})
	s.must(http.StatusCreated, http.MethodPost, "/files", map[string]any{"path": "a", "content": "b"})
	do(t, http.MethodGet, s.rec.URL+"/health?token="+s.rec.Token, nil, nil)
	do(t, http.MethodGet, s.rec.URL+"/health?token=wrong-"+s.rec.Token, nil, nil)
	do(t, http.MethodGet, p.URL()+"/v1/sandboxes/"+s.rec.SandboxID, map[string]string{"X-ComputeSDK-API-Key": "bad" + p.APIKey().Reveal()}, nil)
	s.run(map[string]any{"command": "true"})
	w := dialWS(t, s, "json")
	w.subscribe(t, false, "signals")
	s.must(http.StatusOK, http.MethodPost, "/signals/start", nil)
	w.syncSignals(t, s)
	gw(t, p, http.MethodDelete, "/v1/sandboxes/"+s.rec.SandboxID, nil)
	w.closed(t)

	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if !strings.Contains(out, s.rec.SandboxID) {
		t.Fatalf("debug log has no request lines:\n%s", out)
	}
	for name, secret := range map[string]string{"API key": p.APIKey().Reveal(), "token": s.rec.Token} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains the %s", name)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
