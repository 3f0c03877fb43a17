package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/internal/eventhub"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// projectOf reads and validates {namespace} and {name}; on a bad value it
// answers 400 naming the field and returns false.
func projectOf(w http.ResponseWriter, r *http.Request) (tasks.Project, bool) {
	p := tasks.Project{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
	if err := p.Validate(); err != nil {
		var ve *tasks.ValidationError
		if errors.As(err, &ve) {
			writeError(w, http.StatusBadRequest, ve.Error(), ve.Field)
		} else {
			writeError(w, http.StatusBadRequest, err.Error(), "")
		}
		return p, false
	}
	return p.Normalize(), true
}

// getProject is GET /projects/{namespace}/{name}: the registry entry.
func (a *API) getProject(w http.ResponseWriter, r *http.Request) {
	p, ok := projectOf(w, r)
	if !ok {
		return
	}
	if a.opts.Store == nil {
		writeError(w, http.StatusServiceUnavailable, "the project registry is not configured on this server", "")
		return
	}
	e, err := a.opts.Store.Get(r.Context(), p)
	switch {
	case errors.Is(err, events.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("project %s/%s has no sandbox in the registry", p.Namespace, p.Name), "")
		return
	case err != nil:
		a.internalError(w, r, "project registry", err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

// streamIDRE matches what an event stream may resume from: a Redis stream
// id ("1732600000000-0", or its millisecond part), "0" (all retained
// history) or "$" (only new events).
var streamIDRE = regexp.MustCompile(`^(\$|[0-9]{1,20}(-[0-9]{1,20})?)$`)

// checkStreamID says what is wrong with an id to resume from ("" if
// nothing): not of the form, or a part beyond Redis's 64-bit range (which
// Redis would refuse, ending the stream at once and leaving a browser to
// reconnect with the same id forever).
func checkStreamID(id string) string {
	if !streamIDRE.MatchString(id) {
		return "is not an event id (such as 1732600000000-0), 0 (all retained events) or $ (new events only)"
	}
	if id == "$" {
		return ""
	}
	ms, seq, _ := strings.Cut(id, "-")
	for _, part := range []string{ms, seq} {
		if part == "" {
			continue
		}
		if _, err := strconv.ParseUint(part, 10, 64); err != nil {
			return fmt.Sprintf("is out of range: both parts of an event id are at most %d", uint64(math.MaxUint64))
		}
	}
	return ""
}

// streamWriteTimeout bounds each write of an event stream.
const streamWriteTimeout = 30 * time.Second

// eventsBatch is how many events one read of the stream returns.
const eventsBatch = 100

// projectEvents is GET /projects/{namespace}/{name}/events: Server-Sent
// Events from the project's Redis stream.
func (a *API) projectEvents(w http.ResponseWriter, r *http.Request) {
	p, ok := projectOf(w, r)
	if !ok {
		return
	}
	from, ok := eventsFrom(w, r)
	if !ok {
		return
	}
	ctx, cancel := a.withClosing(r.Context())
	defer cancel()
	// The server has no write timeout: a stream has its own maximum
	// duration (a browser reconnects with Last-Event-ID) and a deadline per
	// write, so a reader that stopped reading cannot hold it.
	ctx, cancelMax := context.WithTimeout(ctx, a.opts.MaxStream)
	defer cancelMax()
	a.streams.Add(1)
	defer a.streams.Add(-1)

	// Subscribe before the first read: an event published after it wakes
	// the loop even if it lands between a read and the wait.
	sub, err := a.hub.Subscribe(ctx, p)
	if errors.Is(err, eventhub.ErrClosed) {
		writeError(w, http.StatusServiceUnavailable, "the server is shutting down; reconnect to another instance or later", "")
		return
	}
	if err != nil {
		a.internalError(w, r, "subscribe to events", err)
		return
	}
	defer sub.Close()
	if from == "$" {
		if from, err = schema.LastEventID(ctx, a.opts.Redis, p); err != nil {
			a.internalError(w, r, "read events", err)
			return
		}
	}

	s := startSSE(w)
	// retry: how long a browser EventSource waits before it reconnects.
	fmt.Fprintf(s.bw, "retry: 2000\n: stream of %s/%s from %s\n\n", p.Namespace, p.Name, from)
	if s.flush() != nil {
		return
	}
	a.streamEvents(ctx, s, sub.Wake(), p, from)
}

// eventsFrom reads where an event stream starts: Last-Event-ID, else
// ?from=, else "$" (only new events). A bad value or an unknown query
// parameter is answered with 400 and ok false.
func eventsFrom(w http.ResponseWriter, r *http.Request) (from string, ok bool) {
	from, field := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if from == "" {
		from, field = r.URL.Query().Get("from"), "from"
	}
	if from == "" {
		from = "$"
	}
	if msg := checkStreamID(from); msg != "" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s %q %s", field, from, msg), field)
		return "", false
	}
	for k := range r.URL.Query() {
		if k != "from" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown query parameter %q; known: from", k), k)
			return "", false
		}
	}
	return from, true
}

// sseWriter is the buffered body of an event stream.
type sseWriter struct {
	bw *bufio.Writer
	rc *http.ResponseController
}

// startSSE writes the headers of an event stream.
func startSSE(w http.ResponseWriter) sseWriter {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream outlives any server write timeout
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	return sseWriter{bw: bufio.NewWriter(w), rc: rc}
}

// flush sends what is buffered, under a deadline of streamWriteTimeout.
func (s sseWriter) flush() error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if err := s.bw.Flush(); err != nil {
		return err
	}
	return s.rc.Flush()
}

// streamEvents writes the project's events after last until ctx is done or
// a write fails, woken by wake, by the poll interval, and writing a
// heartbeat comment when the stream was idle.
func (a *API) streamEvents(ctx context.Context, s sseWriter, wake <-chan struct{}, p tasks.Project, last string) {
	heartbeat := time.NewTicker(a.opts.Heartbeat)
	defer heartbeat.Stop()
	poll := time.NewTicker(a.opts.EventsPollInterval)
	defer poll.Stop()
	lastWrite := time.Now()
	for {
		n, next, ok := a.sendEvents(ctx, s, p, last)
		if !ok {
			return
		}
		last = next
		if n > 0 {
			lastWrite = time.Now()
		}
		if n == eventsBatch || n < 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-poll.C:
		case now := <-heartbeat.C:
			if now.Sub(lastWrite) >= a.opts.Heartbeat/2 {
				fmt.Fprint(s.bw, ": heartbeat\n\n")
				if s.flush() != nil {
					return
				}
				lastWrite = now
			}
		}
	}
}

// sendEvents writes one batch of the events after last and returns how
// many it wrote (-1 when it skipped an entry that is not an event and the
// caller should read again at once), the new cursor, and false when the
// stream must end.
func (a *API) sendEvents(ctx context.Context, s sseWriter, p tasks.Project, last string) (int, string, bool) {
	rdb := a.opts.Redis
	evs, err := schema.ReadEvents(ctx, rdb, p, last, eventsBatch, 0)
	if ctx.Err() != nil {
		return 0, last, false
	}
	for _, e := range evs {
		b, _ := json.Marshal(e)
		fmt.Fprintf(s.bw, "id: %s\nevent: %s\ndata: %s\n\n", e.ID, e.Type, b)
		last = e.ID
	}
	if err != nil {
		// An entry that is not an event: skip it, never stall on it.
		next, nerr := nextEntryID(ctx, rdb, p, last)
		if nerr != nil || next == "" {
			a.log.WarnContext(ctx, "read events", "namespace", p.Namespace, "name", p.Name, "err", err.Error())
			_ = s.flush()
			return 0, last, false
		}
		a.log.WarnContext(ctx, "skipping a stream entry that is not an event", "namespace", p.Namespace, "name", p.Name, "entry", next, "err", err.Error())
		return -1, next, true
	}
	if len(evs) > 0 && s.flush() != nil {
		return 0, last, false
	}
	return len(evs), last, true
}

// nextEntryID returns the id of the stream entry after last ("" if none).
func nextEntryID(ctx context.Context, rdb redis.UniversalClient, p tasks.Project, last string) (string, error) {
	start := "(" + last
	if last == "0" {
		start = "-"
	}
	msgs, err := rdb.XRangeN(ctx, schema.EventsKey(p), start, "+", 1).Result()
	if err != nil || len(msgs) == 0 {
		return "", err
	}
	return msgs[0].ID, nil
}
