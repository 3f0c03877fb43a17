package tasks_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/tasks"
)

var app = tasks.Project{Name: "app"}

func ptr[T any](v T) *T { return &v }

func step(t *testing.T, typ string, payload string) tasks.Step {
	t.Helper()
	return tasks.Step{Type: typ, Payload: json.RawMessage(payload)}
}

func TestValidationNamesTheField(t *testing.T) {
	t.Parallel()
	files := func(fs ...tasks.File) tasks.FilesWrite { return tasks.FilesWrite{Project: app, Files: fs} }
	start := func(mod func(*tasks.ServerStart)) tasks.ServerStart {
		p := tasks.ServerStart{Project: app, Slug: "web", Command: "npm run dev"}
		mod(&p)
		return p
	}
	many := make([]tasks.File, tasks.MaxFilesPerTask+1)
	for i := range many {
		many[i] = tasks.File{Path: fmt.Sprintf("f%d", i)}
	}
	half := strings.Repeat("x", tasks.MaxTaskContentBytes/2+1)
	tests := []struct {
		name  string
		p     tasks.Payload
		field string
	}{
		{"empty name", tasks.SandboxEnsure{}, "name"},
		{"name with space", tasks.SandboxDestroy{Project: tasks.Project{Name: "my app"}}, "name"},
		{"name with tab", tasks.SandboxDestroy{Project: tasks.Project{Name: "my\tapp"}}, "name"},
		{"name too long", tasks.SandboxDestroy{Project: tasks.Project{Name: strings.Repeat("é", 129)}}, "name"},
		{"name with brace", tasks.SandboxDestroy{Project: tasks.Project{Name: "a{b"}}, "name"},
		{"name with control", tasks.SandboxDestroy{Project: tasks.Project{Name: "a\x01b"}}, "name"},
		{"name invalid utf8", tasks.SandboxDestroy{Project: tasks.Project{Name: "a\xffb"}}, "name"},
		{"namespace with brace", tasks.SandboxDestroy{Project: tasks.Project{Namespace: "t}", Name: "a"}}, "namespace"},
		{"namespace too long", tasks.SandboxDestroy{Project: tasks.Project{Namespace: strings.Repeat("n", 129), Name: "a"}}, "namespace"},
		{"ensure negative timeout", tasks.SandboxEnsure{Project: app, TimeoutMS: -1}, "timeout_ms"},
		{"ensure provider space", tasks.SandboxEnsure{Project: app, Provider: "e2b x"}, "provider"},
		{"ensure template control", tasks.SandboxEnsure{Project: app, TemplateID: "t\n"}, "template_id"},
		{"ensure env key", tasks.SandboxEnsure{Project: app, Envs: map[string]string{"1X": "v"}}, "envs"},
		{"no files", files(), "files"},
		{"empty path", files(tasks.File{Path: "a"}, tasks.File{Path: ""}), "files[1].path"},
		{"relative escape", files(tasks.File{Path: "../etc/passwd"}), "files[0].path"},
		{"absolute escape", files(tasks.File{Path: "/a/../../etc/passwd"}), "files[0].path"},
		{"NUL in path", files(tasks.File{Path: "a\x00b"}), "files[0].path"},
		{"path too long", files(tasks.File{Path: strings.Repeat("p", tasks.MaxPathBytes+1)}), "files[0].path"},
		{"root as file", files(tasks.File{Path: "/"}), "files[0].path"},
		{"dot as file", files(tasks.File{Path: "./"}), "files[0].path"},
		{"duplicate path", files(tasks.File{Path: "src/a.ts"}, tasks.File{Path: "./src//a.ts", Delete: true}), "files[1].path"},
		{"delete with content", files(tasks.File{Path: "a", Delete: true, Content: "x"}), "files[0].content"},
		{"binary content", files(tasks.File{Path: "a", Content: "\xff\xfe"}), "files[0].content"},
		{"file too big", files(tasks.File{Path: "a", Content: strings.Repeat("x", tasks.MaxFileBytes+1)}), "files[0].content"},
		{"task content too big", files(tasks.File{Path: "a", Content: half}, tasks.File{Path: "b", Content: half}), "files"},
		{"too many files", files(many...), "files"},
		{"no slug", start(func(p *tasks.ServerStart) { p.Slug = "" }), "slug"},
		{"slug with slash", start(func(p *tasks.ServerStart) { p.Slug = "a/b" }), "slug"},
		{"slug too long", start(func(p *tasks.ServerStart) { p.Slug = strings.Repeat("s", 65) }), "slug"},
		{"no command", start(func(p *tasks.ServerStart) { p.Command = " " }), "command"},
		{"command too long", start(func(p *tasks.ServerStart) { p.Command = strings.Repeat("c", tasks.MaxCommandBytes+1) }), "command"},
		{"install NUL", start(func(p *tasks.ServerStart) { p.Install = "npm\x00i" }), "install"},
		{"path escape", start(func(p *tasks.ServerStart) { p.Path = "../x" }), "path"},
		{"env key", start(func(p *tasks.ServerStart) { p.Env = map[string]string{"A-B": "1"} }), "env"},
		{"env_file escape", start(func(p *tasks.ServerStart) { p.EnvFile = "../.env" }), "env_file"},
		{"port", start(func(p *tasks.ServerStart) { p.Port = 70000 }), "port"},
		{"restart policy", start(func(p *tasks.ServerStart) { p.RestartPolicy = "sometimes" }), "restart_policy"},
		{"max restarts", start(func(p *tasks.ServerStart) { p.MaxRestarts = -1 }), "max_restarts"},
		{"health path", start(func(p *tasks.ServerStart) { p.HealthCheck = &sandboxq.HealthCheck{Path: "health"} }), "health_check.path"},
		{"health interval", start(func(p *tasks.ServerStart) { p.HealthCheck = &sandboxq.HealthCheck{IntervalMS: -1} }), "health_check.interval_ms"},
		{"wait_for", start(func(p *tasks.ServerStart) { p.WaitFor = "done" }), "wait_for"},
		{"wait timeout", start(func(p *tasks.ServerStart) { p.WaitTimeoutMS = -1 }), "wait_timeout_ms"},
		{"stop slug", tasks.ServerStop{Project: app}, "slug"},
		{"restart wait_for", tasks.ServerRestart{Project: app, Slug: "web", WaitFor: "up"}, "wait_for"},
		{"command blank", tasks.CommandRun{Project: app, Command: "  "}, "command"},
		{"command cwd", tasks.CommandRun{Project: app, Command: "ls", Cwd: "a/../../b"}, "cwd"},
		{"command timeout", tasks.CommandRun{Project: app, Command: "ls", TimeoutMS: -5}, "timeout_ms"},
		{"command env", tasks.CommandRun{Project: app, Command: "ls", Env: map[string]string{"": "x"}}, "env"},
		{"env nothing", tasks.EnvUpdate{Project: app}, "set"},
		{"env set key", tasks.EnvUpdate{Project: app, Set: map[string]string{"A B": "1"}}, "set"},
		{"env remove key", tasks.EnvUpdate{Project: app, Remove: []string{"OK", "9NO"}}, "remove[1]"},
		{"env set and remove", tasks.EnvUpdate{Project: app, Set: map[string]string{"K": "1"}, Remove: []string{"K"}}, "remove[0]"},
		{"env file escape", tasks.EnvUpdate{Project: app, File: "../.env", Set: map[string]string{"K": "1"}}, "file"},
		{"workflow no steps", tasks.WorkflowRun{Project: app}, "steps"},
		{"workflow nested", tasks.WorkflowRun{Project: app, Steps: []tasks.Step{step(t, tasks.TypeWorkflowRun, `{}`)}}, "steps[0].type"},
		{"workflow maintenance", tasks.WorkflowRun{Project: app, Steps: []tasks.Step{step(t, tasks.TypeMaintenanceCleanup, `{}`)}}, "steps[0].type"},
		{"workflow other name", tasks.WorkflowRun{Project: app, Steps: []tasks.Step{
			step(t, tasks.TypeSandboxEnsure, `{}`),
			step(t, tasks.TypeServerStop, `{"name":"other","slug":"web"}`),
		}}, "steps[1].payload.name"},
		{"workflow other namespace", tasks.WorkflowRun{Project: app, Steps: []tasks.Step{
			step(t, tasks.TypeSandboxDestroy, `{"namespace":"team"}`),
		}}, "steps[0].payload.namespace"},
		{"workflow step field", tasks.WorkflowRun{Project: app, Steps: []tasks.Step{
			step(t, tasks.TypeFilesWrite, `{"files":[{"path":"../x"}]}`),
		}}, "steps[0].payload.files[0].path"},
		{"workflow step not object", tasks.WorkflowRun{Project: app, Steps: []tasks.Step{
			step(t, tasks.TypeServerStop, `[1]`),
		}}, "steps[0].payload"},
		{"workflow step wrong JSON type", tasks.WorkflowRun{Project: app, Steps: []tasks.Step{
			step(t, tasks.TypeServerStop, `{"slug":5}`),
		}}, "steps[0].payload.slug"},
		{"idle ttl", tasks.MaintenanceCleanup{IdleTTL: "soon"}, "idle_ttl"},
		{"idle ttl negative", tasks.MaintenanceCleanup{IdleTTL: "-1h"}, "idle_ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tasks.New(tt.p)
			var ve *tasks.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("New(%s) error = %v, want a *ValidationError", tt.p.TypeName(), err)
			}
			if ve.Field != tt.field {
				t.Fatalf("field = %q (%v), want %q", ve.Field, err, tt.field)
			}
			if want := "invalid " + tt.field + ": "; !strings.HasPrefix(err.Error(), want) || ve.Message == "" {
				t.Fatalf("error %q does not start with %q", err, want)
			}
			t.Log(err)
			if len(err.Error()) > 400 {
				t.Fatalf("error message is %d bytes long", len(err.Error()))
			}
		})
	}
}

func TestValidationNeverShowsEnvValues(t *testing.T) {
	t.Parallel()
	const secret = "sk-live-do-not-print"
	for _, p := range []tasks.Payload{
		tasks.SandboxEnsure{Project: app, Envs: map[string]string{"TOKEN": secret + "\x00"}},
		tasks.CommandRun{Project: app, Command: "ls", Env: map[string]string{"TOKEN": secret + "\xff"}},
		tasks.EnvUpdate{Project: app, Set: map[string]string{"TOKEN": secret + "\x00"}},
	} {
		_, err := tasks.New(p)
		if err == nil {
			t.Fatalf("%s: bad env value accepted", p.TypeName())
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("%s: error shows the value: %v", p.TypeName(), err)
		}
		if !strings.Contains(err.Error(), "TOKEN") {
			t.Fatalf("%s: error does not name the variable: %v", p.TypeName(), err)
		}
	}
}

func TestValidPayloads(t *testing.T) {
	t.Parallel()
	for _, p := range []tasks.Payload{
		tasks.SandboxEnsure{Project: tasks.Project{Namespace: "team-1", Name: "a/b.c"}, TimeoutMS: 60000,
			Provider: "e2b", TemplateID: "node-20", Metadata: map[string]any{"k": []any{1.0}}, Envs: map[string]string{"_A1": "x y"}},
		tasks.SandboxDestroy{Project: tasks.Project{Name: strings.Repeat("é", 128)}},
		tasks.FilesWrite{Project: app, Files: []tasks.File{{Path: "/abs/ok.txt", Content: "héllo\x00"}, {Path: "rel/x", Delete: true}}},
		tasks.FilesWrite{Project: app, Files: []tasks.File{{Path: "big", Content: strings.Repeat("x", tasks.MaxFileBytes)}}},
		tasks.ServerStart{Project: app, Slug: "web_1.x-y", Command: "npm run dev", Install: "npm i", Path: "/",
			EnvFile: ".env.local", Port: 3000, RestartPolicy: sandboxq.RestartOnFailure, MaxRestarts: 3,
			HealthCheck: &sandboxq.HealthCheck{Path: "/health", IntervalMS: 1000}, Wait: ptr(false), WaitFor: tasks.WaitForRunning},
		tasks.ServerStop{Project: app, Slug: "web"},
		tasks.ServerRestart{Project: app, Slug: "web", WaitTimeoutMS: 1000},
		tasks.CommandRun{Project: app, Command: "echo hi", Cwd: "/", FailOnNonzero: ptr(false)},
		tasks.EnvUpdate{Project: app, Remove: []string{"OLD"}},
		tasks.WorkflowRun{Project: app, Steps: []tasks.Step{
			{Type: tasks.TypeSandboxEnsure},
			step(t, tasks.TypeFilesWrite, `{"namespace":"default","name":"app","files":[{"path":"a","content":"1"}],"unknown":true}`),
			step(t, tasks.TypeServerStart, `{"slug":"web","command":"npm start"}`),
		}},
		tasks.MaintenanceCleanup{},
		tasks.MaintenanceCleanup{IdleTTL: "90m"},
		tasks.MaintenanceReconcile{},
	} {
		if _, err := tasks.New(p); err != nil {
			t.Errorf("New(%s): %v", p.TypeName(), err)
		}
	}
}

func TestPayloadSizeCap(t *testing.T) {
	t.Parallel()
	// Control characters are escaped six-fold in JSON, so 3 MiB of them
	// make a payload above 16 MiB although the file itself is allowed.
	p := tasks.FilesWrite{Project: app, Files: []tasks.File{{Path: "a", Content: strings.Repeat("\x01", 3<<20)}}}
	_, err := tasks.New(p)
	var ve *tasks.ValidationError
	if !errors.As(err, &ve) || ve.Field != "payload" {
		t.Fatalf("New = %v, want invalid payload", err)
	}
}

func TestDefaultsHelpers(t *testing.T) {
	t.Parallel()
	if !(tasks.ServerStart{}).ShouldWait() || (tasks.ServerStart{Wait: ptr(false)}).ShouldWait() {
		t.Error("ServerStart.ShouldWait default")
	}
	if !(tasks.ServerRestart{}).ShouldWait() {
		t.Error("ServerRestart.ShouldWait default")
	}
	if !(tasks.CommandRun{}).ShouldFailOnNonzero() || (tasks.CommandRun{FailOnNonzero: ptr(false)}).ShouldFailOnNonzero() {
		t.Error("CommandRun.ShouldFailOnNonzero default")
	}
	if !(tasks.FilesWrite{}).ShouldEnsure() || (tasks.EnvUpdate{Ensure: ptr(false)}).ShouldEnsure() {
		t.Error("ShouldEnsure default")
	}
	if d := (tasks.MaintenanceCleanup{IdleTTL: "2h"}).IdleTTLDuration(); d.Hours() != 2 {
		t.Errorf("IdleTTLDuration = %v", d)
	}
	if got := tasks.Types(); len(got) != 11 {
		t.Errorf("Types() = %v, want the 11 types of the catalogue", got)
	}
}
