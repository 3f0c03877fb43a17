package local

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sandboxq/sandboxq/internal/backoff"
)

// maxJSONBody bounds request bodies that are not file contents.
const maxJSONBody = 1 << 20

// reqInfo is filled in by handlers so the observation can name the sandbox.
type reqInfo struct {
	sandboxID, namespace, name string
}

type reqInfoKey struct{}

func infoFrom(ctx context.Context) *reqInfo {
	if ri, ok := ctx.Value(reqInfoKey{}).(*reqInfo); ok {
		return ri
	}
	return &reqInfo{}
}

func (ri *reqInfo) setSandbox(s *sandbox) {
	ri.sandboxID, ri.namespace, ri.name = s.id, s.namespace, s.name
}

// statusWriter records the status code and lets gorilla hijack the
// connection.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("response writer cannot hijack")
	}
	c, rw, err := h.Hijack()
	if err == nil {
		w.status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// serveHTTP is the single entry point: it applies fault injection, routes
// on the escaped path (never cleaned, so /files//abs/path survives) and
// reports the observation.
func (p *Provider) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !p.enter() {
		writeDaemonError(w, http.StatusServiceUnavailable, "local provider is closing")
		return
	}
	defer p.inflight.Done()

	start := time.Now()
	ri := &reqInfo{}
	r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, ri))
	sw := &statusWriter{ResponseWriter: w}
	path := r.URL.EscapedPath()
	injected := false

	defer func() {
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		end := time.Now()
		p.log.Debug("request",
			slog.String("method", r.Method),
			slog.String("path", path), // never the query: it may carry a token
			slog.Int("status", status),
			slog.Duration("duration", end.Sub(start)),
			slog.String("sandbox_id", ri.sandboxID),
			slog.Bool("injected", injected))
		if p.observe != nil {
			p.observe(Observation{
				SandboxID: ri.sandboxID,
				Namespace: ri.namespace,
				Name:      ri.name,
				Method:    r.Method,
				Path:      path,
				Status:    status,
				Start:     start,
				End:       end,
				Mutating:  r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions,
				Injected:  injected,
			})
		}
	}()

	var scope string
	switch {
	case path == "/v1" || strings.HasPrefix(path, "/v1/"):
		scope = ScopeGateway
	case strings.HasPrefix(path, "/s/"):
		scope = ScopeDaemon
	default:
		writeDaemonError(sw, http.StatusNotFound, "not found: "+r.Method+" "+path)
		return
	}

	f := p.faults.snapshot()
	_ = backoff.Sleep(r.Context(), f.Latency)
	if r.Context().Err() != nil {
		writeDaemonError(sw, http.StatusServiceUnavailable, "request cancelled")
		return
	}
	if !faultExempt(scope, r.Method, path) {
		if rule, ok := p.faults.pick(scope, r.Method, path); ok {
			injected = true
			writeFault(sw, scope, rule)
			return
		}
	}

	if scope == ScopeGateway {
		p.serveGateway(sw, r, path)
		return
	}
	p.serveDaemon(sw, r, path)
}

// faultExempt reports whether a request never gets an injected error: the
// daemon's GET /health. Clients poll it a bounded number of times right
// after create/find (the JS SDK: 30 tries) to decide whether the sandbox
// came up at all; random failures there turn a retryable fault into a
// failed create in the client instead of exercising the caller's retries.
func faultExempt(scope, method, path string) bool {
	if scope != ScopeDaemon || method != http.MethodGet {
		return false
	}
	rest := strings.TrimPrefix(path, "/s/")
	_, tail, _ := strings.Cut(rest, "/")
	return tail == "health"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeGatewayError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Success bool   `json:"success"`
		Error   string `json:"error"`
	}{false, msg})
}

func writeDaemonError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"error": msg})
}

// decodeBody decodes a JSON request body into v. An empty body leaves v
// as it is when allowEmpty is set.
func decodeBody(r *http.Request, v any, limit int64, allowEmpty bool) error {
	body := http.MaxBytesReader(nil, r.Body, limit)
	b, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", limit)}
		}
		return &httpError{http.StatusBadRequest, "read request body: " + err.Error()}
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		if allowEmpty {
			return nil
		}
		return &httpError{http.StatusBadRequest, "request body is empty; expected a JSON object"}
	}
	if err := json.Unmarshal(b, v); err != nil {
		return &httpError{http.StatusBadRequest, "invalid JSON body: " + err.Error()}
	}
	return nil
}

// httpError is an error with the status it should be answered with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &httpError{http.StatusNotFound, fmt.Sprintf(format, args...)}
}

// statusOf maps an error to an HTTP status: httpError carries its own,
// path problems are 400, everything else 500.
func statusOf(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.status
	}
	var pe *pathError
	if errors.As(err, &pe) {
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}
