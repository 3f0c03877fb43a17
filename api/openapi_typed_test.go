package api

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/sandboxq/sandboxq/handlers"
	"github.com/sandboxq/sandboxq/maintenance"
	"github.com/sandboxq/sandboxq/tasks"
)

// typedDocument is the part of the document the per-type checks read.
type typedDocument struct {
	Paths map[string]map[string]struct {
		Parameters []struct {
			Ref string `json:"$ref"`
		} `json:"parameters"`
		RequestBody struct {
			Content map[string]struct {
				Schema openAPISchema `json:"schema"`
			} `json:"content"`
		} `json:"requestBody"`
		Responses map[string]struct {
			Ref     string `json:"$ref"`
			Content map[string]struct {
				Schema openAPISchema `json:"schema"`
			} `json:"content"`
		} `json:"responses"`
	} `json:"paths"`
	Components struct {
		Schemas    map[string]typedSchema     `json:"schemas"`
		Parameters map[string]json.RawMessage `json:"parameters"`
		Responses  map[string]json.RawMessage `json:"responses"`
	} `json:"components"`
}

type typedSchema struct {
	Required      []string                 `json:"required"`
	Properties    map[string]typedProperty `json:"properties"`
	AllOf         []typedSchema            `json:"allOf"`
	OneOf         []openAPISchema          `json:"oneOf"`
	Ref           string                   `json:"$ref"`
	Discriminator *struct {
		PropertyName string            `json:"propertyName"`
		Mapping      map[string]string `json:"mapping"`
	} `json:"discriminator"`
}

type typedProperty struct {
	Ref   string `json:"$ref"`
	Const string `json:"const"`
}

func loadTyped(t *testing.T) *typedDocument {
	t.Helper()
	var doc typedDocument
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return &doc
}

func schemaName(ref string) string { return strings.TrimPrefix(ref, "#/components/schemas/") }

// checkTypedEnqueue checks that POST /tasks/<typ> takes exactly the payload
// schema of typ, has the generic route's parameters and answers, and that
// every $ref of the operation resolves.
func checkTypedEnqueue(t *testing.T, _ *openAPIDocument, typ, schema string) {
	t.Helper()
	doc := loadTyped(t)
	op, ok := doc.Paths["/tasks/"+typ]["post"]
	if !ok {
		t.Errorf("no POST /tasks/%s", typ)
		return
	}
	if got := schemaName(op.RequestBody.Content["application/json"].Schema.Ref); got != schema {
		t.Errorf("POST /tasks/%s takes %q, want %q", typ, got, schema)
	}
	var params []string
	for _, p := range op.Parameters {
		name := strings.TrimPrefix(p.Ref, "#/components/parameters/")
		if _, ok := doc.Components.Parameters[name]; !ok {
			t.Errorf("POST /tasks/%s: dangling parameter %q", typ, p.Ref)
		}
		params = append(params, name)
	}
	if want := []string{"Queue", "MaxRetry", "IdempotencyKey"}; !slices.Equal(params, want) {
		t.Errorf("POST /tasks/%s parameters %q, want %q", typ, params, want)
	}
	generic := doc.Paths["/tasks/{type}"]["post"]
	for code := range generic.Responses {
		if code == "404" {
			continue // unknown task type: not for a path that names one
		}
		r, ok := op.Responses[code]
		if !ok {
			t.Errorf("POST /tasks/%s does not document %s", typ, code)
			continue
		}
		if _, ok := doc.Components.Responses[strings.TrimPrefix(r.Ref, "#/components/responses/")]; !ok {
			t.Errorf("POST /tasks/%s %s: dangling response %q", typ, code, r.Ref)
		}
	}
}

// validSamples has a valid payload of every type with every field the
// type's Validate looks at set, so that removing one field at a time
// shows which ones it requires.
var validSamples = []tasks.Payload{
	tasks.SandboxEnsure{Project: tasks.Project{Namespace: "ns", Name: "n"}, TimeoutMS: 1, Provider: "p", TemplateID: "t", Envs: map[string]string{"A": "1"}},
	tasks.SandboxDestroy{Project: tasks.Project{Namespace: "ns", Name: "n"}},
	tasks.FilesWrite{Project: tasks.Project{Namespace: "ns", Name: "n"}, Files: []tasks.File{{Path: "/a", Content: "x"}}},
	tasks.ServerStart{Project: tasks.Project{Namespace: "ns", Name: "n"}, Slug: "web", Command: "npm start", Install: "npm i", Path: "/app", Env: map[string]string{"A": "1"}, EnvFile: ".env", Port: 3000, RestartPolicy: "never", WaitFor: "ready", WaitTimeoutMS: 1},
	tasks.ServerStop{Project: tasks.Project{Namespace: "ns", Name: "n"}, Slug: "web"},
	tasks.ServerRestart{Project: tasks.Project{Namespace: "ns", Name: "n"}, Slug: "web", WaitFor: "running"},
	tasks.CommandRun{Project: tasks.Project{Namespace: "ns", Name: "n"}, Command: "true", Cwd: "/app", Env: map[string]string{"A": "1"}, TimeoutMS: 1},
	tasks.EnvUpdate{Project: tasks.Project{Namespace: "ns", Name: "n"}, File: ".env", Set: map[string]string{"A": "1"}, Remove: []string{"B"}},
	tasks.WorkflowRun{Project: tasks.Project{Namespace: "ns", Name: "n"}, Steps: []tasks.Step{{Type: tasks.TypeServerStop, Payload: json.RawMessage(`{"slug":"web"}`)}}},
	tasks.MaintenanceCleanup{IdleTTL: "2h"},
	tasks.MaintenanceReconcile{},
}

// TestOpenAPIRequiredFields checks each payload schema's required list
// against validation: a field is required in the document exactly when a
// valid payload without it is rejected naming it. So a generated client
// cannot compile a payload the server refuses for a missing field, nor is
// it made to send a field the server does not need.
func TestOpenAPIRequiredFields(t *testing.T) {
	t.Parallel()
	doc := loadTyped(t)
	byType := map[string]string{}
	for name, s := range loadOpenAPI(t).Components.Schemas {
		if s.TaskType != "" {
			byType[s.TaskType] = name
		}
	}
	covered := map[string]bool{}
	for _, p := range validSamples {
		covered[p.TypeName()] = true
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tasks.DecodePayload(p.TypeName(), raw, nil); err != nil {
			t.Fatalf("sample %s is invalid: %v", p.TypeName(), err)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil {
			t.Fatal(err)
		}
		var mustHave []string
		for f := range fields {
			without := map[string]json.RawMessage{}
			for k, v := range fields {
				if k != f {
					without[k] = v
				}
			}
			b, _ := json.Marshal(without)
			_, err := tasks.DecodePayload(p.TypeName(), b, nil)
			var ve *tasks.ValidationError
			if errors.As(err, &ve) && ve.Field == f {
				mustHave = append(mustHave, f)
			}
		}
		sort.Strings(mustHave)
		got := slices.Clone(doc.Components.Schemas[byType[p.TypeName()]].Required)
		sort.Strings(got)
		if !slices.Equal(got, mustHave) {
			t.Errorf("%s: required %q in the document, validation requires %q", p.TypeName(), got, mustHave)
		}
	}
	for _, typ := range tasks.Types() {
		if !covered[typ] {
			t.Errorf("validSamples has no %s", typ)
		}
	}
}

// resultTypes maps each task type to the Go type of its result.
var resultTypes = map[string]reflect.Type{
	tasks.TypeSandboxEnsure:        reflect.TypeFor[handlers.EnsureResult](),
	tasks.TypeSandboxDestroy:       reflect.TypeFor[handlers.DestroyResult](),
	tasks.TypeFilesWrite:           reflect.TypeFor[handlers.FilesResult](),
	tasks.TypeServerStart:          reflect.TypeFor[handlers.ServerResult](),
	tasks.TypeServerStop:           reflect.TypeFor[handlers.ServerResult](),
	tasks.TypeServerRestart:        reflect.TypeFor[handlers.ServerResult](),
	tasks.TypeCommandRun:           reflect.TypeFor[handlers.CommandResult](),
	tasks.TypeEnvUpdate:            reflect.TypeFor[handlers.EnvResult](),
	tasks.TypeWorkflowRun:          reflect.TypeFor[handlers.WorkflowResult](),
	tasks.TypeMaintenanceCleanup:   reflect.TypeFor[maintenance.CleanupResult](),
	tasks.TypeMaintenanceReconcile: reflect.TypeFor[maintenance.ReconcileResult](),
}

// TestOpenAPITaskResults checks the typed task read: GET /tasks/{queue}/{id}
// answers Task, a oneOf discriminated by type with one variant per task
// type, whose type is that type's name and whose result has exactly the
// JSON fields of the Go result the handler writes.
func TestOpenAPITaskResults(t *testing.T) {
	t.Parallel()
	doc := loadTyped(t)
	plain := loadOpenAPI(t)
	ok200 := doc.Paths["/tasks/{queue}/{id}"]["get"].Responses["200"].Content["application/json"].Schema
	if schemaName(ok200.Ref) != "Task" {
		t.Fatalf("GET /tasks/{queue}/{id} answers %q, want Task", ok200.Ref)
	}
	task := doc.Components.Schemas["Task"]
	if task.Discriminator == nil || task.Discriminator.PropertyName != "type" {
		t.Fatalf("Task has no discriminator on type")
	}
	var types, variants []string
	for typ, ref := range task.Discriminator.Mapping {
		types = append(types, typ)
		variants = append(variants, ref)
	}
	sort.Strings(types)
	if !slices.Equal(types, tasks.Types()) {
		t.Errorf("Task maps %q, the catalogue is %q", types, tasks.Types())
	}
	var oneOf []string
	for _, s := range task.OneOf {
		oneOf = append(oneOf, s.Ref)
	}
	sort.Strings(oneOf)
	sort.Strings(variants)
	if !slices.Equal(oneOf, variants) {
		t.Errorf("Task oneOf %q, mapping %q", oneOf, variants)
	}
	for typ, ref := range task.Discriminator.Mapping {
		v := doc.Components.Schemas[schemaName(ref)]
		if len(v.AllOf) != 2 || schemaName(v.AllOf[0].Ref) != "TaskBase" {
			t.Errorf("%s: want allOf [TaskBase, {type, result}]", ref)
			continue
		}
		own := v.AllOf[1]
		if own.Properties["type"].Const != typ {
			t.Errorf("%s: type const %q, want %q", ref, own.Properties["type"].Const, typ)
		}
		res := schemaName(own.Properties["result"].Ref)
		if _, ok := plain.Components.Schemas[res]; !ok {
			t.Errorf("%s: result %q is not a schema", ref, own.Properties["result"].Ref)
			continue
		}
		compareSchema(t, plain, typ+" result", plain.Components.Schemas[res], resultTypes[typ])
	}
	compareSchema(t, plain, "TaskBase", plain.Components.Schemas["TaskBase"], taskBase())
}

// taskBase is tasks.Result without Type and Result, which Task's variants
// add.
func taskBase() reflect.Type {
	rt := reflect.TypeFor[tasks.Result]()
	var fields []reflect.StructField
	for i := range rt.NumField() {
		if f := rt.Field(i); f.Name != "Type" && f.Name != "Result" {
			fields = append(fields, f)
		}
	}
	return reflect.StructOf(fields)
}

// TestOpenAPIReadThrough checks that each read-through route answers the
// schema of its Go answer type with exactly its fields.
func TestOpenAPIReadThrough(t *testing.T) {
	t.Parallel()
	doc := loadTyped(t)
	plain := loadOpenAPI(t)
	for path, typ := range map[string]reflect.Type{
		"/projects/{namespace}/{name}/sandbox":        reflect.TypeFor[SandboxView](),
		"/projects/{namespace}/{name}/servers/{slug}": reflect.TypeFor[ServerView](),
		"/projects/{namespace}/{name}/files":          reflect.TypeFor[FileView](),
		"/projects/{namespace}/{name}/env":            reflect.TypeFor[EnvView](),
	} {
		op := doc.Paths[path]["get"]
		s := op.Responses["200"].Content["application/json"].Schema
		if s.Ref == "" {
			t.Errorf("GET %s: 200 has no schema", path)
			continue
		}
		compareSchema(t, plain, "GET "+path, s, typ)
		for _, code := range []string{"400", "401", "404", "502", "503"} {
			if _, ok := op.Responses[code]; !ok {
				t.Errorf("GET %s does not document %s", path, code)
			}
		}
		required := doc.Components.Schemas[schemaName(s.Ref)].Required
		for f := range jsonFields(typ) {
			if !slices.Contains(required, f) {
				t.Errorf("GET %s: %s is always sent but not required", path, f)
			}
		}
	}
}
