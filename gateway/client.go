package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sandboxq/sandboxq/internal/secret"
)

// Defaults.
const (
	DefaultTimeout      = 30 * time.Second
	DefaultUserAgent    = "sandboxq-gateway/1"
	DefaultPollInitial  = 500 * time.Millisecond
	DefaultPollMax      = 2 * time.Second
	DefaultPollTotal    = 60 * time.Second
	maxErrorBody        = 1 << 20   // bytes of a non-2xx body read for the message
	maxSuccessBody      = 128 << 20 // bytes of a 2xx body accepted
	defaultIdlePerHost  = 64
	defaultIdleConns    = 256
	pollBackoffMultiple = 1.5
)

// PathStyle selects the gateway's resource path.
type PathStyle int

// Path styles (protocol §1.3: bodies are identical, only the prefix differs).
const (
	PathSingular PathStyle = iota // /v1/sandbox/... (default; the original integration)
	PathPlural                    // /v1/sandboxes/...
)

// String implements fmt.Stringer.
func (s PathStyle) String() string {
	switch s {
	case PathSingular:
		return "singular"
	case PathPlural:
		return "plural"
	}
	return fmt.Sprintf("PathStyle(%d)", int(s))
}

func (s PathStyle) prefix() string {
	if s == PathPlural {
		return "v1/sandboxes"
	}
	return "v1/sandbox"
}

// Option configures a Client (and, through NewDaemon, a standalone Daemon).
// Every option validates its argument and NewClient reports the first error.
type Option func(*Client) error

// WithAPIKey sets the account key sent as X-ComputeSDK-API-Key on gateway
// requests. Daemons ignore it.
func WithAPIKey(key secret.Secret) Option {
	return func(c *Client) error {
		if key.IsZero() {
			return errors.New("WithAPIKey: the API key is empty")
		}
		if !validHeaderValue(key.Reveal()) {
			return errors.New("WithAPIKey: the API key contains control characters")
		}
		c.apiKey = credentialOf(key)
		return nil
	}
}

// WithProvider sets the X-Provider header (the backend, e.g. "e2b"). An
// empty name omits the header and lets the gateway choose.
func WithProvider(name string) Option {
	return func(c *Client) error {
		if !validHeaderValue(name) {
			return fmt.Errorf("WithProvider: provider %q contains control characters", name)
		}
		c.provider = name
		return nil
	}
}

// WithHTTPClient replaces the shared default HTTP client. The client is
// copied and the copy never follows redirects (a redirect would carry the
// API key header to wherever it points); its Transport, Jar and Timeout are
// kept, the Timeout applying on top of WithTimeout.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("WithHTTPClient: the HTTP client is nil")
		}
		cp := *hc
		cp.CheckRedirect = noRedirect
		c.t.hc = &cp
		return nil
	}
}

// WithTimeout sets the per-request timeout (default 30s). The caller's
// context still bounds every call.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("WithTimeout: timeout must be positive, got %v", d)
		}
		c.t.timeout = d
		return nil
	}
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option {
	return func(c *Client) error {
		if strings.TrimSpace(ua) == "" {
			return errors.New("WithUserAgent: the user agent is empty")
		}
		if !validHeaderValue(ua) {
			return fmt.Errorf("WithUserAgent: user agent %q contains control characters", ua)
		}
		c.t.userAgent = ua
		return nil
	}
}

// WithPathStyle selects singular (default) or plural gateway paths.
func WithPathStyle(s PathStyle) Option {
	return func(c *Client) error {
		if s != PathSingular && s != PathPlural {
			return fmt.Errorf("WithPathStyle: unknown path style %d", int(s))
		}
		c.paths = s
		return nil
	}
}

// WithLogger sets the logger (default: discard). Requests are logged at
// debug level without credentials.
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) error {
		if l == nil {
			return errors.New("WithLogger: the logger is nil")
		}
		c.t.logger = l
		return nil
	}
}

// WithCreatingPoll sets how Find and FindOrCreate re-ask while the gateway
// answers status "creating": the first wait, the cap of the wait (which
// grows ×1.5) and the total time before they give up with ErrStillCreating.
// Defaults 500ms, 2s, 60s (protocol §1.5).
func WithCreatingPoll(initial, maxWait, total time.Duration) Option {
	return func(c *Client) error {
		switch {
		case initial <= 0:
			return fmt.Errorf("WithCreatingPoll: initial wait must be positive, got %v", initial)
		case maxWait < initial:
			return fmt.Errorf("WithCreatingPoll: max wait %v is below the initial wait %v", maxWait, initial)
		case total <= 0:
			return fmt.Errorf("WithCreatingPoll: total must be positive, got %v", total)
		}
		c.pollInitial, c.pollMax, c.pollTotal = initial, maxWait, total
		return nil
	}
}

// WithObserver is called once per HTTP request with an operation name such
// as "find_or_create" or "daemon.start_server", the HTTP status (0 on a
// transport error) and the duration. It is meant for metrics, must be safe
// for concurrent use and must not block. nil disables it.
func WithObserver(fn func(op string, status int, d time.Duration)) Option {
	return func(c *Client) error {
		c.t.observer = fn
		return nil
	}
}

// Client talks to the ComputeSDK gateway. It is safe for concurrent use and
// immutable once built.
type Client struct {
	t        *transport
	base     *url.URL   // path ends in "/"
	apiKey   credential // nil: no key
	provider string
	paths    PathStyle
	gate     Gate           // nil: calls are not gated
	tracing  *tracingConfig // nil: no spans

	pollInitial, pollMax, pollTotal time.Duration
}

// NewClient returns a client for the gateway at baseURL, which must be an
// http or https URL and may carry a path prefix (http://host/prefix).
func NewClient(baseURL string, opts ...Option) (*Client, error) {
	base, err := parseBaseURL(baseURL)
	if err != nil {
		return nil, fmt.Errorf("gateway: NewClient: %w", err)
	}
	c, err := newClient(base, opts)
	if err != nil {
		return nil, fmt.Errorf("gateway: NewClient: %w", err)
	}
	return c, nil
}

// newClient applies opts over the defaults.
func newClient(base *url.URL, opts []Option) (*Client, error) {
	c := &Client{
		t: &transport{
			timeout:   DefaultTimeout,
			userAgent: DefaultUserAgent,
			logger:    slog.New(slog.DiscardHandler),
			read:      defaultReadRetry(),
		},
		base:        base,
		pollInitial: DefaultPollInitial,
		pollMax:     DefaultPollMax,
		pollTotal:   DefaultPollTotal,
	}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	if c.t.hc == nil {
		c.t.hc = defaultHTTPClient()
	}
	c.t.ws = newWSDialer(c.t.hc)
	c.t.hc = c.tracing.wrap(c.t.hc) // after the WebSocket dialer: that dial stays unspanned
	return c, nil
}

// String describes the client without credentials.
func (c *Client) String() string {
	if c == nil {
		return "gateway.Client(nil)"
	}
	return fmt.Sprintf("gateway.Client{url: %s, provider: %q, paths: %s}", sanitizeURL(c.base), c.provider, c.paths)
}

// LogValue implements slog.LogValuer without credentials.
func (c *Client) LogValue() slog.Value {
	if c == nil {
		return slog.Value{}
	}
	return slog.GroupValue(
		slog.String("url", sanitizeURL(c.base)),
		slog.String("provider", c.provider),
		slog.String("paths", c.paths.String()),
	)
}

// gatewayRequest performs one gateway call; on 2xx it returns the body.
func (c *Client) gatewayRequest(ctx context.Context, op, method, rel string, body []byte) (*response, error) {
	return c.gatewayCall(ctx, op, method, rel, body, false)
}

// gatewayCall is gatewayRequest; an idempotent call is retried inside the
// call on a transport error, 502, 503 or 504 (WithReadRetry).
func (c *Client) gatewayCall(ctx context.Context, op, method, rel string, body []byte, idempotent bool) (*response, error) {
	if c == nil || c.t == nil || c.base == nil {
		return nil, fmt.Errorf("gateway: %s: Client not built with NewClient", op)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json") // sent on every call, as the reference client does
	var secrets []string
	if key := c.apiKey.reveal(); key != "" {
		h.Set("X-ComputeSDK-API-Key", key)
		secrets = append(secrets, key)
	}
	if c.provider != "" {
		h.Set("X-Provider", c.provider)
	}
	r := &request{
		op:         op,
		method:     method,
		url:        joinURL(c.base, rel, ""),
		header:     h,
		body:       body,
		secrets:    secrets,
		idempotent: idempotent,
	}
	// Every request, a read's retries included, passes the gate.
	return c.t.sendWith(ctx, r, func() (*response, error) {
		return c.gatedRequest(ctx, op, func() (*response, error) { return c.t.do(ctx, r) })
	})
}

// credential holds a secret where reflection cannot reach it: fmt prints
// a struct's unexported fields without calling their methods, so a
// secret.Secret field would show its value under %s or %d; a func value
// prints as an address.
type credential func() string

func credentialOf(s secret.Secret) credential {
	if s.IsZero() {
		return nil
	}
	return s.Reveal
}

// reveal returns the value, or "" for none.
func (c credential) reveal() string {
	if c == nil {
		return ""
	}
	return c()
}

// defaultHTTPClient is shared by every Client and Daemon built without
// WithHTTPClient, so connections to one gateway or daemon are reused across
// them. It does not follow redirects: a redirect would carry the API key
// header to wherever it points.
var defaultHTTPClient = sync.OnceValue(func() *http.Client {
	var tr *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		tr = dt.Clone()
	} else {
		tr = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			ForceAttemptHTTP2:     true,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	tr.MaxIdleConns = defaultIdleConns
	tr.MaxIdleConnsPerHost = defaultIdlePerHost
	return &http.Client{Transport: tr, CheckRedirect: noRedirect}
})

// noRedirect makes a 3xx the final answer.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// transport is what a Client shares with the Daemons it hands out.
type transport struct {
	hc        *http.Client
	timeout   time.Duration
	userAgent string
	logger    *slog.Logger
	observer  func(op string, status int, d time.Duration)
	metrics   *Metrics          // nil: not measured
	ws        *websocket.Dialer // template for DialWS, derived from hc
	read      readRetry         // in-call retry of idempotent reads
}

type request struct {
	op, method string
	url        *url.URL
	header     http.Header
	body       []byte    // nil: no body (unless stream)
	stream     *jsonBody // a body encoded as it is sent, instead of body
	timeout    time.Duration
	secrets    []string // values to cut from server messages
	idempotent bool     // an idempotent read: retried inside the call (retry.go)
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// send sends r, through doRead when it is an idempotent read.
func (t *transport) send(ctx context.Context, r *request) (*response, error) {
	return t.sendWith(ctx, r, func() (*response, error) { return t.do(ctx, r) })
}

// sendWith is send with each try of r made by try (a gated do, for the
// gateway's own calls).
func (t *transport) sendWith(ctx context.Context, r *request, try func() (*response, error)) (*response, error) {
	if r.idempotent && t.read.retries > 0 {
		return t.doRead(ctx, r, try)
	}
	return try()
}

// do sends one request. A 2xx answer comes back with its whole body;
// anything else is an *APIError. When the caller's ctx ends first, the
// error wraps ctx.Err() rather than the transport error.
func (t *transport) do(ctx context.Context, r *request) (*response, error) {
	if ctx == nil {
		return nil, fmt.Errorf("gateway: %s: nil context", r.op)
	}
	timeout := t.timeout
	if r.timeout > timeout {
		timeout = r.timeout
	}
	reqCtx, cancel := context.WithTimeoutCause(ctx, timeout, ErrRequestTimeout)
	defer cancel()

	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	if r.stream != nil {
		body = r.stream.reader()
	}
	req, err := http.NewRequestWithContext(withOp(reqCtx, r.op), r.method, r.url.String(), body)
	if err != nil {
		return nil, fmt.Errorf("gateway: %s: building request: %w", r.op, err)
	}
	if r.stream != nil {
		req.ContentLength = r.stream.size
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(r.stream.reader()), nil }
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", t.userAgent)
	safeURL := sanitizeURL(r.url)

	start := time.Now()
	resp, err := t.hc.Do(req)
	if err != nil {
		return nil, t.failed(ctx, reqCtx, r, safeURL, start, 0, err)
	}
	defer func() { _ = resp.Body.Close() }()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		t.finish(ctx, r, safeURL, start, resp.StatusCode)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("gateway: %s: %w", r.op, ctx.Err())
		}
		return nil, newAPIError(r.op, r.method, safeURL, resp, b, r.secrets, time.Now())
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxSuccessBody+1))
	if err != nil {
		return nil, t.failed(ctx, reqCtx, r, safeURL, start, resp.StatusCode, err)
	}
	t.finish(ctx, r, safeURL, start, resp.StatusCode)
	if len(b) > maxSuccessBody {
		return nil, fmt.Errorf("gateway: %s: response body exceeds %d bytes", r.op, maxSuccessBody)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// failed turns a transport error into the error do returns.
func (t *transport) failed(ctx, reqCtx context.Context, r *request, safeURL string, start time.Time, status int, err error) error {
	t.finish(ctx, r, safeURL, start, status)
	if ctx.Err() != nil {
		return fmt.Errorf("gateway: %s: %w", r.op, ctx.Err())
	}
	if errors.Is(context.Cause(reqCtx), ErrRequestTimeout) {
		err = fmt.Errorf("%w after %v", ErrRequestTimeout, max(t.timeout, r.timeout))
	} else if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err // its message would repeat the unsanitized URL
	}
	return &transportError{op: r.op, method: r.method, url: safeURL, err: err}
}

func (t *transport) finish(ctx context.Context, r *request, safeURL string, start time.Time, status int) {
	d := time.Since(start)
	if t.observer != nil {
		t.observer(r.op, status, d)
	}
	t.metrics.Observe(r.op, status, d)
	t.logger.DebugContext(ctx, "gateway request",
		slog.String("op", r.op),
		slog.String("method", r.method),
		slog.String("url", safeURL),
		slog.Int("status", status),
		slog.Duration("duration", d),
	)
}

// decodeJSON unmarshals a 2xx body; failures are not retryable.
func decodeJSON(op string, b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("gateway: %s: decoding response: %w", op, err)
	}
	return nil
}

func encodeJSON(op string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("gateway: %s: encoding request: %w", op, err)
	}
	return b, nil
}

// parseBaseURL validates a gateway or daemon base URL and returns it with a
// path ending in "/".
func parseBaseURL(raw string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, errors.New("base URL is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err // the full error would repeat the URL and any userinfo
		}
		return nil, fmt.Errorf("invalid base URL: %w", err)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("base URL %s: scheme must be http or https", sanitizeURL(u))
	case u.Opaque != "" || u.Host == "":
		return nil, fmt.Errorf("base URL %s: missing host", sanitizeURL(u))
	case u.RawQuery != "" || u.ForceQuery:
		return nil, fmt.Errorf("base URL %s: must not have a query", sanitizeURL(u))
	case u.Fragment != "":
		return nil, fmt.Errorf("base URL %s: must not have a fragment", sanitizeURL(u))
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		if u.RawPath != "" {
			u.RawPath += "/"
		}
	}
	return u, nil
}

// joinURL appends rel, an already escaped relative path, to base. It does
// not clean the result: "files//abs" must reach the daemon as written.
func joinURL(base *url.URL, rel, rawQuery string) *url.URL {
	u := *base
	u.RawPath = base.EscapedPath() + rel
	if p, err := url.PathUnescape(u.RawPath); err == nil {
		u.Path = p
	} else {
		u.Path = base.Path + rel
	}
	u.RawQuery = rawQuery
	return &u
}

// sensitiveQuery are query keys whose values never appear in errors or logs.
var sensitiveQuery = []string{"token", "access_token", "api_key", "apikey", "key", "secret"}

// sanitizeURL drops userinfo and redacts credential query parameters,
// keeping the order and the other parameters as sent.
func sanitizeURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		parts := strings.Split(c.RawQuery, "&")
		for i, part := range parts {
			k, _, _ := strings.Cut(part, "=")
			if uk, err := url.QueryUnescape(k); err == nil {
				k = uk
			}
			for _, s := range sensitiveQuery {
				if strings.EqualFold(k, s) {
					parts[i] = url.QueryEscape(k) + "=REDACTED"
				}
			}
		}
		c.RawQuery = strings.Join(parts, "&")
	}
	return c.String()
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < 0x20 && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}
