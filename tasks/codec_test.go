package tasks_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/schema"
	"github.com/sandboxq/sandboxq/tasks"
)

// roundTrip encodes p with New and decodes it back as P.
func roundTrip[P tasks.Payload](t *testing.T, p P) (P, *asynq.Task) {
	t.Helper()
	task, err := tasks.New(p)
	if err != nil {
		t.Fatalf("New(%s): %v", p.TypeName(), err)
	}
	if task.Type() != p.TypeName() {
		t.Fatalf("task type %q, want %q", task.Type(), p.TypeName())
	}
	got, err := tasks.Decode[P](task)
	if err != nil {
		t.Fatalf("Decode(%s): %v", p.TypeName(), err)
	}
	return got, task
}

func checkRoundTrip[P tasks.Payload](t *testing.T, in, want P) {
	t.Helper()
	got, _ := roundTrip(t, in)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s round trip:\n got %+v\nwant %+v", in.TypeName(), got, want)
	}
}

func TestRoundTripEveryType(t *testing.T) {
	t.Parallel()
	norm := tasks.Project{Namespace: "default", Name: "app"}
	team := tasks.Project{Namespace: "team", Name: "app"}

	checkRoundTrip(t,
		tasks.SandboxEnsure{Project: app, TimeoutMS: 1000, Provider: "e2b", TemplateID: "tpl",
			Metadata: map[string]any{"n": 1.5, "s": "x"}, Envs: map[string]string{"A": "1"}},
		tasks.SandboxEnsure{Project: norm, TimeoutMS: 1000, Provider: "e2b", TemplateID: "tpl",
			Metadata: map[string]any{"n": 1.5, "s": "x"}, Envs: map[string]string{"A": "1"}})
	checkRoundTrip(t, tasks.SandboxDestroy{Project: team}, tasks.SandboxDestroy{Project: team})

	in := []tasks.File{{Path: "src//a/./b.ts", Content: "x"}, {Path: "/tmp/../c", Delete: true}}
	checkRoundTrip(t,
		tasks.FilesWrite{Project: app, Files: in, Ensure: ptr(false)},
		tasks.FilesWrite{Project: norm, Files: []tasks.File{{Path: "src/a/b.ts", Content: "x"}, {Path: "/c", Delete: true}}, Ensure: ptr(false)})
	if in[0].Path != "src//a/./b.ts" {
		t.Fatalf("New modified the caller's files: %q", in[0].Path)
	}

	hc := &sandboxq.HealthCheck{Path: "/h", IntervalMS: 10, TimeoutMS: 20, DelayMS: 30}
	checkRoundTrip(t,
		tasks.ServerStart{Project: team, Slug: "web", Command: "npm run dev", Install: "npm i", Path: "app/",
			Env: map[string]string{"PORT_X": "1"}, EnvFile: "./.env", Port: 3000, RestartPolicy: "always",
			MaxRestarts: 2, HealthCheck: hc, Wait: ptr(true), WaitFor: "running", WaitTimeoutMS: 5000, Ensure: ptr(true)},
		tasks.ServerStart{Project: team, Slug: "web", Command: "npm run dev", Install: "npm i", Path: "app",
			Env: map[string]string{"PORT_X": "1"}, EnvFile: ".env", Port: 3000, RestartPolicy: "always",
			MaxRestarts: 2, HealthCheck: hc, Wait: ptr(true), WaitFor: "running", WaitTimeoutMS: 5000, Ensure: ptr(true)})
	checkRoundTrip(t, tasks.ServerStop{Project: app, Slug: "web"}, tasks.ServerStop{Project: norm, Slug: "web"})
	checkRoundTrip(t,
		tasks.ServerRestart{Project: app, Slug: "web", Wait: ptr(false), WaitFor: "ready", WaitTimeoutMS: 1},
		tasks.ServerRestart{Project: norm, Slug: "web", Wait: ptr(false), WaitFor: "ready", WaitTimeoutMS: 1})
	checkRoundTrip(t,
		tasks.CommandRun{Project: app, Command: "ls", Cwd: "/w/", Env: map[string]string{"X": ""}, TimeoutMS: 10, FailOnNonzero: ptr(false)},
		tasks.CommandRun{Project: norm, Command: "ls", Cwd: "/w", Env: map[string]string{"X": ""}, TimeoutMS: 10, FailOnNonzero: ptr(false)})
	checkRoundTrip(t,
		tasks.EnvUpdate{Project: app, Set: map[string]string{"A": "1"}, Remove: []string{"B"}},
		tasks.EnvUpdate{Project: norm, File: tasks.DefaultEnvFile, Set: map[string]string{"A": "1"}, Remove: []string{"B"}})
	checkRoundTrip(t, tasks.MaintenanceCleanup{IdleTTL: "1h"}, tasks.MaintenanceCleanup{IdleTTL: "1h"})
	checkRoundTrip(t, tasks.MaintenanceReconcile{}, tasks.MaintenanceReconcile{})
}

func TestWorkflowStepsGetTheProject(t *testing.T) {
	t.Parallel()
	files, err := tasks.NewStep(tasks.FilesWrite{Files: []tasks.File{{Path: "./a.txt", Content: "1"}}})
	if err != nil {
		t.Fatal(err)
	}
	wf := tasks.WorkflowRun{Project: tasks.Project{Namespace: "team", Name: "app"}, Steps: []tasks.Step{
		{Type: tasks.TypeSandboxEnsure},
		files,
		{Type: tasks.TypeServerStart, Payload: json.RawMessage(`{"namespace":"team","slug":"web","command":"npm start","extra":1}`)},
	}}
	got, _ := roundTrip(t, wf)
	if len(got.Steps) != 3 {
		t.Fatalf("steps = %d", len(got.Steps))
	}
	want := tasks.Project{Namespace: "team", Name: "app"}
	for i := range got.Steps {
		p, err := got.StepPayload(i)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		var proj tasks.Project
		if err := json.Unmarshal(got.Steps[i].Payload, &proj); err != nil || proj != want {
			t.Fatalf("step %d payload %s has project %+v, want %+v", i, got.Steps[i].Payload, proj, want)
		}
		if p.TypeName() != got.Steps[i].Type {
			t.Fatalf("step %d decodes as %s, want %s", i, p.TypeName(), got.Steps[i].Type)
		}
	}
	fw, _ := got.StepPayload(1)
	if path := fw.(tasks.FilesWrite).Files[0].Path; path != "a.txt" {
		t.Fatalf("step path = %q, want normalized a.txt", path)
	}
}

func TestCompressionAboveThreshold(t *testing.T) {
	t.Parallel()
	small := tasks.FilesWrite{Project: app, Files: []tasks.File{{Path: "a", Content: strings.Repeat("s", 1000)}}}
	_, task := roundTrip(t, small)
	if task.Headers()[tasks.HeaderContentEncoding] != "" || !json.Valid(task.Payload()) {
		t.Fatalf("small payload compressed (headers %v)", task.Headers())
	}

	content := strings.Repeat("0123456789abcdef", tasks.CompressThreshold/16+1)
	big := tasks.FilesWrite{Project: app, Files: []tasks.File{{Path: "a", Content: content}}}
	got, task := roundTrip(t, big)
	if enc := task.Headers()[tasks.HeaderContentEncoding]; enc != tasks.EncodingGzip {
		t.Fatalf("content-encoding = %q, want gzip", enc)
	}
	if p := task.Payload(); len(p) < 2 || p[0] != 0x1f || p[1] != 0x8b || len(p) >= len(content) {
		t.Fatalf("payload is not gzip or not smaller (%d bytes)", len(p))
	}
	if got.Files[0].Content != content {
		t.Fatal("content changed in the round trip")
	}

	// Without headers (as Asynqmon's formatter sees it) the magic suffices.
	bare := asynq.NewTask(task.Type(), task.Payload())
	got2, err := tasks.Decode[tasks.FilesWrite](bare)
	if err != nil || got2.Files[0].Content != content {
		t.Fatalf("Decode without headers: %v", err)
	}
	raw, err := tasks.Uncompress(task.Payload(), nil)
	if err != nil || !json.Valid(raw) {
		t.Fatalf("Uncompress: %v", err)
	}
	dp, err := tasks.DecodePayload(task.Type(), task.Payload(), nil)
	if err != nil || dp.(tasks.FilesWrite).Files[0].Content != content {
		t.Fatalf("DecodePayload: %v", err)
	}
}

func TestDecodeToleratesUnknownFields(t *testing.T) {
	t.Parallel()
	task := asynq.NewTask(tasks.TypeServerStop, []byte(`{"name":"app","slug":"web","added_later":{"x":[1,2]}}`))
	got, err := tasks.Decode[tasks.ServerStop](task)
	if err != nil {
		t.Fatal(err)
	}
	if want := (tasks.ServerStop{Project: tasks.Project{Namespace: "default", Name: "app"}, Slug: "web"}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestDecodeErrorsSkipRetry(t *testing.T) {
	t.Parallel()
	gz, err := tasks.New(tasks.FilesWrite{Project: app, Files: []tasks.File{{Path: "a", Content: strings.Repeat("x", 100<<10)}}})
	if err != nil {
		t.Fatal(err)
	}
	corrupt := bytes.Clone(gz.Payload())
	corrupt = corrupt[:len(corrupt)/2]
	tests := []struct {
		name  string
		task  *asynq.Task
		field string // "" when the error is not a ValidationError
	}{
		{"wrong type", asynq.NewTask(tasks.TypeServerStart, []byte(`{"name":"app","slug":"web"}`)), ""},
		{"not JSON", asynq.NewTask(tasks.TypeServerStop, []byte(`{"name":`)), "payload"},
		{"JSON type", asynq.NewTask(tasks.TypeServerStop, []byte(`{"name":"app","slug":["web"]}`)), "slug"},
		{"invalid", asynq.NewTask(tasks.TypeServerStop, []byte(`{"name":"app","slug":"a b"}`)), "slug"},
		{"bad name", asynq.NewTask(tasks.TypeServerStop, []byte(`{"name":"a}","slug":"web"}`)), "name"},
		{"corrupt gzip", asynq.NewTaskWithHeaders(tasks.TypeServerStop, corrupt, map[string]string{"content-encoding": "gzip"}), ""},
		{"unknown encoding", asynq.NewTaskWithHeaders(tasks.TypeServerStop, []byte(`{}`), map[string]string{"content-encoding": "br"}), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tasks.Decode[tasks.ServerStop](tt.task)
			if err == nil {
				t.Fatal("Decode accepted it")
			}
			if !errors.Is(err, asynq.SkipRetry) {
				t.Fatalf("error %v does not wrap asynq.SkipRetry", err)
			}
			var pe *tasks.PayloadError
			if !errors.As(err, &pe) || pe.Type != tt.task.Type() {
				t.Fatalf("error %v is not a *PayloadError for %s", err, tt.task.Type())
			}
			if tt.field != "" {
				var ve *tasks.ValidationError
				if !errors.As(err, &ve) || ve.Field != tt.field {
					t.Fatalf("error %v does not name field %q", err, tt.field)
				}
			}
		})
	}
}

func TestDecodePayloadByName(t *testing.T) {
	t.Parallel()
	p, err := tasks.DecodePayload(tasks.TypeCommandRun, []byte(`{"name":"app","command":"ls"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := p.(tasks.CommandRun); !ok || c.Namespace != "default" || c.Command != "ls" {
		t.Fatalf("DecodePayload = %#v", p)
	}
	if _, err := tasks.DecodePayload("sandbox:explode", []byte(`{}`), nil); !errors.Is(err, tasks.ErrUnknownType) {
		t.Fatalf("unknown type: %v", err)
	}
	// Decode into the interface type decodes by the task's type name.
	task, err := tasks.New(tasks.ServerStop{Project: app, Slug: "web"})
	if err != nil {
		t.Fatal(err)
	}
	any, err := tasks.Decode[tasks.Payload](task)
	if err != nil || any.(tasks.ServerStop).Slug != "web" {
		t.Fatalf("Decode[Payload] = %#v, %v", any, err)
	}
}

func TestProjectOf(t *testing.T) {
	t.Parallel()
	task, err := tasks.New(tasks.CommandRun{Project: app, Command: "ls"})
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := tasks.ProjectOf(task); !ok || p != (tasks.Project{Namespace: "default", Name: "app"}) {
		t.Fatalf("ProjectOf = %+v, %v", p, ok)
	}
	m, err := tasks.New(tasks.MaintenanceReconcile{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tasks.ProjectOf(m); ok {
		t.Fatal("maintenance task has a project")
	}
}

func TestProjectTagIsUnambiguous(t *testing.T) {
	t.Parallel()
	a := schema.DedupKey(tasks.TypeSandboxEnsure, tasks.Project{Namespace: "a/b", Name: "c"})
	b := schema.DedupKey(tasks.TypeSandboxEnsure, tasks.Project{Namespace: "a", Name: "b/c"})
	if a == b {
		t.Fatalf("two projects share the key %s", a)
	}
	if got := schema.ProjectTag(tasks.Project{Name: "app"}); got != "{default/app}" {
		t.Fatalf("ProjectTag = %s", got)
	}
	if got := schema.DedupKey(tasks.TypeSandboxDestroy, app); got != "sandboxq:{default/app}:dedup:sandbox:destroy" {
		t.Fatalf("DedupKey = %s", got)
	}
}

// TestDefaultOptions checks every type's queue, MaxRetry, Timeout and
// Retention as asynq stores them, and that enqueue options override them.
func TestDefaultOptions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	day := 24 * time.Hour
	tests := []struct {
		p       tasks.Payload
		queue   string
		timeout time.Duration
	}{
		{tasks.SandboxEnsure{Project: app}, "critical", 5 * time.Minute},
		{tasks.SandboxDestroy{Project: app}, "critical", 2 * time.Minute},
		{tasks.FilesWrite{Project: app, Files: []tasks.File{{Path: "a"}}}, "default", 2 * time.Minute},
		{tasks.ServerStart{Project: app, Slug: "w", Command: "x"}, "default", 15 * time.Minute},
		{tasks.ServerStart{Project: app, Slug: "w", Command: "x", WaitTimeoutMS: 60 * 60 * 1000}, "default", 65 * time.Minute},
		{tasks.ServerStop{Project: app, Slug: "w"}, "default", 5 * time.Minute},
		{tasks.ServerRestart{Project: app, Slug: "w", Wait: ptr(false)}, "default", 5 * time.Minute},
		{tasks.ServerRestart{Project: app, Slug: "w"}, "default", 15 * time.Minute},
		{tasks.CommandRun{Project: app, Command: "x"}, "default", 10 * time.Minute},
		{tasks.CommandRun{Project: app, Command: "x", TimeoutMS: 20 * 60 * 1000}, "default", 21 * time.Minute},
		{tasks.EnvUpdate{Project: app, Remove: []string{"A"}}, "default", time.Minute},
		{tasks.WorkflowRun{Project: app, Steps: []tasks.Step{{Type: tasks.TypeSandboxEnsure}}}, "default", 30 * time.Minute},
		{tasks.MaintenanceCleanup{}, "maintenance", 10 * time.Minute},
		{tasks.MaintenanceReconcile{}, "maintenance", 10 * time.Minute},
	}
	for _, tt := range tests {
		e, err := b.client.Enqueue(ctx, tt.p)
		if err != nil {
			t.Fatalf("Enqueue(%s): %v", tt.p.TypeName(), err)
		}
		info, err := b.insp.GetTaskInfo(e.Queue, e.ID)
		if err != nil {
			t.Fatal(err)
		}
		if info.Queue != tt.queue || info.MaxRetry != 8 || info.Timeout != tt.timeout || info.Retention != day || info.Type != tt.p.TypeName() {
			t.Errorf("%s: queue %s, max retry %d, timeout %v, retention %v; want %s, 8, %v, 24h",
				tt.p.TypeName(), info.Queue, info.MaxRetry, info.Timeout, info.Retention, tt.queue, tt.timeout)
		}
		if e.Queue != info.Queue || e.Type != info.Type || e.Duplicate {
			t.Errorf("%s: Enqueued %+v", tt.p.TypeName(), e)
		}
	}

	e, err := b.client.StopServer(ctx, tasks.ServerStop{Project: app, Slug: "w"},
		asynq.Queue("custom"), asynq.MaxRetry(2), asynq.Timeout(time.Minute), asynq.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	info, err := b.insp.GetTaskInfo("custom", e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.MaxRetry != 2 || info.Timeout != time.Minute || info.Retention != time.Hour {
		t.Fatalf("overrides not applied: %+v", info)
	}
}
