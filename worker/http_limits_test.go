package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// testLimits are defaultLimits shortened so the tests take a second.
var testLimits = httpLimits{readHeader: 300 * time.Millisecond, idle: 300 * time.Millisecond, body: 300 * time.Millisecond, maxHeader: 4 << 10}

// serveTest serves h with lim on a loopback port until the test ends.
func serveTest(t *testing.T, h http.Handler, lim httpLimits) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveWith(ctx, l, h, nil, lim) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return l.Addr().String()
}

// waitClosed reads c until the server closes it (EOF or reset) and fails
// if that has not happened within limit. It returns what was read.
func waitClosed(t *testing.T, c net.Conn, limit time.Duration, what string) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	b, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: connection still open after %v (read %q)", what, limit, b)
	}
	return string(b)
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestHTTPClosesIdleAndSlowConnections: a keep-alive connection that sends
// no next request, one that never finishes its header, and one that
// trickles its body are all closed by the server.
func TestHTTPClosesIdleAndSlowConnections(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "cannot read the body: "+err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	addr := serveTest(t, h, testLimits)
	const limit = 5 * time.Second // far above the 300 ms limits

	idle := dial(t, addr)
	fmt.Fprint(idle, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	if got := waitClosed(t, idle, limit, "idle keep-alive"); !strings.Contains(got, "200 OK") {
		t.Errorf("idle keep-alive: answer %q", got)
	}

	silent := dial(t, addr)
	fmt.Fprint(silent, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
	waitClosed(t, silent, limit, "unfinished header")

	slow := dial(t, addr)
	fmt.Fprint(slow, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
	if got := waitClosed(t, slow, limit, "slow body"); !strings.Contains(got, "400 Bad Request") {
		t.Errorf("slow body: answer %q", got)
	}

	big := dial(t, addr)
	fmt.Fprintf(big, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 64<<10))
	if got := waitClosed(t, big, limit, "huge header"); !strings.Contains(got, "431") {
		t.Errorf("huge header: answer %q", got)
	}
}

// TestHTTPStreamOutlivesBodyDeadline: the body deadline ends once the body
// is read, so a handler that streams after it (SSE, long polls) is not cut
// off, and its request context stays alive.
func TestHTTPStreamOutlivesBodyDeadline(t *testing.T) {
	t.Parallel()
	const chunks = 8
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc := http.NewResponseController(w)
		tick := time.NewTicker(testLimits.body / 2)
		defer tick.Stop()
		for i := range chunks {
			fmt.Fprintf(w, "chunk %d\n", i)
			_ = rc.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
		}
	})
	addr := serveTest(t, h, testLimits)
	c := dial(t, addr)
	fmt.Fprint(c, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("stream cut off after %q: %v", b, err)
	}
	if want := fmt.Sprintf("chunk %d\n", chunks-1); !strings.HasSuffix(string(b), want) {
		t.Fatalf("stream ended early: %q", b)
	}
}

// TestDefaultHTTPLimits pins the production limits: nothing useful for
// 15 s closes a connection.
func TestDefaultHTTPLimits(t *testing.T) {
	srv := newServer(http.NotFoundHandler(), defaultLimits)
	if srv.ReadHeaderTimeout <= 0 || srv.ReadHeaderTimeout > 15*time.Second ||
		srv.IdleTimeout <= 0 || srv.IdleTimeout > 15*time.Second ||
		defaultLimits.body <= 0 || defaultLimits.body > 15*time.Second ||
		srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes > 1<<20 {
		t.Fatalf("limits: header %v idle %v body %v max header %d", srv.ReadHeaderTimeout, srv.IdleTimeout, defaultLimits.body, srv.MaxHeaderBytes)
	}
	if srv.WriteTimeout != 0 || srv.ReadTimeout != 0 {
		t.Fatal("a server-wide read or write timeout would cut event streams")
	}
}
