package local

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode"

	"github.com/sandboxq/sandboxq/gateway"
)

// defaultNamespace is the namespace of a named sandbox when none is given.
const defaultNamespace = "default"

// maxIdentity is the longest namespace or name accepted.
const maxIdentity = 128

// createBody is CreateOptions plus the inline servers the v2 client may
// send.
type createBody struct {
	gateway.CreateOptions
	Servers []serverStartBody `json:"servers,omitempty"`
}

// serveGateway handles /v1/sandbox... and /v1/sandboxes...
func (p *Provider) serveGateway(w http.ResponseWriter, r *http.Request, path string) {
	if !p.gatewayAuthorized(r) {
		writeGatewayError(w, http.StatusUnauthorized, "invalid or missing X-ComputeSDK-API-Key")
		return
	}
	var rest string
	switch {
	case path == "/v1/sandboxes" || strings.HasPrefix(path, "/v1/sandboxes/"):
		rest = strings.TrimPrefix(path, "/v1/sandboxes")
	case path == "/v1/sandbox" || strings.HasPrefix(path, "/v1/sandbox/"):
		rest = strings.TrimPrefix(path, "/v1/sandbox")
	default:
		writeGatewayError(w, http.StatusNotFound, "not found")
		return
	}
	rest = strings.TrimPrefix(rest, "/")
	segs := strings.Split(rest, "/")
	if rest == "" {
		segs = nil
	}
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil {
			writeGatewayError(w, http.StatusBadRequest, fmt.Sprintf("bad path segment %q", s))
			return
		}
		segs[i] = u
	}
	switch {
	case len(segs) == 0:
		if !allowMethod(w, r, true, http.MethodPost) {
			return
		}
		p.gwCreate(w, r)
	case len(segs) == 1 && segs[0] == "find-or-create" && r.Method == http.MethodPost:
		p.gwFind(w, r, true)
	case len(segs) == 1 && segs[0] == "find" && r.Method == http.MethodPost:
		p.gwFind(w, r, false)
	case len(segs) == 1:
		if !allowMethod(w, r, true, http.MethodGet, http.MethodDelete) {
			return
		}
		if r.Method == http.MethodGet {
			p.gwGet(w, r, segs[0])
		} else {
			p.gwDelete(w, r, segs[0])
		}
	case len(segs) == 2 && segs[1] == "extend":
		if !allowMethod(w, r, true, http.MethodPost) {
			return
		}
		p.gwExtend(w, r, segs[0])
	default:
		writeGatewayError(w, http.StatusNotFound, "not found")
	}
}

func (p *Provider) gatewayAuthorized(r *http.Request) bool {
	got := r.Header.Get("X-ComputeSDK-API-Key")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(p.apiKey.Reveal())) == 1
}

// allowMethod answers 405 unless r.Method is one of methods.
func allowMethod(w http.ResponseWriter, r *http.Request, gatewayStyle bool, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	msg := fmt.Sprintf("method %s not allowed; use %s", r.Method, strings.Join(methods, " or "))
	if gatewayStyle {
		writeGatewayError(w, http.StatusMethodNotAllowed, msg)
	} else {
		writeDaemonError(w, http.StatusMethodNotAllowed, msg)
	}
	return false
}

func writeGatewayData(w http.ResponseWriter, status int, data any) {
	writeJSON(w, status, map[string]any{"success": true, "data": data})
}

func (p *Provider) gwCreate(w http.ResponseWriter, r *http.Request) {
	var body createBody
	if err := decodeBody(r, &body, maxJSONBody, true); err != nil {
		writeGatewayError(w, statusOf(err), err.Error())
		return
	}
	// A create that names the sandbox is find-or-create: (namespace, name)
	// identifies at most one sandbox.
	if body.Name != "" {
		s, _, err := p.findOrCreate(body, true)
		p.answerRecord(w, r, s, err)
		return
	}
	if body.Namespace != "" {
		if err := validateIdentity("namespace", body.Namespace); err != nil {
			writeGatewayError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	p.mu.Lock()
	s, err := p.newSandbox(body.Namespace, "", body.CreateOptions)
	if err == nil {
		p.sandboxes[s.id] = s
	}
	p.mu.Unlock()
	if err == nil {
		p.startInitialServers(s, body.Servers)
	}
	p.answerRecord(w, r, s, err)
}

func (p *Provider) answerRecord(w http.ResponseWriter, r *http.Request, s *sandbox, err error) {
	if err != nil {
		writeGatewayError(w, statusOf(err), err.Error())
		return
	}
	if s == nil {
		writeGatewayData(w, http.StatusOK, nil)
		return
	}
	infoFrom(r.Context()).setSandbox(s)
	rec := s.record()
	rec.Servers = s.serverInfos()
	writeGatewayData(w, http.StatusOK, rec)
}

func (p *Provider) gwFind(w http.ResponseWriter, r *http.Request, create bool) {
	var body createBody
	if err := decodeBody(r, &body, maxJSONBody, false); err != nil {
		writeGatewayError(w, statusOf(err), err.Error())
		return
	}
	s, _, err := p.findOrCreate(body, create)
	p.answerRecord(w, r, s, err)
}

// findOrCreate looks up (namespace, name) and, when create is set and it
// is missing, creates it. The provider lock is held across the lookup and
// the creation, so concurrent calls for one key create exactly one sandbox.
func (p *Provider) findOrCreate(body createBody, create bool) (*sandbox, bool, error) {
	ns := body.Namespace
	if ns == "" {
		ns = defaultNamespace
	}
	if err := validateIdentity("namespace", ns); err != nil {
		return nil, false, err
	}
	if err := validateIdentity("name", body.Name); err != nil {
		return nil, false, err
	}
	key := nameKey{ns, body.Name}
	p.mu.Lock()
	if s := p.byName[key]; s != nil {
		p.mu.Unlock()
		return s, false, nil
	}
	if !create {
		p.mu.Unlock()
		return nil, false, nil
	}
	s, err := p.newSandbox(ns, body.Name, body.CreateOptions)
	if err != nil {
		p.mu.Unlock()
		return nil, false, err
	}
	p.sandboxes[s.id] = s
	p.byName[key] = s
	p.mu.Unlock()
	p.startInitialServers(s, body.Servers)
	return s, true, nil
}

// validateIdentity checks a namespace or name: 1–128 characters, no
// whitespace, control characters, '{' or '}'.
func validateIdentity(field, v string) error {
	if v == "" {
		return badRequest("%s is required", field)
	}
	if len(v) > maxIdentity {
		return badRequest("%s is longer than %d characters", field, maxIdentity)
	}
	for _, c := range v {
		if unicode.IsSpace(c) || unicode.IsControl(c) || c == '{' || c == '}' || c == unicode.ReplacementChar {
			return badRequest("%s %q contains a forbidden character %q (no whitespace, control characters, '{' or '}')", field, v, c)
		}
	}
	return nil
}

func (p *Provider) gwGet(w http.ResponseWriter, r *http.Request, id string) {
	s := p.lookup(id)
	if s == nil {
		writeGatewayError(w, http.StatusNotFound, "not found")
		return
	}
	p.answerRecord(w, r, s, nil)
}

func (p *Provider) gwDelete(w http.ResponseWriter, r *http.Request, id string) {
	if s := p.lookup(id); s != nil {
		infoFrom(r.Context()).setSandbox(s)
	}
	found, err := p.destroySandbox(id)
	if !found {
		writeGatewayError(w, http.StatusNotFound, "not found")
		return
	}
	if err != nil {
		// The sandbox is gone from the gateway either way; report what
		// could not be cleaned up.
		p.log.Warn("destroy sandbox", "sandbox_id", id, "err", err)
		writeGatewayError(w, http.StatusInternalServerError, "destroy: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true})
}

func (p *Provider) gwExtend(w http.ResponseWriter, r *http.Request, id string) {
	s := p.lookup(id)
	if s == nil {
		writeGatewayError(w, http.StatusNotFound, "not found")
		return
	}
	infoFrom(r.Context()).setSandbox(s)
	var body struct {
		Duration *int64 `json:"duration"`
	}
	if err := decodeBody(r, &body, maxJSONBody, true); err != nil {
		writeGatewayError(w, statusOf(err), err.Error())
		return
	}
	if body.Duration != nil && *body.Duration < 0 {
		writeGatewayError(w, http.StatusBadRequest, "duration must not be negative")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true})
}
