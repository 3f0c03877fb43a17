package local

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sandboxq/sandboxq/gateway/local/internal/wsbin"
)

// WebSocket timing and limits.
const (
	wsPingPeriod = 25 * time.Second
	wsPongWait   = 60 * time.Second
	wsWriteWait  = 10 * time.Second
	wsCloseWait  = time.Second
	wsReadLimit  = 1 << 20
	wsSendQueue  = 256
)

// outMsg is a server → client message. data is its JSON form, kv its
// flat key/value form for binary frames (nil: always JSON).
type outMsg struct {
	typ, channel string
	data         any
	kv           map[string]any
}

// wsConn is one daemon WebSocket: one reader and one writer goroutine,
// both owned by the provider's background group.
type wsConn struct {
	s      *sandbox
	c      *websocket.Conn
	binary bool
	send   chan outMsg
	done   chan struct{}
	once   sync.Once

	subMu sync.Mutex
	subs  map[string]bool
}

// serveWS upgrades GET /ws?token=&protocol=json|binary (default json).
func (s *sandbox) serveWS(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r, false, http.MethodGet) {
		return
	}
	binary := false
	switch proto := r.URL.Query().Get("protocol"); proto {
	case "", "json":
	case "binary":
		binary = true
	default:
		writeDaemonError(w, http.StatusBadRequest, fmt.Sprintf("protocol %q is not json or binary", proto))
		return
	}
	up := websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		CheckOrigin:      s.p.checkOrigin,
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			writeDaemonError(w, status, "websocket: "+reason.Error())
		},
	}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	conn := &wsConn{
		s:      s,
		c:      c,
		binary: binary,
		send:   make(chan outMsg, wsSendQueue),
		done:   make(chan struct{}),
		subs:   make(map[string]bool),
	}
	s.mu.Lock()
	gone := s.destroyed
	if !gone {
		s.conns[conn] = struct{}{}
	}
	s.mu.Unlock()
	s.p.bg.Go(conn.readLoop)
	if gone {
		// Destroyed between the handshake and now: say so properly, as
		// destroy does for the sockets it found.
		conn.close()
		return
	}
	s.p.bg.Go(conn.writeLoop)
}

// checkOrigin accepts any Origin on a loopback listener; otherwise only a
// missing Origin or one whose host is the request's host.
func (p *Provider) checkOrigin(r *http.Request) bool {
	if p.loopback {
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// connList returns the sandbox's open sockets, copied under its lock.
func (s *sandbox) connList() []*wsConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns := make([]*wsConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

// broadcast queues m for every socket subscribed to its channel, or for
// every socket when the message has no channel.
func (s *sandbox) broadcast(m outMsg) {
	for _, c := range s.connList() {
		if m.channel == "" || c.subscribed(m.channel) {
			c.enqueue(m)
		}
	}
}

func (c *wsConn) subscribed(ch string) bool {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	return c.subs[ch]
}

func (c *wsConn) setSub(ch string, on bool) {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	if on {
		c.subs[ch] = true
	} else {
		delete(c.subs, ch)
	}
}

// enqueue queues m; a socket too slow to keep up is dropped.
func (c *wsConn) enqueue(m outMsg) {
	select {
	case <-c.done:
	case c.send <- m:
	default:
		c.s.p.log.Debug("websocket send queue full; dropping the connection", "sandbox_id", c.s.id)
		c.drop()
	}
}

// close starts the closing handshake: a going-away close frame, then up to
// wsCloseWait for the peer's answer, after which the reader closes the
// connection. Closing the TCP connection right after the frame could
// reset it before the peer has read the frame.
func (c *wsConn) close() {
	c.once.Do(func() {
		close(c.done)
		c.forget()
		err := c.c.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseGoingAway, "sandbox closed"),
			time.Now().Add(wsCloseWait))
		if err != nil {
			_ = c.c.NetConn().Close()
			return
		}
		_ = c.c.NetConn().SetReadDeadline(time.Now().Add(wsCloseWait))
	})
}

// drop ends the connection abruptly, without a close frame.
func (c *wsConn) drop() {
	c.once.Do(func() {
		close(c.done)
		c.forget()
		_ = c.c.NetConn().Close()
	})
}

func (c *wsConn) closing() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *wsConn) forget() {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
}

// readLoop reads until the connection fails or the closing handshake
// ends, then closes the connection.
func (c *wsConn) readLoop() {
	defer func() {
		c.drop()
		_ = c.c.Close()
	}()
	c.c.SetReadLimit(wsReadLimit)
	_ = c.c.SetReadDeadline(time.Now().Add(wsPongWait))
	c.c.SetPongHandler(func(string) error {
		if c.closing() {
			return nil
		}
		return c.c.SetReadDeadline(time.Now().Add(wsPongWait))
	})
	for {
		mt, b, err := c.c.ReadMessage()
		if err != nil {
			return
		}
		if c.closing() {
			continue // draining until the peer's close frame
		}
		_ = c.c.SetReadDeadline(time.Now().Add(wsPongWait))
		c.handle(mt, b)
	}
}

// handle applies one client message: JSON text frames in either mode,
// binary frames (wsbin) in either mode. Only subscribe and unsubscribe
// have an effect; terminal and streaming-command messages are ignored
// because the local provider has neither.
func (c *wsConn) handle(mt int, b []byte) {
	var typ, channel string
	switch mt {
	case websocket.TextMessage:
		var m struct {
			Type    string `json:"type"`
			Channel string `json:"channel"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			c.s.p.log.Debug("websocket: bad json frame", "sandbox_id", c.s.id, "err", err)
			return
		}
		typ, channel = m.Type, m.Channel
	case websocket.BinaryMessage:
		f, err := wsbin.Decode(b)
		if err != nil {
			c.s.p.log.Debug("websocket: bad binary frame", "sandbox_id", c.s.id, "err", err)
			return
		}
		channel = f.Channel
		switch f.Kind {
		case wsbin.KindSubscribe:
			typ = "subscribe"
		case wsbin.KindUnsubscribe:
			typ = "unsubscribe"
		default:
			typ = f.Type
		}
	default:
		return
	}
	switch typ {
	case "subscribe":
		if channel != "" {
			c.setSub(channel, true)
		}
	case "unsubscribe":
		c.setSub(channel, false)
	default:
		c.s.p.log.Debug("websocket: message ignored", "sandbox_id", c.s.id, "type", typ)
	}
}

func (c *wsConn) writeLoop() {
	// A failed write means the peer is gone: end the reader too.
	defer c.drop()
	ping := time.NewTicker(wsPingPeriod)
	defer ping.Stop()
	for {
		select {
		case <-c.done:
			return
		case m := <-c.send:
			mt, b, err := c.encode(m)
			if err != nil {
				c.s.p.log.Debug("websocket: encode", "sandbox_id", c.s.id, "type", m.typ, "err", err)
				continue
			}
			_ = c.c.SetWriteDeadline(time.Now().Add(wsWriteWait))
			if err := c.c.WriteMessage(mt, b); err != nil {
				return
			}
		case <-ping.C:
			if err := c.c.WriteControl(websocket.PingMessage, nil, time.Now().Add(wsWriteWait)); err != nil {
				return
			}
		}
	}
}

// encode renders m for this connection: JSON text frames on json
// connections; on binary connections a binary KV frame for the types the
// JS client decodes, a JSON text frame for the rest.
func (c *wsConn) encode(m outMsg) (int, []byte, error) {
	if c.binary && m.kv != nil && wsbin.ClientDecodesKV(m.typ) {
		payload, err := wsbin.EncodeKV(m.kv)
		if err != nil {
			return 0, nil, err
		}
		b, err := wsbin.Frame{Kind: wsbin.KindData, Channel: m.channel, Type: m.typ, Payload: payload}.Encode()
		return websocket.BinaryMessage, b, err
	}
	b, err := json.Marshal(struct {
		Type    string `json:"type"`
		Channel string `json:"channel,omitempty"`
		Data    any    `json:"data,omitempty"`
	}{m.typ, m.channel, m.data})
	return websocket.TextMessage, b, err
}
