package dashboard

import (
	"bytes"
	"context"
	_ "embed"
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

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// ServerLogsFunc reads the recent output of a project's server (the
// daemon's GET /servers/{slug}/logs); Config.ServerLogs.
type ServerLogsFunc func(ctx context.Context, p tasks.Project, slug string) (string, error)

// TaskLister reads a project's task index; *tasks.Client implements it.
type TaskLister interface {
	ProjectTasks(ctx context.Context, p tasks.Project, opts tasks.ListOptions) ([]tasks.TaskRecord, error)
}

// Limits of the project page.
const (
	pageTasks      = 100 // newest tasks read from the index
	pageEvents     = 100 // newest events read from the stream
	pageItems      = 300 // timeline entries shown
	streamPoll     = 2 * time.Second
	streamMaxAge   = 10 * time.Minute
	streamBeat     = 15 * time.Second
	streamDeadline = 30 * time.Second
)

//go:embed project.html
var projectHTML string

var projectTmpl = template.Must(template.New("project").Funcs(template.FuncMap{
	"pathEscape": url.PathEscape,
}).Parse(projectHTML))

// projectView is what the project page shows.
type projectView struct {
	Namespace, Name string
	Found           bool
	Entry           events.Entry
	LastUsed        string
	Servers         []serverView
	Timeline        []timelineItem
	Warnings        []string
	MonitoringPath  string
}

type serverView struct {
	Slug, Status, URL, Detail string
	Logs, LogsError           string
}

// timelineItem is one line of the timeline: a step of a task or an event.
type timelineItem struct {
	At                 time.Time
	Kind               string // "task" or "event"
	Title, Detail      string
	Class              string // a status word, for colour
	TaskID, Link, Logs string
}

// When is the item's time as the page shows it.
func (i timelineItem) When() string { return i.At.UTC().Format("2006-01-02 15:04:05.000") }

// projectOf reads and validates {namespace} and {name}.
func projectOf(r *http.Request) (tasks.Project, error) {
	p := tasks.Project{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
	if err := p.Validate(); err != nil {
		return p, err
	}
	return p.Normalize(), nil
}

// logCache holds each server's last read output between builds of a
// stream, so the daemon is asked again only after a server event.
type logCache map[string]serverView

// buildView reads everything the page shows. logs, when not nil, supplies
// the servers' output instead of asking the daemon.
func (d *Dashboard) buildView(ctx context.Context, p tasks.Project, logs logCache) projectView {
	v := projectView{Namespace: p.Namespace, Name: p.Name, MonitoringPath: d.rootPath}
	e, err := d.store.Get(ctx, p)
	switch {
	case errors.Is(err, events.ErrNotFound):
	case err != nil:
		d.log.WarnContext(ctx, "project page: registry", "err", err)
		v.Warnings = append(v.Warnings, "cannot read the sandbox registry")
	default:
		v.Found, v.Entry = true, *e
		if !e.LastUsed.IsZero() {
			v.LastUsed = e.LastUsed.UTC().Format(time.RFC3339)
		}
		v.Servers = d.servers(ctx, p, *e, logs)
	}
	evs, err := d.newestEvents(ctx, p)
	if err != nil {
		d.log.WarnContext(ctx, "project page: events", "err", err)
		v.Warnings = append(v.Warnings, "cannot read the project's events")
	}
	recs, err := d.tasks.ProjectTasks(ctx, p, tasks.ListOptions{Limit: pageTasks})
	if err != nil {
		d.log.WarnContext(ctx, "project page: tasks", "err", err)
		v.Warnings = append(v.Warnings, "cannot read the project's tasks")
	}
	v.Timeline = d.timeline(recs, evs)
	return v
}

// servers lists the entry's servers with their recent output.
func (d *Dashboard) servers(ctx context.Context, p tasks.Project, e events.Entry, cache logCache) []serverView {
	var out []serverView
	for _, ps := range newPageRow(d.now(), e).Servers {
		sv := serverView{Slug: ps.Slug, Status: ps.Status, URL: ps.URL, Detail: ps.Detail}
		if c, ok := cache[ps.Slug]; ok && cache != nil {
			sv.Logs, sv.LogsError = c.Logs, c.LogsError
		} else if d.serverLogs != nil {
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			logs, err := d.serverLogs(lctx, p, ps.Slug)
			cancel()
			if err != nil {
				d.log.WarnContext(ctx, "project page: server logs", "slug", ps.Slug, "err", err)
				sv.LogsError = "cannot read the server's output (is the sandbox running?)"
			}
			sv.Logs = sandboxq.LogTail(logs, nil)
		}
		out = append(out, sv)
	}
	return out
}

// newestEvents returns the project's newest events, newest first. The
// stream is read backwards from its end (one XREVRANGE) and decoded by
// schema.DecodeEntry; entries that are not events are left out.
func (d *Dashboard) newestEvents(ctx context.Context, p tasks.Project) ([]schema.Event, error) {
	msgs, err := d.rdb.XRevRangeN(ctx, schema.EventsKey(p), "+", "-", pageEvents).Result()
	if err != nil {
		return nil, err
	}
	out := make([]schema.Event, 0, len(msgs))
	for _, m := range msgs {
		if e, err := schema.DecodeEntry(m); err == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// timeline merges the tasks' steps and the events, newest first.
func (d *Dashboard) timeline(recs []tasks.TaskRecord, evs []schema.Event) []timelineItem {
	var items []timelineItem
	for _, r := range recs {
		items = append(items, d.taskSteps(r)...)
	}
	for _, e := range evs {
		items = append(items, eventItem(e))
	}
	// Newest first; of two steps at the same time the later one (a task's
	// final state after its last attempt) comes first.
	slices.Reverse(items)
	slices.SortStableFunc(items, func(a, b timelineItem) int { return b.At.Compare(a.At) })
	if len(items) > pageItems {
		items = items[:pageItems]
	}
	return items
}

// taskSteps are the timeline entries of one task: enqueued, each attempt
// started and how it ended, and its final state.
func (d *Dashboard) taskSteps(r tasks.TaskRecord) []timelineItem {
	link := d.rootPath + "/queues/" + url.PathEscape(r.Queue) + "/tasks/" + url.PathEscape(r.ID)
	step := func(at time.Time, title, detail, class string) timelineItem {
		return timelineItem{At: at, Kind: "task", Title: r.Type + " " + title, Detail: detail, Class: class, TaskID: r.ID, Link: link}
	}
	items := []timelineItem{step(r.EnqueuedAt, "enqueued", "queue "+r.Queue, "pending")}
	end := r.EnqueuedAt
	for i, a := range r.Attempts {
		n := "attempt " + strconv.Itoa(i+1)
		items = append(items, step(a.StartedAt, n+" started", "", "active"))
		if a.DurationMS == 0 && a.Error == "" && i == len(r.Attempts)-1 && r.State == tasks.StateActive {
			continue // still running
		}
		end = a.StartedAt.Add(time.Duration(a.DurationMS) * time.Millisecond)
		switch {
		case a.Error != "" && i < len(r.Attempts)-1 || a.Error != "" && isLive(r.State):
			items = append(items, step(end, n+" failed, retried", a.Error, "retry"))
		case a.Error != "":
			items = append(items, step(end, n+" failed", a.Error, "failed"))
		}
	}
	switch r.State {
	case tasks.StateCompleted:
		items = append(items, step(end, "done", fmt.Sprintf("%d attempt(s)", len(r.Attempts)), "ready"))
	case tasks.StateArchived:
		it := step(end, "archived", r.LastError, "failed")
		it.Logs = resultLogs(r.Result)
		items = append(items, it)
	case tasks.StateCancelled:
		items = append(items, step(end, "cancelled", r.LastError, "stopped"))
	}
	return items
}

// resultLogs is the server output a result carries (server:start and
// server:restart that ended with the server failed or stopped).
func resultLogs(result []byte) string {
	var r struct {
		Logs string `json:"logs"`
	}
	if len(result) == 0 || json.Unmarshal(result, &r) != nil {
		return ""
	}
	return r.Logs
}

// isLive reports whether a task in state s will run again.
func isLive(s string) bool {
	return s == tasks.StateRetry || s == tasks.StatePending || s == tasks.StateScheduled || s == tasks.StateActive
}

// eventItem is the timeline entry of an event.
func eventItem(e schema.Event) timelineItem {
	it := timelineItem{At: e.Timestamp, Kind: "event", Class: e.Status}
	var detail []string
	if e.Type == schema.EventServerStatusChanged {
		it.Title = "server " + e.ServerName + " " + e.Status
		if e.URL != "" {
			detail = append(detail, e.URL)
		}
	} else {
		it.Title = "sandbox " + e.Status
	}
	if e.ExitCode != nil {
		detail = append(detail, "exit code "+strconv.Itoa(*e.ExitCode))
	}
	if e.Error != "" {
		detail = append(detail, e.Error)
	}
	it.Detail = strings.Join(detail, ", ")
	it.Logs = eventLogs(e)
	return it
}

// render executes one named template of the page into a string.
func render(name string, v projectView) (string, error) {
	var b bytes.Buffer
	if err := projectTmpl.ExecuteTemplate(&b, name, v); err != nil {
		return "", err
	}
	return b.String(), nil
}

// projectPage is GET /sandboxes/{namespace}/{name}.
func (d *Dashboard) projectPage(w http.ResponseWriter, r *http.Request) {
	p, err := projectOf(r)
	if err != nil {
		http.Error(w, "bad project: "+err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	v := d.buildView(ctx, p, nil)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := projectTmpl.Execute(w, v); err != nil {
		d.log.WarnContext(ctx, "render project page", "err", err)
	}
}
