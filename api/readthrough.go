package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/sandboxq/sandboxq/gateway"
	"github.com/sandboxq/sandboxq/tasks"
)

// Gateway is what the read-through routes need: a live find of a project's
// sandbox and a client of that sandbox's daemon, whose reads (server,
// file, env file) they call. *gateway.Client implements it.
type Gateway interface {
	// Find returns the sandbox of (namespace, name), or (nil, nil) when
	// the project has none.
	Find(ctx context.Context, namespace, name string) (*gateway.Sandbox, error)
	// Daemon returns a client of sb's daemon.
	Daemon(sb *gateway.Sandbox) *gateway.Daemon
}

// SandboxView is the answer of GET /projects/{namespace}/{name}/sandbox.
type SandboxView struct {
	SandboxID string `json:"sandbox_id"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Provider  string `json:"provider"`
	// Status is the gateway's: "ready" (also when the gateway says
	// nothing, as legacy gateways do).
	Status string `json:"status"`
}

// ServerView is the answer of GET /projects/{namespace}/{name}/servers/{slug}.
type ServerView struct {
	Slug   string `json:"slug"`
	Status string `json:"status"`
	URL    string `json:"url"`
	Port   int    `json:"port"`
	// ExitCode is null until the server's process has exited.
	ExitCode *int   `json:"exit_code"`
	Error    string `json:"error"`
}

// FileView is the answer of GET /projects/{namespace}/{name}/files.
type FileView struct {
	Path    string `json:"path"`
	Content string `json:"content"`
}

// EnvView is the answer of GET /projects/{namespace}/{name}/env.
type EnvView struct {
	File string            `json:"file"`
	Env  map[string]string `json:"env"`
}

// onlyQuery answers 400 and returns false when the request has a query
// parameter other than known, or one of them more than once.
func onlyQuery(w http.ResponseWriter, r *http.Request, known ...string) bool {
	for k, vs := range r.URL.Query() {
		if !slices.Contains(known, k) {
			list := "none"
			if len(known) > 0 {
				list = strings.Join(known, ", ")
			}
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown query parameter %q; known: %s", k, list), k)
			return false
		}
		if len(vs) > 1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("query parameter %q is given %d times; give it once", k, len(vs)), k)
			return false
		}
	}
	return true
}

// writeValidation answers 400 for a *tasks.ValidationError (or any error).
func writeValidation(w http.ResponseWriter, err error) {
	var ve *tasks.ValidationError
	if errors.As(err, &ve) {
		writeError(w, http.StatusBadRequest, ve.Error(), ve.Field)
		return
	}
	writeError(w, http.StatusBadRequest, err.Error(), "")
}

// liveSandbox validates the project and finds its sandbox through the
// gateway. It answers the request (400, 404, 502, 503) and returns nil
// when there is nothing to read from.
func (a *API) liveSandbox(w http.ResponseWriter, r *http.Request) (tasks.Project, *gateway.Sandbox) {
	p, ok := projectOf(w, r)
	if !ok {
		return p, nil
	}
	if a.opts.Gateway == nil {
		writeError(w, http.StatusServiceUnavailable, "this server has no gateway configured for reads", "")
		return p, nil
	}
	sb, err := a.opts.Gateway.Find(r.Context(), p.Namespace, p.Name)
	if err != nil {
		a.gatewayError(w, r, "find sandbox", err, "")
		return p, nil
	}
	if sb == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("project %s/%s has no live sandbox", p.Namespace, p.Name), "")
		return p, nil
	}
	return p, sb
}

// gatewayError answers a failed gateway or daemon call: 404 when the
// daemon says not found (notFound is the message), 400 when it refuses the
// input, 502 otherwise. Details of a 502 go to the log only.
func (a *API) gatewayError(w http.ResponseWriter, r *http.Request, what string, err error, notFound string) {
	if r.Context().Err() != nil {
		answerCancelled(w)
		return
	}
	var apiErr *gateway.APIError
	isAPI := errors.As(err, &apiErr)
	switch {
	case errors.Is(err, gateway.ErrNotFound) && notFound != "":
		writeError(w, http.StatusNotFound, notFound, "")
		return
	case isAPI && (apiErr.StatusCode == http.StatusBadRequest || apiErr.StatusCode == http.StatusUnprocessableEntity):
		msg := apiErr.Message
		if msg == "" {
			msg = http.StatusText(apiErr.StatusCode)
		}
		writeError(w, http.StatusBadRequest, what+": the sandbox refused the request: "+msg, "")
		return
	}
	a.log.WarnContext(r.Context(), "read-through failed", slog.String("op", what), slog.String("path", r.URL.Path), slog.String("err", err.Error()))
	msg := what + ": the gateway or sandbox daemon could not be reached"
	if isAPI {
		msg = fmt.Sprintf("%s: the gateway or sandbox daemon answered HTTP %d", what, apiErr.StatusCode)
	}
	writeError(w, http.StatusBadGateway, msg, "")
}

// getSandbox is GET /projects/{namespace}/{name}/sandbox: a live find.
func (a *API) getSandbox(w http.ResponseWriter, r *http.Request) {
	if !onlyQuery(w, r) {
		return
	}
	p, sb := a.liveSandbox(w, r)
	if sb == nil {
		return
	}
	status := sb.Status
	if status == "" {
		status = gateway.SandboxReady
	}
	writeJSON(w, http.StatusOK, SandboxView{
		SandboxID: sb.SandboxID, Namespace: p.Namespace, Name: p.Name, Provider: sb.Provider, Status: status,
	})
}

// getServer is GET /projects/{namespace}/{name}/servers/{slug}: the
// server as the daemon reports it now.
func (a *API) getServer(w http.ResponseWriter, r *http.Request) {
	slug := r.PathValue("slug")
	if err := tasks.CheckSlug("slug", slug); err != nil {
		writeValidation(w, err)
		return
	}
	if !onlyQuery(w, r) {
		return
	}
	readDaemon(a, w, r, "read server", fmt.Sprintf("has no server %q", slug), func(ctx context.Context, d *gateway.Daemon) (ServerView, error) {
		info, err := d.GetServer(ctx, slug)
		if err != nil {
			return ServerView{}, err
		}
		return ServerView{
			Slug: info.Slug, Status: info.Status, URL: info.URL, Port: info.Port, ExitCode: info.ExitCode, Error: info.Error,
		}, nil
	})
}

// readDaemon answers a read-through route: it finds the project's live
// sandbox, runs read on its daemon and writes the view read returns, or
// the gateway's error; missing completes "project <ns>/<name> ..." for a
// 404.
func readDaemon[V any](a *API, w http.ResponseWriter, r *http.Request, what, missing string, read func(context.Context, *gateway.Daemon) (V, error)) {
	p, sb := a.liveSandbox(w, r)
	if sb == nil {
		return
	}
	v, err := read(r.Context(), a.opts.Gateway.Daemon(sb))
	if err != nil {
		a.gatewayError(w, r, what, err, fmt.Sprintf("project %s/%s %s", p.Namespace, p.Name, missing))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// getFile is GET /projects/{namespace}/{name}/files?path=: a file's text.
func (a *API) getFile(w http.ResponseWriter, r *http.Request) {
	if !onlyQuery(w, r, "path") {
		return
	}
	path, err := tasks.CleanPath("path", r.URL.Query().Get("path"))
	if err != nil {
		writeValidation(w, err)
		return
	}
	readDaemon(a, w, r, "read file", "has no file "+path, func(ctx context.Context, d *gateway.Daemon) (FileView, error) {
		content, err := d.ReadFile(ctx, path)
		return FileView{Path: path, Content: content}, err
	})
}

// getEnv is GET /projects/{namespace}/{name}/env?file=: an env file's
// variables.
func (a *API) getEnv(w http.ResponseWriter, r *http.Request) {
	if !onlyQuery(w, r, "file") {
		return
	}
	file := tasks.DefaultEnvFile
	if q := r.URL.Query(); q.Has("file") {
		file = q.Get("file")
	}
	file, err := tasks.CleanPath("file", file)
	if err != nil {
		writeValidation(w, err)
		return
	}
	readDaemon(a, w, r, "read env file", "has no env file "+file, func(ctx context.Context, d *gateway.Daemon) (EnvView, error) {
		vars, err := d.GetEnv(ctx, file)
		return EnvView{File: file, Env: vars}, err
	})
}
