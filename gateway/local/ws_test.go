package local

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The binary frames in these tests are built and parsed by hand from
// computesdk-protocol.md §3.3, independently of the wsbin package.

func binFrame(kind byte, channel, typ string, payload []byte) []byte {
	var b bytes.Buffer
	b.WriteByte(kind)
	_ = binary.Write(&b, binary.BigEndian, uint16(len(channel)))
	b.WriteString(channel)
	_ = binary.Write(&b, binary.BigEndian, uint16(len(typ)))
	b.WriteString(typ)
	_ = binary.Write(&b, binary.BigEndian, uint32(len(payload)))
	b.Write(payload)
	return b.Bytes()
}

type parsedFrame struct {
	kind          byte
	channel, typ  string
	kv            map[string]any
	payloadLength int
}

func parseBinFrame(b []byte) (parsedFrame, error) {
	var f parsedFrame
	r := bytes.NewReader(b)
	str16 := func() (string, error) {
		var n uint16
		if err := binary.Read(r, binary.BigEndian, &n); err != nil {
			return "", err
		}
		s := make([]byte, n)
		_, err := r.Read(s)
		if n == 0 {
			err = nil
		}
		return string(s), err
	}
	var err error
	if f.kind, err = r.ReadByte(); err != nil {
		return f, err
	}
	if f.channel, err = str16(); err != nil {
		return f, err
	}
	if f.typ, err = str16(); err != nil {
		return f, err
	}
	var plen uint32
	if err := binary.Read(r, binary.BigEndian, &plen); err != nil {
		return f, err
	}
	f.payloadLength = int(plen)
	if int(plen) != r.Len() {
		return f, fmt.Errorf("payload length %d, %d bytes left", plen, r.Len())
	}
	var count uint16
	if err := binary.Read(r, binary.BigEndian, &count); err != nil {
		return f, err
	}
	f.kv = map[string]any{}
	for range count {
		key, err := str16()
		if err != nil {
			return f, err
		}
		vt, err := r.ReadByte()
		if err != nil {
			return f, err
		}
		var vlen uint32
		if err := binary.Read(r, binary.BigEndian, &vlen); err != nil {
			return f, err
		}
		v := make([]byte, vlen)
		if _, err := r.Read(v); err != nil && vlen > 0 {
			return f, err
		}
		switch vt {
		case 1:
			f.kv[key] = string(v)
		case 2:
			if vlen != 8 {
				return f, fmt.Errorf("number %s has %d bytes", key, vlen)
			}
			f.kv[key] = math.Float64frombits(binary.BigEndian.Uint64(v))
		case 3:
			f.kv[key] = vlen == 1 && v[0] == 1
		default:
			f.kv[key] = v
		}
	}
	return f, nil
}

// emptyKV is the payload of subscribe frames: a KV block with no fields.
var emptyKV = []byte{0, 0}

// wsClient is a test WebSocket with a reader goroutine, so waits can
// time out without breaking the connection.
type wsClient struct {
	c    *websocket.Conn
	msgs chan wsRead
	stop chan struct{}
	done chan struct{}
}

type wsRead struct {
	msg wsMsg
	mt  int
	err error
}

type wsMsg struct {
	Type    string         `json:"type"`
	Channel string         `json:"channel"`
	Data    map[string]any `json:"data"`
}

func dialWS(t *testing.T, s *testSandbox, protocol string) *wsClient {
	t.Helper()
	u := "ws" + strings.TrimPrefix(s.rec.URL, "http") + "/ws?token=" + s.rec.Token + "&protocol=" + protocol
	c, res, err := websocket.DefaultDialer.DialContext(t.Context(), u, nil)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, res)
	}
	w := &wsClient{c: c, msgs: make(chan wsRead, 64), stop: make(chan struct{}), done: make(chan struct{})}
	go w.readLoop()
	t.Cleanup(func() {
		close(w.stop)
		c.Close()
		<-w.done
	})
	return w
}

func (w *wsClient) readLoop() {
	defer close(w.done)
	for {
		mt, b, err := w.c.ReadMessage()
		if err != nil {
			w.deliver(wsRead{err: err})
			return
		}
		r := wsRead{mt: mt}
		if mt == websocket.BinaryMessage {
			f, ferr := parseBinFrame(b)
			if ferr == nil && f.kind != 3 {
				ferr = fmt.Errorf("frame kind %d", f.kind)
			}
			r.msg, r.err = wsMsg{Type: f.typ, Channel: f.channel, Data: f.kv}, ferr
		} else {
			r.err = json.Unmarshal(b, &r.msg)
		}
		if r.err != nil {
			r.err = fmt.Errorf("bad frame %q: %w", b, r.err)
		}
		if !w.deliver(r) || r.err != nil {
			return
		}
	}
}

func (w *wsClient) deliver(r wsRead) bool {
	select {
	case w.msgs <- r:
		return true
	case <-w.stop:
		return false
	}
}

// next waits up to timeout for a message; ok is false on timeout.
func (w *wsClient) next(t *testing.T, timeout time.Duration) (wsRead, bool) {
	t.Helper()
	select {
	case r := <-w.msgs:
		return r, true
	case <-time.After(timeout):
		return wsRead{}, false
	}
}

func (w *wsClient) subscribe(t *testing.T, binaryMode bool, channel string) {
	t.Helper()
	w.send(t, binaryMode, "subscribe", channel)
}

func (w *wsClient) send(t *testing.T, binaryMode bool, typ, channel string) {
	t.Helper()
	var err error
	if binaryMode {
		kind := byte(1)
		if typ == "unsubscribe" {
			kind = 2
		}
		err = w.c.WriteMessage(websocket.BinaryMessage, binFrame(kind, channel, typ, emptyKV))
	} else {
		err = w.c.WriteJSON(map[string]any{"type": typ, "channel": channel})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func isSync(m wsMsg) bool {
	msg, _ := m.Data["message"].(string)
	return strings.HasPrefix(msg, "sync-")
}

// syncSignals emits marker error signals until one arrives on w, which
// proves w's subscription to "signals" is in effect. Markers still in
// flight are skipped by nextSignal.
func (w *wsClient) syncSignals(t *testing.T, s *testSandbox) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for i := 0; time.Now().Before(deadline); i++ {
		s.must(http.StatusOK, http.MethodPost, "/signals/error", map[string]any{"message": fmt.Sprintf("sync-%d", i)})
		r, ok := w.next(t, 200*time.Millisecond)
		if !ok {
			continue
		}
		if r.err != nil {
			t.Fatalf("read: %v", r.err)
		}
		if !isSync(r.msg) {
			t.Fatalf("unexpected message before sync: %+v", r.msg)
		}
		return
	}
	t.Fatal("timed out syncing signals")
}

// nextSignal returns the next message that is not a sync marker.
func (w *wsClient) nextSignal(t *testing.T) (wsMsg, int) {
	t.Helper()
	for {
		r, ok := w.next(t, waitTimeout)
		if !ok {
			t.Fatal("timed out waiting for a message")
		}
		if r.err != nil {
			t.Fatalf("read: %v", r.err)
		}
		if !isSync(r.msg) {
			return r.msg, r.mt
		}
	}
}

// closed waits for the connection to end and returns the read error.
func (w *wsClient) closed(t *testing.T) error {
	t.Helper()
	for {
		r, ok := w.next(t, waitTimeout)
		if !ok {
			t.Fatal("connection still open")
		}
		if r.err != nil {
			return r.err
		}
	}
}

func TestWebSocketProtocolFrame(t *testing.T) {
	t.Parallel()
	// The subscribe example of computesdk-protocol.md §3.3.
	want := []byte("\x01\x00\x07signals\x00\x09subscribe\x00\x00\x00\x02\x00\x00")
	if got := binFrame(1, "signals", "subscribe", emptyKV); !bytes.Equal(got, want) {
		t.Fatalf("test frame builder: %x, want %x", got, want)
	}
}

func TestWebSocketJSONSignals(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, nil)
	w := dialWS(t, s, "json")
	w.subscribe(t, false, "signals")
	st := data[map[string]string](t, s.must(http.StatusOK, http.MethodPost, "/signals/start", nil))
	if st["status"] != "active" || st["channel"] != "signals" || st["ws_url"] != "/ws" {
		t.Errorf("signals/start: %v", st)
	}
	w.syncSignals(t, s)

	r := s.must(http.StatusOK, http.MethodPost, "/signals/port/1234/open", nil)
	if d := data[map[string]any](t, r); d["port"] != 1234.0 || d["type"] != "open" || d["url"] != "http://127.0.0.1:1234" {
		t.Errorf("emit: %s", r.body)
	}
	m, mt := w.nextSignal(t)
	if mt != websocket.TextMessage || m.Type != "signal" || m.Channel != "signals" ||
		m.Data["signal"] != "port" || m.Data["port"] != 1234.0 || m.Data["type"] != "open" || m.Data["url"] != "http://127.0.0.1:1234" {
		t.Errorf("port signal: %d %+v", mt, m)
	}

	// A managed server feeds the channel: open + server-ready, then close.
	s.must(http.StatusOK, http.MethodPost, "/servers", map[string]any{
		"slug": "web", "start": helperCommand(t), "environment": map[string]string{helperEnv: "serve"},
	})
	open, _ := w.nextSignal(t)
	ready, _ := w.nextSignal(t)
	info := s.server("web")
	port := float64(info.Port)
	if open.Data["signal"] != "port" || open.Data["type"] != "open" || open.Data["port"] != port || open.Data["url"] != info.URL {
		t.Errorf("open: %+v (server %+v)", open, info)
	}
	if ready.Data["signal"] != "server-ready" || ready.Data["port"] != port || ready.Data["url"] != info.URL {
		t.Errorf("server-ready: %+v", ready)
	}
	s.must(http.StatusOK, http.MethodPost, "/servers/web/stop", nil)
	closeSig, _ := w.nextSignal(t)
	if closeSig.Data["signal"] != "port" || closeSig.Data["type"] != "close" || closeSig.Data["port"] != port {
		t.Errorf("close: %+v", closeSig)
	}
	s.must(http.StatusOK, http.MethodPost, "/servers", map[string]any{"slug": "bad", "start": "exit 7"})
	failed, _ := w.nextSignal(t)
	if msg, _ := failed.Data["message"].(string); failed.Data["signal"] != "error" || !strings.Contains(msg, "bad") || !strings.Contains(msg, "7") {
		t.Errorf("error: %+v", failed)
	}

	// Stopped signals are not delivered.
	st = data[map[string]string](t, s.must(http.StatusOK, http.MethodPost, "/signals/stop", nil))
	if st["status"] != "stopped" {
		t.Errorf("stop: %v", st)
	}
	if st := data[map[string]string](t, s.must(http.StatusOK, http.MethodGet, "/signals/status", nil)); st["status"] != "stopped" {
		t.Errorf("status: %v", st)
	}
	s.must(http.StatusOK, http.MethodPost, "/signals/error", map[string]any{"message": "lost"})
	s.must(http.StatusOK, http.MethodPost, "/signals/start", nil)
	s.must(http.StatusOK, http.MethodPost, "/signals/server-ready", map[string]any{"port": 9, "url": "http://x"})
	m, _ = w.nextSignal(t)
	if m.Data["signal"] != "server-ready" || m.Data["url"] != "http://x" {
		t.Errorf("after restart of signals got %+v, want server-ready (the stopped one must be lost)", m)
	}
	s.must(http.StatusOK, http.MethodPost, "/signals/port", map[string]any{"port": 80, "type": "close"})
	if m, _ = w.nextSignal(t); m.Data["type"] != "close" || m.Data["port"] != 80.0 {
		t.Errorf("port body signal: %+v", m)
	}
	for _, bad := range []struct {
		path string
		body any
	}{
		{"/signals/port/abc/open", nil},
		{"/signals/port/80/ajar", nil},
		{"/signals/port", map[string]any{"port": 0, "type": "open"}},
		{"/signals/error", map[string]any{}},
		{"/signals/server-ready", map[string]any{"port": -1}},
	} {
		if r := s.do(http.MethodPost, bad.path, bad.body); r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s", bad.path, r.status, r.body)
		}
	}
}

func TestWebSocketBinarySignals(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, nil)
	w := dialWS(t, s, "binary")
	w.subscribe(t, true, "signals")
	s.must(http.StatusOK, http.MethodPost, "/signals/start", nil)
	w.syncSignals(t, s)
	s.must(http.StatusOK, http.MethodPost, "/signals/port/4321/open", nil)
	m, mt := w.nextSignal(t)
	if mt != websocket.BinaryMessage || m.Type != "signal" || m.Channel != "signals" ||
		m.Data["signal"] != "port" || m.Data["port"] != 4321.0 || m.Data["type"] != "open" || m.Data["url"] != "http://127.0.0.1:4321" {
		t.Errorf("binary signal: %d %+v", mt, m)
	}
	// Unsubscribing (binary kind 2) stops delivery.
	w.send(t, true, "unsubscribe", "signals")
	waitFor(t, "unsubscribe to take effect", func() bool { return subscribers(p, s.rec.SandboxID, "signals") == 0 })
	s.must(http.StatusOK, http.MethodPost, "/signals/error", map[string]any{"message": "lost"})
	// JSON text frames are understood on binary connections too; the
	// first message after subscribing again is a marker, not "lost".
	w.send(t, false, "subscribe", "signals")
	w.syncSignals(t, s)
}

// subscribers counts the sockets of a sandbox subscribed to channel.
func subscribers(p *Provider, id, channel string) int {
	sb := p.lookup(id)
	if sb == nil {
		return 0
	}
	sb.mu.Lock()
	conns := make([]*wsConn, 0, len(sb.conns))
	for c := range sb.conns {
		conns = append(conns, c)
	}
	sb.mu.Unlock()
	n := 0
	for _, c := range conns {
		if c.subscribed(channel) {
			n++
		}
	}
	return n
}

func TestWebSocketOnlySubscribersReceive(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, nil)
	other := newSandbox(t, p, nil)
	a := dialWS(t, s, "json")
	b := dialWS(t, s, "json")
	c := dialWS(t, other, "json")
	a.subscribe(t, false, "signals")
	c.subscribe(t, false, "signals")
	s.must(http.StatusOK, http.MethodPost, "/signals/start", nil)
	other.must(http.StatusOK, http.MethodPost, "/signals/start", nil)
	a.syncSignals(t, s)
	c.syncSignals(t, other)
	s.must(http.StatusOK, http.MethodPost, "/signals/error", map[string]any{"message": "for-a"})
	if m, _ := a.nextSignal(t); m.Data["message"] != "for-a" {
		t.Fatalf("a got %+v", m)
	}
	// b was not subscribed and c belongs to another sandbox: frames are
	// ordered per socket, so if "for-a" had reached them it would come
	// before their first marker, and syncSignals would fail.
	b.subscribe(t, false, "signals")
	b.syncSignals(t, s)
	other.must(http.StatusOK, http.MethodPost, "/signals/error", map[string]any{"message": "sync-other"})
	if r, ok := c.next(t, waitTimeout); !ok || r.err != nil || !isSync(r.msg) {
		t.Fatalf("c got %+v", r)
	}
}

func TestWebSocketAuthAndClose(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, nil)
	base := "ws" + strings.TrimPrefix(s.rec.URL, "http") + "/ws"
	for _, c := range []struct {
		query string
		want  int
	}{
		{"?protocol=json", http.StatusUnauthorized},
		{"?protocol=json&token=wrong", http.StatusUnauthorized},
		{"?protocol=xml&token=" + s.rec.Token, http.StatusBadRequest},
	} {
		_, res, err := websocket.DefaultDialer.DialContext(t.Context(), base+c.query, nil)
		if err == nil || res == nil || res.StatusCode != c.want {
			t.Errorf("%s: err %v, response %v", strings.ReplaceAll(c.query, s.rec.Token, "TOKEN"), err, res)
		}
	}
	// Bearer header works for the upgrade too.
	hdr := http.Header{"Authorization": {"Bearer " + s.rec.Token}}
	conn, _, err := websocket.DefaultDialer.DialContext(t.Context(), base+"?protocol=json", hdr)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()

	w := dialWS(t, s, "json")
	gw(t, p, http.MethodDelete, "/v1/sandboxes/"+s.rec.SandboxID, nil)
	err = w.closed(t)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Errorf("after destroy: %v", err)
	}
}

func TestDropWebSocketsFault(t *testing.T) {
	t.Parallel()
	p := startProvider(t, Config{})
	s := newSandbox(t, p, nil)
	w := dialWS(t, s, "json")
	if err := p.SetFaults(Faults{DropWebSocketsEvery: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	err := w.closed(t)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseAbnormalClosure {
		t.Errorf("dropped connection: %v, want an abnormal closure (no close frame)", err)
	}
	// Clients reconnect, and are dropped again.
	w2 := dialWS(t, s, "json")
	if err := w2.closed(t); !errors.As(err, &ce) || ce.Code != websocket.CloseAbnormalClosure {
		t.Errorf("second connection: %v", err)
	}
	if err := p.SetFaults(Faults{}); err != nil {
		t.Fatal(err)
	}
}

func TestCheckOrigin(t *testing.T) {
	t.Parallel()
	req := func(host, origin string) *http.Request {
		r, _ := http.NewRequest(http.MethodGet, "http://"+host+"/s/x/ws", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		return r
	}
	loop := &Provider{loopback: true}
	if !loop.checkOrigin(req("127.0.0.1:1", "https://evil.example")) {
		t.Error("loopback provider refused an origin")
	}
	remote := &Provider{}
	for _, c := range []struct {
		host, origin string
		want         bool
	}{
		{"10.0.0.1:8787", "", true},
		{"10.0.0.1:8787", "http://10.0.0.1:8787", true},
		{"10.0.0.1:8787", "https://evil.example", false},
		{"10.0.0.1:8787", "http://10.0.0.1:9999", false},
	} {
		if got := remote.checkOrigin(req(c.host, c.origin)); got != c.want {
			t.Errorf("host %s origin %q: %v, want %v", c.host, c.origin, got, c.want)
		}
	}
}
