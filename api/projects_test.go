package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sandboxq/sandboxq/events"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

func TestGetProject(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	p := tasks.Project{Namespace: "team/a", Name: "shop"}
	path := "/projects/" + url.PathEscape(p.Namespace) + "/" + p.Name
	b.expectError(t, request{method: "GET", path: path}, http.StatusNotFound, "")
	if err := b.store.Upsert(t.Context(), p, "sbx_123", "local"); err != nil {
		t.Fatal(err)
	}
	var e events.Entry
	b.expect(t, request{method: "GET", path: path}, http.StatusOK, &e)
	if e.Namespace != p.Namespace || e.Name != p.Name || e.SandboxID != "sbx_123" || e.Provider != "local" || e.Status == "" {
		t.Fatalf("entry %+v", e)
	}
	var raw map[string]any
	b.expect(t, request{method: "GET", path: path}, http.StatusOK, &raw)
	for _, k := range []string{"namespace", "name", "sandbox_id", "provider", "status", "servers", "last_event", "last_used", "created_at", "updated_at", "watcher"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("entry JSON lacks %q: %v", k, raw)
		}
	}
	b.expectError(t, request{method: "GET", path: "/projects/default/" + url.PathEscape("a b")}, http.StatusBadRequest, "name")
	b.expectError(t, request{method: "GET", path: "/projects/" + url.PathEscape("{x}") + "/shop"}, http.StatusBadRequest, "namespace")

	noStore := setup(t, func(o *Config) { o.Store = nil })
	eb := noStore.expectError(t, request{method: "GET", path: path}, http.StatusServiceUnavailable, "")
	if !strings.Contains(eb.Error, "registry") {
		t.Errorf("error %q does not say what is missing", eb.Error)
	}
}

// sseEvent is one parsed Server-Sent Event (or comment).
type sseEvent struct {
	id, event, data string
	comment         string
}

// sseStream is an open event stream.
type sseStream struct {
	events chan sseEvent
	done   chan error // the read loop's end: nil on EOF
	cancel context.CancelFunc
	resp   *http.Response
}

// openStream opens GET path with the given headers and parses the stream
// in a goroutine that ends when the stream does; close cancels it.
func (b *testBundle) openStream(t *testing.T, path string, header map[string]string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	r, err := http.NewRequestWithContext(ctx, "GET", b.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+testToken)
	r.Header.Set("Accept", "text/event-stream")
	for k, v := range header {
		r.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		cancel()
		resp.Body.Close()
		t.Fatalf("GET %s: status %d, Content-Type %q", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sseStream{events: make(chan sseEvent, 1000), done: make(chan error, 1), cancel: cancel, resp: resp}
	go func() {
		defer resp.Body.Close()
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var cur sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur != (sseEvent{}) {
					s.events <- cur
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, ":"):
				cur.comment = strings.TrimSpace(line[1:])
			default:
				k, v, _ := strings.Cut(line, ":")
				v = strings.TrimPrefix(v, " ")
				switch k {
				case "id":
					cur.id = v
				case "event":
					cur.event = v
				case "data":
					cur.data = v
				}
			}
		}
		s.done <- sc.Err()
	}()
	t.Cleanup(s.close)
	return s
}

func (s *sseStream) close() { s.cancel() }

// next returns the next event that is not a comment.
func (s *sseStream) next(t *testing.T) sseEvent {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case e, ok := <-s.events:
			if !ok {
				t.Fatal("stream ended")
			}
			if e.id == "" && e.event == "" && e.data == "" {
				continue
			}
			return e
		case <-timeout:
			t.Fatal("timed out waiting for an event")
		}
	}
}

// appendEvent XADDs an event in the format of the events store, and
// publishes it too when publish is set.
func appendEvent(t *testing.T, rdb redis.UniversalClient, p tasks.Project, status string, publish bool) string {
	t.Helper()
	id, err := addEvent(t.Context(), rdb, p, status, publish)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func addEvent(ctx context.Context, rdb redis.UniversalClient, p tasks.Project, status string, publish bool) (string, error) {
	ev := tasks.Event{Type: tasks.EventServerStatusChanged, Namespace: p.Namespace, Name: p.Name, SandboxID: "sbx_1",
		Timestamp: time.Now().UTC(), ServerName: "web", Status: status}
	raw, err := json.Marshal(ev)
	if err != nil {
		return "", err
	}
	stored := strings.Replace(string(raw), `{"id":"",`, `{`, 1)
	id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: schema.EventsKey(p), Values: map[string]any{schema.EventField: stored}}).Result()
	if err != nil {
		return "", err
	}
	if publish {
		ev.ID = id
		pub, _ := json.Marshal(ev)
		if err := rdb.Publish(ctx, schema.EventsChannel(p), pub).Err(); err != nil {
			return "", err
		}
	}
	return id, nil
}

// checkEvent checks that an SSE event carries the stream entry id.
func checkEvent(t *testing.T, e sseEvent, wantID string) {
	t.Helper()
	if e.id != wantID || e.event != tasks.EventServerStatusChanged {
		t.Fatalf("event id %q type %q, want id %q type %s", e.id, e.event, wantID, tasks.EventServerStatusChanged)
	}
	var ev tasks.Event
	if err := json.Unmarshal([]byte(e.data), &ev); err != nil {
		t.Fatalf("data %q: %v", e.data, err)
	}
	if ev.ID != wantID || ev.Type != e.event || ev.ServerName != "web" {
		t.Fatalf("data %s does not match id %s", e.data, wantID)
	}
}

// TestEventsResume reads part of a project's events, drops the connection,
// appends more, and resumes with Last-Event-ID: every event arrives exactly
// once and in order, including events appended with and without a publish
// while the stream is open.
func TestEventsResume(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *Config) { o.EventsPollInterval = 100 * time.Millisecond })
	p := tasks.Project{Namespace: "default", Name: "shop"}
	path := "/projects/default/shop/events"
	var all []string
	for i := range 5 {
		all = append(all, appendEvent(t, b.rdb, p, fmt.Sprintf("s%d", i), false))
	}
	// Events of another project never show up.
	appendEvent(t, b.rdb, tasks.Project{Namespace: "default", Name: "other"}, "x", true)

	var got []string
	s1 := b.openStream(t, path+"?from=0", nil)
	for range 3 {
		e := s1.next(t)
		checkEvent(t, e, all[len(got)])
		got = append(got, e.id)
	}
	s1.close() // forced disconnect
	testutil.Eventually(t, "the stream to end on disconnect", 10*time.Second, func() bool { return b.api.streams.Load() == 0 })

	for i := range 3 {
		all = append(all, appendEvent(t, b.rdb, p, fmt.Sprintf("t%d", i), i%2 == 0))
	}
	s2 := b.openStream(t, path+"?from=0", map[string]string{"Last-Event-ID": got[len(got)-1]})
	for len(got) < len(all) {
		e := s2.next(t)
		checkEvent(t, e, all[len(got)])
		got = append(got, e.id)
	}
	// Live: a published event, then one appended without a publish (found
	// by the stream's periodic re-read).
	for i, publish := range []bool{true, false} {
		all = append(all, appendEvent(t, b.rdb, p, fmt.Sprintf("live%d", i), publish))
		e := s2.next(t)
		checkEvent(t, e, all[len(got)])
		got = append(got, e.id)
	}
	if !slices.Equal(got, all) {
		t.Fatalf("received %q, want %q", got, all)
	}
	s2.close()
	testutil.Eventually(t, "the stream to end", 10*time.Second, func() bool { return b.api.streams.Load() == 0 })
	testutil.Eventually(t, "the hub to drop its subscriptions", 10*time.Second, func() bool {
		return b.api.hub.Idle()
	})
}

// TestEventsLiveByDefault checks that a stream without a starting point
// sends only new events, and that the published wake-up brings them
// without waiting for the periodic re-read.
func TestEventsLiveByDefault(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *Config) { o.EventsPollInterval = time.Hour })
	p := tasks.Project{Namespace: "default", Name: "shop"}
	appendEvent(t, b.rdb, p, "old", true)
	s := b.openStream(t, "/projects/default/shop/events", nil)
	// The subscription exists once the stream has answered.
	id := appendEvent(t, b.rdb, p, "new", true)
	checkEvent(t, s.next(t), id)
}

func TestEventsHeartbeatAndClose(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *Config) { o.Heartbeat = 30 * time.Millisecond })
	s := b.openStream(t, "/projects/default/shop/events", nil)
	beats := 0
	timeout := time.After(15 * time.Second)
	for beats < 2 {
		select {
		case e := <-s.events:
			if e.comment == "heartbeat" {
				beats++
			}
		case <-timeout:
			t.Fatal("no heartbeats")
		}
	}
	// Close ends the open stream: the client sees the end of the body.
	if err := b.api.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("stream ended with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("stream still open after Close")
	}
}

func TestEventsBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.expectError(t, request{method: "GET", path: "/projects/default/shop/events", header: map[string]string{"Last-Event-ID": "yesterday"}}, http.StatusBadRequest, "Last-Event-ID")
	b.expectError(t, request{method: "GET", path: "/projects/default/shop/events?from=1-2-3"}, http.StatusBadRequest, "from")
	b.expectError(t, request{method: "GET", path: "/projects/default/shop/events?since=0"}, http.StatusBadRequest, "since")
	b.expectError(t, request{method: "GET", path: "/projects/default/" + url.PathEscape("a\tb") + "/events"}, http.StatusBadRequest, "name")
}

// TestEventsSkipsBadEntries checks that an entry that is not an event does
// not stall the stream.
func TestEventsSkipsBadEntries(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	p := tasks.Project{Namespace: "default", Name: "shop"}
	first := appendEvent(t, b.rdb, p, "a", false)
	if err := b.rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: schema.EventsKey(p), Values: map[string]any{"junk": "1"}}).Err(); err != nil {
		t.Fatal(err)
	}
	last := appendEvent(t, b.rdb, p, "b", false)
	s := b.openStream(t, "/projects/default/shop/events?from=0", nil)
	checkEvent(t, s.next(t), first)
	checkEvent(t, s.next(t), last)
}
