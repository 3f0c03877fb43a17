package api

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

func TestEnqueue(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *Config) { o.Queues = []string{"critical", "default", "maintenance", "low"} })
	payload := map[string]any{"name": "shop", "command": "echo hi", "cwd": "app/../src", "env": map[string]string{"A": "1"}}
	var got enqueued
	b.expect(t, request{method: "POST", path: "/tasks/command:run", body: payload}, http.StatusAccepted, &got)
	if got.ID == "" || got.Queue != tasks.QueueDefault || got.Type != tasks.TypeCommandRun || got.Duplicate || got.Tasks != nil {
		t.Fatalf("answer %+v", got)
	}
	// The task is in asynq with the type's defaults and the normalized
	// payload, exactly as tasks.Client would have enqueued it.
	info, err := b.insp.GetTaskInfo(got.Queue, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.MaxRetry != tasks.DefaultMaxRetry || info.Timeout != tasks.TimeoutCommandRun || info.Retention != tasks.DefaultRetention {
		t.Errorf("options: max_retry %d timeout %v retention %v", info.MaxRetry, info.Timeout, info.Retention)
	}
	p, err := tasks.DecodePayload(info.Type, info.Payload, nil)
	if err != nil {
		t.Fatal(err)
	}
	cr := p.(tasks.CommandRun)
	if cr.Namespace != "default" || cr.Name != "shop" || cr.Cwd != "src" || cr.Env["A"] != "1" {
		t.Errorf("stored payload %+v", cr)
	}

	// Query options override the defaults.
	b.expect(t, request{method: "POST", path: "/tasks/command:run?queue=low&max_retry=2", body: payload}, http.StatusAccepted, &got)
	info, err = b.insp.GetTaskInfo("low", got.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Queue != "low" || info.MaxRetry != 2 {
		t.Errorf("queue %q max_retry %d, want low and 2", got.Queue, info.MaxRetry)
	}

	// The type name may arrive percent-encoded.
	b.expect(t, request{method: "POST", path: "/tasks/command%3Arun", body: payload}, http.StatusAccepted, &got)

	// A gzip body is accepted with Content-Encoding: gzip.
	var zbuf bytes.Buffer
	zw := gzip.NewWriter(&zbuf)
	_ = json.NewEncoder(zw).Encode(payload)
	_ = zw.Close()
	b.expect(t, request{method: "POST", path: "/tasks/command:run", body: zbuf.Bytes(), header: map[string]string{"Content-Encoding": "gzip"}}, http.StatusAccepted, &got)
}

func TestEnqueueDedup(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	var first, second enqueued
	b.expect(t, request{method: "POST", path: "/tasks/sandbox:ensure", body: `{"namespace":"acme","name":"shop"}`}, http.StatusAccepted, &first)
	b.expect(t, request{method: "POST", path: "/tasks/sandbox:ensure", body: `{"namespace":"acme","name":"shop","timeout_ms":5}`}, http.StatusAccepted, &second)
	if first.Duplicate || !second.Duplicate || second.ID != first.ID || first.Queue != tasks.QueueCritical {
		t.Fatalf("first %+v, second %+v: want the second to be a duplicate of the first", first, second)
	}
}

func TestEnqueueErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *Config) { o.MaxBody = 1 << 10 })
	ok := `{"name":"shop","command":"true"}`
	cases := []struct {
		name   string
		req    request
		status int
		field  string
	}{
		{"unknown type", request{method: "POST", path: "/tasks/sandbox:explode", body: ok}, 404, "type"},
		{"bad JSON", request{method: "POST", path: "/tasks/command:run", body: `{"name":`}, 400, "payload"},
		{"empty body", request{method: "POST", path: "/tasks/command:run", body: ``}, 400, "payload"},
		{"array body", request{method: "POST", path: "/tasks/command:run", body: `[1]`}, 400, "payload"},
		{"wrong field type", request{method: "POST", path: "/tasks/command:run", body: `{"name":"shop","command":5}`}, 400, "command"},
		{"validation", request{method: "POST", path: "/tasks/command:run", body: `{"name":"a b","command":"true"}`}, 400, "name"},
		{"not JSON content type", request{method: "POST", path: "/tasks/command:run", body: ok, header: map[string]string{"Content-Type": "text/plain"}}, 415, "Content-Type"},
		{"unknown encoding", request{method: "POST", path: "/tasks/command:run", body: ok, header: map[string]string{"Content-Encoding": "br"}}, 415, "Content-Encoding"},
		{"bad gzip", request{method: "POST", path: "/tasks/files:write", body: ok, header: map[string]string{"Content-Encoding": "gzip"}}, 400, ""},
		{"bad queue", request{method: "POST", path: "/tasks/command:run?queue=a%20b", body: ok}, 400, "queue"},
		{"bad max_retry", request{method: "POST", path: "/tasks/command:run?max_retry=-1", body: ok}, 400, "max_retry"},
		{"unknown query", request{method: "POST", path: "/tasks/command:run?delay=5", body: ok}, 400, "delay"},
		{"too large", request{method: "POST", path: "/tasks/command:run", body: `{"name":"shop","command":"` + strings.Repeat("x", 2000) + `"}`}, 413, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b.expectError(t, c.req, c.status, c.field)
		})
	}
	t.Cleanup(func() {
		// After the subtests: no failed request enqueued anything.
		for _, q := range []string{tasks.QueueDefault, tasks.QueueCritical} {
			if n := queueSize(t, b, q); n > 0 {
				t.Errorf("failed requests enqueued %d tasks in %s", n, q)
			}
		}
	})
}

// TestBodyLimit413 checks the default 16 MiB limit, announced by
// Content-Length and discovered while reading a chunked body.
func TestBodyLimit413(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	big := `{"name":"shop","command":"` + strings.Repeat("x", DefaultMaxBody) + `"}`
	eb := b.expectError(t, request{method: "POST", path: "/tasks/command:run", body: big}, http.StatusRequestEntityTooLarge, "")
	if !strings.Contains(eb.Error, fmt.Sprint(DefaultMaxBody)) {
		t.Errorf("error %q does not state the limit", eb.Error)
	}
	// Chunked: no Content-Length, so the limit is found while reading.
	r, err := http.NewRequestWithContext(t.Context(), "POST", b.base+"/tasks/command:run", io.MultiReader(strings.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	r.ContentLength = -1
	r.Header.Set("Authorization", "Bearer "+testToken)
	r.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(raw), `"error"`) {
		t.Fatalf("chunked: status %d body %s", resp.StatusCode, raw)
	}
}

// TestEnqueueFilesSplit checks that a file set above the per-task content
// limit is split as tasks.Client.WriteFiles splits it.
func TestEnqueueFilesSplit(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	content := strings.Repeat("a", 1<<20)
	var files []tasks.File
	for i := range 6 {
		files = append(files, tasks.File{Path: fmt.Sprintf("/f%d.txt", i), Content: content})
	}
	var got enqueued
	b.expect(t, request{method: "POST", path: "/tasks/files:write", body: tasks.FilesWrite{Project: tasks.Project{Name: "shop"}, Files: files}}, http.StatusAccepted, &got)
	if len(got.Tasks) != 2 || got.Tasks[0].ID != got.ID || got.Tasks[1].ID == got.ID {
		t.Fatalf("answer %+v: want 2 tasks, the first being the answer's", got)
	}
	var paths []string
	for _, e := range got.Tasks {
		info, err := b.insp.GetTaskInfo(e.Queue, e.ID)
		if err != nil {
			t.Fatal(err)
		}
		p, err := tasks.DecodePayload(info.Type, info.Payload, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range p.(tasks.FilesWrite).Files {
			paths = append(paths, f.Path)
		}
	}
	if fmt.Sprint(paths) != "[/f0.txt /f1.txt /f2.txt /f3.txt /f4.txt /f5.txt]" {
		t.Errorf("files across tasks: %v", paths)
	}
	// A single small set is one task, still listed in tasks.
	b.expect(t, request{method: "POST", path: "/tasks/files:write", body: `{"name":"shop","files":[{"path":"a.txt","content":"x"}]}`}, http.StatusAccepted, &got)
	if len(got.Tasks) != 1 || got.Tasks[0].ID != got.ID {
		t.Fatalf("answer %+v", got)
	}
}

// TestValidationParity sends the same payloads through tasks.Client and
// through the API and expects the same error message and field.
func TestValidationParity(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	long := strings.Repeat("n", 129)
	cases := []struct {
		typ, body string
	}{
		{tasks.TypeSandboxEnsure, `{}`},
		{tasks.TypeSandboxEnsure, `{"name":"` + long + `"}`},
		{tasks.TypeSandboxEnsure, `{"namespace":"a b","name":"x"}`},
		{tasks.TypeSandboxEnsure, `{"name":"x{y}"}`},
		{tasks.TypeSandboxEnsure, `{"name":"x","timeout_ms":-1}`},
		{tasks.TypeSandboxEnsure, `{"name":"x","envs":{"1BAD":"v"}}`},
		{tasks.TypeSandboxDestroy, `{"name":""}`},
		{tasks.TypeFilesWrite, `{"name":"x"}`},
		{tasks.TypeFilesWrite, `{"name":"x","files":[{"path":"../etc/passwd","content":"x"}]}`},
		{tasks.TypeFilesWrite, `{"name":"x","files":[{"path":"a","content":"1"},{"path":"./a","content":"2"}]}`},
		{tasks.TypeFilesWrite, `{"name":"x","files":[{"path":"a","content":"1","delete":true}]}`},
		{tasks.TypeFilesWrite, `{"name":"x","files":[{"path":"/","content":"1"}]}`},
		{tasks.TypeFilesWrite, `{"name":"x","files":[{"path":"a\u0000b","content":"1"}]}`},
		{tasks.TypeServerStart, `{"name":"x","command":"npm start"}`},
		{tasks.TypeServerStart, `{"name":"x","slug":"-web","command":"npm start"}`},
		{tasks.TypeServerStart, `{"name":"x","slug":"web","command":"  "}`},
		{tasks.TypeServerStart, `{"name":"x","slug":"web","command":"c","port":70000}`},
		{tasks.TypeServerStart, `{"name":"x","slug":"web","command":"c","restart_policy":"sometimes"}`},
		{tasks.TypeServerStart, `{"name":"x","slug":"web","command":"c","wait_for":"healthy"}`},
		{tasks.TypeServerStart, `{"name":"x","slug":"web","command":"c","health_check":{"path":"health"}}`},
		{tasks.TypeServerStart, `{"name":"x","slug":"web","command":"c","env":{"OK":"1","BAD-NAME":"2"}}`},
		{tasks.TypeServerStop, `{"name":"x","slug":""}`},
		{tasks.TypeServerRestart, `{"name":"x","slug":"web","wait_timeout_ms":999999999999}`},
		{tasks.TypeCommandRun, `{"name":"x"}`},
		{tasks.TypeCommandRun, `{"name":"x","command":"ls","cwd":"../.."}`},
		{tasks.TypeEnvUpdate, `{"name":"x"}`},
		{tasks.TypeEnvUpdate, `{"name":"x","set":{"A":"1"},"remove":["A"]}`},
		{tasks.TypeWorkflowRun, `{"name":"x","steps":[]}`},
		{tasks.TypeWorkflowRun, `{"name":"x","steps":[{"type":"nope"}]}`},
		{tasks.TypeWorkflowRun, `{"name":"x","steps":[{"type":"server:start","payload":{"slug":"web"}}]}`},
		{tasks.TypeWorkflowRun, `{"name":"x","steps":[{"type":"files:write","payload":{"name":"other","files":[{"path":"a"}]}}]}`},
		{tasks.TypeMaintenanceCleanup, `{"idle_ttl":"soon"}`},
		// JSON type errors: the Go client never sees JSON, so the reference
		// is tasks.DecodePayload, which words them for the catalogue.
		{tasks.TypeCommandRun, `{"name":"x","command":["ls"]}`},
		{tasks.TypeFilesWrite, `{"name":"x","files":{"path":"a"}}`},
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%d_%s", i, c.typ), func(t *testing.T) {
			t.Parallel()
			want := goClientError(t, b, c.typ, c.body)
			var ve *tasks.ValidationError
			if !errors.As(want, &ve) {
				t.Fatalf("Go client error %v (%T) is not a *tasks.ValidationError", want, want)
			}
			got := b.expectError(t, request{method: "POST", path: "/tasks/" + c.typ, body: c.body}, http.StatusBadRequest, ve.Field)
			if got.Error != ve.Error() {
				t.Errorf("API error %q, Go client %q", got.Error, ve.Error())
			}
		})
	}
}

// goClientError decodes body as the payload of typ with encoding/json and
// enqueues it through tasks.Client (files:write through WriteFiles), as a
// Go producer would, and returns the error. Bodies that are not the
// payload's JSON give DecodePayload's error.
func goClientError(t *testing.T, b *testBundle, typ, body string) error {
	t.Helper()
	ctx := t.Context()
	var p tasks.Payload
	switch typ {
	case tasks.TypeFilesWrite:
		var fw tasks.FilesWrite
		if err := json.Unmarshal([]byte(body), &fw); err != nil {
			_, derr := tasks.DecodePayload(typ, []byte(body), nil)
			return derr
		}
		list, err := b.client.WriteFiles(ctx, fw)
		if err == nil {
			t.Fatalf("WriteFiles accepted %s: %v", body, list)
		}
		return err
	default:
		for _, s := range payloadSamples {
			if s.TypeName() == typ {
				ptr := newOf(s)
				if err := json.Unmarshal([]byte(body), ptr); err != nil {
					_, derr := tasks.DecodePayload(typ, []byte(body), nil)
					return derr
				}
				p = derefPayload(ptr)
			}
		}
	}
	if p == nil {
		t.Fatalf("no sample for %s", typ)
	}
	e, err := b.client.Enqueue(ctx, p)
	if err == nil {
		t.Fatalf("tasks.Client accepted %s %s: %+v", typ, body, e)
	}
	return err
}

// TestIdempotencyKey checks replay, key reuse with another request, and
// that keys are per type.
func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	body := `{"name":"shop","command":"echo once"}`
	key := map[string]string{"Idempotency-Key": "order-1234"}
	var first, again enqueued
	resp := b.expect(t, request{method: "POST", path: "/tasks/command:run", body: body, header: key}, http.StatusAccepted, &first)
	if resp.Header.Get("Idempotent-Replayed") != "" {
		t.Errorf("first answer marked as replayed")
	}
	resp = b.expect(t, request{method: "POST", path: "/tasks/command:run", body: body, header: key}, http.StatusAccepted, &again)
	if !reflect.DeepEqual(again, first) || resp.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay %+v (replayed=%q), first %+v", again, resp.Header.Get("Idempotent-Replayed"), first)
	}
	if n := queueSize(t, b, tasks.QueueDefault); n != 1 {
		t.Fatalf("%d tasks in the queue, want 1", n)
	}
	// Same key, another request: 422, nothing enqueued.
	b.expectError(t, request{method: "POST", path: "/tasks/command:run", body: `{"name":"shop","command":"echo twice"}`, header: key}, http.StatusUnprocessableEntity, "Idempotency-Key")
	b.expectError(t, request{method: "POST", path: "/tasks/command:run?max_retry=1", body: body, header: key}, http.StatusUnprocessableEntity, "Idempotency-Key")
	// Same key, another type: a separate key.
	var other enqueued
	b.expect(t, request{method: "POST", path: "/tasks/server:stop", body: `{"name":"shop","slug":"web"}`, header: key}, http.StatusAccepted, &other)
	if other.ID == first.ID {
		t.Fatalf("a key of another type replayed %+v", other)
	}
	// A rejected request records nothing: the key can be used once fixed.
	k2 := map[string]string{"Idempotency-Key": "k2"}
	b.expectError(t, request{method: "POST", path: "/tasks/command:run", body: `{"name":"shop"}`, header: k2}, http.StatusBadRequest, "command")
	b.expectError(t, request{method: "POST", path: "/tasks/command:run", body: `{"name":"shop"}`, header: k2}, http.StatusBadRequest, "command")
	b.expect(t, request{method: "POST", path: "/tasks/command:run", body: body, header: k2}, http.StatusAccepted, &again)
	if again.ID == first.ID {
		t.Fatalf("k2 replayed order-1234")
	}
	// Keys are per token.
	var otherToken enqueued
	b.expect(t, request{method: "POST", path: "/tasks/command:run", body: body, noAuth: true,
		header: map[string]string{"Idempotency-Key": "order-1234", "Authorization": "Bearer another-token"}}, http.StatusAccepted, &otherToken)
	if otherToken.ID == first.ID {
		t.Fatalf("another token's request replayed this token's answer")
	}
	// Bad keys.
	b.expectError(t, request{method: "POST", path: "/tasks/command:run", body: body, header: map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}}, http.StatusBadRequest, "Idempotency-Key")
	b.expectError(t, request{method: "POST", path: "/tasks/command:run", body: body, header: map[string]string{"Idempotency-Key": "caf\u00e9"}}, http.StatusBadRequest, "Idempotency-Key")
}

// TestIdempotencyKeyConcurrent fires duplicates at once: exactly one task
// is created and every request gets its id.
func TestIdempotencyKeyConcurrent(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	const n = 16
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			resp, raw, err := b.try(t.Context(), request{method: "POST", path: "/tasks/command:run", body: `{"name":"shop","command":"echo race"}`,
				header: map[string]string{"Idempotency-Key": "race-1"}})
			var e enqueued
			switch {
			case err != nil:
			case resp.StatusCode != http.StatusAccepted:
				err = fmt.Errorf("status %d: %s", resp.StatusCode, raw)
			default:
				err = json.Unmarshal(raw, &e)
			}
			ids[i], errs[i] = e.ID, err
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for i := range ids {
		if ids[i] == "" || ids[i] != ids[0] {
			t.Fatalf("ids %q: want one id for all", ids)
		}
	}
	if got := queueSize(t, b, tasks.QueueDefault); got != 1 {
		t.Fatalf("%d tasks in the queue, want 1", got)
	}
	// The record lives for IdempotencyTTL.
	var key string
	for _, k := range b.rdb.Keys(t.Context(), schema.IdempotencyPrefix+"*").Val() {
		key = k
	}
	if ttl := b.rdb.PTTL(t.Context(), key).Val(); ttl <= DefaultIdempotencyTTL-time.Minute || ttl > DefaultIdempotencyTTL {
		t.Errorf("record %q TTL %v, want about %v", key, ttl, DefaultIdempotencyTTL)
	}
}

func queueSize(t testing.TB, b *testBundle, queue string) int {
	t.Helper()
	queues, err := b.insp.Queues()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(queues, queue) {
		return 0
	}
	info, err := b.insp.GetQueueInfo(queue)
	if err != nil {
		t.Fatal(err)
	}
	return info.Size
}

// newOf returns a pointer to a new zero value of p's type.
func newOf(p tasks.Payload) any { return reflect.New(reflect.TypeOf(p)).Interface() }

// derefPayload returns the payload a pointer of newOf points to.
func derefPayload(ptr any) tasks.Payload {
	return reflect.ValueOf(ptr).Elem().Interface().(tasks.Payload)
}
