package worker

import (
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sandboxq/sandboxq/api"
	"github.com/sandboxq/sandboxq/dashboard"
	"github.com/sandboxq/sandboxq/internal/access"
)

// httpLimits are the HTTP server's timeouts and limits (serveHTTP).
type httpLimits struct {
	// readHeader bounds reading a request's header, from the first byte
	// of a new connection.
	readHeader time.Duration
	// idle is how long a keep-alive connection may wait for its next
	// request.
	idle time.Duration
	// body is how long a request may take to deliver its body.
	body time.Duration
	// maxHeader caps a request header in bytes.
	maxHeader int
}

// defaultLimits close a connection that sends nothing useful within 15 s.
// There is no write timeout: event streams and long polls end themselves
// (api.Config.MaxStream, MaxWait, a deadline per stream write).
var defaultLimits = httpLimits{readHeader: 10 * time.Second, idle: 15 * time.Second, body: 15 * time.Second, maxHeader: 64 << 10}

// loopbackHosts are the Host names a loopback listener answers to without
// configuration (any port).
var loopbackHosts = []string{"localhost", "127.0.0.1", "::1"}

// EnvAllowedHosts and EnvAllowedOrigins name the cmd/worker variables of
// HTTPConfig.AllowedHosts and HTTPConfig.AllowedOrigins; errors and 403
// answers name them so an operator knows what to set.
const (
	EnvAllowedHosts   = "SANDBOXQ_ALLOWED_HOSTS"
	EnvAllowedOrigins = "API_ALLOWED_ORIGINS"
)

// guard is the protection every HTTP route of the worker goes through (the
// listener and Handler alike):
//
//   - the Host header must name this server (DNS rebinding): loopback names
//     plus AllowedHosts; /healthz is exempt so probes by IP keep working;
//   - state-changing requests must be same-origin or come from a trusted
//     origin (http.CrossOriginProtection), which also answers the CORS
//     preflight of trusted origins;
//   - a POST, PUT or PATCH with a body must be application/json, so a
//     "simple" cross-site request (text/plain, no preflight) never reaches
//     a handler.
type guard struct {
	hosts   map[string]bool // host without port, lower case
	origins map[string]bool
	cop     *http.CrossOriginProtection
	next    http.Handler
}

// newGuard wraps next with the protection of cfg.
//
// An AllowedHosts entry is one exact host, matched case-insensitively: a
// DNS name of letters, digits, '-' and '.' (a trailing dot is dropped), an
// IPv4 literal, or an IPv6 literal (bare or in brackets), optionally
// followed by :port, which is ignored (the Host header is matched without
// its port). Anything else, wildcards such as "*" or "*.example.com"
// included, is refused at start-up: a pattern would otherwise match only
// the literal host of that name and lock everyone out silently.
//
// An AllowedOrigins entry is scheme://host[:port] with the host as above
// and nothing after it; the Origin header must match it exactly.
func newGuard(cfg HTTPConfig, next http.Handler) (*guard, error) {
	g := &guard{hosts: map[string]bool{}, origins: map[string]bool{}, cop: http.NewCrossOriginProtection(), next: next}
	for _, h := range loopbackHosts {
		g.hosts[h] = true
	}
	for _, h := range cfg.AllowedHosts {
		if strings.TrimSpace(h) == "" {
			continue // "a,,b" or a trailing comma
		}
		name, ok := hostEntry(strings.TrimSpace(h))
		if !ok {
			return nil, fmt.Errorf("worker: %s entry %q is not a host name or IP address (want letters, digits, '-' and '.', or an IP literal, IPv6 in brackets, optionally with :port); wildcards are not supported", EnvAllowedHosts, h)
		}
		g.hosts[name] = true
	}
	for _, o := range cfg.AllowedOrigins {
		if o = strings.TrimSpace(o); o == "" {
			continue
		}
		if err := g.addOrigin(o); err != nil {
			return nil, fmt.Errorf("worker: %s entry %q: want scheme://host[:port] such as https://app.example.com; wildcards are not supported (%v)", EnvAllowedOrigins, o, err)
		}
	}
	return g, nil
}

// addOrigin trusts origin o after checking its host as hostEntry does.
func (g *guard) addOrigin(o string) error {
	if err := g.cop.AddTrustedOrigin(o); err != nil {
		return err
	}
	u, err := url.Parse(o)
	if err != nil {
		return err
	}
	if u.User != nil || u.Opaque != "" {
		return errors.New("only scheme://host[:port] is allowed")
	}
	if _, ok := hostEntry(u.Host); !ok {
		return fmt.Errorf("host %q is not a host name or IP address", u.Host)
	}
	g.origins[o] = true
	return nil
}

// hostEntry checks one host[:port] entry (see newGuard) and returns the
// host as the guard matches it: lower case, without port, brackets or
// trailing dot.
func hostEntry(entry string) (string, bool) {
	host, ok := stripPort(entry)
	if !ok {
		return "", false
	}
	ip, err := netip.ParseAddr(host)
	bracketed := strings.HasPrefix(entry, "[")
	switch {
	case err == nil && ip.Zone() == "" && (!bracketed || ip.Is6()):
		return hostName(host), true
	case bracketed || err == nil:
		return "", false // brackets are for IPv6 literals only; no zones
	}
	name := strings.TrimSuffix(host, ".")
	if name == "" || len(name) > 253 || slices.ContainsFunc(strings.Split(name, "."), badLabel) {
		return "", false
	}
	return strings.ToLower(name), true
}

// stripPort returns entry without its ":port" (which must be a valid port)
// or, for a bracketed IPv6 literal without a port, without its brackets.
func stripPort(entry string) (string, bool) {
	if h, port, err := net.SplitHostPort(entry); err == nil {
		n, perr := strconv.Atoi(port)
		return h, perr == nil && n >= 1 && n <= 65535
	}
	if strings.HasPrefix(entry, "[") && strings.HasSuffix(entry, "]") {
		return entry[1 : len(entry)-1], true
	}
	return entry, true
}

// badLabel reports whether label cannot be a label of a DNS name: empty,
// over 63 bytes, starting or ending with '-', or holding anything but
// ASCII letters, digits and '-'.
func badLabel(label string) bool {
	if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
		return true
	}
	for _, r := range label {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return true
		}
	}
	return false
}

// checkListen refuses a non-loopback listen address without AllowedHosts:
// such a server is reached under a name only the operator knows, and
// without the list a rebinding name would be accepted.
// It also checks the AllowedHosts and AllowedOrigins entries.
func checkListen(cfg HTTPConfig) error {
	if _, err := newGuard(cfg, nil); err != nil {
		return err
	}
	if loopback, err := access.LoopbackAddr(cfg.Addr); cfg.Addr == "" || (err == nil && loopback) {
		return nil
	}
	if !slices.ContainsFunc(cfg.AllowedHosts, func(h string) bool { return strings.TrimSpace(h) != "" }) {
		return fmt.Errorf("worker: HTTP address %q is not a loopback address: set %s to the host names clients use to reach it (and set dashboard credentials and API tokens)", cfg.Addr, EnvAllowedHosts)
	}
	return nil
}

// validate checks everything about the HTTP settings that needs no
// connection: the listen address against AllowedHosts and the
// credentials, the AllowedHosts and AllowedOrigins entries, and
// DashboardPath.
func (c *HTTPConfig) validate() error {
	if err := checkListen(*c); err != nil {
		return err
	}
	if err := dashboard.CheckRootPath(c.DashboardPath); err != nil {
		return &ConfigError{Field: "HTTP.DashboardPath", Value: fmt.Sprintf("%q", c.DashboardPath), Reason: strings.TrimPrefix(err.Error(), "dashboard: ")}
	}
	if c.Addr == "" {
		return nil
	}
	if err := dashboard.CheckListen(c.Addr, c.Auth); err != nil {
		return err
	}
	if !c.APIDisabled {
		return api.CheckListen(c.Addr, c.APITokens)
	}
	return nil
}

// hostName returns the lower-case host of a Host header or host[:port]
// entry, without port, brackets or trailing dot.
func hostName(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.Trim(h, "[]"), ".")
	return strings.ToLower(h)
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/healthz" && !g.hosts[hostName(r.Host)] {
		refuse(w, http.StatusForbidden, fmt.Sprintf("host %q is not served here; add it to %s if clients reach this server under that name", r.Host, EnvAllowedHosts))
		return
	}
	if g.preflight(w, r) {
		return
	}
	if err := g.cop.Check(r); err != nil {
		refuse(w, http.StatusForbidden, fmt.Sprintf("cross-origin request refused: %s %s from origin %q; a browser page on another origin may only change state here if its origin is listed in %s", r.Method, r.URL.Path, r.Header.Get("Origin"), EnvAllowedOrigins))
		return
	}
	if msg := checkContentType(r); msg != "" {
		refuse(w, http.StatusUnsupportedMediaType, msg)
		return
	}
	g.next.ServeHTTP(w, r)
}

// preflight adds the CORS headers for a trusted origin and answers its
// preflight (OPTIONS with Access-Control-Request-Method) itself.
func (g *guard) preflight(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || !g.origins[origin] {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Expose-Headers", "Idempotent-Replayed, Location")
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		return false
	}
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Content-Encoding, Idempotency-Key, Last-Event-ID")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return true
}

// checkContentType requires application/json (or +json) on a POST, PUT or
// PATCH that carries a body; a body-less POST (Asynqmon's actions) passes.
func checkContentType(r *http.Request) string {
	if !slices.Contains([]string{http.MethodPost, http.MethodPut, http.MethodPatch}, r.Method) || r.ContentLength == 0 {
		return ""
	}
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return ""
	}
	if ct == "" {
		return fmt.Sprintf("%s %s has a body but no Content-Type; send it as application/json", r.Method, r.URL.Path)
	}
	return fmt.Sprintf("Content-Type %q is not accepted on %s %s; send the body as application/json", ct, r.Method, r.URL.Path)
}

// refuse answers status with {"error": msg}, the shape of the API's errors.
func refuse(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "{\"error\":%q}\n", msg)
}

// bodyDeadline gives each request bodyTimeout to deliver its body, then
// lets handlers that stream (SSE, long polls) run as long as they decide:
// the server has no write timeout, and net/http clears the read deadline
// itself when the body has been read (its background read, which notices
// a client that went away, starts with no deadline).
func bodyDeadline(next http.Handler, bodyTimeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			if err := rc.SetReadDeadline(time.Now().Add(bodyTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
				refuse(w, http.StatusInternalServerError, "cannot set the request's read deadline")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// newServer is the worker's http.Server with its timeouts and limits.
func newServer(h http.Handler, lim httpLimits) *http.Server {
	return &http.Server{
		Handler:           bodyDeadline(h, lim.body),
		ReadHeaderTimeout: lim.readHeader,
		IdleTimeout:       lim.idle,
		MaxHeaderBytes:    lim.maxHeader,
	}
}
