package local

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Events pub/sub (computesdk-protocol.md §4.2): a loopback TCP listener of
// its own. A client sends "SUBSCRIBE <sandboxId> <token>\r\n" with the
// sandbox's token as access token and gets "+OK\r\n" or "-ERR <reason>\r\n";
// then one SandboxEvent JSON per line. "PING" is answered "+PONG",
// "UNSUBSCRIBE" (or QUIT) ends the connection.
//
// Emitted events: server.status_changed {serverName, status, url?, error?}
// whenever a managed server's status (or url) changes, and
// sandbox.status_changed {status:"destroyed"} when the sandbox goes away,
// after which the sandbox's subscribers are disconnected. A subscriber that
// does not keep up (eventsQueue lines behind) is disconnected; like the
// real service there is no replay, so clients resync by other means.

const (
	eventsQueue        = 256
	eventsLineMax      = 4 << 10
	eventsHandshake    = 10 * time.Second
	eventsWriteTimeout = 10 * time.Second
)

// eventServerData is the data of server.status_changed.
type eventServerData struct {
	ServerName string `json:"serverName"`
	Status     string `json:"status"`
	URL        string `json:"url,omitempty"`
	Error      string `json:"error,omitempty"`
}

type eventSandboxData struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// sandboxEvent is a SandboxEvent of the protocol.
type sandboxEvent struct {
	ID          string `json:"id"`
	SandboxID   string `json:"sandboxId"`
	WorkspaceID int    `json:"workspaceId"`
	Type        string `json:"type"`
	Data        any    `json:"data"`
	Timestamp   int64  `json:"timestamp"`
}

type eventsHub struct {
	p    *Provider
	ln   net.Listener
	seq  atomic.Uint64
	mu   sync.Mutex
	subs map[string]map[*eventSub]struct{} // by sandbox id
	open map[net.Conn]struct{}             // every accepted connection
	done bool
}

type eventSub struct {
	conn      net.Conn
	out       chan []byte // a nil line means: close after what came before
	closed    chan struct{}
	closeOnce sync.Once
}

func (e *eventSub) close() {
	e.closeOnce.Do(func() {
		close(e.closed)
		_ = e.conn.Close()
	})
}

func newEventsHub(p *Provider, ln net.Listener) *eventsHub {
	return &eventsHub{p: p, ln: ln, subs: map[string]map[*eventSub]struct{}{}, open: map[net.Conn]struct{}{}}
}

// EventsAddr is the host:port of the events pub/sub listener.
func (p *Provider) EventsAddr() string { return p.events.ln.Addr().String() }

func (h *eventsHub) acceptLoop() {
	for {
		c, err := h.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		h.mu.Lock()
		if h.done {
			h.mu.Unlock()
			_ = c.Close()
			return
		}
		h.open[c] = struct{}{}
		h.mu.Unlock()
		h.p.bg.Go(func() { h.serve(c) })
	}
}

func (h *eventsHub) forget(c net.Conn) {
	h.mu.Lock()
	delete(h.open, c)
	h.mu.Unlock()
}

// serve runs one connection: the SUBSCRIBE handshake, then a writer
// goroutine for events and this reader for PING and UNSUBSCRIBE.
func (h *eventsHub) serve(c net.Conn) {
	defer h.forget(c)
	sub := &eventSub{conn: c, out: make(chan []byte, eventsQueue), closed: make(chan struct{})}
	defer sub.close()
	r := bufio.NewReaderSize(c, 512)
	_ = c.SetDeadline(time.Now().Add(eventsHandshake))
	line, err := readLine(r)
	if err != nil {
		return
	}
	sid, reason := h.authorize(line)
	if reason != "" {
		_, _ = c.Write([]byte("-ERR " + reason + "\r\n"))
		return
	}
	if _, err := c.Write([]byte("+OK\r\n")); err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	if !h.add(sid, sub) {
		return
	}
	defer h.remove(sid, sub)
	h.p.bg.Go(func() { h.write(sub) })
	for {
		line, err := readLine(r)
		if err != nil {
			return
		}
		cmd, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch strings.ToUpper(cmd) {
		case "PING":
			if !h.enqueue(sub, []byte("+PONG\r\n")) {
				return
			}
		case "UNSUBSCRIBE", "QUIT":
			h.enqueue(sub, nil)
			return
		}
	}
}

// readLine reads one \n-terminated line of at most eventsLineMax bytes.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > eventsLineMax {
			return "", errors.New("line too long")
		}
		if err == nil {
			return strings.TrimRight(string(b), "\r\n"), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
}

// authorize checks "SUBSCRIBE <sandboxId> <token>" and returns the sandbox
// id, or a reason to refuse that names neither the token nor its value.
func (h *eventsHub) authorize(line string) (string, string) {
	f := strings.Fields(line)
	if len(f) != 3 || !strings.EqualFold(f[0], "SUBSCRIBE") {
		return "", "expected SUBSCRIBE <sandboxId> <accessToken>"
	}
	s := h.p.lookup(f[1])
	if s == nil {
		return "", "unauthorized"
	}
	if subtle.ConstantTimeCompare([]byte(f[2]), []byte(s.token.Reveal())) != 1 {
		return "", "unauthorized"
	}
	s.mu.Lock()
	gone := s.destroyed
	s.mu.Unlock()
	if gone {
		return "", "unauthorized"
	}
	return f[1], ""
}

func (h *eventsHub) add(sid string, sub *eventSub) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.done {
		return false
	}
	m := h.subs[sid]
	if m == nil {
		m = map[*eventSub]struct{}{}
		h.subs[sid] = m
	}
	m[sub] = struct{}{}
	return true
}

func (h *eventsHub) remove(sid string, sub *eventSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m := h.subs[sid]; m != nil {
		delete(m, sub)
		if len(m) == 0 {
			delete(h.subs, sid)
		}
	}
}

// enqueue queues a line without blocking; a full queue disconnects the
// subscriber.
func (h *eventsHub) enqueue(sub *eventSub, line []byte) bool {
	select {
	case sub.out <- line:
		return true
	default:
		sub.close()
		return false
	}
}

func (h *eventsHub) write(sub *eventSub) {
	defer sub.close()
	for {
		select {
		case line := <-sub.out:
			if line == nil {
				return
			}
			_ = sub.conn.SetWriteDeadline(time.Now().Add(eventsWriteTimeout))
			if _, err := sub.conn.Write(line); err != nil {
				return
			}
		case <-sub.closed:
			return
		case <-h.p.ctx.Done():
			return
		}
	}
}

// publish sends an event to the sandbox's subscribers; last closes them
// after it.
func (h *eventsHub) publish(sid, typ string, data any, at time.Time, last bool) {
	if h == nil {
		return
	}
	h.mu.Lock()
	subs := make([]*eventSub, 0, len(h.subs[sid]))
	for s := range h.subs[sid] {
		subs = append(subs, s)
	}
	if last {
		delete(h.subs, sid)
	}
	h.mu.Unlock()
	if len(subs) == 0 {
		return
	}
	b, err := json.Marshal(sandboxEvent{
		ID: "evt_" + strconv.FormatUint(h.seq.Add(1), 10), SandboxID: sid,
		Type: typ, Data: data, Timestamp: at.UnixMilli(),
	})
	if err != nil || bytes.ContainsAny(b, "\r\n") {
		return
	}
	b = append(b, '\r', '\n')
	for _, s := range subs {
		if h.enqueue(s, b) && last {
			h.enqueue(s, nil)
		}
	}
}

func (h *eventsHub) serverStatus(sid, slug, status, url, errMsg string, at time.Time) {
	h.publish(sid, "server.status_changed", eventServerData{ServerName: slug, Status: status, URL: url, Error: errMsg}, at, false)
}

func (h *eventsHub) sandboxDestroyed(sid string) {
	h.publish(sid, "sandbox.status_changed", eventSandboxData{Status: "destroyed"}, time.Now(), true)
}

// close stops accepting and drops every connection; the goroutines end
// on their own (the provider's bg group waits for them).
func (h *eventsHub) close() {
	h.mu.Lock()
	h.done = true
	conns := make([]net.Conn, 0, len(h.open))
	for c := range h.open {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	_ = h.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
}
