package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/sandboxq/sandboxq/internal/secret"
)

// Limits checked before a request is sent.
const (
	MaxPathLength = 4096 // bytes of a file path
)

// commandTimeoutSlack is added to RunCommandRequest.TimeoutMS when that
// bounds the request instead of the client's timeout.
const commandTimeoutSlack = 10 * time.Second

// Daemon talks to one sandbox daemon (protocol §2). It is safe for
// concurrent use. A Daemon whose URL was invalid still exists; every call
// then returns that error.
type Daemon struct {
	t     *transport
	base  *url.URL   // path ends in "/"
	token credential // nil: no Authorization header
	err   error
}

// Daemon returns a client for the daemon of sb, authenticated with
// sb.Token, sharing c's HTTP client, timeout, user agent, logger and
// observer. An empty token sends no Authorization header.
func (c *Client) Daemon(sb *Sandbox) *Daemon {
	if c == nil || c.t == nil {
		return &Daemon{err: errors.New("Client not built with NewClient")}
	}
	d := &Daemon{t: c.t}
	if sb == nil {
		d.err = errors.New("sandbox is nil")
		return d
	}
	base, err := parseBaseURL(sb.URL)
	if err != nil {
		d.err = fmt.Errorf("daemon of sandbox %q: %w", sb.SandboxID, err)
		return d
	}
	d.base, d.token = base, credentialOf(secret.New(sb.Token))
	return d
}

// NewDaemon returns a standalone daemon client. Of the options, those for
// the HTTP client, timeout, user agent, logger, observer and read retry
// apply; API key, provider, path style and creating poll are ignored.
func NewDaemon(baseURL string, token secret.Secret, opts ...Option) (*Daemon, error) {
	base, err := parseBaseURL(baseURL)
	if err != nil {
		return nil, fmt.Errorf("gateway: NewDaemon: %w", err)
	}
	if !validHeaderValue(token.Reveal()) {
		return nil, errors.New("gateway: NewDaemon: the token contains control characters")
	}
	// Options configure a Client; the daemon takes its transport.
	c, err := newClient(base, opts)
	if err != nil {
		return nil, fmt.Errorf("gateway: NewDaemon: %w", err)
	}
	return &Daemon{t: c.t, base: base, token: credentialOf(token)}, nil
}

// URL returns the daemon's base URL without trailing slash or userinfo.
func (d *Daemon) URL() string {
	if d == nil || d.base == nil {
		return ""
	}
	return strings.TrimSuffix(sanitizeURL(d.base), "/")
}

// String describes the daemon without credentials.
func (d *Daemon) String() string {
	if d == nil {
		return "gateway.Daemon(nil)"
	}
	return fmt.Sprintf("gateway.Daemon{url: %s}", d.URL())
}

// LogValue implements slog.LogValuer without credentials.
func (d *Daemon) LogValue() slog.Value {
	if d == nil {
		return slog.Value{}
	}
	return slog.GroupValue(slog.String("url", d.URL()))
}

// usable reports why d cannot make requests, if it cannot.
func (d *Daemon) usable() error {
	switch {
	case d == nil:
		return errors.New("nil Daemon")
	case d.err != nil:
		return d.err
	case d.t == nil || d.base == nil:
		return errors.New("Daemon not built with NewDaemon or Client.Daemon")
	}
	return nil
}

// daemonCall describes one daemon request.
type daemonCall struct {
	op      string
	method  string
	rel     string // escaped, relative to the base URL
	query   string // encoded
	body    any    // nil: no body; a *jsonBody is streamed
	timeout time.Duration
	read    bool // an idempotent read, retried inside the call
}

// call performs c; on 2xx it returns the response.
func (d *Daemon) call(ctx context.Context, c daemonCall) (*response, error) {
	op := "daemon." + c.op
	if err := d.usable(); err != nil {
		return nil, fmt.Errorf("gateway: %s: %w", op, err)
	}
	h := http.Header{}
	var body []byte
	stream, _ := c.body.(*jsonBody)
	if c.body != nil && stream == nil {
		b, err := encodeJSON(op, c.body)
		if err != nil {
			return nil, err
		}
		body = b
	}
	if c.body != nil {
		h.Set("Content-Type", "application/json")
	}
	var secrets []string
	if tok := d.token.reveal(); tok != "" {
		h.Set("Authorization", "Bearer "+tok)
		secrets = []string{tok}
	}
	return d.t.send(ctx, &request{
		op:         op,
		method:     c.method,
		url:        joinURL(d.base, c.rel, c.query),
		header:     h,
		body:       body,
		stream:     stream,
		timeout:    c.timeout,
		secrets:    secrets,
		idempotent: c.read,
	})
}

// callData performs c and decodes the "data" member of a {message, data} or
// {status, message, data} envelope into out. out nil: the body is ignored.
func (d *Daemon) callData(ctx context.Context, c daemonCall, out any) error {
	resp, err := d.call(ctx, c)
	if err != nil || out == nil {
		return err
	}
	op := "daemon." + c.op
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := decodeJSON(op, resp.body, &env); err != nil {
		return err
	}
	if len(env.Data) == 0 || string(env.Data) == "null" {
		return fmt.Errorf("gateway: %s: response has no data", op)
	}
	return decodeJSON(op, env.Data, out)
}

// Health calls GET /health (a bare object, no envelope).
func (d *Daemon) Health(ctx context.Context) (*Health, error) {
	resp, err := d.call(ctx, daemonCall{op: "health", method: http.MethodGet, rel: "health", read: true})
	if err != nil {
		return nil, err
	}
	var h Health
	if err := decodeJSON("daemon.health", resp.body, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// ListServers calls GET /servers.
func (d *Daemon) ListServers(ctx context.Context) ([]ServerInfo, error) {
	var data struct {
		Servers []ServerInfo `json:"servers"`
	}
	if err := d.callData(ctx, daemonCall{op: "list_servers", method: http.MethodGet, rel: "servers", read: true}, &data); err != nil {
		return nil, err
	}
	return data.Servers, nil
}

// StartServer calls POST /servers. Slug and Start are required.
func (d *Daemon) StartServer(ctx context.Context, opts ServerStartOptions) (*ServerInfo, error) {
	const op = "start_server"
	if _, err := pathSegment("server slug", opts.Slug); err != nil {
		return nil, fmt.Errorf("gateway: daemon.%s: %w", op, err)
	}
	if strings.TrimSpace(opts.Start) == "" {
		return nil, fmt.Errorf("gateway: daemon.%s: server %q has no start command", op, opts.Slug)
	}
	return d.serverData(ctx, daemonCall{op: op, method: http.MethodPost, rel: "servers", body: opts})
}

// GetServer calls GET /servers/{slug}. A 404 matches ErrNotFound.
func (d *Daemon) GetServer(ctx context.Context, slug string) (*ServerInfo, error) {
	const op = "get_server"
	rel, err := serverPath(op, slug, "")
	if err != nil {
		return nil, err
	}
	return d.serverData(ctx, daemonCall{op: op, method: http.MethodGet, rel: rel, read: true})
}

// StopServer calls POST /servers/{slug}/stop; the server keeps its
// configuration.
func (d *Daemon) StopServer(ctx context.Context, slug string) error {
	const op = "stop_server"
	rel, err := serverPath(op, slug, "/stop")
	if err != nil {
		return err
	}
	_, err = d.call(ctx, daemonCall{op: op, method: http.MethodPost, rel: rel})
	return err
}

// RestartServer calls POST /servers/{slug}/restart.
func (d *Daemon) RestartServer(ctx context.Context, slug string) (*ServerInfo, error) {
	const op = "restart_server"
	rel, err := serverPath(op, slug, "/restart")
	if err != nil {
		return nil, err
	}
	return d.serverData(ctx, daemonCall{op: op, method: http.MethodPost, rel: rel})
}

// DeleteServer calls DELETE /servers/{slug}: stop and forget the server.
func (d *Daemon) DeleteServer(ctx context.Context, slug string) error {
	const op = "delete_server"
	rel, err := serverPath(op, slug, "")
	if err != nil {
		return err
	}
	_, err = d.call(ctx, daemonCall{op: op, method: http.MethodDelete, rel: rel})
	return err
}

// Log streams accepted by ServerLogs.
const (
	LogStdout   = "stdout"
	LogStderr   = "stderr"
	LogCombined = "combined"
)

// ServerLogs calls GET /servers/{slug}/logs. stream is "stdout", "stderr",
// "combined" or empty (the daemon's default).
func (d *Daemon) ServerLogs(ctx context.Context, slug, stream string) (*ServerLogs, error) {
	const op = "server_logs"
	rel, err := serverPath(op, slug, "/logs")
	if err != nil {
		return nil, err
	}
	var q string
	switch stream {
	case "":
	case LogStdout, LogStderr, LogCombined:
		q = "stream=" + stream
	default:
		return nil, fmt.Errorf("gateway: daemon.%s: unknown log stream %q (want stdout, stderr or combined)", op, stream)
	}
	var logs ServerLogs
	if err := d.callData(ctx, daemonCall{op: op, method: http.MethodGet, rel: rel, query: q}, &logs); err != nil {
		return nil, err
	}
	return &logs, nil
}

func (d *Daemon) serverData(ctx context.Context, c daemonCall) (*ServerInfo, error) {
	var data struct {
		Server *ServerInfo `json:"server"`
	}
	if err := d.callData(ctx, c, &data); err != nil {
		return nil, err
	}
	if data.Server == nil {
		return nil, fmt.Errorf("gateway: daemon.%s: response has no server", c.op)
	}
	return data.Server, nil
}

func serverPath(op, slug, suffix string) (string, error) {
	seg, err := pathSegment("server slug", slug)
	if err != nil {
		return "", fmt.Errorf("gateway: daemon.%s: %w", op, err)
	}
	return "servers/" + seg + suffix, nil
}

// ListFiles calls GET /files?path=dir. An empty dir leaves the choice to
// the daemon ("/").
func (d *Daemon) ListFiles(ctx context.Context, dir string) ([]FileInfo, error) {
	const op = "list_files"
	var q string
	if dir != "" {
		if err := checkPath(dir); err != nil {
			return nil, fmt.Errorf("gateway: daemon.%s: %w", op, err)
		}
		q = "path=" + url.QueryEscape(dir)
	}
	var data struct {
		Files []FileInfo `json:"files"`
	}
	if err := d.callData(ctx, daemonCall{op: op, method: http.MethodGet, rel: "files", query: q}, &data); err != nil {
		return nil, err
	}
	return data.Files, nil
}

// ReadFile calls GET /files/{path}?content=true and returns the content.
// The path is encoded as the current reference client does it: segments
// escaped, a leading slash kept (/files//abs/p), a relative path relative.
func (d *Daemon) ReadFile(ctx context.Context, p string) (string, error) {
	const op = "read_file"
	rel, err := filesPath(op, p)
	if err != nil {
		return "", err
	}
	var data struct {
		Content *string `json:"content"`
	}
	if err := d.callData(ctx, daemonCall{op: op, method: http.MethodGet, rel: rel, query: "content=true"}, &data); err != nil {
		return "", err
	}
	if data.Content == nil {
		return "", fmt.Errorf("gateway: daemon.%s: response has no content", op)
	}
	return *data.Content, nil
}

// WriteFile calls POST /files {path, content}: create or overwrite.
func (d *Daemon) WriteFile(ctx context.Context, p, content string) (*FileInfo, error) {
	const op = "write_file"
	if err := checkPath(p); err != nil {
		return nil, fmt.Errorf("gateway: daemon.%s: %w", op, err)
	}
	// {"path": p, "content": content}, the content streamed.
	body := (&jsonBody{}).add(`{"path":`)
	if err := body.addValue(p); err != nil {
		return nil, fmt.Errorf("gateway: daemon.%s: encoding request: %w", op, err)
	}
	body, err := body.add(`,"content":`).addString(content).add(`}`).done()
	if err != nil {
		return nil, fmt.Errorf("gateway: daemon.%s: encoding request: %w", op, err)
	}
	var data struct {
		File *FileInfo `json:"file"`
	}
	if err := d.callData(ctx, daemonCall{op: op, method: http.MethodPost, rel: "files", body: body}, &data); err != nil {
		return nil, err
	}
	if data.File == nil {
		return nil, fmt.Errorf("gateway: daemon.%s: response has no file", op)
	}
	return data.File, nil
}

// BatchFiles calls POST /files/batch. Both 200 and 207 (partial failure)
// return the per-path results and no error; callers inspect
// BatchResult.Success.
func (d *Daemon) BatchFiles(ctx context.Context, files []BatchFile) ([]BatchResult, error) {
	const op = "batch_files"
	if len(files) == 0 {
		return nil, fmt.Errorf("gateway: daemon.%s: no files", op)
	}
	for i, f := range files {
		if err := checkPath(f.Path); err != nil {
			return nil, fmt.Errorf("gateway: daemon.%s: files[%d]: %w", op, i, err)
		}
		if f.Operation != BatchWrite && f.Operation != BatchDelete {
			return nil, fmt.Errorf("gateway: daemon.%s: files[%d] (%s): unknown operation %q (want write or delete)", op, i, f.Path, f.Operation)
		}
	}
	body, err := batchBody(files)
	if err != nil {
		return nil, fmt.Errorf("gateway: daemon.%s: encoding request: %w", op, err)
	}
	var data struct {
		Results []BatchResult `json:"results"`
	}
	if err := d.callData(ctx, daemonCall{op: op, method: http.MethodPost, rel: "files/batch", body: body}, &data); err != nil {
		return nil, err
	}
	return data.Results, nil
}

// batchBody is {"files": files} with each content streamed.
func batchBody(files []BatchFile) (*jsonBody, error) {
	body := (&jsonBody{}).add(`{"files":[`)
	for i, f := range files {
		if i > 0 {
			body.add(`,`)
		}
		body.add(`{"path":`)
		if err := body.addValue(f.Path); err != nil {
			return nil, err
		}
		body.add(`,"operation":`)
		if err := body.addValue(f.Operation); err != nil {
			return nil, err
		}
		if f.Content != "" {
			body.add(`,"content":`).addString(f.Content)
		}
		body.add(`}`)
	}
	return body.add(`]}`).done()
}

// DeleteFile calls DELETE /files/{path} (file or directory).
func (d *Daemon) DeleteFile(ctx context.Context, p string) error {
	const op = "delete_file"
	rel, err := filesPath(op, p)
	if err != nil {
		return err
	}
	_, err = d.call(ctx, daemonCall{op: op, method: http.MethodDelete, rel: rel})
	return err
}

// checkPath rejects file paths no daemon accepts.
func checkPath(p string) error {
	switch {
	case p == "":
		return errors.New("file path is empty")
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("file path %q contains a NUL byte", p)
	case len(p) > MaxPathLength:
		return fmt.Errorf("file path is %d bytes, longer than %d", len(p), MaxPathLength)
	}
	return nil
}

// filesPath encodes p for /files/{path}. The path is cleaned first, since a
// "." or ".." segment would be resolved by the URL machinery on the way
// instead of by the daemon.
func filesPath(op, p string) (string, error) {
	if err := checkPath(p); err != nil {
		return "", fmt.Errorf("gateway: daemon.%s: %w", op, err)
	}
	c := path.Clean(p)
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("gateway: daemon.%s: file path %q leaves the working directory; use an absolute path", op, p)
	}
	segs := strings.Split(c, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "files/" + strings.Join(segs, "/"), nil
}

// RunCommand calls POST /run/command. A foreground command with TimeoutMS
// gets a request timeout of TimeoutMS plus 10s when that exceeds the
// client's timeout, so the daemon's own limit fires first.
func (d *Daemon) RunCommand(ctx context.Context, req RunCommandRequest) (*CommandResult, error) {
	const op = "run_command"
	if strings.TrimSpace(req.Command) == "" {
		return nil, fmt.Errorf("gateway: daemon.%s: command is empty", op)
	}
	if req.TimeoutMS < 0 {
		return nil, fmt.Errorf("gateway: daemon.%s: timeout_ms is negative (%d)", op, req.TimeoutMS)
	}
	var timeout time.Duration
	if !req.Background && req.TimeoutMS > 0 {
		timeout = time.Duration(req.TimeoutMS)*time.Millisecond + commandTimeoutSlack
	}
	var res CommandResult
	if err := d.callData(ctx, daemonCall{op: op, method: http.MethodPost, rel: "run/command", body: req, timeout: timeout}, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// GetEnv calls GET /env?file= and returns the variables of the env file
// (a path relative to the sandbox root, e.g. ".env").
func (d *Daemon) GetEnv(ctx context.Context, file string) (map[string]string, error) {
	const op = "get_env"
	q, err := envQuery(op, file)
	if err != nil {
		return nil, err
	}
	var data EnvFile
	if err := d.callData(ctx, daemonCall{op: op, method: http.MethodGet, rel: "env", query: q}, &data); err != nil {
		return nil, err
	}
	if data.Variables == nil {
		data.Variables = map[string]string{}
	}
	return data.Variables, nil
}

// SetEnv calls POST /env?file= {variables}: merge vars into the file. It
// returns the keys the daemon reports as changed.
func (d *Daemon) SetEnv(ctx context.Context, file string, vars map[string]string) ([]string, error) {
	const op = "set_env"
	q, err := envQuery(op, file)
	if err != nil {
		return nil, err
	}
	if len(vars) == 0 {
		return nil, fmt.Errorf("gateway: daemon.%s: no variables", op)
	}
	for k := range vars {
		if err := checkEnvKey(k); err != nil {
			return nil, fmt.Errorf("gateway: daemon.%s: %w", op, err)
		}
	}
	body := struct {
		Variables map[string]string `json:"variables"`
	}{vars}
	var data EnvChange
	if err := d.callData(ctx, daemonCall{op: op, method: http.MethodPost, rel: "env", query: q, body: body}, &data); err != nil {
		return nil, err
	}
	return data.Keys, nil
}

// DeleteEnv calls DELETE /env?file= with the JSON body {keys} and returns
// the keys the daemon reports as removed.
func (d *Daemon) DeleteEnv(ctx context.Context, file string, keys []string) ([]string, error) {
	const op = "delete_env"
	q, err := envQuery(op, file)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("gateway: daemon.%s: no keys", op)
	}
	for _, k := range keys {
		if err := checkEnvKey(k); err != nil {
			return nil, fmt.Errorf("gateway: daemon.%s: %w", op, err)
		}
	}
	body := struct {
		Keys []string `json:"keys"`
	}{keys}
	var data EnvChange
	if err := d.callData(ctx, daemonCall{op: op, method: http.MethodDelete, rel: "env", query: q, body: body}, &data); err != nil {
		return nil, err
	}
	return data.Keys, nil
}

func envQuery(op, file string) (string, error) {
	if err := checkPath(file); err != nil {
		return "", fmt.Errorf("gateway: daemon.%s: env file: %w", op, err)
	}
	return "file=" + url.QueryEscape(file), nil
}

func checkEnvKey(k string) error {
	if k == "" {
		return errors.New("env variable name is empty")
	}
	if strings.ContainsAny(k, "=\x00\n\r") {
		return fmt.Errorf("env variable name %q contains '=', NUL or a line break", k)
	}
	return nil
}

// StartSignals calls POST /signals/start; signals then arrive on the
// "signals" channel of the WebSocket (DialWS).
func (d *Daemon) StartSignals(ctx context.Context) (*SignalsStatus, error) {
	var s SignalsStatus
	if err := d.callData(ctx, daemonCall{op: "start_signals", method: http.MethodPost, rel: "signals/start"}, &s); err != nil {
		return nil, err
	}
	return &s, nil
}
