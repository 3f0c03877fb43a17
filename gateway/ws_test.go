package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sandboxq/sandboxq/internal/secret"
)

// A token with characters that need query escaping.
const wsToken = "tok+en/with=&chars " + testToken

// echoWS upgrades requests that carry the right token and protocol, then
// answers each frame with a "pong" on the frame's channel carrying the
// frame back as data.
func echoWS(t *testing.T) http.HandlerFunc {
	up := websocket.Upgrader{}
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("token") != wsToken {
			writeJSON(w, http.StatusUnauthorized, `{"error":"invalid token `+q.Get("token")+`"}`)
			return
		}
		if q.Get("protocol") != "json" {
			t.Errorf("protocol = %q, want json", q.Get("protocol"))
		}
		testHeader(t, r, "User-Agent", DefaultUserAgent)
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			return
		}
		defer func() { _ = conn.Close() }()
		for {
			var m WSMessage
			if err := conn.ReadJSON(&m); err != nil {
				return
			}
			echoed, _ := json.Marshal(m)
			if err := conn.WriteJSON(WSMessage{Type: "pong", Channel: m.Channel, Data: echoed}); err != nil {
				return
			}
		}
	}
}

func roundTrip(t *testing.T, conn *websocket.Conn) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if err := conn.WriteJSON(WSMessage{Type: "subscribe", Channel: "signals"}); err != nil {
		t.Fatal(err)
	}
	var got WSMessage
	if err := conn.ReadJSON(&got); err != nil {
		t.Fatal(err)
	}
	if got.Type != "pong" || got.Channel != "signals" || string(got.Data) != `{"type":"subscribe","channel":"signals"}` {
		t.Fatalf("frame = %+v (data %s)", got, got.Data)
	}
}

func TestDialWS(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.mux.HandleFunc("GET /ws", echoWS(t))
	var statuses []int
	c, err := NewClient("http://gateway.invalid", WithObserver(func(op string, status int, _ time.Duration) {
		if op == "daemon.dial_ws" {
			statuses = append(statuses, status)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	d := c.Daemon(&Sandbox{URL: f.url, Token: wsToken})
	conn, err := d.DialWS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, conn)
	_ = conn.Close()

	// A bad token is refused at the handshake: *APIError 401, token-free.
	bad := c.Daemon(&Sandbox{URL: f.url, Token: "wrong-" + testToken})
	_, err = bad.DialWS(ctx)
	ae, ok := errors.AsType[*APIError](err)
	if !ok || ae.StatusCode != http.StatusUnauthorized || !errors.Is(err, ErrUnauthorized) || IsRetryable(err) {
		t.Fatalf("err = %v, want *APIError 401", err)
	}
	if ae.Op != "daemon.dial_ws" || !strings.HasPrefix(ae.URL, "ws://") || !strings.Contains(ae.URL, "/gw/ws?token=REDACTED&protocol=json") {
		t.Errorf("APIError = %+v", ae)
	}
	if msg := err.Error(); strings.Contains(msg, testToken) {
		t.Errorf("handshake error leaks the token: %s", msg)
	}
	if ae.Message != "invalid token [redacted]" {
		t.Errorf("message = %q", ae.Message)
	}
	if want := []int{101, 401}; len(statuses) != 2 || statuses[0] != want[0] || statuses[1] != want[1] {
		t.Errorf("observed statuses %v, want %v", statuses, want)
	}
}

// TestDialWS_TLS checks https→wss and that the dial uses the HTTP client's
// TLS configuration (the test server's certificate is trusted only there).
func TestDialWS_TLS(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /prefix/ws", echoWS(t))
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted dial below makes it complain
	srv.StartTLS()
	t.Cleanup(srv.Close)
	d, err := NewDaemon(srv.URL+"/prefix", secret.New(wsToken), WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := d.DialWS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, conn)
	_ = conn.Close()

	// Without the test CA the certificate is untrusted: not retryable.
	d2, err := NewDaemon(srv.URL+"/prefix", secret.New(wsToken))
	if err != nil {
		t.Fatal(err)
	}
	_, err = d2.DialWS(t.Context())
	if err == nil || IsRetryable(err) || strings.Contains(err.Error(), testToken) {
		t.Errorf("untrusted certificate: err = %v, want non-retryable and token-free", err)
	}
	if _, err := d2.Health(t.Context()); err == nil || IsRetryable(err) {
		t.Errorf("untrusted certificate over HTTP: err = %v, want non-retryable", err)
	}
}

func TestDialWS_Failures(t *testing.T) {
	t.Parallel()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	d, err := NewDaemon(deadURL, secret.New(wsToken))
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.DialWS(t.Context())
	if err == nil || !IsRetryable(err) || strings.Contains(err.Error(), testToken) {
		t.Errorf("closed server: err = %v, want retryable and token-free", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = d.DialWS(ctx)
	if !errors.Is(err, context.Canceled) || IsRetryable(err) {
		t.Errorf("canceled: err = %v", err)
	}

	// A server that accepts TCP but never answers the upgrade hits the
	// handshake timeout: retryable.
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(hang) })
	d2, err := NewDaemon(srv.URL, secret.New(wsToken), WithTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_, err = d2.DialWS(t.Context())
	if !errors.Is(err, ErrRequestTimeout) || !IsRetryable(err) {
		t.Errorf("handshake timeout: err = %v, want retryable ErrRequestTimeout", err)
	}
}
