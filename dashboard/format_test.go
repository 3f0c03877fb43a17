package dashboard

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/sandboxq/sandboxq/tasks"
)

// secrets are values that must never be shown.
var secrets = []string{
	"FILE-BODY-1", "ENV-VALUE-2", "ENV-VALUE-3", "ENV-VALUE-4", "ENV-VALUE-5",
	"STEP-FILE-6", "STEP-ENV-7", "STEP-ENV-8", "META-TOKEN-9", "BIG-FILE-10",
}

func mustTask(t *testing.T, p tasks.Payload) *asynq.Task {
	t.Helper()
	task, err := tasks.New(p)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func step(t *testing.T, p tasks.Payload) tasks.Step {
	t.Helper()
	s, err := tasks.NewStep(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFormatPayloadRedacts(t *testing.T) {
	t.Parallel()
	pr := tasks.Project{Name: "shop"}
	big := strings.Repeat("BIG-FILE-10 ", 8000) // compressed: above 64 KiB
	for _, tc := range []struct {
		name    string
		task    *asynq.Task
		want    []string
		gzipped bool
	}{
		{
			name: "files:write",
			task: mustTask(t, tasks.FilesWrite{Project: pr, Files: []tasks.File{{Path: "/app/a.txt", Content: "FILE-BODY-1"}, {Path: "/app/old", Delete: true}}}),
			want: []string{`"path": "/app/a.txt"`, `"content": "[11 bytes]"`, `"delete": true`},
		},
		{
			name:    "files:write compressed",
			task:    mustTask(t, tasks.FilesWrite{Project: pr, Files: []tasks.File{{Path: "/big.txt", Content: big}}}),
			want:    []string{`"path": "/big.txt"`, `"content": "[96000 bytes]"`},
			gzipped: true,
		},
		{
			name: "server:start",
			task: mustTask(t, tasks.ServerStart{Project: pr, Slug: "web", Command: "npm run dev", Env: map[string]string{"DB_PASSWORD": "ENV-VALUE-2", "PORT_HINT": "ENV-VALUE-3"}}),
			want: []string{`"command": "npm run dev"`, `"env": [`, `"DB_PASSWORD"`, `"PORT_HINT"`},
		},
		{
			name: "sandbox:ensure",
			task: mustTask(t, tasks.SandboxEnsure{Project: pr, Envs: map[string]string{"API_KEY": "ENV-VALUE-4"},
				Metadata: map[string]any{"team": "blue", "access_token": "META-TOKEN-9"}}),
			want: []string{`"envs": [`, `"API_KEY"`, `"team": "blue"`, `"access_token": "[redacted]"`},
		},
		{
			name: "command:run",
			task: mustTask(t, tasks.CommandRun{Project: pr, Command: "make test", Env: map[string]string{"CI_SECRET": "ENV-VALUE-5"}}),
			want: []string{`"command": "make test"`, `"CI_SECRET"`},
		},
		{
			name: "env:update",
			task: mustTask(t, tasks.EnvUpdate{Project: pr, Set: map[string]string{"STRIPE": "ENV-VALUE-3"}, Remove: []string{"OLD"}}),
			want: []string{`"set": [`, `"STRIPE"`, `"remove": [`, `"OLD"`},
		},
		{
			name: "workflow:run",
			task: mustTask(t, tasks.WorkflowRun{Project: pr, Steps: []tasks.Step{
				step(t, tasks.FilesWrite{Files: []tasks.File{{Path: "/s.txt", Content: "STEP-FILE-6"}}}),
				step(t, tasks.EnvUpdate{Set: map[string]string{"STEP_VAR": "STEP-ENV-7"}}),
				step(t, tasks.ServerStart{Slug: "web", Command: "run", Env: map[string]string{"STEP_SRV": "STEP-ENV-8"}}),
			}}),
			want: []string{`"type": "files:write"`, `"content": "[11 bytes]"`, `"STEP_VAR"`, `"STEP_SRV"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := len(tc.task.Payload()) > 1 && tc.task.Payload()[0] == 0x1f; got != tc.gzipped {
				t.Fatalf("payload gzipped = %v, want %v", got, tc.gzipped)
			}
			out := FormatPayload(tc.task.Type(), tc.task.Payload())
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("shows %q:\n%s", s, out)
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("does not show %s:\n%s", w, out)
				}
			}
			if !strings.Contains(out, "\n  \"name\": \"shop\"") {
				t.Errorf("not pretty-printed JSON with the project:\n%s", out)
			}
			if !json.Valid([]byte(out)) {
				t.Errorf("not JSON:\n%s", out)
			}
		})
	}
}

func TestFormatOddPayloads(t *testing.T) {
	t.Parallel()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(`{"files":[{"path":"x","content":"GZ-SECRET"}]}`))
	_ = zw.Close()
	for _, tc := range []struct {
		name, typ string
		payload   []byte
		want      string
		not       string
	}{
		{"empty", tasks.TypeFilesWrite, nil, "", ""},
		{"not JSON", "custom:thing", []byte("password=hunter2"), "[16 bytes, not JSON]", "hunter2"},
		{"two JSON values", "custom:thing", []byte(`{} {"token":"x"}`), "not JSON", "token"},
		{"broken gzip", tasks.TypeFilesWrite, []byte{0x1f, 0x8b, 1, 2, 3}, "cannot be decompressed", ""},
		{"gzip without headers", tasks.TypeFilesWrite, gz.Bytes(), `"content": "[9 bytes]"`, "GZ-SECRET"},
		{"custom type, generic rules", "custom:deploy", []byte(`{"Authorization":"Bearer abc","nested":{"environment":{"K":"v1"},"apiKey":"k2"},"list":[{"contents":"body"}]}`),
			`"Authorization": "[redacted]"`, "abc"},
		{"custom type, set is not env", "custom:thing", []byte(`{"set":{"a":"visible"}}`), `"a": "visible"`, ""},
	} {
		out := FormatPayload(tc.typ, tc.payload)
		if !strings.Contains(out, tc.want) {
			t.Errorf("%s: %q does not contain %q", tc.name, out, tc.want)
		}
		if tc.not != "" && strings.Contains(out, tc.not) {
			t.Errorf("%s: %q shows %q", tc.name, out, tc.not)
		}
	}
	out := FormatPayload("custom:deploy", []byte(`{"nested":{"environment":{"K":"v1"},"apiKey":"k2"},"list":[{"contents":"body"}]}`))
	for _, s := range []string{"v1", "k2", "body"} {
		if strings.Contains(out, `"`+s+`"`) {
			t.Errorf("custom payload shows %q:\n%s", s, out)
		}
	}
	res := FormatResult(tasks.TypeCommandRun, []byte(`{"exit_code":0,"stdout":"hello"}`))
	if !strings.Contains(res, `"stdout": "hello"`) {
		t.Errorf("result = %s", res)
	}
}

// TestFormatPayloadRedactsCredentialLikeMetadata: metadata keys such as
// x-api-key or authKey are credentials too.
func TestFormatPayloadRedactsCredentialLikeMetadata(t *testing.T) {
	out := FormatPayload(tasks.TypeSandboxEnsure, []byte(`{"name":"shop","metadata":{"x-api-key":"k-123","authKey":"a-9","team":"blue"}}`))
	for _, leak := range []string{"k-123", "a-9"} {
		if strings.Contains(out, leak) {
			t.Errorf("payload shows %q:\n%s", leak, out)
		}
	}
	if !strings.Contains(out, `"team": "blue"`) {
		t.Errorf("plain metadata lost:\n%s", out)
	}
}
