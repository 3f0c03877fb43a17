package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// DialWS opens the daemon WebSocket in the json protocol (protocol §3):
// the daemon URL with http→ws and https→wss, path /ws, query
// token=<token>&protocol=json. A refused handshake is an *APIError with the
// HTTP status (401 for a bad token); a network failure is retryable
// (IsRetryable). The handshake is bounded by the client's timeout and ctx;
// ctx does not bound the returned connection, which the caller owns and
// closes.
func (d *Daemon) DialWS(ctx context.Context) (*websocket.Conn, error) {
	const op = "daemon.dial_ws"
	if err := d.usable(); err != nil {
		return nil, fmt.Errorf("gateway: %s: %w", op, err)
	}
	if ctx == nil {
		return nil, fmt.Errorf("gateway: %s: nil context", op)
	}
	tok := d.token.reveal()
	u := joinURL(d.base, "ws", "token="+url.QueryEscape(tok)+"&protocol=json")
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	default:
		u.Scheme = "ws"
	}
	safeURL := sanitizeURL(u)
	r := &request{op: op, method: http.MethodGet}

	dialer := *d.t.ws // gorilla clones the TLS config per dial
	dialer.HandshakeTimeout = d.t.timeout
	hdr := http.Header{"User-Agent": {d.t.userAgent}}
	start := time.Now()
	conn, resp, err := dialer.DialContext(ctx, u.String(), hdr)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	d.t.finish(ctx, r, safeURL, start, status)
	if err == nil {
		return conn, nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("gateway: %s: %w", op, ctx.Err())
	}
	var secrets []string
	if tok != "" {
		secrets = []string{tok, url.QueryEscape(tok)}
	}
	if resp != nil && errors.Is(err, websocket.ErrBadHandshake) {
		// gorilla keeps at most 1 KiB of the refusal's body.
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, newAPIError(op, http.MethodGet, safeURL, resp, b, secrets, time.Now())
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		// gorilla's handshake timeout shows as either, depending on the phase.
		err = fmt.Errorf("%w after %v (%s)", ErrRequestTimeout, d.t.timeout, redactAll(err.Error(), secrets))
	case redactAll(err.Error(), secrets) != err.Error():
		err = errors.New(redactAll(err.Error(), secrets))
	}
	return nil, &transportError{op: op, method: http.MethodGet, url: safeURL, err: err}
}

// The read buffer holds a frame header and a control frame (125 bytes);
// longer messages and handshake lines are read through it in pieces.
const (
	wsReadBufferSize  = 256
	wsWriteBufferSize = 1024
)

var wsWriteBufferPool = &sync.Pool{}

// newWSDialer builds the dialer template for DialWS: the same proxy, TLS
// settings and dial function as the HTTP client when its transport is an
// *http.Transport. It goes through Transport.Clone, which waits for the
// transport's lazy TLS set-up instead of racing with it.
func newWSDialer(hc *http.Client) *websocket.Dialer {
	d := &websocket.Dialer{
		Proxy: http.ProxyFromEnvironment,
		// A watcher holds one connection per sandbox, mostly idle, with
		// small JSON messages: small read buffers and write buffers shared
		// between writes keep thousands of connections cheap.
		ReadBufferSize:  wsReadBufferSize,
		WriteBufferSize: wsWriteBufferSize,
		WriteBufferPool: wsWriteBufferPool,
	}
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	tr, ok := rt.(*http.Transport)
	if !ok {
		return d
	}
	tr = tr.Clone()
	d.Proxy = tr.Proxy
	d.NetDialContext = tr.DialContext
	if cfg := tr.TLSClientConfig; cfg != nil {
		if len(cfg.NextProtos) > 0 {
			// The upgrade needs HTTP/1.1; an accepted h2 offer would break it.
			protos := make([]string, 0, len(cfg.NextProtos))
			for _, p := range cfg.NextProtos {
				if !strings.EqualFold(p, "h2") {
					protos = append(protos, p)
				}
			}
			cfg.NextProtos = protos
		}
		d.TLSClientConfig = cfg
	}
	return d
}
