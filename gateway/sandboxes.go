package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/internal/backoff"
)

// DefaultNamespace is used when a namespace is empty (protocol §1.6).
const DefaultNamespace = sandboxq.DefaultNamespace

// envelope is the gateway's response body (protocol §1.4).
type envelope struct {
	Success *bool           `json:"success"`
	Data    json.RawMessage `json:"data"`
	Error   string          `json:"error"`
}

// failed reports an explicit "success": false.
func (e *envelope) failed() bool { return e.Success != nil && !*e.Success }

// hasData reports whether data is present and not null.
func (e *envelope) hasData() bool { return len(e.Data) > 0 && string(e.Data) != "null" }

// FindOrCreate returns the sandbox named (namespace, name), creating it with
// opts if it does not exist (POST …/find-or-create). An empty namespace is
// "default". opts may be nil; its Name and Namespace are replaced by the
// arguments. While the gateway answers status "creating" the call re-POSTs
// the same body (see WithCreatingPoll) and finally fails with an error
// matching ErrStillCreating.
func (c *Client) FindOrCreate(ctx context.Context, namespace, name string, opts *CreateOptions) (*Sandbox, error) {
	const op = "find_or_create"
	var body CreateOptions
	if opts != nil {
		body = *opts
	}
	ns, err := sandboxKey(op, namespace, name)
	if err != nil {
		return nil, err
	}
	body.Namespace, body.Name = ns, name
	b, err := encodeJSON(op, body)
	if err != nil {
		return nil, err
	}
	return c.pollCreating(ctx, op, c.paths.prefix()+"/find-or-create", b, ns, name, false)
}

// Find returns the sandbox named (namespace, name), or (nil, nil) if there
// is none: the gateway may say so with a 404 or with a 200 whose data is
// null or whose success is false. It polls while status is "creating", like
// FindOrCreate.
func (c *Client) Find(ctx context.Context, namespace, name string) (*Sandbox, error) {
	const op = "find"
	ns, err := sandboxKey(op, namespace, name)
	if err != nil {
		return nil, err
	}
	b, err := encodeJSON(op, struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	}{ns, name})
	if err != nil {
		return nil, err
	}
	return c.pollCreating(ctx, op, c.paths.prefix()+"/find", b, ns, name, true)
}

// pollCreating POSTs body until the sandbox is no longer "creating".
func (c *Client) pollCreating(ctx context.Context, op, rel string, body []byte, ns, name string, miss bool) (*Sandbox, error) {
	start := time.Now()
	wait := c.pollInitial
	for attempt := 1; ; attempt++ {
		sb, err := c.postSandbox(ctx, op, rel, body, miss)
		if err != nil || sb == nil || sb.Status != SandboxCreating {
			return sb, err
		}
		remaining := c.pollTotal - time.Since(start)
		if remaining <= 0 {
			return nil, fmt.Errorf("gateway: %s: sandbox %s/%s (%s) still creating after %v: %w",
				op, ns, name, sb.SandboxID, c.pollTotal.Round(time.Millisecond), ErrStillCreating)
		}
		d := min(wait, remaining)
		c.t.logger.DebugContext(ctx, "sandbox still creating",
			slog.String("op", op),
			slog.String("namespace", ns),
			slog.String("name", name),
			slog.Int("attempt", attempt),
			slog.Duration("wait", d),
		)
		if err := backoff.Sleep(ctx, d); err != nil {
			return nil, fmt.Errorf("gateway: %s: %w", op, err)
		}
		wait = min(time.Duration(float64(wait)*pollBackoffMultiple), c.pollMax)
	}
}

// postSandbox POSTs to find or find-or-create. For find (miss true) a 404,
// null data or success false is a miss, (nil, nil); for find-or-create
// they are errors.
func (c *Client) postSandbox(ctx context.Context, op, rel string, body []byte, miss bool) (*Sandbox, error) {
	// Find and find-or-create are idempotent by (namespace, name).
	resp, err := c.gatewayCall(ctx, op, http.MethodPost, rel, body, true)
	if err != nil {
		if miss && errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	var env *envelope
	if miss {
		env = new(envelope)
		if err := decodeJSON(op, resp.body, env); err != nil {
			return nil, err
		}
		if env.failed() {
			return nil, nil
		}
	} else if env, err = c.decodeEnvelope(op, http.MethodPost, rel, resp); err != nil {
		return nil, err
	}
	if !env.hasData() {
		if miss {
			return nil, nil
		}
		return nil, fmt.Errorf("gateway: %s: response has no sandbox", op)
	}
	var sb Sandbox
	if err := decodeJSON(op, env.Data, &sb); err != nil {
		return nil, err
	}
	return &sb, nil
}

// Create creates an unnamed sandbox (or a named one when opts carries both
// Name and Namespace) with POST /v1/sandbox. opts may be nil.
func (c *Client) Create(ctx context.Context, opts *CreateOptions) (*Sandbox, error) {
	const op = "create"
	if opts == nil {
		opts = &CreateOptions{}
	}
	b, err := encodeJSON(op, opts)
	if err != nil {
		return nil, err
	}
	resp, err := c.gatewayRequest(ctx, op, http.MethodPost, c.paths.prefix(), b)
	if err != nil {
		return nil, err
	}
	env, err := c.decodeEnvelope(op, http.MethodPost, c.paths.prefix(), resp)
	if err != nil {
		return nil, err
	}
	if !env.hasData() {
		return nil, fmt.Errorf("gateway: %s: response has no sandbox", op)
	}
	var sb Sandbox
	if err := decodeJSON(op, env.Data, &sb); err != nil {
		return nil, err
	}
	return &sb, nil
}

// Get returns the sandbox with the given id. A 404 is an error matching
// ErrNotFound; so is a 2xx answer with null data. The gateway may leave
// sandboxId out of the answer; it is then filled in from the argument.
func (c *Client) Get(ctx context.Context, sandboxID string) (*Sandbox, error) {
	const op = "get"
	rel, err := c.sandboxPath(op, sandboxID, "")
	if err != nil {
		return nil, err
	}
	resp, err := c.gatewayRequest(ctx, op, http.MethodGet, rel, nil)
	if err != nil {
		return nil, err
	}
	env, err := c.decodeEnvelope(op, http.MethodGet, rel, resp)
	if err != nil {
		return nil, err
	}
	if !env.hasData() {
		return nil, fmt.Errorf("gateway: %s: sandbox %q: %w", op, sandboxID, ErrNotFound)
	}
	var sb Sandbox
	if err := decodeJSON(op, env.Data, &sb); err != nil {
		return nil, err
	}
	if sb.SandboxID == "" {
		sb.SandboxID = sandboxID
	}
	return &sb, nil
}

// Destroy deletes the sandbox. A 404 is returned as an error matching
// ErrNotFound; whether that counts as success is the caller's decision.
func (c *Client) Destroy(ctx context.Context, sandboxID string) error {
	const op = "destroy"
	rel, err := c.sandboxPath(op, sandboxID, "")
	if err != nil {
		return err
	}
	resp, err := c.gatewayRequest(ctx, op, http.MethodDelete, rel, nil)
	if err != nil {
		return err
	}
	_, err = c.decodeEnvelope(op, http.MethodDelete, rel, resp)
	return err
}

// Extend asks the gateway to keep the sandbox alive for d longer
// (body {"duration": milliseconds}).
func (c *Client) Extend(ctx context.Context, sandboxID string, d time.Duration) error {
	const op = "extend"
	if d < time.Millisecond {
		return fmt.Errorf("gateway: %s: duration must be at least 1ms, got %v", op, d)
	}
	rel, err := c.sandboxPath(op, sandboxID, "/extend")
	if err != nil {
		return err
	}
	b, err := encodeJSON(op, struct {
		Duration int64 `json:"duration"`
	}{d.Milliseconds()})
	if err != nil {
		return err
	}
	resp, err := c.gatewayRequest(ctx, op, http.MethodPost, rel, b)
	if err != nil {
		return err
	}
	_, err = c.decodeEnvelope(op, http.MethodPost, rel, resp)
	return err
}

// decodeEnvelope decodes a 2xx gateway body. An empty body is accepted (as
// an envelope without data); "success": false becomes an *APIError with
// the response's status and the envelope's error.
func (c *Client) decodeEnvelope(op, method, rel string, resp *response) (*envelope, error) {
	var env envelope
	if len(resp.body) == 0 {
		return &env, nil
	}
	if err := decodeJSON(op, resp.body, &env); err != nil {
		return nil, err
	}
	if env.failed() {
		msg := env.Error
		if msg == "" {
			msg = "gateway answered success: false"
		}
		return nil, &APIError{
			Op:         op,
			Method:     method,
			URL:        sanitizeURL(joinURL(c.base, rel, "")),
			StatusCode: resp.status,
			Message:    redactAll(truncate(msg), []string{c.apiKey.reveal()}),
			RequestID:  resp.header.Get("X-Request-Id"),
		}
	}
	return &env, nil
}

func (c *Client) sandboxPath(op, sandboxID, suffix string) (string, error) {
	seg, err := pathSegment("sandbox id", sandboxID)
	if err != nil {
		return "", fmt.Errorf("gateway: %s: %w", op, err)
	}
	return c.paths.prefix() + "/" + seg + suffix, nil
}

// sandboxKey checks a (namespace, name) pair and defaults the namespace.
func sandboxKey(op, namespace, name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("gateway: %s: sandbox name is empty", op)
	}
	if namespace == "" {
		namespace = DefaultNamespace
	}
	return namespace, nil
}

// pathSegment escapes one path segment and rejects the ones a URL cannot
// carry faithfully.
func pathSegment(what, v string) (string, error) {
	switch v {
	case "":
		return "", fmt.Errorf("%s is empty", what)
	case ".", "..":
		return "", fmt.Errorf("%s %q is not a valid path segment", what, v)
	}
	return url.PathEscape(v), nil
}
