package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/sandboxq/sandboxq/tasks"
)

type openAPIDocument struct {
	OpenAPI string `json:"openapi"`
	Servers []struct {
		URL string `json:"url"`
	} `json:"servers"`
	Paths      map[string]map[string]openAPIOperation `json:"paths"`
	Components struct {
		Schemas map[string]openAPISchema `json:"schemas"`
	} `json:"components"`
}

type openAPIOperation struct {
	OperationID string `json:"operationId"`
	Parameters  []struct {
		Name   string `json:"name"`
		In     string `json:"in"`
		Schema struct {
			Enum []string `json:"enum"`
		} `json:"schema"`
	} `json:"parameters"`
	RequestBody *struct {
		Content map[string]struct {
			Schema struct {
				OneOf []openAPISchema `json:"oneOf"`
			} `json:"schema"`
		} `json:"content"`
	} `json:"requestBody"`
	Responses map[string]json.RawMessage `json:"responses"`
}

type openAPISchema struct {
	Ref        string                   `json:"$ref"`
	TaskType   string                   `json:"x-task-type"`
	Properties map[string]openAPISchema `json:"properties"`
	Items      *openAPISchema           `json:"items"`
}

func loadOpenAPI(t *testing.T) *openAPIDocument {
	t.Helper()
	var doc openAPIDocument
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return &doc
}

// TestOpenAPIMatchesRoutes fails when a route of the route table is missing
// from the document or the document describes a route the API does not
// serve.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
	if len(doc.Servers) != 1 || doc.Servers[0].URL != Prefix {
		t.Errorf("servers = %+v, want one with url %q", doc.Servers, Prefix)
	}
	var inDoc, inCode []string
	for path, ops := range doc.Paths {
		for method, op := range ops {
			inDoc = append(inDoc, strings.ToUpper(method)+" "+path)
			if op.OperationID == "" {
				t.Errorf("%s %s has no operationId", method, path)
			}
			if _, ok := op.Responses["401"]; !ok {
				t.Errorf("%s %s does not document 401", method, path)
			}
		}
	}
	a := &API{}
	for _, rt := range a.routes() {
		inCode = append(inCode, rt.method+" "+rt.path)
		if rt.method == http.MethodPost && rt.path == "/tasks/{type}" {
			// The document also describes each type as its own path, so
			// that generated clients tie a request body to its type.
			for _, typ := range tasks.Types() {
				inCode = append(inCode, rt.method+" /tasks/"+typ)
			}
		}
	}
	sort.Strings(inDoc)
	sort.Strings(inCode)
	if !slices.Equal(inDoc, inCode) {
		t.Errorf("routes differ:\n document: %q\n code:     %q", inDoc, inCode)
	}
}

// payloadSamples has one value of every payload type; the test checks it
// covers tasks.Types(), so a new type fails until the document has it.
var payloadSamples = []tasks.Payload{
	tasks.SandboxEnsure{}, tasks.SandboxDestroy{}, tasks.FilesWrite{}, tasks.ServerStart{},
	tasks.ServerStop{}, tasks.ServerRestart{}, tasks.CommandRun{}, tasks.EnvUpdate{},
	tasks.WorkflowRun{}, tasks.MaintenanceCleanup{}, tasks.MaintenanceReconcile{},
}

// TestOpenAPIPayloadSchemas checks that the document has a payload schema
// for every task type, listed in the POST body and the type enum, whose
// properties are exactly the JSON fields of the Go payload (nested objects
// included).
func TestOpenAPIPayloadSchemas(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	var sampleTypes []string
	for _, p := range payloadSamples {
		sampleTypes = append(sampleTypes, p.TypeName())
	}
	sort.Strings(sampleTypes)
	if !slices.Equal(sampleTypes, tasks.Types()) {
		t.Fatalf("payloadSamples cover %q, the catalogue is %q", sampleTypes, tasks.Types())
	}

	post := doc.Paths["/tasks/{type}"]["post"]
	var enum []string
	for _, p := range post.Parameters {
		if p.Name == "type" && p.In == "path" {
			enum = p.Schema.Enum
		}
	}
	if !slices.Equal(enum, tasks.Types()) {
		t.Errorf("type enum = %q, want %q", enum, tasks.Types())
	}
	listed := map[string]bool{}
	if post.RequestBody != nil {
		for _, s := range post.RequestBody.Content["application/json"].Schema.OneOf {
			listed[strings.TrimPrefix(s.Ref, "#/components/schemas/")] = true
		}
	}

	byType := map[string]string{}
	for name, s := range doc.Components.Schemas {
		if s.TaskType != "" {
			byType[s.TaskType] = name
		}
	}
	for _, p := range payloadSamples {
		name, ok := byType[p.TypeName()]
		if !ok {
			t.Errorf("no schema with x-task-type %q", p.TypeName())
			continue
		}
		if !listed[name] {
			t.Errorf("schema %s is not in the request body's oneOf", name)
		}
		checkTypedEnqueue(t, doc, p.TypeName(), name)
		compareSchema(t, doc, name, doc.Components.Schemas[name], reflect.TypeOf(p))
	}
}

// compareSchema checks that s has exactly the JSON fields of struct type
// typ, recursing into struct-valued fields and slices of structs.
func compareSchema(t *testing.T, doc *openAPIDocument, where string, s openAPISchema, typ reflect.Type) {
	t.Helper()
	if s.Ref != "" {
		name := strings.TrimPrefix(s.Ref, "#/components/schemas/")
		ref, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("%s: dangling $ref %s", where, s.Ref)
			return
		}
		s = ref
	}
	fields := jsonFields(typ)
	var want, got []string
	for f := range fields {
		want = append(want, f)
	}
	for f := range s.Properties {
		got = append(got, f)
	}
	sort.Strings(want)
	sort.Strings(got)
	if !slices.Equal(want, got) {
		t.Errorf("%s: schema properties %q, Go fields %q", where, got, want)
		return
	}
	for f, ft := range fields {
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		ps := s.Properties[f]
		switch {
		case ft.Kind() == reflect.Struct && ft.PkgPath() != "time":
			compareSchema(t, doc, where+"."+f, ps, ft)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			if ps.Items == nil {
				t.Errorf("%s.%s: array schema without items", where, f)
				continue
			}
			compareSchema(t, doc, where+"."+f+"[]", *ps.Items, ft.Elem())
		}
	}
}

// jsonFields returns the JSON field names of a struct type and their Go
// types, with embedded structs flattened as encoding/json does.
func jsonFields(typ reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func TestServeOpenAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	resp, raw := b.do(t, request{method: http.MethodGet, path: "/openapi.json"})
	if resp.StatusCode != http.StatusOK || string(raw) != string(OpenAPI()) {
		t.Fatalf("GET /openapi.json: status %d, %d bytes; want 200 and the embedded document", resp.StatusCode, len(raw))
	}
}
