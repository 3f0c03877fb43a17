package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/internal/testutil"
	"github.com/sandboxq/sandboxq/tasks"
)

func TestGetTask(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	var e enqueued
	b.expect(t, request{method: "POST", path: "/tasks/command:run", body: `{"name":"shop","command":"true"}`}, http.StatusAccepted, &e)
	var st tasks.Result
	b.expect(t, request{method: "GET", path: "/tasks/" + e.Queue + "/" + e.ID}, http.StatusOK, &st)
	if st.ID != e.ID || st.Queue != e.Queue || st.Type != tasks.TypeCommandRun || st.State != tasks.StatePending || st.MaxRetry != tasks.DefaultMaxRetry || st.Retried != 0 {
		t.Fatalf("status %+v", st)
	}
	// A wait that ends before the task does answers 200 with the state.
	start := time.Now()
	b.expect(t, request{method: "GET", path: "/tasks/" + e.Queue + "/" + e.ID + "?wait=150ms"}, http.StatusOK, &st)
	if st.State != tasks.StatePending || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("after a 150ms wait: %+v in %v", st, time.Since(start))
	}
	b.expectError(t, request{method: "GET", path: "/tasks/default/no-such-id"}, http.StatusNotFound, "")
	b.expectError(t, request{method: "GET", path: "/tasks/no-such-queue/" + e.ID}, http.StatusNotFound, "")
	b.expectError(t, request{method: "GET", path: "/tasks/default/no-such-id?wait=1s"}, http.StatusNotFound, "")
	b.expectError(t, request{method: "GET", path: "/tasks/" + e.Queue + "/" + e.ID + "?wait=soon"}, http.StatusBadRequest, "wait")
	b.expectError(t, request{method: "GET", path: "/tasks/" + e.Queue + "/" + e.ID + "?wait=-1s"}, http.StatusBadRequest, "wait")
	b.expectError(t, request{method: "GET", path: "/tasks/" + e.Queue + "/" + e.ID + "?timeout=1"}, http.StatusBadRequest, "timeout")
}

func TestParseWait(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"": 0, "30s": 30 * time.Second, "500ms": 500 * time.Millisecond, "2": 2 * time.Second,
		"1.5": 1500 * time.Millisecond, "10m": time.Minute, "0": 0,
	} {
		got, msg := parseWait(in, time.Minute)
		if msg != "" || got != want {
			t.Errorf("parseWait(%q) = %v, %q; want %v", in, got, msg, want)
		}
	}
}

// TestGetTaskResultRedacted checks that a result holding env values, file
// contents or a credential comes back redacted, and that the failure fields
// (retried, last_error) are reported.
func TestGetTaskResultRedacted(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	leaky := `{"env":{"API_SECRET":"hunter2","B":"x"},"files":[{"path":"a.txt","content":"top secret text"}],"token":"tok_123","nested":{"set":{"K":"v"}},"exit_code":0}`
	var attempts atomic.Int32
	b.startProcessor(t, map[string]asynq.HandlerFunc{
		tasks.TypeCommandRun: func(ctx context.Context, task *asynq.Task) error {
			if _, err := task.ResultWriter().Write([]byte(leaky)); err != nil {
				return err
			}
			return nil
		},
		tasks.TypeServerStop: func(ctx context.Context, task *asynq.Task) error {
			if attempts.Add(1) == 1 {
				return fmt.Errorf("daemon said 503")
			}
			return fmt.Errorf("gave up: %w", asynq.SkipRetry)
		},
	})
	var e enqueued
	b.expect(t, request{method: "POST", path: "/tasks/command:run", body: `{"name":"shop","command":"true"}`}, http.StatusAccepted, &e)
	var st tasks.Result
	b.expect(t, request{method: "GET", path: "/tasks/" + e.Queue + "/" + e.ID + "?wait=20s"}, http.StatusOK, &st)
	if st.State != tasks.StateCompleted {
		t.Fatalf("state %s", st.State)
	}
	for _, secret := range []string{"hunter2", "top secret text", "tok_123", `"v"`} {
		if strings.Contains(string(st.Result), secret) {
			t.Errorf("result %s leaks %s", st.Result, secret)
		}
	}
	var res struct {
		Env   []string `json:"env"`
		Files []struct {
			Path         string `json:"path"`
			ContentBytes int    `json:"content_bytes"`
		} `json:"files"`
		Token  string `json:"token"`
		Nested struct {
			Set []string `json:"set"`
		} `json:"nested"`
	}
	if err := json.Unmarshal(st.Result, &res); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Env, []string{"API_SECRET", "B"}) || len(res.Files) != 1 || res.Files[0].ContentBytes != len("top secret text") ||
		res.Token != "[redacted]" || !slices.Equal(res.Nested.Set, []string{"K"}) {
		t.Errorf("redacted result %s", st.Result)
	}

	// A task that failed once, then permanently: archived with its error
	// and attempts.
	b.expect(t, request{method: "POST", path: "/tasks/server:stop?max_retry=3", body: `{"name":"shop","slug":"web"}`}, http.StatusAccepted, &e)
	b.expect(t, request{method: "GET", path: "/tasks/" + e.Queue + "/" + e.ID + "?wait=30s"}, http.StatusOK, &st)
	if st.State != tasks.StateArchived || st.Retried != 1 || st.MaxRetry != 3 || !strings.Contains(st.LastError, "gave up") {
		t.Fatalf("failed task %+v", st)
	}
}

func TestRedactJSONKeepsCleanResults(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		`{"slug":"web","status":"ready","url":"http://127.0.0.1:3000","port":3000,"waited_ms":12}`,
		`{"written":2, "deleted":0}`, // formatting kept byte for byte
		`{"file":".env","set":["A","B"]}`,
		`"not an object"`,
		`not json`,
	} {
		if got := string(redactJSON(json.RawMessage(raw))); got != raw {
			t.Errorf("redactJSON(%s) = %s; want it unchanged", raw, got)
		}
	}
}

// TestLongPollLatency completes tasks at a moment the test chooses and
// measures how long after that a waiting GET answers. The assertions are
// about order, not speed: the answer says completed and arrives after the
// handler returned, and well before the wait would have ended. The
// latency is reported. The worker side announces each attempt's end
// (handlers.Attempts) and the API's Client polls only every hour, so the
// answers come from the notice.
func TestLongPollLatency(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *Config) {
		c := tasks.NewClient(o.Redis, tasks.WithWaitPoll(time.Hour))
		t.Cleanup(func() { _ = c.Close() })
		o.Client = c
	})
	type run struct {
		release  chan struct{}
		returned chan time.Time
	}
	runs := make(chan *run, 1)
	b.startProcessor(t, map[string]asynq.HandlerFunc{
		tasks.TypeCommandRun: func(ctx context.Context, task *asynq.Task) error {
			r := <-runs
			<-r.release
			_, _ = task.ResultWriter().Write([]byte(`{"exit_code":0}`))
			r.returned <- time.Now()
			return nil
		},
	}, handlers.Attempts(b.rdb, nil))
	const rounds = 15
	var lat []time.Duration
	for range rounds {
		r := &run{release: make(chan struct{}), returned: make(chan time.Time, 1)}
		runs <- r
		var e enqueued
		b.expect(t, request{method: "POST", path: "/tasks/command:run", body: `{"name":"shop","command":"true"}`}, http.StatusAccepted, &e)
		type answer struct {
			st  tasks.Result
			at  time.Time
			err error
		}
		got := make(chan answer, 1)
		go func() {
			var st tasks.Result
			resp, raw, err := b.try(t.Context(), request{method: "GET", path: "/tasks/" + e.Queue + "/" + e.ID + "?wait=30s"})
			at := time.Now()
			if err == nil {
				err = json.Unmarshal(raw, &st)
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d: %s", resp.StatusCode, raw)
				}
			}
			got <- answer{st, at, err}
		}()
		// Let the long poll start before the task completes.
		testutil.Eventually(t, "the long poll to start", 10*time.Second, func() bool { return b.api.streams.Load() == 1 })
		close(r.release)
		var returned time.Time
		select {
		case returned = <-r.returned:
		case <-time.After(20 * time.Second):
			t.Fatal("handler did not run")
		}
		var a answer
		select {
		case a = <-got:
		case <-time.After(25 * time.Second):
			t.Fatal("long poll did not answer")
		}
		if a.err != nil {
			t.Fatal(a.err)
		}
		if a.st.State != tasks.StateCompleted || !a.at.After(returned) {
			t.Fatalf("answer %+v at %v, handler returned at %v", a.st, a.at, returned)
		}
		d := a.at.Sub(returned)
		if d > 15*time.Second {
			t.Fatalf("answer came %v after completion: the wait ran out instead", d)
		}
		lat = append(lat, d)
		testutil.Eventually(t, "the long poll to end", 10*time.Second, func() bool { return b.api.streams.Load() == 0 })
	}
	slices.Sort(lat)
	t.Logf("long-poll answer after completion over %d runs: min %v, median %v, max %v", rounds, lat[0], lat[len(lat)/2], lat[len(lat)-1])
}

func TestCancelTask(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	// A pending task: archived at once, cancelled.
	var e enqueued
	b.expect(t, request{method: "POST", path: "/tasks/command:run", body: `{"name":"shop","command":"sleep 100"}`}, http.StatusAccepted, &e)
	var st tasks.Result
	b.expect(t, request{method: "DELETE", path: "/tasks/" + e.Queue + "/" + e.ID}, http.StatusOK, &st)
	if st.State != tasks.StateArchived || !st.Cancelled {
		t.Fatalf("after cancel: %+v", st)
	}
	// Cancelling again changes nothing.
	b.expect(t, request{method: "DELETE", path: "/tasks/" + e.Queue + "/" + e.ID}, http.StatusOK, &st)
	if st.State != tasks.StateArchived || !st.Cancelled {
		t.Fatalf("after a second cancel: %+v", st)
	}
	b.expectError(t, request{method: "DELETE", path: "/tasks/default/no-such-id"}, http.StatusNotFound, "")

	// A completed task: 409.
	b.startProcessor(t, map[string]asynq.HandlerFunc{
		tasks.TypeServerStop: func(ctx context.Context, task *asynq.Task) error { return nil },
		tasks.TypeCommandRun: func(ctx context.Context, task *asynq.Task) error {
			return fmt.Errorf("command failed: %w", asynq.SkipRetry)
		},
	})
	b.expect(t, request{method: "POST", path: "/tasks/server:stop", body: `{"name":"shop","slug":"web"}`}, http.StatusAccepted, &e)
	b.expect(t, request{method: "GET", path: "/tasks/" + e.Queue + "/" + e.ID + "?wait=30s"}, http.StatusOK, &st)
	if st.State != tasks.StateCompleted {
		t.Fatalf("state %s", st.State)
	}
	b.expectError(t, request{method: "DELETE", path: "/tasks/" + e.Queue + "/" + e.ID}, http.StatusConflict, "")

	// A task that failed and was archived: 409 too, and it stays as it was.
	b.expect(t, request{method: "POST", path: "/tasks/command:run", body: `{"name":"shop","command":"false"}`}, http.StatusAccepted, &e)
	st = tasks.Result{}
	b.expect(t, request{method: "GET", path: "/tasks/" + e.Queue + "/" + e.ID + "?wait=30s"}, http.StatusOK, &st)
	if st.State != tasks.StateArchived || st.Cancelled {
		t.Fatalf("failed task: %+v", st)
	}
	eb := b.expectError(t, request{method: "DELETE", path: "/tasks/" + e.Queue + "/" + e.ID}, http.StatusConflict, "")
	if !strings.Contains(eb.Error, "already archived (failed)") {
		t.Fatalf("cancel of a failed task: %q", eb.Error)
	}
	st = tasks.Result{}
	b.expect(t, request{method: "GET", path: "/tasks/" + e.Queue + "/" + e.ID}, http.StatusOK, &st)
	if st.Cancelled {
		t.Fatalf("failed task marked cancelled: %+v", st)
	}
}
