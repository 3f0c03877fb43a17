package testutil

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Browser is a headless Chromium driven over the DevTools protocol, for
// tests that interact with a page while it is open (set a value on window,
// trigger something, read the DOM again) rather than only load it.
type Browser struct {
	port int
}

// StartBrowser runs headless Chromium (bin, from Chromium) until the test
// ends.
func StartBrowser(t *testing.T, bin string) *Browser {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--user-data-dir="+dir, "--window-size=1280,1000", "about:blank")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stderr syncBuffer
	cmd.Stderr = &stderr
	// Chromium forks helpers: a process group of its own, killed whole.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	var port int
	Eventually(t, "chromium's DevTools port (DevToolsActivePort)", 60*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "DevToolsActivePort"))
		if err != nil {
			return false
		}
		first, _, _ := strings.Cut(string(b), "\n")
		_, err = fmt.Sscanf(first, "%d", &port)
		return err == nil && port > 0
	})
	return &Browser{port: port}
}

// Page is one tab of a Browser.
type Page struct {
	t    *testing.T
	conn *websocket.Conn
	mu   sync.Mutex
	id   int
}

// Open opens rawURL in a new tab.
func (b *Browser) Open(t *testing.T, rawURL string) *Page {
	t.Helper()
	endpoint := fmt.Sprintf("http://127.0.0.1:%d/json/new?%s", b.port, url.QueryEscape(rawURL))
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, endpoint, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	defer resp.Body.Close()
	var target struct {
		WS string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&target); err != nil || target.WS == "" {
		t.Fatalf("open a tab: %d %v", resp.StatusCode, err)
	}
	conn, _, err := websocket.DefaultDialer.DialContext(t.Context(), target.WS, nil)
	if err != nil {
		t.Fatalf("connect to the tab: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &Page{t: t, conn: conn}
}

// call sends one DevTools command and returns its result.
func (p *Page) call(method string, params any) (json.RawMessage, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.id++
	id := p.id
	_ = p.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if err := p.conn.WriteJSON(map[string]any{"id": id, "method": method, "params": params}); err != nil {
		return nil, err
	}
	_ = p.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		var msg struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := p.conn.ReadJSON(&msg); err != nil {
			return nil, err
		}
		if msg.ID != id {
			continue // an event, or an answer to nobody
		}
		if msg.Error != nil {
			return nil, fmt.Errorf("%s: %s", method, msg.Error.Message)
		}
		return msg.Result, nil
	}
}

// Eval evaluates a JavaScript expression in the page and decodes its
// value into v (nil: ignore it).
func (p *Page) Eval(expr string, v any) {
	p.t.Helper()
	res, err := p.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	if err != nil {
		p.t.Fatalf("evaluate %q: %v", expr, err)
	}
	var out struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(res, &out); err != nil {
		p.t.Fatalf("evaluate %q: %v", expr, err)
	}
	if out.Exception != nil {
		p.t.Fatalf("evaluate %q: %s", expr, out.Exception.Text)
	}
	if v != nil && len(out.Result.Value) > 0 {
		if err := json.Unmarshal(out.Result.Value, v); err != nil {
			p.t.Fatalf("evaluate %q: decode %s: %v", expr, out.Result.Value, err)
		}
	}
}

// Text is document.body.innerText ("" before the body exists).
func (p *Page) Text() string {
	p.t.Helper()
	var s string
	p.Eval(`document.body ? document.body.innerText : ""`, &s)
	return s
}

// Screenshot saves a PNG of the page to path.
func (p *Page) Screenshot(path string) {
	p.t.Helper()
	res, err := p.call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true})
	if err != nil {
		p.t.Fatalf("screenshot: %v", err)
	}
	var out struct {
		Data string `json:"data"`
	}
	if err := json.Unmarshal(res, &out); err != nil {
		p.t.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(out.Data)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		p.t.Fatalf("screenshot is not a PNG (%d bytes, %v)", len(png), err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's writes and a test's
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
