package local

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// eventsConn is a raw client of the events pub/sub.
type eventsConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialEvents(t *testing.T, p *Provider) *eventsConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.EventsAddr(), waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &eventsConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (e *eventsConn) send(line string) {
	e.t.Helper()
	if _, err := e.c.Write([]byte(line + "\r\n")); err != nil {
		e.t.Fatal(err)
	}
}

// line reads the next line (without CRLF); "" and an error at EOF.
func (e *eventsConn) line() (string, error) {
	_ = e.c.SetReadDeadline(time.Now().Add(waitTimeout))
	l, err := e.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if !strings.HasSuffix(l, "\r\n") {
		e.t.Fatalf("line %q does not end in CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n"), nil
}

func (e *eventsConn) mustLine() string {
	e.t.Helper()
	l, err := e.line()
	if err != nil {
		e.t.Fatalf("read line: %v", err)
	}
	return l
}

type wireEvent struct {
	ID          string         `json:"id"`
	SandboxID   string         `json:"sandboxId"`
	WorkspaceID *int           `json:"workspaceId"`
	Type        string         `json:"type"`
	Data        map[string]any `json:"data"`
	Timestamp   int64          `json:"timestamp"`
}

func TestEventsPubSubRefusesBadSubscriptions(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, nil)
	for _, line := range []string{
		"SUBSCRIBE " + s.rec.SandboxID + " wrong-token",
		"SUBSCRIBE sbx_nope " + s.rec.Token,
		"SUBSCRIBE " + s.rec.SandboxID,
		"HELLO",
	} {
		e := dialEvents(t, p)
		e.send(line)
		got := e.mustLine()
		if !strings.HasPrefix(got, "-ERR ") {
			t.Errorf("%q: answer %q, want -ERR", line, got)
		}
		if strings.Contains(got, s.rec.Token) {
			t.Errorf("refusal %q leaks the token", got)
		}
		if _, err := e.line(); err == nil {
			t.Errorf("%q: connection still open after -ERR", line)
		}
	}
}

func TestEventsPubSubServerLifecycle(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, nil)
	other := newSandbox(t, p, nil)
	e := dialEvents(t, p)
	e.send("SUBSCRIBE " + s.rec.SandboxID + " " + s.rec.Token)
	if got := e.mustLine(); got != "+OK" {
		t.Fatalf("subscribe: %q", got)
	}
	e.send("PING")
	if got := e.mustLine(); got != "+PONG" {
		t.Fatalf("ping: %q", got)
	}
	// Events of another sandbox are not delivered.
	other.must(http.StatusOK, http.MethodPost, "/servers", map[string]any{
		"slug": "x", "start": helperCommand(t), "environment": map[string]string{helperEnv: "serve"},
	})
	other.waitStatus("x", "ready")
	s.must(http.StatusOK, http.MethodPost, "/servers", map[string]any{
		"slug": "web", "start": helperCommand(t), "environment": map[string]string{helperEnv: "serve"},
	})
	info := s.waitStatus("web", "ready")
	var statuses []string
	var last wireEvent
	for len(statuses) == 0 || statuses[len(statuses)-1] != "ready" {
		var ev wireEvent
		if err := json.Unmarshal([]byte(e.mustLine()), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type != "server.status_changed" || ev.SandboxID != s.rec.SandboxID || ev.ID == "" || ev.WorkspaceID == nil || ev.Timestamp == 0 {
			t.Fatalf("event %+v", ev)
		}
		if ev.Data["serverName"] != "web" {
			t.Fatalf("event of server %v, want web", ev.Data["serverName"])
		}
		statuses = append(statuses, ev.Data["status"].(string))
		last = ev
	}
	if strings.Join(statuses, ",") != "starting,running,ready" {
		t.Errorf("statuses %v, want starting, running, ready", statuses)
	}
	if last.Data["url"] != info.URL || last.Timestamp != info.UpdatedAt.UnixMilli() {
		t.Errorf("ready event %+v, server %+v", last, info)
	}
	// Destroying the sandbox: stopped, then sandbox destroyed, then EOF.
	gw(t, p, http.MethodDelete, "/v1/sandboxes/"+s.rec.SandboxID, nil)
	var types []string
	for {
		l, err := e.line()
		if err != nil {
			break
		}
		var ev wireEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		types = append(types, ev.Type+":"+ev.Data["status"].(string))
	}
	if strings.Join(types, ",") != "server.status_changed:stopped,sandbox.status_changed:destroyed" {
		t.Errorf("after destroy: %v", types)
	}
}

func TestEventsPubSubUnsubscribeAndClose(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, nil)
	e := dialEvents(t, p)
	e.send("SUBSCRIBE " + s.rec.SandboxID + " " + s.rec.Token)
	if got := e.mustLine(); got != "+OK" {
		t.Fatalf("subscribe: %q", got)
	}
	e.send("UNSUBSCRIBE")
	if _, err := e.line(); err == nil {
		t.Fatal("connection open after UNSUBSCRIBE")
	}
	// A subscriber still connected when the provider closes is dropped.
	e2 := dialEvents(t, p)
	e2.send("SUBSCRIBE " + s.rec.SandboxID + " " + s.rec.Token)
	if got := e2.mustLine(); got != "+OK" {
		t.Fatalf("subscribe: %q", got)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := e2.line(); err != nil {
			break
		}
	}
}

func TestEventsAddrMustBeLoopback(t *testing.T) {
	t.Parallel()
	if _, err := Start(Config{EventsAddr: "0.0.0.0:0"}); err == nil || !strings.Contains(err.Error(), "non-loopback") {
		t.Fatalf("Start with non-loopback EventsAddr: %v", err)
	}
}
