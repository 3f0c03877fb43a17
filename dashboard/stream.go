package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sandboxq/sandboxq/internal/eventhub"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// viewParts are the rendered sections of the project page; the page's
// script swaps each into place.
type viewParts struct {
	Head     string `json:"head"`
	Servers  string `json:"servers"`
	Timeline string `json:"timeline"`
}

func renderParts(v projectView) (viewParts, error) {
	var p viewParts
	var err error
	if p.Head, err = render("head", v); err != nil {
		return p, err
	}
	if p.Servers, err = render("servers", v); err != nil {
		return p, err
	}
	p.Timeline, err = render("timeline", v)
	return p, err
}

// projectStream is GET /api/sandboxes/{namespace}/{name}/stream: Server-
// Sent Events, each "view" event the page's sections rendered anew, sent
// when they change. It wakes on the project's events (shared pub/sub
// subscription, eventhub) and re-reads every streamPoll for task changes,
// which publish nothing. Server logs are read from the daemon on the
// first view and again after each new event only.
func (d *Dashboard) projectStream(w http.ResponseWriter, r *http.Request) {
	p, err := projectOf(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad project: " + err.Error()})
		return
	}
	ctx, cancel := d.withClosing(r.Context())
	defer cancel()
	ctx, cancelMax := context.WithTimeout(ctx, streamMaxAge) // the browser reconnects
	defer cancelMax()
	sub, err := d.hub.Subscribe(ctx, p)
	if errors.Is(err, eventhub.ErrClosed) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the server is shutting down"})
		return
	}
	if err != nil {
		d.log.WarnContext(ctx, "project stream: subscribe", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "cannot subscribe to the project's events"})
		return
	}
	defer sub.Close()
	last, err := schema.LastEventID(ctx, d.rdb, p)
	if err != nil {
		d.log.WarnContext(ctx, "project stream: events", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "cannot read the project's events"})
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &viewStream{d: d, p: p, last: last, bw: bufio.NewWriter(w), rc: rc}
	s.run(ctx, sub.Wake())
}

// viewStream is one open stream of a project page.
type viewStream struct {
	d    *Dashboard
	p    tasks.Project
	last string // id of the newest event seen
	bw   *bufio.Writer
	rc   *http.ResponseController
	sent []byte
	logs logCache
}

func (s *viewStream) run(ctx context.Context, wake <-chan struct{}) {
	poll := time.NewTicker(streamPoll)
	defer poll.Stop()
	beat := time.NewTicker(streamBeat)
	defer beat.Stop()
	fmt.Fprint(s.bw, "retry: 2000\n\n")
	for {
		if !s.update(ctx) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-poll.C:
		case <-beat.C:
			fmt.Fprint(s.bw, ": heartbeat\n\n")
			if s.flush() != nil {
				return
			}
		}
	}
}

// update reads new events (each invalidates the cached server logs),
// rebuilds the view and sends it if it changed. False ends the stream.
func (s *viewStream) update(ctx context.Context) bool {
	evs, err := schema.ReadEvents(ctx, s.d.rdb, s.p, s.last, 1000, 0)
	if ctx.Err() != nil {
		return false
	}
	if bad, ok := errors.AsType[*schema.BadEntryError](err); ok {
		s.last = bad.ID // not an event: go on after it
	} else if err != nil {
		s.d.log.WarnContext(ctx, "project stream: events", "err", err)
	}
	if len(evs) > 0 {
		s.last, s.logs = evs[len(evs)-1].ID, nil
	}
	v := s.d.buildView(ctx, s.p, s.logs)
	if s.logs == nil {
		s.logs = logCache{}
		for _, sv := range v.Servers {
			s.logs[sv.Slug] = sv
		}
	}
	parts, err := renderParts(v)
	if err != nil {
		s.d.log.WarnContext(ctx, "project stream: render", "err", err)
		return false
	}
	b, _ := json.Marshal(parts)
	if string(b) == string(s.sent) {
		return true
	}
	s.sent = b
	fmt.Fprintf(s.bw, "event: view\ndata: %s\n\n", b)
	return s.flush() == nil
}

func (s *viewStream) flush() error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(streamDeadline))
	if err := s.bw.Flush(); err != nil {
		return err
	}
	return s.rc.Flush()
}

// withClosing returns a context that ends with ctx or when EndStreams is
// called.
func (d *Dashboard) withClosing(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(d.closing, cancel)
	return ctx, func() { stop(); cancel() }
}

// EndStreams ends the open event streams of project pages and refuses new
// ones, so that an HTTP server's Shutdown need not wait for them (register
// it with http.Server.RegisterOnShutdown). Close calls it too.
func (d *Dashboard) EndStreams() {
	d.endOnce.Do(func() {
		d.endClosing()
		d.hub.Close()
	})
}
