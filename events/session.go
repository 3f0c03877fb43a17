package events

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/internal/backoff"
	"github.com/sandboxq/sandboxq/tasks"
)

// session is the connections of a watcher to one sandbox record: the
// daemon WebSocket and, if configured, the events service. A new record
// (token or sandbox changed) means a new session.
type session struct {
	daemon    *gateway.Daemon
	sandboxID string
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	mu   sync.Mutex
	conn *websocket.Conn // the daemon WebSocket while it is read
}

func (s *session) stop() {
	s.cancel()
	s.mu.Lock()
	if s.conn != nil {
		_ = s.conn.Close() // ends its reader
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// hold makes conn the session's WebSocket, which stop closes; it closes
// conn and returns false when the session is stopping already.
func (s *session) hold(ctx context.Context, conn *websocket.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ctx.Err() != nil {
		_ = conn.Close()
		return false
	}
	s.conn = conn
	return true
}

func (s *session) release(conn *websocket.Conn) {
	s.mu.Lock()
	if s.conn == conn {
		s.conn = nil
	}
	s.mu.Unlock()
	_ = conn.Close()
}

// lived is how long a connection must last for its reconnect backoff to
// start over.
const lived = 5 * time.Second

func (w *watcher) startSession(sb *gateway.Sandbox, id string) *session {
	ctx, cancel := context.WithCancel(w.ctx)
	s := &session{daemon: w.m.cfg.Gateway.Daemon(sb), sandboxID: id, cancel: cancel}
	s.wg.Go(func() { w.wsDial(ctx, s, 0) })
	if w.m.cfg.EventsAddr != "" {
		token := w.m.cfg.EventsToken(sb)
		s.wg.Go(func() { w.eventsLoop(ctx, id, token) })
	}
	return s
}

// wsDial is connection attempt n (0-based) of the daemon WebSocket. It
// runs in a goroutine that ends once the connection is up: the reader
// then starts afresh, with a small stack, and when it ends a new attempt
// follows after the jittered exponential backoff (started over after a
// connection that lived at least lived). A refusal (stale record) ends
// the attempts and makes the watcher find the sandbox again. Every
// (re)connection is followed by a poll, which resyncs what happened while
// it was down.
func (w *watcher) wsDial(ctx context.Context, s *session, n int) {
	if !w.m.acquire(ctx) {
		return
	}
	conn, err := w.wsOpen(ctx, s.daemon)
	w.m.releaseSlot()
	switch {
	case err == nil:
		if !s.hold(ctx, conn) {
			return
		}
	case ctx.Err() != nil:
		return
	case gateway.IsStaleSandbox(err):
		w.askRefind()
		return
	default:
		w.m.log.Debug("daemon websocket", "project", w.member, "err", err, "attempt", n)
		w.wsRetry(ctx, s, n+1)
		return
	}
	s.wg.Go(func() {
		start := time.Now()
		err := w.wsRead(conn)
		s.release(conn)
		if ctx.Err() != nil {
			return
		}
		w.m.log.Debug("daemon websocket", "project", w.member, "err", err, "attempt", n)
		if time.Since(start) >= lived {
			n = 0
		}
		w.wsRetry(ctx, s, n+1)
	})
}

// wsRetry makes connection attempt n (≥ 1) after the backoff of attempt
// n−1, without a goroutine while it waits.
func (w *watcher) wsRetry(ctx context.Context, s *session, n int) {
	s.wg.Add(1)
	var stopWait func() bool
	armed := make(chan struct{})
	t := time.AfterFunc(w.m.backoff(n-1), func() {
		defer s.wg.Done()
		<-armed
		if stopWait() { // not ended meanwhile
			w.wsDial(ctx, s, n)
		}
	})
	stopWait = context.AfterFunc(ctx, func() {
		if t.Stop() {
			s.wg.Done()
		}
	})
	close(armed)
}

// redial runs once until ctx is done, waiting the jittered exponential
// backoff between attempts; the backoff starts over after a connection
// that lived at least lived.
func (w *watcher) redial(ctx context.Context, what string, once func() (connected bool, err error)) {
	attempt := 0
	for ctx.Err() == nil {
		start := time.Now()
		connected, err := once()
		if ctx.Err() != nil {
			return
		}
		if connected && time.Since(start) >= lived {
			attempt = 0
		}
		w.m.log.Debug(what, "project", w.member, "err", err, "attempt", attempt)
		if backoff.Sleep(ctx, w.m.backoff(attempt)) != nil {
			return
		}
		attempt++
	}
}

// wsRead reads the daemon WebSocket until it fails, handing signals to
// the watcher. The subscription was sent before the signal service was
// started, and the resync poll follows both, so a signal sent after that
// poll's answer reaches this connection.
func (w *watcher) wsRead(conn *websocket.Conn) error {
	w.setWS(true)
	defer w.setWS(false)
	w.resync()
	if h := w.m.hooks.connected; h != nil {
		h(w.member, "ws")
	}
	k := &keepAlive{conn: conn, ping: w.m.cfg.PingInterval}
	k.extend()
	conn.SetPongHandler(k.pong)
	conn.SetPingHandler(k.answer)
	k.start()
	defer k.stop()
	for {
		typ, r, err := conn.NextReader()
		if err != nil {
			return err
		}
		k.extend()
		if typ == websocket.TextMessage && isSignal(r) {
			w.signal()
			if h := w.m.hooks.signal; h != nil {
				h(w.member)
			}
		}
	}
}

// keepAlive is the keep-alive of one daemon WebSocket: every frame read
// extends the read deadline to 2×ping, and a ping goes out only when
// nothing arrived for a whole ping interval (a daemon that pings, or
// talks, keeps the connection proven alive on its own).
type keepAlive struct {
	conn     *websocket.Conn
	ping     time.Duration
	lastRead atomic.Int64 // unix ns of the newest frame read

	mu      sync.Mutex
	timer   *time.Timer // the next check, no goroutine while it waits
	stopped bool
}

func (k *keepAlive) start() {
	k.mu.Lock()
	k.timer = time.AfterFunc(k.ping, k.tick)
	k.mu.Unlock()
}

func (k *keepAlive) stop() {
	k.mu.Lock()
	k.stopped = true
	k.timer.Stop()
	k.mu.Unlock()
}

// tick pings if the connection was silent, and closes it if the ping
// cannot be written.
func (k *keepAlive) tick() {
	if err := k.pingIfSilent(); err != nil {
		_ = k.conn.Close()
		return
	}
	k.mu.Lock()
	if !k.stopped {
		k.timer.Reset(k.ping)
	}
	k.mu.Unlock()
}

func (k *keepAlive) extend() {
	now := time.Now()
	k.lastRead.Store(now.UnixNano())
	_ = k.conn.SetReadDeadline(now.Add(2 * k.ping))
}

func (k *keepAlive) pong(string) error {
	k.extend()
	return nil
}

// answer is the ping handler: gorilla's default (a pong, tolerating a
// closing connection or a slow write) plus extend.
func (k *keepAlive) answer(data string) error {
	k.extend()
	err := k.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(k.ping))
	if err == nil || errors.Is(err, websocket.ErrCloseSent) {
		return nil
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return nil
	}
	return err
}

func (k *keepAlive) pingIfSilent() error {
	if time.Since(time.Unix(0, k.lastRead.Load())) < k.ping {
		return nil
	}
	return k.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(k.ping))
}

// wsOpen dials the daemon WebSocket, subscribes to signals and starts
// the signal service.
func (w *watcher) wsOpen(ctx context.Context, d *gateway.Daemon) (*websocket.Conn, error) {
	conn, err := d.DialWS(ctx)
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(1 << 20)
	_ = conn.SetWriteDeadline(time.Now().Add(w.m.cfg.PingInterval))
	if err := conn.WriteMessage(websocket.TextMessage, subscribeSignals); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("subscribe to signals: %w", err)
	}
	if _, err := d.StartSignals(ctx); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}

// subscribeSignals is the subscribe message of the signals channel.
var subscribeSignals = func() []byte {
	b, _ := json.Marshal(gateway.WSMessage{Type: "subscribe", Channel: "signals"})
	return b
}()

// isSignal reports whether a text message is a signal; it reads the
// message (at most the read limit) and decodes only its type.
func isSignal(r io.Reader) bool {
	var msg struct {
		Type string `json:"type"`
	}
	return json.NewDecoder(r).Decode(&msg) == nil && msg.Type == "signal"
}

// eventsLoop keeps a subscription to the events service, reconnecting with
// backoff; each (re)connection is followed by a poll.
func (w *watcher) eventsLoop(ctx context.Context, sandboxID, token string) {
	w.redial(ctx, "events service", func() (bool, error) {
		return w.eventsOnce(ctx, sandboxID, token)
	})
}

// maxEventLine is the longest line accepted from the events service.
const maxEventLine = 1 << 20

// errEventsRefused is an -ERR answer to SUBSCRIBE.
var errEventsRefused = errors.New("events service refused the subscription")

func (w *watcher) eventsOnce(ctx context.Context, sandboxID, token string) (bool, error) {
	ping := w.m.cfg.PingInterval
	dialer := net.Dialer{Timeout: 10 * time.Second, KeepAlive: -1}
	conn, err := dialer.DialContext(ctx, "tcp", w.m.cfg.EventsAddr)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	var wmu sync.Mutex
	write := func(s string) error {
		wmu.Lock()
		defer wmu.Unlock()
		_ = conn.SetWriteDeadline(time.Now().Add(ping))
		_, err := conn.Write([]byte(s))
		return err
	}
	stopClose := context.AfterFunc(ctx, func() {
		_ = write("UNSUBSCRIBE\r\n")
		_ = conn.Close()
	})
	defer stopClose()
	if strings.ContainsAny(sandboxID+token, " \r\n") || token == "" {
		return false, errors.New("events service: sandbox id or access token unusable on the line protocol")
	}
	if err := write("SUBSCRIBE " + sandboxID + " " + token + "\r\n"); err != nil {
		return false, err
	}
	r := bufio.NewReaderSize(conn, 1024)
	_ = conn.SetReadDeadline(time.Now().Add(2 * ping))
	line, err := readEventLine(r)
	if err != nil {
		return false, err
	}
	if !bytes.Equal(line, []byte("+OK")) {
		reason := strings.TrimPrefix(string(line), "-ERR ")
		reason = strings.ReplaceAll(reason, token, "[redacted]")
		return false, fmt.Errorf("%w: %.200s", errEventsRefused, reason)
	}
	w.resync()
	if h := w.m.hooks.connected; h != nil {
		h(w.member, "events")
	}
	defer every(ping, func() error { return write("PING\r\n") }, func() { _ = conn.Close() })()
	for {
		_ = conn.SetReadDeadline(time.Now().Add(2 * ping))
		line, err := readEventLine(r)
		if err != nil {
			return true, err
		}
		if len(line) == 0 || line[0] != '{' {
			continue // +PONG, RESP framing lines
		}
		if le, ok := parseEventLine(line, sandboxID); ok {
			w.addLine(le)
			if h := w.m.hooks.line; h != nil {
				h(w.member)
			}
		}
	}
}

func readEventLine(r *bufio.Reader) ([]byte, error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(b)+len(chunk) > maxEventLine {
			return nil, errors.New("events service: line longer than 1 MiB")
		}
		b = append(b, chunk...)
		if err == nil {
			return bytes.TrimRight(b, "\r\n"), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// wireEvent is a SandboxEvent of the events service (protocol §4.2).
type wireEvent struct {
	SandboxID string          `json:"sandboxId"`
	Type      string          `json:"type"`
	Data      json.RawMessage `json:"data"`
	Timestamp int64           `json:"timestamp"`
}

// parseEventLine turns a server.status_changed or sandbox.status_changed
// line of the sandbox into an observation; other lines are ignored.
func parseEventLine(line []byte, sandboxID string) (lineEvent, bool) {
	var ev wireEvent
	if json.Unmarshal(line, &ev) != nil {
		return lineEvent{}, false
	}
	if ev.SandboxID != "" && ev.SandboxID != sandboxID {
		return lineEvent{}, false
	}
	var at time.Time
	if ev.Timestamp > 0 {
		at = time.UnixMilli(ev.Timestamp)
	}
	switch ev.Type {
	case tasks.EventServerStatusChanged:
		var d struct {
			ServerName string `json:"serverName"`
			Status     string `json:"status"`
			URL        string `json:"url"`
			Error      string `json:"error"`
		}
		if json.Unmarshal(ev.Data, &d) != nil || d.ServerName == "" || !sandboxq.ServerStatus(d.Status).Known() {
			return lineEvent{}, false
		}
		return lineEvent{server: &observation{slug: d.ServerName, fromLine: true,
			st: ServerState{Status: d.Status, URL: d.URL, Error: d.Error, UpdatedAt: at}}}, true
	case tasks.EventSandboxStatusChanged:
		var d struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		if json.Unmarshal(ev.Data, &d) != nil {
			return lineEvent{}, false
		}
		switch d.Status {
		case tasks.SandboxReady, tasks.SandboxDestroyed, tasks.SandboxError:
			// created is recorded by Store.Upsert, with the sandbox id.
			return lineEvent{sandbox: &sandboxObservation{status: d.Status, err: d.Error}}, true
		}
	}
	return lineEvent{}, false
}

// every runs fn every d on a timer (no goroutine while idle) until the
// returned stop is called; when fn fails it calls failed and stops.
func every(d time.Duration, fn func() error, failed func()) (stop func()) {
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	mu.Lock()
	t = time.AfterFunc(d, func() {
		if err := fn(); err != nil {
			failed()
			return
		}
		mu.Lock()
		if !stopped {
			t.Reset(d)
		}
		mu.Unlock()
	})
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}
