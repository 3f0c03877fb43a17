package local

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/gateway"
)

// daemonVersion is reported by GET /info.
const daemonVersion = "sandboxq-local"

// route is a parsed daemon request: the sandbox, the escaped path after
// /s/<id> and its unescaped segments.
type route struct {
	s       *sandbox
	escaped string   // e.g. "/files//tmp/a.txt"
	segs    []string // unescaped, e.g. ["servers", "web", "logs"]
}

// serveDaemon handles /s/<sandboxId>/...
func (p *Provider) serveDaemon(w http.ResponseWriter, r *http.Request, path string) {
	rest := strings.TrimPrefix(path, "/s/")
	id, tail, _ := strings.Cut(rest, "/")
	s := p.lookup(id)
	if s == nil {
		writeDaemonError(w, http.StatusNotFound, "sandbox not found")
		return
	}
	infoFrom(r.Context()).setSandbox(s)
	if !s.authorized(r) {
		writeDaemonError(w, http.StatusUnauthorized, "missing or invalid sandbox token (use Authorization: Bearer <token> or ?token=)")
		return
	}
	rt := route{s: s, escaped: "/" + tail}
	for _, seg := range strings.Split(tail, "/") {
		u, err := url.PathUnescape(seg)
		if err != nil {
			writeDaemonError(w, http.StatusBadRequest, fmt.Sprintf("bad path segment %q", seg))
			return
		}
		rt.segs = append(rt.segs, u)
	}
	if len(rt.segs) == 1 && rt.segs[0] == "" {
		rt.segs = nil
	}
	if len(rt.segs) == 0 {
		writeDaemonError(w, http.StatusNotFound, "not found: "+r.Method+" /")
		return
	}
	switch rt.segs[0] {
	case "health":
		if len(rt.segs) == 1 && allowMethod(w, r, false, http.MethodGet, http.MethodHead) {
			writeJSON(w, http.StatusOK, gateway.Health{Status: "ok", Timestamp: time.Now().UTC().Format(time.RFC3339)})
		}
		return
	case "ready":
		if len(rt.segs) == 1 && allowMethod(w, r, false, http.MethodGet) {
			s.handleReady(w)
		}
		return
	case "info":
		if len(rt.segs) == 1 && allowMethod(w, r, false, http.MethodGet) {
			writeJSON(w, http.StatusOK, map[string]any{"message": "Sandbox info", "data": map[string]any{
				"auth_enabled":   true,
				"main_subdomain": s.id,
				"sandbox_count":  1,
				"sandbox_url":    s.url,
				"version":        daemonVersion,
			}})
		}
		return
	case "servers":
		s.serveServers(w, r, rt)
		return
	case "files":
		s.serveFiles(w, r, rt)
		return
	case "run":
		if len(rt.segs) == 2 && rt.segs[1] == "command" && allowMethod(w, r, false, http.MethodPost) {
			s.runCommandHTTP(w, r, false)
			return
		}
	case "execute":
		if len(rt.segs) == 1 && allowMethod(w, r, false, http.MethodPost) {
			s.runCommandHTTP(w, r, true)
			return
		}
	case "env":
		if len(rt.segs) == 1 {
			s.serveEnv(w, r)
			return
		}
	case "signals":
		s.serveSignals(w, r, rt)
		return
	case "ws":
		if len(rt.segs) == 1 {
			s.serveWS(w, r)
			return
		}
	}
	writeDaemonError(w, http.StatusNotFound, "not found: "+r.Method+" "+rt.escaped)
}

// authorized accepts the sandbox token as a Bearer header or ?token=.
func (s *sandbox) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || got == "" {
		got = r.URL.Query().Get("token")
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(s.token.Reveal())) == 1
}

// readyServer is one entry of GET /ready.
type readyServer struct {
	Slug        string         `json:"slug"`
	Port        int            `json:"port,omitempty"`
	URL         string         `json:"url,omitempty"`
	Status      string         `json:"status"`
	Healthy     *bool          `json:"healthy,omitempty"`
	HealthCheck *readyHealthCk `json:"health_check,omitempty"`
}

type readyHealthCk struct {
	LastCheck           *time.Time `json:"last_check,omitempty"`
	LastStatus          int        `json:"last_status,omitempty"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
}

// handleReady answers GET /ready: ready when every server that is not
// stopped is ready; healthy (present only when some server has a health
// check) when every checked server passes.
func (s *sandbox) handleReady(w http.ResponseWriter) {
	infos := s.serverInfos()
	ready := true
	var healthy *bool
	servers := make([]readyServer, 0, len(infos))
	for _, in := range infos {
		if in.Status != sandboxq.ServerStopped && in.Status != sandboxq.ServerReady {
			ready = false
		}
		rs := readyServer{Slug: in.Slug, Port: in.Port, URL: in.URL, Status: in.Status, Healthy: in.Healthy}
		if in.HealthStatus != nil {
			rs.HealthCheck = &readyHealthCk{
				LastCheck:           in.HealthStatus.LastCheck,
				LastStatus:          in.HealthStatus.LastStatus,
				ConsecutiveFailures: in.HealthStatus.ConsecutiveFailures,
			}
			h := in.Healthy != nil && *in.Healthy
			if healthy == nil {
				healthy = &h
			} else if !h {
				*healthy = false
			}
		}
		servers = append(servers, rs)
	}
	body := map[string]any{
		"ready":    ready,
		"servers":  servers,
		"overlays": []any{},
	}
	if healthy != nil {
		body["healthy"] = *healthy
	}
	writeJSON(w, http.StatusOK, body)
}
