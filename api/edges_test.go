package api

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/tasks"
)

// TestEnqueueQueueMustBeServed: ?queue= naming a queue no worker of this
// deployment serves is a 400 that lists the served ones, and nothing is
// enqueued (such a task would wait forever and grow /metrics).
func TestEnqueueQueueMustBeServed(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	eb := b.expectError(t, request{method: "POST", path: "/tasks/command:run?queue=made-up-1", body: `{"name":"shop","command":"true"}`}, http.StatusBadRequest, "queue")
	for _, q := range []string{tasks.QueueCritical, tasks.QueueDefault, tasks.QueueMaintenance} {
		if !strings.Contains(eb.Error, q) {
			t.Errorf("error %q does not list served queue %s", eb.Error, q)
		}
	}
	queues, err := b.insp.Queues()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range queues {
		if q == "made-up-1" {
			t.Fatalf("queue made-up-1 was created: %v", queues)
		}
	}
	var got enqueued
	b.expect(t, request{method: "POST", path: "/tasks/command:run?queue=critical", body: `{"name":"shop","command":"true"}`}, http.StatusAccepted, &got)
	if got.Queue != tasks.QueueCritical {
		t.Fatalf("queue %q, want critical", got.Queue)
	}
}

// TestTaskLookupAfterRedisRestartedEmpty: the asynq client records a queue
// in asynq:queues only the first time it enqueues there; after Redis lost
// everything, a task enqueued through the same API must still be found.
func TestTaskLookupAfterRedisRestartedEmpty(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	body := `{"name":"shop","command":"true"}`
	var first enqueued
	b.expect(t, request{method: "POST", path: "/tasks/command:run", body: body}, http.StatusAccepted, &first)
	b.expect(t, request{method: "GET", path: "/tasks/" + first.Queue + "/" + first.ID}, http.StatusOK, nil)
	if err := b.rdb.FlushDB(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	var second enqueued
	b.expect(t, request{method: "POST", path: "/tasks/command:run", body: body}, http.StatusAccepted, &second)
	var st tasks.Result
	b.expect(t, request{method: "GET", path: "/tasks/" + second.Queue + "/" + second.ID}, http.StatusOK, &st)
	if st.ID != second.ID || st.State != "pending" {
		t.Fatalf("task after the restart: %+v", st)
	}
}

// TestEventsLastEventIDOutOfRange: an id beyond Redis's 64-bit parts is a
// 400 saying so, not a 200 stream that ends at once.
func TestEventsLastEventIDOutOfRange(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for _, id := range []string{"99999999999999999999-0", "1-99999999999999999999", "18446744073709551616"} {
		eb := b.expectError(t, request{method: "GET", path: "/projects/default/shop/events", header: map[string]string{"Last-Event-ID": id}}, http.StatusBadRequest, "Last-Event-ID")
		if !strings.Contains(eb.Error, "out of range") {
			t.Errorf("Last-Event-ID %s: error %q does not say it is out of range", id, eb.Error)
		}
	}
	eb := b.expectError(t, request{method: "GET", path: "/projects/default/shop/events?from=12-x"}, http.StatusBadRequest, "from")
	if !strings.Contains(eb.Error, "not an event id") {
		t.Errorf("malformed from: %q", eb.Error)
	}
}

// TestEnqueueRejectsInvalidUTF8: invalid UTF-8 in a name, namespace or path
// is a 400 naming the field; encoding/json would fold it to U+FFFD and
// make two byte strings one project.
func TestEnqueueRejectsInvalidUTF8(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for _, c := range []struct{ typ, body, field string }{
		{"command:run", "{\"name\":\"sh\xffop\",\"command\":\"true\"}", "name"},
		{"sandbox:ensure", "{\"namespace\":\"ac\xc3me\",\"name\":\"shop\"}", "namespace"},
		{"files:write", "{\"name\":\"shop\",\"files\":[{\"path\":\"a.txt\",\"content\":\"x\"},{\"path\":\"b\xfe.txt\",\"content\":\"y\"}]}", "files[1].path"},
		{"command:run", "{\"name\":\"shop\",\"command\":\"true\",\"env\":{\"A\":\"\xff\"}}", "env.A"},
	} {
		eb := b.expectError(t, request{method: "POST", path: "/tasks/" + c.typ, body: c.body}, http.StatusBadRequest, c.field)
		if !strings.Contains(eb.Error, "UTF-8") {
			t.Errorf("%s: error %q does not mention UTF-8", c.typ, eb.Error)
		}
	}
	b.expectError(t, request{method: "GET", path: "/projects/default/sh%FFop"}, http.StatusBadRequest, "name")
}

// TestEnsureTimeoutBounded: sandbox:ensure timeout_ms is at most 24 h.
func TestEnsureTimeoutBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.expectError(t, request{method: "POST", path: "/tasks/sandbox:ensure", body: `{"name":"shop","timeout_ms":86400001}`}, http.StatusBadRequest, "timeout_ms")
	b.expect(t, request{method: "POST", path: "/tasks/sandbox:ensure", body: `{"name":"shop","timeout_ms":86400000}`}, http.StatusAccepted, nil)
}

// TestParseWaitErrors: every bad wait= gets a message that names what is
// wrong; huge finite numbers are capped like long durations.
func TestParseWaitErrors(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"NaN": "finite", "nan": "finite", "Inf": "finite", "-Inf": "negative", "1e400": "finite",
		"-1": "negative", "-0.5": "negative", "-1s": "negative", "soon": "not a duration",
	} {
		d, msg := parseWait(in, time.Minute)
		if !strings.Contains(msg, want) {
			t.Errorf("parseWait(%q) = %v, %q; want a message with %q", in, d, msg, want)
		}
	}
	for _, in := range []string{"1e300", "1e18", "9999999999"} {
		if d, msg := parseWait(in, time.Minute); msg != "" || d != time.Minute {
			t.Errorf("parseWait(%q) = %v, %q; want the 1m cap", in, d, msg)
		}
	}
}

// TestRedactCredentialLikeMetadata: a credential-like key at any depth
// (x-api-key in metadata) is redacted, whatever its value's type.
func TestRedactCredentialLikeMetadata(t *testing.T) {
	t.Parallel()
	raw := `{"sandbox_id":"s1","metadata":{"x-api-key":"k-123","authToken":42,"db":{"password":"p"},"team":"blue","author":"ann"}}`
	var got struct {
		Metadata map[string]any `json:"metadata"`
	}
	if err := json.Unmarshal(redactJSON(json.RawMessage(raw)), &got); err != nil {
		t.Fatal(err)
	}
	m := got.Metadata
	if m["x-api-key"] != "[redacted]" || m["authToken"] != "[redacted]" || m["db"].(map[string]any)["password"] != "[redacted]" {
		t.Errorf("credentials not redacted: %v", m)
	}
	if m["team"] != "blue" || m["author"] != "ann" {
		t.Errorf("plain metadata changed: %v", m)
	}
}

// TestEnqueueNeedsJSONContentType: a body without Content-Type (a no-cors
// fetch of a Blob) or with text/plain is 415, also when the API is mounted
// without the worker's guard.
func TestEnqueueNeedsJSONContentType(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for _, ct := range []string{"", "text/plain;charset=UTF-8"} {
		r, err := http.NewRequestWithContext(t.Context(), "POST", b.base+"/tasks/command:run", strings.NewReader(`{"name":"shop","command":"true"}`))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer "+testToken)
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("Content-Type %q: status %d, want 415", ct, resp.StatusCode)
		}
	}
}

// TestTaskLookupOfOtherProducerAfterRedisRestartedEmpty: a task enqueued
// after the restart by another long-running producer (whose asynq client
// will not register the queue again) is still found by the API.
func TestTaskLookupOfOtherProducerAfterRedisRestartedEmpty(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	producer := tasks.NewClient(b.rdb)
	if _, err := producer.RunCommand(t.Context(), tasks.CommandRun{Project: tasks.Project{Name: "shop"}, Command: "true"}); err != nil {
		t.Fatal(err)
	}
	if err := b.rdb.FlushDB(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	e, err := producer.RunCommand(t.Context(), tasks.CommandRun{Project: tasks.Project{Name: "shop"}, Command: "true"})
	if err != nil {
		t.Fatal(err)
	}
	var st tasks.Result
	b.expect(t, request{method: "GET", path: "/tasks/" + e.Queue + "/" + e.ID}, http.StatusOK, &st)
	if st.ID != e.ID {
		t.Fatalf("got %+v", st)
	}
}

// TestEventStreamEndsAfterMaxStream: the worker's server has no write
// timeout, so an event stream bounds itself: it ends after MaxStream and
// the client reconnects with Last-Event-ID.
func TestEventStreamEndsAfterMaxStream(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *Config) { o.MaxStream = 300 * time.Millisecond; o.Heartbeat = 50 * time.Millisecond })
	r, err := http.NewRequestWithContext(ctxTimeout(t, 20*time.Second), "GET", b.base+"/projects/default/shop/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("stream did not end on its own (%v) after %q", err, body)
	}
	if !strings.Contains(string(body), "retry:") {
		t.Fatalf("stream body %q", body)
	}
}
