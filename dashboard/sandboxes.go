package dashboard

import (
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/tasks"
)

// sandboxStatuses are the registry statuses a filter may name.
var sandboxStatuses = []string{tasks.SandboxCreated, tasks.SandboxReady, tasks.SandboxDestroyed, tasks.SandboxError}

// listQuery is a parsed ?namespace=&status=&cursor=&limit= query.
type listQuery struct {
	Namespace, Status, Cursor string
	// Search keeps the entries whose "namespace/name" contains it (any
	// case); the page applies it to each page the registry returns.
	Search string
	Limit  int
}

// parseListQuery validates the query; errors name the parameter.
func parseListQuery(q url.Values) (listQuery, error) {
	lq := listQuery{
		Namespace: strings.TrimSpace(q.Get("namespace")),
		Status:    strings.TrimSpace(q.Get("status")),
		Cursor:    q.Get("cursor"),
		Search:    strings.TrimSpace(q.Get("q")),
		Limit:     events.DefaultListLimit,
	}
	if lq.Namespace != "" {
		if err := (tasks.Project{Namespace: lq.Namespace, Name: "x"}).Validate(); err != nil {
			return lq, fmt.Errorf("invalid namespace: %w", err)
		}
	}
	if lq.Status != "" && !slices.Contains(sandboxStatuses, lq.Status) {
		return lq, fmt.Errorf("invalid status %q: must be one of %s", lq.Status, strings.Join(sandboxStatuses, ", "))
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > events.MaxListLimit {
			return lq, fmt.Errorf("invalid limit %q: must be a number from 1 to %d", v, events.MaxListLimit)
		}
		lq.Limit = n
	}
	if lq.Cursor != "" {
		// The cursor is opaque; reject what cannot be one before asking the
		// store, so that a bad cursor is a 400 and not a 500.
		b, err := base64.RawURLEncoding.DecodeString(lq.Cursor)
		if err != nil || !strings.Contains(string(b), ":") {
			return lq, fmt.Errorf("invalid cursor: use the next_cursor of a previous page")
		}
	}
	return lq, nil
}

func (lq listQuery) options() events.ListOptions {
	return events.ListOptions{Namespace: lq.Namespace, Status: lq.Status, Cursor: lq.Cursor, Limit: lq.Limit}
}

// sandboxJSON is one entry of /api/sandboxes: the registry entry plus its
// idle time.
type sandboxJSON struct {
	events.Entry
	IdleSeconds float64 `json:"idle_seconds"`
}

// sandboxList is the body of /api/sandboxes.
type sandboxList struct {
	Sandboxes  []sandboxJSON `json:"sandboxes"`
	NextCursor string        `json:"next_cursor,omitempty"`
}

func (d *Dashboard) list(ctx context.Context, lq listQuery) ([]events.Entry, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	entries, next, err := d.store.List(ctx, lq.options())
	if err != nil {
		d.log.WarnContext(ctx, "list sandboxes", "err", err)
		return nil, "", errors.New("cannot read the sandbox registry")
	}
	return entries, next, nil
}

func (d *Dashboard) apiSandboxes(w http.ResponseWriter, r *http.Request) {
	lq, err := parseListQuery(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	entries, next, err := d.list(r.Context(), lq)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	now := d.now()
	out := sandboxList{Sandboxes: make([]sandboxJSON, 0, len(entries)), NextCursor: next}
	for _, e := range entries {
		out.Sandboxes = append(out.Sandboxes, sandboxJSON{Entry: e, IdleSeconds: idle(now, e.LastUsed).Seconds()})
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func idle(now, lastUsed time.Time) time.Duration {
	if lastUsed.IsZero() || now.Before(lastUsed) {
		return 0
	}
	return now.Sub(lastUsed)
}

//go:embed sandboxes.html
var sandboxesHTML string

var sandboxesTmpl = template.Must(template.New("sandboxes").Funcs(template.FuncMap{
	"pathEscape": url.PathEscape,
}).Parse(sandboxesHTML))

// matches reports whether e is kept by the search.
func (lq listQuery) matches(e events.Entry) bool {
	return lq.Search == "" || strings.Contains(strings.ToLower(e.Namespace+"/"+e.Name), strings.ToLower(lq.Search))
}

type pageData struct {
	Query          listQuery
	Statuses       []string
	Rows           []pageRow
	NextURL        string
	Error          string
	Refresh        int
	Generated      string
	MonitoringPath string
}

type pageRow struct {
	Namespace, Name, SandboxID, Provider, Status, Error, Watcher string
	Servers                                                      []pageServer
	LastEvent, LastEventAt                                       string
	Idle, LastUsed                                               string
}

type pageServer struct {
	Slug, Status, URL, Detail string
}

func (d *Dashboard) sandboxesPage(w http.ResponseWriter, r *http.Request) {
	data := pageData{
		Statuses:       sandboxStatuses,
		Refresh:        int(d.refresh / time.Second),
		MonitoringPath: d.rootPath + "/",
	}
	now := d.now()
	data.Generated = now.UTC().Format(time.RFC3339)
	status := http.StatusOK
	lq, err := parseListQuery(r.URL.Query())
	data.Query = lq
	if err != nil {
		status, data.Error = http.StatusBadRequest, err.Error()
	} else if entries, next, err := d.list(r.Context(), lq); err != nil {
		status, data.Error = http.StatusInternalServerError, err.Error()
	} else {
		for _, e := range entries {
			if lq.matches(e) {
				data.Rows = append(data.Rows, newPageRow(now, e))
			}
		}
		if next != "" {
			q := url.Values{"cursor": {next}, "limit": {strconv.Itoa(lq.Limit)}}
			if lq.Search != "" {
				q.Set("q", lq.Search)
			}
			if lq.Namespace != "" {
				q.Set("namespace", lq.Namespace)
			}
			if lq.Status != "" {
				q.Set("status", lq.Status)
			}
			data.NextURL = "/sandboxes?" + q.Encode()
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	tmpl := "sandboxes"
	if r.URL.Query().Get("fragment") == "rows" {
		tmpl = "rows" // the page's script swaps the table rows
	}
	if err := sandboxesTmpl.ExecuteTemplate(w, tmpl, data); err != nil {
		d.log.WarnContext(r.Context(), "render sandboxes page", "err", err)
	}
}

func newPageRow(now time.Time, e events.Entry) pageRow {
	row := pageRow{
		Namespace: e.Namespace, Name: e.Name, SandboxID: e.SandboxID, Provider: e.Provider,
		Status: e.Status, Error: e.Error, Watcher: e.Watcher,
		Idle: "-", LastUsed: "-",
	}
	if !e.LastUsed.IsZero() {
		row.Idle = humanDuration(idle(now, e.LastUsed))
		row.LastUsed = e.LastUsed.UTC().Format(time.RFC3339)
	}
	slugs := make([]string, 0, len(e.Servers))
	for s := range e.Servers {
		slugs = append(slugs, s)
	}
	slices.Sort(slugs)
	for _, slug := range slugs {
		st := e.Servers[slug]
		ps := pageServer{Slug: slug, Status: st.Status, URL: st.URL}
		var detail []string
		if st.Port != 0 {
			detail = append(detail, "port "+strconv.Itoa(st.Port))
		}
		if st.ExitCode != nil {
			detail = append(detail, "exit "+strconv.Itoa(*st.ExitCode))
		}
		if st.Error != "" {
			detail = append(detail, st.Error)
		}
		ps.Detail = strings.Join(detail, ", ")
		row.Servers = append(row.Servers, ps)
	}
	if ev := e.LastEvent; ev != nil {
		desc := ev.Type + " " + ev.Status
		if ev.ServerName != "" {
			desc = ev.Type + " " + ev.ServerName + " " + ev.Status
		}
		row.LastEvent = desc
		if !ev.Timestamp.IsZero() {
			row.LastEventAt = ev.Timestamp.UTC().Format(time.RFC3339)
		}
	}
	return row
}

// humanDuration formats d to the second ("3m12s"), with days for long
// idle times ("2d4h").
func humanDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d >= 24*time.Hour {
		days := d / (24 * time.Hour)
		hours := (d % (24 * time.Hour)) / time.Hour
		return fmt.Sprintf("%dd%dh", days, hours)
	}
	return d.String()
}
