package local

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/sandboxq/sandboxq/gateway"
)

// signalsChannel is the WebSocket channel signals are delivered on.
const signalsChannel = "signals"

// serveSignals handles /signals/start|stop|status and the manual emitters
// /signals/port, /signals/port/{port}/{type}, /signals/error and
// /signals/server-ready.
func (s *sandbox) serveSignals(w http.ResponseWriter, r *http.Request, rt route) {
	segs := rt.segs[1:]
	if len(segs) == 0 {
		writeDaemonError(w, http.StatusNotFound, "not found: "+r.Method+" /signals")
		return
	}
	answer := func(msg string, data any) {
		writeJSON(w, http.StatusOK, map[string]any{"message": msg, "data": data})
	}
	switch {
	case len(segs) == 1 && segs[0] == "status":
		if allowMethod(w, r, false, http.MethodGet) {
			answer("Signal service status", s.signalsStatus())
		}
	case len(segs) == 1 && (segs[0] == "start" || segs[0] == "stop"):
		if !allowMethod(w, r, false, http.MethodPost) {
			return
		}
		s.mu.Lock()
		s.signalsActive = segs[0] == "start"
		s.mu.Unlock()
		answer("Signal service "+map[bool]string{true: "started", false: "stopped"}[segs[0] == "start"], s.signalsStatus())
	case len(segs) == 1 && segs[0] == "port":
		if !allowMethod(w, r, false, http.MethodPost) {
			return
		}
		var body struct {
			Port int    `json:"port"`
			Type string `json:"type"`
			URL  string `json:"url"`
		}
		if err := decodeBody(r, &body, maxJSONBody, false); err != nil {
			writeDaemonError(w, statusOf(err), err.Error())
			return
		}
		sig, err := portSignal(body.Port, body.Type, body.URL)
		if err != nil {
			writeDaemonError(w, statusOf(err), err.Error())
			return
		}
		s.emitSignal(sig)
		answer("Port signal emitted", map[string]any{"port": sig.Port, "type": sig.Type, "url": sig.URL})
	case len(segs) == 3 && segs[0] == "port":
		if !allowMethod(w, r, false, http.MethodPost) {
			return
		}
		port, err := strconv.Atoi(segs[1])
		if err != nil {
			writeDaemonError(w, http.StatusBadRequest, fmt.Sprintf("port %q is not a number", segs[1]))
			return
		}
		sig, err := portSignal(port, segs[2], "")
		if err != nil {
			writeDaemonError(w, statusOf(err), err.Error())
			return
		}
		s.emitSignal(sig)
		answer("Port signal emitted", map[string]any{"port": sig.Port, "type": sig.Type, "url": sig.URL})
	case len(segs) == 1 && segs[0] == "error":
		if !allowMethod(w, r, false, http.MethodPost) {
			return
		}
		var body struct {
			Message string `json:"message"`
		}
		if err := decodeBody(r, &body, maxJSONBody, false); err != nil {
			writeDaemonError(w, statusOf(err), err.Error())
			return
		}
		if body.Message == "" {
			writeDaemonError(w, http.StatusBadRequest, "message is required")
			return
		}
		s.emitSignal(gateway.Signal{Signal: gateway.SignalError, Message: body.Message})
		answer("Error signal emitted", map[string]any{"message": body.Message})
	case len(segs) == 1 && segs[0] == "server-ready":
		if !allowMethod(w, r, false, http.MethodPost) {
			return
		}
		var body struct {
			Port int    `json:"port"`
			URL  string `json:"url"`
		}
		if err := decodeBody(r, &body, maxJSONBody, false); err != nil {
			writeDaemonError(w, statusOf(err), err.Error())
			return
		}
		if body.Port <= 0 || body.Port > 65535 {
			writeDaemonError(w, http.StatusBadRequest, fmt.Sprintf("port %d is outside 1-65535", body.Port))
			return
		}
		if body.URL == "" {
			body.URL = portURL(body.Port)
		}
		s.emitSignal(gateway.Signal{Signal: gateway.SignalServerReady, Port: body.Port, URL: body.URL})
		answer("Server ready signal emitted", map[string]any{"port": body.Port, "url": body.URL})
	default:
		writeDaemonError(w, http.StatusNotFound, "not found: "+r.Method+" "+rt.escaped)
	}
}

func portSignal(port int, typ, url string) (gateway.Signal, error) {
	if port <= 0 || port > 65535 {
		return gateway.Signal{}, badRequest("port %d is outside 1-65535", port)
	}
	if typ != "open" && typ != "close" {
		return gateway.Signal{}, badRequest("type %q must be open or close", typ)
	}
	if url == "" {
		url = portURL(port)
	}
	return gateway.Signal{Signal: gateway.SignalPort, Port: port, URL: url, Type: typ}, nil
}

func (s *sandbox) signalsStatus() gateway.SignalsStatus {
	s.mu.Lock()
	active := s.signalsActive
	s.mu.Unlock()
	st := gateway.SignalsStatus{Status: "stopped", Channel: signalsChannel, WSURL: "/ws"}
	if active {
		st.Status = "active"
	}
	return st
}

// emitSignal delivers a signal to the sockets subscribed to "signals",
// only while the signal service is started (POST /signals/start), as the
// daemon's monitor only runs then.
func (s *sandbox) emitSignal(sig gateway.Signal) {
	s.mu.Lock()
	active := s.signalsActive
	s.mu.Unlock()
	if !active {
		return
	}
	kv := map[string]any{"signal": sig.Signal}
	if sig.Port != 0 {
		kv["port"] = float64(sig.Port)
	}
	if sig.URL != "" {
		kv["url"] = sig.URL
	}
	if sig.Type != "" {
		kv["type"] = sig.Type
	}
	if sig.Message != "" {
		kv["message"] = sig.Message
	}
	s.broadcast(outMsg{typ: "signal", channel: signalsChannel, data: sig, kv: kv})
}
