package main

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sandboxq/sandboxq"
	"github.com/sandboxq/sandboxq/internal/redistest"
	"github.com/sandboxq/sandboxq/tasks"
)

func ptrFalse() *bool { f := false; return &f }

// TestCommandsEnqueue checks that every project command enqueues its task
// type, on its queue, with the payload its flags describe.
func TestCommandsEnqueue(t *testing.T) {
	t.Parallel()
	proj := tasks.Project{Namespace: "acme", Name: "shop"}
	tests := []struct {
		name  string
		args  []string
		queue string
		want  tasks.Payload
	}{
		{
			name:  "ensure",
			args:  []string{"ensure", "--namespace", "acme", "--name", "shop", "--timeout-ms", "60000", "--provider", "e2b", "--template-id", "node-20", "--metadata", "owner=ops", "--env", "NODE_ENV=dev"},
			queue: tasks.QueueCritical,
			want: tasks.SandboxEnsure{Project: proj, TimeoutMS: 60000, Provider: "e2b", TemplateID: "node-20",
				Metadata: map[string]any{"owner": "ops"}, Envs: map[string]string{"NODE_ENV": "dev"}},
		},
		{
			name:  "destroy",
			args:  []string{"destroy", "--namespace", "acme", "--name", "shop"},
			queue: tasks.QueueCritical,
			want:  tasks.SandboxDestroy{Project: proj},
		},
		{
			name: "start-server",
			args: []string{"start-server", "--namespace", "acme", "--name", "shop", "--slug", "web", "--command", "npm run dev",
				"--install", "npm ci", "--path", "/app", "--port", "3000", "--env", "A=1", "--env", "B=x=y", "--env-file", ".env",
				"--restart-policy", "on-failure", "--max-restarts", "3", "--health-path", "/healthz", "--wait-for", "running",
				"--wait-timeout-ms", "90000", "--no-ensure"},
			queue: tasks.QueueDefault,
			want: tasks.ServerStart{Project: proj, Slug: "web", Command: "npm run dev", Install: "npm ci", Path: "/app", Port: 3000,
				Env: map[string]string{"A": "1", "B": "x=y"}, EnvFile: ".env", RestartPolicy: "on-failure", MaxRestarts: 3,
				HealthCheck: &sandboxq.HealthCheck{Path: "/healthz"}, WaitFor: "running", WaitTimeoutMS: 90000, Ensure: ptrFalse()},
		},
		{
			name:  "start-server no server wait",
			args:  []string{"start-server", "--name", "shop", "--slug", "web", "--command", "node .", "--no-server-wait"},
			queue: tasks.QueueDefault,
			want:  tasks.ServerStart{Project: tasks.Project{Namespace: "default", Name: "shop"}, Slug: "web", Command: "node .", Wait: ptrFalse()},
		},
		{
			name:  "stop-server",
			args:  []string{"stop-server", "--namespace", "acme", "--name", "shop", "--slug", "web"},
			queue: tasks.QueueDefault,
			want:  tasks.ServerStop{Project: proj, Slug: "web"},
		},
		{
			name:  "restart-server",
			args:  []string{"restart-server", "--namespace", "acme", "--name", "shop", "--slug", "web", "--no-server-wait"},
			queue: tasks.QueueDefault,
			want:  tasks.ServerRestart{Project: proj, Slug: "web", Wait: ptrFalse()},
		},
		{
			name:  "run after --",
			args:  []string{"run", "--namespace", "acme", "--name", "shop", "--cwd", "/app", "--env", "CI=1", "--timeout-ms", "5000", "--allow-nonzero", "--", "echo", "hello world", "$HOME", "it's"},
			queue: tasks.QueueDefault,
			want: tasks.CommandRun{Project: proj, Command: `echo 'hello world' '$HOME' 'it'\''s'`, Cwd: "/app",
				Env: map[string]string{"CI": "1"}, TimeoutMS: 5000, FailOnNonzero: ptrFalse()},
		},
		{
			name:  "run one argument verbatim",
			args:  []string{"run", "--name", "shop", "--", "npm ci && npm test"},
			queue: tasks.QueueDefault,
			want:  tasks.CommandRun{Project: tasks.Project{Namespace: "default", Name: "shop"}, Command: "npm ci && npm test"},
		},
		{
			name:  "run --command",
			args:  []string{"run", "--name", "shop", "--command", "ls -la"},
			queue: tasks.QueueDefault,
			want:  tasks.CommandRun{Project: tasks.Project{Namespace: "default", Name: "shop"}, Command: "ls -la"},
		},
		{
			name:  "env",
			args:  []string{"env", "--namespace", "acme", "--name", "shop", "--file", "apps/web/.env.local", "--set", "API=https://x?a=b", "--remove", "DEBUG"},
			queue: tasks.QueueDefault,
			want: tasks.EnvUpdate{Project: proj, File: "apps/web/.env.local",
				Set: map[string]string{"API": "https://x?a=b"}, Remove: []string{"DEBUG"}},
		},
		{
			name:  "env default file",
			args:  []string{"env", "--name", "shop", "--set", "A=1"},
			queue: tasks.QueueDefault,
			want:  tasks.EnvUpdate{Project: tasks.Project{Namespace: "default", Name: "shop"}, File: ".env", Set: map[string]string{"A": "1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := redistest.New(t)
			r := cli{redisURL: db.URL()}.must(t, exitOK, tt.args...)
			info, got := onlyPending(t, db, tt.queue)
			if info.Type != tt.want.TypeName() {
				t.Errorf("type %q, want %q", info.Type, tt.want.TypeName())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("payload\n got %#v\nwant %#v", got, tt.want)
			}
			if id := strings.TrimSpace(r.stdout); id != info.ID {
				t.Errorf("stdout %q, want the task id %q", r.stdout, info.ID)
			}
			if info.MaxRetry != tasks.DefaultMaxRetry {
				t.Errorf("MaxRetry %d, want the default %d", info.MaxRetry, tasks.DefaultMaxRetry)
			}
		})
	}
}

func TestQueueAndMaxRetryFlags(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	cli{redisURL: db.URL()}.must(t, exitOK, "run", "--name", "shop", "--queue", "builds", "--max-retry", "2", "--", "make")
	info, p := onlyPending(t, db, "builds")
	if info.MaxRetry != 2 {
		t.Errorf("MaxRetry %d, want 2", info.MaxRetry)
	}
	if c := p.(tasks.CommandRun).Command; c != "make" {
		t.Errorf("command %q, want make", c)
	}
	if n := len(pendingTasks(t, db, tasks.QueueDefault)); n != 0 {
		t.Errorf("%d tasks on the default queue, want 0", n)
	}
}

func TestRedisURLFromFlagWinsOverEnv(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	cli{redisURL: closedPortURL(t)}.must(t, exitOK, "destroy", "--name", "shop", "--redis-url", db.URL())
	onlyPending(t, db, tasks.QueueCritical)
}

// writeTree creates files (slash paths relative to dir) with contents.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWriteFilesFromDir(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"index.js":                    "console.log(1)\n",
		"src/app/page.tsx":            "export default 1\n",
		"README.md":                   "# shop\n",
		".env.example":                "A=\n",
		".git/config":                 "[core]\n",
		"node_modules/react/index.js": "module.exports = {}\n",
		"src/node_modules/x/index.js": "nested\n",
		"logs/today.log":              "noise\n",
		"debug.log":                   "noise\n",
		"dist/bundle.js":              "built\n",
		"src/gen/types.ts":            "generated\n",
		"src/gen/keep/types.ts":       "kept: the pattern names files directly in src/gen\n",
		"public/logo.png":             "\x89PNG\r\n\x1a\n\xff\xfe",
	})
	if err := os.Symlink(filepath.Join(dir, "index.js"), filepath.Join(dir, "link.js")); err != nil {
		t.Fatal(err)
	}
	extra := filepath.Join(t.TempDir(), "robots.txt")
	if err := os.WriteFile(extra, []byte("User-agent: *\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	r := cli{redisURL: db.URL()}.must(t, exitOK, "write-files", "--name", "shop", "--dir", dir, "--to", "/app",
		"--ignore", "*.log", "--ignore", "dist", "--ignore", "src/gen/*.ts",
		"--file", extra+"=/srv/robots.txt", "--delete", "/app/old.html")
	info, p := onlyPending(t, db, tasks.QueueDefault)
	if info.Type != tasks.TypeFilesWrite {
		t.Fatalf("type %s, want %s", info.Type, tasks.TypeFilesWrite)
	}
	fw := p.(tasks.FilesWrite)
	got := map[string]tasks.File{}
	for _, f := range fw.Files {
		got[f.Path] = f
	}
	want := map[string]tasks.File{
		"/app/index.js":              {Path: "/app/index.js", Content: "console.log(1)\n"},
		"/app/src/app/page.tsx":      {Path: "/app/src/app/page.tsx", Content: "export default 1\n"},
		"/app/README.md":             {Path: "/app/README.md", Content: "# shop\n"},
		"/app/.env.example":          {Path: "/app/.env.example", Content: "A=\n"},
		"/app/src/gen/keep/types.ts": {Path: "/app/src/gen/keep/types.ts", Content: "kept: the pattern names files directly in src/gen\n"},
		"/srv/robots.txt":            {Path: "/srv/robots.txt", Content: "User-agent: *\n"},
		"/app/old.html":              {Path: "/app/old.html", Delete: true},
		"/app/public/logo.png":       tasks.BinaryFile("/app/public/logo.png", []byte("\x89PNG\r\n\x1a\n\xff\xfe")),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("files\n got %v\nwant %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
		for k, w := range want {
			if g := got[k]; g != w {
				t.Errorf("%s: got %+v, want %+v", k, g, w)
			}
		}
	}
	if fw.Ensure != nil {
		t.Errorf("ensure %v, want unset (default true)", *fw.Ensure)
	}
	if !strings.Contains(r.stderr, "link.js: not a regular file") {
		t.Errorf("stderr lacks the warning for link.js")
	}
	if strings.Contains(r.stderr, "logo.png") {
		t.Errorf("stderr warns about the binary logo.png, which is sent: %s", r.stderr)
	}
	if raw, err := got["/app/public/logo.png"].Bytes(); err != nil || string(raw) != "\x89PNG\r\n\x1a\n\xff\xfe" {
		t.Errorf("logo.png decodes to %q (err %v), want the PNG bytes", raw, err)
	}
}

func TestWriteFilesWithoutToIsRelative(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"a/b.txt": "b"})
	cli{redisURL: db.URL()}.must(t, exitOK, "write-files", "--name", "shop", "--dir", dir, "--no-ensure")
	_, p := onlyPending(t, db, tasks.QueueDefault)
	fw := p.(tasks.FilesWrite)
	if len(fw.Files) != 1 || fw.Files[0].Path != "a/b.txt" {
		t.Errorf("files %+v, want the one file a/b.txt", fw.Files)
	}
	if fw.Ensure == nil || *fw.Ensure {
		t.Errorf("ensure %v, want false from --no-ensure", fw.Ensure)
	}
}

// TestWriteFilesSplitJSON sends more content than one task may carry and
// checks the --json object lists every task.
func TestWriteFilesSplitJSON(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	dir := t.TempDir()
	big := strings.Repeat("x", tasks.MaxTaskContentBytes*3/4)
	writeTree(t, dir, map[string]string{"one.txt": big, "two.txt": big, "three.txt": "small"})
	r := cli{redisURL: db.URL()}.must(t, exitOK, "write-files", "--name", "shop", "--dir", dir, "--json")
	m := decodeOne(t, r.stdout)
	checkKeys(t, m, "id", "queue", "type", "duplicate", "state", "result", "error", "tasks")
	var list []outcome
	if err := json.Unmarshal(m["tasks"], &list); err != nil {
		t.Fatalf("tasks: %v", err)
	}
	pending := pendingTasks(t, db, tasks.QueueDefault)
	if len(list) < 2 || len(list) != len(pending) {
		t.Fatalf("--json lists %d tasks and %d are pending; want the same number, at least 2", len(list), len(pending))
	}
	if str(t, m["id"]) != list[0].ID {
		t.Errorf("top-level id %s, want the first task's %s", m["id"], list[0].ID)
	}
	ids := map[string]bool{}
	for _, info := range pending {
		ids[info.ID] = true
	}
	files := 0
	for _, o := range list {
		if !ids[o.ID] || o.Type != tasks.TypeFilesWrite || o.Queue != tasks.QueueDefault || o.State != tasks.StatePending {
			t.Errorf("task %+v is not a pending files:write task", o)
		}
	}
	for _, info := range pending {
		p, err := tasks.DecodePayload(info.Type, info.Payload, info.Headers)
		if err != nil {
			t.Fatal(err)
		}
		files += len(p.(tasks.FilesWrite).Files)
	}
	if files != 3 {
		t.Errorf("the tasks carry %d files, want 3", files)
	}
}

const workflowYAML = `
namespace: acme
name: from-file
steps:
  - type: files:write
    payload:
      files:
        - path: /app/index.js
          content: "console.log(1)"
  - type: server:start
    payload: {slug: web, command: node index.js, port: 3000, env: {DEBUG: "1"}}
  - type: command:run
    payload:
      command: npm test
`

const workflowJSON = `{
  "namespace": "acme",
  "name": "from-file",
  "steps": [
    {"type": "files:write", "payload": {"files": [{"path": "/app/index.js", "content": "console.log(1)"}]}},
    {"type": "server:start", "payload": {"slug": "web", "command": "node index.js", "port": 3000, "env": {"DEBUG": "1"}}},
    {"type": "command:run", "payload": {"command": "npm test"}}
  ]
}`

func TestWorkflow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	yamlFile := filepath.Join(dir, "deploy.yaml")
	jsonFile := filepath.Join(dir, "deploy.json")
	writeTree(t, dir, map[string]string{"deploy.yaml": workflowYAML, "deploy.json": workflowJSON})

	tests := []struct {
		name  string
		stdin string
		args  []string
		want  tasks.Project
	}{
		{"yaml", "", []string{"--file", yamlFile}, tasks.Project{Namespace: "acme", Name: "from-file"}},
		{"json", "", []string{"--file", jsonFile}, tasks.Project{Namespace: "acme", Name: "from-file"}},
		{"flags win", "", []string{"--file", yamlFile, "--name", "shop", "--namespace", "ops"}, tasks.Project{Namespace: "ops", Name: "shop"}},
		{"yaml on stdin", workflowYAML, []string{"--file", "-", "--name", "shop"}, tasks.Project{Namespace: "acme", Name: "shop"}},
		{"json on stdin", workflowJSON, []string{"--file", "-"}, tasks.Project{Namespace: "acme", Name: "from-file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := redistest.New(t)
			cli{redisURL: db.URL(), stdin: tt.stdin}.must(t, exitOK, append([]string{"workflow"}, tt.args...)...)
			info, p := onlyPending(t, db, tasks.QueueDefault)
			if info.Type != tasks.TypeWorkflowRun {
				t.Fatalf("type %s, want %s", info.Type, tasks.TypeWorkflowRun)
			}
			wf := p.(tasks.WorkflowRun)
			if wf.Project != tt.want {
				t.Errorf("project %+v, want %+v", wf.Project, tt.want)
			}
			if len(wf.Steps) != 3 {
				t.Fatalf("%d steps, want 3", len(wf.Steps))
			}
			steps := make([]tasks.Payload, len(wf.Steps))
			for i := range wf.Steps {
				sp, err := wf.StepPayload(i)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				steps[i] = sp
			}
			wantSteps := []tasks.Payload{
				tasks.FilesWrite{Project: tt.want, Files: []tasks.File{{Path: "/app/index.js", Content: "console.log(1)"}}},
				tasks.ServerStart{Project: tt.want, Slug: "web", Command: "node index.js", Port: 3000, Env: map[string]string{"DEBUG": "1"}},
				tasks.CommandRun{Project: tt.want, Command: "npm test"},
			}
			if !reflect.DeepEqual(steps, wantSteps) {
				t.Errorf("steps\n got %#v\nwant %#v", steps, wantSteps)
			}
		})
	}
}

// TestJSONOutput checks that --json prints one object with exactly the
// documented keys, and that enqueuing sandbox:ensure again while the first
// is pending reports that task as a duplicate.
func TestJSONOutput(t *testing.T) {
	t.Parallel()
	db := redistest.New(t)
	c := cli{redisURL: db.URL()}
	first := decodeOne(t, c.must(t, exitOK, "ensure", "--name", "shop", "--json").stdout)
	checkKeys(t, first, "id", "queue", "type", "duplicate", "state", "result", "error")
	info, _ := onlyPending(t, db, tasks.QueueCritical)
	want := map[string]string{
		"id": `"` + info.ID + `"`, "queue": `"critical"`, "type": `"sandbox:ensure"`,
		"duplicate": "false", "state": `"pending"`, "result": "null", "error": "null",
	}
	for k, v := range want {
		if string(first[k]) != v {
			t.Errorf("%s: got %s, want %s", k, first[k], v)
		}
	}
	second := decodeOne(t, c.must(t, exitOK, "ensure", "--name", "shop", "--json").stdout)
	if string(second["id"]) != string(first["id"]) || string(second["duplicate"]) != "true" {
		t.Errorf("second ensure: id %s duplicate %s, want id %s duplicate true", second["id"], second["duplicate"], first["id"])
	}
	if n := len(pendingTasks(t, db, tasks.QueueCritical)); n != 1 {
		t.Errorf("%d pending tasks, want 1", n)
	}
}
